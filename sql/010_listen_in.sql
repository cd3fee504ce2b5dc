-- Listen-in (issue 14): the operator starts the card entry from the screen and listens on a
-- ChanSpy leg. Applied by `ivrpay migrate` after the earlier files, in the same way.

-- {by, at, operator_channel, caller_channel, process} of the listen-in that moved the caller
-- into the IVR; set while the payment is pending, kept for the record (the audit log as well).
ALTER TABLE payments ADD COLUMN listen_in jsonb;
