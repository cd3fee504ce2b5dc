"""Card storage: register, charge_and_register, stored-card charges, SearchCard, DeleteCard."""

from __future__ import annotations

import pytest

from ivrpay.card.holder import CardData
from ivrpay.gateway import GatewayClient
from ivrpay.sandbox import Sandbox
from tests.support.gateway import (
    GATEWAY_TIMEOUT_CARD,
    LOST_ANSWER_CARD,
    charge,
    charge_and_register,
    charge_stored,
    make_card,
    make_gateway_client,
)

VISA, MASTER, JCB = "4111111111111111", "5555555555554444", "3530111333300000"


def _cards(sandbox: Sandbox, member_id: str) -> list[dict]:
    for m in sandbox.state.members():
        if m["member_id"] == member_id:
            return list(m["cards"])  # type: ignore[arg-type]
    return []


async def test_register_creates_the_member_then_stores_the_card(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    out = await gateway_client.register("cust-1", make_card(VISA, code=None), member_name="髙橋①")
    assert out.ok and (out.card_seq, out.card_last4) == (0, "1111")
    assert sandbox.state.requests["SaveMember"] == 1
    second = await gateway_client.register("cust-1", make_card(MASTER, code=None))
    assert second.ok and second.card_seq == 1
    assert sandbox.state.requests["SaveMember"] == 1  # found by SearchMember this time
    member = await gateway_client.search_member("cust-1")
    assert member.ok and member.member_name == "髙橋①"
    stored = _cards(sandbox, "cust-1")
    assert [c["card_no"] for c in stored] == ["************1111", "************4444"]


async def test_register_with_a_declining_card(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    out = await gateway_client.register("cust-2", make_card("4000000000000002", code=None))
    assert (out.kind, out.err_code) == ("declined", "42G020000")
    assert _cards(sandbox, "cust-2") == []


async def test_register_with_a_bad_expiry_is_an_input_error(gateway_client: GatewayClient) -> None:
    out = await gateway_client.register("cust-3", make_card(VISA, expiry="0120", code=None))
    assert (out.kind, out.field) == ("input", "expiry")


async def test_save_card_lost_answer_is_found_by_search_card(sandbox: Sandbox) -> None:
    async with make_gateway_client(sandbox, timeout_s=0.3) as client:
        assert (await client.register("cust-4", make_card(JCB, code=None))).ok
        out = await client.register("cust-4", make_card(LOST_ANSWER_CARD, code=None))
    assert out.ok and out.reconciled and (out.card_seq, out.card_last4) == (1, "0119")
    assert sandbox.state.requests["SaveCard"] == 2  # one each, never resent
    assert len(_cards(sandbox, "cust-4")) == 2


@pytest.mark.parametrize("fault", ["timeout", "drop_answer"])
async def test_save_card_timeout_is_reconciled(sandbox: Sandbox, fault: str) -> None:
    sandbox.add_fault("SaveCard", fault, 1)
    async with make_gateway_client(sandbox, timeout_s=0.3) as client:
        out = await client.register("cust-5", make_card(VISA, code=None))
    assert out.ok and out.reconciled and out.card_seq == 0
    assert sandbox.state.requests["SaveCard"] == 1
    assert len(_cards(sandbox, "cust-5")) == 1


async def test_save_card_not_processed_is_sent_again(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    sandbox.add_fault("SaveCard", "refuse", 1)
    out = await gateway_client.register("cust-6", make_card(VISA, code=None))
    assert out.ok and not out.reconciled and out.card_seq == 0
    assert sandbox.state.requests["SaveCard"] == 2
    assert len(_cards(sandbox, "cust-6")) == 1


async def test_save_card_gateway_timeout_stays_unknown(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    out = await gateway_client.register("cust-7", make_card(GATEWAY_TIMEOUT_CARD, code=None))
    assert (out.kind, out.err_code) == ("unknown", "E91020001")
    assert _cards(sandbox, "cust-7") == []


async def test_at_most_five_cards(gateway_client: GatewayClient) -> None:
    numbers = [VISA, MASTER, JCB, "378282246310005", "36227206271667"]
    for i, number in enumerate(numbers):
        out = await gateway_client.register("cust-8", make_card(number, code=None))
        assert out.ok and out.card_seq == i
    sixth = await gateway_client.register("cust-8", make_card(VISA, code=None))
    assert (sixth.kind, sixth.err_code) == ("system", "E01230009")


async def test_search_card_lists_several_cards_masked(gateway_client: GatewayClient) -> None:
    assert (await gateway_client.register("cust-9", make_card(VISA, code=None))).ok
    assert (await gateway_client.register("cust-9", make_card(MASTER, code=None))).ok
    listed = await gateway_client.search_card("cust-9")
    assert listed.ok
    assert [(c.card_seq, c.last4, c.default, c.deleted) for c in listed.cards] == [
        (0, "1111", False, False),
        (1, "4444", True, False),
    ]
    one = await gateway_client.search_card("cust-9", 0)
    assert [c.last4 for c in one.cards] == ["1111"]


async def test_delete_card(gateway_client: GatewayClient) -> None:
    assert (await gateway_client.register("cust-10", make_card(VISA, code=None))).ok
    deleted = await gateway_client.delete_card("cust-10", 0)
    assert deleted.ok and deleted.card_seq == 0
    listed = await gateway_client.search_card("cust-10")
    assert [(c.card_seq, c.deleted) for c in listed.cards] == [(0, True)]
    again = await gateway_client.delete_card("cust-10", 0)
    assert (again.kind, again.err_code) == ("system", "E01240002")


async def test_search_card_without_cards_or_member(gateway_client: GatewayClient) -> None:
    missing = await gateway_client.search_card("nobody")
    assert (missing.kind, missing.err_code) == ("system", "E01390002")
    assert (await gateway_client.save_member("empty-1")).ok
    empty = await gateway_client.search_card("empty-1")
    assert (empty.kind, empty.err_code) == ("system", "E01240002")


async def test_member_endpoints(gateway_client: GatewayClient) -> None:
    assert (await gateway_client.save_member("mem-1", "Sato & Sons")).ok
    exists = await gateway_client.save_member("mem-1")
    assert exists.err_code == "E01390010"
    found = await gateway_client.search_member("mem-1")
    assert found.ok and found.member_name == "Sato & Sons"
    missing = await gateway_client.search_member("mem-2")
    assert missing.err_code == "E01390002"
    bad = await gateway_client.save_member("bad id!")
    assert (bad.kind, bad.err_code) == ("system", "E01220008")


async def test_charge_a_stored_card(gateway_client: GatewayClient, sandbox: Sandbox) -> None:
    stored = await gateway_client.register("cust-11", make_card(MASTER, code=None))
    assert stored.ok and stored.card_seq is not None
    out = await charge_stored(gateway_client, "ST-01", "cust-11", stored.card_seq, amount=4200)
    assert out.ok and out.tran_id
    order = sandbox.state.order("ST-01")
    assert order is not None
    assert (order["card_no"], order["member_id"], order["successes"]) == (
        "************4444",
        "cust-11",
        1,
    )
    code = CardData()  # a holder with the code only
    code.set_security_code("1234")  # Mastercard codes have 3 digits
    bad = await charge_stored(
        gateway_client, "ST-02", "cust-11", stored.card_seq, amount=4200, security_code=code
    )
    assert (bad.kind, bad.field) == ("input", "security_code")
    gone = await charge_stored(gateway_client, "ST-03", "cust-11", 7, amount=4200)
    assert (gone.kind, gone.err_code) == ("system", "E01240002")


async def test_charge_and_register(gateway_client: GatewayClient, sandbox: Sandbox) -> None:
    charged, stored = await charge_and_register(
        gateway_client, "CR-01", "cust-12", make_card(JCB), amount=1500
    )
    assert charged.ok and stored is not None
    assert stored.ok and stored.card_seq == 0
    assert _cards(sandbox, "cust-12")[0]["card_no"] == "************0000"
    assert sandbox.state.successes("CR") == 1


async def test_charge_and_register_declined_stores_nothing(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    charged, stored = await charge_and_register(
        gateway_client, "CR-02", "cust-13", make_card("4000000000009995"), amount=1500
    )
    assert charged.kind == "declined" and stored is None
    assert sandbox.state.requests["TradedCard"] == 0


@pytest.mark.parametrize(("fault", "sends"), [("timeout", 1), ("refuse", 2)])
async def test_traded_card_unknown_is_settled(sandbox: Sandbox, fault: str, sends: int) -> None:
    sandbox.add_fault("TradedCard", fault, 1)
    async with make_gateway_client(sandbox, timeout_s=0.3) as client:
        charged, stored = await charge_and_register(
            client, "CR-03", "cust-14", make_card(VISA), amount=1500
        )
    assert charged.ok and stored is not None and stored.ok
    assert sandbox.state.requests["TradedCard"] == sends
    assert len(_cards(sandbox, "cust-14")) == 1


async def test_traded_card_needs_an_executed_order(gateway_client: GatewayClient) -> None:
    assert (await gateway_client.entry_tran("TC-01", "AUTH", 100)).ok
    assert (await gateway_client.save_member("cust-15")).ok
    out = await gateway_client.traded_card("TC-01", "cust-15")
    assert (out.kind, out.err_code) == ("system", "E01110010")


async def test_which_card_storage_failures_may_pass_later(sandbox: Sandbox) -> None:
    """``retry_later``: unreachable, busy or lost answers may pass; the gateway's own refusal
    (here: TradedCard of an order that was never executed) will not."""
    async with make_gateway_client(sandbox, retry_backoff_s=(0.0,)) as client:
        assert (await charge(client, "RL-01", make_card(VISA), amount=100)).ok
        sandbox.add_fault("TradedCard", "http500", 2)
        lost = await client.store_traded_card("RL-01", "cust-20")
        assert (lost.kind, lost.retry_later) == ("unknown", True)
        sandbox.add_fault("TradedCard", "busy", 2)
        busy = await client.store_traded_card("RL-01", "cust-20")
        assert (busy.kind, busy.err_code, busy.retry_later) == ("system", "E92000001", True)
        sandbox.add_fault("SearchCard", "http500", 1)
        unreadable = await client.store_traded_card("RL-01", "cust-20")
        assert (unreadable.kind, unreadable.err_code, unreadable.retry_later) == (
            "system",
            None,
            True,
        )
        stored = await client.store_traded_card("RL-01", "cust-20")
        assert stored.ok and stored.card_seq == 0 and not stored.retry_later
        assert (await client.entry_tran("RL-02", "AUTH", 100)).ok
        refused = await client.store_traded_card("RL-02", "cust-20")
        assert (refused.kind, refused.err_code, refused.retry_later) == (
            "system",
            "E01110010",
            False,
        )
        declined = await charge(client, "RL-03", make_card("4000000000000002"), amount=100)
        assert declined.kind == "declined" and not declined.retry_later
        # Refused here before sending: a member id the gateway's charset cannot carry.
        unsendable = await client.store_traded_card("RL-01", "cust-\u263a")
        assert (unsendable.kind, unsendable.sent, unsendable.retry_later) == (
            "system",
            False,
            False,
        )
