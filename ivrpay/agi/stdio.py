"""Classic AGI: Asterisk starts a process per call (``AGI(/path/ivrpay-agi)``) and talks to it over
its stdin and stdout. The conversation is the FastAGI one; only the transport differs, so the same
:class:`~ivrpay.agi.session.AGISession` runs over the two pipes.

Why not pyst2: its ``AGI`` class reads the environment and replies with blocking
``sys.stdin.readline()`` calls, so an asyncio program (the flow, the store and the gateway client
are all asyncio) would block its loop on every command, and it has no notion of a ``HANGUP`` line
arriving between commands; its FastAGI side is broken on Python 3 sockets (bytes vs str). The
project's sans-IO protocol (:mod:`ivrpay.agi.protocol`) already reads exactly what Asterisk sends,
keeps card digits out of logs, and needs nothing but a stream pair.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import IO, Any

from ivrpay.agi.errors import AGIHeaderError
from ivrpay.agi.session import AGISession, read_environment

__all__ = ["open_stdio", "run_stdio"]


async def open_stdio(
    stdin: IO[Any] | None = None, stdout: IO[Any] | None = None, *, limit: int = 8192
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An asyncio stream pair over this process's stdin and stdout (or the given pipes).

    The pipes move to descriptors of their own and 0/1 are pointed at /dev/null and stderr: our
    close is then the only one (Asterisk sees the end of the script at once), and a stray print
    cannot corrupt the conversation. ValueError when they are not pipes, sockets or terminals.
    """
    loop = asyncio.get_running_loop()
    fd_in, fd_out = (stdin or sys.stdin).fileno(), (stdout or sys.stdout).fileno()
    mine_in, mine_out = os.dup(fd_in), os.dup(fd_out)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, fd_in)
    os.close(null)
    os.dup2(sys.stderr.fileno(), fd_out)
    reader = asyncio.StreamReader(limit=limit)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(mine_in, "rb", buffering=0)
    )
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()),
        os.fdopen(mine_out, "wb", buffering=0),
    )
    writer = asyncio.StreamWriter(_Pipe(transport), protocol, None, loop)  # type: ignore[arg-type]
    return reader, writer


class _Pipe:
    """The write pipe's transport, save that ``abort`` after the pipe closed itself (a pipe closes
    once ``write_eof`` has flushed) is a no-op: asyncio's own raises there."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def abort(self) -> None:
        if not self._transport.is_closing():
            self._transport.abort()


async def run_stdio(
    handler: Callable[[AGISession], Awaitable[None]],
    *,
    reader: asyncio.StreamReader | None = None,
    writer: asyncio.StreamWriter | None = None,
    header_timeout: float = 5.0,
    command_timeout: float | None = 120.0,
    close_timeout: float = 5.0,
) -> bool:
    """Read the environment, run ``handler`` over the session, close it. False when no call
    came (the environment never arrived or was not AGI)."""
    if reader is None or writer is None:
        try:
            reader, writer = await open_stdio()
        except ValueError:  # not started by Asterisk (a file, not a pipe)
            return False
    try:
        async with asyncio.timeout(header_timeout):
            env = await read_environment(reader)
    except (AGIHeaderError, TimeoutError, OSError):
        writer.transport.abort()
        return False
    session = AGISession(
        reader, writer, env, command_timeout=command_timeout, close_timeout=close_timeout
    )
    try:
        await handler(session)
    except asyncio.CancelledError:
        session.abort()
        raise
    finally:
        await session.close()
    return True
