"""The small channel interface the conversation is written against.

The call flow never sees a socket: it talks to a :class:`Channel`.
:class:`ivrpay.agi.session.AGISession` (FastAGI today, classic stdin/stdout AGI later) satisfies
it through :mod:`ivrpay.agichannel`, which maps its errors to :class:`CallerGone` and
:class:`CommandFailed`; a test or another transport only has to provide these few operations
and raise these errors.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class ChannelError(Exception):
    """Base of the errors a :class:`Channel` raises (a transport maps its own to these)."""


class CallerGone(ChannelError):
    """The caller hung up: nothing more can be played or read."""


class CommandFailed(ChannelError):
    """The line did not carry out a command (refused, timed out, connection lost)."""


# Read-only members, so that frozen dataclasses (the AGI session's results) match.
class PlayOutcome(Protocol):
    @property
    def digit(self) -> str | None: ...  # the escape key that stopped the prompt
    @property
    def failed(self) -> bool: ...  # -1 without a known hang-up (missing prompt file)


class DataOutcome(Protocol):
    @property
    def digits(self) -> str: ...
    @property
    def timed_out(self) -> bool: ...
    @property
    def failed(self) -> bool: ...


class Environment(Protocol):
    @property
    def args(self) -> list[str]: ...
    @property
    def uniqueid(self) -> str: ...
    @property
    def channel(self) -> str: ...


class Channel(Protocol):
    """What the conversation needs from the phone line."""

    env: Environment
    hangup_event: asyncio.Event

    @property
    def hung_up(self) -> bool: ...

    async def answer(self) -> bool: ...

    async def stream_file(self, file: str, escape_digits: str = "") -> PlayOutcome: ...

    async def get_data(self, file: str, timeout_ms: int, max_digits: int) -> DataOutcome: ...

    async def set_variable(self, name: str, value: str | int) -> None: ...

    async def set_music(self, on: bool, music_class: str | None = None) -> None: ...

    async def noop(self) -> None: ...
