"""AGISession over real sockets: every reply form, hang-ups at any moment, failures, helpers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

import pytest
import structlog

from ivrpay.agi.errors import (
    AGIArgumentError,
    AGICommandTimeout,
    AGIConnectionLost,
    AGIDeadChannel,
    AGIError,
    AGIHangup,
    AGIInvalidCommand,
    AGIProtocolError,
    AGIUsageError,
)
from tests.agi.conftest import Call, OpenCall
from tests.support.agi import AsteriskPeer

CARD = "4111111111111111"
DEAD = "511 Command Not Permitted on a dead channel or intercept routine"


async def exchange(
    call: Call, coro: Coroutine[Any, Any, Any], *reply: str | bytes
) -> tuple[bytes, asyncio.Task[Any]]:
    """Start a session command, read the line it sent, answer with ``reply``; returns both."""
    task = asyncio.create_task(coro)
    line = await call.peer.recv()
    await call.peer.send(*reply)
    return line, task


async def peer_sees_close(peer: AsteriskPeer) -> None:
    """The server dropped the connection (EOF, or a reset when it aborted)."""
    try:
        rest = await peer.read_to_eof()
    except ConnectionResetError:
        return
    assert rest == b""


# -- reply forms ---------------------------------------------------------------------------------


async def test_provisional_100_is_read_through(open_call: OpenCall) -> None:
    call = await open_call()
    line, task = await exchange(
        call,
        call.session.execute("GOSUB", "sub", "s", 1),
        "100 result=0 Trying...",
        "200 result=0 Gosub complete",
    )
    assert line == b"GOSUB sub s 1\n"
    reply = await task
    assert (reply.code, reply.extra) == (200, "Gosub complete")
    # Still in step: the next reply answers the next command.
    _, task = await exchange(call, call.session.get_variable("V"), "200 result=1 (v)")
    assert await task == "v"


@pytest.mark.parametrize(
    ("reply", "error", "usage"),
    [
        (["510 Invalid or unknown command"], AGIInvalidCommand, None),
        (["520 Invalid command syntax.  Proper usage not available."], AGIUsageError, ""),
        (
            [
                "520-Invalid command syntax.  Proper usage follows:",
                "Usage line one <literal>0</literal>",
                "    indented",
                "520 End of proper usage.",
            ],
            AGIUsageError,
            "Usage line one <literal>0</literal>\n    indented",
        ),
    ],
)
async def test_error_replies_raise_and_keep_the_session(
    open_call: OpenCall, reply: list[str], error: type[AGIError], usage: str | None
) -> None:
    call = await open_call()
    _, task = await exchange(call, call.session.execute("SOME THING", "x"), *reply)
    with pytest.raises(error) as err:
        await task
    assert err.value.command == "SOME THING"
    if usage is not None:
        assert isinstance(err.value, AGIUsageError) and err.value.usage == usage
    assert not call.session.hung_up
    _, task = await exchange(call, call.session.noop(), "200 result=0")
    await task


async def test_511_is_a_dead_channel(open_call: OpenCall) -> None:
    call = await open_call()
    _, task = await exchange(call, call.session.stream_file("beep"), DEAD)
    with pytest.raises(AGIDeadChannel) as err:
        await task
    assert isinstance(err.value, AGIHangup)
    assert call.session.hung_up and call.session.hangup_event.is_set()


async def test_unexpected_code_and_unreadable_results(open_call: OpenCall) -> None:
    call = await open_call()
    _, task = await exchange(call, call.session.noop(), "300 something new")
    with pytest.raises(AGIError, match="unexpected reply code 300"):
        await task
    _, task = await exchange(call, call.session.stream_file("p"), "200 result=abc endpos=1")
    with pytest.raises(AGIError, match="not a number"):
        await task
    _, task = await exchange(call, call.session.get_data("p", 100, 4), f"200 result={CARD}x")
    with pytest.raises(AGIError) as err:
        await task
    assert CARD not in str(err.value)


# -- hang-up notices -----------------------------------------------------------------------------


async def test_hangup_before_the_result_line(open_call: OpenCall) -> None:
    call = await open_call()
    _, task = await exchange(call, call.session.get_data("p", 5000, 19), "HANGUP", "200 result=-1")
    with pytest.raises(AGIHangup):
        await task
    assert call.session.hung_up and call.session.hangup_event.is_set()
    # The stream is in step: the HANGUP line was not taken as the reply.
    _, task = await exchange(call, call.session.get_variable("X"), "200 result=1 (x)")
    assert await task == "x"


@pytest.mark.parametrize(
    ("helper", "reply"),
    [
        ("stream_file", "200 result=-1 endpos=480"),
        ("get_option", "200 result=-1 endpos=0"),
        ("say_digits", "200 result=-1"),
        ("answer", "200 result=-1"),
        ("wait_for_digit", "200 result=-1"),
    ],
)
async def test_hangup_then_minus_one_on_io_commands(
    open_call: OpenCall, helper: str, reply: str
) -> None:
    call = await open_call()
    s = call.session
    coros = {
        "stream_file": lambda: s.stream_file("p", "1"),
        "get_option": lambda: s.get_option("p", "1", 100),
        "say_digits": lambda: s.say_digits(12),
        "answer": lambda: s.answer(),
        "wait_for_digit": lambda: s.wait_for_digit(100),
    }
    _, task = await exchange(call, coros[helper](), "HANGUP", reply)
    with pytest.raises(AGIHangup):
        await task


async def test_hangup_after_the_result_line(open_call: OpenCall) -> None:
    call = await open_call()
    s = call.session
    _, task = await exchange(call, s.get_data("p", 5000, 19), "200 result=-1")
    result = await task
    assert (result.digits, result.failed, s.hung_up) == ("", True, False)
    await call.peer.send("HANGUP")
    await s.hangup_event.wait()
    assert s.hung_up
    _, task = await exchange(call, s.stream_file("p"), DEAD)
    with pytest.raises(AGIDeadChannel):
        await task


async def test_missing_prompt_minus_one_without_hangup(open_call: OpenCall) -> None:
    call = await open_call()
    s = call.session
    _, task = await exchange(call, s.stream_file("nope", "12"), "200 result=-1 endpos=0")
    assert (await task).failed
    _, task = await exchange(call, s.answer(), "200 result=-1")
    assert await task is False
    assert not s.hung_up


async def test_hangup_between_commands_twice_and_mid_command(open_call: OpenCall) -> None:
    call = await open_call()
    s = call.session
    _, task = await exchange(call, s.noop(), "200 result=0")
    await task
    await call.peer.send("HANGUP", "HANGUP")
    await s.hangup_event.wait()
    # A HANGUP in the middle of a command that still works after a hang-up changes nothing.
    _, task = await exchange(call, s.set_variable("A", "b"), "HANGUP", "200 result=1")
    assert await task is None
    _, task = await exchange(call, s.get_variable("A"), "200 result=1 (b)", "HANGUP")
    assert await task == "b"
    assert s.hung_up


# -- connection failures -------------------------------------------------------------------------


async def test_eof_mid_command(open_call: OpenCall) -> None:
    call = await open_call()
    s = call.session
    task = asyncio.create_task(s.get_data("p", 5000, 19))
    assert await call.peer.recv() == b"GET DATA p 5000 19\n"
    await call.peer.close()
    with pytest.raises(AGIConnectionLost):
        await task
    assert s.hung_up and s.closed
    with pytest.raises(AGIConnectionLost):
        await s.noop()


async def test_eof_while_idle(open_call: OpenCall) -> None:
    call = await open_call()
    call.peer.writer.write_eof()
    await call.session.hangup_event.wait()
    assert call.session.hung_up and call.session.closed
    with pytest.raises(AGIConnectionLost):
        await call.session.noop()
    call.finish.set()  # the handler returns: the server closes the socket
    assert await call.peer.read_to_eof() == b""  # and nothing was sent


async def test_reply_with_no_command_outstanding_closes(open_call: OpenCall) -> None:
    call = await open_call()
    await call.peer.send("200 result=0")
    await peer_sees_close(call.peer)
    assert call.session.closed and not call.session.hung_up
    with pytest.raises(AGIConnectionLost, match="protocol error"):
        await call.session.noop()


async def test_garbage_reply_mid_command(open_call: OpenCall) -> None:
    call = await open_call()
    _, task = await exchange(call, call.session.get_data("p", 100, 19), f"OK {CARD}")
    with pytest.raises(AGIProtocolError) as err:
        await task
    assert CARD not in str(err.value)
    await peer_sees_close(call.peer)


async def test_reply_line_over_the_limit(open_call: OpenCall) -> None:
    call = await open_call(line_max_bytes=256)
    _, task = await exchange(
        call, call.session.get_variable("V"), "200 result=1 (" + "x" * 600 + ")"
    )
    with pytest.raises(AGIProtocolError):
        await task


async def test_command_timeout_closes_the_session(open_call: OpenCall) -> None:
    call = await open_call()
    s = call.session
    task = asyncio.create_task(s.execute("NOOP", timeout=0.05))
    assert await call.peer.recv() == b"NOOP\n"
    with pytest.raises(AGICommandTimeout):
        await task
    assert s.closed
    await peer_sees_close(call.peer)
    with pytest.raises(AGIConnectionLost):
        await s.noop()


async def test_default_command_timeout_from_the_server(open_call: OpenCall) -> None:
    call = await open_call(command_timeout=0.05)
    task = asyncio.create_task(call.session.wait_for_digit(5000))
    await call.peer.recv()
    with pytest.raises(AGICommandTimeout):
        await task


async def test_concurrent_execute_is_refused(open_call: OpenCall) -> None:
    call = await open_call()
    s = call.session
    first = asyncio.create_task(s.noop())
    assert await call.peer.recv() == b"NOOP\n"
    assert s.busy
    with pytest.raises(RuntimeError, match="must not overlap"):
        await s.get_variable("X")
    with pytest.raises(RuntimeError):
        await s.execute_line(b"NOOP\n")
    await call.peer.send("200 result=0")
    await first
    # Nothing of the refused command reached the wire.
    _, task = await exchange(call, s.get_variable("Y"), "200 result=0")
    assert await task is None


async def test_bad_arguments_are_refused_and_nothing_is_sent(open_call: OpenCall) -> None:
    call = await open_call()
    s = call.session
    refused = [
        s.set_variable("V", "a\nEXEC System x"),
        s.set_variable("V", "a\r"),
        s.stream_file("beep\0"),
        s.verbose("two\nlines"),
        s.stream_file("beep", "12x"),
        s.get_option("beep", '1"'),
        s.exec("Sys tem"),
        s.exec("Set", "A=b\n"),
        s.execute_line(b"NOOP"),
        s.execute_line(b"NOOP\nNOOP\n"),
        s.execute_line(b"NO\0OP\n"),
    ]
    for coro in refused:
        with pytest.raises(AGIArgumentError):
            await coro
    line, task = await exchange(call, s.noop(), "200 result=0")
    assert line == b"NOOP\n"
    await task


async def test_cancelled_command_drops_the_session(open_call: OpenCall) -> None:
    call = await open_call()
    task = asyncio.create_task(call.session.get_data("p", 5000, 4))
    await call.peer.recv()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert call.session.closed
    await peer_sees_close(call.peer)
    with pytest.raises(AGIConnectionLost):
        await call.session.noop()


# -- typed helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "wire", "reply", "expected"),
    [
        (
            "stream_offset",
            b'STREAM FILE p "0123456789*#" 160\n',
            "200 result=35 endpos=800",
            ("#", 800),
        ),
        ("option_no_timeout", b'GET OPTION p "1"\n', "200 result=49 endpos=3", ("1", 3)),
        ("say_number_gender", b'SAY NUMBER 5 "" f\n', "200 result=0", (None, 0)),
        ("say_digits_escape", b'SAY DIGITS 0042 "*"\n', "200 result=42", ("*", 0)),
        ("music_on", b"SET MUSIC ON\n", "200 result=0", None),
        ("music_class", b"SET MUSIC ON hold\n", "200 result=0", None),
        ("music_off", b"SET MUSIC OFF\n", "200 result=0", None),
        ("hangup", b"HANGUP\n", "200 result=1", True),
        ("hangup_other", b"HANGUP PJSIP/x-1\n", "200 result=-1", False),
        ("exec_options", b"EXEC Dial PJSIP/1001,30,tT\n", "200 result=0", 0),
        ("exec_bare", b"EXEC NoOp\n", "200 result=0", 0),
        ("exec_spaces", b'EXEC Set "A=b c"\n', "200 result=0", 0),
        ("wait_hash", b"WAIT FOR DIGIT 100\n", "200 result=35", "#"),
        ("data_star", b"GET DATA p 6000 19\n", "200 result=12* (timeout)", ("12*", True)),
        ("full_var_channel", b"GET FULL VARIABLE ${X} PJSIP/y\n", "200 result=0", None),
        ("latin1_var", b"GET VARIABLE N\n", b"200 result=1 (caf\xe9)", "café"),
        ("verbose_quotes", b'VERBOSE "say \\"hi\\"" 3\n', "200 result=1", None),
    ],
)
async def test_typed_helpers_on_the_wire(
    open_call: OpenCall, name: str, wire: bytes, reply: str | bytes, expected: Any
) -> None:
    call = await open_call()
    s = call.session

    async def data_pair() -> tuple[str, bool]:
        r = await s.get_data("p", 6000, 19)
        return r.digits, r.timed_out

    async def play(coro: Any) -> tuple[str | None, int]:
        r = await coro
        return r.digit, r.endpos

    coros = {
        "stream_offset": lambda: play(s.stream_file("p", "0123456789*#", offset=160)),
        "option_no_timeout": lambda: play(s.get_option("p", "1")),
        "say_number_gender": lambda: play(s.say_number(5, gender="f")),
        "say_digits_escape": lambda: play(s.say_digits("0042", "*")),
        "music_on": lambda: s.set_music(True),
        "music_class": lambda: s.set_music(True, "hold"),
        "music_off": lambda: s.set_music(False),
        "hangup": lambda: s.hangup(),
        "hangup_other": lambda: s.hangup("PJSIP/x-1"),
        "exec_options": lambda: s.exec("Dial", "PJSIP/1001", 30, "tT"),
        "exec_bare": lambda: s.exec("NoOp"),
        "exec_spaces": lambda: s.exec("Set", "A=b c"),
        "wait_hash": lambda: s.wait_for_digit(100),
        "data_star": data_pair,
        "full_var_channel": lambda: s.get_full_variable("${X}", "PJSIP/y"),
        "latin1_var": lambda: s.get_variable("N"),
        "verbose_quotes": lambda: s.verbose('say "hi"', 3),
    }
    line, task = await exchange(call, coros[name](), reply)
    assert line == wire
    assert await task == expected


async def test_sensitive_results_stay_out_of_logs_errors_and_reprs(open_call: OpenCall) -> None:
    with structlog.testing.capture_logs() as logs:
        call = await open_call()
        s = call.session
        _, task = await exchange(call, s.get_data("p", 6000, 19), f"200 result={CARD}")
        data = await task
        assert data.digits == CARD
        _, task = await exchange(call, s.wait_for_digit(100), "200 result=57")
        assert await task == "9"
        _, task = await exchange(call, s.stream_file("p", "0123456789"), "200 result=55 endpos=1")
        played = await task
        _, task = await exchange(
            call, s.execute("GET DATA", "p", 1, 19, sensitive=True), f"200 result={CARD}"
        )
        reply = await task
        _, task = await exchange(call, s.get_data("p", 6000, 19), f"200 result={CARD} (x")
        await task  # an odd tail: still no digits anywhere
    assert logs, "the session logs its commands at debug level"
    dumped = json.dumps(logs, default=str)
    assert CARD not in dumped
    replies = [e for e in logs if e["event"] == "agi reply"]
    assert replies and all("result" not in e and "data" not in e for e in replies)
    for obj in (data, played, reply):
        assert CARD not in repr(obj) and "'7'" not in repr(obj)
    assert reply.sensitive and reply.result == CARD


# -- closing -------------------------------------------------------------------------------------


async def test_close_half_closes_and_waits_for_asterisk(open_call: OpenCall) -> None:
    call = await open_call()
    s = call.session
    closing = [asyncio.create_task(s.close()) for _ in range(2)]  # idempotent, even concurrently
    assert await call.peer.read_to_eof() == b""  # our side is shut: EOF, nothing else
    assert not any(t.done() for t in closing)  # still waiting for Asterisk
    await call.peer.send("HANGUP")  # as Asterisk does after the script's EOF
    call.peer.writer.write_eof()
    await asyncio.gather(*closing)
    assert s.closed and s.hung_up
    await s.close()
    with pytest.raises(AGIConnectionLost):
        await s.noop()


async def test_close_is_bounded_when_the_peer_stays(open_call: OpenCall) -> None:
    call = await open_call(close_timeout=0.05)
    await call.session.close()  # the peer never closes: close gives up after close_timeout
    assert call.session.closed
    await peer_sees_close(call.peer)


async def test_close_while_a_command_is_outstanding(open_call: OpenCall) -> None:
    call = await open_call()
    task = asyncio.create_task(call.session.noop())
    await call.peer.recv()
    await call.session.close()
    with pytest.raises(AGIConnectionLost):
        await task
    await peer_sees_close(call.peer)


# -- review findings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "args", "raw"),
    [
        ("GET DATA", ("p", 6000, 4), None),
        ("get data", ("p", 6000, 4), None),  # Asterisk matches command words in any case
        ("WAIT FOR DIGIT", (100,), None),
        ("GET OPTION", ("p", "1", 100), None),
        ("STREAM FILE", ("p", "0123456789"), None),
        ("SAY DIGITS", (12, "0123456789"), None),
        ("CONTROL STREAM FILE", ("p", "1"), None),
        ("RECEIVE TEXT", (100,), None),
        ("GET DATA", (), b"GET DATA p 6000 4\n"),
        ("GET DATA", (), b"Wait  For Digit 100\n"),
    ],
)
async def test_input_commands_are_sensitive_whoever_sends_them(
    open_call: OpenCall, command: str, args: tuple, raw: bytes | None
) -> None:
    """agi.md / product.md: results of input commands are marked sensitive *in the protocol
    layer* — not only when a helper remembers to ask. An expiry or security code (4 or 3 digits)
    would pass the card-number masker, so it must never reach a log line or a repr at all."""
    with structlog.testing.capture_logs() as logs:
        call = await open_call()
        coro = (
            call.session.execute(command, *args) if raw is None else call.session.execute_line(raw)
        )
        _, task = await exchange(call, coro, "200 result=1231 (timeout)")
        reply = await task
    assert reply.sensitive and reply.result == "1231"
    assert "1231" not in repr(reply)
    assert "1231" not in json.dumps(logs, default=str)


@pytest.mark.parametrize(
    ("helper", "limit"),
    [("get_data", "0.05"), ("wait_for_digit", "0.04"), ("get_option", "0.04")],
)
async def test_input_commands_may_wait_as_long_as_the_caller_may(
    open_call: OpenCall, helper: str, limit: str
) -> None:
    """agi.md "A command whose reply does not come within its timeout ends the session" — its
    own timeout: GET DATA may legitimately take its prompt plus ``timeout × max digits`` (each
    key restarts the wait), WAIT FOR DIGIT / GET OPTION their wait. A flat limit cut a slow
    caller's 19-digit entry short (19 × 6 s > 120 s with a prompt) and dropped the call."""
    call = await open_call(command_timeout=0.01)
    s = call.session
    coros = {
        "get_data": lambda: s.get_data("p", 20, 2),  # 0.01 + 2 × 0.02
        "wait_for_digit": lambda: s.wait_for_digit(30),  # 0.01 + 0.03
        "get_option": lambda: s.get_option("p", "1", 30),  # 0.01 + 0.03
    }
    task = asyncio.create_task(coros[helper]())
    await call.peer.recv()
    with pytest.raises(AGICommandTimeout, match=rf"within {limit} s"):
        await task


async def test_an_endless_wait_for_digit_is_not_cut_by_the_default_limit(
    open_call: OpenCall,
) -> None:
    """``WAIT FOR DIGIT -1`` blocks until a key by design: the default limit does not apply."""
    call = await open_call(command_timeout=0.01)
    task = asyncio.create_task(call.session.wait_for_digit(-1))
    assert await call.peer.recv() == b"WAIT FOR DIGIT -1\n"
    # Well past the 10 ms default the session is still open (a timeout would have aborted it).
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(call.peer.reader.read(1), 0.2)
    await call.peer.send("200 result=50")
    assert await task == "2"
