"""Listen-in in the shipped dialplan: the caller in [ivrpay], the operator in [ivrpay-spy].

ivrpay's one AMI Redirect moves the caller to ``ivrpay,8<code>,1`` (after ``Setvar
IVRPAY_LISTEN_NEXT=<operator's channel>``) and the operator to ``ivrpay-spy,s,1`` (after ``Setvar
IVRPAY_SPY_TARGET=<caller's channel>``). Whatever the end of the IVR (a result, no server, a
take-back), the caller is bridged back with the listening operator first; an operator who left
meanwhile is rung as after a plain transfer.
"""

from __future__ import annotations

import pytest

from ivrpay.api.listenin import (
    CALLER_CONTEXT,
    LISTEN_NEXT_VAR,
    SPY_CONTEXT,
    SPY_EXTEN,
    SPY_TARGET_VAR,
)
from ivrpay.api.takeback import TAKEBACK_CONTEXT, TAKEBACK_EXTEN
from tests.dialplan.asterisk_conf import Channel, Dialplan, load_conf, load_dialplan
from tests.dialplan.test_dialplan import EXTENSIONS

OPERATOR = "PJSIP/1001-0000002a"
CALLER = "PJSIP/trunk-00000031"
FALLBACK = "Local/operators@queues"


@pytest.fixture(scope="module")
def dialplan() -> Dialplan:
    return load_dialplan(load_conf(EXTENSIONS))


def listened(
    dialplan: Dialplan,
    *,
    sets: dict[str, str] | None = None,
    agistatus: str = "SUCCESS",
    bridge: str = "SUCCESS",
    dial_results: dict[str, str] | None = None,
    variables: dict[str, str] | None = None,
) -> Channel:
    """The caller as ivrpay's Redirect leaves it in [ivrpay]; the FastAGI server sets ``sets``."""
    at_agi: dict[str, str] = {}

    def agi(channel: Channel, args: list[str]) -> str:
        at_agi.update(channel.vars)
        for name, value in (sets or {}).items():
            channel.set(name, value)
        return agistatus

    chan = Channel(
        dialplan,
        variables={LISTEN_NEXT_VAR: OPERATOR, **(variables or {})},
        globals_={"IVRPAY_FALLBACK": FALLBACK},
        agi=agi,
        dial_results=dial_results,
        bridge_results={OPERATOR: bridge},
    )
    chan.run(CALLER_CONTEXT, "8123456")
    chan.at_agi = at_agi  # type: ignore[attr-defined]
    return chan


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "ERROR", "UNKNOWN", "OPERATOR"])
def test_any_result_bridges_the_caller_with_the_listener(dialplan: Dialplan, status: str) -> None:
    chan = listened(dialplan, sets={"IVRPAY_STATUS": status, "IVRPAY_CALLBACK": "PJSIP/1001"})
    assert chan.agi_calls == [["agi://127.0.0.1:4573/pay", "123456", OPERATOR]]
    assert chan.bridges == [OPERATOR]
    assert chan.dials == []  # nobody rung: the operator is on the line already
    assert chan.apps()[-1] == "Hangup"
    assert "Playback" not in chan.apps()


def test_the_listener_is_read_once_and_is_the_transferrer(dialplan: Dialplan) -> None:
    chan = listened(dialplan, sets={"IVRPAY_STATUS": "SUCCEEDED"})
    assert chan.at_agi[LISTEN_NEXT_VAR] == ""  # type: ignore[attr-defined]
    assert chan.at_agi["IVRPAY_LISTENER"] == OPERATOR  # type: ignore[attr-defined]
    assert chan.at_agi["IVRPAY_TRANSFERRER"] == "PJSIP/1001"  # type: ignore[attr-defined]
    assert chan.vars["IVRPAY_LISTENER"] == ""  # tried once, then the usual way back


def test_no_server_apologises_then_bridges(dialplan: Dialplan) -> None:
    chan = listened(dialplan, agistatus="FAILURE")
    assert ("ivrpay", "Playback", "ivrpay/system_error&ivrpay/connecting_back") in chan.trace
    assert chan.bridges == [OPERATOR]
    assert chan.dials == []


def test_a_listener_who_left_is_rung_back(dialplan: Dialplan) -> None:
    chan = listened(
        dialplan,
        sets={"IVRPAY_STATUS": "SUCCEEDED", "IVRPAY_CALLBACK": "PJSIP/1001"},
        bridge="NONEXISTENT",
        dial_results={"PJSIP/1001": "ANSWER"},
    )
    assert chan.bridges == [OPERATOR]  # once only
    assert chan.dialed() == ["PJSIP/1001"]


