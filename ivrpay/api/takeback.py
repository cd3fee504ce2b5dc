"""Take-back: the operator pulls the caller out of the IVR with an AMI ``Redirect``.

``POST /api/v1/payments/{id}/take-back`` (and the screen's button, :func:`take_back`):

1. the store records ``taken_back {by, at}`` with a conditional update — only while the call is in
   the IVR and no gateway execution is in flight (``in_call``); from then on the call cannot move
   to ``processing``;
2. this process's AMI link sets ``IVRPAY_CALLBACK`` on the call's recorded channel (the operator's
   callback, when the payment has one) and redirects it to ``[ivrpay-takeback]``, which dials the
   operator back as after a normal end. A process whose own link is down queues the redirect in
   PostgreSQL, and any process with a working link sends it (:class:`TakeBack` relays them);
3. the Redirect hangs up the call's AGI: the flow wipes the card data and ends the payment
   ``abandoned`` (``taken_back`` stays on it). The answer (202) names the process that redirected.

A redirect the PBX refused (the channel is gone) clears the record again: ``409``. No link anywhere:
``503``, record cleared. No answer from the PBX: ``504`` and the record stays (the redirect may
have happened; the call cannot start a gateway execution either way).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiohttp import web

from ivrpay import store
from ivrpay.ami import AmiLink, AmiRefused, AmiTimeout, AmiUnavailable, parse_ami_url
from ivrpay.api import keys
from ivrpay.api.bodies import idempotent, read_json
from ivrpay.api.problems import Problem, conflict, not_found
from ivrpay.api.render import payment_json
from ivrpay.api.validation import parse_empty_body
from ivrpay.config import Settings
from ivrpay.metrics import AMI_RECONNECTS, TAKE_BACKS

log = structlog.get_logger(__name__)

routes = web.RouteTableDef()

# Where the Redirect sends the caller: a context of dialplan/extensions_ivrpay.conf.
TAKEBACK_CONTEXT = "ivrpay-takeback"
TAKEBACK_EXTEN = "s"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TakeBack:
    """This process's part in take-backs: its AMI link, and the relay that sends the redirects
    other processes queued while their own link was down. ``start()`` inside the running loop."""

    def __init__(
        self,
        link: AmiLink,
        pool: Any,
        *,
        owner: str,
        relay_wait_s: float = 3.0,
        relay_poll_s: float = 0.2,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.link = link
        self.pool = pool
        self.owner = owner
        self.relay_wait_s = relay_wait_s
        self.relay_poll_s = relay_poll_s
        self.clock = clock
        self._relay: asyncio.Task[None] | None = None
        # Relayed work other than a plain redirect, by kind: (row) -> (outcome, detail). The
        # listen-in registers itself here (ivrpay.api.app).
        self.jobs: dict[str, Callable[[Mapping[str, Any]], Awaitable[tuple[str, str | None]]]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, pool: Any, *, owner: str) -> TakeBack | None:
        """None when ``IVRPAY_AMI_URL`` is unset (take-back disabled); ConfigError when bad."""
        if settings.ami_url is None:
            return None
        link = AmiLink(
            parse_ami_url(settings.ami_url),
            backoff_s=settings.ami_backoff_s,
            refused_backoff_s=settings.ami_refused_backoff_s,
            action_timeout_s=settings.ami_action_timeout_s,
            connect_timeout_s=settings.ami_action_timeout_s,
            ping_s=settings.ami_ping_s,
            on_reconnect=AMI_RECONNECTS.inc,
        )
        return cls(
            link,
            pool,
            owner=owner,
            relay_wait_s=settings.ami_relay_wait_s,
            relay_poll_s=settings.ami_relay_poll_s,
        )

    # /healthz and the screen read these.
    @property
    def connected(self) -> bool:
        return self.link.connected

    def status(self) -> dict[str, Any]:
        return self.link.status()

    async def start(self) -> None:
        await self.link.start()
        self._relay = asyncio.create_task(self._relay_loop(), name="ami-relay")

    async def close(self) -> None:
        if self._relay is not None:
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay
            self._relay = None
        await self.link.close()

    # -- redirecting ------------------------------------------------------------------------------
    async def redirect(
        self, payment_id: str, channel: str, variables: Mapping[str, str]
    ) -> tuple[str, str | None]:
        """Redirect ``channel`` (here, or through another process): (outcome, process).
        Outcome ``ok`` | ``refused`` | ``unknown`` | ``unavailable``."""
        if self.link.connected:
            outcome, detail = await self._send(channel, variables)
            if outcome != "unavailable":
                return outcome, self.owner if outcome == "ok" else detail
        return await self._relayed(payment_id, channel, variables)

    async def _send(self, channel: str, variables: Mapping[str, str]) -> tuple[str, str | None]:
        try:
            await self.link.redirect(
                channel, context=TAKEBACK_CONTEXT, exten=TAKEBACK_EXTEN, variables=variables
            )
        except AmiRefused as exc:
            return "refused", exc.message
        except AmiTimeout as exc:
            return "unknown", str(exc)
        except AmiUnavailable as exc:
            return "unavailable", str(exc)
        return "ok", None

    async def _relayed(
        self, payment_id: str, channel: str, variables: Mapping[str, str]
    ) -> tuple[str, str | None]:
        return await self.relay(
            payment_id,
            channel=channel,
            context=TAKEBACK_CONTEXT,
            variables=variables,
            actions=len(variables) + 1,
        )

    async def relay(
        self,
        payment_id: str,
        *,
        kind: str = "redirect",
        channel: str = "",
        context: str = "",
        variables: Mapping[str, str],
        actions: int,
    ) -> tuple[str, str | None]:
        """Hand AMI work to any process with a working link and wait for it: ``("ok",
        process)``, ``("unavailable", None)`` (nobody claimed it in time) or (outcome, detail).
        ``actions``: how many AMI actions it takes (how long its answer may take)."""
        rid = await store.queue_redirect(
            self.pool,
            payment_id=payment_id,
            channel=channel,
            context=context,
            variables=variables,
            now=self.clock(),
            wait_s=self.relay_wait_s,
            kind=kind,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.relay_wait_s
        # The claimer has the PBX's answers within its action timeout each after claiming.
        answer_by = deadline + self.link.action_timeout_s * actions + 1
        while True:
            row = await store.get_redirect(self.pool, rid)
            if row is not None and row["done_at"] is not None:
                outcome = row["outcome"]
                if outcome == "ok":
                    return "ok", row["claimed_by"]
                if outcome == "expired":
                    return "unavailable", None
                return outcome, row["detail"]
            now = loop.time()
            if row is not None and row["claimed_by"] is None and now >= deadline:
                if await store.expire_redirect(self.pool, rid, now=self.clock()):
                    return "unavailable", None
            if now >= answer_by:
                return "unknown", "the process that claimed the redirect did not answer"
            await asyncio.sleep(self.relay_poll_s)

    async def _relay_loop(self) -> None:
        loop = asyncio.get_running_loop()
        purge_at = loop.time()
        while True:
            try:
                if loop.time() >= purge_at:
                    # Done redirects are kept a day for whoever looks into one (every process
                    # purges; the DELETE is idempotent).
                    purge_at = loop.time() + 3600
                    await store.purge_redirects(self.pool, before=self.clock() - timedelta(days=1))
                if self.link.connected:
                    for row in await store.claim_redirects(
                        self.pool, owner=self.owner, now=self.clock()
                    ):
                        job = self.jobs.get(row.get("kind") or "redirect")
                        if job is not None:
                            outcome, detail = await job(row)
                        else:
                            outcome, detail = await self._send(row["channel"], row["variables"])
                        if outcome == "unavailable":
                            # The link dropped after the claim: give it back (another process,
                            # or its expiry, answers the one waiting), never leave it claimed.
                            await store.unclaim_redirect(self.pool, row["id"], owner=self.owner)
                            continue
                        await store.finish_redirect(
                            self.pool, row["id"], outcome=outcome, now=self.clock(), detail=detail
                        )
                        log.info(
                            "ami.redirect_relayed", payment_id=row["payment_id"], outcome=outcome
                        )
            except Exception as exc:  # the database may be briefly away: try again
                log.warning("ami.relay_failed", error=type(exc).__name__)
            await asyncio.sleep(self.relay_poll_s)


# -- the take-back itself ---------------------------------------------------------------------

_CONFLICTS = {
    "execution_in_flight": (
        "execution-in-flight",
        "The gateway call was sent: the take-back waits for its outcome, which then stands.",
    ),
    "not_in_ivr": ("not-in-ivr", "The caller is not in the IVR."),
    "already_taken_back": ("already-taken-back", "The caller is being taken back already."),
}


async def take_back(
    config: Mapping[Any, Any], payment_id: str, actor: str
) -> tuple[dict[str, Any], str]:
    """Take the payment's caller back (the API's and the screen's): (snapshot, process that
    redirected), or a :class:`Problem`."""
    tb: TakeBack | None = config.get(keys.AMI)
    pool, clock = config[keys.POOL], config[keys.CLOCK]
    current = await store.get_payment(pool, payment_id)
    if current is None:
        raise not_found()
    code = store.take_back_conflict(current)
    if code is not None:
        TAKE_BACKS.labels("conflict").inc()
        raise conflict(*_CONFLICTS[code])
    if tb is None:
        raise Problem(503, "ami-unavailable", "Take-back needs AMI: IVRPAY_AMI_URL is not set.")
    try:
        snapshot, channel = await store.mark_taken_back(pool, payment_id, by=actor, now=clock())
    except store.NotFound:
        raise not_found() from None
    except store.Conflict as exc:
        slug, detail = _CONFLICTS.get(exc.code, ("not-in-ivr", "The caller is not in the IVR."))
        TAKE_BACKS.labels("conflict").inc()
        raise conflict(slug, detail) from None
    at = snapshot["taken_back"]["at"]
    variables = {}
    callback = (snapshot.get("operator") or {}).get("callback")
    if callback:
        variables["IVRPAY_CALLBACK"] = callback
    outcome, process_or_detail = await tb.redirect(snapshot["id"], channel, variables)
    TAKE_BACKS.labels(outcome).inc()
    await store.write_audit(
        pool,
        actor=actor,
        action="payment.take_back",
        now=clock(),
        payment_id=snapshot["id"],
        data={"outcome": outcome, "process": process_or_detail if outcome == "ok" else None},
    )
    log.info("api.take_back", payment_id=snapshot["id"], outcome=outcome)
    if outcome == "ok":
        process = str(process_or_detail)
        confirmed = await store.confirm_taken_back(
            pool, snapshot["id"], at=at, process=process, now=clock()
        )
        return (confirmed or await store.get_payment(pool, snapshot["id"]) or snapshot), process
    if outcome == "unknown":
        raise Problem(
            504,
            "ami-outcome-unknown",
            "The PBX did not answer the redirect; the caller may be on the way back. The call "
            "cannot start a gateway execution any more.",
        )
    await store.clear_taken_back(pool, snapshot["id"], at=at, now=clock(), reason=outcome)
    if outcome == "refused":
        raise conflict("not-in-ivr", f"The PBX refused the redirect: {process_or_detail}.")
    raise Problem(503, "ami-unavailable", "No ivrpay process has a working AMI link.")


# take_back and the listen-in's start: (config, payment id, actor) -> (snapshot, process)
AmiAction = Callable[[Mapping[Any, Any], str, str], Awaitable[tuple[dict[str, Any], str]]]


async def answer_ami_action(request: web.Request, act: AmiAction) -> web.Response:
    """The API's route of an AMI action on a payment: no body, idempotent, answered 202 with
    the payment and the process whose AMI link carried it out."""
    payment_id = request.match_info["id"]
    body = await read_json(request, required=False)
    parse_empty_body(body)

    async def run() -> tuple[int, Any]:
        snapshot, process = await act(
            request.config_dict, payment_id, f"api:{request[keys.CLIENT]['name']}"
        )
        return 202, {"payment": payment_json(snapshot), "redirected_by": process}

    return await idempotent(request, body, run)


@routes.post("/payments/{id}/take-back")
async def take_back_payment(request: web.Request) -> web.Response:
    return await answer_ami_action(request, take_back)
