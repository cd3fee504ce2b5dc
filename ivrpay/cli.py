"""The ``ivrpay`` command: the only place where every part meets.

Each sub-command parses its flags, turns them into :class:`~ivrpay.config.Settings` overrides and
hands over to the part that does the work. A bad setting ends with one clear line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ivrpay.config import ConfigError, Settings, parse_hostport


def _hostport(name: str):  # argparse type
    def parse(value: str):
        try:
            return parse_hostport(value, name)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ivrpay", description="IVR card payments on Asterisk")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="FastAGI and HTTP listeners")
    s.add_argument("--agi", type=_hostport("--agi"), help="FastAGI HOST:PORT (127.0.0.1:4573)")
    s.add_argument("--http", type=_hostport("--http"), help="HTTP HOST:PORT (127.0.0.1:8080)")

    sub.add_parser("migrate", help="apply sql/ migrations, idempotently")

    g = sub.add_parser("sandbox-gateway", help="local gateway speaking the GMO-PG protocol")
    g.add_argument("--listen", type=_hostport("--listen"), default=parse_hostport("127.0.0.1:8081"))
    g.add_argument("--latency-ms", type=int, default=0)
    g.add_argument("--jitter-ms", type=int, default=0)

    c = sub.add_parser("call", help="a simulated caller, as Asterisk would connect")
    c.add_argument("--keys", required=True, help='entries in order, e.g. "4111111111111111# 1231"')
    c.add_argument("--code", default="", help="payment code (agi_arg_1)")
    c.add_argument("--transferrer", default="", help="transferring channel (agi_arg_2)")
    c.add_argument("--language", default="ja", help="the channel's language before the IVR")
    c.add_argument("--agi", type=_hostport("--agi"), default=None)
    c.add_argument("--script", default="pay", help=argparse.SUPPRESS)

    a = sub.add_parser("apikey", help="API keys")
    asub = a.add_subparsers(dest="apikey_command", required=True)
    ac = asub.add_parser("create", help="create a key; prints it once")
    ac.add_argument("name")
    ac.add_argument("--webhook", default=None, help="webhook URL for this client")

    u = sub.add_parser("user", help="screen users")
    usub = u.add_subparsers(dest="user_command", required=True)
    ua = usub.add_parser("add", help="add a user")
    ua.add_argument("name")
    ua.add_argument("--role", choices=("operator", "admin"), required=True)
    ua.add_argument("--password-stdin", action="store_true")

    sub.add_parser("demo", help="everything at once on embedded defaults")
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
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    cmd = args.command
    if cmd == "call":
        from ivrpay.simulator.cli import main_call

        agi = args.agi or settings.agi_listen
        return main_call(args, agi)
    if cmd == "sandbox-gateway":
        from ivrpay.sandbox.server import run_sandbox

        run_sandbox(args.listen.host, args.listen.port, args.latency_ms, args.jitter_ms)
        return 0
    from ivrpay import runner

    if cmd == "serve":
        settings = settings.replace(
            agi_listen=args.agi or settings.agi_listen,
            http_listen=args.http or settings.http_listen,
        )
        return runner.serve(settings)
    if cmd == "migrate":
        return runner.migrate(settings)
    if cmd == "apikey":
        return runner.apikey_create(settings, args.name, args.webhook)
    if cmd == "user":
        return runner.user_add(settings, args.name, args.role, args.password_stdin)
    if cmd == "demo":
        return runner.demo(settings)
    raise AssertionError(cmd)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
