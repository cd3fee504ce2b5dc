"""No log line, result or message written while the client and the sandbox work holds a card number.

Every test in tests/gateway and tests/sandbox also runs under the ``card_safe_logs`` check (see
conftest.py); this file drives every test card and every fault at debug level and looks closer.
"""

from __future__ import annotations

import logging

import structlog

from ivrpay.gateway.codec import ENDPOINTS
from ivrpay.sandbox import FAULT_KINDS, Sandbox
from tests.support.gateway import (
    TEST_CARD_NUMBERS,
    LogCapture,
    alter,
    charge,
    charge_and_register,
    find_card_numbers,
    make_card,
    make_gateway_client,
)


def test_the_leak_detector_can_fail() -> None:
    assert find_card_numbers("paid with 4111111111111111 today") == ["4111111111111111"]
    capture = LogCapture()
    capture.raw.append("{'event': 'x', 'card': '4000000000000119'}")
    assert capture.leaks() == ["4000000000000119"]
    assert find_card_numbers("************1111 and *0119") == []


def test_the_capture_sees_what_the_code_logs(card_safe_logs: LogCapture) -> None:
    structlog.get_logger("probe").info("probe", value="4111111111111111")
    logging.getLogger("aiohttp.client").warning("probe %s", "4000000000000002")
    assert card_safe_logs.leaks() == ["4000000000000002", "4111111111111111"]
    assert "4111111111111111" not in card_safe_logs.rendered  # the last-line masker worked
    card_safe_logs.raw.clear()  # the deliberate probe must not fail this test's own check


async def test_every_card_and_fault_logs_no_card_data(
    card_safe_logs: LogCapture, sandbox: Sandbox
) -> None:
    results = []
    async with make_gateway_client(sandbox, timeout_s=0.3) as client:
        for i, number in enumerate(TEST_CARD_NUMBERS):
            charged = await charge(client, f"LOG{i}-01", make_card(number), amount=100)
            charged2, stored = await charge_and_register(
                client, f"LOGS{i}-01", f"logm{i}", make_card(number), amount=100
            )
            registered = await client.register(f"logr{i}", make_card(number, code=None))
            results += [charged, charged2, stored, registered]
            if charged.ok:
                results += [await alter(client, f"LOG{i}-01", "capture", 100)]
                results += [await client.search_card(f"logm{i}")]
        for n, kind in enumerate(FAULT_KINDS):
            sandbox.add_fault("*", kind, 1)
            results.append(
                await charge(client, f"LOGF{n}-01", make_card(TEST_CARD_NUMBERS[0]), amount=1)
            )
    shown = "\n".join(repr(r) + (r.message if r else "") for r in results)
    assert find_card_numbers(shown) == []

    calls = card_safe_logs.events("gateway_call")
    logged_endpoints = {name for name in ENDPOINTS if any(f"'{name}'" in c for c in calls)}
    assert logged_endpoints >= {"EntryTran", "ExecTran", "AlterTran", "SearchTrade", "SaveCard"}
    assert all("'elapsed_ms'" in c and "'order_id'" in c for c in calls)
    assert any("'err_code': '42G020000'" in c for c in calls)
    dumps = "\n".join(card_safe_logs.events("gateway_request"))
    assert "'CardNo': '*1111'" in dumps and "'Expire': '***'" in dumps
    assert "'SecurityCode': '***'" in dumps
    assert card_safe_logs.leaks() == []
    assert card_safe_logs.rendered  # the masked output was written too
