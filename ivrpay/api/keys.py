"""The application's dependencies as typed ``web.AppKey``s (aiohttp's way to avoid stringly keys).

They live on the root application, so handlers of mounted sub-applications (the API under
``/api/v1``, the operator screen later) read them with ``request.config_dict[KEY]``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from ivrpay.config import Settings
from ivrpay.payments import PaymentProcess

SETTINGS = web.AppKey("ivrpay_settings", Settings)
POOL = web.AppKey("ivrpay_pool", asyncpg.Pool)
# Optional parts: None when absent (no gateway configured, no AMI, no live events).
GATEWAY = web.AppKey("ivrpay_gateway", object)
AMI = web.AppKey("ivrpay_ami", object)


class Slot:
    """A box for a part that appears at start-up (the app's state is frozen by then)."""

    def __init__(self, value: Any = None) -> None:
        self.value = value


LISTENER = web.AppKey("ivrpay_listener", Slot)  # .value: a started PaymentListener or None
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("ivrpay_clock")
OPENAPI = web.AppKey("ivrpay_openapi", dict)
# Set when the application shuts down: endless responses (SSE) end at once instead of holding
# the shutdown for its whole timeout.
CLOSING = web.AppKey("ivrpay_closing", asyncio.Event)
# Set on SIGTERM, before the calls in flight are drained: /healthz answers 503 "draining".
DRAINING = web.AppKey("ivrpay_draining", asyncio.Event)
SSE_KEEPALIVE_S = web.AppKey("ivrpay_sse_keepalive_s", float)
# The payment process: capture, void and refund go through it (never the gateway directly).
PAYMENTS = web.AppKey("ivrpay_payments", PaymentProcess)

# Request-scoped: the authenticated API client (the store's client dict).
CLIENT = web.RequestKey("ivrpay_client", dict)


def dep(request: web.Request, key: web.AppKey[Any]) -> Any:
    return request.config_dict.get(key)
