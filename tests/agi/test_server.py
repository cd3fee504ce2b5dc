"""FastAGIServer over real sockets: header limits, routing, busy, failures, stop, many peers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import pytest
import structlog

from ivrpay.agi.errors import AGIConnectionLost
from ivrpay.agi.protocol import format_environment
from ivrpay.agi.server import FastAGIServer, serve_until_signal
from ivrpay.agi.session import AGISession
from tests.support.agi import AsteriskPeer, asterisk_env


async def peer_sees_close(peer: AsteriskPeer) -> bytes:
    try:
        return await peer.read_to_eof()
    except ConnectionResetError:
        return b""


class Recorder:
    """A handler that records each session, waits for ``release`` and then ends."""

    def __init__(self) -> None:
        self.sessions: asyncio.Queue[AGISession] = asyncio.Queue()
        self.release = asyncio.Event()
        self.contexts: list[dict[str, object]] = []
        self.cancelled = 0

    async def __call__(self, session: AGISession) -> None:
        self.contexts.append(structlog.contextvars.get_contextvars())
        await self.sessions.put(session)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def next(self) -> AGISession:
        async with asyncio.timeout(5):
            return await self.sessions.get()


async def polite_end(peer: AsteriskPeer) -> None:
    """Asterisk's part of the end: see the server's EOF, say HANGUP, close."""
    assert await peer.read_to_eof() == b""
    await peer.send("HANGUP")
    await peer.close()


async def complete_call(port: int, script: str = "pay") -> None:
    """A normal call: two commands answered, then the polite end."""
    peer = await AsteriskPeer.connect(port, script)
    assert await peer.answer("200 result=0") == b"ANSWER\n"
    assert await peer.answer("200 result=1 (en)") == b"GET VARIABLE CHANNEL(language)\n"
    await polite_end(peer)


async def pay_handler(session: AGISession) -> None:
    await session.answer()
    assert await session.get_variable("CHANNEL(language)") == "en"


# -- routing -------------------------------------------------------------------------------------


async def test_routes_on_the_script_and_binds_the_call_to_logs(agi_server) -> None:
    rec = Recorder()
    server = await agi_server({"pay": rec})
    assert server.port != 0
    peer = await AsteriskPeer.connect(server.port, "pay?lang=ja", "123456", "PJSIP/1001-0000002a")
    session = await rec.next()
    assert session.env.script == "pay" and session.env.query == {"lang": "ja"}
    assert session.env.args == ["123456", "PJSIP/1001-0000002a"]
    assert rec.contexts == [
        {"uniqueid": "1795788781.42", "channel": "Local/s@tr-caller-00000015;1"}
    ]
    assert server.in_flight == 1
    rec.release.set()
    await polite_end(peer)
    await server.stop(5.0)
    assert server.in_flight == 0 and session.closed and session.hung_up


async def test_unknown_script(agi_server) -> None:
    server = await agi_server({"pay": pay_handler})
    peer = await AsteriskPeer.connect(server.port, "nope")
    await polite_end(peer)  # closed politely at once

    seen: list[str] = []

    async def unknown(session: AGISession) -> None:
        seen.append(session.env.script)
        await session.set_variable("IVRPAY_STATUS", "ERROR")

    server = await agi_server({"pay": pay_handler}, unknown_handler=unknown)
    peer = await AsteriskPeer.connect(server.port, "other?x=1")
    assert await peer.answer("200 result=1") == b"SET VARIABLE IVRPAY_STATUS ERROR\n"
    await polite_end(peer)
    assert seen == ["other"]


async def test_non_utf8_environment_values(agi_server) -> None:
    rec = Recorder()
    server = await agi_server({"pay": rec})
    env = asterisk_env(
        "pay", "12", agi_calleridname="山田".encode("cp932"), agi_dnid=b"\xff\x00\x80"
    )
    peer = await AsteriskPeer.connect(server.port, env=env)
    session = await rec.next()
    assert session.env["agi_calleridname"] == "山田".encode("cp932").decode("latin-1")
    assert session.env.raw_bytes["agi_dnid"] == b"\xff\x00\x80"
    assert session.env.args == ["12"]
    rec.release.set()
    await polite_end(peer)


# -- headers that never make a call --------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connect and close (a port probe)
        b"agi_network: yes\nagi_network_script: pay\n",  # EOF before the blank line
        b"agi_network: yes\nagi_netw",  # EOF mid-line
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # garbage
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n",  # a TLS hello
    ],
)
async def test_headers_that_end_quietly(agi_server, sent: bytes) -> None:
    rec = Recorder()
    server = await agi_server({"pay": rec})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(sent)
    writer.write_eof()
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed, nothing said
    writer.close()
    server.handlers["pay"] = pay_handler
    await complete_call(server.port)  # the server still takes calls
    assert rec.sessions.empty()


@pytest.mark.parametrize("one_line", [False, True])
async def test_one_mib_header_is_refused(agi_server, one_line: bool) -> None:
    server = await agi_server({"pay": pay_handler})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    line = b"agi_x: " + b"y" * 1000 + b"\n"
    big = b"agi_x: " + b"y" * (1 << 20) if one_line else line * ((1 << 20) // len(line))

    async def flood() -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(big)
            await writer.drain()

    flooding = asyncio.create_task(flood())
    async with asyncio.timeout(5):
        with contextlib.suppress(ConnectionResetError):
            while await reader.read(65536):
                pass  # the server never answers; read until it drops us
    await flooding
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    await complete_call(server.port)


async def test_a_peer_sending_one_byte_at_a_time_is_cut_off(agi_server) -> None:
    server = await agi_server({"pay": pay_handler}, header_timeout=0.25)
    block = format_environment(asterisk_env("pay"))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    closed = asyncio.create_task(peer_sees_close(AsteriskPeer(reader, writer)))
    sent = 0
    for byte in block:  # each byte well inside any per-read limit; the total time is what counts
        if closed.done():
            break
        with contextlib.suppress(ConnectionError):
            writer.write(bytes([byte]))
            await writer.drain()
        sent += 1
        await asyncio.wait([closed], timeout=0.02)  # the slow peer's pace, not a wait for a result
    assert closed.done() and closed.result() == b""
    assert sent < len(block)
    writer.close()
    await complete_call(server.port)


async def test_a_slow_peer_does_not_stall_a_call(agi_server) -> None:
    server = await agi_server({"pay": pay_handler}, header_timeout=5.0)
    block = format_environment(asterisk_env("pay"))
    slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", server.port)
    slow_writer.write(block[:20])  # and then nothing for a while
    await slow_writer.drain()
    await complete_call(server.port)  # another call goes through meanwhile
    # The slow one was kept waiting (not dropped, not blocking): it can still finish its call.
    slow_writer.write(block[20:])
    slow = AsteriskPeer(slow_reader, slow_writer)
    assert await slow.answer("200 result=0") == b"ANSWER\n"
    assert await slow.answer("200 result=1 (en)") == b"GET VARIABLE CHANNEL(language)\n"
    await polite_end(slow)


async def test_1000_early_closes_while_a_call_completes(agi_server) -> None:
    server = await agi_server({"pay": pay_handler})
    started = time.perf_counter()
    call = asyncio.create_task(complete_call(server.port))

    async def probe() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    for _ in range(10):
        await asyncio.gather(*(probe() for _ in range(100)))
    await call
    elapsed = time.perf_counter() - started
    print(f"\n1000 early-closing connections + 1 call: {elapsed:.3f} s")
    await complete_call(server.port)  # still accepting
    await server.stop(5.0)
    assert server.connections == 0 and server.in_flight == 0


# -- busy, failures ------------------------------------------------------------------------------


async def test_max_calls_runs_the_busy_handler_then_closes(agi_server) -> None:
    rec = Recorder()
    busy = Recorder()
    server = await agi_server({"pay": rec}, max_calls=1, busy_handler=busy, max_busy_calls=1)
    first = await AsteriskPeer.connect(server.port, "pay")
    await rec.next()
    second = await AsteriskPeer.connect(server.port, "pay")
    busy_session = await busy.next()
    assert busy_session.env.script == "pay"
    assert (server.in_flight, server.busy_in_flight) == (1, 1)
    third = await AsteriskPeer.connect(server.port, "pay")
    await polite_end(third)  # over the busy allowance: closed at once
    busy.release.set()
    await polite_end(second)
    rec.release.set()
    await polite_end(first)
    await server.stop(5.0)
    assert (server.in_flight, server.busy_in_flight) == (0, 0)
    assert rec.sessions.empty() and busy.sessions.empty()


async def test_busy_without_a_busy_handler_closes(agi_server) -> None:
    rec = Recorder()
    server = await agi_server({"pay": rec}, max_calls=1)
    first = await AsteriskPeer.connect(server.port, "pay")
    await rec.next()
    second = await AsteriskPeer.connect(server.port, "pay")
    await polite_end(second)
    rec.release.set()
    await polite_end(first)


async def test_a_failing_handler_is_logged_and_its_session_closed(agi_server) -> None:
    async def broken(session: AGISession) -> None:
        secret_local = "SECRET-LOCAL-VALUE"  # noqa: F841 - must not reach the log
        await session.noop()
        raise ValueError("boom")

    with structlog.testing.capture_logs() as logs:
        server = await agi_server({"pay": broken})
        peer = await AsteriskPeer.connect(server.port, "pay")
        assert await peer.answer("200 result=0") == b"NOOP\n"
        await polite_end(peer)
        await server.stop(5.0)
    failed = [e for e in logs if e["event"] == "fastagi handler failed"]
    assert len(failed) == 1
    assert failed[0]["error"] == "ValueError"
    assert "ValueError: boom" in failed[0]["traceback"]
    assert "SECRET-LOCAL-VALUE" not in failed[0]["traceback"]
    assert server.in_flight == 0 and server.connections == 0


async def test_a_handler_ignoring_the_hangup_gets_connection_lost(agi_server) -> None:
    outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def stubborn(session: AGISession) -> None:
        await session.hangup_event.wait()
        try:
            await session.noop()
        except AGIConnectionLost as exc:
            outcome.set_result(exc)

    server = await agi_server({"pay": stubborn})
    peer = await AsteriskPeer.connect(server.port, "pay")
    await peer.send("HANGUP")
    await peer.close()
    assert isinstance(await outcome, AGIConnectionLost)


# -- stopping ------------------------------------------------------------------------------------


async def test_stop_drains_then_cancels(agi_server) -> None:
    quick, stuck = Recorder(), Recorder()
    server = await agi_server({"quick": quick, "stuck": stuck})
    quick_peer = await AsteriskPeer.connect(server.port, "quick")
    stuck_peer = await AsteriskPeer.connect(server.port, "stuck")
    await quick.next()
    stuck_session = await stuck.next()

    server.stop_accepting()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)
    stopping = asyncio.create_task(server.stop(drain_s=0.3))
    quick.release.set()  # finishes inside the drain window
    await polite_end(quick_peer)
    await stopping  # the stuck one was cancelled at the deadline
    assert (quick.cancelled, stuck.cancelled) == (0, 1)
    assert await peer_sees_close(stuck_peer) == b""
    await stuck_peer.close()
    assert stuck_session.closed
    assert server.connections == 0 and server.in_flight == 0
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)


async def test_stop_gives_up_on_a_handler_that_ignores_cancellation(agi_server) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def deaf(session: AGISession) -> None:
        entered.set()
        while True:
            try:
                await release.wait()
                return
            except asyncio.CancelledError:
                continue  # misbehaving on purpose

    server = await agi_server({"pay": deaf}, close_timeout=0.1)
    peer = await AsteriskPeer.connect(server.port, "pay")
    await entered.wait()
    await server.stop(drain_s=0.0)  # returns; the socket is aborted
    assert await peer_sees_close(peer) == b""
    await peer.close()
    release.set()


async def test_serve_until_signal(agi_server) -> None:
    server = FastAGIServer({"pay": pay_handler}, host="127.0.0.1", port=0)
    started = asyncio.Event()
    runner = asyncio.create_task(
        serve_until_signal(server, drain_s=1.0, signals=(signal.SIGUSR1,), started=started)
    )
    await started.wait()
    await complete_call(server.port)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert await runner == signal.SIGUSR1
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)
