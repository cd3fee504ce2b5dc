"""The scripted caller and the stand-in's Asterisk behaviour, over real sockets: key scripting,
barge-in, key timing, hang-ups at any moment, variables, prompts and protocol errors."""

from __future__ import annotations

import asyncio
import socket

import pytest

from ivrpay.simulator import ChannelSpec, Ending, SimulatedCall, place_call
from tests.simulator.conftest import IO_TIMEOUT, AgiServer, Peer

DIGITS = '"0123456789*#"'


async def open_call(server: AgiServer, **options) -> tuple[SimulatedCall, Peer]:
    options.setdefault("silence_timeout", IO_TIMEOUT)
    call = SimulatedCall(server.host, server.port, **options)
    await call.start()
    return call, await server.accept()


async def end_call(call: SimulatedCall, peer: Peer, expected: bytes = b"HANGUP\n"):
    assert await peer.finish() == expected
    return await call.wait()


# ----------------------------------------------------------------- GET DATA and key scripting
async def test_get_data_entries(raw_server) -> None:
    call, peer = await open_call(
        raw_server, keys="4111111111111111# 41 # 1231# _ 12345 ~9", sounds_dir=None
    )
    assert await peer.result("GET DATA ivrpay/enter_card 6000 19") == "200 result=4111111111111111"
    assert await peer.result("GET DATA x 6000 19") == "200 result=41 (timeout)"
    assert await peer.result("GET DATA x 6000 19") == "200 result="  # a lone #
    assert await peer.result("GET DATA x 6000 4") == "200 result=1231"  # max digits: at once
    assert await peer.result("SET VARIABLE A 1") == "200 result=1"  # listens to no key
    assert await peer.result("GET DATA x 6000 3") == "200 result="  # the left-over '#'
    assert await peer.result("GET DATA x 6000 3") == "200 result= (timeout)"  # '_'
    assert await peer.result("GET DATA x 6000 4") == "200 result=1234"
    assert await peer.result("WAIT FOR DIGIT 3000") == "200 result=53"  # the left-over 5
    assert await peer.result("GET DATA x 6000 4") == "200 result=9 (timeout)"  # ~ at a request
    assert await peer.result("GET DATA x 6000 4") == "200 result= (timeout)"  # none left
    assert await peer.result("GET DATA x 0 0") == "200 result=-1"  # no room: -1 at once
    record = await end_call(call, peer)
    assert [e.keys for e in record.entries] == [
        "************1111#",
        "41",
        "#",
        "1231#",
        "_",
        "12345",
        "~9",
    ]
    assert record.ended == record.outcome == Ending.SERVER_CLOSED and record.ok
    assert "4111111111111111" not in repr(record)
    assert b"200 result=4111111111111111\n" in record.sent()  # the raw wire keeps it


async def test_keys_between_commands_can_be_dropped(raw_server) -> None:
    call, peer = await open_call(raw_server, keys=["1231#", "12345"], carry_over_keys=False)
    assert await peer.result("GET DATA x 3000 4") == "200 result=1231"
    # The '#' was dropped (kept, it would answer "200 result="): the next entry is keyed.
    assert await peer.result("GET DATA x 3000 4") == "200 result=1234"
    assert await peer.result("WAIT FOR DIGIT 1000") == "200 result=0"  # the 5 was dropped too
    call.press("7")  # between commands: nobody listens
    assert await peer.result("WAIT FOR DIGIT 1000") == "200 result=0"
    record = await end_call(call, peer)
    assert record.dropped_keys == 3


async def test_keys_pressed_between_commands_reach_the_next_one(raw_server) -> None:
    call, peer = await open_call(raw_server)
    assert await peer.result("NOOP") == "200 result=0"
    call.press("3")
    assert await peer.result("WAIT FOR DIGIT 1000") == "200 result=51"
    await end_call(call, peer)


