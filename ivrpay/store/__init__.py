"""PostgreSQL storage: pool, migrations, the payment state machine, queries, outbox, leases.

Every function takes an asyncpg pool *or* connection (``db``) first and, when it decides by time,
``now`` (an aware ``datetime``) from the caller: tests control time, SQL ``now()`` is never used for
a decision. Payments are returned as *snapshots*: plain dicts shaped exactly like the API's payment
JSON (product.md), datetimes as aware ``datetime`` objects (the API renders RFC 3339). No card data
is ever stored: ``card`` is ``{brand, last4}`` only.

Every change of a payment bumps its sequence number, writes a ``payment_events`` row, sends
``NOTIFY ivrpay_payment '<id>:<seq>'`` and, for the webhook types of product.md, an outbox row — all
in the transaction that makes the change.

Errors (``ivrpay.store.errors``)
    StoreError                      base class; messages never hold card data
    NotFound(StoreError)            no such payment / client / user
    Conflict(StoreError)            ``.code``: "order_id_exists", "not_cancelable", "settlement", …
    InvalidTransition(Conflict)     ``.from_status``, ``.to_status`` (code "invalid_transition")
    IdempotencyConflict(Conflict)   ``.code``: "idempotency_mismatch" | "idempotency_in_progress"
    LeaseLost(StoreError)           the call no longer holds the payment (lease lapsed / ended)
    PaymentCanceled(StoreError)     ``.payment``: cancel was requested; the payment is now canceled
    TakenBack(StoreError)           the operator took the caller back: no execution may start
    TooManyAttempts(StoreError)     ``.payment``: execution limit hit; the payment is now failed
    InvalidCursor(StoreError, ValueError)
    DATABASE_DOWN                   the asyncpg / socket exceptions of a database that is away
                                    (not a bug: 503 in the API, back-off in the workers)

Database (``ivrpay.store.db``)
    open_database(settings, var_dir=Path("var"), *, migrate=True, min_size=2, max_size=20)
        -> Database                 URL from settings.database_url, else an embedded pgserver
                                    under var_dir/pg; migrated; ``Database.pool``, ``.url``,
                                    ``await .close()``
    create_pool(url, *, min_size=2, max_size=20) -> asyncpg.Pool   with JSON/JSONB codecs
    start_embedded(pgdata: Path) -> EmbeddedPostgres               ``.url``, ``.stop()``

Migrations (``ivrpay.store.migrations``)
    migrate(conn_or_url) -> list[str]    applies sql/NNN_*.sql once each, returns the names applied
    MigrationError                       none shipped, or the database has one the code lacks

State machine (``ivrpay.store.states``, pure)
    STATUSES, FINAL_STATUSES, CLAIMABLE_STATUSES, TRANSITIONS: dict[str, frozenset[str]]
    can_transition(from_status, to_status) -> bool
    WEBHOOK_TYPES: dict[str, str]        status/settlement -> "payment.<type>"
    STEPS                                the progress steps of product.md
    device_of(channel) -> str            "PJSIP/1001-0000002a;2" -> "PJSIP/1001"

Payments, API side (``ivrpay.store.payments``)
    create_payment(db, *, client_id, order_id, amount, tax=0, job="AUTH", method=1, pay_times=None,
        operation="charge", member_id=None, operator=None, language="ja", metadata=None,
        expires_in=1800, now) -> dict   random unique code; Conflict("order_id_exists")
    get_payment(db, payment_id) -> dict | None            (a malformed id is simply not found)
    get_payment_by_order_id(db, order_id) -> dict | None
    list_payments(db, *, now, order_id=None, status=None, updated_since=None, cursor=None,
        limit=50, holdback_s=5.0, client_id=None) -> tuple[list[dict], str | None]
                                    ascending (updated_at, id); opaque next cursor or None;
                                    with updated_since, rows updated after now - holdback_s wait;
                                    the cursor carries order_id/status/updated_since (a different
                                    filter given with it: InvalidCursor)
    cancel_payment(db, payment_id, *, now, actor=None) -> tuple[str, dict]
                                    ("canceled" | "requested", snapshot); NotFound, Conflict
    settlement_action(snapshot, action) -> str      pure: "ok" | "already" | "conflict"
                                    action: "capture" | "void" | "refund"
    get_gateway_handle(db, payment_id) -> dict | None
                                    {order_id, access_id, access_pass, job, amount, tax, settlement}
                                    of the succeeded execution, for AlterTran
    record_settlement(db, payment_id, *, action, now, actor=None, result=None) -> dict
                                    settlement -> captured/voided/refunded (+ webhook); repeating a
                                    done action returns the snapshot unchanged; Conflict otherwise
    record_registration(db, payment_id, *, registration, now) -> dict
                                    {status: succeeded|failed|pending, card_seq: int | None,
                                    error}; pending is retried by the registration retrier
    list_events(db, payment_id, *, after_seq=0) -> list[dict]
                                    {seq, created_at, kind, status, step, data}, oldest first
    resolve_review(db, payment_id, *, status, actor, now, note=None) -> dict
                                    admin decision on a needs_review payment: unknown ->
                                    succeeded|failed, audited; succeeded marks the open attempt
                                    succeeded (capture/void/refund use it)

Payments, call side (``ivrpay.store.calls``) — token = the claim's lease token
    find_by_code(db, code, *, now) -> dict | None         latest payment holding the code
    find_pending_by_device(db, device, *, now, statuses=("pending",)) -> list[dict]
                                    unexpired payments whose operator callback is on that device,
                                    newest first
    claim_payment(db, payment_id, *, owner, now, lease_s, uniqueid=None, channel=None,
        max_executions=None) -> Claim   atomic; Claim(ok, reason, payment, token); reason in
                                    "in_use", "canceled", "expired", "succeeded", "unknown",
                                    "too_many_attempts", "not_found"
    renew_leases(db, owner, *, now, lease_s, tokens) -> int
                                    leases of owner's claims whose token is in ``tokens`` (the
                                    calls in progress in this process); a claim left out lapses
    record_progress(db, payment_id, token, *, now, step=None, attempts=None) -> dict
                                    attempts: {field: count} merged; returns snapshot (check
                                    ``cancel_requested``); LeaseLost
    start_execution(db, payment_id, token, *, now, max_per_payment, max_per_call) -> str
                                    next "<order_id>-NN", stored durably before EntryTran;
                                    TooManyAttempts (payment failed: too_many_attempts);
                                    TakenBack (unchanged) once taken back
    record_entry(db, payment_id, token, *, order_id, access_id, access_pass, now) -> None
    move_to_processing(db, payment_id, token, *, order_id, now, entry=None, gateway_call=None)
        -> dict                     in_call -> processing; PaymentCanceled if cancel requested;
                                    TakenBack (unchanged) once taken back; entry {access_id,
                                    access_pass} kept first (record_entry); gateway_call: a
                                    record_gateway_call row written with it
    record_gateway_result(db, payment_id, token, *, order_id, status, now, error=None,
        result=None, card=None, registration=None, gateway_call=None) -> dict
                                    processing -> status: "succeeded" (result, card {brand,
                                    last4}) | "in_call" (input error / decline, caller may retry)
                                    | "failed" | "unknown"; error {code, category, message};
                                    the execution's outcome is "succeeded" or error.category;
                                    a "pending" registration (succeeded only) is due at once
    end_call(db, payment_id, token, *, now, status=None, error=None, step=None) -> dict
                                    call over: in_call -> status (default "abandoned"; or
                                    "failed" / "canceled"); a payment past the call keeps its
                                    status (claim released); processing refuses
                                    (InvalidTransition)
    mark_needs_review(db, payment_id, *, now, reason) -> dict
    record_gateway_call(db, *, endpoint, started_at, duration_ms, payment_id=None,
        order_id=None, http_status=None, err_code=None, err_info=None, outcome=None,
        error=None) -> None         free text masked (no 12–19 digit runs)
    list_gateway_calls(db, payment_id) -> list[dict]

Background (``ivrpay.store.background``) — all with FOR UPDATE SKIP LOCKED
    resolve_lapsed_leases(db, *, now, limit=100) -> list[tuple[str, str]]
                                    (payment_id, new status): in_call -> abandoned,
                                    processing -> unknown (reconcile due at once)
    expire_payments(db, *, now, limit=500) -> list[str]   pending/failed/abandoned past expires_at
    claim_reconciliations(db, *, now, lease_s, limit=10) -> list[dict]
                                    due ``unknown`` payments, held for lease_s: {payment:
                                    snapshot, executions: [{order_id, started_at, entered_at,
                                    sent_at, access_id, access_pass, outcome}], unknown_since,
                                    attempts}
    record_reconciliation(db, payment_id, *, now, status, backoff_s, horizon_s, error=None,
        result=None, card=None, order_id=None, registration=None) -> dict
                                    status "succeeded" | "failed" | "retry"; retry schedules the
                                    next try by backoff_s, past horizon_s -> needs_review; a
                                    charge_and_register found succeeded gets a pending
                                    registration (TradedCard was never sent); ``registration``
                                    records what SearchCard showed of a ``register``
    claim_registrations(db, *, now, lease_s, limit=10) -> list[dict]
                                    succeeded payments whose registration is pending and due,
                                    held for lease_s: {payment: snapshot, order_id (succeeded
                                    execution), member_id, attempts, pending_since}
    record_registration_attempt(db, payment_id, *, now, status, backoff_s, horizon_s,
        card_seq=None, error=None) -> dict
                                    status "succeeded" | "failed" | "retry": registration
                                    {status, card_seq, error} + a payment event; retry schedules
                                    by backoff_s, past horizon_s -> failed;
                                    Conflict("registration_not_pending")
    purge_idempotency_keys(db, *, now) -> int

Listen-in (``ivrpay.store.listenin``)
    listen_in_conflict(snapshot) -> str | None          pure: the Conflict code mark would raise
    mark_listen_in(db, payment_id, *, by, operator_channel, caller_channel, now) -> dict
                                    pending, registered for listen-in: listen_in {by, at, ...};
                                    Conflict "not_listen_in" | "not_pending" | "already_listening"
    confirm_listen_in / clear_listen_in(db, payment_id, *, at, ...)   sent by / the redirect failed
    set_listen_in_muted(db, payment_id, *, muted, now) -> dict | None   the operator's leg muted

Take-back (``ivrpay.store.takeback``)
    take_back_conflict(snapshot) -> str | None          pure: the Conflict code mark would raise
    mark_taken_back(db, payment_id, *, by, now) -> tuple[dict, str]
                                    in_call, call live, not taken back yet: taken_back {by, at,
                                    process: None}; (snapshot, call channel); Conflict
                                    "execution_in_flight" | "not_in_ivr" | "already_taken_back"
    confirm_taken_back(db, payment_id, *, at, process, now) -> dict | None   process that sent it
    clear_taken_back(db, payment_id, *, at, now, reason) -> dict | None      the redirect failed
    queue_redirect(db, *, payment_id, channel, context, variables, now, wait_s, kind) -> str
                                    kind "redirect" | "listen_in" (the whole listen-in, relayed)
    claim_redirects(db, *, owner, now, limit=10) -> list[dict]    (FOR UPDATE SKIP LOCKED)
    finish_redirect(db, redirect_id, *, outcome, now, detail=None) -> None
                                    outcome "ok" | "refused" | "unknown"
    expire_redirect(db, redirect_id, *, now) -> bool      unclaimed: expired (True)
    unclaim_redirect(db, redirect_id, *, owner) -> None    claimed, link lost before sending
    get_redirect(db, redirect_id) -> dict | None
    purge_redirects(db, *, before) -> int                  relayed redirects made before

Webhooks (``ivrpay.store.webhooks``)
    sign(secret, body: bytes, t: int) -> str              "t=<t>,v1=<hex hmac-sha256(t.body)>"
    claim_deliveries(db, *, now, lease_s, limit=20) -> list[dict]
                                    {id, payment_id, type, url, secret, body (str), attempts,
                                    created_at}
    record_delivery_attempt(db, delivery_id, *, now, ok, status_code=None, error=None,
        duration_ms=None, backoff_s, horizon_s, url=None) -> None
    list_deliveries(db, *, payment_id=None, client_id=None, limit=100) -> list[dict]
                                    {id, payment_id, type, sequence, url, state (pending |
                                    delivered | failed), attempts, next_attempt_at, created_at,
                                    delivered_at, history [{attempted_at, status_code, error,
                                    duration_ms}]}
    count_webhook_backlog(db) -> int                      deliveries still pending (metrics)

Counting (``ivrpay.store.counting``) — the benchmark and the test that pins a call's cost
    install() / uninstall()         connections opened afterwards report their queries
    QueryCounter()                  .scope() context manager; .statements (round trips),
                                    .transactions (commits), .texts (per query text), .report()

Live progress (``ivrpay.store.notify``)
    PaymentListener(url)            one LISTEN connection per process, fanned out to queues
        await start() / await close()
        subscribe(payment_id=None) -> async context manager yielding asyncio.Queue of
                                    (payment_id: str, seq: int); None = every payment

Accounts (``ivrpay.store.accounts``)
    create_api_client(db, name, webhook_url=None) -> tuple[dict, str, str]
                                    (client, api_key, webhook_secret); key kept as SHA-256 only
    get_api_client_by_key(db, api_key) -> dict | None     enabled clients only
    get_api_client(db, client_id) -> dict | None
    ensure_default_client(db) -> dict                     owner of screen-made payments
    list_api_clients(db) -> list[dict]
    update_api_client(db, client_id, *, webhook_url=..., enabled=...) -> dict
    revoke_api_client(db, name_or_id, *, actor, now) -> dict      audited; NotFound,
                                    Conflict("ambiguous") for a name of several enabled keys
    client dict: {id, name, key_prefix, webhook_url, is_default, enabled, created_at}
    hash_password(password) -> str / check_password(stored, password) -> bool   (scrypt)
    create_user(db, name, role, password) -> dict         Conflict("user_exists")
    authenticate_user(db, name, password) -> dict | None
    get_user(db, user_id) -> dict | None / list_users(db) -> list[dict]
    set_user_password(db, user_id, password) -> None / set_user_enabled(db, user_id, enabled)
    user dict: {id, name, role, enabled, created_at}
    write_audit(db, *, actor, action, now, payment_id=None, target=None, data=None) -> None
    list_audit(db, *, payment_id=None, limit=100) -> list[dict]
    begin_idempotent(db, *, client_id, key, request_hash, now, lock_s=60.0) -> dict | None
                                    None: go ahead (then finish_idempotent); a dict
                                    {status, body}: replay it; IdempotencyConflict otherwise
    finish_idempotent(db, *, client_id, key, status, body, now) -> None
    abandon_idempotent(db, *, client_id, key) -> None     after an unexpected failure
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
