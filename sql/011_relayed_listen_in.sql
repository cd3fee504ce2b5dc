-- Listen-in relayed (issue 14): a process whose own AMI link is down hands the whole listen-in
-- (list the calls, read the DTMF mode, move both channels) to a process with a working link,
-- through the same table as take-back's redirects. Applied by `ivrpay migrate` in order.
ALTER TABLE ami_redirects
    ADD COLUMN kind text NOT NULL DEFAULT 'redirect' CHECK (kind IN ('redirect', 'listen_in'));