async def test_wait_for_digit_and_get_option(raw_server, sounds_dir) -> None:
    call, peer = await open_call(
        raw_server, keys="12 _ 2 7 ~2 ~7", sounds_dir=sounds_dir, channel=ChannelSpec(language="en")
    )
    assert await peer.result("WAIT FOR DIGIT 2000") == "200 result=49"
    assert await peer.result("WAIT FOR DIGIT 2000") == "200 result=50"  # the rest of "12"
    assert await peer.result("WAIT FOR DIGIT 2000") == "200 result=0"  # '_'
    # Keys after the prompt: an escape digit is returned, another key reads as 0.
    assert await peer.result('GET OPTION beep "12" 3000') == "200 result=50 endpos=3520"
    assert await peer.result('GET OPTION beep "12" 3000') == "200 result=0 endpos=3520"
    # Barge-in: an escape digit stops the prompt; another key is swallowed by it.
    assert await peer.result('GET OPTION beep "12" 3000') == "200 result=50 endpos=1120"
    assert await peer.result('GET OPTION beep "12" 3000') == "200 result=0 endpos=3520"
    usage = await peer.command("GET OPTION beep")
    assert usage[0].startswith("520-") and usage[1].startswith("Behaves similar to STREAM FILE")
    await end_call(call, peer)


# ----------------------------------------------------------------- barge-in on prompts
async def test_barge_in_stops_an_escape_digit_prompt_and_keeps_the_rest(
    raw_server, sounds_dir
) -> None:
    call, peer = await open_call(
        raw_server, keys=["~4111111111111111#", "~9", "~1"], sounds_dir=sounds_dir
    )
    # A prompt without escape digits does not take a barge-in entry.
    assert await peer.result('STREAM FILE ivrpay/welcome ""') == "200 result=0 endpos=8000"
    assert await peer.result(f"STREAM FILE ivrpay/card_invalid {DIGITS}") == (
        "200 result=52 endpos=1120"
    )
    # The keys after the one that stopped the prompt land in the next entry.
    assert await peer.result("GET DATA ivrpay/enter_card 6000 19") == ("200 result=111111111111111")
    # A key that is not an escape digit is swallowed by the prompt.
    assert await peer.result('STREAM FILE ivrpay/welcome "12"') == "200 result=0 endpos=8000"
    assert await peer.result("WAIT FOR DIGIT 1000") == "200 result=49"  # '~1' at a request
    record = await end_call(call, peer)
    assert [(p.file, p.interrupted) for p in record.prompts] == [
        ("ivrpay/welcome", False),
        ("ivrpay/card_invalid", True),
        ("ivrpay/enter_card", True),
        ("ivrpay/welcome", False),
    ]
    assert all(p.language == "ja" for p in record.prompts)


async def test_stream_file_offset_and_say(raw_server, sounds_dir) -> None:
    call, peer = await open_call(
        raw_server, keys=["~5"], sounds_dir=sounds_dir, channel=ChannelSpec(language="en")
    )
    assert await peer.result('STREAM FILE beep "" 3000') == "200 result=0 endpos=3520"
    assert await peer.result('STREAM FILE beep "" 9999') == "200 result=0 endpos=3520"
    assert await peer.result('STREAM FILE nonexistent "" 160') == "200 result=-1 endpos=160"
    assert await peer.result(f"SAY DIGITS 1234 {DIGITS}") == "200 result=53"
    assert await peer.result('SAY NUMBER 12800 ""') == "200 result=0"
    assert (await peer.command('SAY DIGITS abc ""'))[0].startswith("520-")
    record = await end_call(call, peer)
    assert record.agistatus == "FAILURE"  # the missing STREAM FILE prompt
    assert record.missing_prompts == ["en/nonexistent"]


