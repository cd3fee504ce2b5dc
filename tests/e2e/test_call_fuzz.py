"""Whatever a caller keys, the call ends cleanly: a status the dialplan knows (or a hang-up), a
payment in a legal state, no protocol error, no fault logged. Seeded, so every run is the same."""

from __future__ import annotations

import io
import random

import pytest

from ivrpay.flow.call import IVRPAY_STATUSES
from ivrpay.logging import configure
from tests.e2e.callkit import EXPIRY, clean
from tests.e2e.conftest import Ivrpay

STATUSES = set(IVRPAY_STATUSES)
PAYMENT_STATUSES = {"succeeded", "failed", "abandoned", "unknown", "canceled", "in_call"}
_FRAGMENTS = [
    "4111111111111111#",
    "378282246310005#",
    "4000000000000002#",
    "4111111111111112#",
    EXPIRY,
    "1399",
    "0120",
    "123",
    "1234",
    "1",
    "2",
    "0",
    "0#",
    "*",
    "#",
    "_",
    "9",
    "~5",
    "12*",
]


def _script(rng: random.Random) -> list[str]:
    entries = []
    if rng.random() < 0.4:  # a caller who starts right, then does anything
        entries += [rng.choice(_FRAGMENTS[:3]), EXPIRY, rng.choice(["123", "1234"])]
    for _ in range(rng.randint(1, 14)):
        if rng.random() < 0.2:
            entries.append("".join(rng.choice("0123456789*#") for _ in range(rng.randint(1, 20))))
        else:
            entries.append(rng.choice(_FRAGMENTS))
    if rng.random() < 0.3:
        entries.append("!")
    return entries


@pytest.fixture
def e2e_overrides() -> dict[str, object]:
    return {"digit_timeout_ms": 500}


@pytest.mark.parametrize("seed", range(3))
async def test_random_keys_always_end_the_call_cleanly(ivrpay: Ivrpay, seed: int) -> None:
    logs = io.StringIO()
    configure(level="info", fmt="json", stream=logs)
    rng = random.Random(seed)
    try:
        for i in range(12):
            keys = _script(rng)
            payment = await ivrpay.create_payment(language=rng.choice(["ja", "en"]))
            record = await ivrpay.call(keys, code=payment["code"], silence_timeout=20)
            clean(record)
            status = record.variables.get("IVRPAY_STATUS")
            assert status in STATUSES or (status is None and record.hung_up), (i, keys, status)
            after = await ivrpay.payment(payment["id"])
            assert after["status"] in PAYMENT_STATUSES, (i, keys, after["status"])
            assert after["status"] != "in_call", "the call ended but the payment did not"
    finally:
        configure(level="warning", fmt="console")
    text = logs.getvalue()
    assert '"call.fault"' not in text and "Traceback" not in text
