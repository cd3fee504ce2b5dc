"""Card data never leaves the memory of its call (product.md, "Card data rule").

Calls are placed by the real ``ivrpay call`` command in a separate process (so the test process
holds no card digit of its own), against a service running in this process. Afterwards everything
the system wrote is searched — every log line at debug level, every row of every table, every API
answer, every webhook body, every channel variable — and this process's own memory is searched for
any object still referring to the digits.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web

from ivrpay import store
from ivrpay.card.rules import luhn_ok
from ivrpay.logging import configure
from tests.e2e.conftest import Ivrpay

EXPIRY = "0731"
CODE3 = "739"
CODE4 = "7391"

# (card number, the caller's entries after the card number)
SCENARIOS: list[tuple[str, list[str]]] = [
    ("4111111111111111", [EXPIRY, CODE3, "1"]),  # approved
    ("378282246310005", [EXPIRY, CODE4, "1"]),  # AMEX approved
    ("4000000000000002", [EXPIRY, CODE3, "1", "2"]),  # declined, then the operator
    ("4000000000000069", [EXPIRY, CODE3, "1", "!"]),  # gateway: expiry wrong, hangs up
    ("4000000000000119", [EXPIRY, CODE3, "1"]),  # charged, answer lost, reconciled
    ("4000000000000101", [EXPIRY, CODE3, "1"]),  # system error, outcome unknown
    ("4111111111111112", ["!"]),  # Luhn failure, hangs up
    ("5555555555554444", [EXPIRY, "!"]),  # hangs up at the security code
]
NUMBERS = [n for n, _ in SCENARIOS]
_RUN = re.compile(r"(?<!\d)\d{12,19}(?!\d)")


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure(level="debug", fmt="json", stream=out)
    yield out
    configure(level="warning", fmt="console")


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[tuple[str, list[bytes], asyncio.Event]]:
    bodies: list[bytes] = []
    three = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        if len(bodies) >= 3:
            three.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/hook", bodies, three
    await runner.cleanup()


async def _ivrpay_call(ivrpay: Ivrpay, code: str, keys: list[str]) -> str:
    env = {**os.environ, "IVRPAY_SOUNDS_DIR": str(ivrpay.settings.sounds_dir)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ivrpay",
        "call",
        "--agi",
        f"127.0.0.1:{ivrpay.service.agi.port}",
        "--language",
        "en",
        "--code",
        code,
        "--keys",
        " ".join(keys),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


def _values(node: Any) -> Iterator[str]:
    """Every scalar in a JSON-like structure, as text (keys included)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from _values(v)
    elif isinstance(node, list | tuple):
        for v in node:
            yield from _values(v)
    elif node is not None:
        yield str(node)


def _assert_clean(where: str, texts: list[str]) -> None:
    for text in texts:
        for number in NUMBERS:
            assert number not in text, f"a card number in {where}"
        for run in _RUN.findall(text):
            assert run not in NUMBERS, f"a card number in {where}"
        assert text not in (EXPIRY, CODE3, CODE4), f"an expiry or security code in {where}"


async def _dump_database(ivrpay: Ivrpay) -> list[str]:
    rows: list[str] = []
    async with ivrpay.pool.acquire() as conn:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        for t in tables:
            for r in await conn.fetch(f'SELECT row_to_json(x)::text AS j FROM "{t[0]}" x'):
                rows.append(r["j"])
    return rows


