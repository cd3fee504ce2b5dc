"""Asyncio client of the GMO-PG protocol, assembled from its three layers:

- :mod:`~ivrpay.gateway.transport`: the session, one exchange, retries of a busy gateway;
- :mod:`~ivrpay.gateway.endpoints`: one method per GMO-PG endpoint;
- :mod:`~ivrpay.gateway.recovery`: open_transaction, settle_exec, reconcile, card storage, alter.

The client knows nothing of payments, calls or the database. Every method returns a typed result
(:class:`~ivrpay.gateway.results.Outcome` and friends) and never raises for anything the gateway or
the network does; only cancellation propagates. Logs show the last four digits of a card at most,
exception messages never hold a body.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ivrpay.gateway.endpoints import JobCd
from ivrpay.gateway.health import GatewayProbe
from ivrpay.gateway.recovery import (
    EXECUTED_STATUSES,
    NOT_EXECUTED_STATUSES,
    GatewayRecovery,
)

if TYPE_CHECKING:
    from ivrpay.config import Settings

__all__ = ["EXECUTED_STATUSES", "NOT_EXECUTED_STATUSES", "GatewayClient", "JobCd"]


class GatewayClient(GatewayRecovery):
    """The gateway client the service shares (see the layers above for what each method does)."""

    def __init__(
        self,
        base_url: str,
        shop_id: str,
        shop_pass: str,
        site_id: str = "",
        site_pass: str = "",
        *,
        timeout_s: float = 20.0,
        connect_timeout_s: float = 5.0,
        retry_backoff_s: Sequence[float] = (0.5, 1.0),
        reconcile_after_s: float = 300.0,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 200,
        clock: Callable[[], datetime] | None = None,
        keepalive: str = "safe",
        keepalive_idle_s: float = 2.0,
    ) -> None:
        super().__init__(
            base_url,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            retry_backoff_s=retry_backoff_s,
            ssl_context=ssl_context,
            max_connections=max_connections,
            clock=clock,
            keepalive=keepalive,
            keepalive_idle_s=keepalive_idle_s,
        )
        self._shop_id, self._shop_pass = shop_id, shop_pass
        self._site_id, self._site_pass = site_id, site_pass
        self.reconcile_after_s = reconcile_after_s
        self.probe = GatewayProbe(self, self._shop)

    async def health(self) -> dict[str, str]:
        """The gateway checked for real, cached a few seconds (:mod:`~ivrpay.gateway.health`)."""
        return await self.probe.health()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, base_url: str | None = None, **overrides: Any
    ) -> GatewayClient:
        """A client from :class:`~ivrpay.config.Settings`; ``base_url`` wins over
        ``settings.gateway_url`` (None there means the local sandbox gateway)."""
        kwargs: dict[str, Any] = dict(
            timeout_s=settings.gateway_timeout_s,
            connect_timeout_s=settings.gateway_connect_timeout_s,
            reconcile_after_s=settings.reconcile_after_s,
            keepalive=settings.gateway_keepalive,
        )
        kwargs.update(overrides)
        return cls(
            base_url or settings.gateway_url or "http://127.0.0.1:8081",
            settings.shop_id,
            settings.shop_pass,
            settings.site_id,
            settings.site_pass,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"<GatewayClient {self.base_url} shop={self._shop_id}>"

    async def __aenter__(self) -> GatewayClient:
        self._get_session()
        return self
