"""Prometheus metrics of the whole process, defined once here so every part can import them.

Imports nothing of ivrpay, so the call flow, the gateway client and the workers may use it without
depending on the HTTP side. Metrics live in prometheus-client's default registry (which also carries
the process collector: open file descriptors matter with 1,000 calls). Never put card data or
unbounded values (payment ids, order ids) in a label.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest

CALLS_IN_FLIGHT = Gauge("ivrpay_calls_in_flight", "FastAGI calls being handled now.")
CALL_OUTCOMES = Counter(
    "ivrpay_call_outcomes_total",
    "Finished calls by IVRPAY_STATUS (SUCCEEDED, FAILED, OPERATOR, BUSY, ...).",
    ["status"],
)
GATEWAY_LATENCY = Histogram(
    "ivrpay_gateway_request_seconds",
    "Payment gateway request latency by endpoint and outcome kind.",
    ["endpoint", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60),
)
WEBHOOK_BACKLOG = Gauge(
    "ivrpay_webhook_backlog",
    "Webhook deliveries not yet delivered nor given up (read from the database at scrape time).",
)
API_REQUESTS = Counter(
    "ivrpay_api_requests_total",
    "HTTP API answers by route and status code.",
    ["method", "route", "status"],
)
AMI_RECONNECTS = Counter(
    "ivrpay_ami_reconnects_total", "AMI logins after the first (the link dropped and came back)."
)
TAKE_BACKS = Counter(
    "ivrpay_take_backs_total",
    "Take-backs by outcome (ok, conflict, refused, unknown, unavailable).",
    ["outcome"],
)
LISTEN_INS = Counter(
    "ivrpay_listen_ins_total",
    "Listen-in starts by outcome (ok, conflict, refused, unknown, unavailable).",
    ["outcome"],
)
HTTP_CONNECTIONS_CLOSED = Counter(
    "ivrpay_http_connections_closed_total",
    "HTTP connections ivrpay closed itself: refused (over a connection limit) or header_timeout.",
    ["reason"],
)
DATABASE_OUTAGES = Counter(
    "ivrpay_database_outages_total", "Times the workers found the database away (one per outage)."
)
DATABASE_DOWN = Gauge("ivrpay_database_down", "1 while the workers find the database away, else 0.")
SSE_STREAMS = Gauge("ivrpay_sse_streams", "Open payment event streams.")

CONTENT_TYPE = CONTENT_TYPE_LATEST


def generate_latest() -> bytes:
    """The text exposition of every registered metric."""
    return _generate_latest(REGISTRY)
