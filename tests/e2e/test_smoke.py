from __future__ import annotations

from tests.e2e.conftest import Ivrpay


async def test_a_visa_card_is_paid(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call(["4111111111111111#", "1230", "123", "1"], code=payment["code"])
    assert record.variables["IVRPAY_STATUS"] == "SUCCEEDED", record
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["card"] == {"brand": "VISA", "last4": "1111"}


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    return 0.0


async def test_metrics_count_calls_by_outcome(ivrpay: Ivrpay) -> None:
    name = 'ivrpay_call_outcomes_total{status="SUCCEEDED"}'
    url = f"http://127.0.0.1:{ivrpay.service.http_port}/metrics"
    async with ivrpay.http.get(url) as r:
        before = _metric(await r.text(), name)
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call(["4111111111111111#", "1230", "123", "1"], code=payment["code"])
    assert record.variables["IVRPAY_STATUS"] == "SUCCEEDED"
    async with ivrpay.http.get(url) as r:
        text = await r.text()
    assert _metric(text, name) == before + 1
    assert _metric(text, "ivrpay_calls_in_flight") == 0
