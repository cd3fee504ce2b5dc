"""Measure whole calls through the real stack and print the numbers.

A service (FastAGI + HTTP + workers) runs in this process against PostgreSQL
(``IVRPAY_DATABASE_URL``, else an embedded server under a temporary directory) and the sandbox
gateway; the calls are placed by the Asterisk stand-in over real sockets, N at a time.

    python -m benchmarks [--calls 200] [--concurrency 50] [--gateway-latency-ms 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from ivrpay import store
from ivrpay.config import HostPort, Settings
from ivrpay.logging import configure
from ivrpay.sandbox.server import start_sandbox
from ivrpay.service import Service
from ivrpay.simulator import place_call


async def _run(calls: int, concurrency: int, latency_ms: int, var_dir: Path) -> None:
    settings = Settings.from_env({}).replace(
        database_url=os.environ.get("IVRPAY_DATABASE_URL") or None,
        agi_listen=HostPort("127.0.0.1", 0),
        http_listen=HostPort("127.0.0.1", 0),
        max_calls=max(concurrency, 1) * 2,
    )
    sandbox = await start_sandbox(latency_ms=latency_ms)
    service = Service(settings, var_dir=var_dir, gateway_url=sandbox.url)
    await service.start()
    try:
        _c, key, _s = await store.create_api_client(service.db.pool, "bench")
        base = f"http://127.0.0.1:{service.http_port}/api/v1"
        headers = {"Authorization": f"Bearer {key}"}
        run = f"b{int(time.time())}"
        async with aiohttp.ClientSession(headers=headers) as http:
            t0 = time.perf_counter()
            codes = []
            for i in range(calls):
                body = {"order_id": f"{run}-{i}", "amount": 1000 + i, "language": "en"}
                async with http.post(f"{base}/payments", json=body) as r:
                    codes.append((await r.json())["code"])
            create_s = time.perf_counter() - t0

            sem = asyncio.Semaphore(concurrency)
            durations: list[float] = []
            statuses: dict[str, int] = {}

            async def one(code: str) -> None:
                async with sem:
                    start = time.perf_counter()
                    rec = await place_call(
                        "127.0.0.1",
                        service.agi.port,
                        args=(code, ""),
                        keys=["4111111111111111#", "1230", "123", "1"],
                        language="en",
                    )
                    durations.append(time.perf_counter() - start)
                    st = rec.variables.get("IVRPAY_STATUS", "-")
                    statuses[st] = statuses.get(st, 0) + 1

            t1 = time.perf_counter()
            await asyncio.gather(*(one(c) for c in codes))
            wall = time.perf_counter() - t1
        durations.sort()
        p = lambda q: durations[min(len(durations) - 1, int(q * len(durations)))]  # noqa: E731
        print(f"payments created      {calls} in {create_s:.2f} s ({calls / create_s:.0f}/s)")
        print(f"calls                 {calls}, {concurrency} at a time, gateway +{latency_ms} ms")
        print(f"outcomes              {statuses}")
        print(f"throughput            {calls / wall:.1f} calls/s ({wall:.2f} s)")
        print(
            f"call duration         p50 {p(0.5) * 1000:.0f} ms, p95 {p(0.95) * 1000:.0f} ms, "
            f"max {durations[-1] * 1000:.0f} ms, mean {statistics.mean(durations) * 1000:.0f} ms"
        )
        print(f"double charges        {len(sandbox.state.double_charges())}")
    finally:
        await service.stop()
        await sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--gateway-latency-ms", type=int, default=300)
    args = parser.parse_args()
    configure(level="warning", fmt="console")
    with tempfile.TemporaryDirectory(prefix="ivrpay-bench-") as tmp:
        os.chmod(tmp, 0o755)  # the embedded server runs as another user when we are root
        asyncio.run(_run(args.calls, args.concurrency, args.gateway_latency_ms, Path(tmp)))


if __name__ == "__main__":
    main()
