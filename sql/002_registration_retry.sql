-- Card storage of a charge_and_register retried in the background, and CardSeq as a number.
-- Applied by `ivrpay migrate` after 001, in the same way (one transaction, advisory lock).

-- A registration left `pending` (TradedCard failed for a reason that may pass: the gateway was
-- unreachable, busy, or its answer was lost) is retried by any process when due, with the
-- reconciliation back-off, until IVRPAY_RETRY_HORIZON_S after registration_since.
ALTER TABLE payments
    ADD COLUMN registration_next_at   timestamptz,
    ADD COLUMN registration_since     timestamptz,
    ADD COLUMN registration_attempts  integer NOT NULL DEFAULT 0;
CREATE INDEX payments_registration_due ON payments (registration_next_at)
    WHERE registration_next_at IS NOT NULL;

-- The gateway's CardSeq is a number: keep it as one (API `card_seq`: integer or null).
ALTER TABLE payments ALTER COLUMN result_card_seq TYPE integer
    USING CASE WHEN result_card_seq ~ '^[0-9]{1,9}$' THEN result_card_seq::integer END;
UPDATE payments
    SET registration = jsonb_set(registration, '{card_seq}',
        CASE WHEN registration->>'card_seq' ~ '^[0-9]{1,9}$'
             THEN to_jsonb((registration->>'card_seq')::integer) ELSE 'null'::jsonb END)
    WHERE jsonb_typeof(registration->'card_seq') = 'string';
