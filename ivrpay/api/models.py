"""The API's request and response models, declared once (product.md "Payment resource").

``validation.py`` reads requests with these declarations and ``openapi.py`` publishes them as its
components (``schema.py`` does both), so the document and the checks cannot drift. The paths of
the document stay hand-written in ``openapi.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, ClassVar

from ivrpay.api.problems import FieldError
from ivrpay.api.schema import (
    IGNORED,
    Bool,
    Choice,
    Int,
    Json,
    JsonObject,
    Needs,
    Nested,
    Rule,
    SumAtMost,
    Text,
    arg,
)
from ivrpay.store.states import ERROR_CATEGORIES, STATUSES, STEPS
from ivrpay.store.states import WEBHOOK_TYPES as _store_webhook_types

ORDER_ID_RE = r"^[A-Za-z0-9-]{1,24}$"
MEMBER_ID_RE = r"^[A-Za-z0-9_.@-]{1,60}$"
# Printable, no control characters: operator ids end up on the screen and in logs.
OPERATOR_ID_RE = r"^[^\x00-\x1f\x7f]{1,64}$"
IDEMPOTENCY_KEY_RE = r"^[\x21-\x7e]{1,255}$"
ORDER_ID_MESSAGE = "must be 1–24 of A-Z a-z 0-9 -"

JOBS = ("AUTH", "CAPTURE", "CHECK")
METHODS = (1, 2, 5)
OPERATIONS = ("charge", "register", "charge_and_register")
CHARGES = ("charge", "charge_and_register")
REGISTERS = ("register", "charge_and_register")
AMOUNT_MAX = 9_999_999
PAY_TIMES_MIN, PAY_TIMES_MAX = 2, 99
EXPIRES_IN_MIN, EXPIRES_IN_MAX, EXPIRES_IN_DEFAULT = 60, 86_400, 1800
METADATA_MAX_BYTES = 4096
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 50, 200
SETTLEMENTS = ("authorized", "captured", "voided", "refunded")
REGISTRATION_STATUSES = ("succeeded", "failed", "pending")
DELIVERY_STATES = ("pending", "delivered", "failed")
# The event types the store emits, in its order: one table, so the document cannot drift.
WEBHOOK_TYPES = tuple(_store_webhook_types.values())


# -- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operator:
    """The operator who registered the payment and the dial string the caller goes back to."""

    NOT_OBJECT: ClassVar[str] = "must be an object with id and callback"

    id: str = arg(
        Text(OPERATOR_ID_RE, "must be 1–64 characters without control characters", max_length=64),
        required=True,
    )
    callback: str = arg(
        Text(
            lambda s: s.callback_pattern,
            "is not an allowed dial string (IVRPAY_CALLBACK_PATTERN)",
            scan_first=True,
            description="Dial string the caller goes back to; matches IVRPAY_CALLBACK_PATTERN.",
        ),
        required=True,
    )
    listen_in: bool = arg(
        Bool(),
        default=lambda s: s.listen_in,
        description=(
            "Listen-in: instead of a blind transfer, the operator starts the card entry "
            "(POST /payments/{id}/listen-in) and stays on the line without hearing a key. "
            "Default: IVRPAY_LISTEN_IN."
        ),
    )


@dataclass(frozen=True)
class NewPayment:
    """A POST /payments body. amount + tax must be within 1…9,999,999 for charges; register
    ignores amount, tax and job (only their JSON types are checked). Unknown fields are
    rejected; null counts as not given."""

    VARIANT: ClassVar[str] = "operation"
    RULES: ClassVar[tuple[Rule, ...]] = (
        SumAtMost(
            ("amount", "tax"), AMOUNT_MAX, "tax", f"amount + tax must not exceed {AMOUNT_MAX}"
        ),
        Needs(
            "pay_times",
            ("method", 2),
            missing="is required with method 2 (instalments)",
            extra="is allowed only with method 2 (instalments)",
        ),
    )

    order_id: str = arg(Text(ORDER_ID_RE, ORDER_ID_MESSAGE, max_length=24), required=True)
    amount: int | None = arg(
        Int(1, AMOUNT_MAX),
        required=True,
        variants=CHARGES,
        elsewhere=IGNORED,
        description="Yen, without tax. Ignored by register.",
    )
    tax: int | None = arg(
        Int(0, AMOUNT_MAX - 1),
        default=0,
        variants=CHARGES,
        elsewhere=IGNORED,
        description="Ignored by register.",
    )
    job: str | None = arg(
        Choice(JOBS),
        default="AUTH",
        variants=CHARGES,
        elsewhere=IGNORED,
        description="Ignored by register.",
    )
    method: int | None = arg(
        Choice(METHODS, "must be 1 (lump sum), 2 (instalments) or 5 (revolving)"),
        default=1,
        variants=CHARGES,
        description="1 lump sum, 2 instalments, 5 revolving. Not for register.",
    )
    pay_times: int | None = arg(
        Int(PAY_TIMES_MIN, PAY_TIMES_MAX),
        variants=CHARGES,
        description="Required with method 2, refused otherwise.",
    )
    operation: str = arg(Choice(OPERATIONS), default="charge")
    member_id: str | None = arg(
        Text(MEMBER_ID_RE, "must be 1–60 of A-Z a-z 0-9 _ . @ -", max_length=60),
        required="is required for operation {variant}",
        variants=REGISTERS,
        description="Required for register and charge_and_register, refused for charge.",
    )
    operator: dict[str, str] | None = arg(Nested(Operator, Operator.NOT_OBJECT))  # noqa: RUF009
    language: str = arg(Choice(lambda s: s.languages), default=lambda s: s.default_language)
    expires_in: int = arg(
        Int(EXPIRES_IN_MIN, EXPIRES_IN_MAX),
        default=EXPIRES_IN_DEFAULT,
        description="Seconds until an unclaimed payment expires.",
    )
    # arg() is a dataclasses.field (a fresh {} per body): not a shared mutable default.
    metadata: dict[str, Any] = arg(JsonObject(METADATA_MAX_BYTES), default=lambda s: {})  # noqa: RUF009


# -- responses ---------------------------------------------------------------------------------

Time = datetime
Category = Annotated[str, Json(enum=list(ERROR_CATEGORIES))]


@dataclass(frozen=True)
class PaymentError:
    code: str
    category: Category
    message: str | None = None


@dataclass(frozen=True)
class PaymentOperator:
    id: str | None
    callback: str
    listen_in: bool = False


@dataclass(frozen=True)
class Progress:
    step: Annotated[str, Json(enum=list(STEPS))] | None
    attempts: dict[str, Annotated[int, Json(minimum=0)]]


@dataclass(frozen=True)
class Execution:
    order_id: str
    started_at: Time
    outcome: str | None
    error: PaymentError | None


@dataclass(frozen=True)
class Card:
    brand: str | None
    last4: str | None


@dataclass(frozen=True)
class PaymentResult:
    approve: str | None = None
    tran_id: str | None = None
    tran_date: Time | None = None
    forward: str | None = None
    card_seq: Annotated[int, Json(minimum=0)] | None = None


@dataclass(frozen=True)
class Registration:
    status: Annotated[str, Json(enum=list(REGISTRATION_STATUSES))]
    card_seq: int | None = None
    error: PaymentError | None = None


@dataclass(frozen=True)
class PaymentCall:
    uniqueid: str | None = None
    channel: str | None = None
    started_at: Time | None = None
    ended_at: Time | None = None


@dataclass(frozen=True)
class TakenBack:
    """The operator took the caller back over AMI (issue 11); ``process``: the ivrpay process
    whose AMI link sent the Redirect (null until it was sent)."""

    by: str
    at: Time
    process: str | None = None


@dataclass(frozen=True)
class ListenIn:
    """The operator listened in (issue 14): who started it and when, the two channels, the
    ivrpay process whose AMI link moved them (null until sent), and when the IVR call ended."""

    by: str
    at: Time
    operator_channel: str
    caller_channel: str
    process: str | None = None
    ended_at: Time | None = None
    dtmf_mode: str | None = None  # the caller's line, as the PBX said (PJSIP_DTMF_MODE)
    mute: bool = False  # keys are tones: the operator's leg is muted while a field is keyed
    muted: bool = False  # muted now


@dataclass(frozen=True)
class Payment:
    """A payment: every field is always there (null when it does not apply yet)."""

    id: str
    order_id: str
    amount: int | None
    tax: int | None
    job: Annotated[str, Json(enum=list(JOBS))] | None
    method: int | None
    pay_times: int | None
    operation: Annotated[str, Json(enum=list(OPERATIONS))]
    member_id: str | None
    language: str
    metadata: dict[str, Any]
    status: Annotated[str, Json(enum=list(STATUSES))]
    code: Annotated[str, Json(pattern="^[0-9]{6}$")]
    transfer_to: Annotated[str, Json(pattern="^8[0-9]{6}$")]
    expires_at: Time
    operator: PaymentOperator | None
    progress: Progress
    executions: list[Execution]
    card: Card | None
    result: PaymentResult | None
    registration: Registration | None
    error: PaymentError | None
    call: PaymentCall | None
    settlement: Annotated[str, Json(enum=list(SETTLEMENTS))] | None
    cancel_requested: bool
    taken_back: TakenBack | None
    listen_in: ListenIn | None
    needs_review: bool
    created_at: Time
    updated_at: Time


@dataclass(frozen=True)
class PaymentList:
    items: list[Payment]
    next_cursor: str | None


@dataclass(frozen=True)
class DeliveryAttempt:
    attempted_at: Time
    status_code: int | None = None
    error: str | None = None
    duration_ms: float | None = None


@dataclass(frozen=True)
class WebhookDelivery:
    id: str
    payment_id: str
    type: Annotated[str, Json(enum=list(WEBHOOK_TYPES))]
    sequence: int
    url: str
    state: Annotated[str, Json(enum=list(DELIVERY_STATES))]
    attempts: Annotated[int, Json(minimum=0)]
    next_attempt_at: Time | None
    created_at: Time
    delivered_at: Time | None
    history: list[DeliveryAttempt]


@dataclass(frozen=True)
class WebhookDeliveryList:
    items: list[WebhookDelivery]


@dataclass(frozen=True)
class WebhookEvent:
    """The body of every webhook delivery: the same bytes on every retry."""

    id: Annotated[str, Json(description="The event id; also X-Ivrpay-Delivery. Deduplicate by it.")]
    type: Annotated[str, Json(enum=list(WEBHOOK_TYPES))]
    sequence: Annotated[
        int,
        Json(
            minimum=1,
            description="The payment's event sequence number: a larger one is newer.",
        ),
    ]
    created_at: Time
    payment: Payment


@dataclass(frozen=True)
class Problem:
    """RFC 9457 problem details."""

    type: str
    title: str
    status: Annotated[int, Json(minimum=400, maximum=599)]
    detail: str = ""
    instance: str = ""
    errors: list[FieldError] = field(default_factory=list)
    gateway_errors: Annotated[
        list[str], Json(description="The gateway's ErrInfo codes, when it refused.")
    ] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    status: str
    detail: str = ""
    since: Time | None = None  # AMI down since when


@dataclass(frozen=True)
class TakeBackAnswer:
    """202 of POST /payments/{id}/take-back: the payment, and the process that redirected."""

    payment: Payment
    redirected_by: str


@dataclass(frozen=True)
class ListenInAnswer:
    """202 of POST /payments/{id}/listen-in: the payment, and the process that redirected."""

    payment: Payment
    redirected_by: str


@dataclass(frozen=True)
class HealthChecks:
    database: Check
    gateway: Check
    ami: Check


@dataclass(frozen=True)
class Health:
    status: Annotated[str, Json(enum=["ok", "degraded", "fail", "draining"])]
    checks: HealthChecks
