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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
WEBHOOK_BACKOFF_S = (10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
RECONCILE_BACKOFF_S = (30.0, 60.0, 120.0, 300.0, 900.0)


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
    gateway_keepalive: str = "safe"  # off | safe | all (ivrpay.gateway.transport)
    timezone: str = "Asia/Tokyo"
    callback_pattern: str = DEFAULT_CALLBACK_PATTERN
    max_calls: int = 500
    ami_url: str | None = None
    # Listen-in by default for payments registered with an operator (operator.listen_in).
    listen_in: bool = False
    # Listen-in for callers whose keys are tones: mute the operator's leg while a card field is
    # keyed (AMI MuteAudio, which needs the manager user's write=system); off: such callers are
    # refused listen-in and transferred as usual.
    listen_in_mute: bool = False
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
    # The HTTP listener (issue 13.4): first request's headers within, idle keep-alive, and
    # connections from one address / in all (the FastAGI calls' descriptors come first).
    http_header_timeout_s: float = 10.0
    http_idle_s: float = 15.0
    http_max_connections: int = 1000
    http_max_per_address: int = 100
    webhook_backoff_s: tuple[float, ...] = WEBHOOK_BACKOFF_S
    reconcile_backoff_s: tuple[float, ...] = RECONCILE_BACKOFF_S
    retry_horizon_s: float = 24 * 3600.0
    worker_interval_s: float = 1.0
    db_retry_max_s: float = 30.0  # the workers' longest pause between tries while the DB is away
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
        """Read every ``IVRPAY_*`` setting of :data:`VARIABLES`; ``overrides`` (from CLI flags) win
        over the env."""
        env = os.environ if env is None else env
        r = _Reader(env)
        d = cls()
        values: dict[str, Any] = {}
        for var in VARIABLES:
            if var.with_gateway and values["gateway_url"] is None:
                continue  # the sandbox's credentials: real ones are required, never defaulted
            value = var.read(r, var.name, var.default(d))
            values.update(zip(var.fields, value if len(var.fields) > 1 else (value,), strict=True))
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
        # Card data crosses this link (PCI DSS 4.2.1): plain http only to this host (the sandbox).
        host = urlsplit(raw).hostname or ""
        if raw.startswith("http://") and host not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigError(f"{name}: {raw!r} must be https:// (card data travels over it)")
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

    def durations(self, name: str, default: tuple[float, ...]) -> tuple[float, ...]:
        """A back-off schedule: seconds separated by commas, e.g. ``10,30,60,300`` (the last one
        repeats); each 0.01…86400, in order, at most 20."""
        raw = self.text(name)
        if raw is None:
            return default
        try:
            values = tuple(float(v) for v in raw.split(","))
        except ValueError:
            raise ConfigError(f"{name}: {raw!r} is not seconds separated by commas") from None
        if not 1 <= len(values) <= 20 or not all(0.01 <= v <= 86400 for v in values):
            raise ConfigError(f"{name}: 1 to 20 waits of 0.01…86400 s, e.g. 10,30,60")
        if list(values) != sorted(values):
            raise ConfigError(f"{name}: the waits must not get shorter ({raw})")
        return values

    def executions(self, name: str, default: tuple[int, int]) -> tuple[int, int]:
        raw = self.text(name)
        if raw is None:
            return default
        m = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{1,2})\s*", raw)
        if not m or not (1 <= int(m.group(2)) <= int(m.group(1)) <= 99):
            raise ConfigError(f"{name}: {raw!r} is not PER_PAYMENT/PER_CALL (e.g. 3/2)")
        return int(m.group(1)), int(m.group(2))


