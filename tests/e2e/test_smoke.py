from __future__ import annotations

from tests.e2e.conftest import Ivrpay


async def test_a_visa_card_is_paid(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call(["4111111111111111#", "1230", "123", "1"], code=payment["code"])
    assert record.variables["IVRPAY_STATUS"] == "SUCCEEDED", record
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["card"] == {"brand": "VISA", "last4": "1111"}
