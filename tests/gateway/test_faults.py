"""Faults between the client and the sandbox: busy retried, timeouts and lost connections
reported as unknown (never failed) and reconciled, a timed-out EntryTran recovered."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest

from ivrpay.gateway import GatewayClient
from ivrpay.sandbox import Sandbox
from tests.support.gateway import SHOP_ID, SHOP_PASS, charge, make_card, make_gateway_client

SHORT_TIMEOUT_S = 0.3
VISA = "4111111111111111"


async def test_busy_is_retried(gateway_client: GatewayClient, sandbox: Sandbox) -> None:
    sandbox.add_fault("ExecTran", "busy", 1)
    out = await charge(gateway_client, "BUSY-01", make_card(VISA), amount=100)
    assert out.ok and out.attempts == 2
    assert sandbox.state.requests["ExecTran"] == 2
    assert sandbox.state.executions("BUSY") == 1 and sandbox.state.successes("BUSY") == 1


async def test_busy_that_outlasts_the_retries_is_a_system_error(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    sandbox.add_fault("ExecTran", "busy", 3)
    out = await charge(gateway_client, "BUSY-02", make_card(VISA), amount=100)
    assert (out.kind, out.err_code, out.attempts) == ("system", "E92000001", 3)
    assert "busy" in out.message
    assert sandbox.state.requests["ExecTran"] == 3
    assert sandbox.state.order("BUSY-02")["status"] == "UNPROCESSED"  # type: ignore[index]


async def test_back_off_list_sets_the_number_of_retries(sandbox: Sandbox) -> None:
    sandbox.add_fault("*", "busy", 2)
    async with make_gateway_client(sandbox, retry_backoff_s=(0.0,)) as client:
        out = await client.search_trade("NOPE-01")
    assert (out.kind, out.attempts) == ("system", 2)
    assert sandbox.faults.view() == []


@pytest.mark.parametrize("kind", ["timeout", "drop_answer", "garbage"])
async def test_exec_processed_but_answer_lost_is_unknown_then_executed(
    sandbox: Sandbox, kind: str
) -> None:
    async with make_gateway_client(sandbox, timeout_s=SHORT_TIMEOUT_S) as client:
        entry = await client.entry_tran("LOSS-01", "AUTH", 700)
        assert entry.access_id and entry.access_pass
        sandbox.add_fault("ExecTran", kind, 1)
        out = await client.exec_tran("LOSS-01", entry.access_id, entry.access_pass, make_card(VISA))
        assert out.kind == "unknown" and out.sent and out.tran_id is None
        assert out.attempts == 1  # never resent: it may have been executed
        rec = await client.reconcile("LOSS-01", sent_at=out.sent_at)  # type: ignore[arg-type]
    assert rec.executed and rec.trade.status == "AUTH"
    assert sandbox.state.executions("LOSS") == 1 and sandbox.state.successes("LOSS") == 1


@pytest.mark.parametrize("kind", ["refuse", "http500"])
async def test_exec_not_processed_is_unknown_then_not_executed(
    gateway_client: GatewayClient, sandbox: Sandbox, kind: str
) -> None:
    entry = await gateway_client.entry_tran("NOPR-01", "AUTH", 700)
    assert entry.access_id and entry.access_pass
    sandbox.add_fault("ExecTran", kind, 1)
    out = await gateway_client.exec_tran(
        "NOPR-01", entry.access_id, entry.access_pass, make_card(VISA)
    )
    # The client cannot know nothing happened: unknown, never "failed".
    assert out.kind == "unknown" and out.sent
    assert out.sent_at is not None
    fresh = await gateway_client.reconcile("NOPR-01", sent_at=out.sent_at)
    assert fresh.state == "unknown"
    old = await gateway_client.reconcile("NOPR-01", sent_at=out.sent_at - timedelta(minutes=6))
    assert old.state == "not_executed"
    assert sandbox.state.successes("NOPR") == 0


async def test_charge_reconciles_a_lost_exec_answer_at_once(sandbox: Sandbox) -> None:
    sandbox.add_fault("ExecTran", "drop_answer", 1)
    async with make_gateway_client(sandbox) as client:
        out = await charge(client, "CLOSS-01", make_card(VISA), amount=100)
    assert out.ok and out.reconciled and out.endpoint == "ExecTran"
    assert sandbox.state.successes("CLOSS") == 1 and sandbox.state.requests["ExecTran"] == 1


async def test_timed_out_entry_is_resent_and_recovered(sandbox: Sandbox) -> None:
    sandbox.add_fault("EntryTran", "timeout", 1)
    async with make_gateway_client(sandbox, timeout_s=SHORT_TIMEOUT_S) as client:
        out = await charge(client, "ENTO-01", make_card(VISA), amount=2500)
    assert out.ok and not out.reconciled
    assert sandbox.state.requests["EntryTran"] == 2  # the resend met E01040010
    assert sandbox.state.requests["SearchTrade"] == 1  # which SearchTrade resolved
    assert sandbox.state.executions("ENTO") == 1 and sandbox.state.successes("ENTO") == 1


async def test_entry_refused_is_resent(gateway_client: GatewayClient, sandbox: Sandbox) -> None:
    sandbox.add_fault("EntryTran", "refuse", 1)
    out = await charge(gateway_client, "ENRF-01", make_card(VISA), amount=2500)
    assert out.ok
    assert sandbox.state.requests["EntryTran"] == 2
    assert sandbox.state.requests["SearchTrade"] == 0


async def test_entry_lost_twice_charges_nothing(sandbox: Sandbox) -> None:
    sandbox.add_fault("EntryTran", "drop_answer", 2)
    async with make_gateway_client(sandbox) as client:
        out = await charge(client, "ENLO-01", make_card(VISA), amount=2500)
    # ExecTran was never sent, so nothing can have been charged: a system error.
    assert out.kind == "system" and out.endpoint == "EntryTran"
    assert sandbox.state.requests["ExecTran"] == 0


async def test_reconcile_with_search_trade_unavailable_stays_unknown(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    assert (await charge(gateway_client, "SRCH-01", make_card(VISA), amount=100)).ok
    sandbox.add_fault("SearchTrade", "http500", 1)
    rec = await gateway_client.reconcile(
        "SRCH-01", sent_at=gateway_client._clock() - timedelta(hours=1)
    )
    assert rec.state == "unknown" and rec.trade.kind == "system"


async def test_search_trade_lost_answer_is_system_not_unknown(sandbox: Sandbox) -> None:
    sandbox.add_fault("SearchTrade", "timeout", 1)
    async with make_gateway_client(sandbox, timeout_s=SHORT_TIMEOUT_S) as client:
        out = await client.search_trade("ANY-01")
    assert out.kind == "system" and "no answer" in out.message


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_gateway_is_a_system_error_after_retries() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    async with GatewayClient(url, SHOP_ID, SHOP_PASS, retry_backoff_s=(0.0, 0.0)) as client:
        out = await client.entry_tran("DOWN-01", "AUTH", 100)
        exe = await client.exec_tran("DOWN-01", "a" * 32, "b" * 32, make_card(VISA))
    assert (out.kind, out.sent, out.attempts) == ("system", False, 3)
    assert "unreachable" in out.message
    # Nothing was sent, so even an ExecTran is certainly not executed.
    assert (exe.kind, exe.sent) == ("system", False)


async def test_a_closed_client_reopens_its_session(gateway_client: GatewayClient) -> None:
    await gateway_client.close()
    assert (await gateway_client.entry_tran("REOPEN-01", "AUTH", 100)).ok


def test_bad_base_url_is_refused() -> None:
    with pytest.raises(ValueError, match="base URL"):
        GatewayClient("ftp://gateway.example/path", SHOP_ID, SHOP_PASS)


def test_from_settings_reads_the_gateway_settings() -> None:
    from ivrpay.config import Settings

    settings = Settings(
        gateway_url="https://pt01.example.jp",
        gateway_timeout_s=7.0,
        gateway_connect_timeout_s=2.0,
        reconcile_after_s=60.0,
    )
    client = GatewayClient.from_settings(settings)
    assert client.base_url == "https://pt01.example.jp"
    assert (client.timeout_s, client.connect_timeout_s, client.reconcile_after_s) == (7, 2, 60)
    assert "shoppass" not in repr(client) and settings.shop_pass not in repr(client)
    local = GatewayClient.from_settings(Settings(), base_url="http://127.0.0.1:9")
    assert local.base_url == "http://127.0.0.1:9"


async def test_connect_timeout_is_a_system_error_not_retried() -> None:
    # A listener whose accept queue is full drops new SYNs: the connection never opens.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        try:
            async with GatewayClient(
                f"http://127.0.0.1:{port}",
                SHOP_ID,
                SHOP_PASS,
                timeout_s=2.0,
                connect_timeout_s=0.2,
                retry_backoff_s=(0.0, 0.0),
            ) as client:
                out = await client.entry_tran("CT-01", "AUTH", 100)
        finally:
            for filler in fillers:
                filler.close()
    assert (out.kind, out.sent, out.attempts) == ("system", False, 1)
    assert "connect timeout" in out.message


async def test_open_transaction_and_settle_exec_as_the_call_uses_them(sandbox: Sandbox) -> None:
    sandbox.add_fault("EntryTran", "timeout", 1)
    sandbox.add_fault("ExecTran", "drop_answer", 1)
    async with make_gateway_client(sandbox, timeout_s=SHORT_TIMEOUT_S) as client:
        entry = await client.open_transaction("OT-01", "AUTH", 1200, 120)
        assert entry.ok and entry.reconciled and entry.access_id and entry.access_pass
        executed = await client.exec_tran(
            "OT-01", entry.access_id, entry.access_pass, make_card(VISA)
        )
        assert executed.kind == "unknown"
        settled = await client.settle_exec(executed)
    assert settled.ok and settled.reconciled and settled.tran_id
    assert settled.tran_date is not None and settled.card_last4 == "1111"
    assert sandbox.state.executions("OT") == 1 and sandbox.state.successes("OT") == 1


async def test_settle_exec_leaves_a_fresh_unprocessed_unknown(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    entry = await gateway_client.open_transaction("OT-02", "AUTH", 1200)
    assert entry.access_id and entry.access_pass
    sandbox.add_fault("ExecTran", "refuse", 1)
    executed = await gateway_client.exec_tran(
        "OT-02", entry.access_id, entry.access_pass, make_card(VISA)
    )
    settled = await gateway_client.settle_exec(executed)
    assert settled.kind == "unknown" and settled is executed


async def test_entry_recovery_refuses_an_order_that_is_not_the_one_sent(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    """E01040010 after a lost EntryTran "may be our own earlier attempt": SearchTrade must show
    the transaction we asked for (JobCd, Amount, Tax), or ExecTran would charge another amount."""
    assert (await gateway_client.entry_tran("MIS-01", "AUTH", 100)).ok  # someone else's
    sandbox.add_fault("EntryTran", "http500", 1)  # ours is lost on the way: unknown
    out = await gateway_client.open_transaction("MIS-01", "AUTH", 5000, 400)
    assert (out.kind, out.err_code, out.access_id) == ("system", "E01040010", None)
    assert "5000" not in out.message and "amount" in out.message
    assert sandbox.state.requests["SearchTrade"] == 1
    assert (await gateway_client.entry_tran("MIS-02", "CAPTURE", 100)).ok
    sandbox.add_fault("EntryTran", "http500", 1)
    other_job = await gateway_client.open_transaction("MIS-02", "AUTH", 100)
    assert (other_job.kind, other_job.access_id) == ("system", None)
    assert (await gateway_client.entry_tran("MIS-03", "AUTH", 100, 8)).ok
    sandbox.add_fault("EntryTran", "http500", 1)
    same = await gateway_client.open_transaction("MIS-03", "AUTH", 100, 8)
    assert same.ok and same.reconciled and same.access_id
