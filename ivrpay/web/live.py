"""What the live page shows of a payment: the call's steps, each waiting, current, done or failed.

Derived from the payment snapshot alone (status, ``progress``, ``executions``, ``error``), so the
page and its SSE updates show the same thing whichever process changed the payment. Never a card
digit: the card is its brand and last 4, shown only once the payment succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ivrpay.config import Settings
from ivrpay.store.states import STEPS

FIELDS = ("card_number", "expiry", "security_code")
# Gateway ErrInfo prefixes of input errors, by the field the caller keys again (product.md).
_INPUT_CODES = {
    "E0117": "card_number",
    "E0118": "expiry",
    "42G83": "expiry",
    "E0119": "security_code",
    "E0146": "security_code",
    "42G44": "security_code",
}
_FIELD_ERRORS = {
    "invalid_card_number": "card_number",
    "invalid_expiry": "expiry",
    "invalid_security_code": "security_code",
}
FINAL_VIEW = ("succeeded", "failed", "canceled", "expired", "abandoned", "unknown")


@dataclass(frozen=True)
class Step:
    key: str  # the words key: step_<key>
    state: str  # todo | current | done | failed
    attempts: int = 0  # wrong entries so far (fields only)


def failed_field(error: dict[str, Any] | None) -> str | None:
    if not error:
        return None
    code = str(error.get("code") or "")
    if code in _FIELD_ERRORS:
        return _FIELD_ERRORS[code]
    if error.get("category") == "input":
        for prefix, name in _INPUT_CODES.items():
            if code.startswith(prefix):
                return name
    return None


def asks_security_code(payment: dict[str, Any], settings: Settings) -> bool:
    return settings.security_code and payment.get("operation") != "register"


def steps(payment: dict[str, Any], settings: Settings) -> list[Step]:
    status = payment["status"]
    progress = payment.get("progress") or {}
    step = progress.get("step") or "waiting"
    attempts = progress.get("attempts") or {}
    executed = bool(payment.get("executions"))
    connected = payment.get("call") is not None
    bad_field = failed_field(payment.get("error")) if status != "succeeded" else None

    fields = [f for f in FIELDS if f != "security_code" or asks_security_code(payment, settings)]
    if status == "succeeded" or (executed and step in ("done", "result", "processing")):
        reached = STEPS.index("processing")
    elif bad_field is not None and step in ("done", "result"):
        reached = STEPS.index(bad_field)
    elif step in STEPS and step != "done":
        reached = STEPS.index(step)
    else:
        reached = STEPS.index("amount") if connected else 0

    out = [
        Step("waiting", "done" if connected or status != "pending" else "current"),
        Step("connected", "done" if connected else "todo"),
    ]
    for f in fields:
        i = STEPS.index(f)
        if f == bad_field and reached == i and status in FINAL_VIEW:
            state = "failed"
        elif reached > i or status == "succeeded":
            state = "done"
        elif reached == i:
            state = "current"
        else:
            state = "todo"
        out.append(Step(f, state, int(attempts.get(f, 0) or 0)))
    if status == "processing" or (status == "in_call" and step == "processing"):
        proc = "current"
    elif status == "succeeded" or (executed and status in FINAL_VIEW):
        proc = "done"
    else:
        proc = "todo"
    out.append(Step("processing", proc))
    return out


def outcome(payment: dict[str, Any]) -> str | None:
    """The result shown under the steps: None while the call goes on."""
    status = payment["status"]
    if status == "succeeded":
        return "stored" if payment.get("operation") == "register" else "succeeded"
    if status in FINAL_VIEW:
        return status
    return None
