"""decide(): every kind of gateway answer, as the payment's status and the call's next step."""

from __future__ import annotations

import pytest

from ivrpay.gateway.results import Outcome
from ivrpay.payments import Next, Operation, PaymentStatus, Step, decide, error_of
from ivrpay.store.states import STATUSES, STEPS

FIELDS = ("card_number", "expiry", "security_code")


def answer(kind: str, field: str | None = None, code: str | None = None) -> Outcome:
    return Outcome("ExecTran", kind, field=field, err_code=code, message="m")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outcome", "used", "fields", "status", "next_"),
    [
        (answer("ok"), 0, FIELDS, PaymentStatus.SUCCEEDED, Next.SUCCEEDED),
        (answer("input", "expiry", "42G830000"), 0, FIELDS, PaymentStatus.IN_CALL, Next.REENTER),
        (answer("input", "expiry", "42G830000"), 2, FIELDS, PaymentStatus.FAILED, Next.REENTER),
        # A security code the call does not ask for cannot be corrected here: another card.
        (
            answer("input", "security_code", "42G440000"),
            0,
            FIELDS[:2],
            PaymentStatus.IN_CALL,
            Next.ANOTHER_CARD,
        ),
        (
            answer("declined", None, "42G020000"),
            0,
            FIELDS,
            PaymentStatus.IN_CALL,
            Next.ANOTHER_CARD,
        ),
        (answer("unknown", None, "E91020001"), 0, FIELDS, PaymentStatus.UNKNOWN, Next.UNKNOWN),
        (answer("system", None, "E01010001"), 0, FIELDS, PaymentStatus.FAILED, Next.ERROR),
        (answer("busy", None, None), 0, FIELDS, PaymentStatus.FAILED, Next.ERROR),
    ],
)
def test_decide(
    outcome: Outcome, used: int, fields: tuple[str, ...], status: PaymentStatus, next_: Next
) -> None:
    field = outcome.field or ""
    decision = decide(outcome, {field: used}, fields, max_attempts=3)
    assert (decision.status, decision.next) == (status, next_)
    if outcome.ok:
        assert decision.error is None
    else:
        assert decision.error is not None and decision.error["code"] == (
            outcome.err_code or outcome.kind
        )
    if next_ is Next.REENTER:
        assert decision.field == outcome.field
    if next_ is Next.ERROR:
        assert decision.error is not None and decision.error["category"] == "system"


def test_error_of_names_the_category() -> None:
    assert error_of(answer("declined", code="42G020000")) == {
        "code": "42G020000",
        "category": "declined",
        "message": "m",
    }
    assert error_of(answer("busy"))["category"] == "system"
    assert error_of(answer("unknown"))["code"] == "unknown"


def test_the_enums_hold_the_stores_values() -> None:
    """The flow and the process speak in enums; the rows keep the very same strings."""
    assert tuple(PaymentStatus) == STATUSES
    assert tuple(Step) == STEPS
    assert [o.value for o in Operation] == ["charge", "register", "charge_and_register"]
