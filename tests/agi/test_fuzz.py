"""Any bytes a peer sends get a clean end of the session: never a crash, a hang or a stuck call."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivrpay.agi.errors import AGIError
from ivrpay.agi.protocol import format_environment
from ivrpay.agi.server import FastAGIServer
from ivrpay.agi.session import AGISession
from tests.support.agi import asterisk_env

# Reply lines a broken or hostile peer might send, mixed with the real forms.
_LINES = st.one_of(
    st.sampled_from(
        [
            b"200 result=0",
            b"200 result=49 endpos=1120",
            b"200 result=1231",
            b"200 result= (timeout)",
            b"200 result=-1",
            b"200 result=1 (ja)",
            b"100 result=0 Trying...",
            b"510 Invalid or unknown command",
            b"511 Command Not Permitted on a dead channel or intercept routine",
            b"520 Invalid command syntax.  Proper usage not available.",
            b"520-Invalid command syntax.  Proper usage follows:",
            b"520 End of proper usage.",
            b"HANGUP",
            b"",
            b"200",
            b"200 result=",
            b"200 result=abc endpos=x",
            b"999 what",
            b"\xff\xfe\x00garbage",
        ]
    ),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
)
_SCRIPT = st.lists(_LINES, max_size=12)


async def _one_session(lines: list[bytes], close_early: bool) -> tuple[int, list[str]]:
    unexpected: list[str] = []
    done = asyncio.Event()

    async def handler(session: AGISession) -> None:
        try:
            await session.answer()
            await session.stream_file("ivrpay/welcome", "0123456789*#")
            # A silent peer costs command_timeout + 10 ms × 19 keys here (GET DATA's own limit).
            await session.get_data("ivrpay/enter_card", 10, 19)
            await session.set_variable("IVRPAY_STATUS", "ERROR")
            await session.get_variable("CHANNEL(language)")
            await session.wait_for_digit(100)
        except AGIError:
            pass
        except Exception as exc:  # the test's finding
            unexpected.append(type(exc).__name__)
        finally:
            done.set()

    server = FastAGIServer(
        {"pay": handler}, host="127.0.0.1", port=0, command_timeout=0.5, header_timeout=1.0
    )
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(format_environment(asterisk_env(script="pay")))
            for line in lines:
                # One reply-ish line per command the server sends (none once it stops sending).
                try:
                    async with asyncio.timeout(1.0):
                        if not await reader.readline():
                            break
                except TimeoutError:
                    break
                writer.write(line + b"\n")
                await writer.drain()
            if not close_early:
                async with asyncio.timeout(5):
                    await reader.read()  # the server closes its side: the session ended
        except ConnectionError:
            pass  # the server may close on a broken peer at once
        finally:
            writer.close()
        async with asyncio.timeout(5):
            await done.wait()  # the handler ended: no call is left stuck
        await server.stop(5)
        return server.in_flight, unexpected
    finally:
        await server.stop(0)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=_SCRIPT, close_early=st.booleans())
def test_any_peer_bytes_end_the_session_cleanly(lines: list[bytes], close_early: bool) -> None:
    in_flight, unexpected = asyncio.run(_one_session(lines, close_early))
    assert in_flight == 0
    assert unexpected == []
