"""The background loops: each does one batch in :meth:`Loop.run_once`; :meth:`Loop.run` repeats."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import aiohttp
import asyncpg
import structlog

from ivrpay import store
from ivrpay.config import Settings
from ivrpay.metrics import DATABASE_DOWN, DATABASE_OUTAGES
from ivrpay.payments import PaymentProcess, ReconcileOutcome, RegistrationOutcome
from ivrpay.store import settlement as settlement_store
from ivrpay.store.webhooks import SIGNATURE_HEADER

log = structlog.get_logger(__name__)
_L = TypeVar("_L", bound="Loop")
_O = TypeVar("_O")


def _now() -> datetime:
    return datetime.now(UTC)


def process_owner() -> str:
    """A name for this process's leases: host, pid and a random part (pids get reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


# A worker's batch that meets these waits for the database; anything else is a bug (traceback).
DATABASE_AWAY: tuple[type[BaseException], ...] = (*store.DATABASE_DOWN, OSError, TimeoutError)


class Outage:
    """The database as this process's workers see it: one log line when the first loop finds it
    away, one when the last loop that did finds it back (however many loops, however long)."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.since: float | None = None
        self.outages = 0
        self.tries = 0  # batches that found the database away
        self.changed = asyncio.Event()  # set at each start and end of an outage (tests wait)
        self.tried = asyncio.Event()  # set at each batch that found it away

    @property
    def down(self) -> bool:
        return bool(self.failing)

    def failed(self, worker: str, exc: BaseException) -> None:
        if not self.failing:
            self.since = time.monotonic()
            self.outages += 1
            log.warning("database_unavailable", worker=worker, error=type(exc).__name__)
            DATABASE_OUTAGES.inc()
            DATABASE_DOWN.set(1)
            self._changed()
        self.failing.add(worker)
        self.tries += 1
        self.tried.set()
        self.tried = asyncio.Event()

    def worked(self, worker: str) -> None:
        if worker not in self.failing:
            return
        self.failing.discard(worker)
        if not self.failing:
            away_s = round(time.monotonic() - (self.since or time.monotonic()), 1)
            log.info("database_recovered", worker=worker, away_s=away_s)
            DATABASE_DOWN.set(0)
            self.since = None
            self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class Loop:
    """One periodic job. Subclasses implement :meth:`run_once`.

    While the database is away a loop waits longer and longer between batches (doubling from
    ``interval_s`` up to ``retry_max_s``) and says nothing but what :class:`Outage` says."""

    name = "loop"
    outage: Outage | None = None  # shared by a process's loops (Workers sets it)
    retry_max_s: float = 30.0

    def __init__(self, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self.failures = 0

    async def run_once(self, now: datetime | None = None) -> int:
        """Do one batch; returns how many items it handled."""
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        """Repeat :meth:`run_once` every ``interval_s`` until ``stop`` is set; never dies."""
        if self.outage is None:
            self.outage = Outage()
        while not stop.is_set():
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except DATABASE_AWAY as exc:
                self.failures += 1
                self.outage.failed(self.name, exc)
            except Exception:
                # One bad batch must not end the loop.
                log.exception("worker_failed", worker=self.name)
            else:
                self.failures = 0
                self.outage.worked(self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.pause_s())

    def pause_s(self) -> float:
        if not self.failures:
            return self.interval_s
        backoff = self.interval_s * 2 ** min(self.failures, 20)
        return min(backoff, max(self.retry_max_s, self.interval_s))


LiveTokens = Callable[[], Iterable[str]]


def _no_calls() -> tuple[str, ...]:
    return ()


class LeaseRenewer(Loop):
    """Renews the leases of the calls in progress in this process: ``live_tokens()`` names them
    (the flow's ``FlowDeps.live_tokens``). A claim whose release failed is no longer named, so it
    lapses and the sweep resolves it instead of it being held as long as the process lives."""

    name = "lease_renewer"

    def __init__(
        self,
        pool: asyncpg.Pool,
        owner: str,
        *,
        lease_s: float,
        live_tokens: LiveTokens = _no_calls,
        interval_s: float | None = None,
    ) -> None:
        super().__init__(interval_s or lease_s / 3)
        self.pool, self.owner, self.lease_s = pool, owner, lease_s
        self.live_tokens = live_tokens

    async def run_once(self, now: datetime | None = None) -> int:
        tokens = list(self.live_tokens())  # a copy: calls come and go while this awaits
        if not tokens:
            return 0
        return await store.renew_leases(
            self.pool, self.owner, now=now or _now(), lease_s=self.lease_s, tokens=tokens
        )


class LeaseSweeper(Loop):
    name = "lease_sweeper"

    def __init__(self, pool: asyncpg.Pool, *, interval_s: float, limit: int = 100) -> None:
        super().__init__(interval_s)
        self.pool, self.limit = pool, limit

    async def run_once(self, now: datetime | None = None) -> int:
        resolved = await store.resolve_lapsed_leases(self.pool, now=now or _now(), limit=self.limit)
        for payment_id, status in resolved:
            log.warning("lease_lapsed", payment_id=payment_id, status=status)
        return len(resolved)


class Expirer(Loop):
    name = "expirer"

    def __init__(self, pool: asyncpg.Pool, *, interval_s: float, limit: int = 500) -> None:
        super().__init__(interval_s)
        self.pool, self.limit = pool, limit

    async def run_once(self, now: datetime | None = None) -> int:
        expired = await store.expire_payments(self.pool, now=now or _now(), limit=self.limit)
        if expired:
            log.info("payments_expired", count=len(expired))
        return len(expired)


class IdempotencyPurger(Loop):
    name = "idempotency_purger"

    def __init__(self, pool: asyncpg.Pool, *, interval_s: float) -> None:
        super().__init__(interval_s)
        self.pool = pool

    async def run_once(self, now: datetime | None = None) -> int:
        return await store.purge_idempotency_keys(self.pool, now=now or _now())


class WebhookDeliverer(Loop):
    """POSTs due outbox rows, signed; every attempt is recorded, failures back off."""

    name = "webhook_deliverer"

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        backoff_s: Sequence[float],
        horizon_s: float,
        interval_s: float,
        timeout_s: float = 10.0,
        lease_s: float | None = None,
        limit: int = 20,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(interval_s)
        self.pool = pool
        self.backoff_s = tuple(backoff_s)
        self.horizon_s = horizon_s
        self.timeout_s = timeout_s
        # A claimed row is retried by anyone after this, should this process die mid-send.
        self.lease_s = lease_s if lease_s is not None else timeout_s + 30
        self.limit = limit
        self._session = session
        self._own_session = session is None

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def run_once(self, now: datetime | None = None) -> int:
        now = now or _now()
        due = await store.claim_deliveries(
            self.pool, now=now, lease_s=self.lease_s, limit=self.limit
        )
        if due:
            await asyncio.gather(*(self._deliver(d, now) for d in due))
        return len(due)

    async def _deliver(self, delivery: Mapping[str, Any], now: datetime) -> None:
        url = delivery["url"]
        status: int | None = None
        error: str | None = None
        started = time.monotonic()
        if not url:
            error = "the client has no webhook URL"
        else:
            body = delivery["body"].encode("utf-8")
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: store.sign(delivery["secret"], body, int(now.timestamp())),
                "X-Ivrpay-Event": delivery["type"],
                "X-Ivrpay-Delivery": delivery["id"],
            }
            try:
                session = await self._get_session()
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as resp:
                    status = resp.status
                    await resp.read()
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
        duration_ms = int((time.monotonic() - started) * 1000)
        ok = error is None
        await store.record_delivery_attempt(
            self.pool,
            delivery["id"],
            now=now,
            ok=ok,
            status_code=status,
            error=error,
            duration_ms=duration_ms,
            backoff_s=self.backoff_s,
            horizon_s=self.horizon_s,
            url=url,
        )
        log.info(
            "webhook_attempt",
            delivery_id=delivery["id"],
            type=delivery["type"],
            ok=ok,
            status=status,
        )


Reconcile = Callable[[dict[str, Any]], Awaitable[ReconcileOutcome]]


RetryRegistration = Callable[[dict[str, Any]], Awaitable[RegistrationOutcome]]


class _ClaimRetryLoop(Loop, Generic[_O]):
    """Claims due items (``claim``), asks ``attempt(item)`` about each (``item`` plus ``now``, the
    moment of this run) and records the outcome with backoff (``record``, given the outcome's
    fields). An exception from ``attempt`` counts as ``retry_outcome``; an outcome the store
    refuses (``not_recorded``) is logged and skipped, so one item never stops the batch.
    Subclasses name the store calls, the log events and what the recorded log line shows."""

    # The log events: an attempt that raised, an outcome not recorded, an outcome recorded.
    events = ("attempt_failed", "attempt_not_recorded", "attempt_recorded")
    not_recorded: tuple[type[Exception], ...] = (store.StoreError,)
    retry_outcome: _O
    claim: Callable[..., Awaitable[list[dict[str, Any]]]]
    record: Callable[..., Awaitable[dict[str, Any]]]

    def __init__(
        self,
        pool: asyncpg.Pool,
        attempt: Callable[[dict[str, Any]], Awaitable[_O]],
        *,
        backoff_s: Sequence[float],
        horizon_s: float,
        interval_s: float,
        lease_s: float = 120.0,
        limit: int = 10,
    ) -> None:
        super().__init__(interval_s)
        self.pool = pool
        self.attempt = attempt
        self.backoff_s = tuple(backoff_s)
        self.horizon_s = horizon_s
        self.lease_s = lease_s
        self.limit = limit

    @staticmethod
    def shown(snap: Mapping[str, Any]) -> dict[str, Any]:
        """What the recorded log line shows of the payment."""
        return {"status": snap["status"]}

    async def run_once(self, now: datetime | None = None) -> int:
        now = now or _now()
        claim, record = type(self).claim, type(self).record
        failed, not_recorded, recorded = self.events
        items = await claim(self.pool, now=now, lease_s=self.lease_s, limit=self.limit)
        for item in items:
            payment_id = item["payment"]["id"]
            try:
                outcome = await self.attempt({**item, "now": now})
            except store.DATABASE_DOWN:
                raise  # the batch ends; the claim lapses and is taken again after the outage
            except Exception:
                log.exception(failed, payment_id=payment_id)
                outcome = self.retry_outcome
            try:
                snap = await record(
                    self.pool,
                    payment_id,
                    now=now,
                    backoff_s=self.backoff_s,
                    horizon_s=self.horizon_s,
                    **dataclasses.asdict(outcome),  # type: ignore[call-overload]
                )
            except self.not_recorded as exc:
                log.warning(not_recorded, payment_id=payment_id, error=str(exc))
                continue
            log.info(recorded, payment_id=payment_id, **self.shown(snap))
        return len(items)


class Reconciler(_ClaimRetryLoop[ReconcileOutcome]):
    """Due ``unknown`` payments (:func:`ivrpay.store.claim_reconciliations`): ``reconcile(item)``
    is the gateway side (:meth:`ivrpay.payments.PaymentProcess.reconcile`: SearchTrade per attempt
    OrderID, "UNPROCESSED only after IVRPAY_RECONCILE_AFTER_S" judged at ``item["now"]``)."""

    name = "reconciler"
    events = ("reconcile_failed", "reconcile_not_recorded", "reconciled")
    claim = staticmethod(store.claim_reconciliations)
    record = staticmethod(store.record_reconciliation)
    retry_outcome = ReconcileOutcome("retry")

    @staticmethod
    def shown(snap: Mapping[str, Any]) -> dict[str, Any]:
        return {"status": snap["status"], "needs_review": snap["needs_review"]}


class RegistrationRetrier(_ClaimRetryLoop[RegistrationOutcome]):
    """Due ``pending`` card registrations of ``charge_and_register`` payments whose TradedCard did
    not get through (:func:`ivrpay.store.claim_registrations`): ``register(item)`` is
    :meth:`ivrpay.payments.PaymentProcess.retry_registration`."""

    name = "registration_retrier"
    events = ("registration_retry_failed", "registration_not_recorded", "registration_retried")
    not_recorded = (store.StoreError, ValueError)  # a card_seq the store cannot take
    retry_outcome = RegistrationOutcome("retry")
    claim = staticmethod(store.claim_registrations)
    record = staticmethod(store.record_registration_attempt)

    @staticmethod
    def shown(snap: Mapping[str, Any]) -> dict[str, Any]:
        return {"registration": (snap["registration"] or {}).get("status")}


CheckSettlement = Callable[[settlement_store.DueSettlement], Awaitable[str]]


class SettlementChecker(Loop):
    """Claims settlement intents whose AlterTran answer was lost (or whose sender died after
    sending) and has ``check(item)`` (the payment process: SearchTrade, nothing sent) settle each.
    An exception leaves the claim to lapse: the intent is claimed again after ``lease_s``."""

    name = "settlement_checker"

    def __init__(
        self,
        pool: asyncpg.Pool,
        check: CheckSettlement,
        *,
        interval_s: float,
        lease_s: float,
        limit: int = 10,
    ) -> None:
        super().__init__(interval_s)
        self.pool, self.check = pool, check
        self.lease_s, self.limit = lease_s, limit

    async def run_once(self, now: datetime | None = None) -> int:
        token = secrets.token_hex(16)
        items = await settlement_store.claim_due_settlements(
            self.pool, token=token, now=now or _now(), lease_s=self.lease_s, limit=self.limit
        )
        for due in items:
            intent = due.intent
            try:
                found = await self.check(due)
            except store.DATABASE_DOWN:
                raise
            except Exception:
                log.exception("settlement_check_failed", payment_id=intent.payment_id)
                continue
            log.info(
                "settlement_checked",
                payment_id=intent.payment_id,
                action=intent.action,
                found=found,
            )
        return len(items)


class Workers:
    """Every loop of one ``serve`` process: ``await start()``, then ``await stop()``.

    ``process`` (the payment process) wires the reconciler and the registration retrier to its
    ``reconcile`` and ``retry_registration``; ``reconcile`` / ``register`` override them; with
    neither, that loop does not run. ``live_tokens`` names the lease tokens of the
    calls in progress in this process (the lease renewer renews those only). ``loops`` replaces
    the whole set (tests).
    """

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        process: PaymentProcess | None = None,
        *,
        owner: str,
        reconcile: Reconcile | None = None,
        register: RetryRegistration | None = None,
        check_settlement: CheckSettlement | None = None,
        live_tokens: LiveTokens = _no_calls,
        loops: list[Loop] | None = None,
    ) -> None:
        if reconcile is None and process is not None:
            reconcile = process.reconcile
        if register is None and process is not None:
            register = process.retry_registration
        if check_settlement is None and process is not None:
            check_settlement = process.check_settlement
        self.loops = (
            loops
            if loops is not None
            else build_workers(
                pool,
                settings,
                owner=owner,
                reconcile=reconcile,
                register=register,
                check_settlement=check_settlement,
                live_tokens=live_tokens,
            )
        )
        # One outage per process, however many loops meet it.
        self.outage = Outage()
        for one in self.loops:
            one.outage = self.outage
            one.retry_max_s = settings.db_retry_max_s
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def loop(self, kind: type[_L]) -> _L:
        """The running loop of that class (tests drive it with ``run_once(now)``)."""
        for loop in self.loops:
            if isinstance(loop, kind):
                return loop
        raise LookupError(f"no {kind.__name__} runs here")

    async def start(self) -> None:
        self.stop_event.clear()
        self.tasks = [
            asyncio.create_task(loop.run(self.stop_event), name=f"ivrpay-{loop.name}")
            for loop in self.loops
        ]

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for loop in self.loops:
            if isinstance(loop, WebhookDeliverer):
                await loop.close()


def build_workers(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    owner: str,
    reconcile: Reconcile | None = None,
    register: RetryRegistration | None = None,
    check_settlement: CheckSettlement | None = None,
    live_tokens: LiveTokens = _no_calls,
) -> list[Loop]:
    """Every loop a ``serve`` process runs (the reconciler only when ``reconcile`` is given, the
    registration retrier only when ``register`` is, the settlement checker only with
    ``check_settlement``)."""
    interval = settings.worker_interval_s
    # A gateway call may take gateway_timeout_s, and a busy gateway is retried: hold that long.
    gateway_hold_s = settings.gateway_timeout_s * 3 + 30
    loops: list[Loop] = [
        LeaseRenewer(pool, owner, lease_s=settings.lease_s, live_tokens=live_tokens),
        LeaseSweeper(pool, interval_s=interval),
        Expirer(pool, interval_s=interval),
        WebhookDeliverer(
            pool,
            backoff_s=settings.webhook_backoff_s,
            horizon_s=settings.retry_horizon_s,
            interval_s=interval,
        ),
        IdempotencyPurger(pool, interval_s=max(interval, 60.0)),
    ]
    if reconcile is not None:
        loops.append(
            Reconciler(
                pool,
                reconcile,
                backoff_s=settings.reconcile_backoff_s,
                horizon_s=settings.retry_horizon_s,
                interval_s=interval,
                lease_s=gateway_hold_s,
            )
        )
    if register is not None:
        loops.append(
            RegistrationRetrier(
                pool,
                register,
                backoff_s=settings.reconcile_backoff_s,
                horizon_s=settings.retry_horizon_s,
                interval_s=interval,
                # Storing a card is up to seven requests (member, card list, TradedCard twice).
                lease_s=settings.gateway_timeout_s * 8 + 30,
            )
        )
    if check_settlement is not None:
        loops.append(
            SettlementChecker(pool, check_settlement, interval_s=interval, lease_s=gateway_hold_s)
        )
    return loops


async def start_workers(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    owner: str,
    reconcile: Reconcile | None = None,
    register: RetryRegistration | None = None,
    live_tokens: LiveTokens = _no_calls,
) -> Workers:
    workers = Workers(
        settings,
        pool,
        owner=owner,
        reconcile=reconcile,
        register=register,
        live_tokens=live_tokens,
    )
    await workers.start()
    return workers