async def test_no_card_data_in_anything_the_system_wrote(
    ivrpay: Ivrpay,
    captured_logs: io.StringIO,
    webhook_receiver: tuple[str, list[bytes], asyncio.Event],
) -> None:
    url, bodies, three = webhook_receiver
    _client, key, _secret = await store.create_api_client(ivrpay.pool, "hooks", url)
    ivrpay.api_key = key
    payments = []
    outputs = []
    for number, rest in SCENARIOS:
        payment = await ivrpay.create_payment(language="en")
        payments.append(payment)
        outputs.append(await _ivrpay_call(ivrpay, payment["code"], [number + "#", *rest]))

    answers = [await ivrpay.payment(p["id"]) for p in payments]
    statuses = [a["status"] for a in answers]
    assert statuses[0] == "succeeded" and statuses[4] == "succeeded", statuses
    assert statuses[2] == "failed" and statuses[5] == "unknown", statuses
    _status, listed = await ivrpay.api("GET", "/payments?limit=100")
    events = [await store.list_events(ivrpay.pool, p["id"]) for p in payments]
    calls = [await store.list_gateway_calls(ivrpay.pool, p["id"]) for p in payments]
    _status, deliveries = await ivrpay.api("GET", "/webhook-deliveries")

    # Webhooks for the final payments are delivered by the service's own workers.
    async with asyncio.timeout(30):
        await three.wait()

    logs = captured_logs.getvalue()
    assert "call.ended" in logs and "gateway_call" in logs  # the capture saw the calls
    log_values: list[str] = []
    for line in logs.splitlines():
        log_values.append(line)
        try:
            log_values.extend(_values(json.loads(line)))
        except ValueError:
            pass
    _assert_clean("the logs", log_values)

    rows = await _dump_database(ivrpay)
    assert len(rows) > len(SCENARIOS)
    row_values = [*rows]
    for row in rows:
        row_values.extend(_values(json.loads(row)))
    _assert_clean("the database", row_values)

    api_values = [json.dumps(answers, default=str), json.dumps(listed)]
    api_values += list(_values(answers)) + list(_values(listed)) + list(_values(deliveries))
    api_values += [json.dumps(events, default=str), json.dumps(calls, default=str)]
    _assert_clean("the API answers and events", api_values)

    hook_values = [b.decode() for b in bodies]
    for b in bodies:
        hook_values.extend(_values(json.loads(b)))
    _assert_clean("the webhooks", hook_values)

    # Channel variables: what ivrpay set, as the simulated Asterisk printed them.
    variables = [ln for out in outputs for ln in out.splitlines() if "=" in ln]
    assert any(ln.startswith("IVRPAY_STATUS=") for ln in variables)
    _assert_clean("the channel variables", variables + [v.split("=", 1)[1] for v in variables])


def _random_jcb() -> str:
    """A Luhn-valid JCB number made now, so no module or test id of this process holds it."""
    body = "3530" + "".join(random.choice("0123456789") for _ in range(11))
    for check in "0123456789":
        if luhn_ok(body + check):
            return body + check
    raise AssertionError("unreachable")


async def test_no_object_keeps_the_digits_after_the_call(ivrpay: Ivrpay) -> None:
    number = _random_jcb()
    payment = await ivrpay.create_payment(language="en")
    await _ivrpay_call(ivrpay, payment["code"], [number + "#", EXPIRY, CODE3, "1"])
    assert (await ivrpay.payment(payment["id"]))["status"] == "succeeded"
    gc.collect()
    needle_s, needle_b = number, number.encode()
    holders = []
    for obj in gc.get_objects():
        for ref in gc.get_referents(obj):
            if (isinstance(ref, str) and needle_s in ref) or (
                isinstance(ref, bytes | bytearray) and needle_b in ref
            ):
                holders.append(f"{type(obj).__module__}.{type(obj).__name__}")
    # The sandbox gateway runs in this process and is the gateway: it may keep the number.
    holders = [h for h in holders if not h.startswith("ivrpay.sandbox.")]
    assert holders == [], f"still referring to the card number: {holders}"


def test_the_server_process_cannot_dump_core() -> None:
    code = (
        "import ctypes, resource\n"
        "from ivrpay.service import harden_process\n"
        "harden_process()\n"
        "libc = ctypes.CDLL(None)\n"
        "print(resource.getrlimit(resource.RLIMIT_CORE), libc.prctl(3, 0, 0, 0, 0))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "(0, 0) 0"  # RLIMIT_CORE 0 and PR_GET_DUMPABLE 0
