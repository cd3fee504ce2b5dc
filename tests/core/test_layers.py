"""The import arrows of docs/architecture (product folders): a line of code knows its room."""

from __future__ import annotations

import ast
import re
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
    # The conversation: the payment process and a channel interface, never the wire or the SQL.
    "flow": {"payments", "card", "config", "sounds", "metrics"},
    "payments": {"gateway", "store", "card", "config", "metrics"},
    # The wire meets the conversation here only: the FastAGI session as a flow Channel.
    "agichannel": {"agi", "flow"},
    "api": {"store", "payments", "ami", "card", "config", "metrics", "logging"},
    "web": {"store", "payments", "ami", "config", "api", "metrics", "sounds"},
    "ami": {"config"},
    "workers": {"store", "payments", "config", "metrics"},
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


def test_the_arrows_of_the_payment_process() -> None:
    """flow → payments → gateway, store; api, workers → payments: stated, and each one used."""
    for room, needs in {
        "flow": {"payments"},
        "payments": {"gateway", "store"},
        "api": {"payments"},
        "workers": {"payments"},
    }.items():
        used = set().union(*(_imports(p) for p in PACKAGE.rglob("*.py") if _room(p) == room))
        assert needs <= used & ALLOWED[room], (room, needs - used)
    for room in ("flow", "api", "web", "workers"):
        assert "gateway" not in ALLOWED[room], room  # only through the payment process


# The gateway requests that move money or store a card, and the lookups that settle them.
_GATEWAY_STEPS = re.compile(
    r"\.(entry_tran|open_transaction|exec_tran|exec_tran_member|settle_exec|alter_tran|"
    r"search_trade|register|save_card|traded_card|store_traded_card|search_card)\("
)


def test_only_the_payment_process_sends_to_the_gateway() -> None:
    senders = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if _room(p) not in ("payments", "gateway", "sandbox", "simulator")
        and _GATEWAY_STEPS.search(p.read_text(encoding="utf-8"))
    }
    assert senders == set()


def test_nothing_but_the_command_imports_the_flow() -> None:
    users = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if _room(p) not in ("flow", "cli", "service", "classic", "agichannel")
        and "flow" in _imports(p)
    }
    assert users == set()


def test_the_flow_knows_no_sockets() -> None:
    for p in (PACKAGE / "flow").rglob("*.py"):
        text = p.read_text(encoding="utf-8")
        assert "import socket" not in text and "open_connection" not in text, p
        assert "StreamReader" not in text and "StreamWriter" not in text, p


def test_the_flow_imports_neither_asyncpg_nor_the_wire() -> None:
    for p in (PACKAGE / "flow").rglob("*.py"):
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in ("asyncpg", "aiohttp", "socket"), (p, name)
                assert not name.startswith(("ivrpay.agi", "ivrpay.store", "ivrpay.gateway")), (
                    p,
                    name,
                )


def test_no_module_imports_in_a_circle() -> None:
    """Module-level imports between ivrpay's modules form no cycle."""
    graph: dict[str, set[str]] = {}
    for p in PACKAGE.rglob("*.py"):
        rel = p.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        tree = ast.parse(p.read_text(encoding="utf-8"))
        deps: set[str] = set()
        for node in tree.body:  # module level only: an import inside a function is deferred
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d.startswith("ivrpay.")}
    names = set(graph)

    def target(dep: str) -> str | None:
        while dep and dep not in names:
            dep = dep.rpartition(".")[0]
        return dep or None

    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for d in sorted(graph[n]):
            t = target(d)
            # A package's __init__ re-exporting its own modules is not a circle of code.
            if t is None or t == n or n.startswith(t + ".") or t.startswith(n + "."):
                continue
            if state.get(t) == 1:
                raise AssertionError(" -> ".join([*path, n, t]))
            if t not in state:
                visit(t, [*path, n])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])
