"""Background work every ``serve`` process runs, coordinated in PostgreSQL.

Each loop is a :class:`~ivrpay.workers.loops.Loop`: ``await loop.run_once(now)`` does one batch
(tests drive time and call it directly), ``await loop.run(stop_event)`` repeats it every
``interval_s`` until the event is set. Processes share the work through ``FOR UPDATE SKIP LOCKED``.

    LeaseRenewer(pool, owner, *, lease_s, live_tokens=lambda: (), interval_s=None)
                                                         renew the leases of the calls in
                                                         progress here (``live_tokens()``)
    LeaseSweeper(pool, *, interval_s)                    resolve lapsed leases of crashed processes
    Expirer(pool, *, interval_s)                         pending/failed/abandoned past expiry
    WebhookDeliverer(pool, *, backoff_s, horizon_s, interval_s, timeout_s=10.0, session=None)
                                                         sign and POST due outbox rows
    Reconciler(pool, reconcile, *, backoff_s, horizon_s, interval_s, lease_s=120.0)
                                                         unknown payments: ``reconcile(item)``
                                                         (item carries ``now``) ->
                                                         ReconcileOutcome
    RegistrationRetrier(pool, register, *, backoff_s, horizon_s, interval_s, lease_s=120.0)
                                                         pending card registrations:
                                                         ``register(item)`` (item carries
                                                         ``now``) -> RegistrationOutcome
    SettlementChecker(pool, check, *, interval_s, lease_s)
                                                         settlement intents whose AlterTran
                                                         answer was lost: ``check(item)``
    IdempotencyPurger(pool, *, interval_s)               forget keys past 24 h

    The gateway side of these three is the payment process's (``ivrpay.payments``):
    ``PaymentProcess.reconcile``, ``.retry_registration`` and ``.check_settlement``.

    process_owner() -> str                               this process's lease owner name
    build_workers(pool, settings, *, owner, reconcile=None, register=None,
        live_tokens=lambda: ()) -> list[Loop]
    Workers(settings, pool, process=None, *, owner, reconcile=None, register=None,
        live_tokens=lambda: ())                          ``await .start()``, ``await .stop()``;
                                                         the payment process wires the
                                                         reconciler and the registration retrier;
                                                         ``.loop(Reconciler)`` -> that loop
    start_workers(pool, settings, *, owner, reconcile=None, register=None,
        live_tokens=lambda: ()) -> Workers (started)
"""

from ivrpay.workers.loops import (
    Expirer,
    IdempotencyPurger,
    LeaseRenewer,
    LeaseSweeper,
    Loop,
    ReconcileOutcome,
    Reconciler,
    RegistrationOutcome,
    RegistrationRetrier,
    SettlementChecker,
    WebhookDeliverer,
    Workers,
    build_workers,
    process_owner,
    start_workers,
)

__all__ = [
    "Expirer",
    "IdempotencyPurger",
    "LeaseRenewer",
    "LeaseSweeper",
    "Loop",
    "ReconcileOutcome",
    "Reconciler",
    "RegistrationOutcome",
    "RegistrationRetrier",
    "SettlementChecker",
    "WebhookDeliverer",
    "Workers",
    "build_workers",
    "process_owner",
    "start_workers",
]
