"""Counting what reaches PostgreSQL: round trips and transactions, for the benchmark and the test
that pins the cost of a call.

:func:`install` makes every connection opened afterwards (pools included) report its queries
through asyncpg's query logger; a :class:`QueryCounter` counts those issued inside its
:meth:`~QueryCounter.scope` (a context variable, so tasks started inside inherit it: a call's
gateway task, the pool's release and its reset). Nothing is counted, and no logger is attached,
unless :func:`install` was called: production pays nothing.

A *statement* is one round trip (``BEGIN``, ``COMMIT`` and a pool reset included). A
*transaction* is what the server commits: a ``BEGIN`` … ``COMMIT``/``ROLLBACK`` block, or a
statement sent outside one (it commits on its own).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

_SCOPE: contextvars.ContextVar[QueryCounter | None] = contextvars.ContextVar(
    "ivrpay_query_counter", default=None
)
_installed = False


@dataclass
class QueryCounter:
    """Round trips and transactions seen inside :meth:`scope` (``texts``: per query text)."""

    statements: int = 0
    transactions: int = 0
    texts: collections.Counter[str] = field(default_factory=collections.Counter)

    @contextlib.contextmanager
    def scope(self) -> Iterator[QueryCounter]:
        token = _SCOPE.set(self)
        try:
            yield self
        finally:
            _SCOPE.reset(token)

    def reset(self) -> None:
        self.statements = self.transactions = 0
        self.texts.clear()

    def report(self, calls: int = 1) -> str:
        n = max(calls, 1)
        return f"{self.statements / n:.1f} statements, {self.transactions / n:.1f} transactions"


def install() -> None:
    """From now on, connections opened by :func:`ivrpay.store.db.connect`/``create_pool`` report
    their queries (the benchmark and tests call this before the service starts)."""
    global _installed
    _installed = True


def uninstall() -> None:
    global _installed
    _installed = False


def attach(conn: asyncpg.Connection) -> None:
    """Called for each new connection: a query logger when :func:`install` was called."""
    if not _installed:
        return
    in_block = [False]

    def logged(record: Any) -> None:
        # Runs in a copy of the context of the task that sent the query (loop.call_soon).
        words = record.query.lstrip().split(None, 2)
        verb = words[0].upper().rstrip(";") if words else ""
        second = words[1].upper().rstrip(";") if len(words) > 1 else ""
        ends = False
        if verb in ("BEGIN", "START"):
            in_block[0] = True
        elif verb in ("COMMIT", "END") or (verb == "ROLLBACK" and second != "TO"):
            in_block[0] = False
            ends = True
        elif not in_block[0]:
            ends = True
        counter = _SCOPE.get()
        if counter is None:
            return
        counter.statements += 1
        counter.transactions += ends
        counter.texts[" ".join(record.query.split())[:160]] += 1

    conn.add_query_logger(logged)