# ----------------------------------------------------------------- hang-ups
async def test_hangup_at_an_input_request(raw_server) -> None:
    call, peer = await open_call(raw_server, keys="!")
    assert await peer.command("GET DATA x 6000 19") == ["200 result=-1"]
    assert await peer.line() == "HANGUP"
    assert await peer.result('STREAM FILE x ""') == (
        "511 Command Not Permitted on a dead channel or intercept routine"
    )
    assert await peer.result("STREAM FILE x") == (  # 511 before any argument check
        "511 Command Not Permitted on a dead channel or intercept routine"
    )
    assert await peer.result("SET VARIABLE IVRPAY_STATUS HANGUP") == "200 result=1"
    assert await peer.result("DATABASE PUT f k v") == "200 result=1"
    assert await peer.result("DATABASE GET f k") == "200 result=1 (v)"
    assert await peer.result("EXEC Verbose x") == "200 result=0"
    record = await end_call(call, peer)
    assert record.hung_up and record.hung_up_by == "caller"
    assert record.agistatus == "HANGUP"
    assert record.refused_commands == ["STREAM FILE", "STREAM FILE"]
    assert record.variables == {"IVRPAY_STATUS": "HANGUP"}


async def test_hangup_at_get_option_prompt(raw_server, sounds_dir) -> None:
    call, peer = await open_call(
        raw_server, keys="~!", sounds_dir=sounds_dir, channel=ChannelSpec(language="en")
    )
    # A prompt without escape digits does not take the "~" entry; GET OPTION does.
    assert await peer.result('STREAM FILE beep ""') == "200 result=0 endpos=3520"
    assert await peer.command('GET OPTION beep "1" 1000') == ["200 result=-1 endpos=1120"]
    assert await peer.line() == "HANGUP"
    await end_call(call, peer)


async def test_barge_in_hangup_at_an_escape_digit_prompt(raw_server, sounds_dir) -> None:
    call, peer = await open_call(
        raw_server, keys="~!", sounds_dir=sounds_dir, channel=ChannelSpec(language="en")
    )
    assert await peer.command('STREAM FILE beep "1"') == ["200 result=-1 endpos=1120"]
    assert await peer.line() == "HANGUP"
    record = await end_call(call, peer)
    assert record.agistatus == "HANGUP"  # -1 because of the hang-up is no FAILURE


async def test_hangup_while_idle_is_signalled_at_once(raw_server) -> None:
    call, peer = await open_call(raw_server)
    assert await peer.result("NOOP") == "200 result=0"
    await call.hang_up()
    assert await peer.line() == "HANGUP"  # the server sent nothing: out of band
    assert call.hung_up
    await call.hang_up()  # once only
    assert await peer.result("NOOP") == "200 result=0"
    record = await end_call(call, peer)
    assert record.sent().count(b"HANGUP\n") == 2


async def test_hangup_while_the_server_waits_for_the_gateway(raw_server) -> None:
    task = asyncio.create_task(
        place_call(raw_server.host, raw_server.port, hang_up_at="SET MUSIC ON")
    )
    peer = await raw_server.accept()
    assert peer.env["agi_network_script"] == "pay"
    assert await peer.result("SET MUSIC ON default") == "200 result=0"
    assert await peer.line() == "HANGUP"  # at once, while the server is busy elsewhere
    assert await peer.result("SET MUSIC OFF") == (
        "511 Command Not Permitted on a dead channel or intercept routine"
    )
    assert await peer.finish() == b"HANGUP\n"
    record = await task
    assert record.hung_up and record.agistatus == "HANGUP"


async def test_pause_then_hang_up_during_a_prompt(raw_server, sounds_dir) -> None:
    call = SimulatedCall(
        raw_server.host, raw_server.port, sounds_dir=sounds_dir, channel=ChannelSpec(language="en")
    )
    first = call.pause_at('STREAM FILE demo-instruct ""')
    await call.start()
    peer = await raw_server.accept()
    await peer.send('STREAM FILE demo-instruct ""')
    cmd = await first.reached()
    assert cmd.name == "STREAM FILE" and cmd.index == 0
    await call.hang_up()
    assert await peer.reply() == ["200 result=-1 endpos=1120"]
    assert await peer.line() == "HANGUP"
    record = await end_call(call, peer)
    assert record.prompts[0].interrupted