# -- the one list of variables -------------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    """One ``IVRPAY_*`` variable: the setting(s) it fills and how its text is read.

    ``read(reader, name, default)`` returns the value (a tuple when it fills several fields);
    ``secret`` masks it in ``ivrpay config`` (``"url"``: the password in it only); ``unset`` says
    what an unset variable means when its default is no value.
    """

    name: str
    fields: tuple[str, ...]
    read: Callable[[_Reader, str, Any], Any]
    secret: str = ""  # "", "all" or "url"
    unset: str = ""
    with_gateway: bool = False  # read (and required) only when IVRPAY_GATEWAY_URL is set

    def default(self, defaults: Settings) -> Any:
        got = tuple(getattr(defaults, f) for f in self.fields)
        return got if len(got) > 1 else got[0]


def _v(name: str, fields: str, read: Callable[[_Reader, str, Any], Any], **kw: Any) -> Variable:
    return Variable(name, tuple(fields.split()), read, **kw)


def _credential(limit: int) -> Callable[[_Reader, str, Any], Any]:
    return lambda r, n, d: r.required(n, limit)


VARIABLES: tuple[Variable, ...] = (
    _v(
        "IVRPAY_DATABASE_URL",
        "database_url",
        lambda r, n, d: r.text(n),
        secret="url",
        unset="embedded PostgreSQL under ./var/",
    ),
    _v("IVRPAY_AGI_LISTEN", "agi_listen", lambda r, n, d: r.hostport(n, d)),
    _v("IVRPAY_HTTP_LISTEN", "http_listen", lambda r, n, d: r.hostport(n, d)),
    _v("IVRPAY_GATEWAY_URL", "gateway_url", lambda r, n, d: r.url(n), unset="the sandbox gateway"),
    _v("IVRPAY_SHOP_ID", "shop_id", _credential(13), with_gateway=True),
    _v("IVRPAY_SHOP_PASS", "shop_pass", _credential(10), secret="all", with_gateway=True),
    _v("IVRPAY_SITE_ID", "site_id", _credential(13), with_gateway=True),
    _v("IVRPAY_SITE_PASS", "site_pass", _credential(20), secret="all", with_gateway=True),
    _v("IVRPAY_LANGUAGES", "languages", lambda r, n, d: r.choices(n, d, LANGUAGES)),
    _v(
        "IVRPAY_CARD_BRANDS", "card_brands", lambda r, n, d: r.choices(n, d, ALL_BRANDS, upper=True)
    ),
    _v("IVRPAY_SECURITY_CODE", "security_code", lambda r, n, d: r.onoff(n, d)),
    _v("IVRPAY_CONFIRM", "confirm", lambda r, n, d: r.onoff(n, d)),
    _v("IVRPAY_ATTEMPTS", "attempts", lambda r, n, d: r.integer(n, d, 1, 9)),
    _v(
        "IVRPAY_MAX_EXECUTIONS",
        "max_executions_per_payment max_executions_per_call",
        lambda r, n, d: r.executions(n, d),
    ),
    _v("IVRPAY_DIGIT_TIMEOUT_MS", "digit_timeout_ms", lambda r, n, d: r.integer(n, d, 500, 60000)),
    _v("IVRPAY_GATEWAY_TIMEOUT_S", "gateway_timeout_s", lambda r, n, d: r.number(n, d, 0.05, 300)),
    _v(
        "IVRPAY_GATEWAY_CONNECT_TIMEOUT_S",
        "gateway_connect_timeout_s",
        lambda r, n, d: r.number(n, d, 0.05, 60),
    ),
    _v(
        "IVRPAY_GATEWAY_KEEPALIVE",
        "gateway_keepalive",
        lambda r, n, d: r.choice(n, d, ("off", "safe", "all")),
    ),
    _v("IVRPAY_TIMEZONE", "timezone", lambda r, n, d: r.timezone(n, d)),
    _v("IVRPAY_CALLBACK_PATTERN", "callback_pattern", lambda r, n, d: r.regex(n, d)),
    _v("IVRPAY_MAX_CALLS", "max_calls", lambda r, n, d: r.integer(n, d, 1, 100000)),
    _v("IVRPAY_AMI_URL", "ami_url", lambda r, n, d: r.text(n), secret="url", unset="no take-back"),
    _v("IVRPAY_LISTEN_IN", "listen_in", lambda r, n, d: r.onoff(n, d)),
    _v("IVRPAY_LISTEN_IN_MUTE", "listen_in_mute", lambda r, n, d: r.onoff(n, d)),
    _v(
        "IVRPAY_SECRET_KEY",
        "secret_key",
        lambda r, n, d: r.text(n),
        secret="all",
        unset="a new one at each start; sign-ins end at a restart",
    ),
    _v("IVRPAY_LEASE_S", "lease_s", lambda r, n, d: r.number(n, d, 0.05, 3600)),
    _v("IVRPAY_DRAIN_S", "drain_s", lambda r, n, d: r.number(n, d, 0, 3600)),
    _v("IVRPAY_RECONCILE_AFTER_S", "reconcile_after_s", lambda r, n, d: r.number(n, d, 0, 86400)),
    _v("IVRPAY_LIST_HOLDBACK_S", "list_holdback_s", lambda r, n, d: r.number(n, d, 0, 3600)),
    _v(
        "IVRPAY_LOG_LEVEL",
        "log_level",
        lambda r, n, d: r.choice(n, d, ("debug", "info", "warning", "error")),
    ),
    _v(
        "IVRPAY_LOG_FORMAT",
        "log_format",
        lambda r, n, d: r.choice(n, d, ("json", "console")),
        unset="console on a terminal, else json",
    ),
    _v("IVRPAY_SOUNDS_DIR", "sounds_dir", lambda r, n, d: Path(r.text(n) or d)),
    _v(
        "IVRPAY_GATEWAY_MAX_CARD_DIGITS",
        "gateway_max_card_digits",
        lambda r, n, d: r.integer(n, d, 12, 19),
    ),
    _v("IVRPAY_SESSION_IDLE_S", "session_idle_s", lambda r, n, d: r.number(n, d, 1, 86400)),
    _v("IVRPAY_SESSION_MAX_S", "session_max_s", lambda r, n, d: r.number(n, d, 1, 7 * 86400)),
    _v(
        "IVRPAY_SIGNIN_MAX_FAILURES", "signin_max_failures", lambda r, n, d: r.integer(n, d, 1, 100)
    ),
    _v("IVRPAY_SIGNIN_LOCKOUT_S", "signin_lockout_s", lambda r, n, d: r.number(n, d, 1, 86400)),
    _v("IVRPAY_PROMPT_MAX_S", "prompt_max_s", lambda r, n, d: r.number(n, d, 1, 600)),
    _v("IVRPAY_RECONCILE_BACKOFF_S", "reconcile_backoff_s", lambda r, n, d: r.durations(n, d)),
    _v("IVRPAY_WEBHOOK_BACKOFF_S", "webhook_backoff_s", lambda r, n, d: r.durations(n, d)),
    _v("IVRPAY_RETRY_HORIZON_S", "retry_horizon_s", lambda r, n, d: r.number(n, d, 60, 30 * 86400)),
    _v("IVRPAY_DB_RETRY_MAX_S", "db_retry_max_s", lambda r, n, d: r.number(n, d, 0.1, 3600)),
    _v(
        "IVRPAY_HTTP_HEADER_TIMEOUT_S",
        "http_header_timeout_s",
        lambda r, n, d: r.number(n, d, 0.1, 600),
    ),
    _v("IVRPAY_HTTP_IDLE_S", "http_idle_s", lambda r, n, d: r.number(n, d, 0.1, 3600)),
    _v(
        "IVRPAY_HTTP_MAX_CONNECTIONS",
        "http_max_connections",
        lambda r, n, d: r.integer(n, d, 8, 1_000_000),
    ),
    _v(
        "IVRPAY_HTTP_MAX_PER_ADDRESS",
        "http_max_per_address",
        lambda r, n, d: r.integer(n, d, 1, 1_000_000),
    ),
)


def show(value: Any) -> str:
    """A setting's value as the variable would be written (``3/2``, ``ja,en``, ``on``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        sep = "/" if all(isinstance(v, int) for v in value) else ","
        return sep.join(show(v) for v in value)
    return str(value)


def _masked(var: Variable, value: Any) -> str:
    text = show(value)
    if not text or not var.secret:
        return text
    if var.secret == "url":
        # scheme://user:password@host…: only the password goes
        return re.sub(r"^([a-z][a-z0-9+.-]*://[^:/@]*:)[^@]*@", r"\1****@", text)
    return "****"


@dataclass(frozen=True)
class Effective:
    """One line of ``ivrpay config``: the value in force (secrets masked) and the default."""

    name: str
    value: str
    default: str
    is_set: bool  # set in the environment (else the default is in force)


def effective(settings: Settings, env: Mapping[str, str] | None = None) -> list[Effective]:
    """Every variable of :data:`VARIABLES` with its value in ``settings`` and its default."""
    env = os.environ if env is None else env
    defaults = Settings()
    rows = []
    for var in VARIABLES:
        default = var.default(defaults)
        shown_default = show(default) or f"(unset: {var.unset})"
        if var.with_gateway:
            shown_default += " (the sandbox's; required with a gateway)"
        value = _masked(var, var.default(settings)) or "(unset)"
        rows.append(Effective(var.name, value, shown_default, env.get(var.name, "") != ""))
    return rows
