"""``ivrpay agi``: one call as a classic AGI process (``AGI(/path/ivrpay-agi)`` in the dialplan).

For sites that cannot run a listener. Asterisk starts this process per call and talks over its
stdin/stdout; the flow, the payment process, the store and the gateway client are the very ones
``ivrpay serve`` runs — only the transport differs (:mod:`ivrpay.agi.stdio`). The process opens a
small pool (no migrations: ``ivrpay migrate`` or ``serve`` does them), renews its call's lease while
the call lasts, waits for gateway work in flight, and exits. Logs go to stderr (stdout is the AGI
channel); Asterisk shows them on its console.

It costs a process start, imports and a database connection per call: a FastAGI ``serve`` is many
times faster (docs/performance.rst measures by how much).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path

import structlog

from ivrpay import store
from ivrpay.agi.stdio import open_stdio, run_stdio
from ivrpay.agichannel import channel_handler
from ivrpay.config import Settings
from ivrpay.flow.call import FlowDeps, pay_handler
from ivrpay.gateway.client import GatewayClient
from ivrpay.payments import PaymentProcess
from ivrpay.workers.loops import LeaseRenewer

log = structlog.get_logger(__name__)


async def run_classic_call(
    settings: Settings, *, var_dir: Path = Path("var"), gateway_url: str | None = None
) -> bool:
    """Serve the one call on stdin/stdout; False when no AGI environment came."""
    try:
        reader, writer = await open_stdio()
    except ValueError:
        log.error("classic_agi_not_a_pipe")  # run by hand with a file: Asterisk gives pipes
        return False
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    db = await store.open_database(settings, var_dir=var_dir, migrate=False, min_size=1, max_size=2)
    gateway = GatewayClient.from_settings(settings, base_url=gateway_url)
    process = PaymentProcess(db.pool, gateway, settings)
    deps = FlowDeps(settings=settings, payments=process, owner=owner)
    renewer = LeaseRenewer(
        db.pool, owner, lease_s=settings.lease_s, live_tokens=lambda: tuple(process.live_tokens)
    )
    stop = asyncio.Event()
    renewing = asyncio.create_task(renewer.run(stop))
    try:
        return await run_stdio(
            channel_handler(pay_handler(deps)),
            reader=reader,
            writer=writer,
            header_timeout=settings.agi_header_timeout_s,
            command_timeout=settings.agi_command_timeout_s,
        )
    finally:
        if process.tasks:  # a gateway answer still to be written
            await asyncio.wait(set(process.tasks), timeout=settings.gateway_timeout_s * 3)
        stop.set()
        await renewing
        await gateway.close()
        await db.close()
