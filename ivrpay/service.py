"""The running service: wires the parts for ``ivrpay serve`` and ``ivrpay demo``.

This module and :mod:`ivrpay.cli` are the only places where every part meets: the database, the
gateway client, the FastAGI server with the call flow, the HTTP application and the background
workers, on one asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from ivrpay import store
from ivrpay.agi.server import FastAGIServer
from ivrpay.agichannel import channel_handler
from ivrpay.ami import parse_ami_url
from ivrpay.ami.guard import spy_guards
from ivrpay.api.app import begin_draining, init_app, start_http
from ivrpay.api.listener import Limits
from ivrpay.api.takeback import TakeBack
from ivrpay.config import ConfigError, Settings
from ivrpay.flow.call import FlowDeps, busy_handler, pay_handler
from ivrpay.flow.prompts import missing_prompts
from ivrpay.gateway.client import GatewayClient
from ivrpay.payments import PaymentProcess
from ivrpay.web import install_screen
from ivrpay.workers import Workers

log = structlog.get_logger(__name__)


def harden_process() -> None:
    """No core dumps (card data is in memory), and room for ~2 descriptors per call."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_dumpable = 4
        libc.prctl(pr_set_dumpable, 0, 0, 0, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Descriptors kept for everything but calls and HTTP: the database pool and its listener,
# the AMI link, log files, the listening sockets, imports.
FD_RESERVE = 64
POOL_MAX = 20  # store.open_database's pool
BUSY_CALLS = 50  # FastAGIServer's max_busy_calls: callers told "busy" need a descriptor too


def http_limits(settings: Settings, nofile: int | None = None) -> Limits:
    """The HTTP listener's bounds, its connection cap lowered so that HTTP can never take the
    descriptors the FastAGI calls need (two per call: the AGI socket and the gateway's)."""
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    calls = settings.max_calls + BUSY_CALLS
    room = nofile - 2 * calls - POOL_MAX - FD_RESERVE
    cap = settings.http_max_connections
    if room < cap:
        cap = max(8, room)
        log.warning(
            "http.connections_capped",
            max_connections=cap,
            asked=settings.http_max_connections,
            nofile=nofile,
            max_calls=settings.max_calls,
        )
    return Limits(
        header_timeout_s=settings.http_header_timeout_s,
        idle_s=settings.http_idle_s,
        max_connections=cap,
        max_per_address=min(settings.http_max_per_address, cap),
    )


def check_prompts(settings: Settings) -> None:
    """Refuse to start when a prompt the call needs is missing, naming the file."""
    missing = missing_prompts(settings.sounds_dir, settings.languages)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ConfigError(f"prompt file missing: {missing[0]}{more}")


@dataclass
class Service:
    """Everything ``ivrpay serve`` runs. ``start()`` then ``stop()``; ports may be 0 in tests."""

    settings: Settings
    var_dir: Path = Path("var")
    gateway_url: str | None = None  # overrides settings.gateway_url (the demo's own sandbox)
    db: Any = None
    gateway: GatewayClient | None = None
    listener: Any = None
    agi: FastAGIServer | None = None
    http: web.AppRunner | None = None
    workers: Workers | None = None
    deps: FlowDeps | None = None
    takeback: TakeBack | None = None  # None: IVRPAY_AMI_URL unset
    payments: PaymentProcess | None = None
    http_port: int = 0
    owner: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )

    async def _record_listen_in(self, payment_id: str, event: str) -> None:
        """A listen-in's mute, unmute or end: in the audit log (who listened in, from when to
        when, every mute) and, for a mute, on the payment (the live page)."""
        assert self.db is not None and self.deps is not None
        now = self.deps.clock()
        if event in ("mute", "unmute"):
            muted = event == "mute"
            await store.set_listen_in_muted(self.db.pool, payment_id, muted=muted, now=now)
        await store.write_audit(
            self.db.pool,
            actor=f"ivrpay:{self.owner}",
            action=f"payment.listen_in_{event}",
            now=now,
            payment_id=payment_id,
        )

    async def start(self) -> None:
        s = self.settings
        check_prompts(s)
        if s.ami_url is not None:
            parse_ami_url(s.ami_url)  # a bad URL stops start-up before anything opens
        self.db = await store.open_database(s, var_dir=self.var_dir)
        self.gateway = GatewayClient.from_settings(s, base_url=self.gateway_url)
        self.listener = store.PaymentListener(self.db.url)
        await self.listener.start()
        process = self.payments = PaymentProcess(self.db.pool, self.gateway, s)
        self.deps = FlowDeps(settings=s, payments=process, owner=self.owner)
        self.workers = Workers(
            s,
            self.db.pool,
            process,
            owner=self.owner,
            live_tokens=lambda: tuple(process.live_tokens),
        )
        await self.workers.start()
        # One AMI link per process, made inside the running loop; the PBX may be down now.
        self.takeback = TakeBack.from_settings(s, self.db.pool, owner=self.owner)
        if self.takeback is not None:
            await self.takeback.start()
            self.deps.guards = spy_guards(self.takeback.link, self._record_listen_in)
        app = init_app(
            s,
            pool=self.db.pool,
            gateway=self.gateway,
            ami=self.takeback,
            listener=self.listener,
            payments_process=process,
        )
        install_screen(app)
        self.http = await start_http(
            app,
            s.http_listen.host,
            s.http_listen.port,
            shutdown_timeout=2.0,
            limits=http_limits(s),
        )
        self.http_port = int(self.http.addresses[0][1])
        self.agi = FastAGIServer(
            {"pay": channel_handler(pay_handler(self.deps))},
            host=s.agi_listen.host,
            port=s.agi_listen.port,
            max_calls=s.max_calls,
            busy_handler=channel_handler(busy_handler(self.deps)),
            header_timeout=s.agi_header_timeout_s,
            command_timeout=s.agi_command_timeout_s,
        )
        await self.agi.start()
        log.info(
            "ivrpay.started",
            agi=f"{s.agi_listen.host}:{self.agi.port}",
            http=f"{s.http_listen.host}:{self.http_port}",
            database="embedded" if s.database_url is None else "configured",
        )

    async def stop(self) -> None:
        """Stop taking calls, let calls in flight finish (IVRPAY_DRAIN_S), then close the rest."""
        if self.http is not None:
            begin_draining(self.http.app)
        if self.agi is not None:
            await self.agi.stop(self.settings.drain_s)
        if self.deps is not None and self.deps.tasks:
            await asyncio.wait(set(self.deps.tasks), timeout=self.settings.gateway_timeout_s * 3)
        if self.http is not None:
            await self.http.cleanup()
        if self.takeback is not None:
            await self.takeback.close()
        if self.workers is not None:
            await self.workers.stop()
        if self.listener is not None:
            await self.listener.close()
        if self.gateway is not None:
            await self.gateway.close()
        if self.db is not None:
            await self.db.close()
        log.info("ivrpay.stopped")


def _owner_id() -> str:
    """This process's name on leases: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
