"""The payment state machine in one place (pure; no I/O).

product.md "Status", plus ``in_call → failed``: attempts or executions used up inside a call end
the payment ``failed`` without a gateway call in flight (End states table).
Every status change in the store is a conditional UPDATE whose ``WHERE status = ANY(...)`` comes
from :func:`sources_of`, so the database applies exactly this table, atomically.
"""

from __future__ import annotations

import re

STATUSES = (
    "pending",
    "in_call",
    "processing",
    "succeeded",
    "failed",
    "unknown",
    "abandoned",
    "canceled",
    "expired",
)
FINAL_STATUSES = frozenset({"succeeded", "canceled", "expired"})
# Statuses a new call may take up (and an API cancel or the expiry may end).
CLAIMABLE_STATUSES = frozenset({"pending", "failed", "abandoned"})

TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"in_call", "canceled", "expired"}),
    "in_call": frozenset({"processing", "abandoned", "canceled", "failed"}),
    "processing": frozenset({"succeeded", "failed", "unknown", "in_call"}),
    "unknown": frozenset({"succeeded", "failed"}),
    "failed": frozenset({"canceled", "expired", "in_call"}),
    "abandoned": frozenset({"canceled", "expired", "in_call"}),
    "succeeded": frozenset(),
    "canceled": frozenset(),
    "expired": frozenset(),
}

# Webhook event types: by the status entered, and by the settlement reached.
WEBHOOK_TYPES: dict[str, str] = {
    "succeeded": "payment.succeeded",
    "failed": "payment.failed",
    "abandoned": "payment.abandoned",
    "unknown": "payment.unknown",
    "canceled": "payment.canceled",
    "expired": "payment.expired",
    "captured": "payment.captured",
    "voided": "payment.voided",
    "refunded": "payment.refunded",
}

STEPS = (
    "waiting",
    "identify",
    "amount",
    "card_number",
    "expiry",
    "security_code",
    "confirm",
    "processing",
    "result",
    "done",
)

ERROR_CATEGORIES = ("input", "declined", "system", "unknown")


def can_transition(from_status: str, to_status: str) -> bool:
    """Whether the state machine allows ``from_status → to_status``."""
    return to_status in TRANSITIONS.get(from_status, frozenset())


def sources_of(to_status: str) -> list[str]:
    """Every status from which ``to_status`` may be entered."""
    return [s for s in STATUSES if to_status in TRANSITIONS[s]]


# Asterisk channel names end in "-<hex sequence>" and Local channels add ";1"/";2".
_CHANNEL_SUFFIX = re.compile(r"-[0-9A-Fa-f]{8,}(;\d+)?$|;\d+$")


def device_of(channel: str) -> str:
    """The device of a channel or dial string: ``PJSIP/1001-0000002a;2`` → ``PJSIP/1001``."""
    return _CHANNEL_SUFFIX.sub("", channel.strip())
