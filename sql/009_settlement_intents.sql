-- Settlement intents (issue 9.2): a capture / void / refund is recorded here before AlterTran is
-- sent and claimed with a conditional update, so two processes, two screens or a retried request
-- never send two AlterTrans for one action. One row per payment and action (an action is done at
-- most once: the settlement only moves forward).
--   open     nobody is sending (new, refused by the gateway, or found not executed)
--   sending  ``token`` holds it until ``lease_until``; ``sends`` counts the AlterTrans sent
--   unknown  an AlterTran's answer was lost: SearchTrade settles it (the retried request, or the
--            background checker at ``next_check_at``) before anything is sent again
--   done     the payment's settlement is recorded
CREATE TABLE settlement_intents (
    payment_id    uuid NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    action        text NOT NULL CHECK (action IN ('capture', 'void', 'refund')),
    order_id      text NOT NULL,
    state         text NOT NULL CHECK (state IN ('open', 'sending', 'unknown', 'done')),
    actor         text NOT NULL,
    token         text,
    lease_until   timestamptz,
    sends         integer NOT NULL DEFAULT 0,
    sent_at       timestamptz,
    checks        integer NOT NULL DEFAULT 0,
    next_check_at timestamptz,
    error         jsonb,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (payment_id, action)
);
CREATE INDEX settlement_intents_due ON settlement_intents (next_check_at)
    WHERE state IN ('unknown', 'sending');
