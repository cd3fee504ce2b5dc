"""Listen-in: the operator stays on the line, on a spy leg, while the caller keys the card.

``POST /api/v1/payments/{id}/listen-in`` (and the screen's button, :func:`listen_in`), for a
pending payment registered with ``operator.listen_in``, while the operator is talking to the
caller (no blind transfer):

1. this process's AMI link lists the PBX's channels (``Status``) and finds the operator's call:
   the one channel of the operator's device (``operator.callback``) in a bridge, and the one other
   channel of that bridge, the caller; a caller whose keys would arrive as tones (the line's
   ``PJSIP_DTMF_MODE()`` is not RFC 4733 or SIP INFO) is refused, since ChanSpy would pass the
   tones on to the operator;
2. the store records ``listen_in {by, at, operator_channel, caller_channel}`` while the payment
   is still pending;
3. one AMI ``Redirect`` moves both channels at once: the caller to ``[ivrpay]`` with ``8`` + the
   payment's code (``IVRPAY_LISTEN_NEXT`` = the operator's channel, set first), the operator to
   ``[ivrpay-spy]`` (``IVRPAY_SPY_TARGET`` = the caller's channel), where ``ChanSpy(…,qwE)`` lets
   them hear the prompts and the caller, and whisper, but never hear a key (the keys travel as
   DTMF events). The IVR's call then claims the payment as after a transfer; whatever its end,
   the shipped dialplan bridges the caller with the listening operator again.

A Redirect the PBX refused clears the record (``409``, retry possible); no answer ``504`` (the
record stays: the caller may be in the IVR). A process whose own AMI link is down hands the whole
listen-in to a process with a working link (through PostgreSQL, as take-back's redirects; the
answer names it); no link anywhere: ``503``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from aiohttp import web

from ivrpay import store
from ivrpay.ami import AmiRefused, AmiTimeout, AmiUnavailable
from ivrpay.api import keys
from ivrpay.api.problems import Problem, conflict, not_found
from ivrpay.api.takeback import answer_ami_action
from ivrpay.metrics import LISTEN_INS

log = structlog.get_logger(__name__)

routes = web.RouteTableDef()

CALLER_CONTEXT = "ivrpay"
SPY_CONTEXT = "ivrpay-spy"
SPY_EXTEN = "s"
# Set on the caller's channel: the operator's channel, read once by [ivrpay].
LISTEN_NEXT_VAR = "IVRPAY_LISTEN_NEXT"
# Set on the operator's channel: the caller's channel ChanSpy listens to.
SPY_TARGET_VAR = "IVRPAY_SPY_TARGET"

# Channel DTMF modes whose keys travel as events (RFC 4733, SIP INFO), never as tones in the
# audio ChanSpy passes on. ``auto`` falls back to in-band tones when RFC 4733 is not negotiated,
# and PJSIP_DTMF_MODE() does not say which happened: refused like ``inband``.
DTMF_EVENT_MODES = frozenset({"rfc4733", "info", "auto_info"})
DTMF_MODE_FUNCTION = "PJSIP_DTMF_MODE()"

# The relay's job kind, and the AMI actions a listen-in takes (Status, Getvar, two Setvar,
# Redirect: how long a relaying process may take to answer).
JOB_KIND = "listen_in"
_ACTIONS = 5

_CONFLICTS = {
    "not_listen_in": (
        "not-listen-in",
        "The payment was not registered for listen-in (operator.listen_in): transfer the caller "
        "to its number instead.",
    ),
    "not_pending": ("not-pending", "The payment is not waiting for its caller any more."),
    "already_listening": ("already-listening", "The listen-in has started already."),
    "operator_not_on_a_call": (
        "operator-not-on-a-call",
        "The operator's phone is not on a call with the caller.",
    ),
    "operator_on_several_calls": (
        "operator-on-several-calls",
        "The operator's phone is on several calls: hang up the others first.",
    ),
    "in_band_dtmf": (
        "in-band-dtmf",
        "The caller's keys would reach the operator as tones (the line's DTMF mode is not RFC "
        "4733 or SIP INFO): transfer the caller to the payment's number instead.",
    ),
    "not_a_two_party_call": (
        "not-a-two-party-call",
        "The operator's call has more than one other party (a conference): listen-in needs a "
        "call with the caller alone.",
    ),
}


def find_call(channels: Sequence[Mapping[str, Any]], device: str) -> tuple[str, str]:
    """(operator's channel, caller's channel) of ``device``'s one two-party call, from the
    ``Status`` events; ValueError with a conflict code of :data:`_CONFLICTS` otherwise."""
    mine = [c for c in channels if store.device_of(str(c.get("Channel", ""))) == device]
    bridged = [c for c in mine if c.get("BridgeID")]
    if not bridged:
        raise ValueError("operator_not_on_a_call")
    if len(bridged) > 1:
        raise ValueError("operator_on_several_calls")
    operator = str(bridged[0]["Channel"])
    bridge = bridged[0]["BridgeID"]
    others = [
        str(c["Channel"])
        for c in channels
        if c.get("BridgeID") == bridge and str(c.get("Channel")) != operator
    ]
    if not others:
        raise ValueError("operator_not_on_a_call")
    if len(others) > 1:
        raise ValueError("not_a_two_party_call")
    return operator, others[0]


async def _dtmf_mode(link: Any, channel: str) -> str:
    """The caller's DTMF mode; "" when the PBX cannot say (not a PJSIP channel)."""
    try:
        return (await link.getvar(channel, DTMF_MODE_FUNCTION)).strip().lower()
    except AmiRefused:
        return ""


