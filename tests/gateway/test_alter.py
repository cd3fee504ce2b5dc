"""capture (SALES), void, refund (RETURN/RETURNX) through AlterTran: idempotent, reconciled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ivrpay.gateway import GatewayClient
from ivrpay.sandbox import Sandbox
from tests.support.gateway import charge, make_card, make_gateway_client

VISA = "4111111111111111"


async def _charged(client: GatewayClient, order_id: str, job_cd: str = "AUTH") -> None:
    out = await charge(client, order_id, make_card(VISA), job_cd=job_cd, amount=5000, tax=400)  # type: ignore[arg-type]
    assert out.ok


async def test_capture_is_idempotent(gateway_client: GatewayClient, sandbox: Sandbox) -> None:
    await _charged(gateway_client, "CAP-01")
    out = await gateway_client.capture("CAP-01", 5000)
    assert out.ok and out.endpoint == "AlterTran" and out.status == "SALES"
    assert out.tran_id and out.tran_date is not None
    again = await gateway_client.capture("CAP-01", 5000)
    assert again.ok and again.reconciled and again.status == "SALES"
    assert sandbox.state.requests["AlterTran"] == 1
    assert sandbox.state.order("CAP-01")["status"] == "SALES"  # type: ignore[index]


async def test_capture_amount_must_equal(gateway_client: GatewayClient) -> None:
    await _charged(gateway_client, "CAP-02")
    out = await gateway_client.capture("CAP-02", 4999)
    assert (out.kind, out.err_code) == ("system", "E01060010")


async def test_capture_of_a_capture_is_refused_without_alter(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    await _charged(gateway_client, "CAP-03", "CAPTURE")
    out = await gateway_client.capture("CAP-03", 5000)
    assert out.kind == "system" and "CAPTURE" in out.message
    assert sandbox.state.requests["AlterTran"] == 0


async def test_void(gateway_client: GatewayClient, sandbox: Sandbox) -> None:
    await _charged(gateway_client, "VOID-01")
    out = await gateway_client.void("VOID-01")
    assert out.ok and out.status == "VOID"
    assert (await gateway_client.void("VOID-01")).ok
    assert sandbox.state.requests["AlterTran"] == 1


async def test_void_of_an_unexecuted_order(gateway_client: GatewayClient) -> None:
    assert (await gateway_client.entry_tran("VOID-02", "AUTH", 100)).ok
    out = await gateway_client.void("VOID-02")
    assert out.kind == "system" and "UNPROCESSED" in out.message
    missing = await gateway_client.void("VOID-03")
    assert (missing.kind, missing.err_code) == ("system", "E01110002")


async def test_refund_same_month_is_return(gateway_client: GatewayClient) -> None:
    await _charged(gateway_client, "REF-01", "CAPTURE")
    out = await gateway_client.refund("REF-01")
    assert out.ok and out.status == "RETURN"
    assert (await gateway_client.refund("REF-01")).reconciled


async def test_refund_in_a_later_month_is_returnx(sandbox: Sandbox) -> None:
    async with make_gateway_client(
        sandbox, clock=lambda: datetime.now(UTC) + timedelta(days=40)
    ) as client:
        await _charged(client, "REF-02", "CAPTURE")
        out = await client.refund("REF-02")
    assert out.ok and out.status == "RETURNX"


@pytest.mark.parametrize("fault", ["timeout", "drop_answer"])
async def test_alter_timeout_looks_before_retrying(sandbox: Sandbox, fault: str) -> None:
    async with make_gateway_client(sandbox, timeout_s=0.3) as client:
        await _charged(client, "ALT-01")
        sandbox.add_fault("AlterTran", fault, 1)
        out = await client.void("ALT-01")
    assert out.ok and out.reconciled and out.status == "VOID"
    assert sandbox.state.requests["AlterTran"] == 1


async def test_alter_not_processed_is_retried(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    await _charged(gateway_client, "ALT-02")
    sandbox.add_fault("AlterTran", "http500", 1)
    out = await gateway_client.capture("ALT-02", 5000)
    assert out.ok and out.status == "SALES"
    assert sandbox.state.requests["AlterTran"] == 2


async def test_alter_tran_raw(gateway_client: GatewayClient) -> None:
    out = await gateway_client.alter_tran("0" * 32, "0" * 32, "VOID")
    assert (out.kind, out.err_code) == ("system", "E01110002")
