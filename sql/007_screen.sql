-- The operator/admin screen: sessions, sign-in lockout, per-user language and callback.
-- Applied by `ivrpay migrate` after the earlier files, in the same way.

-- The screen's language and the operator's last callback, remembered per user.
ALTER TABLE users
    ADD COLUMN language text CHECK (language ~ '^[a-z]{2}$'),
    ADD COLUMN callback text;

-- A signed-in browser. The cookie holds a random id (signed with IVRPAY_SECRET_KEY); the row holds
-- only its SHA-256, so a database read gives no usable session.
CREATE TABLE screen_sessions (
    id_hash      bytea PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf         text NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL     -- absolute end; idle expiry is last_seen_at + idle
);
CREATE INDEX screen_sessions_by_user ON screen_sessions (user_id);

-- Failed sign-ins, per user name and per address ("user:<name>", "addr:<ip>"): counted in a
-- window for the lockout.
CREATE TABLE signin_failures (
    id     bigserial PRIMARY KEY,
    key    text NOT NULL,
    at     timestamptz NOT NULL
);
CREATE INDEX signin_failures_by_key ON signin_failures (key, at);

CREATE INDEX audit_by_time ON audit (created_at, id);
CREATE INDEX payments_by_creation ON payments (created_at, id);
