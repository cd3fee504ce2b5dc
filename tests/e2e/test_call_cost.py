"""The database cost of one succeeded call, pinned: a change that adds round trips or transactions
to the call fails here (docs/performance.rst explains the budget)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from ivrpay import store
from ivrpay.store import counting
from tests.e2e.conftest import Ivrpay

# A succeeded call today (98 and 31 before issue 12): find, claim, five progress steps, the
# attempt, processing, the answer (BEGIN … COMMIT: a webhook row may follow), the release. Lower
# these when a change saves more; never raise them silently.
MAX_STATEMENTS = 13
MAX_TRANSACTIONS = 11
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
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert [e["outcome"] for e in after["executions"]] == ["succeeded"]
    # The log rows written with the changes they led to, in the order of the requests.
    logged = await store.list_gateway_calls(ivrpay.pool, payment["id"])
    assert [(c["endpoint"], c["outcome"]) for c in logged] == [
        ("EntryTran", "ok"),
        ("ExecTran", "ok"),
    ]
    print(f"\none succeeded call: {counter.report()}")
    for text, n in counter.texts.most_common():
        print(f"{n:3d}  {text}")
    assert 0 < counter.statements <= MAX_STATEMENTS
    assert 0 < counter.transactions <= MAX_TRANSACTIONS
