"""The ``ivrpay`` command: the only place where every part meets.

Each sub-command parses its flags, turns them into :class:`~ivrpay.config.Settings` overrides and
hands over to the part that does the work. A bad setting ends with one clear line and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import signal
import sys
from collections.abc import Sequence
from typing import Any

import structlog

from ivrpay import __version__
from ivrpay.config import ConfigError, Settings, parse_hostport

log = structlog.get_logger("ivrpay")


def _hostport(name: str):  # argparse type
    def parse(value: str):
        try:
            return parse_hostport(value, name)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ivrpay",
        description="IVR card payments on Asterisk.",
        epilog="Settings are IVRPAY_* environment variables (ivrpay config lists them); flags"
        " override them. 'ivrpay COMMAND --help' explains a command.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "serve", help="FastAGI and HTTP listeners", description="FastAGI and HTTP listeners."
    )
    s.add_argument(
        "--agi",
        type=_hostport("--agi"),
        help="FastAGI HOST:PORT (IVRPAY_AGI_LISTEN, 127.0.0.1:4573)",
    )
    s.add_argument(
        "--http",
        type=_hostport("--http"),
        help="HTTP HOST:PORT (IVRPAY_HTTP_LISTEN, 127.0.0.1:8080)",
    )

    sub.add_parser(
        "migrate",
        help="apply the shipped sql/ migrations, idempotently",
        description="Applies the migrations shipped with ivrpay that the database lacks. Fails"
        " when none are shipped or the database has one this version does not know.",
    )

    sub.add_parser(
        "agi",
        help="one call as a classic AGI process (AGI(/path/ivrpay-agi)): stdin/stdout",
    )

    g = sub.add_parser("sandbox-gateway", help="local gateway speaking the GMO-PG protocol")
    g.add_argument(
        "--listen",
        type=_hostport("--listen"),
        default=parse_hostport("127.0.0.1:8081"),
        help="HOST:PORT to listen on (127.0.0.1:8081)",
    )
    g.add_argument("--latency-ms", type=int, default=0, help="added to every answer (0)")
    g.add_argument("--jitter-ms", type=int, default=0, help="random extra latency up to this (0)")

    c = sub.add_parser(
        "call",
        help="a simulated caller, as Asterisk would connect",
        description="Connects to the FastAGI server as Asterisk would, presses the keys when"
        " asked, prints every prompt it hears and the variables set.",
    )
    c.add_argument(
        "--keys",
        required=True,
        help="the caller's entries in order, separated by spaces, e.g. \"4111111111111111# 1231"
        ' 123 1"; "_" is silence for one request (the entry times out), "!" hangs up',
    )
    c.add_argument("--code", default="", help="the payment's code (agi_arg_1)")
    c.add_argument(
        "--transferrer", default="", help="the operator's channel that transferred (agi_arg_2)"
    )
    c.add_argument("--language", default="ja", help="the channel's language before the IVR (ja)")
    c.add_argument(
        "--agi",
        type=_hostport("--agi"),
        default=None,
        help="the FastAGI server's HOST:PORT (IVRPAY_AGI_LISTEN)",
    )
    c.add_argument("--script", default="pay", help=argparse.SUPPRESS)

    a = sub.add_parser("apikey", help="API keys")
    asub = a.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    ac = asub.add_parser("create", help="create a key; prints it (and the webhook secret) once")
    ac.add_argument("name", help="the client's name")
    ac.add_argument("--webhook", default=None, help="webhook URL for this client")
    asub.add_parser("list", help="the keys, without their secrets")
    ar = asub.add_parser("revoke", help="refuse a key from now on, in every process")
    ar.add_argument("key", metavar="NAME|ID", help="the key's name or id (ivrpay apikey list)")

    u = sub.add_parser("user", help="screen users")
    usub = u.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    ua = usub.add_parser("add", help="add a user")
    ua.add_argument("name", help="the sign-in name")
    ua.add_argument("--role", choices=("operator", "admin"), required=True, help="what they may do")
    ua.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (else a prompt)",
    )

    so = sub.add_parser("sounds", help="the shipped prompts")
    sosub = so.add_subparsers(dest="sounds_command", required=True, metavar="ACTION")
    si = sosub.add_parser(
        "install",
        help="copy the prompts into an Asterisk sounds directory, by language folder",
        description="Copies the shipped prompts to DIR/<lang>/ivrpay/<id>.wav and the catalogue"
        " to DIR/prompts.csv. A prompt replaced there (by an admin) is kept and named, unless"
        " --force. DIR is Asterisk's sounds directory or IVRPAY_SOUNDS_DIR.",
    )
    si.add_argument("dir", metavar="DIR", help="e.g. /var/lib/asterisk/sounds")
    si.add_argument(
        "--force",
        action="store_true",
        help="overwrite replaced prompts too (each saved first as <lang>/ivrpay-backup/<id>.wav)",
    )
    si.add_argument(
        "--lang",
        default=None,
        help="comma-separated languages (default: IVRPAY_LANGUAGES, e.g. ja,en)",
    )

    sub.add_parser(
        "config",
        help="the effective settings (secrets masked) and every IVRPAY_* variable's default",
        description="Prints every IVRPAY_* variable: its value in force (* = set in the"
        " environment; secrets masked) and its default. Exits 2 on a bad setting.",
    )
    o = sub.add_parser("openapi", help="write the API's OpenAPI document")
    o.add_argument(
        "-o", "--output", default="-", help="file to write (default: - for standard output)"
    )

    sub.add_parser(
        "demo",
        help="everything at once on embedded defaults",
        description="An embedded PostgreSQL when IVRPAY_DATABASE_URL is unset, the sandbox"
        " gateway and serve; prints a demo admin and API key.",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"ivrpay: {exc}", file=sys.stderr)
        return 2
    try:
        return _dispatch(args, settings)
    except ConfigError as exc:
        print(f"ivrpay: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from ivrpay.store.migrations import MigrationError

        if not isinstance(exc, MigrationError):
            raise
        print(f"ivrpay: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    cmd = args.command
    if cmd == "call":
        from ivrpay.simulator.cli import main_call

        return main_call(args, args.agi or settings.agi_listen)
    _configure_logging(settings)
    if cmd == "sandbox-gateway":
        from ivrpay.sandbox.server import run_sandbox

        run_sandbox(args.listen.host, args.listen.port, args.latency_ms, args.jitter_ms)
        return 0
    if cmd == "serve":
        settings = settings.replace(
            agi_listen=args.agi or settings.agi_listen,
            http_listen=args.http or settings.http_listen,
        )
        return asyncio.run(_serve(settings))
    if cmd == "demo":
        return asyncio.run(_serve(settings, demo=True))
    if cmd == "migrate":
        return asyncio.run(_migrate(settings))
    if cmd == "agi":
        return asyncio.run(_agi(settings))
    if cmd == "apikey" and args.apikey_command == "list":
        return asyncio.run(_apikey_list(settings))
    if cmd == "apikey" and args.apikey_command == "revoke":
        return asyncio.run(_apikey_revoke(settings, args.key))
    if cmd == "apikey":
        return asyncio.run(_apikey_create(settings, args.name, args.webhook))
    if cmd == "config":
        return _config(settings)
    if cmd == "openapi":
        return _openapi(settings, args.output)
    if cmd == "sounds":
        return _sounds_install(settings, args.dir, args.lang, args.force)
    if cmd == "user":
        password = _read_password(args.password_stdin)
        return asyncio.run(_user_add(settings, args.name, args.role, password))
    raise AssertionError(cmd)


def main_agi() -> int:
    """``ivrpay-agi``: what the dialplan's ``AGI()`` starts. Asterisk also passes the AGI
    arguments on the command line; they are read from the environment block instead."""
    return main(["agi"])


async def _agi(settings: Settings) -> int:
    from ivrpay.classic import run_classic_call
    from ivrpay.service import harden_process

    harden_process()
    return 0 if await run_classic_call(settings) else 1


def _configure_logging(settings: Settings) -> None:
    from ivrpay.logging import configure

    configure(settings.log_level, settings.log_format)


async def _serve(settings: Settings, *, demo: bool = False) -> int:
    from ivrpay.service import Service, harden_process

    harden_process()
    sandbox = None
    if settings.secret_key is None:
        log.warning("no IVRPAY_SECRET_KEY: a new one was made; sign-ins will not survive a restart")
        settings = settings.replace(secret_key=secrets.token_urlsafe(32))
    gateway_url = None
    if settings.gateway_url is None and demo:
        from ivrpay.sandbox.server import start_sandbox

        host, _, port = DEMO_SANDBOX.partition(":")
        try:
            sandbox = await start_sandbox(host, int(port))
        except OSError:
            # Something else has the sandbox's port: any free one does for the demo.
            sandbox = await start_sandbox(host, 0)
            log.warning("port %s is taken: the demo's sandbox gateway moved", port, url=sandbox.url)
        gateway_url = sandbox.url
    elif settings.gateway_url is None:
        log.warning(
            "no IVRPAY_GATEWAY_URL: using the sandbox gateway (ivrpay sandbox-gateway)",
            url=f"http://{DEMO_SANDBOX}",
        )
    service = Service(settings, gateway_url=gateway_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.start()
        if demo:
            await _demo_accounts(service)
        await stop.wait()
    finally:
        await service.stop()
        if sandbox is not None:
            await sandbox.stop()
    return 0


DEMO_SANDBOX = "127.0.0.1:8081"


async def _demo_accounts(service: Any) -> None:
    """A demo admin and API key, printed once and written to var/demo.env for the walk-through."""
    from ivrpay import store

    pool = service.db.pool
    password = secrets.token_urlsafe(9)
    name = "admin"
    try:
        await store.create_user(pool, name, "admin", password)
    except store.Conflict:
        user = await store.authenticate_user(pool, name, password)
        if user is None:
            name = f"admin-{secrets.token_hex(3)}"
            await store.create_user(pool, name, "admin", password)
    _client, api_key, _secret = await store.create_api_client(pool, "demo")
    s = service.settings
    http = f"http://{s.http_listen.host}:{service.http_port}"
    env = service.var_dir / "demo.env"
    env.parent.mkdir(parents=True, exist_ok=True)
    env.write_text(f"IVRPAY_API_KEY={api_key}\nIVRPAY_HTTP={http}\n", encoding="utf-8")
    os.chmod(env, 0o600)
    print(
        f"""