def test_a_listener_who_left_and_does_not_answer_goes_to_the_fallback(dialplan: Dialplan) -> None:
    chan = listened(
        dialplan,
        sets={"IVRPAY_STATUS": "FAILED", "IVRPAY_CALLBACK": "PJSIP/1001"},
        bridge="NONEXISTENT",
    )
    assert chan.bridges == [OPERATOR]
    assert chan.dialed() == ["PJSIP/1001", FALLBACK]


def test_a_plain_transfer_bridges_nobody(dialplan: Dialplan) -> None:
    def agi(channel: Channel, args: list[str]) -> str:
        channel.set("IVRPAY_STATUS", "SUCCEEDED")
        channel.set("IVRPAY_CALLBACK", "PJSIP/1001")
        return "SUCCESS"

    chan = Channel(
        dialplan,
        variables={"BLINDTRANSFER": OPERATOR},
        globals_={"IVRPAY_FALLBACK": FALLBACK},
        agi=agi,
        dial_results={"PJSIP/1001": "ANSWER"},
    )
    chan.run("ivrpay-transfer", "8123456")
    assert chan.bridges == [] and chan.dialed() == ["PJSIP/1001"]


def test_a_listener_with_foreign_characters_is_not_bridged(dialplan: Dialplan) -> None:
    chan = listened(
        dialplan,
        sets={"IVRPAY_STATUS": "SUCCEEDED", "IVRPAY_CALLBACK": "PJSIP/1001"},
        variables={LISTEN_NEXT_VAR: "PJSIP/1001-0000002a&PJSIP/evil"},
        dial_results={"PJSIP/1001": "ANSWER"},
    )
    assert chan.bridges == []
    assert chan.dialed() == ["PJSIP/1001"]


def test_the_caller_hanging_up_in_the_ivr_bridges_nobody(dialplan: Dialplan) -> None:
    chan = listened(dialplan, agistatus="HANGUP")
    assert chan.hung_up and chan.bridges == [] and chan.dials == []


def test_a_take_back_during_listen_in_bridges_with_the_listener(dialplan: Dialplan) -> None:
    first = listened(dialplan, agistatus="HANGUP")  # the Redirect ends the AGI
    variables = dict(first.at_agi)  # type: ignore[attr-defined]
    variables["IVRPAY_CALLBACK"] = "PJSIP/1001"
    chan = Channel(
        dialplan,
        variables=variables,
        globals_={"IVRPAY_FALLBACK": FALLBACK},
        bridge_results={OPERATOR: "SUCCESS"},
    )
    chan.run(TAKEBACK_CONTEXT, TAKEBACK_EXTEN)
    assert chan.bridges == [OPERATOR] and chan.dials == []


# --- the operator's side -------------------------------------------------------------------


def spying(dialplan: Dialplan, target: str = CALLER, ends: str = "hangup") -> Channel:
    chan = Channel(dialplan, variables={SPY_TARGET_VAR: target}, spy_ends=ends)
    chan.run(SPY_CONTEXT, SPY_EXTEN)
    return chan


def test_the_operator_spies_whispering_quietly_until_the_caller_ends(dialplan: Dialplan) -> None:
    chan = spying(dialplan)
    assert chan.spied == [[CALLER, "qwE"]]
    assert chan.vars[SPY_TARGET_VAR] == ""
    apps = chan.apps()
    # the operator's own recording would hear the card entry
    assert apps.index("StopMixMonitor") < apps.index("ChanSpy")
    assert apps[-1] == "Hangup"


def test_spying_on_an_odd_channel_name_is_refused(dialplan: Dialplan) -> None:
    chan = spying(dialplan, target="PJSIP/trunk-00000031,qwEB")
    assert chan.spied == []
    assert chan.apps()[-1] == "Hangup"


def test_the_operator_hanging_up_while_listening_runs_nothing(dialplan: Dialplan) -> None:
    chan = spying(dialplan, ends="gone")
    assert chan.hung_up
    after = [app for _ctx, app, _ in chan.trace][chan.apps().index("ChanSpy") + 1 :]
    assert after and all(app in ("NoOp", "Log") for app in after)


def test_chanspy_is_only_in_the_spy_context_and_nothing_includes_it(dialplan: Dialplan) -> None:
    where = {ctx for ctx, _ext, step in dialplan.all_steps() if step.app == "ChanSpy"}
    assert where == {SPY_CONTEXT}
    text = EXTENSIONS.read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.strip().startswith("include"):
            assert SPY_CONTEXT not in line
    # and no extension jumps there: only ivrpay's Redirect does
    for _ctx, _ext, step in dialplan.all_steps():
        if step.app in ("Goto", "GotoIf", "Gosub", "GosubIf", "Dial"):
            assert SPY_CONTEXT not in step.data, step
