"""The back-off schedules set in the environment are the ones the workers use (issue 13.7)."""

from __future__ import annotations

import asyncpg

from ivrpay.config import Settings
from ivrpay.workers import Reconciler, RegistrationRetrier, WebhookDeliverer, Workers


async def _noop(_item: dict) -> object:
    raise AssertionError("not called")


async def test_the_workers_follow_the_schedules_of_the_environment(pool: asyncpg.Pool) -> None:
    settings = Settings.from_env(
        {
            "IVRPAY_RECONCILE_BACKOFF_S": "5,10,60",
            "IVRPAY_WEBHOOK_BACKOFF_S": "2,4",
            "IVRPAY_RETRY_HORIZON_S": "7200",
            "IVRPAY_DB_RETRY_MAX_S": "3",
        }
    )
    workers = Workers(settings, pool, owner="t", reconcile=_noop, register=_noop)  # type: ignore[arg-type]
    for kind in (Reconciler, RegistrationRetrier):
        loop = workers.loop(kind)
        assert loop.backoff_s == (5.0, 10.0, 60.0) and loop.horizon_s == 7200
    hooks = workers.loop(WebhookDeliverer)
    assert hooks.backoff_s == (2.0, 4.0) and hooks.horizon_s == 7200
    assert {w.retry_max_s for w in workers.loops} == {3.0}
    await hooks.close()
