"""The FastAGI server: accepts Asterisk's connections and runs one handler per call.

Each connection is one task: read the environment within limits (total bytes, line length, total
time), route on the script name (``agi_network_script`` before ``?``), run the handler with an
:class:`~ivrpay.agi.session.AGISession`, then close politely. A peer that sends nothing, garbage,
too much or too slowly is closed quietly and costs the other calls nothing. A handler that raises is
logged (traceback without local variables) and its session closed cleanly.

Graceful stop on SIGTERM/SIGINT: :func:`serve_until_signal`, or :func:`wait_for_signal` then
``await server.stop(drain_s)`` when other listeners share the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog

from ivrpay.agi.errors import AGIHeaderError
from ivrpay.agi.protocol import AGIEnvironment
from ivrpay.agi.session import AGISession, read_environment

__all__ = ["FastAGIServer", "Handler", "serve_until_signal", "wait_for_signal"]

Handler = Callable[[AGISession], Awaitable[None]]

log = structlog.get_logger(__name__)


def _format_exception(exc: BaseException) -> str:
    # Plain text, never local variables (they may hold card data), whatever logging is configured.
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class FastAGIServer:
    """FastAGI listener. ``handlers`` maps a script name to its handler.

    When ``in_flight >= max_calls`` a new call runs ``busy_handler`` instead (at most
    ``max_busy_calls`` at a time; beyond that, or without a busy handler, it is closed at once).
    An unknown script runs ``unknown_handler``, or is closed with a warning.
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        max_calls: int = 500,
        busy_handler: Handler | None = None,
        unknown_handler: Handler | None = None,
        header_timeout: float = 5.0,
        header_max_bytes: int = 65536,
        line_max_bytes: int = 8192,
        command_timeout: float | None = 120.0,
        close_timeout: float = 5.0,
        max_busy_calls: int = 50,
    ) -> None:
        self.handlers = dict(handlers)
        self.host = host
        self._port = port
        self.max_calls = max_calls
        self.max_busy_calls = max_busy_calls
        self.busy_handler = busy_handler
        self.unknown_handler = unknown_handler
        self.header_timeout = header_timeout
        self.header_max_bytes = header_max_bytes
        self.line_max_bytes = line_max_bytes
        self.command_timeout = command_timeout
        self.close_timeout = close_timeout
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._in_flight = 0
        self._busy_in_flight = 0
        self._stopping = False

    # -- state ------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (the real one after :meth:`start` with port 0)."""
        return self._port

    @property
    def in_flight(self) -> int:
        """Calls running their handler now (busy-handler calls not counted)."""
        return self._in_flight

    @property
    def busy_in_flight(self) -> int:
        return self._busy_in_flight

    @property
    def connections(self) -> int:
        """Open connections, in the header phase included."""
        return len(self._connections)

    # -- life cycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FastAGIServer already started")
        self._server = await asyncio.start_server(
            self._accept, self.host, self._port, limit=self.line_max_bytes, reuse_address=True
        )
        sockets = self._server.sockets
        if sockets:
            self._port = sockets[0].getsockname()[1]
        log.info("fastagi listening", host=self.host, port=self._port, max_calls=self.max_calls)

    async def stop(self, drain_s: float = 0.0) -> None:
        """Stop accepting; let connections finish for up to ``drain_s`` seconds; then cancel the
        rest and close their sockets. Returns when every connection has ended (a handler that
        ignores cancellation is abandoned after ``close_timeout``, its socket aborted)."""
        self.stop_accepting()
        tasks = list(self._connections)
        if tasks:
            log.info("fastagi draining", connections=len(tasks), drain_s=drain_s)
            _, pending = await asyncio.wait(tasks, timeout=max(drain_s, 0.0))
            if pending:
                log.warning("fastagi cancelling calls after drain", calls=len(pending))
                for task in pending:
                    task.cancel()
                _, stuck = await asyncio.wait(pending, timeout=self.close_timeout)
                if stuck:
                    # A handler that swallows cancellation still loses its socket; stop() returns.
                    log.error("fastagi handlers ignored cancellation", calls=len(stuck))
                    for task in stuck:
                        writer = self._connections.get(task)
                        if writer is not None:
                            writer.transport.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        log.info("fastagi stopped")

    def stop_accepting(self) -> None:
        """Close the listening socket: new connections are refused, calls in flight go on."""
        self._stopping = True
        if self._server is not None:
            self._server.close()

    async def __aenter__(self) -> FastAGIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(0.0)

    # -- one connection ---------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._stopping:
            writer.transport.abort()
            return
        self._connections[task] = writer
        try:
            await self._serve_connection(reader, writer)
        except asyncio.CancelledError:
            writer.transport.abort()
            # The server's own stop() cancels us; end quietly instead of propagating to asyncio.
        except Exception as exc:  # never let anything escape into asyncio's handler
            log.error(
                "fastagi connection failed",
                error=type(exc).__name__,
                traceback=_format_exception(exc),
            )
            writer.transport.abort()
        finally:
            self._connections.pop(task, None)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = _peer(writer)
        try:
            async with asyncio.timeout(self.header_timeout):
                env = await read_environment(reader, max_bytes=self.header_max_bytes)
        except (AGIHeaderError, TimeoutError, ConnectionError, OSError) as exc:
            reason = "too slow" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            log.debug("fastagi connection closed before a call", peer=peer, reason=reason)
            await _quiet_close(writer)
            return

        structlog.contextvars.bind_contextvars(uniqueid=env.uniqueid, channel=env.channel)
        handler = self.handlers.get(env.script)
        if handler is None:
            if self.unknown_handler is None:
                log.warning("fastagi unknown script; closing", script=env.script, peer=peer)
                await self._run(self._closer, reader, writer, env)
                return
            log.warning("fastagi unknown script", script=env.script, peer=peer)
            handler = self.unknown_handler

        if self._in_flight >= self.max_calls:
            if self.busy_handler is None or self._busy_in_flight >= self.max_busy_calls:
                log.warning("fastagi busy; closing", in_flight=self._in_flight, script=env.script)
                await self._run(self._closer, reader, writer, env)
                return
            log.warning("fastagi busy", in_flight=self._in_flight, script=env.script)
            self._busy_in_flight += 1
            try:
                await self._run(self.busy_handler, reader, writer, env)
            finally:
                self._busy_in_flight -= 1
            return

        self._in_flight += 1
        try:
            log.info("fastagi call", script=env.script, in_flight=self._in_flight)
            await self._run(handler, reader, writer, env)
        finally:
            self._in_flight -= 1

    @staticmethod
    async def _closer(session: AGISession) -> None:
        """No handler for this call: end the session politely at once."""

    async def _run(
        self,
        handler: Handler,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        env: AGIEnvironment,
    ) -> None:
        session = AGISession(
            reader,
            writer,
            env,
            command_timeout=self.command_timeout,
            close_timeout=self.close_timeout,
        )
        try:
            await handler(session)
        except asyncio.CancelledError:
            session.abort()
            raise
        except Exception as exc:
            log.error(
                "fastagi handler failed",
                script=env.script,
                error=type(exc).__name__,
                traceback=_format_exception(exc),
            )
        else:
            log.debug("fastagi call ended", script=env.script, hung_up=session.hung_up)
        await session.close()