def _conflict(code: str) -> Problem:
    LISTEN_INS.labels("conflict").inc()
    return conflict(*_CONFLICTS[code])


async def listen_in(
    config: Mapping[Any, Any], payment_id: str, actor: str
) -> tuple[dict[str, Any], str]:
    """Start the payment's card entry with the operator listening in (the API's and the
    screen's): (snapshot, process that redirected), or a :class:`Problem`."""
    current = await store.get_payment(config[keys.POOL], payment_id)
    if current is None:
        raise not_found()
    code = store.listen_in_conflict(current)
    if code is not None:
        raise _conflict(code)
    tb = config.get(keys.AMI)
    if tb is None:
        raise Problem(503, "ami-unavailable", "Listen-in needs AMI: IVRPAY_AMI_URL is not set.")
    if not tb.link.connected:
        # Another process with a working link does it (through PostgreSQL).
        return await _relayed(config, tb, current, actor)
    return await _start_here(config, tb, current, actor)


async def _relayed(
    config: Mapping[Any, Any], tb: Any, current: Mapping[str, Any], actor: str
) -> tuple[dict[str, Any], str]:
    outcome, detail = await tb.relay(
        current["id"], kind=JOB_KIND, variables={"actor": actor}, actions=_ACTIONS
    )
    if outcome == "ok":
        snapshot = await store.get_payment(config[keys.POOL], current["id"])
        assert snapshot is not None
        return snapshot, str(detail)
    if outcome == "refused" and detail:
        # The other process's answer: "<status> <slug>".
        status, _, slug = detail.partition(" ")
        code = slug.replace("-", "_")
        if code in _CONFLICTS:
            # Counted by the process that ran it: not counted again here.
            raise conflict(*_CONFLICTS[code])
        if status.isdigit():
            raise Problem(int(status), slug, "The PBX refused the listen-in.")
    if outcome == "unknown":
        raise Problem(
            504,
            "ami-outcome-unknown",
            "The process that took the listen-in did not say how it ended.",
        )
    raise Problem(503, "ami-unavailable", "No ivrpay process has a working AMI link.")


async def run_job(config: Mapping[Any, Any], row: Mapping[str, Any]) -> tuple[str, str | None]:
    """A listen-in another process queued (its AMI link was down), run here: (outcome for
    the relay, detail): ``ok`` with this process, or ``refused`` with "<status> <slug>"."""
    tb = config[keys.AMI]
    pool = config[keys.POOL]
    current = await store.get_payment(pool, row["payment_id"])
    if current is None:
        return "refused", "404 not-found"
    actor = str((row.get("variables") or {}).get("actor") or "relay")
    try:
        code = store.listen_in_conflict(current)  # it may have changed while queued
        if code is not None:
            raise _conflict(code)
        _snapshot, process = await _start_here(config, tb, current, actor)
    except Problem as problem:
        if problem.status == 504:
            return "unknown", str(problem.detail)
        return "refused", f"{problem.status} {problem.slug}"
    return "ok", process


