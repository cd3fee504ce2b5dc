"""The keypad guard of a listen-in call (issue 14): the caller keys a card field only while the
operator is on the spy leg and, when the caller's keys are tones, while that leg is muted.

Before each card field the guard asks the PBX for the operator's channel (``Status``): it must
still run ``ChanSpy`` (not hung up, not bridged back with the caller). For a caller whose keys
arrive as tones it then mutes what the operator hears (``MuteAudio``, direction ``out``) and lifts
the mute when the field is done. Any doubt (no AMI link, no answer, a refused mute) refuses the
field: card entry stops and the caller goes back to the operator — never a key heard.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from ivrpay.ami.link import AmiError, AmiLink

log = structlog.get_logger(__name__)

# What the operator's channel runs while listening in (the shipped [ivrpay-spy]).
SPY_APPLICATION = "ChanSpy"

# (payment id, "mute" | "unmute" | "end") -> recorded (the payment's record, the audit log)
Record = Callable[[str, str], Awaitable[None]]


class SpyGuard:
    """The guard of one call; ``mute``: the caller's keys are tones."""

    def __init__(
        self, link: AmiLink, payment_id: str, operator_channel: str, *, mute: bool, record: Record
    ) -> None:
        self.link = link
        self.payment_id = payment_id
        self.operator_channel = operator_channel
        self.mute = mute
        self.record = record
        self.field: str | None = None  # the field open now
        self.muted = False
        self.log = log.bind(payment_id=payment_id)

    async def open(self, field: str) -> bool:
        if self.field == field:
            return True
        try:
            spying = await self._spying()
            if spying and self.mute and not self.muted:
                await self._set_mute(True)
        except AmiError as exc:
            self.log.warning("listen_in.guard_failed", field=field, error=str(exc))
            return False
        if not spying:
            self.log.warning("listen_in.listener_gone", field=field)
            return False
        self.field = field
        return True

    async def close(self) -> None:
        self.field = None
        if not self.muted:
            return
        try:
            await self._set_mute(False)
        except AmiError as exc:
            # The operator hears silence until the call ends; the keys stay hidden either way.
            self.log.warning("listen_in.unmute_failed", error=str(exc))

    async def finish(self) -> None:
        await self.close()
        await self._record("end")

    async def _record(self, event: str) -> None:
        try:
            await self.record(self.payment_id, event)
        except Exception as exc:  # the record only: what the PBX was told is done
            self.log.warning("listen_in.not_recorded", listen_event=event, error=type(exc).__name__)

    async def _spying(self) -> bool:
        status = await self.link.channel_status(self.operator_channel)
        return status is not None and status.get("Application") == SPY_APPLICATION

    async def _set_mute(self, on: bool) -> None:
        await self.link.action(
            {
                "Action": "MuteAudio",
                "Channel": self.operator_channel,
                "Direction": "out",
                "State": "on" if on else "off",
            }
        )
        self.muted = on
        self.log.info("listen_in.muted" if on else "listen_in.unmuted")
        await self._record("mute" if on else "unmute")


def spy_guards(link: AmiLink, record: Record) -> Callable[[Mapping[str, Any]], SpyGuard | None]:
    """The flow's guard factory: a guard for a payment its listen-in moved into the IVR."""

    def guard(payment: Mapping[str, Any]) -> SpyGuard | None:
        listen = payment.get("listen_in")
        if not listen:
            return None
        return SpyGuard(
            link,
            str(payment["id"]),
            str(listen["operator_channel"]),
            mute=bool(listen.get("mute")),
            record=record,
        )

    return guard
