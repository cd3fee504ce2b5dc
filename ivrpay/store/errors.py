"""Storage errors. Messages name the payment or the rule, never card data."""

from __future__ import annotations

from typing import Any

import asyncpg

# The database is away (stopped, restarting, refusing connections, a connection killed): not a
# bug, and worth trying again later. The API answers 503, the workers back off and say it once.
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or does not exist
    asyncpg.InterfaceError,  # the connection was closed under a query
    asyncpg.exceptions.InternalClientError,  # the protocol's state after a killed connection
    asyncpg.exceptions.OperatorInterventionError,  # 57: terminated, shutting down, starting up
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,  # 55000: not accepting connections
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections
    ConnectionError,  # refused or reset before PostgreSQL said anything
)


def database_down(exc: BaseException) -> bool:
    return isinstance(exc, DATABASE_DOWN)


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class NotFound(StoreError):
    """No such payment, client or user."""


class Conflict(StoreError):
    """The request clashes with the current state; ``code`` says which rule."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message or code)
        self.code = code


class InvalidTransition(Conflict):
    """The state machine does not allow this change."""

    def __init__(self, from_status: str | None, to_status: str) -> None:
        super().__init__(
            "invalid_transition", f"a payment cannot go from {from_status} to {to_status}"
        )
        self.from_status = from_status
        self.to_status = to_status


class IdempotencyConflict(Conflict):
    """The key came with another body, or its first request still runs (see ``code``)."""


class LeaseLost(StoreError):
    """The call no longer holds the payment (its lease lapsed or the call already ended)."""


class PaymentCanceled(StoreError):
    """A cancel was requested during the call; the payment is now ``canceled``."""

    def __init__(self, payment: dict[str, Any]) -> None:
        super().__init__(f"payment {payment['id']} was canceled")
        self.payment = payment


class TooManyAttempts(StoreError):
    """The execution limit is reached; the payment is now ``failed`` (``too_many_attempts``)."""

    def __init__(self, payment: dict[str, Any]) -> None:
        super().__init__(f"payment {payment['id']} has used up its executions")
        self.payment = payment


class TakenBack(StoreError):
    """The operator took the caller back (AMI): the call may not start a gateway execution; its
    AGI is about to hang up."""


class InvalidCursor(StoreError, ValueError):
    """A list cursor that this store did not make."""