async def _start_here(
    config: Mapping[Any, Any], tb: Any, current: Mapping[str, Any], actor: str
) -> tuple[dict[str, Any], str]:
    """The listen-in with this process's AMI link (see the module's steps), for a payment
    :func:`~ivrpay.store.listen_in_conflict` found nothing against (the store checks again on
    the locked row)."""
    pool, clock = config[keys.POOL], config[keys.CLOCK]
    payment_id = current["id"]
    link = tb.link
    device = current["operator"]["callback"]
    try:
        operator, caller = find_call(await link.channels(), device)
        # A caller whose keys are tones would be heard by the operator: never start it.
        mode = await _dtmf_mode(link, caller)
    except ValueError as exc:
        raise _conflict(str(exc)) from None
    except AmiUnavailable:
        raise Problem(503, "ami-unavailable", "This ivrpay process has no AMI link now.") from None
    except (AmiTimeout, AmiRefused) as exc:
        raise Problem(
            504, "ami-outcome-unknown", f"The PBX did not list its calls: {exc}"
        ) from None
    mute = mode not in DTMF_EVENT_MODES
    if mute and not config[keys.SETTINGS].listen_in_mute:
        log.info("api.listen_in_refused", payment_id=current["id"], dtmf_mode=mode or "unknown")
        raise _conflict("in_band_dtmf")
    try:
        snapshot = await store.mark_listen_in(
            pool,
            payment_id,
            by=actor,
            operator_channel=operator,
            caller_channel=caller,
            now=clock(),
            dtmf_mode=mode,
            mute=mute,
        )
    except store.NotFound:
        raise not_found() from None
    except store.Conflict as exc:
        raise _conflict(exc.code if exc.code in _CONFLICTS else "not_pending") from None
    at = snapshot["listen_in"]["at"]
    outcome, detail = "ok", None
    try:
        await link.redirect_both(
            (caller, CALLER_CONTEXT, "8" + snapshot["code"], {LISTEN_NEXT_VAR: operator}),
            (operator, SPY_CONTEXT, SPY_EXTEN, {SPY_TARGET_VAR: caller}),
        )
    except AmiRefused as exc:
        outcome, detail = "refused", exc.message
    except AmiTimeout as exc:
        outcome, detail = "unknown", str(exc)
    except AmiUnavailable as exc:
        outcome, detail = "unavailable", str(exc)
    await store.write_audit(
        pool,
        actor=actor,
        action="payment.listen_in",
        now=clock(),
        payment_id=snapshot["id"],
        data={
            "outcome": outcome,
            "operator_channel": operator,
            "caller_channel": caller,
            "dtmf_mode": mode,
            "mute": mute,
            "process": tb.owner if outcome == "ok" else None,
        },
    )
    LISTEN_INS.labels(outcome).inc()
    log.info("api.listen_in", payment_id=snapshot["id"], outcome=outcome)
    if outcome == "ok":
        confirmed = await store.confirm_listen_in(
            pool, snapshot["id"], at=at, process=tb.owner, now=clock()
        )
        return (confirmed or await store.get_payment(pool, snapshot["id"]) or snapshot), tb.owner
    if outcome == "unknown":
        raise Problem(
            504,
            "ami-outcome-unknown",
            "The PBX did not answer the redirect; the caller may be in the IVR already.",
        )
    await store.clear_listen_in(pool, snapshot["id"], at=at, now=clock(), reason=outcome)
    if outcome == "refused":
        raise conflict("operator-not-on-a-call", f"The PBX refused the redirect: {detail}.")
    raise Problem(503, "ami-unavailable", "This ivrpay process has no AMI link now.")


@routes.post("/payments/{id}/listen-in")
async def listen_in_payment(request: web.Request) -> web.Response:
    return await answer_ami_action(request, listen_in)
