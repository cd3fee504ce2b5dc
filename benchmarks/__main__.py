"""Measure whole calls through the real stack and print one table (and write it as JSON).

The server under test runs in its own process (``benchmarks.server``: exactly what ``ivrpay
serve`` runs, its SQL counted), so its CPU time is its own; this process is the load: the
sandbox gateway (0 ms) and the Asterisk stand-in placing calls over real sockets. PostgreSQL is
``IVRPAY_DATABASE_URL``, else an embedded server under a temporary directory.

    python -m benchmarks [--calls 400] [--concurrency 32] [--classic 24] [--quick]
                         [--paced 10,100,1000,2000] [--json var/bench.json]

Sections: burst (payments/s, server CPU ms, statements and transactions per call; the same
burst through a bare FastAGI server as the floor); the gateway keep-alive modes over TLS; classic
AGI (one ``ivrpay agi`` process per call); paced calls in flight at a human pace (turnaround per
AGI command, RSS per call in flight, CPU per call). Numbers on a shared machine are noisy; the
statement and transaction counts are exact.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ivrpay import store
from ivrpay.config import Settings
from ivrpay.logging import configure
from ivrpay.sandbox.server import Sandbox, start_sandbox
from ivrpay.simulator import place_call
from ivrpay.simulator.call import Command, SimulatedCall
from ivrpay.simulator.env import ChannelSpec

KEYS = ["4111111111111111#", "1230", "123", "1"]
ROOT = Path(__file__).resolve().parents[1]


def progress(text: str) -> None:
    print(f"  … {text}", file=sys.stderr, flush=True)


# -- the server process ---------------------------------------------------------------------------
@dataclass
class Server:
    proc: asyncio.subprocess.Process
    port: int

    @classmethod
    async def start(cls, mode: str, env: dict[str, str], commands: Sequence[str] = ()) -> Server:
        # BENCH_PYSPY=<file>: the first ivrpay server runs under py-spy: a flame graph (.svg),
        # or collapsed stacks (.txt) to sort.
        profile = os.environ.pop("BENCH_PYSPY", "") if mode == "ivrpay" else ""
        spy: list[str] = []
        if profile:
            fmt = "raw" if profile.endswith(".txt") else "flamegraph"
            py_spy = str(Path(sys.executable).parent / "py-spy")
            spy = [py_spy, "record", "-r", "200", "-f", fmt, "-o", profile, "--"]
        proc = await asyncio.create_subprocess_exec(
            *spy,
            sys.executable,
            "-m",
            "benchmarks.server",
            mode,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        assert proc.stdin is not None and proc.stdout is not None
        for line in commands:
            proc.stdin.write(line.encode("latin-1") + b"\n")
        if mode == "bare":
            proc.stdin.write(b"GO\n")
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            if not line:
                raise RuntimeError(f"the {mode} server did not start")
            if line.startswith("READY "):
                return cls(proc, int(line.split()[1]))

    async def ask(self, word: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(word.encode() + b"\n")
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        return json.loads(line) if word == "STATS" else line

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# -- calls ----------------------------------------------------------------------------------------
@dataclass
class Run:
    calls: int
    wall_s: float
    statuses: dict[str, int]
    server: dict[str, float]  # STATS after minus before

    @property
    def per_s(self) -> float:
        return self.calls / self.wall_s if self.wall_s else 0.0

    def per_call(self, key: str) -> float:
        return self.server.get(key, 0.0) / max(self.calls, 1)


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, float]:
    skip = ("in_flight", "turnarounds", "turnaround_p50_ms", "turnaround_p99_ms")
    return {k: float(after[k]) - float(before.get(k, 0)) for k in after if k not in skip}


async def burst(server: Server | Sequence[Server], codes: Sequence[str], concurrency: int) -> Run:
    """The calls back to back, ``concurrency`` at a time; over several servers in turn (the
    round robin of ``hagi://``), their STATS summed, and the host's CPU busy share."""
    servers = [server] if isinstance(server, Server) else list(server)
    sem = asyncio.Semaphore(concurrency)
    statuses: dict[str, int] = {}

    async def one(i: int, code: str) -> None:
        async with sem:
            port = servers[i % len(servers)].port
            rec = await place_call("127.0.0.1", port, args=(code, ""), keys=KEYS)
            st = rec.variables.get("IVRPAY_STATUS", "-")
            statuses[st] = statuses.get(st, 0) + 1

    before = [await s.ask("STATS") for s in servers]
    host0 = _host_cpu()
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i, c) for i, c in enumerate(codes)))
    wall = time.perf_counter() - t0
    host1 = _host_cpu()
    total: dict[str, float] = {}
    for s, b in zip(servers, before, strict=True):
        for k, v in _delta(await s.ask("STATS"), b).items():
            total[k] = total.get(k, 0.0) + v
    total["host_busy"] = (host1[0] - host0[0]) / max(host1[1] - host0[1], 1)
    return Run(len(codes), wall, statuses, total)


