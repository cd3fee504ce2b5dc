"""Background work every ``serve`` process runs, coordinated in PostgreSQL.

Each loop is a :class:`~ivrpay.workers.loops.Loop`: ``await loop.run_once(now)`` does one batch
(tests drive time and call it directly), ``await loop.run(stop_event)`` repeats it every
``interval_s`` until the event is set. Processes share the work through ``FOR UPDATE SKIP LOCKED``.

    LeaseRenewer(pool, owner, *, lease_s, interval_s)    renew this process's call leases
    LeaseSweeper(pool, *, interval_s)                    resolve lapsed leases of crashed processes
    Expirer(pool, *, interval_s)                         pending/failed/abandoned past expiry
    WebhookDeliverer(pool, *, backoff_s, horizon_s, interval_s, timeout_s=10.0, session=None)
                                                         sign and POST due outbox rows
    Reconciler(pool, reconcile, *, backoff_s, horizon_s, interval_s, lease_s=120.0)
                                                         unknown payments: ``reconcile(item)``
                                                         (the gateway's SearchTrade, wired by
                                                         the lead) -> ReconcileOutcome
    IdempotencyPurger(pool, *, interval_s)               forget keys past 24 h

    gateway_reconciler(gateway, pool=None) -> reconcile  SearchTrade per open attempt
                                                         (``gateway.reconcile(order_id,
                                                         sent_at=...)``) -> ReconcileOutcome

    process_owner() -> str                               this process's lease owner name
    build_workers(pool, settings, *, owner, reconcile=None) -> list[Loop]
    Workers(settings, pool, gateway=None, *, owner, reconcile=None)
                                                         ``await .start()``, ``await .stop()``;
                                                         the gateway wires the reconciler
    start_workers(pool, settings, *, owner, reconcile=None) -> Workers (started)
"""

from ivrpay.workers.loops import (
    Expirer,
    IdempotencyPurger,
    LeaseRenewer,
    LeaseSweeper,
    Loop,
    ReconcileOutcome,
    Reconciler,
    WebhookDeliverer,
    Workers,
    build_workers,
    process_owner,
    start_workers,
)
from ivrpay.workers.reconcile import gateway_reconciler

__all__ = [
    "Expirer",
    "IdempotencyPurger",
    "LeaseRenewer",
    "LeaseSweeper",
    "Loop",
    "ReconcileOutcome",
    "Reconciler",
    "WebhookDeliverer",
    "Workers",
    "build_workers",
    "gateway_reconciler",
    "process_owner",
    "start_workers",
]
