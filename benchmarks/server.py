"""The server side of the benchmark, in its own process so that its CPU time is its own.

    python -m benchmarks.server ivrpay   # the real service (FastAGI + HTTP + workers)
    python -m benchmarks.server bare     # a bare asyncio FastAGI server: the floor

``ivrpay`` reads IVRPAY_* from the environment like ``ivrpay serve`` and counts the SQL of its
calls (:mod:`ivrpay.store.counting`); ``bare`` replays the command lines of a recorded call (one
per line on its stdin before ``GO``) and does no other work. Both print ``READY <agi port>``, then
answer ``STATS`` (a JSON line: cpu_s, rss_kib, calls, statements, transactions) and ``RESET``
on stdin; EOF stops them.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ivrpay.agi.session import AGISession
from ivrpay.config import HostPort, Settings
from ivrpay.logging import configure
from ivrpay.store import counting


class Stats:
    def __init__(self) -> None:
        self.calls = 0
        self.in_flight = lambda: 0
        self.gateway_connections = lambda: 0
        self.counter = counting.QueryCounter()
        self.turnaround: list[float] = []  # s from a reply to the next command, server side

    def reset(self) -> None:
        self.calls = 0
        self.counter.reset()
        self.turnaround.clear()

    def time_sessions(self) -> None:
        """Time every AGI session of this process: from a reply to the next command. The gap
        before ``SET MUSIC OFF`` is the gateway's work under music on hold, not a turnaround."""
        original = AGISession._transact
        stats = self

        async def timed(session: Any, line: bytes, *args: Any) -> Any:
            last = getattr(session, "_bench_reply_at", None)
            if last is not None and not line.startswith(b"SET MUSIC OFF"):
                stats.turnaround.append(time.perf_counter() - last)
            try:
                return await original(session, line, *args)
            finally:
                session._bench_reply_at = time.perf_counter()

        AGISession._transact = timed  # type: ignore[method-assign]

    def line(self) -> str:
        use = resource.getrusage(resource.RUSAGE_SELF)
        t = sorted(self.turnaround) or [0.0]
        return json.dumps(
            {
                "turnarounds": len(self.turnaround),
                "turnaround_p50_ms": round(t[len(t) // 2] * 1000, 3),
                "turnaround_p99_ms": round(t[min(len(t) - 1, int(len(t) * 0.99))] * 1000, 3),
                "cpu_s": use.ru_utime + use.ru_stime,
                "rss_kib": _rss_kib(),
                "calls": self.calls,
                "in_flight": self.in_flight(),
                "gateway_connections": self.gateway_connections(),
                "statements": self.counter.statements,
                "transactions": self.counter.transactions,
            }
        )


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _control(reader: asyncio.StreamReader, stats: Stats) -> None:
    while line := await reader.readline():
        word = line.decode().strip()
        if word == "STATS":
            print(stats.line(), flush=True)
        elif word == "RESET":
            stats.reset()
            print("OK", flush=True)


async def run_ivrpay() -> None:
    from ivrpay.service import Service

    counting.install()
    stats = Stats()
    stats.time_sessions()
    settings = Settings.from_env().replace(
        agi_listen=HostPort("127.0.0.1", 0), http_listen=HostPort("127.0.0.1", 0)
    )
    with tempfile.TemporaryDirectory(prefix="ivrpay-bench-") as tmp:
        service = Service(settings, var_dir=Path(tmp))
        await service.start()
        assert service.agi is not None
        pay = service.agi.handlers["pay"]

        async def counted(session: Any) -> None:
            with stats.counter.scope():
                await pay(session)
            stats.calls += 1

        service.agi.handlers["pay"] = counted
        agi = service.agi
        stats.in_flight = lambda: agi.in_flight
        gateway = service.gateway
        assert gateway is not None
        stats.gateway_connections = lambda: gateway.connections_opened
        reader = await _lines()
        print(f"READY {service.agi.port}", flush=True)
        try:
            await _control(reader, stats)
        finally:
            await service.stop()


async def run_bare() -> None:
    """Answers the recorded conversation: each command written, its reply read, nothing else."""
    reader = await _lines()
    commands: list[bytes] = []
    while (line := await reader.readline()).strip() != b"GO":
        commands.append(line.rstrip(b"\n") + b"\n")
    stats = Stats()

    async def call(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while (await r.readline()).strip():  # the agi_* block
                pass
            for command in commands:
                w.write(command)
                while True:
                    reply = await r.readline()
                    if not reply or not reply.startswith((b"100", b"HANGUP")):
                        break
                if not reply:
                    break
            stats.calls += 1
        except ConnectionError:
            pass
        finally:
            w.close()

    server = await asyncio.start_server(call, "127.0.0.1", 0, reuse_address=True)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await _control(reader, stats)


def main() -> None:
    configure(level="warning", fmt="json")
    mode = sys.argv[1] if len(sys.argv) > 1 else "ivrpay"
    asyncio.run(run_bare() if mode == "bare" else run_ivrpay())


if __name__ == "__main__":
    main()
