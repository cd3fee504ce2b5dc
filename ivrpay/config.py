"""Settings from the environment, checked once at start.

Every setting is an ``IVRPAY_*`` variable (product.md, "Command line"); flags of the CLI override
them. A bad value stops start-up with one line naming the variable (:class:`ConfigError`).
Every wait, window and back-off is a setting so that tests shrink them instead of sleeping.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A checkout's root, for tests and dev tools only: an installed ivrpay has none.
REPO_ROOT = Path(__file__).resolve().parent.parent


def shipped_dir(name: str) -> Path:
    """A data folder shipped inside the package (``sql``, ``sounds``): ``ivrpay/data/<name>``.

    In a checkout these are links to the top-level folders; a wheel carries copies.
    """
    return Path(str(importlib.resources.files("ivrpay").joinpath("data", name)))


SQL_DIR = shipped_dir("sql")
SOUNDS_DIR = shipped_dir("sounds")

ALL_BRANDS = ("VISA", "MASTERCARD", "JCB", "AMEX", "DINERS", "DISCOVER", "UNIONPAY")
LANGUAGES = ("ja", "en")
DEFAULT_CALLBACK_PATTERN = r"^(PJSIP|SIP|IAX2)/[A-Za-z0-9_.-]{1,40}$"

# Back-off schedules (seconds) from product.md; the tail entry repeats until the give-up age.
WEBHOOK_BACKOFF_S = (10, 30, 60, 300, 900, 3600)
RECONCILE_BACKOFF_S = (30, 60, 120, 300, 900)


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line naming it."""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_hostport(value: str, name: str = "address") -> HostPort:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) with a port in 0…65535 (0 = any free port)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\s\[\]]+):(\d{1,5})", value.strip())
    if not m:
        raise ConfigError(f"{name}: {value!r} is not HOST:PORT")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ConfigError(f"{name}: port {port} is out of range")
    return HostPort(host, port)


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None  # None = embedded PostgreSQL under ./var/
    agi_listen: HostPort = HostPort("127.0.0.1", 4573)
    http_listen: HostPort = HostPort("127.0.0.1", 8080)
    gateway_url: str | None = None  # None = the sandbox gateway (demo, tests)
    shop_id: str = "tshop00000001"
    shop_pass: str = "sandbox"
    site_id: str = "tsite00000001"
    site_pass: str = "sandbox"
    languages: tuple[str, ...] = LANGUAGES
    card_brands: tuple[str, ...] = ("VISA", "MASTERCARD", "JCB", "AMEX", "DINERS")
    security_code: bool = True
    confirm: bool = True
    attempts: int = 3
    max_executions_per_payment: int = 3
    max_executions_per_call: int = 2
    digit_timeout_ms: int = 6000
    gateway_timeout_s: float = 20.0
    gateway_connect_timeout_s: float = 5.0
    timezone: str = "Asia/Tokyo"
    callback_pattern: str = DEFAULT_CALLBACK_PATTERN
    max_calls: int = 500
    ami_url: str | None = None
    # Listen-in by default for payments registered with an operator (operator.listen_in).
    listen_in: bool = False
    secret_key: str | None = None
    lease_s: float = 30.0
    drain_s: float = 30.0
    reconcile_after_s: float = 300.0
    list_holdback_s: float = 5.0
    log_level: str = "info"
    log_format: str | None = None  # None = console on a terminal, json otherwise
    sounds_dir: Path = SOUNDS_DIR  # the shipped prompts; a site points it at the PBX's copy
    gateway_max_card_digits: int = 16
    transferrer_max_age_s: float = 600.0
    agi_header_timeout_s: float = 5.0
    agi_command_timeout_s: float = 120.0
    webhook_backoff_s: tuple[float, ...] = WEBHOOK_BACKOFF_S
    reconcile_backoff_s: tuple[float, ...] = RECONCILE_BACKOFF_S
    retry_horizon_s: float = 24 * 3600.0
    worker_interval_s: float = 1.0
    # The screen: sessions end after this long idle / at the latest; sign-in lockout after
    # this many failures (per user and per address) within the window; uploaded prompt length.
    session_idle_s: float = 1800.0
    session_max_s: float = 12 * 3600.0
    signin_max_failures: int = 5
    signin_lockout_s: float = 900.0
    prompt_max_s: float = 30.0
    # The AMI link (take-back): reconnect back-off, a much slower one after a refused login
    # (never hammer the PBX's security log), the answer timeout, keep-alive pings, and how long
    # a process without a link waits for another process to send its redirect.
    ami_backoff_s: tuple[float, ...] = (0.5, 1, 2, 5, 10, 30)
    ami_refused_backoff_s: tuple[float, ...] = (30, 60, 120, 300)
    ami_action_timeout_s: float = 5.0
    ami_ping_s: float = 10.0
    ami_relay_wait_s: float = 3.0
    ami_relay_poll_s: float = 0.2
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def default_language(self) -> str:
        return self.languages[0]

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every ``IVRPAY_*`` setting; ``overrides`` (from CLI flags) win over the env."""
        env = os.environ if env is None else env
        r = _Reader(env)
        d = cls()
        values: dict[str, Any] = dict(
            database_url=r.text("IVRPAY_DATABASE_URL"),
            agi_listen=r.hostport("IVRPAY_AGI_LISTEN", d.agi_listen),
            http_listen=r.hostport("IVRPAY_HTTP_LISTEN", d.http_listen),
            gateway_url=r.url("IVRPAY_GATEWAY_URL"),
            languages=r.choices("IVRPAY_LANGUAGES", d.languages, LANGUAGES),
            card_brands=r.choices("IVRPAY_CARD_BRANDS", d.card_brands, ALL_BRANDS, upper=True),
            security_code=r.onoff("IVRPAY_SECURITY_CODE", d.security_code),
            confirm=r.onoff("IVRPAY_CONFIRM", d.confirm),
            attempts=r.integer("IVRPAY_ATTEMPTS", d.attempts, 1, 9),
            digit_timeout_ms=r.integer("IVRPAY_DIGIT_TIMEOUT_MS", d.digit_timeout_ms, 500, 60000),
            gateway_timeout_s=r.number("IVRPAY_GATEWAY_TIMEOUT_S", d.gateway_timeout_s, 0.05, 300),
            gateway_connect_timeout_s=r.number(
                "IVRPAY_GATEWAY_CONNECT_TIMEOUT_S", d.gateway_connect_timeout_s, 0.05, 60
            ),
            timezone=r.timezone("IVRPAY_TIMEZONE", d.timezone),
            callback_pattern=r.regex("IVRPAY_CALLBACK_PATTERN", d.callback_pattern),
            max_calls=r.integer("IVRPAY_MAX_CALLS", d.max_calls, 1, 100000),
            ami_url=r.text("IVRPAY_AMI_URL"),
            listen_in=r.onoff("IVRPAY_LISTEN_IN", d.listen_in),
            secret_key=r.text("IVRPAY_SECRET_KEY"),
            lease_s=r.number("IVRPAY_LEASE_S", d.lease_s, 0.05, 3600),
            drain_s=r.number("IVRPAY_DRAIN_S", d.drain_s, 0, 3600),
            reconcile_after_s=r.number("IVRPAY_RECONCILE_AFTER_S", d.reconcile_after_s, 0, 86400),
            list_holdback_s=r.number("IVRPAY_LIST_HOLDBACK_S", d.list_holdback_s, 0, 3600),
            log_level=r.choice(
                "IVRPAY_LOG_LEVEL", d.log_level, ("debug", "info", "warning", "error")
            ),
            log_format=r.choice("IVRPAY_LOG_FORMAT", None, ("json", "console")),
            sounds_dir=Path(r.text("IVRPAY_SOUNDS_DIR") or d.sounds_dir),
            gateway_max_card_digits=r.integer(
                "IVRPAY_GATEWAY_MAX_CARD_DIGITS", d.gateway_max_card_digits, 12, 19
            ),
            session_idle_s=r.number("IVRPAY_SESSION_IDLE_S", d.session_idle_s, 1, 86400),
            session_max_s=r.number("IVRPAY_SESSION_MAX_S", d.session_max_s, 1, 7 * 86400),
            signin_max_failures=r.integer(
                "IVRPAY_SIGNIN_MAX_FAILURES", d.signin_max_failures, 1, 100
            ),
            signin_lockout_s=r.number("IVRPAY_SIGNIN_LOCKOUT_S", d.signin_lockout_s, 1, 86400),
            prompt_max_s=r.number("IVRPAY_PROMPT_MAX_S", d.prompt_max_s, 1, 600),
        )
        per_payment, per_call = r.executions(
            "IVRPAY_MAX_EXECUTIONS", (d.max_executions_per_payment, d.max_executions_per_call)
        )
        values["max_executions_per_payment"] = per_payment
        values["max_executions_per_call"] = per_call
        if values["gateway_url"] is not None:
            # A real gateway: the credentials are required, never defaulted.
            for key, name, limit in (
                ("shop_id", "IVRPAY_SHOP_ID", 13),
                ("shop_pass", "IVRPAY_SHOP_PASS", 10),
                ("site_id", "IVRPAY_SITE_ID", 13),
                ("site_pass", "IVRPAY_SITE_PASS", 20),
            ):
                values[key] = r.required(name, limit)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class _Reader:
    """Parses one variable at a time; every failure names the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str) -> str | None:
        value = self.env.get(name)
        return value if value not in (None, "") else None

    def required(self, name: str, max_len: int) -> str:
        value = self.text(name)
        if value is None:
            raise ConfigError(f"{name} is required when IVRPAY_GATEWAY_URL is set")
        if len(value.encode("cp932", "replace")) > max_len:
            raise ConfigError(f"{name} is longer than {max_len} bytes")
        return value

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}: {raw!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise ConfigError(f"{name}: {value} is outside {lo}…{hi}")
        return value

    def number(self, name: str, default: float, lo: float, hi: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}: {raw!r} is not a number") from None
        if not lo <= value <= hi:
            raise ConfigError(f"{name}: {value} is outside {lo}…{hi}")
        return value

    def onoff(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        lowered = raw.strip().lower()
        if lowered in ("on", "true", "yes", "1"):
            return True
        if lowered in ("off", "false", "no", "0"):
            return False
        raise ConfigError(f"{name}: {raw!r} is not on or off")

    def choice(self, name: str, default: Any, allowed: tuple[str, ...]) -> Any:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.strip().lower() not in allowed:
            raise ConfigError(f"{name}: {raw!r} is not one of {', '.join(allowed)}")
        return raw.strip().lower()

    def choices(
        self, name: str, default: tuple[str, ...], allowed: tuple[str, ...], upper: bool = False
    ) -> tuple[str, ...]:
        raw = self.text(name)
        if raw is None:
            return default
        items = [i.strip().upper() if upper else i.strip().lower() for i in raw.split(",")]
        items = [i for i in items if i]
        bad = [i for i in items if i not in allowed]
        if bad or not items:
            raise ConfigError(f"{name}: {', '.join(bad) or 'empty'} not among {', '.join(allowed)}")
        return tuple(dict.fromkeys(items))

    def hostport(self, name: str, default: HostPort) -> HostPort:
        raw = self.text(name)
        return default if raw is None else parse_hostport(raw, name)

    def url(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        if not re.fullmatch(r"https?://[^\s/?#]+", raw.rstrip("/")):
            raise ConfigError(f"{name}: {raw!r} is not a base URL like https://host[:port]")
        return raw.rstrip("/")

    def timezone(self, name: str, default: str) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            zoneinfo.ZoneInfo(raw)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{name}: {raw!r} is not a known time zone") from None
        return raw

    def regex(self, name: str, default: str) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            re.compile(raw)
        except re.error as exc:
            raise ConfigError(f"{name}: not a valid regular expression ({exc})") from None
        return raw

    def executions(self, name: str, default: tuple[int, int]) -> tuple[int, int]:
        raw = self.text(name)
        if raw is None:
            return default
        m = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{1,2})\s*", raw)
        if not m or not (1 <= int(m.group(2)) <= int(m.group(1)) <= 99):
            raise ConfigError(f"{name}: {raw!r} is not PER_PAYMENT/PER_CALL (e.g. 3/2)")
        return int(m.group(1)), int(m.group(2))