async def test_hangup_after_the_prompt_played_out(raw_server, sounds_dir) -> None:
    call, peer = await open_call(
        raw_server, sounds_dir=sounds_dir, channel=ChannelSpec(language="en")
    )
    call.on_command(0, lambda c, _cmd: c.hang_up(at_ms=5000))
    call.on_command(1, lambda c, _cmd: c.hang_up(at_ms=5000))
    # The file ends first, then the line drops: a normal answer, then HANGUP.
    assert await peer.command('STREAM FILE beep ""') == ["200 result=0 endpos=3520"]
    assert await peer.line() == "HANGUP"
    await end_call(call, peer)

    call, peer = await open_call(
        raw_server, sounds_dir=sounds_dir, channel=ChannelSpec(language="en")
    )
    call.on_command(0, lambda c, _cmd: c.hang_up(at_ms=5000))
    # GET OPTION's wait after the prompt: -1 becomes 0 (strchr(edigits, -1) fails).
    assert await peer.command('GET OPTION beep "12" 3000') == ["200 result=0 endpos=3520"]
    assert await peer.line() == "HANGUP"
    await end_call(call, peer)


async def test_exit_on_hangup_closes_the_session(raw_server) -> None:
    call, peer = await open_call(raw_server, exit_on_hangup=True)
    assert await peer.result("NOOP") == "200 result=0"
    await call.hang_up()
    assert await peer.rest() == b"HANGUP\nHANGUP\n"  # then Asterisk closes the socket
    record = await call.wait()
    assert record.ended == Ending.CALLER_HUNG_UP and record.ok


async def test_server_hangs_up_the_channel(raw_server) -> None:
    call, peer = await open_call(raw_server)
    assert await peer.result("HANGUP Other/channel") == "200 result=-1"
    assert await peer.result("HANGUP") == "200 result=1"
    assert await peer.line() == "HANGUP"
    record = await end_call(call, peer)
    assert record.hung_up_by == "server"


async def test_pause_that_never_comes(raw_server) -> None:
    call, peer = await open_call(raw_server)
    bp = call.pause_at("GET DATA")
    await end_call(call, peer)
    with pytest.raises(RuntimeError):
        await bp.reached()


# ----------------------------------------------------------------- variables and prompts
async def test_variables_language_and_prompts(raw_server, sounds_dir) -> None:
    call, peer = await open_call(
        raw_server, sounds_dir=sounds_dir, args=("123456", "PJSIP/1001-0000002a")
    )
    assert peer.env["agi_arg_1"] == "123456"
    assert peer.env["agi_arg_2"] == "PJSIP/1001-0000002a"
    assert peer.env["agi_language"] == "ja"
    assert await peer.result("GET VARIABLE CHANNEL(language)") == "200 result=1 (ja)"
    assert await peer.result('STREAM FILE ivrpay/card_invalid ""') == "200 result=0 endpos=6400"
    assert await peer.result('STREAM FILE ivrpay/missing ""') == "200 result=-1 endpos=0"
    assert await peer.result('STREAM FILE beep ""') == "200 result=0 endpos=3520"  # en fallback
    assert await peer.result("SET VARIABLE CHANNEL(language) en") == "200 result=1"
    # Only in ja: not found for an en channel (Asterisk falls back to en, never away from it).
    assert await peer.result('STREAM FILE ivrpay/card_invalid ""') == "200 result=-1 endpos=0"
    assert await peer.result("EXEC Set IVRPAY_STATUS=SUCCEEDED") == "200 result=0"
    assert await peer.result("SET VARIABLE IVRPAY_PAYMENT_ID pay_1") == "200 result=1"
    assert await peer.result("SET VARIABLE IVRPAY_PAYMENT_ID pay_2") == "200 result=1"
    assert await peer.result("GET FULL VARIABLE ${CHANNEL(language)}-${NOPE}-${IVRPAY_STATUS}") == (
        "200 result=1 (en--SUCCEEDED)"
    )
    assert await peer.result("GET FULL VARIABLE x OtherChannel") == "200 result=0"
    assert await peer.result("EXEC Playback ivrpay/welcome&ivrpay/nope") == "200 result=0"
    assert await peer.result("GET VARIABLE PLAYBACKSTATUS") == "200 result=1 (FAILED)"
    assert await peer.result("EXEC Gosub sub,s,1(a,b)") == "200 result=0"
    assert await peer.result("GET VARIABLE ARG2") == "200 result=1 (b)"
    assert await peer.result("EXEC NoSuchApp") == "200 result=-2"
    assert await peer.command("GOSUB sub s 1") == [
        "100 result=0 Trying...",
        "200 result=0 Gosub complete",
    ]
    record = await end_call(call, peer)
    assert record.variables == {
        "CHANNEL(language)": "en",
        "IVRPAY_STATUS": "SUCCEEDED",
        "IVRPAY_PAYMENT_ID": "pay_2",
    }
    assert [(p.wanted, p.missing) for p in record.prompts] == [
        ("ja/ivrpay/card_invalid", False),
        ("ja/ivrpay/missing", True),
        ("ja/beep", False),
        ("en/ivrpay/card_invalid", True),
        ("en/ivrpay/welcome", False),
        ("en/ivrpay/nope", True),
    ]
    assert record.prompts[2].played_from == "en"
    assert record.missing_prompts == [
        "ja/ivrpay/missing",
        "en/ivrpay/card_invalid",
        "en/ivrpay/nope",
    ]
    assert record.fallback_prompts == ["ja/beep"]
    assert record.agistatus == "FAILURE"  # missing STREAM FILE prompts