ivrpay demo is running.
  HTTP      {http}   (screen sign-in: {name} / {password})
  FastAGI   agi://{s.agi_listen.host}:{service.agi.port}/pay
  API key   written to {env}

In another terminal:
  source {env}
  curl -s -X POST "$IVRPAY_HTTP/api/v1/payments" -H "Authorization: Bearer $IVRPAY_API_KEY" \\
       -H 'Content-Type: application/json' -d '{{"order_id": "demo-1", "amount": 12800}}'
  .venv/bin/ivrpay call --code <code from the answer> --keys "4111111111111111# 1230 123 1"
  curl -s "$IVRPAY_HTTP/api/v1/payments?order_id=demo-1" -H "Authorization: Bearer $IVRPAY_API_KEY"
""",
        flush=True,
    )


async def _migrate(settings: Settings) -> int:
    from ivrpay import store

    db = await store.open_database(settings, migrate=False)
    try:
        applied = await store.migrate(db.pool)
    finally:
        await db.close()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


async def _apikey_create(settings: Settings, name: str, webhook: str | None) -> int:
    from ivrpay import store

    db = await store.open_database(settings)
    try:
        _client, api_key, secret = await store.create_api_client(db.pool, name, webhook)
    finally:
        await db.close()
    print(api_key)
    print(secret)
    return 0


async def _apikey_list(settings: Settings) -> int:
    """One line per key: id, name, prefix, state, created, webhook (tab-separated)."""
    from ivrpay import store

    db = await store.open_database(settings)
    try:
        clients = await store.list_api_clients(db.pool)
    finally:
        await db.close()
    print("id\tname\tprefix\tstate\tcreated\twebhook")
    for c in clients:
        if c["is_default"]:
            continue  # the screen's own client has no key
        state = "enabled" if c["enabled"] else "revoked"
        created = c["created_at"].isoformat(timespec="seconds")
        row = (c["id"], c["name"], f"{c['key_prefix']}…", state, created, c["webhook_url"] or "-")
        print("\t".join(row))
    return 0


async def _apikey_revoke(settings: Settings, key: str) -> int:
    from datetime import UTC, datetime

    from ivrpay import store

    db = await store.open_database(settings)
    try:
        client = await store.revoke_api_client(db.pool, key, actor="cli", now=datetime.now(UTC))
    except store.NotFound:
        print(f"ivrpay: no API key {key!r} (ivrpay apikey list)", file=sys.stderr)
        return 1
    except store.Conflict as exc:
        print(f"ivrpay: {exc}", file=sys.stderr)
        return 1
    finally:
        await db.close()
    print(f"API key {client['name']} ({client['id']}) revoked")
    return 0


def _config(settings: Settings) -> int:
    from ivrpay.config import effective

    rows = effective(settings)
    width = max(len(r.name) for r in rows)
    value_width = min(48, max(len(r.value) for r in rows))
    print(f"# ivrpay {__version__}: * = set in the environment; secrets masked")
    print(f"{'variable':<{width}}   {'value':<{value_width}}  default")
    for r in rows:
        mark = "*" if r.is_set else " "
        print(f"{r.name:<{width}} {mark} {r.value:<{value_width}}  {r.default}")
    return 0


def _openapi(settings: Settings, output: str) -> int:
    import json

    from ivrpay.api.openapi import build_openapi

    text = json.dumps(build_openapi(settings), indent=2, ensure_ascii=False) + "\n"
    if output == "-":
        sys.stdout.write(text)
    else:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


def _sounds_install(settings: Settings, target: str, lang: str | None, force: bool) -> int:
    from pathlib import Path

    from ivrpay.config import SOUNDS_DIR
    from ivrpay.sounds.install import InstallError, install_prompts

    languages = [x.strip() for x in lang.split(",") if x.strip()] if lang else settings.languages
    try:
        report = install_prompts(SOUNDS_DIR, Path(target), languages, force=force)
    except InstallError as exc:
        print(f"ivrpay: {exc}", file=sys.stderr)
        return 1
    print(
        f"prompts in {target} ({', '.join(languages)}): {len(report.new)} new,"
        f" {len(report.updated)} updated, {len(report.unchanged)} unchanged,"
        f" {len(report.kept)} kept, {len(report.overwritten)} overwritten"
    )
    for rel in report.kept:
        print(f"kept {rel}: replaced there (--force installs the shipped one)")
    for rel in report.overwritten:
        print(f"overwritten {rel}: it had been replaced there")
    for rel in report.backups:
        print(f"saved the replaced file as {rel}")
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
    if len(password) < 8:
        raise ConfigError("the password must have at least 8 characters")
    return password


async def _user_add(settings: Settings, name: str, role: str, password: str) -> int:
    from ivrpay import store

    db = await store.open_database(settings)
    try:
        await store.create_user(db.pool, name, role, password)
    except store.Conflict:
        print(f"ivrpay: user {name!r} exists already", file=sys.stderr)
        return 1
    finally:
        await db.close()
    print(f"user {name} ({role}) added")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
