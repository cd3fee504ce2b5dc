"""Errors of the FastAGI layer.

No message here ever carries the result of a command: input commands (GET DATA, WAIT FOR DIGIT,
GET OPTION, escape keys) return what the caller keyed, which may be card data. Errors name the
command (its verb, never its arguments) and the reply code at most.
"""

from __future__ import annotations


class AGIError(Exception):
    """Base of every FastAGI error."""

    def __init__(self, message: str, *, command: str | None = None) -> None:
        super().__init__(message)
        self.command = command


class AGIHangup(AGIError):
    """The caller hung up: a channel command cannot be carried out any more."""


class AGIDeadChannel(AGIHangup):
    """``511``: Asterisk refused a channel command because the channel is gone."""


class AGIInvalidCommand(AGIError):
    """``510``: Asterisk does not know the command."""


class AGIUsageError(AGIError):
    """``520``: wrong arguments; ``usage`` keeps Asterisk's usage text (may be empty)."""

    def __init__(self, message: str, *, command: str | None = None, usage: str = "") -> None:
        super().__init__(message, command=command)
        self.usage = usage


class AGICommandTimeout(AGIError):
    """No reply in time. The session is closed: a late reply would answer the next command."""


class AGIConnectionLost(AGIError):
    """The connection ended (EOF, reset) or the session was closed; nothing more can be sent."""


class AGIProtocolError(AGIConnectionLost):
    """The peer broke the protocol (a reply to nothing, an unreadable line); session closed."""


class AGIHeaderError(AGIError):
    """The environment block could not be read (EOF, garbage, too large, too slow)."""


class AGIArgumentError(AGIError, ValueError):
    """A command or argument that cannot be sent safely (CR, LF, NUL; too long). Nothing sent."""