async def test_card_digits_in_a_command_are_flagged(raw_server) -> None:
    call, peer = await open_call(raw_server)
    assert await peer.result("SET VARIABLE LAST4 1111") == "200 result=1"
    assert await peer.result("SET VARIABLE OOPS 4111111111111111") == "200 result=1"
    assert await peer.result("SET VARIABLE UUID 446655440000") == "200 result=1"  # not Luhn
    # A payment id whose last group happens to be a Luhn-valid run of digits is no card number.
    uuid = "ef325957-f835-4537-947b-411111111117"
    assert await peer.result(f"SET VARIABLE IVRPAY_PAYMENT_ID {uuid}") == "200 result=1"
    assert await peer.result("SET VARIABLE OOPS2 x4111111111111111") == "200 result=1"
    record = await end_call(call, peer)
    assert record.card_like_commands == [1, 4]
    assert "4111111111111111" not in repr(record)


# ----------------------------------------------------------------- protocol errors
async def test_bad_commands_are_answered_as_asterisk_does(raw_server) -> None:
    call, peer = await open_call(raw_server)
    assert await peer.result("BOGUS") == "510 Invalid or unknown command"
    assert await peer.result("200 result=0") == "510 Invalid or unknown command"
    assert await peer.result("RECORD FILE x wav # 1000") == "510 Invalid or unknown command"
    usage = await peer.command("WAIT FOR DIGIT")
    assert usage[0] == "520-Invalid command syntax.  Proper usage follows:"
    assert usage[-1] == "520 End of proper usage."
    assert (await peer.command("SET VARIABLE X"))[0].startswith("520-")
    assert await peer.result(b"NOOP \xff") == "200 result=0"
    assert await peer.result("NOOP") == "200 result=0"
    record = await end_call(call, peer)
    assert record.unsimulated == ["RECORD FILE"]
    errors = "\n".join(record.protocol_errors)
    assert "unknown command" in errors and "a reply line" in errors and "non-ASCII" in errors
    assert "(520)" in errors
    assert record.ended == Ending.SERVER_CLOSED and record.outcome == Ending.PROTOCOL_ERROR
    assert not record.ok


async def test_a_pipelined_command_aborts_the_playing_one(raw_server, sounds_dir) -> None:
    call, peer = await open_call(
        raw_server, sounds_dir=sounds_dir, channel=ChannelSpec(language="en")
    )
    await peer.send('STREAM FILE beep ""\nNOOP')
    assert await peer.reply() == ["200 result=0"]  # the STREAM FILE got no reply at all
    record = await end_call(call, peer)
    assert any("aborted without a reply" in e for e in record.protocol_errors)


async def test_overlong_command_is_split_as_asterisk_reads_it(raw_server) -> None:
    call, peer = await open_call(raw_server)
    await peer.send("NOOP " + "x" * 3000)
    assert await peer.reply() == ["200 result=0"]
    assert await peer.reply() == ["510 Invalid or unknown command"]
    record = await end_call(call, peer)
    assert any("longer than 2046" in e for e in record.protocol_errors)


