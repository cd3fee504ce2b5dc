"""The database cost of one succeeded call, pinned: a change that adds round trips or transactions
to the call fails here (docs/performance.rst explains the budget)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from ivrpay.store import counting
from tests.e2e.conftest import Ivrpay

# A succeeded call today; lower these when a change saves more, never raise them silently.
MAX_STATEMENTS = 98
MAX_TRANSACTIONS = 31
KEYS = ["4111111111111111#", "1230", "123", "1"]


@pytest.fixture(autouse=True)
def _counting() -> Iterator[None]:
    counting.install()  # before the service opens its pool
    try:
        yield
    finally:
        counting.uninstall()


def count_calls(ivrpay: Ivrpay) -> counting.QueryCounter:
    """A counter of every query the service's calls send (their gateway work included)."""
    counter = counting.QueryCounter()
    agi = ivrpay.service.agi
    assert agi is not None
    pay: Callable[[Any], Awaitable[None]] = agi.handlers["pay"]

    async def counted(session: Any) -> None:
        with counter.scope():
            await pay(session)

    agi.handlers["pay"] = counted
    return counter


async def test_a_succeeded_call_stays_within_its_statement_budget(ivrpay: Ivrpay) -> None:
    counter = count_calls(ivrpay)
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call(KEYS, code=payment["code"])
    assert record.variables["IVRPAY_STATUS"] == "SUCCEEDED", record
    assert (await ivrpay.payment(payment["id"]))["status"] == "succeeded"
    print(f"\none succeeded call: {counter.report()}")
    for text, n in counter.texts.most_common():
        print(f"{n:3d}  {text}")
    assert 0 < counter.statements <= MAX_STATEMENTS
    assert 0 < counter.transactions <= MAX_TRANSACTIONS
