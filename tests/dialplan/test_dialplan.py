"""dialplan/extensions_ivrpay.conf: read as Asterisk reads it, then run through a tiny evaluator."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ivrpay.store import device_of
from tests.dialplan.asterisk_conf import (
    Channel,
    ConfError,
    Dialplan,
    Step,
    load_conf,
    load_dialplan,
    parse_conf,
    regex_match,
    substring,
)

DIALPLAN_DIR = Path(__file__).resolve().parents[2] / "dialplan"
EXTENSIONS = DIALPLAN_DIR / "extensions_ivrpay.conf"
PAY = "_8XXXXXX"


@pytest.fixture(scope="module")
def dialplan() -> Dialplan:
    return load_dialplan(load_conf(EXTENSIONS))


def pay_steps(dialplan: Dialplan) -> list[Step]:
    return dialplan.steps("ivrpay", PAY)


def index_of(steps: list[Step], app: str, data_contains: str = "") -> int:
    for k, step in enumerate(steps):
        if step.app == app and data_contains in step.data:
            return k
    raise AssertionError(f"no {app}({data_contains}…) step")


# --- the reader itself ---------------------------------------------------------------------


def test_reader_follows_asterisk_comment_rules() -> None:
    conf = parse_conf(
        "[a]\n"
        "x => 1 ; a comment\n"
        "y => a\\;b\n"
        ";-- a block\n"
        "z => hidden\n"
        "--;\n"
        ";--- three dashes is a plain comment\n"
        "w = 2\n"
    )
    cat = conf.category("a")
    assert [(e.key, e.value) for e in cat.entries] == [("x", "1"), ("y", "a;b"), ("w", "2")]
    with pytest.raises(ConfError):
        parse_conf("[a]\n;-- never closed\nx = 1\n")
    with pytest.raises(ConfError):
        parse_conf("x = 1\n")


def test_substring_and_regex_helpers_match_asterisk() -> None:
    assert substring("8123456", 1, None) == "123456"
    assert substring("PJSIP/1001-0000002a", 0, -9) == "PJSIP/1001"
    assert substring("abc", -2, None) == "bc"
    assert regex_match("xab", "ab", anchored=True) == "0"  # ":" is anchored at the start
    assert regex_match("xab", "ab", anchored=False) == "2"
    assert regex_match("", "(a)", anchored=True) == ""


# --- shape of the file -----------------------------------------------------------------------


def test_contexts_and_extensions(dialplan: Dialplan) -> None:
    assert set(dialplan.contexts) == {
        "ivrpay-transfer",
        "ivrpay",
        "ivrpay-takeback",
        "ivrpay-dial",
        "ivrpay-spy",
    }
    # The included context holds the transfer target alone, so no h leaks into the includer.
    assert list(dialplan.contexts["ivrpay-transfer"]) == [PAY]
    (goto,) = dialplan.steps("ivrpay-transfer", PAY)
    assert (goto.app, goto.data) == ("Goto", "ivrpay,${EXTEN},1")
    assert PAY in dialplan.contexts["ivrpay"]
    assert "h" in dialplan.contexts["ivrpay"]
    assert all(s.app in ("NoOp", "Log") for s in dialplan.steps("ivrpay", "h"))


def test_agi_line_passes_code_and_transferrer(dialplan: Dialplan) -> None:
    agis = [s for s in pay_steps(dialplan) if s.app == "AGI"]
    assert [s.data for s in agis] == ["agi://127.0.0.1:4573/pay,${EXTEN:1},${BLINDTRANSFER}"]
    # The commented variant for several servers: hagi://, same arguments, no port (a port
    # would turn the SRV look-up off).
    text = EXTENSIONS.read_text(encoding="utf-8")
    hagi = re.search(r"^\s*;\s*same => n,AGI\((hagi://[^,]+),(.*)\)\s*$", text, re.M)
    assert hagi, "commented hagi:// variant missing"
    assert re.fullmatch(r"hagi://[A-Za-z0-9.-]+/pay", hagi.group(1))
    assert hagi.group(2) == "${EXTEN:1},${BLINDTRANSFER}"


def test_variables_cleared_and_recording_stopped_before_the_agi(dialplan: Dialplan) -> None:
    steps = pay_steps(dialplan)
    agi = index_of(steps, "AGI")
    for var in ("IVRPAY_STATUS", "IVRPAY_CALLBACK"):
        cleared = [k for k, s in enumerate(steps) if s.app == "Set" and s.data == f"{var}="]
        assert cleared and cleared[0] < agi, f"{var} is not cleared before the AGI"
    stops = [k for k, s in enumerate(steps) if s.app == "StopMixMonitor"]
    assert stops and max(stops) < agi
    assert not any(s.app in ("MixMonitor", "Monitor") for s in steps[: agi + 1])


def test_decisions_use_ivrpay_status_never_agistatus(dialplan: Dialplan) -> None:
    steps = pay_steps(dialplan)
    agi = index_of(steps, "AGI")
    first_branch = next(s for s in steps[agi + 1 :] if s.app in ("GotoIf", "ExecIf"))
    assert "${IVRPAY_STATUS}" in first_branch.data.partition("?")[0]
    for _ctx, _ext, step in dialplan.all_steps():
        if step.app in ("GotoIf", "ExecIf", "While", "ExitWhile", "GosubIf"):
            assert "AGISTATUS" not in step.data.partition("?")[0], step
        assert "${IF(" not in step.data or "AGISTATUS" not in step.data, step


def test_the_dialplan_never_collects_keys(dialplan: Dialplan) -> None:
    collecting = {"Read", "ReadExten", "WaitExten", "Background", "BackgroundDetect", "SendDTMF"}
    used = {step.app for _c, _e, step in dialplan.all_steps()}
    assert not used & collecting
    text = EXTENSIONS.read_text(encoding="utf-8").lower()
    assert not re.search(r"agi\s+set\s+debug", text)
    assert "agidebug" not in text


# --- the transferrer's device ---------------------------------------------------------------

TRANSFERRERS = [
    ("PJSIP/1001-0000002a", "PJSIP/1001"),
    ("PJSIP/front-desk-0000002a", "PJSIP/front-desk"),
    ("SIP/2001-0000001f", "SIP/2001"),
    ("Local/7001@ops-00000012;1", "Local/7001@ops"),
    ("Local/7001@ops-00000012;2", "Local/7001@ops"),
    ("PJSIP/a-b-c-0000ABCD", "PJSIP/a-b-c"),
    ("IAX2/desk-9-000000ff", "IAX2/desk-9"),
    ("", ""),  # not a transfer: nothing to go back to
    ("PJSIP/1001", ""),  # no sequence tail: not a channel name Asterisk makes
    ("PJSIP/1001-2a", ""),  # a tail of other than 8 hex digits is part of a name, not a tail
]


def reference_device(channel: str) -> str:
    """The documented intent, written independently: cut "-" + exactly 8 hex digits (and a
    Local ";N") at the very end; anything else is not a channel name, so no device."""
    m = re.fullmatch(r"(.+)-[0-9a-fA-F]{8}(?:;\d+)?", channel)
    return m.group(1) if m else ""


def transferrer_expression(dialplan: Dialplan) -> str:
    steps = [s for s in pay_steps(dialplan) if s.app == "Set"]
    (step,) = [s for s in steps if s.data.startswith("IVRPAY_TRANSFERRER=")]
    return step.data.partition("=")[2]


@pytest.mark.parametrize(("channel", "device"), TRANSFERRERS)
def test_transferrer_suffix_is_stripped(dialplan: Dialplan, channel: str, device: str) -> None:
    chan = Channel(dialplan, variables={"BLINDTRANSFER": channel})
    assert chan.substitute(transferrer_expression(dialplan)) == device
    assert reference_device(channel) == device


@pytest.mark.parametrize(("channel", "device"), [t for t in TRANSFERRERS if t[1]])
def test_transferrer_device_agrees_with_ivrpay(channel: str, device: str) -> None:
    # ivrpay normalises the transferrer the same way when it fills IVRPAY_CALLBACK.
    assert device_of(channel) == device


# --- whole runs ---------------------------------------------------------------------------------


def run(
    dialplan: Dialplan,
    *,
    sets: dict[str, str] | None = None,
    agistatus: str = "SUCCESS",
    transferrer: str = "PJSIP/1001-0000002a",
    variables: dict[str, str] | None = None,
    globals_: dict[str, str] | None = None,
    dial_results: dict[str, str] | None = None,
    number: str = "8123456",
) -> Channel:
    """A caller blind-transferred to ``number``; the FastAGI server sets ``sets``."""

    def agi(channel: Channel, args: list[str]) -> str:
        for name, value in (sets or {}).items():
            channel.set(name, value)
        return agistatus

    chan = Channel(
        dialplan,
        variables={"BLINDTRANSFER": transferrer, **(variables or {})},
        globals_={"IVRPAY_FALLBACK": "Local/operators@queues", **(globals_ or {})},
        agi=agi,
        dial_results=dial_results,
    )
    chan.run("ivrpay-transfer", number)
    return chan


def test_success_dials_the_callback(dialplan: Dialplan) -> None:
    chan = run(
        dialplan,
        sets={"IVRPAY_STATUS": "SUCCEEDED", "IVRPAY_CALLBACK": "PJSIP/1001"},
        dial_results={"PJSIP/1001": "ANSWER"},
    )
    assert chan.agi_calls == [["agi://127.0.0.1:4573/pay", "123456", "PJSIP/1001-0000002a"]]
    assert chan.dials == [["PJSIP/1001", "30"]]
    assert chan.apps()[-1] == "Hangup"
    assert "Playback" not in chan.apps()


def test_operator_callback_wins_over_the_transferrer(dialplan: Dialplan) -> None:
    chan = run(
        dialplan,
        sets={"IVRPAY_STATUS": "FAILED", "IVRPAY_CALLBACK": "PJSIP/front-desk"},
        transferrer="PJSIP/1001-0000002a",
        dial_results={"PJSIP/front-desk": "ANSWER"},
    )
    assert chan.dialed() == ["PJSIP/front-desk"]


@pytest.mark.parametrize("agistatus", ["FAILURE", "SUCCESS"])  # no server / crashed mid-call
@pytest.mark.parametrize(("channel", "device"), [t for t in TRANSFERRERS if t[1]][:4])
def test_no_result_goes_back_to_the_transferrer(
    dialplan: Dialplan, agistatus: str, channel: str, device: str
) -> None:
    chan = run(dialplan, agistatus=agistatus, transferrer=channel, dial_results={device: "ANSWER"})
    assert chan.dialed() == [device]
    # the apology is played in ivrpay's first language before the caller is put back through
    assert chan.vars["CHANNEL(language)"] == "ja"
    assert ("ivrpay", "Playback", "ivrpay/system_error&ivrpay/connecting_back") in chan.trace


def test_a_stale_result_from_an_earlier_run_is_not_trusted(dialplan: Dialplan) -> None:
    # The caller paid once already in this call; this time the server dies before any result.
    chan = run(
        dialplan,
        variables={"IVRPAY_STATUS": "SUCCEEDED", "IVRPAY_CALLBACK": "PJSIP/9999"},
        transferrer="PJSIP/front-desk-0000002a",
        dial_results={"PJSIP/front-desk": "ANSWER"},
    )
    assert chan.dialed() == ["PJSIP/front-desk"]
    assert chan.vars["IVRPAY_STATUS"] == ""


def test_no_transferrer_and_no_result_goes_to_the_fallback(dialplan: Dialplan) -> None:
    chan = run(
        dialplan,
        agistatus="FAILURE",
        transferrer="",
        dial_results={"Local/operators@queues": "ANSWER"},
    )
    assert chan.dialed() == ["Local/operators@queues"]


def test_status_without_callback_goes_to_the_fallback(dialplan: Dialplan) -> None:
    chan = run(
        dialplan,
        sets={"IVRPAY_STATUS": "NOT_FOUND", "IVRPAY_CALLBACK": ""},
        transferrer="",
        dial_results={"Local/operators@queues": "ANSWER"},
    )
    assert chan.dialed() == ["Local/operators@queues"]


@pytest.mark.parametrize("status", ["BUSY", "NOANSWER", "CHANUNAVAIL", "CONGESTION"])
def test_unanswered_callback_goes_to_the_fallback(dialplan: Dialplan, status: str) -> None:
    chan = run(
        dialplan,
        sets={"IVRPAY_STATUS": "SUCCEEDED", "IVRPAY_CALLBACK": "PJSIP/1001"},
        dial_results={"PJSIP/1001": status, "Local/operators@queues": "ANSWER"},
    )
    assert chan.dialed() == ["PJSIP/1001", "Local/operators@queues"]
    assert chan.apps()[-1] == "Hangup"


def test_nobody_at_all_ends_with_an_apology(dialplan: Dialplan) -> None:
    chan = run(dialplan, agistatus="FAILURE", transferrer="", globals_={"IVRPAY_FALLBACK": ""})
    assert chan.dials == []
    assert chan.apps()[-2:] == ["Playback", "Hangup"]
    assert chan.trace[-2][2] == "ivrpay/apology"


@pytest.mark.parametrize(
    "callback", ["PJSIP/1001&PJSIP/6666", "PJSIP/1001)", 'PJSIP/"1001"', "PJSIP/1001 x"]
)
def test_a_callback_with_foreign_characters_is_refused(dialplan: Dialplan, callback: str) -> None:
    chan = run(
        dialplan,
        sets={"IVRPAY_STATUS": "SUCCEEDED", "IVRPAY_CALLBACK": callback},
        dial_results={"Local/operators@queues": "ANSWER"},
    )
    assert chan.dialed() == ["Local/operators@queues"]


def test_commas_in_a_callback_cannot_add_dial_options(dialplan: Dialplan) -> None:
    chan = run(
        dialplan,
        sets={"IVRPAY_STATUS": "SUCCEEDED", "IVRPAY_CALLBACK": "PJSIP/1001,,U(evil)"},
        dial_results={"PJSIP/1001": "ANSWER"},
    )
    assert chan.dials == [["PJSIP/1001", "30"]]


def test_settings_from_globals(dialplan: Dialplan) -> None:
    chan = run(
        dialplan,
        agistatus="FAILURE",
        globals_={"IVRPAY_DIAL_TIMEOUT": "45", "IVRPAY_LANGUAGE": "en"},
        dial_results={"PJSIP/1001": "ANSWER"},
    )
    assert chan.dials == [["PJSIP/1001", "45"]]
    assert chan.vars["CHANNEL(language)"] == "en"


def test_caller_hanging_up_in_the_ivr_dials_nobody(dialplan: Dialplan) -> None:
    chan = run(dialplan, agistatus="HANGUP", sets={"IVRPAY_STATUS": "SUCCEEDED"})
    assert chan.hung_up
    assert chan.dials == []
    assert chan.trace[-1][:2] == ("ivrpay", "NoOp")  # the h extension, and nothing else


def test_caller_hanging_up_while_the_operator_rings(dialplan: Dialplan) -> None:
    chan = run(
        dialplan,
        sets={"IVRPAY_STATUS": "SUCCEEDED", "IVRPAY_CALLBACK": "PJSIP/1001"},
        dial_results={"PJSIP/1001": "CANCEL"},
    )
    assert chan.hung_up
    assert chan.dialed() == ["PJSIP/1001"]


def test_only_payment_codes_are_taken(dialplan: Dialplan) -> None:
    for number in ("812345", "81234567", "9123456", "8ABCDEF"):
        with pytest.raises(LookupError):
            run(dialplan, number=number)


def test_prompts_played_by_the_dialplan_exist(dialplan: Dialplan) -> None:
    sounds = DIALPLAN_DIR.parent / "sounds"
    catalogue = (sounds / "prompts.csv").read_text(encoding="utf-8").splitlines()
    ids = {line.split(",", 1)[0] for line in catalogue[1:]}
    played = [
        name
        for _c, _e, step in dialplan.all_steps()
        if step.app == "Playback"
        for name in step.data.split("&")
    ]
    assert played
    for name in played:
        folder, _, pid = name.partition("/")
        assert folder == "ivrpay" and pid in ids, name
        for lang in ("ja", "en"):
            assert (sounds / lang / "ivrpay" / f"{pid}.wav").is_file(), (lang, pid)
