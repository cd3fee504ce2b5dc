"""Package metadata: ranges in setup.cfg, the exact versions in constraints.txt only."""

from __future__ import annotations

import configparser
import re

from ivrpay.config import REPO_ROOT

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_requirements_are_ranges_and_every_one_is_pinned_in_constraints() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg", encoding="utf-8")
    reqs = cfg["options"]["install_requires"].split()
    for extra in cfg["options.extras_require"].values():
        reqs += extra.split()
    assert reqs and not [r for r in reqs if "==" in r]
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        name, sep, version = line.partition("==")
        assert sep and version, f"constraints.txt: {line!r} is not NAME==VERSION"
        pins[_norm(name)] = version
    unpinned = [r for r in reqs if _norm(_NAME.match(r).group(0)) not in pins]  # type: ignore[union-attr]
    assert unpinned == []
    assert cfg["options"]["python_requires"] == ">=3.11"
    assert cfg["metadata"]["license"] == "AGPL-3.0-or-later"
