"""Every real Asterisk transcript replayed against the server, byte for byte.

A dumb peer plays the ``A>`` lines in answer to the ``S>`` lines; a handler drives the session with
the transcript's commands and asserts what each typed helper returned or raised. Unprompted
``HANGUP`` lines go out when the handler releases them, so the hang-up timing is deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from ivrpay.agi.errors import AGIDeadChannel, AGIInvalidCommand, AGIUsageError
from ivrpay.agi.session import AGISession
from tests.support.agi import ReplayPeer, load_transcript, transcript_names

Script = Callable[[AGISession, ReplayPeer], Awaitable[None]]
SCRIPTS: dict[str, Script] = {}


def script(name: str) -> Callable[[Script], Script]:
    def register(fn: Script) -> Script:
        SCRIPTS[name] = fn
        return fn

    return register


async def hangup_arrives(s: AGISession, peer: ReplayPeer) -> None:
    """Let the peer send its unprompted HANGUP, and wait until the session has seen it."""
    assert not s.hung_up
    peer.release()
    await s.hangup_event.wait()
    assert s.hung_up


@script("01-env-and-basics")
async def _01(s: AGISession, peer: ReplayPeer) -> None:
    env = s.env
    assert env.script == "01-env-and-basics"
    assert env.network_script == "01-env-and-basics?lang=ja"
    assert env.query == {"lang": "ja"}
    assert env.args == ["arg1", ""]
    assert env.uniqueid == "1795788781.42"
    assert env.channel == "Local/s@tr-caller-00000015;1"
    assert env.language == "en"
    assert env.callerid == "5551234"
    assert env.threadid == "140537309042368"
    assert env["agi_accountcode"] == ""
    assert env["agi_request"] == "agi://127.0.0.1:4573/01-env-and-basics?lang=ja"
    assert len(env) == 24

    assert await s.answer() is True
    r = await s.say_number(12800)
    assert (r.digit, r.failed) == (None, False)
    r = await s.say_digits("1234")
    assert (r.digit, r.failed) == (None, False)
    await s.set_variable("CHANNEL(language)", "en")
    assert await s.get_variable("CHANNEL(language)") == "en"
    assert await s.get_variable("UNSET_THING") is None
    assert await s.get_full_variable("${CHANNEL}") == "Local/s@tr-caller-00000015;1"
    await s.set_variable("FOO", "bar baz")
    assert await s.get_variable("FOO") == "bar baz"
    assert await s.exec("Playback", "beep") == 0
    assert await s.exec("NoSuchApp", "x") == -2
    await s.verbose("hello", 1)
    await s.noop()
    assert not s.hung_up


@script("02-get-data-full-entry")
async def _02(s: AGISession, peer: ReplayPeer) -> None:
    r = await s.get_data("beep", 5000, 19)
    assert (r.digits, r.timed_out, r.failed) == ("4111111111111111", False, False)


@script("03-get-data-max-digits-then-hash")
async def _03(s: AGISession, peer: ReplayPeer) -> None:
    r = await s.get_data("beep", 5000, 4)
    assert (r.digits, r.timed_out, r.failed) == ("1231", False, False)
    r = await s.get_data("beep", 5000, 4)  # the caller's '#' landed in this one
    assert (r.digits, r.timed_out, r.failed) == ("", False, False)
    r = await s.get_data("beep", 5000, 4)
    assert (r.digits, r.timed_out, r.failed) == ("123", False, False)


@script("03b-key-pressed-between-commands-is-dropped")
async def _03b(s: AGISession, peer: ReplayPeer) -> None:
    r = await s.get_data("beep", 5000, 4)
    assert (r.digits, r.timed_out) == ("1231", False)
    r = await s.get_data("beep", 3000, 4)
    assert (r.digits, r.timed_out, r.failed) == ("", True, False)


@script("04-get-data-timeouts")
async def _04(s: AGISession, peer: ReplayPeer) -> None:
    r = await s.get_data("beep", 5000, 19)
    assert (r.digits, r.timed_out, r.failed) == ("41", True, False)
    r = await s.get_data("beep", 3000, 19)
    assert (r.digits, r.timed_out, r.failed) == ("", True, False)
    assert await s.wait_for_digit(2000) is None


@script("05-stream-file-and-get-option")
async def _05(s: AGISession, peer: ReplayPeer) -> None:
    r = await s.stream_file("beep", "12")
    assert (r.digit, r.endpos, r.failed) == ("1", 1120, False)
    r = await s.stream_file("beep")
    assert (r.digit, r.endpos, r.failed) == (None, 3520, False)
    assert await s.wait_for_digit(3000) is None
    r = await s.stream_file("nonexistent_prompt")
    assert (r.digit, r.endpos, r.failed) == (None, 0, True)
    assert not s.hung_up
    r = await s.get_option("beep", "12", 3000)
    assert (r.digit, r.endpos, r.failed) == ("2", 1120, False)


@script("05b-stream-file-and-get-option-extras")
async def _05b(s: AGISession, peer: ReplayPeer) -> None:
    r = await s.stream_file("beep", "12")
    assert (r.digit, r.endpos, r.failed) == (None, 3520, False)
    r = await s.stream_file("beep", "12")  # a non-escape key is swallowed
    assert (r.digit, r.endpos, r.failed) == (None, 3520, False)
    r = await s.get_option("beep", "12", 3000)
    assert (r.digit, r.endpos) == ("2", 3520)
    r = await s.get_option("beep", "12", 2000)
    assert (r.digit, r.endpos, r.failed) == (None, 3520, False)
    r = await s.get_option("beep", "12", 3000)
    assert (r.digit, r.endpos, r.failed) == (None, 3520, False)


@script("05c-missing-file-sets-agistatus-failure")
async def _05c(s: AGISession, peer: ReplayPeer) -> None:
    r = await s.stream_file("nonexistent_prompt")
    assert (r.digit, r.endpos, r.failed) == (None, 0, True)
    await s.noop()
    assert not s.hung_up


@script("06-bad-commands")
async def _06(s: AGISession, peer: ReplayPeer) -> None:
    with pytest.raises(AGIUsageError) as usage:
        await s.execute("STREAM FILE", "beep")
    assert usage.value.usage.startswith("Send the given file, allowing playback")
    assert usage.value.usage.splitlines()[-1] == "    <value>FAILED</value>"
    assert len(usage.value.usage.splitlines()) == 5
    with pytest.raises(AGIUsageError) as usage:
        await s.say_digits("abc")
    assert usage.value.usage.startswith("Say a given digit string")
    with pytest.raises(AGIUsageError) as usage:
        await s.execute("GET DATA")
    assert usage.value.usage.splitlines() == [
        "Stream the given <replaceable>file</replaceable>, and receive DTMF data.",
        "Returns the digits received from the channel at the other end.",
    ]
    with pytest.raises(AGIInvalidCommand):
        await s.execute("BOGUS COMMAND")
    # The next three are wire oddities execute() refuses to build: send them raw.
    with pytest.raises(AGIInvalidCommand):
        await s.execute_line(b"\n")
    with pytest.raises(AGIInvalidCommand):
        await s.execute_line(b"NOOP\r\n")
    reply = await s.execute_line(b"GET VARIABLE CHANNEL(language)\r\n")
    assert (reply.code, reply.result, reply.data) == (200, "0", None)
    await s.noop()


@script("07-hangup-during-get-data")
async def _07(s: AGISession, peer: ReplayPeer) -> None:
    r = await s.get_data("beep", 10000, 19)
    # -1 before the HANGUP notice: not yet provably a hang-up.
    assert (r.digits, r.failed) == ("", True)
    await hangup_arrives(s, peer)
    with pytest.raises(AGIDeadChannel):
        await s.stream_file("beep")
    with pytest.raises(AGIDeadChannel):
        await s.get_data("beep", 1000, 4)
    await s.set_variable("AFTER_HANGUP", "yes")
    assert await s.get_variable("AFTER_HANGUP") == "yes"
    assert await s.exec("Verbose", "hello") == 0
    await s.verbose("hello", 1)
    await s.noop()


@script("08-hangup-while-server-idle")
async def _08(s: AGISession, peer: ReplayPeer) -> None:
    await s.noop()
    await hangup_arrives(s, peer)
    await s.noop()
    with pytest.raises(AGIDeadChannel):
        await s.stream_file("beep")
    await s.set_variable("X", 1)


@script("09-hangup-during-stream-file")
async def _09(s: AGISession, peer: ReplayPeer) -> None:
    r = await s.stream_file("demo-instruct")
    assert (r.digit, r.endpos, r.failed) == (None, 12160, True)
    await hangup_arrives(s, peer)
    await s.noop()


@script("09b-hangup-during-exec-playback")
async def _09b(s: AGISession, peer: ReplayPeer) -> None:
    files = "&".join(f"digits/{n}" for n in range(1, 10))
    assert await s.exec("Playback", files) == -1
    await hangup_arrives(s, peer)
    await s.noop()


@script("10-hangup-during-get-data-agiexitonhangup")
async def _10(s: AGISession, peer: ReplayPeer) -> None:
    r = await s.get_data("beep", 10000, 19)
    assert r.failed
    await hangup_arrives(s, peer)  # two HANGUP lines, then Asterisk closes


@script("11-exec-gosub")
async def _11(s: AGISession, peer: ReplayPeer) -> None:
    assert await s.exec("Gosub", "sub-test", "s", "1(exec-arg)") == 0
    assert await s.get_variable("ARG1") == "exec-arg"
    await s.noop()


@script("11b-agi-gosub-command")
async def _11b(s: AGISession, peer: ReplayPeer) -> None:
    reply = await s.execute("GOSUB", "sub-test", "s", 1, "agi-arg")
    assert (reply.code, reply.result, reply.extra) == (200, "0", "Gosub complete")
    assert reply.raw_lines == (b"100 result=0 Trying...", b"200 result=0 Gosub complete")
    assert await s.get_variable("GOSUB_RETVAL") == ""
    await s.noop()


@script("12-language-ja-missing-prompts")
async def _12(s: AGISession, peer: ReplayPeer) -> None:
    assert await s.get_variable("CHANNEL(language)") == "en"
    await s.set_variable("CHANNEL(language)", "ja")
    assert await s.get_variable("CHANNEL(language)") == "ja"
    r = await s.stream_file("beep")
    assert (r.digit, r.endpos, r.failed) == (None, 3520, False)
    assert not (await s.say_number(12800)).failed
    assert not (await s.say_digits(1234)).failed
    d = await s.get_data("nonexistent_prompt", 3000, 4)
    assert (d.digits, d.timed_out, d.failed) == ("", False, True)
    r = await s.get_option("nonexistent_prompt", "", 1000)
    assert (r.digit, r.endpos, r.failed) == (None, 0, True)
    assert await s.wait_for_digit(500) is None
    await s.noop()
    assert not s.hung_up


def test_every_transcript_has_a_script() -> None:
    assert sorted(SCRIPTS) == transcript_names()
    assert len(SCRIPTS) == 17


@pytest.mark.parametrize("name", transcript_names())
async def test_transcript_replay(name: str, agi_server) -> None:
    transcript = load_transcript(name)
    peer = ReplayPeer(transcript, read_timeout=5.0)
    outcome: asyncio.Future[AGISession] = asyncio.get_running_loop().create_future()

    async def handler(session: AGISession) -> None:
        try:
            await SCRIPTS[name](session, peer)
        except Exception as exc:
            outcome.set_exception(exc)
            raise
        outcome.set_result(session)

    server = await agi_server({name: handler}, close_timeout=5.0)
    peer_task = asyncio.create_task(peer.run("127.0.0.1", server.port))
    await asyncio.wait([peer_task, outcome], return_when=asyncio.FIRST_EXCEPTION)
    if outcome.done() and outcome.exception() is not None:
        peer_task.cancel()
        await asyncio.wait([peer_task])
        raise outcome.exception()  # type: ignore[misc]
    await peer_task
    session = await outcome

    assert peer.received == transcript.server_lines
    assert peer.trailing == b""
    # The server half-closed where the transcript says it did, and nothing came after.
    assert peer.server_eof == any(ev.kind == "server_eof" for ev in transcript.events)
    await server.stop(drain_s=5.0)  # returns once every connection task has ended
    assert server.connections == 0
    assert session.closed
    # Asterisk always says HANGUP at the end (the server's EOF or the caller's hang-up).
    assert session.hung_up
    assert server.in_flight == 0
