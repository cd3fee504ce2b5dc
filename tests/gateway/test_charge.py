"""The client against the sandbox over real HTTP: every test card, the charge rules, the lost
answer and the gateway timeout reconciled."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
import pytest

from ivrpay.gateway import GatewayClient
from ivrpay.gateway.codec import ENDPOINTS, decode_answer, encode_request
from ivrpay.sandbox import Sandbox
from tests.support.gateway import (
    APPROVED_CARDS,
    DECLINED_CARDS,
    GATEWAY_TIMEOUT_CARD,
    LOST_ANSWER_CARD,
    SHOP_ID,
    SHOP_PASS,
    alter,
    charge,
    make_card,
    make_gateway_client,
)

SHORT_TIMEOUT_S = 0.3


@pytest.mark.parametrize("number", list(APPROVED_CARDS))
async def test_approved_cards(gateway_client: GatewayClient, sandbox: Sandbox, number: str) -> None:
    out = await charge(gateway_client, "PAY1-01", make_card(number), amount=12800, tax=1280)
    assert out.kind == "ok" and not out.reconciled
    assert out.approve and len(out.approve) == 7
    assert out.tran_id and len(out.tran_id) == 28 and out.tran_id.isdigit()
    assert out.tran_date is not None and out.tran_date.utcoffset() == timedelta(hours=9)
    assert out.forward and out.card_last4 == number[-4:]
    order = sandbox.state.order("PAY1-01")
    assert order is not None
    assert (order["status"], order["executions"], order["successes"]) == ("AUTH", 1, 1)
    assert (order["amount"], order["tax"]) == (12800, 1280)


@pytest.mark.parametrize(("number", "expected"), list(DECLINED_CARDS.items()))
async def test_declining_cards(
    gateway_client: GatewayClient, sandbox: Sandbox, number: str, expected: tuple
) -> None:
    kind, field, code = expected
    out = await charge(gateway_client, "PAY2-01", make_card(number), amount=500)
    assert (out.kind, out.field, out.err_code) == (kind, field, code)
    assert out.err_info == ((code[2:5], code),)
    assert out.message and out.card_last4 == number[-4:]
    assert sandbox.state.successes("PAY2") == 0


async def test_lost_answer_is_reconciled_to_one_success(sandbox: Sandbox) -> None:
    async with make_gateway_client(sandbox, timeout_s=SHORT_TIMEOUT_S) as client:
        out = await charge(client, "LOST-01", make_card(LOST_ANSWER_CARD), amount=3000)
    assert out.kind == "ok" and out.reconciled
    assert out.tran_id and out.approve and out.tran_date is not None
    order = sandbox.state.order("LOST-01")
    assert order is not None
    assert (order["executions"], order["successes"], order["tran_id"]) == (1, 1, out.tran_id)
    assert sandbox.state.requests["ExecTran"] == 1


async def test_lost_answer_step_by_step_as_the_call_flow_does(sandbox: Sandbox) -> None:
    async with make_gateway_client(sandbox, timeout_s=SHORT_TIMEOUT_S) as client:
        entry = await client.entry_tran("LOST2-01", "CAPTURE", 1000)
        assert entry.ok and entry.access_id and entry.access_pass
        assert len(entry.access_id) == 32
        exe = await client.exec_tran(
            "LOST2-01", entry.access_id, entry.access_pass, make_card(LOST_ANSWER_CARD)
        )
        assert exe.kind == "unknown" and exe.sent and exe.sent_at is not None
        assert "no answer" in exe.message
        rec = await client.reconcile("LOST2-01", sent_at=exe.sent_at)
    assert rec.state == "executed" and rec.trade.status == "CAPTURE"
    assert rec.trade.tran_id and rec.trade.approve
    assert GatewayClient.executed_outcome(rec).ok
    assert sandbox.state.executions("LOST2") == 1 and sandbox.state.successes("LOST2") == 1


async def test_gateway_timeout_card_is_unknown_then_not_executed(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    out = await charge(gateway_client, "GTO-01", make_card(GATEWAY_TIMEOUT_CARD), amount=800)
    # The call's own reconcile cannot trust UNPROCESSED this soon: still unknown, never failed.
    assert (out.kind, out.err_code) == ("unknown", "E91020001")
    assert out.sent_at is not None
    fresh = await gateway_client.reconcile("GTO-01", sent_at=out.sent_at)
    assert fresh.state == "unknown" and fresh.trade.status == "UNPROCESSED"
    later = await gateway_client.reconcile("GTO-01", sent_at=out.sent_at - timedelta(seconds=301))
    assert later.state == "not_executed" and later.not_executed
    trusting = await gateway_client.reconcile("GTO-01", sent_at=out.sent_at, reconcile_after_s=0)
    assert trusting.state == "not_executed"
    order = sandbox.state.order("GTO-01")
    assert order is not None
    assert (order["status"], order["executions"], order["successes"]) == ("UNPROCESSED", 1, 0)


async def test_reconcile_judges_by_the_moment_it_is_given(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    """``now`` (the reconciler's run time), not the client's clock, decides "old enough"."""
    out = await charge(gateway_client, "GTO-02", make_card(GATEWAY_TIMEOUT_CARD), amount=800)
    assert out.kind == "unknown" and out.sent_at is not None
    soon = await gateway_client.reconcile("GTO-02", sent_at=out.sent_at, now=out.sent_at)
    assert soon.state == "unknown"
    after = out.sent_at + timedelta(seconds=300)
    later = await gateway_client.reconcile("GTO-02", sent_at=out.sent_at, now=after)
    assert later.state == "not_executed"
    naive = await gateway_client.reconcile(
        "GTO-02", sent_at=out.sent_at, now=after.replace(tzinfo=None)
    )  # a naive moment is read as UTC, as sent_at is
    assert naive.state == "not_executed"


async def test_reconcile_of_an_order_never_entered(gateway_client: GatewayClient) -> None:
    now = gateway_client._clock()
    fresh = await gateway_client.reconcile("NEVER-01", sent_at=now)
    assert fresh.state == "unknown" and fresh.trade.err_code == "E01110002"
    old = await gateway_client.reconcile("NEVER-01", sent_at=now - timedelta(hours=1))
    assert old.state == "not_executed"


async def test_reconcile_flags_a_voided_order_for_review(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    assert (await charge(gateway_client, "VREV-01", make_card("4111111111111111"), amount=9)).ok
    assert (await alter(gateway_client, "VREV-01", "void")).ok
    rec = await gateway_client.reconcile("VREV-01", sent_at=gateway_client._clock())
    assert rec.state == "unknown" and "review" in rec.reason


@pytest.mark.parametrize(
    ("number", "expiry", "code", "field", "err_code"),
    [
        ("4111111111111112", None, "123", "card_number", "E41170099"),  # Luhn
        ("9999999999999995", None, "123", "card_number", "E41170002"),  # no brand
        ("41111111111111111", None, "123", "card_number", "E01170011"),  # 17 digits
        ("4111111111111111", "0120", "123", "expiry", "42G830000"),  # past
        ("4111111111111111", "1399", "123", "expiry", "E01180008"),  # month 13
        ("4111111111111111", None, "1234", "security_code", "E01460008"),
        ("378282246310005", None, "123", "security_code", "E01460008"),  # AMEX wants 4
    ],
)
async def test_input_errors_name_the_field(
    gateway_client: GatewayClient,
    number: str,
    expiry: str | None,
    code: str,
    field: str,
    err_code: str,
) -> None:
    card = make_card(number, expiry, code)
    out = await charge(gateway_client, "INP-01", card, amount=100)
    assert (out.kind, out.field, out.err_code) == ("input", field, err_code)


async def test_security_code_is_optional(gateway_client: GatewayClient) -> None:
    out = await charge(
        gateway_client, "NOCODE-01", make_card("4111111111111111", code=None), amount=5
    )
    assert out.ok


@pytest.mark.parametrize("job_cd", ["CAPTURE", "AUTH", "SAUTH"])
async def test_job_codes(gateway_client: GatewayClient, sandbox: Sandbox, job_cd: str) -> None:
    out = await charge(
        gateway_client, "JOB-01", make_card("5555555555554444"), job_cd=job_cd, amount=100
    )  # type: ignore[arg-type]
    assert out.ok
    assert sandbox.state.order("JOB-01")["status"] == job_cd  # type: ignore[index]


async def test_check_needs_no_amount(gateway_client: GatewayClient, sandbox: Sandbox) -> None:
    out = await charge(
        gateway_client, "CHK-01", make_card("3530111333300000"), job_cd="CHECK", amount=None
    )
    assert out.ok
    assert sandbox.state.order("CHK-01")["status"] == "CHECK"  # type: ignore[index]


@pytest.mark.parametrize(
    ("amount", "tax", "err_code"),
    [(0, None, "E01490005"), (9_999_999, 1, "E01490005"), (10_000_000, None, "E01060005")],
)
async def test_amount_limits(
    gateway_client: GatewayClient, amount: int, tax: int | None, err_code: str
) -> None:
    out = await gateway_client.entry_tran("AMT-01", "AUTH", amount, tax)
    assert (out.kind, out.err_code) == ("system", err_code)


async def test_amount_upper_bound_is_accepted(gateway_client: GatewayClient) -> None:
    assert (await gateway_client.entry_tran("AMT-02", "AUTH", 9_999_998, 1)).ok


async def test_instalments(gateway_client: GatewayClient) -> None:
    card = make_card("4111111111111111")
    out = await charge(gateway_client, "INST-01", card, amount=30000, method=2, pay_times=3)
    assert out.ok and (out.method, out.pay_times) == ("2", "3")
    missing = await charge(gateway_client, "INST-02", card, amount=30000, method=2)
    assert (missing.kind, missing.err_code) == ("system", "E01270001")


async def test_order_id_reuse_is_a_system_error(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    card = make_card("4111111111111111")
    assert (await charge(gateway_client, "DUP-01", card, amount=100)).ok
    again = await charge(gateway_client, "DUP-01", card, amount=100)
    assert (again.kind, again.err_code) == ("system", "E01040010")
    assert sandbox.state.successes("DUP") == 1
    assert sandbox.state.requests["SearchTrade"] == 0  # never taken for our own attempt


async def test_exec_with_unknown_access_id(gateway_client: GatewayClient) -> None:
    out = await gateway_client.exec_tran("X-01", "0" * 32, "0" * 32, make_card("4111111111111111"))
    assert (out.kind, out.err_code) == ("system", "E01110002")


async def test_exec_twice_on_one_order(gateway_client: GatewayClient, sandbox: Sandbox) -> None:
    card = make_card("4111111111111111")
    entry = await gateway_client.entry_tran("TWICE-01", "AUTH", 100)
    assert entry.access_id and entry.access_pass
    first = await gateway_client.exec_tran("TWICE-01", entry.access_id, entry.access_pass, card)
    second = await gateway_client.exec_tran("TWICE-01", entry.access_id, entry.access_pass, card)
    assert first.ok
    # "already settled": reconcile, which finds our own success.
    assert (second.kind, second.err_code) == ("unknown", "E11010001")
    assert (await gateway_client.reconcile("TWICE-01", sent_at=second.sent_at)).executed  # type: ignore[arg-type]
    order = sandbox.state.order("TWICE-01")
    assert order is not None and (order["executions"], order["successes"]) == (2, 1)


async def test_check_string_made_with_another_shop_pass_is_not_trusted(
    sandbox: Sandbox,
) -> None:
    card = make_card("4111111111111111")
    async with (
        make_gateway_client(sandbox) as ours,
        GatewayClient(sandbox.url, "tshop00000001", "otherpass", timeout_s=1.0) as wrong,
    ):
        entry = await ours.entry_tran("CS-01", "AUTH", 100)
        assert entry.access_id and entry.access_pass
        out = await wrong.exec_tran("CS-01", entry.access_id, entry.access_pass, card)
        assert (out.kind, out.message) == ("unknown", "CheckString mismatch")
        assert out.tran_id is None  # never a success
        assert (await ours.reconcile("CS-01", sent_at=out.sent_at)).executed  # type: ignore[arg-type]


async def test_incomplete_card_is_refused_without_sending(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    from ivrpay.card.holder import CardData

    card = CardData()
    card.set_number("4111111111111111")
    out = await gateway_client.exec_tran("INC-01", "a" * 32, "b" * 32, card)
    assert (out.kind, out.sent) == ("system", False)
    assert sandbox.state.requests["ExecTran"] == 0


async def test_value_not_in_cp932_is_refused_without_sending(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    out = await gateway_client.save_member("m-1", "emoji \U0001f600")
    assert (out.kind, out.sent) == ("system", False) and "MemberName" in out.message
    assert sandbox.state.requests["SaveMember"] == 0


@pytest.mark.parametrize("value", ["a&b", 'say "hi"', "x" * 101, "髙" * 51, "\U0001f600"])
async def test_client_fields_the_gateway_refuses_are_not_sent(
    gateway_client: GatewayClient, sandbox: Sandbox, value: str
) -> None:
    """ClientField1..3: ≤ 100 cp932 bytes, none of {}|^`~&<>"' (gmo-pg.md). Refused before
    sending, naming the field only: nothing is executed, so the outcome is certain."""
    entry = await gateway_client.entry_tran("CFC-01", "AUTH", 100)
    assert entry.access_id and entry.access_pass
    out = await gateway_client.exec_tran(
        "CFC-01",
        entry.access_id,
        entry.access_pass,
        make_card("4111111111111111"),
        client_fields=("ok", value),
    )
    assert (out.kind, out.sent) == ("system", False)
    assert "ClientField2" in out.message and value not in out.message
    assert sandbox.state.requests["ExecTran"] == 0


async def test_client_fields_are_sent_and_kept(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    entry = await gateway_client.entry_tran("CFC-03", "AUTH", 100)
    assert entry.access_id and entry.access_pass
    fields = ("髙橋 ①", "x" * 100, "a=b c")
    out = await gateway_client.exec_tran(
        "CFC-03",
        entry.access_id,
        entry.access_pass,
        make_card("5555555555554444"),
        client_fields=fields,
    )
    assert out.ok
    body = encode_request({"ShopID": SHOP_ID, "ShopPass": SHOP_PASS, "OrderID": "CFC-03"})
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sandbox.url}/payment/SearchTrade.idPass", data=body) as resp:
            answer = decode_answer(await resp.read(), ENDPOINTS["SearchTrade"])
    assert tuple(answer.fields[f"ClientField{i}"] for i in (1, 2, 3)) == fields
