"""[ivrpay-takeback]: where ivrpay's AMI Redirect sends a caller the operator takes back.

The caller first runs [ivrpay] up to the AGI (the stand-in records the channel's variables there);
then the Redirect moves the channel to ``ivrpay-takeback,s,1`` with the variables it had, plus
the ``IVRPAY_CALLBACK`` that ivrpay set with ``Setvar`` just before.
"""

from __future__ import annotations

import pytest

from ivrpay.api.takeback import TAKEBACK_CONTEXT, TAKEBACK_EXTEN
from tests.dialplan.asterisk_conf import Channel, Dialplan, load_conf, load_dialplan
from tests.dialplan.test_dialplan import EXTENSIONS


@pytest.fixture(scope="module")
def dialplan() -> Dialplan:
    return load_dialplan(load_conf(EXTENSIONS))


def taken_back(
    dialplan: Dialplan,
    *,
    callback: str | None,
    transferrer: str = "PJSIP/1001-0000002a",
    dial_results: dict[str, str] | None = None,
    fallback: str = "Local/operators@queues",
) -> Channel:
    at_agi: dict[str, str] = {}

    def agi(channel: Channel, args: list[str]) -> str:
        at_agi.update(channel.vars)
        return "HANGUP"  # the Redirect ends the AGI; the dialplan does not go on after it

    globals_ = {"IVRPAY_FALLBACK": fallback}
    first = Channel(dialplan, variables={"BLINDTRANSFER": transferrer}, globals_=globals_, agi=agi)
    first.run("ivrpay-transfer", "8123456")
    assert first.dials == []  # nothing of [ivrpay] dialled anyone
    variables = dict(at_agi)
    if callback is not None:
        variables["IVRPAY_CALLBACK"] = callback  # ivrpay's Setvar before the Redirect
    chan = Channel(dialplan, variables=variables, globals_=globals_, dial_results=dial_results)
    chan.run(TAKEBACK_CONTEXT, TAKEBACK_EXTEN)
    return chan


def test_the_context_ivrpay_redirects_to_exists(dialplan: Dialplan) -> None:
    assert TAKEBACK_EXTEN in dialplan.contexts[TAKEBACK_CONTEXT]
    assert all(s.app in ("NoOp", "Log") for s in dialplan.steps(TAKEBACK_CONTEXT, "h"))


def test_the_operators_callback_is_dialled(dialplan: Dialplan) -> None:
    chan = taken_back(
        dialplan, callback="PJSIP/front-desk", dial_results={"PJSIP/front-desk": "ANSWER"}
    )
    assert chan.dials == [["PJSIP/front-desk", "30"]]
    assert chan.apps()[-1] == "Hangup" and "Playback" not in chan.apps()


def test_without_a_callback_the_transferring_device_is_dialled(dialplan: Dialplan) -> None:
    chan = taken_back(
        dialplan,
        callback=None,
        transferrer="PJSIP/front-desk-0000002a",
        dial_results={"PJSIP/front-desk": "ANSWER"},
    )
    assert chan.dialed() == ["PJSIP/front-desk"]


def test_an_unanswered_operator_goes_to_the_fallback(dialplan: Dialplan) -> None:
    chan = taken_back(
        dialplan, callback="PJSIP/1001", dial_results={"Local/operators@queues": "ANSWER"}
    )
    assert chan.dialed() == ["PJSIP/1001", "Local/operators@queues"]


def test_nobody_at_all_ends_with_an_apology(dialplan: Dialplan) -> None:
    chan = taken_back(dialplan, callback=None, transferrer="", fallback="")
    assert chan.dialed() == []
    assert ("ivrpay-takeback", "Playback", "ivrpay/apology") in chan.trace


def test_commas_in_a_callback_cannot_add_dial_options(dialplan: Dialplan) -> None:
    chan = taken_back(
        dialplan, callback="PJSIP/1001,,U(evil)", dial_results={"PJSIP/1001": "ANSWER"}
    )
    assert chan.dials == [["PJSIP/1001", "30"]]
