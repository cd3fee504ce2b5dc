"""The HTTP JSON API: payments, SSE, webhook deliveries, OpenAPI, /healthz, /metrics.

``init_app(settings, *, pool, gateway=None, ami=None, ...)`` builds the root aiohttp application
(see :mod:`ivrpay.api.app`); ``start_http(app, host, port)`` serves it.
"""

from ivrpay.api.app import init_app, start_http

__all__ = ["init_app", "start_http"]
