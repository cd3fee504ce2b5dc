"""The import arrows of docs/architecture (product folders): a line of code knows its room."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ivrpay"

# folder -> the ivrpay packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "agi": set(),
    "card": set(),
    "sandbox": set(),
    "simulator": {"config"},  # the CLI reads the sounds folder setting
    "gateway": {"card", "config"},
    "store": {"config"},
    "flow": {"agi", "card", "gateway", "store", "config", "sounds", "metrics"},
    "api": {"store", "gateway", "ami", "card", "config", "metrics", "logging"},
    "web": {"store", "gateway", "ami", "config", "api", "metrics", "sounds"},
    "ami": {"config"},
    "workers": {"store", "gateway", "config", "metrics"},
    "sounds": set(),
    "metrics": set(),
    "logging": set(),
    "config": set(),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "ivrpay" and len(parts) > 1:
                found.add(parts[1])
    return found


def _room(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_each_room_imports_only_what_it_may(room: str) -> None:
    files = [p for p in PACKAGE.rglob("*.py") if _room(p) == room]
    bad = {
        f"{p.relative_to(PACKAGE)} imports ivrpay.{imp}"
        for p in files
        for imp in _imports(p)
        if imp != room and imp not in ALLOWED[room]
    }
    assert not bad, sorted(bad)


def test_nothing_but_the_command_imports_the_flow() -> None:
    users = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if _room(p) not in ("flow", "cli", "service") and "flow" in _imports(p)
    }
    assert users == set()


def test_the_flow_knows_no_sockets() -> None:
    for p in (PACKAGE / "flow").rglob("*.py"):
        text = p.read_text(encoding="utf-8")
        assert "import socket" not in text and "open_connection" not in text, p
        assert "StreamReader" not in text and "StreamWriter" not in text, p
