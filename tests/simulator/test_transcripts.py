"""Every real Asterisk transcript, replayed: a raw server sends exactly the transcript's ``S>``
lines and the stand-in must answer with exactly its ``A>`` lines — environment block, 520 blocks,
the out-of-band HANGUP lines and the close included — and leave the same AGISTATUS behind.

What the caller did (the ``##`` comments) is acted out through the stand-in's API: scripted keys,
keys pressed and hang-ups during a given command (hooks by command index), a hang-up between
commands (on the comment), AGIEXITONHANGUP for file 10 and the 03b timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from ivrpay.simulator import ChannelSpec, Ending, SimulatedCall, mask_digits
from ivrpay.simulator.transcript import Transcript, load_transcript
from tests.simulator.conftest import FIXTURES, IO_TIMEOUT

CallAction = Callable[[SimulatedCall], Awaitable[None] | None]


def press(keys: str) -> CallAction:
    return lambda call: call.press(keys)


def hang_up(at_ms: int | None = None) -> CallAction:
    return lambda call: call.hang_up(at_ms=at_ms)


@dataclass
class Case:
    keys: list[str] = field(default_factory=list)
    carry_over_keys: bool = True
    exit_on_hangup: bool = False
    during: dict[int, CallAction] = field(default_factory=dict)  # command index → caller action
    on_comment: dict[str, CallAction] = field(default_factory=dict)  # comment text → action
    ended: Ending = Ending.SERVER_CLOSED
    missing: list[str] = field(default_factory=list)
    fallback: list[str] = field(default_factory=list)


CASES: dict[str, Case] = {
    "01-env-and-basics": Case(),
    "02-get-data-full-entry": Case(keys=["4111111111111111#"]),
    "03-get-data-max-digits-then-hash": Case(keys=["1231#", "123#"]),
    "03b-key-pressed-between-commands-is-dropped": Case(keys=["1231#"], carry_over_keys=False),
    "04-get-data-timeouts": Case(keys=["41"]),
    # 1 during the escape-digit beep (barge-in); 5 during a beep without escape digits; nothing
    # at WAIT FOR DIGIT; 2 during the GET OPTION beep.
    "05-stream-file-and-get-option": Case(
        keys=["~1", "_", "~2"], during={1: press("5")}, missing=["en/nonexistent_prompt"]
    ),
    # 9 during a beep whose escape digits are 1 and 2; 2 after the GET OPTION prompt; nothing;
    # 7 (not an escape digit) during the last prompt.
    "05b-stream-file-and-get-option-extras": Case(keys=["2", "_", "~7"], during={1: press("9")}),
    "05c-missing-file-sets-agistatus-failure": Case(missing=["en/nonexistent_prompt"]),
    "06-bad-commands": Case(),
    "07-hangup-during-get-data": Case(keys=["!"]),
    "08-hangup-while-server-idle": Case(on_comment={"caller hangs up": hang_up()}),
    "09-hangup-during-stream-file": Case(during={0: hang_up(at_ms=1520)}),
    "09b-hangup-during-exec-playback": Case(during={0: hang_up(at_ms=1500)}),
    "10-hangup-during-get-data-agiexitonhangup": Case(
        keys=["!"], exit_on_hangup=True, ended=Ending.CALLER_HUNG_UP
    ),
    "11-exec-gosub": Case(),
    "11b-agi-gosub-command": Case(),
    "12-language-ja-missing-prompts": Case(
        missing=["ja/nonexistent_prompt", "ja/nonexistent_prompt"], fallback=["ja/beep"]
    ),
}


def test_every_transcript_has_a_case() -> None:
    assert sorted(CASES) == sorted(p.stem for p in FIXTURES.glob("*.txt"))


def channel_of(t: Transcript) -> tuple[ChannelSpec, list[str]]:
    env = t.env
    spec = ChannelSpec(
        channel=env["agi_channel"],
        language=env["agi_language"],
        type=env["agi_type"],
        uniqueid=env["agi_uniqueid"],
        version=env["agi_version"],
        callerid=env["agi_callerid"],
        calleridname=env["agi_calleridname"],
        callingpres=int(env["agi_callingpres"]),
        callingani2=int(env["agi_callingani2"]),
        callington=int(env["agi_callington"]),
        callingtns=int(env["agi_callingtns"]),
        dnid=env["agi_dnid"],
        rdnis=env["agi_rdnis"],
        context=env["agi_context"],
        extension=env["agi_extension"],
        priority=int(env["agi_priority"]),
        enhanced=env["agi_enhanced"] == "1.0",
        accountcode=env["agi_accountcode"],
        threadid=int(env["agi_threadid"]),
        request=env["agi_request"],
    )
    n_args = sum(1 for k in env if k.startswith("agi_arg_"))
    return spec, [env[f"agi_arg_{i}"] for i in range(1, n_args + 1)]


async def replay(
    t: Transcript,
    case: Case,
    call: SimulatedCall,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Play the server's side of the transcript, checking each of Asterisk's lines as it comes."""
    for event in t.events:
        if event.direction == "A":
            async with asyncio.timeout(IO_TIMEOUT):
                got = await reader.readline()
            assert got == event.wire, f"{t.name} line {event.lineno}"
        elif event.direction == "S":
            writer.write(event.wire)
            await writer.drain()
        elif "shuts down its sending side" in event.comment:
            writer.write_eof()
        else:
            for text, action in case.on_comment.items():
                if text in event.comment:
                    result = action(call)
                    if result is not None:
                        await result
    async with asyncio.timeout(IO_TIMEOUT):
        assert await reader.read() == b"", f"{t.name}: Asterisk sent more than the transcript"
    writer.close()


@pytest.mark.parametrize("name", sorted(CASES))
async def test_transcript(name: str, sounds_dir, raw_server) -> None:
    t = load_transcript(FIXTURES / f"{name}.txt")
    case = CASES[name]
    spec, args = channel_of(t)
    call = SimulatedCall(
        raw_server.host,
        raw_server.port,
        args=args,
        keys=case.keys,
        sounds_dir=sounds_dir,
        channel=spec,
        carry_over_keys=case.carry_over_keys,
        exit_on_hangup=case.exit_on_hangup,
        silence_timeout=IO_TIMEOUT,
    )
    for index, action in case.during.items():
        call.on_command(index, lambda c, _cmd, action=action: action(c))
    await call.start()
    peer = await raw_server.accept(read_env=False)
    await replay(t, case, call, peer.reader, peer.writer)
    record = await call.wait()

    assert record.sent() == t.wire("A")
    assert record.received() == t.wire("S")
    assert record.agistatus == t.agistatus
    assert record.ended == case.ended
    assert record.missing_prompts == case.missing
    assert record.fallback_prompts == case.fallback
    # Every scripted entry was used, and the record shows them masked.
    assert [e.keys for e in record.entries if e.command != "press"] == [
        mask_digits(k) for k in case.keys
    ]
