"""FastAGI wire: environment and reply codec, the session, the server. Knows nothing of payments."""

from ivrpay.agi.errors import (
    AGIArgumentError,
    AGICommandTimeout,
    AGIConnectionLost,
    AGIDeadChannel,
    AGIError,
    AGIHangup,
    AGIHeaderError,
    AGIInvalidCommand,
    AGIProtocolError,
    AGIUsageError,
)
from ivrpay.agi.protocol import AGIEnvironment, Quoted, Reply, format_command, parse_reply
from ivrpay.agi.server import FastAGIServer, Handler, serve_until_signal, wait_for_signal
from ivrpay.agi.session import AGISession, DataResult, PlayResult

__all__ = [
    "AGIArgumentError",
    "AGICommandTimeout",
    "AGIConnectionLost",
    "AGIDeadChannel",
    "AGIEnvironment",
    "AGIError",
    "AGIHangup",
    "AGIHeaderError",
    "AGIInvalidCommand",
    "AGIProtocolError",
    "AGISession",
    "AGIUsageError",
    "DataResult",
    "FastAGIServer",
    "Handler",
    "PlayResult",
    "Quoted",
    "Reply",
    "format_command",
    "parse_reply",
    "serve_until_signal",
    "wait_for_signal",
]
