-- ivrpay schema, first version. Applied by `ivrpay migrate` (ivrpay/store/migrations.py) once,
-- inside one transaction holding the migration advisory lock.
-- No column may hold card data: a card is its brand and last four digits, nothing more.

CREATE TABLE api_clients (
    id             uuid PRIMARY KEY,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_hash       bytea UNIQUE,            -- SHA-256 of the API key; NULL for the default client
    key_prefix     text,                    -- first characters of the key, to tell keys apart
    webhook_url    text,
    webhook_secret text NOT NULL,           -- needed in clear to sign deliveries
    is_default     boolean NOT NULL DEFAULT false,
    enabled        boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL
);
-- At most one default client (owner of payments made on the operator screen).
CREATE UNIQUE INDEX api_clients_one_default ON api_clients (is_default) WHERE is_default;

CREATE TABLE payments (
    id                 uuid PRIMARY KEY,
    client_id          uuid NOT NULL REFERENCES api_clients (id),
    order_id           text NOT NULL UNIQUE CHECK (order_id ~ '^[A-Za-z0-9-]{1,24}$'),
    amount             integer NOT NULL CHECK (amount BETWEEN 0 AND 9999999),
    tax                integer NOT NULL DEFAULT 0 CHECK (tax BETWEEN 0 AND 9999999),
    job                text CHECK (job IN ('AUTH', 'CAPTURE', 'CHECK')),
    method             smallint CHECK (method BETWEEN 1 AND 5),
    pay_times          smallint CHECK (pay_times BETWEEN 1 AND 99),
    operation          text NOT NULL CHECK (operation IN ('charge', 'register', 'charge_and_register')),
    member_id          text,
    language           text NOT NULL,
    metadata           jsonb NOT NULL DEFAULT '{}',
    status             text NOT NULL CHECK (status IN ('pending', 'in_call', 'processing',
                           'succeeded', 'failed', 'unknown', 'abandoned', 'canceled', 'expired')),
    code               text NOT NULL CHECK (code ~ '^[0-9]{6}$'),
    expires_at         timestamptz NOT NULL,
    operator           jsonb,
    operator_device    text,                -- callback without its -XXXXXXXX[;N] suffix
    progress_step      text NOT NULL DEFAULT 'waiting',
    progress_attempts  jsonb NOT NULL DEFAULT '{}',
    card_brand         text CHECK (length(card_brand) <= 20),
    card_last4         text CHECK (card_last4 ~ '^[0-9]{4}$'),
    result_approve     text,
    result_tran_id     text,
    result_tran_date   timestamptz,
    result_forward     text,
    result_card_seq    text,
    registration       jsonb,
    error              jsonb,
    call_uniqueid      text,
    call_channel       text,
    call_started_at    timestamptz,
    call_ended_at      timestamptz,
    settlement         text CHECK (settlement IN ('authorized', 'captured', 'voided', 'refunded')),
    cancel_requested   boolean NOT NULL DEFAULT false,
    needs_review       boolean NOT NULL DEFAULT false,
    review_reason      text,
    -- The claim of the call that holds the payment: lease_token is per claim, lease_owner the
    -- process that renews it. A live claim has a token and no call_ended_at.
    lease_owner        text,
    lease_token        uuid,
    lease_expires_at   timestamptz,
    call_executions    smallint NOT NULL DEFAULT 0,
    current_order_id   text,
    -- Reconciliation of an unknown outcome (any process claims it when due).
    unknown_since      timestamptz,
    reconcile_next_at  timestamptz,
    reconcile_attempts integer NOT NULL DEFAULT 0,
    seq                integer NOT NULL DEFAULT 0,  -- last payment_events.seq
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX payments_by_update ON payments (updated_at, id);
CREATE INDEX payments_by_status ON payments (status, updated_at, id);
CREATE INDEX payments_by_device ON payments (operator_device, created_at DESC)
    WHERE operator_device IS NOT NULL;
CREATE INDEX payments_expiring ON payments (expires_at)
    WHERE status IN ('pending', 'failed', 'abandoned');
CREATE INDEX payments_live_leases ON payments (lease_expires_at)
    WHERE lease_token IS NOT NULL AND call_ended_at IS NULL;
CREATE INDEX payments_lease_owner ON payments (lease_owner)
    WHERE lease_token IS NOT NULL AND call_ended_at IS NULL;
CREATE INDEX payments_to_reconcile ON payments (reconcile_next_at)
    WHERE status = 'unknown' AND NOT needs_review;

-- Codes callers key. A code is reserved from its payment's creation until 24 h after the payment
-- expires; a new payment may take over a code only once that reservation has passed.
CREATE TABLE payment_codes (
    code           text PRIMARY KEY CHECK (code ~ '^[0-9]{6}$'),
    payment_id     uuid NOT NULL,
    reserved_until timestamptz NOT NULL
);

-- Progress of a payment, one row per change (sequence number per payment). No card data.
CREATE TABLE payment_events (
    payment_id uuid NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    seq        integer NOT NULL,
    created_at timestamptz NOT NULL,
    kind       text NOT NULL,
    status     text NOT NULL,
    step       text,
    data       jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (payment_id, seq)
);

-- Gateway executions: each has its own OrderID <order_id>-NN, stored before EntryTran is sent.
CREATE TABLE executions (
    payment_id    uuid NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    n             smallint NOT NULL CHECK (n BETWEEN 1 AND 99),
    order_id      text NOT NULL UNIQUE,
    started_at    timestamptz NOT NULL,
    call_uniqueid text,
    access_id     text,
    access_pass   text,
    entered_at    timestamptz,              -- EntryTran answered
    sent_at       timestamptz,              -- payment moved to processing: ExecTran may go
    outcome       text,                     -- succeeded | input | declined | system | unknown
    error         jsonb,
    finished_at   timestamptz,
    PRIMARY KEY (payment_id, n)
);

-- Every request to the gateway: endpoint, codes, timing. Free text is masked before it is written.
CREATE TABLE gateway_calls (
    id          bigserial PRIMARY KEY,
    payment_id  uuid,
    order_id    text,
    endpoint    text NOT NULL,
    started_at  timestamptz NOT NULL,
    duration_ms integer,
    http_status integer,
    err_code    text,
    err_info    text,
    outcome     text,
    error       text
);
CREATE INDEX gateway_calls_by_payment ON gateway_calls (payment_id, id);

-- Webhook outbox: one row per event per client, written in the transaction of the change.
CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,       -- the event id sent in the body
    client_id       uuid NOT NULL REFERENCES api_clients (id),
    payment_id      uuid NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    type            text NOT NULL,
    sequence        integer NOT NULL,
    body            text NOT NULL,          -- exact bytes that are signed and sent
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL,
    delivered_at    timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_payment ON webhook_deliveries (payment_id, created_at);

CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at timestamptz NOT NULL,
    url          text,
    status_code  integer,
    error        text,
    duration_ms  integer
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, id);

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    role          text NOT NULL CHECK (role IN ('operator', 'admin')),
    password_hash text NOT NULL,
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL
);

CREATE TABLE audit (
    id         bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL,
    actor      text NOT NULL,
    action     text NOT NULL,
    payment_id uuid,
    target     text,
    data       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_by_payment ON audit (payment_id, id) WHERE payment_id IS NOT NULL;

-- Idempotency-Key per API client, kept 24 h: the request's hash and the answer given.
CREATE TABLE idempotency_keys (
    client_id       uuid NOT NULL REFERENCES api_clients (id),
    key             text NOT NULL,
    request_hash    text NOT NULL,
    state           text NOT NULL CHECK (state IN ('running', 'done')),
    locked_until    timestamptz,
    response_status integer,
    response_body   jsonb,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (client_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