async def test_garbage_gets_answers_never_a_crash(raw_server) -> None:
    call, peer = await open_call(raw_server)
    await peer.send(b"\x00\xff" * 3000)
    await peer.send("NOOP")
    replies = []
    while not replies or replies[-1] != "200 result=0":
        replies.append(await peer.line())
    assert set(replies[:-1]) == {"510 Invalid or unknown command"}
    assert len(replies) == 4  # 6000 bytes: three reads of at most 2047, then NOOP
    record = await end_call(call, peer)
    assert record.ended == Ending.SERVER_CLOSED and record.protocol_errors


async def test_a_server_that_stops_reading_ends_the_call(raw_server) -> None:
    call, peer = await open_call(raw_server, silence_timeout=0.3)
    peer.writer.transport.pause_reading()  # the server no longer reads what Asterisk writes
    peer.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer.writer.write(b"SET VARIABLE V " + b"y" * 1900 + b"\n")
    peer.writer.write(b"GET VARIABLE V\n" * 3000)  # 6 MB of replies: more than buffers hold
    record = await asyncio.wait_for(call.wait(), IO_TIMEOUT)
    assert record.ended == Ending.SERVER_SILENT
    assert any(getattr(n, "text", "") == "the server stopped reading" for n in record.timeline)


async def test_failure_line_ends_the_session(raw_server) -> None:
    call, peer = await open_call(raw_server)
    await peer.send("FAILURE: cannot start\nNOOP")
    assert await peer.rest() == b"HANGUP\n"
    record = await call.wait()
    assert record.ended == Ending.SERVER_FAILURE and record.agistatus == "FAILURE"
    assert any("after the session ended" in e for e in record.protocol_errors)
    assert not record.ok


async def test_a_silent_server_ends_the_call(raw_server) -> None:
    call, peer = await open_call(raw_server, silence_timeout=0.2)
    assert await peer.rest() == b"HANGUP\n"
    record = await call.wait()
    assert record.ended == Ending.SERVER_SILENT and not record.ok


async def test_last_command_without_newline(raw_server) -> None:
    call, peer = await open_call(raw_server)
    peer.writer.write(b"NOOP")
    assert await peer.finish() == b"200 result=0\nHANGUP\n"
    record = await call.wait()
    assert any("no newline" in e for e in record.protocol_errors)


async def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        await place_call("127.0.0.1", port)


# ----------------------------------------------------------------- review findings
async def test_any_pipelined_command_is_a_protocol_error(raw_server) -> None:
    """agi.md "never pipeline": Asterisk answers two quick commands one after the other, but a
    server that sends the next command before the reply is broken whatever the commands are —
    the stand-in must say so (and ``ivrpay call`` exit 1), not only for a playing prompt."""
    call, peer = await open_call(raw_server)
    await peer.send("SET VARIABLE A 1\nSET VARIABLE B 2")
    assert await peer.reply() == ["200 result=1"]  # answered as Asterisk answers them
    assert await peer.reply() == ["200 result=1"]
    assert await peer.result("NOOP") == "200 result=0"  # in step again: no error for this one
    record = await end_call(call, peer)
    errors = [e for e in record.protocol_errors if "before the reply" in e]
    assert len(errors) == 1 and errors[0].startswith("command 1:")
    assert record.variables == {"A": "1", "B": "2"}
    assert not record.ok


async def test_protocol_errors_never_show_part_of_a_card_number(raw_server) -> None:
    """Card data rule: a protocol error quoting a command cuts it to 60 characters — after
    masking, or the cut leaves up to 11 leading digits of a card number unmasked."""
    call, peer = await open_call(raw_server)
    line = "SET VARIABLE " + "X" * 36 + " 4111111111111111\r"  # the number straddles the cut
    assert await peer.result(line) == "200 result=1"
    record = await end_call(call, peer)
    assert any("CR in the command" in e for e in record.protocol_errors)
    assert not any("41111" in e for e in record.protocol_errors), record.protocol_errors