def _host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


async def make_payments(pool: Any, client_id: str, n: int, tag: str) -> list[str]:
    now = datetime.now(UTC)
    codes = []
    for i in range(n):
        p = await store.create_payment(
            pool,
            client_id=client_id,
            order_id=f"{tag}-{i}",
            amount=1000 + i,
            language="en",
            now=now,
        )
        codes.append(p["code"])
    return codes


# -- classic AGI ----------------------------------------------------------------------------------
async def classic_burst(env: dict[str, str], codes: Sequence[str], concurrency: int) -> Run:
    sem = asyncio.Semaphore(concurrency)
    statuses: dict[str, int] = {}

    async def one(code: str) -> None:
        async with sem:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ivrpay",
                "agi",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
                cwd=ROOT,
            )
            assert proc.stdin is not None and proc.stdout is not None
            call = SimulatedCall(
                "localhost",
                0,
                args=(code, ""),
                keys=KEYS,
                channel=ChannelSpec(language="en", request="/usr/local/bin/ivrpay-agi"),
            )
            await call.start(streams=(proc.stdout, proc.stdin))
            rec = await call.wait()
            await proc.wait()
            st = rec.variables.get("IVRPAY_STATUS", "-")
            statuses[st] = statuses.get(st, 0) + 1

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    await asyncio.gather(*(one(c) for c in codes))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Run(len(codes), wall, statuses, {"cpu_s": cpu, "max_rss_kib": after.ru_maxrss})


# -- paced ----------------------------------------------------------------------------------------
@dataclass
class Paced:
    in_flight: int
    turnaround_ms: list[float] = field(default_factory=list)
    commands: int = 0
    errors: int = 0


