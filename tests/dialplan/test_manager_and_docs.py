"""dialplan/manager_ivrpay.conf, dialplan/README.rst and docs/deployment.rst."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ivrpay.config import VARIABLES, Settings
from ivrpay.flow.call import IVRPAY_STATUSES
from tests.dialplan.asterisk_conf import Category, load_conf, parse_conf

ROOT = Path(__file__).resolve().parents[2]
MANAGER = ROOT / "dialplan" / "manager_ivrpay.conf"
README = ROOT / "dialplan" / "README.rst"
GUIDE = ROOT / "docs" / "deployment.rst"

# AMI classes that carry the caller's keys: dtmf (DTMFBegin/End) and agi (AGIExecEnd results).
LEAKING_CLASSES = {"dtmf", "agi", "all"}


@pytest.fixture(scope="module")
def ami_user() -> Category:
    return load_conf(MANAGER).category("ivrpay")


def classes(value: str | None) -> set[str]:
    return {c.strip().lower() for c in (value or "").split(",") if c.strip()}


def test_ami_user_reads_call_and_system_only(ami_user: Category) -> None:
    reads = [classes(v) for v in ami_user.values("read")]
    assert reads == [{"call", "system"}]
    assert not reads[0] & LEAKING_CLASSES
    assert [classes(v) for v in ami_user.values("write")] == [{"call"}]


def test_ami_user_is_limited_to_the_ivrpay_host(ami_user: Category) -> None:
    keys = [e.key for e in ami_user.entries]
    assert ami_user.values("deny") == ["0.0.0.0/0.0.0.0"]
    assert ami_user.values("permit") == ["127.0.0.1/255.255.255.255"]
    assert keys.index("deny") < keys.index("permit")  # deny all first, then the one host


def test_ami_user_filters_key_events_out(ami_user: Category) -> None:
    filters = ami_user.values("eventfilter")
    assert "!Event: DTMF" in filters
    assert "!Event: AGIExec" in filters
    assert all(f.startswith("!") for f in filters)  # exclusions only: no accidental allow-list


def test_ami_secret_is_a_placeholder_to_replace(ami_user: Category) -> None:
    # Shipping a working default secret would let anyone with the file log in.
    assert "CHANGE-ME" in (ami_user.get("secret") or "")


def test_the_class_check_would_catch_a_leaking_user() -> None:
    bad = parse_conf("[x]\nread = call,system,DTMF\nwrite = call\n").category("x")
    assert classes(bad.get("read")) & LEAKING_CLASSES == {"dtmf"}


def test_no_agi_debug_in_the_shipped_conf_files() -> None:
    for path in (MANAGER, ROOT / "dialplan" / "extensions_ivrpay.conf"):
        text = path.read_text(encoding="utf-8").lower()
        assert not re.search(r"agi\s+set\s+debug", text), path


# --- the docs -----------------------------------------------------------------------------


def settings_read_by_config() -> set[str]:
    return {v.name for v in VARIABLES}


def test_guide_lists_every_setting() -> None:
    names = settings_read_by_config()
    assert len(names) > 20  # the scan itself works
    guide = GUIDE.read_text(encoding="utf-8")
    missing = sorted(n for n in names if f"``{n}``" not in guide)
    assert not missing, f"docs/deployment.rst does not describe {missing}"
    for pbx_setting in ("IVRPAY_FALLBACK", "IVRPAY_DIAL_TIMEOUT", "IVRPAY_LANGUAGE"):
        assert f"``{pbx_setting}``" in guide


def systemd_unit() -> dict[str, str]:
    guide = GUIDE.read_text(encoding="utf-8")
    m = re.search(r"\.\. code-block:: ini\n\n((?:    .*\n|\n)+)", guide)
    assert m, "no systemd unit in the guide"
    unit: dict[str, str] = {}
    for line in m.group(1).splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            unit[key] = value
    return unit


def test_systemd_unit_drains_and_never_dumps_core() -> None:
    unit = systemd_unit()
    defaults = Settings()
    assert unit["LimitCORE"] == "0"
    assert unit["KillSignal"] == "SIGTERM"
    assert int(unit["LimitNOFILE"]) >= 4 * defaults.max_calls
    # serve drains calls for IVRPAY_DRAIN_S, then waits for gateway calls still running.
    assert int(unit["TimeoutStopSec"]) > defaults.drain_s + 3 * defaults.gateway_timeout_s
    assert unit["ExecStart"].endswith("ivrpay serve")


@pytest.mark.parametrize(
    "rule",
    [
        r"agi set debug off",
        r"``dtmf``",
        r"StopMixMonitor\(\)",
        r"swapon --show",
        r"read=call,system",
        r"hagi://",
        r"_agi\._tcp\.",
        r"needs_review",
    ],
)
def test_guide_covers_the_pbx_rules(rule: str) -> None:
    assert re.search(rule, GUIDE.read_text(encoding="utf-8"))


def test_guide_explains_every_status() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    statuses = set(IVRPAY_STATUSES)
    section = guide.split("What IVRPAY_STATUS means for the operator", 1)[1]
    section = section.split("Troubleshooting", 1)[0]
    assert {s for s in statuses if f"* - ``{s}``" in section} == statuses
    assert "(empty)" in section


def test_readme_shows_the_sounds_layout() -> None:
    readme = README.read_text(encoding="utf-8")
    assert "sounds/<lang>/ivrpay/" in readme
    assert "/var/lib/asterisk/sounds/ja/ivrpay" in readme
    assert "include => ivrpay-transfer" in readme
    assert "#include manager_ivrpay.conf" in readme
