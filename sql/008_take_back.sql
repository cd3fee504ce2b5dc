-- Take-back (issue 11): the operator pulls the caller out of the IVR over AMI.
-- Applied by `ivrpay migrate` after the earlier files, in the same way.

-- {by, at} of the take-back of the payment's current call (cleared when a new call claims it);
-- while it is set the call may not move to processing, so no gateway execution starts.
ALTER TABLE payments ADD COLUMN taken_back jsonb;

-- A take-back that arrived at a process whose own AMI link is down: any process with a working
-- link claims it (FOR UPDATE SKIP LOCKED), sends the Redirect and writes the outcome here.
CREATE TABLE ami_redirects (
    id          uuid PRIMARY KEY,
    payment_id  uuid NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    channel     text NOT NULL,
    context     text NOT NULL,
    variables   jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL,
    wait_until  timestamptz NOT NULL,           -- unclaimed after this: nobody had a link
    claimed_by  text,
    claimed_at  timestamptz,
    done_at     timestamptz,
    outcome     text CHECK (outcome IN ('ok', 'refused', 'unknown', 'expired')),
    detail      text
);
CREATE INDEX ami_redirects_open ON ami_redirects (created_at) WHERE claimed_by IS NULL;
