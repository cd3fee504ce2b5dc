"""What an AlterTran must do (``alter_step`` on a real SearchTrade answer) and AlterTran itself:
capture (SALES), void, refund (RETURN/RETURNX). Lost answers and retries across processes are
the payment process's (tests/payments/test_settle.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ivrpay.gateway import GatewayClient
from ivrpay.sandbox import Sandbox
from tests.support.gateway import alter, charge, make_card, make_gateway_client

VISA = "4111111111111111"


async def _charged(client: GatewayClient, order_id: str, job_cd: str = "AUTH") -> None:
    out = await charge(client, order_id, make_card(VISA), job_cd=job_cd, amount=5000, tax=400)  # type: ignore[arg-type]
    assert out.ok


async def test_capture_then_it_is_done(gateway_client: GatewayClient, sandbox: Sandbox) -> None:
    await _charged(gateway_client, "CAP-01")
    out = await alter(gateway_client, "CAP-01", "capture", 5000)
    assert out.ok and out.endpoint == "AlterTran" and out.status == "SALES"
    assert out.tran_id and out.tran_date is not None
    again = await alter(gateway_client, "CAP-01", "capture", 5000)
    assert again.ok and again.reconciled and again.status == "SALES"
    assert sandbox.state.requests["AlterTran"] == 1
    assert sandbox.state.order("CAP-01")["status"] == "SALES"  # type: ignore[index]


async def test_capture_amount_must_equal(gateway_client: GatewayClient) -> None:
    await _charged(gateway_client, "CAP-02")
    out = await alter(gateway_client, "CAP-02", "capture", 4999)
    assert (out.kind, out.err_code) == ("system", "E01060010")


async def test_capture_of_a_capture_is_refused_without_alter(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    await _charged(gateway_client, "CAP-03", "CAPTURE")
    trade = await gateway_client.search_trade("CAP-03")
    step = gateway_client.alter_step(trade, "capture")
    assert step.kind == "refuse" and "CAPTURE" in step.message
    assert sandbox.state.requests["AlterTran"] == 0


async def test_void(gateway_client: GatewayClient, sandbox: Sandbox) -> None:
    await _charged(gateway_client, "VOID-01")
    out = await alter(gateway_client, "VOID-01", "void")
    assert out.ok and out.status == "VOID"
    assert (await alter(gateway_client, "VOID-01", "void")).reconciled
    assert sandbox.state.requests["AlterTran"] == 1


async def test_void_of_an_unexecuted_order(gateway_client: GatewayClient) -> None:
    assert (await gateway_client.entry_tran("VOID-02", "AUTH", 100)).ok
    out = await alter(gateway_client, "VOID-02", "void")
    assert out.kind == "system" and "UNPROCESSED" in out.message
    missing = await alter(gateway_client, "VOID-03", "void")
    assert (missing.kind, missing.err_code) == ("system", "E01110002")


async def test_refund_same_month_is_return(gateway_client: GatewayClient) -> None:
    await _charged(gateway_client, "REF-01", "CAPTURE")
    trade = await gateway_client.search_trade("REF-01")
    assert gateway_client.alter_step(trade, "refund").job == "RETURN"
    out = await alter(gateway_client, "REF-01", "refund")
    assert out.ok and out.status == "RETURN"
    assert (await alter(gateway_client, "REF-01", "refund")).reconciled


async def test_refund_in_a_later_month_is_returnx(sandbox: Sandbox) -> None:
    async with make_gateway_client(
        sandbox, clock=lambda: datetime.now(UTC) + timedelta(days=40)
    ) as client:
        await _charged(client, "REF-02", "CAPTURE")
        out = await alter(client, "REF-02", "refund")
    assert out.ok and out.status == "RETURNX"


async def test_alter_tran_raw(gateway_client: GatewayClient) -> None:
    out = await gateway_client.alter_tran("0" * 32, "0" * 32, "VOID")
    assert (out.kind, out.err_code) == ("system", "E01110002")
