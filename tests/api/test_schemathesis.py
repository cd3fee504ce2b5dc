"""schemathesis against the live app and its own ``/api/v1/openapi.json``: no 5xx, every answer
matches the document, invalid input is refused, keys are enforced — every operation except the
endless events stream, positive and negative data, a bounded number of examples each.

schemathesis sends its requests synchronously, so the server runs in a thread of its own with its
own event loop and pool, on 127.0.0.1 port 0. Path ids are drawn both at random and from payments
the test made (pending, canceled, in a call), so the handlers past the 404 are exercised too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ivrpay import store
from ivrpay.api.app import init_app, start_http
from ivrpay.config import Settings

EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]


class LiveServer:
    """The app on a real socket, served by an event loop in a thread of its own."""

    def __init__(self, database_url: str, settings: Settings) -> None:
        self.database_url = database_url
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        self.pool = await store.create_pool(self.database_url, min_size=1, max_size=8)
        app = init_app(self.settings, pool=self.pool, database_url=self.database_url)
        self.runner = await start_http(app, "127.0.0.1", 0)
        self.port = self.runner.addresses[0][1]

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.pool.close()

    def stop(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def live(pool: Any, database_url: str) -> Iterator[LiveServer]:
    # ``pool`` only to start from a clean database; the server has its own.
    server = LiveServer(database_url, Settings())
    server.start()
    yield server
    server.stop()


async def _seed(pool: Any) -> tuple[str, list[str]]:
    _client, key, _secret = await store.create_api_client(
        pool, "schemathesis", webhook_url="http://127.0.0.1:9/hook"
    )
    client = await store.get_api_client_by_key(pool, key)
    now = datetime.now(UTC)
    ids = []
    for i in range(3):
        p = await store.create_payment(
            pool, client_id=client["id"], order_id=f"SEED-{i}", amount=1000, now=now
        )
        ids.append(p["id"])
    await store.cancel_payment(pool, ids[1], now=now)
    claim = await store.claim_payment(pool, ids[2], owner="schemathesis", now=now, lease_s=600)
    assert claim.ok
    return key, ids


def test_the_api_keeps_its_own_document(live: LiveServer) -> None:
    key, ids = live.run(_seed(live.pool))
    auth = {"Authorization": f"Bearer {key}"}
    # The document the server serves (loaded from its answer, so the schema's own route is
    # tested too: from_url would leave it out).
    document = requests.get(f"{live.url}/api/v1/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) == 14
    tested = []
    failures: list[str] = []
    for op in operations:
        if op.path.endswith("/events"):
            continue  # endless by design
        has_inputs = any(len(c) for c in (op.path_parameters, op.query, op.headers, op.body))
        # Negative data needs an input to break; the parameterless routes get positive runs only.
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if has_inputs else [])
        for mode in modes:
            tested.append((op.method.upper(), op.path, mode.value))
            try:
                _run(op, mode, live.url, auth, ids)
            # schemathesis reports through a BaseExceptionGroup: collect every operation's
            # failures, then report them all.
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{op.method.upper()} {op.path} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join(failures)
    # 13 operations positive, 10 of them negative too (all but openapi.json, healthz, metrics).
    assert len(tested) == 23


def _run(op: Any, mode: GenerationMode, base_url: str, auth: dict, ids: list[str]) -> None:
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
    has_id = "{id}" in op.path or op.path.endswith("/webhook-deliveries")
    real_id = (
        st.sampled_from([None, *ids]) if has_id and mode is GenerationMode.POSITIVE else (st.none())
    )

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=op.as_strategy(generation_mode=mode), pid=real_id)
    def run(case: Any, pid: str | None) -> None:
        if pid is not None:
            if "{id}" in op.path:
                case.path_parameters = {**(case.path_parameters or {}), "id": pid}
            else:
                case.query = {**(case.query or {}), "payment_id": pid}
        case.call_and_validate(base_url=base_url, headers=auth, checks=checks, timeout=30)

    run()
