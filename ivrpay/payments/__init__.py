"""The payment process: charge / register / settle / reconcile / retry a card storage; the one
place that calls the gateway, logs each gateway call and decides the payment's status. It knows
no calls and no HTTP: the flow, the API, the screen and the workers call it.

    PaymentProcess(pool, gateway, settings, clock)   shared by the process
        find_by_code, find_for_transferrer, claim -> ClaimOutcome(call: CallPayment | None)
        settle(payment_id, action, actor)            capture | void | refund (AlterTran)
        reconcile(item), retry_registration(item)    what the workers claimed
    CallPayment                                      one claimed payment, its token and clock:
        progress, start_attempt, execute -> Decision, end
    decide(outcome, attempts, fields, max_attempts)  pure: status and the call's next step
    error_of(outcome), log_gateway_call(db, outcome, ...)
"""

from ivrpay.payments.background import ReconcileOutcome, RegistrationOutcome
from ivrpay.payments.journal import log_gateway_call
from ivrpay.payments.process import (
    FAULTS,
    CallPayment,
    CancelRequested,
    ClaimOutcome,
    PaymentProcess,
    wipe_after,
)
from ivrpay.payments.rules import (
    TOO_MANY_ATTEMPTS,
    Decision,
    Next,
    Operation,
    PaymentStatus,
    Step,
    decide,
    error_of,
    rejected_field,
)
from ivrpay.payments.settle import SETTLEMENT_ACTIONS, SettleRefused
from ivrpay.store import LeaseLost, PaymentCanceled, TakenBack, TooManyAttempts, device_of

__all__ = [
    "FAULTS",
    "SETTLEMENT_ACTIONS",
    "TOO_MANY_ATTEMPTS",
    "CallPayment",
    "CancelRequested",
    "ClaimOutcome",
    "Decision",
    "LeaseLost",
    "Next",
    "Operation",
    "PaymentCanceled",
    "PaymentProcess",
    "PaymentStatus",
    "ReconcileOutcome",
    "RegistrationOutcome",
    "SettleRefused",
    "Step",
    "TakenBack",
    "TooManyAttempts",
    "decide",
    "device_of",
    "error_of",
    "log_gateway_call",
    "rejected_field",
    "wipe_after",
]
