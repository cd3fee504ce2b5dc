"""PostgreSQL storage: pool, migrations, the payment state machine, queries, outbox, leases.

Every function takes an asyncpg pool *or* connection (``db``) first and, when it decides by time,
``now`` (an aware ``datetime``) from the caller: tests control time, SQL ``now()`` is never used for
a decision. Payments are returned as *snapshots*: plain dicts shaped exactly like the API's payment
JSON (product.md), datetimes as aware ``datetime`` objects (the API renders RFC 3339). No card data
is ever stored: ``card`` is ``{brand, last4}`` only.

Every change of a payment bumps its sequence number, writes a ``payment_events`` row, sends
``NOTIFY ivrpay_payment '<id>:<seq>'`` and, for the webhook types of product.md, an outbox row — all
in the transaction that makes the change (``_core.change``).

What lives where (each function's own docstring says what it takes and raises):

``errors``       StoreError and its kinds (NotFound, Conflict with a ``.code``, LeaseLost, …);
                 DATABASE_DOWN, the exceptions of a database that is away (503, back-off)
``db``           open_database (the URL, or an embedded pgserver), create_pool
``migrations``   migrate: sql/NNN_*.sql once each, refusing a database newer than the code
``states``       pure: statuses, transitions, steps, webhook types, device_of
``payments``     the API's side: create, get, list (cursor paging), cancel, settlement records
``calls``        the call's side: find by code or transferrer, claim with a lease, progress,
                 executions and the gateway's answers, end; the gateway-call log
``background``   what the workers claim: lapsed leases, expiry, reconciliation, card storage
``settlement``   capture / void / refund intents claimed before AlterTran
``takeback``     take-back records and the AMI work relayed to a process with a link
``listenin``     listen-in records (start, sent, failed, muted)
``accounts``     API clients (hashed keys, revoke), idempotency keys (hashed), users, audit log
``screen``       the screen's sessions, sign-in lockout, per-user fields
``webhooks``     the outbox: claim, record attempts, sign
``notify``       PaymentListener: LISTEN/NOTIFY across processes
``counting``     statements and transactions per scope (the benchmark and its pin)
"""

from ivrpay.store.accounts import (
    abandon_idempotent,
    authenticate_user,
    begin_idempotent,
    check_password,
    create_api_client,
    create_user,
    ensure_default_client,
    finish_idempotent,
    get_api_client,
    get_api_client_by_key,
    get_user,
    hash_password,
    list_api_clients,
    list_audit,
    list_users,
    revoke_api_client,
    set_user_enabled,
    set_user_password,
    update_api_client,
    write_audit,
)
from ivrpay.store.background import (
    claim_reconciliations,
    claim_registrations,
    expire_payments,
    purge_idempotency_keys,
    record_reconciliation,
    record_registration_attempt,
    resolve_lapsed_leases,
)
from ivrpay.store.calls import (
    Claim,
    claim_payment,
    end_call,
    find_by_code,
    find_pending_by_device,
    list_gateway_calls,
    mark_needs_review,
    move_to_processing,
    record_entry,
    record_gateway_call,
    record_gateway_result,
    record_progress,
    renew_leases,
    start_execution,
)
from ivrpay.store.db import Database, EmbeddedPostgres, create_pool, open_database, start_embedded
from ivrpay.store.errors import (
    DATABASE_DOWN,
    Conflict,
    IdempotencyConflict,
    InvalidCursor,
    InvalidTransition,
    LeaseLost,
    NotFound,
    PaymentCanceled,
    StoreError,
    TakenBack,
    TooManyAttempts,
)
from ivrpay.store.listenin import (
    clear_listen_in,
    confirm_listen_in,
    listen_in_conflict,
    mark_listen_in,
    set_listen_in_muted,
)
from ivrpay.store.migrations import MigrationError, migrate
from ivrpay.store.notify import PaymentListener
from ivrpay.store.payments import (
    cancel_payment,
    create_payment,
    get_gateway_handle,
    get_payment,
    get_payment_by_order_id,
    list_events,
    list_payments,
    record_registration,
    record_settlement,
    resolve_review,
    settlement_action,
)
from ivrpay.store.states import (
    CLAIMABLE_STATUSES,
    FINAL_STATUSES,
    STATUSES,
    STEPS,
    TRANSITIONS,
    WEBHOOK_TYPES,
    can_transition,
    device_of,
)
from ivrpay.store.takeback import (
    claim_redirects,
    clear_taken_back,
    confirm_taken_back,
    expire_redirect,
    finish_redirect,
    get_redirect,
    mark_taken_back,
    purge_redirects,
    queue_redirect,
    take_back_conflict,
    unclaim_redirect,
)
from ivrpay.store.webhooks import (
    claim_deliveries,
    count_webhook_backlog,
    list_deliveries,
    record_delivery_attempt,
    sign,
)

__all__ = [
    "CLAIMABLE_STATUSES",
    "DATABASE_DOWN",
    "FINAL_STATUSES",
    "STATUSES",
    "STEPS",
    "TRANSITIONS",
    "WEBHOOK_TYPES",
    "Claim",
    "Conflict",
    "Database",
    "EmbeddedPostgres",
    "IdempotencyConflict",
    "InvalidCursor",
    "InvalidTransition",
    "LeaseLost",
    "MigrationError",
    "NotFound",
    "PaymentCanceled",
    "PaymentListener",
    "StoreError",
    "TakenBack",
    "TooManyAttempts",
    "abandon_idempotent",
    "authenticate_user",
    "begin_idempotent",
    "can_transition",
    "cancel_payment",
    "check_password",
    "claim_deliveries",
    "claim_payment",
    "claim_reconciliations",
    "claim_redirects",
    "claim_registrations",
    "clear_listen_in",
    "clear_taken_back",
    "confirm_listen_in",
    "confirm_taken_back",
    "count_webhook_backlog",
    "create_api_client",
    "create_payment",
    "create_pool",
    "create_user",
    "device_of",
    "end_call",
    "ensure_default_client",
    "expire_payments",
    "expire_redirect",
    "find_by_code",
    "find_pending_by_device",
    "finish_idempotent",
    "finish_redirect",
    "get_api_client",
    "get_api_client_by_key",
    "get_gateway_handle",
    "get_payment",
    "get_payment_by_order_id",
    "get_redirect",
    "get_user",
    "hash_password",
    "list_api_clients",
    "list_audit",
    "list_deliveries",
    "list_events",
    "list_gateway_calls",
    "list_payments",
    "list_users",
    "listen_in_conflict",
    "mark_listen_in",
    "mark_needs_review",
    "mark_taken_back",
    "migrate",
    "move_to_processing",
    "open_database",
    "purge_idempotency_keys",
    "purge_redirects",
    "queue_redirect",
    "record_delivery_attempt",
    "record_entry",
    "record_gateway_call",
    "record_gateway_result",
    "record_progress",
    "record_reconciliation",
    "record_registration",
    "record_registration_attempt",
    "record_settlement",
    "renew_leases",
    "resolve_lapsed_leases",
    "resolve_review",
    "revoke_api_client",
    "set_listen_in_muted",
    "set_user_enabled",
    "set_user_password",
    "settlement_action",
    "sign",
    "start_embedded",
    "start_execution",
    "take_back_conflict",
    "unclaim_redirect",
    "update_api_client",
    "write_audit",
]