async def paced(server: Server, codes: Sequence[str], pace_s: float, window_s: float) -> dict:
    """``len(codes)`` calls brought in at 100 a second (a busy site), each command answered
    ``pace_s`` (±20 %) after it arrives (a prompt playing, a caller keying); measured over
    ``window_s`` once all are in flight, then they are dropped."""
    level = Paced(len(codes))
    calls: list[SimulatedCall] = []
    measuring = [False]

    def pacer() -> Any:
        last = [time.perf_counter()]

        async def hold(_call: SimulatedCall, _cmd: Command) -> None:
            arrived = time.perf_counter()
            if measuring[0]:
                level.turnaround_ms.append((arrived - last[0]) * 1000)
                level.commands += 1
            await asyncio.sleep(pace_s * random.uniform(0.8, 1.2))
            last[0] = time.perf_counter()

        return hold

    for code in codes:
        call = SimulatedCall("127.0.0.1", server.port, args=(code, ""), keys=KEYS * 3)
        call.on_command(lambda _cmd: True, pacer(), once=False)
        calls.append(call)
    idle = await server.ask("STATS")
    ramp_s = len(calls) / 100

    async def begin(i: int, call: SimulatedCall) -> None:
        await asyncio.sleep(ramp_s * i / len(calls))
        try:
            await call.start()
        except OSError:
            level.errors += 1

    await asyncio.gather(*(begin(i, c) for i, c in enumerate(calls)))
    await asyncio.sleep(pace_s * 1.2)  # every call past its first command
    await server.ask("RESET")
    start = await server.ask("STATS")
    measuring[0] = True
    await asyncio.sleep(window_s)
    measuring[0] = False
    during = await server.ask("STATS")
    for call in calls:
        rec = call.record
        ended_badly = call.finished and rec.variables.get("IVRPAY_STATUS") != "SUCCEEDED"
        if rec.protocol_errors or ended_badly:
            level.errors += 1
    for call in calls:
        await call.abort()
    for _ in range(300):  # until the server has released the dropped calls' claims
        if (await server.ask("STATS"))["in_flight"] == 0:
            break
        await asyncio.sleep(0.1)
    cmds = max(level.commands, 1)
    t = sorted(level.turnaround_ms) or [0.0]
    return {
        "in_flight": level.in_flight,
        "commands": level.commands,
        # Server side: from a reply read to the next command written (what the caller waits for).
        "p50_ms": during["turnaround_p50_ms"],
        "p99_ms": during["turnaround_p99_ms"],
        # The same seen from the stand-in (its own event loop's lag included).
        "seen_p50_ms": round(t[len(t) // 2], 2),
        "seen_p99_ms": round(t[min(len(t) - 1, int(len(t) * 0.99))], 2),
        "rss_kib_per_call": round((during["rss_kib"] - idle["rss_kib"]) / level.in_flight, 1),
        "cpu_ms_per_command": round((during["cpu_s"] - start["cpu_s"]) * 1000 / cmds, 3),
        "errors": level.errors,
    }


# -- the run --------------------------------------------------------------------------------------
def _tls(folder: Path) -> tuple[ssl.SSLContext | None, str | None]:
    if shutil.which("openssl") is None:
        return None, None
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx, str(cert)


async def _pg_version(pool: Any) -> str:
    return str(await pool.fetchval("SHOW server_version"))


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    url = os.environ.get("IVRPAY_DATABASE_URL")
    embedded = None
    if not url:
        embedded = await asyncio.to_thread(store.start_embedded, tmp / "pg")
        url = embedded.url
    await store.migrate(url)
    pool = await store.create_pool(url, min_size=1, max_size=4)
    d = Settings.from_env({})
    tls_ctx, ca = _tls(tmp)
    sandbox: Sandbox = await start_sandbox(latency_ms=0)
    tls_sandbox = await start_sandbox(ssl_context=tls_ctx) if tls_ctx else None
    base_env = {
        **os.environ,
        "IVRPAY_DATABASE_URL": url,
        "IVRPAY_GATEWAY_URL": sandbox.url,
        "IVRPAY_SHOP_ID": d.shop_id,
        "IVRPAY_SHOP_PASS": d.shop_pass,
        "IVRPAY_SITE_ID": d.site_id,
        "IVRPAY_SITE_PASS": d.site_pass,
        "IVRPAY_LOG_LEVEL": "warning",
        "IVRPAY_MAX_CALLS": str(max([args.concurrency * 2, *args.paced]) + 100),
        "PYTHONPATH": str(ROOT),
    }
    out: dict[str, Any] = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "postgresql": await _pg_version(pool),
            "platform": platform.platform(),
        },
        "settings": {k: v if not isinstance(v, Path) else str(v) for k, v in vars(args).items()},
    }
    _c, _key, _s = await store.create_api_client(pool, "bench")
    client = _c["id"]
    tag = f"b{int(time.time())}"
    try:
        progress("ivrpay server (keep-alive safe), warm-up")
        server = await Server.start("ivrpay", base_env)
        warm = await make_payments(pool, client, 20, f"{tag}-w")
        rec = await place_call("127.0.0.1", server.port, args=(warm[0], ""), keys=KEYS)
        conversation = rec.commands
        await burst(server, warm[1:], args.concurrency)
        progress(f"burst: {args.calls} calls, {args.concurrency} at a time")
        r = await burst(server, await make_payments(pool, client, args.calls, f"{tag}-b"),
                        args.concurrency)  # fmt: skip
        out["burst"] = {
            "calls": r.calls,
            "host_cpu_busy": round(r.server["host_busy"], 3),
            "outcomes": r.statuses,
            "payments_per_s": round(r.statuses.get("SUCCEEDED", 0) / r.wall_s, 1),
            "server_cpu_ms_per_call": round(r.per_call("cpu_s") * 1000, 2),
            "statements_per_call": round(r.per_call("statements"), 2),
            "transactions_per_call": round(r.per_call("transactions"), 2),
            "double_charges": len(sandbox.state.double_charges()),
            "agi_commands_per_call": len(conversation),
        }
        await server.stop()

        progress("bare FastAGI floor, same conversation")
        bare = await Server.start("bare", base_env, conversation)
        f = await burst(bare, ["000000"] * args.calls, args.concurrency)
        await bare.stop()
        out["floor"] = {
            "calls_per_s": round(f.per_s, 1),
            "server_cpu_ms_per_call": round(f.per_call("cpu_s") * 1000, 3),
        }
        out["burst"]["floor_ratio"] = round(out["burst"]["payments_per_s"] / f.per_s, 3)

        if tls_sandbox is not None and ca is not None:
            out["keepalive_tls"] = {}
            for mode in ("off", "safe", "all"):
                progress(f"gateway over TLS, keep-alive {mode}")
                env = {**base_env, "IVRPAY_GATEWAY_URL": tls_sandbox.url, "SSL_CERT_FILE": ca,
                       "IVRPAY_GATEWAY_KEEPALIVE": mode}  # fmt: skip
                srv = await Server.start("ivrpay", env)
                await burst(srv, await make_payments(pool, client, 10, f"{tag}-k{mode}w"), 8)
                n = max(args.calls // 2, 20)
                k = await burst(srv, await make_payments(pool, client, n, f"{tag}-k{mode}"),
                                args.concurrency)  # fmt: skip
                await srv.stop()
                out["keepalive_tls"][mode] = {
                    "payments_per_s": round(k.statuses.get("SUCCEEDED", 0) / k.wall_s, 1),
                    "server_cpu_ms_per_call": round(k.per_call("cpu_s") * 1000, 2),
                    "tls_connections_per_call": round(k.per_call("gateway_connections"), 3),
                    "outcomes": k.statuses,
                }

        if args.scale:
            out["scale_out"] = []
            for k in args.scale:
                progress(f"scale-out: {k} serve processes, calls in turn")
                servers = [await Server.start("ivrpay", base_env) for _ in range(k)]
                await burst(servers, await make_payments(pool, client, 5 * k, f"{tag}-s{k}w"), 8)
                n = max(args.calls // 2, 20)
                sc = await burst(servers, await make_payments(pool, client, n, f"{tag}-s{k}"),
                                 args.concurrency)  # fmt: skip
                for srv in servers:
                    await srv.stop()
                out["scale_out"].append(
                    {
                        "processes": k,
                        "payments_per_s": round(sc.statuses.get("SUCCEEDED", 0) / sc.wall_s, 1),
                        "server_cpu_ms_per_call": round(sc.per_call("cpu_s") * 1000, 2),
                        "host_cpu_busy": round(sc.server["host_busy"], 3),
                        "outcomes": sc.statuses,
                    }
                )

        if args.classic:
            progress(f"classic AGI: {args.classic} calls, one process each")
            c = await classic_burst(
                base_env,
                await make_payments(pool, client, args.classic, f"{tag}-c"),
                os.cpu_count() or 2,
            )
            out["classic"] = {
                "calls_per_s": round(c.per_s, 2),
                "cpu_ms_per_call": round(c.per_call("cpu_s") * 1000, 1),
                "max_rss_kib_per_process": int(c.server["max_rss_kib"]),
                "outcomes": c.statuses,
            }
            out["classic"]["fastagi_over_classic"] = round(
                out["burst"]["payments_per_s"] / max(c.per_s, 1e-9), 1
            )

        if args.paced:
            out["paced"] = []
            srv = await Server.start("ivrpay", base_env)
            for level in args.paced:
                progress(f"paced: {level} calls in flight, {args.pace_s} s a command")
                codes = await make_payments(pool, client, level, f"{tag}-p{level}")
                res = await paced(srv, codes, args.pace_s, args.window_s)
                res["cpu_ms_per_call"] = round(res["cpu_ms_per_command"] * len(conversation), 2)
                out["paced"].append(res)
            await srv.stop()
        out["double_charges"] = len(sandbox.state.double_charges())
    finally:
        await sandbox.stop()
        if tls_sandbox is not None:
            await tls_sandbox.stop()
        await pool.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
    return out


def table(r: dict[str, Any]) -> str:
    m, b, f = r["machine"], r["burst"], r["floor"]
    rows = [
        f"machine     {m['cores']} cores, Python {m['python']}, PostgreSQL {m['postgresql']}",
        f"burst       {b['payments_per_s']} payments/s, {b['server_cpu_ms_per_call']} ms server "
        f"CPU/call, {b['statements_per_call']} statements and {b['transactions_per_call']} "
        f"transactions/call, host CPU {b['host_cpu_busy'] * 100:.0f} % busy, "
        f"outcomes {b['outcomes']}",
        f"floor       bare FastAGI {f['calls_per_s']} calls/s ({f['server_cpu_ms_per_call']} ms "
        f"CPU/call, {b['agi_commands_per_call']} AGI commands); ivrpay = "
        f"{b['floor_ratio'] * 100:.1f} % of it",
    ]
    for mode, k in (r.get("keepalive_tls") or {}).items():
        rows.append(
            f"keep-alive  {mode:<4} (TLS) {k['payments_per_s']} payments/s, "
            f"{k['server_cpu_ms_per_call']} ms CPU/call, "
            f"{k['tls_connections_per_call']} new TLS connections/call"
        )
    for sc in r.get("scale_out", []):
        rows.append(
            f"scale-out   {sc['processes']} processes: {sc['payments_per_s']} payments/s, "
            f"{sc['server_cpu_ms_per_call']} ms server CPU/call, host CPU "
            f"{sc['host_cpu_busy'] * 100:.0f} % busy"
        )
    if "classic" in r:
        c = r["classic"]
        rows.append(
            f"classic     {c['calls_per_s']} calls/s, {c['cpu_ms_per_call']} ms CPU/call, "
            f"{c['max_rss_kib_per_process'] // 1024} MiB/process; FastAGI ÷ classic = "
            f"{c['fastagi_over_classic']}×"
        )
    for p in r.get("paced", []):
        rows.append(
            f"paced {p['in_flight']:>5}  p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms per command "
            f"(stand-in saw {p['seen_p50_ms']}/{p['seen_p99_ms']}), "
            f"{p['rss_kib_per_call']} KiB RSS/call, {p['cpu_ms_per_call']} ms CPU/call, "
            f"errors {p['errors']}"
        )
    rows.append(f"double charges {r['double_charges']}")
    return "\n".join(rows)


def chart(r: dict[str, Any], window_s: float) -> str:
    """An SVG of the paced levels: AGI commands answered per second and the p99 turnaround
    against calls in flight (no plotting library needed)."""
    levels = r.get("paced") or []
    w, h, pad = 640, 320, 50
    xs = [pad + i * (w - 2 * pad) / max(len(levels) - 1, 1) for i in range(len(levels))]
    rate = [p["commands"] / window_s for p in levels]
    p99 = [p["p99_ms"] for p in levels]

    def line(values: list[float], colour: str) -> str:
        top = max(values) or 1.0
        pts = " ".join(
            f"{x:.0f},{h - pad - v / top * (h - 2 * pad):.0f}"
            for x, v in zip(xs, values, strict=True)
        )
        return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>'

    labels = "".join(
        f'<text x="{x:.0f}" y="{h - pad + 18}" text-anchor="middle">{p["in_flight"]}</text>'
        for x, p in zip(xs, levels, strict=True)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-size="12">'
        f'<rect width="{w}" height="{h}" fill="white"/>'
        f"{line(rate, 'steelblue') if levels else ''}{line(p99, 'firebrick') if levels else ''}"
        f"{labels}"
        f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">calls in flight</text>'
        f'<text x="{pad}" y="20" fill="steelblue">'
        f"AGI commands/s (max {max(rate, default=0):.0f})</text>"
        f'<text x="{w - pad}" y="20" fill="firebrick" text-anchor="end">'
        f"p99 turnaround (max {max(p99, default=0):.0f} ms)</text></svg>"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--classic", type=int, default=24, help="classic AGI calls (0: none)")
    parser.add_argument("--scale", default="2,4", help="serve processes to spread over ('': none)")
    parser.add_argument("--paced", default="10,100,1000,2000", help="calls in flight ('': none)")
    parser.add_argument("--pace-s", type=float, default=2.0, help="seconds per AGI command")
    parser.add_argument("--window-s", type=float, default=10.0, help="seconds per paced level")
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "bench.json")
    args = parser.parse_args()
    args.paced = [int(x) for x in args.paced.split(",") if x.strip()]
    args.scale = [int(x) for x in args.scale.split(",") if x.strip()]
    if args.quick:
        args.calls, args.classic, args.paced, args.window_s = 60, 4, [10, 100], 4.0
        args.scale = [2]
    configure(level="warning", fmt="console")
    with tempfile.TemporaryDirectory(prefix="ivrpay-bench-") as tmp:
        os.chmod(tmp, 0o755)  # the embedded server runs as another user when we are root
        result = asyncio.run(run(args, Path(tmp)))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    svg = path.with_suffix(".svg")
    svg.write_text(chart(result, args.window_s))
    print(table(result))
    print(f"(also in {path}; the paced levels charted in {svg})")


if __name__ == "__main__":
    main()