def _peer(writer: asyncio.StreamWriter) -> str:
    info: Any = writer.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        return f"{info[0]}:{info[1]}"
    return str(info)


async def _quiet_close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
    if not writer.transport.is_closing():
        writer.transport.abort()


async def wait_for_signal(
    signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    started: asyncio.Event | None = None,
) -> signal.Signals:
    """Wait until one of ``signals`` arrives (handlers installed on the running loop, removed on
    return); ``started`` is set once they are installed. Returns the signal received."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[signal.Signals] = loop.create_future()
    installed = []
    try:
        for sig in signals:

            def _on_signal(sig: signal.Signals = sig) -> None:
                if not got.done():
                    got.set_result(sig)

            loop.add_signal_handler(sig, _on_signal)
            installed.append(sig)
        if started is not None:
            started.set()
        return await got
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def serve_until_signal(
    server: FastAGIServer,
    *,
    drain_s: float,
    signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    started: asyncio.Event | None = None,
) -> signal.Signals:
    """Start ``server``, run until one of ``signals`` arrives, then ``stop(drain_s)``.

    ``ivrpay serve`` with an HTTP side too: start both, ``sig = await wait_for_signal()``, then
    ``server.stop_accepting()``, stop the HTTP side, ``await server.stop(settings.drain_s)``.
    ``started`` is set once listening. Returns the signal received.
    """
    listening = asyncio.Event()
    waiter = asyncio.create_task(wait_for_signal(signals, listening))
    try:
        await listening.wait()
        await server.start()
        if started is not None:
            started.set()
        received = await waiter
    finally:
        waiter.cancel()
        await asyncio.wait([waiter])
    log.info("fastagi stopping on signal", signal=received.name, drain_s=drain_s)
    await server.stop(drain_s)
    return received
