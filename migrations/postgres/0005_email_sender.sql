-- What the e-mail sender keeps of a job (CONTRACT §5, DESIGN "E-mail jobs"). States: pending
-- (waiting for its time), retry (tried, waiting to try again), sending (handed to the
-- provider, not yet confirmed), sent, failed, unknown (a crash while sending to a provider
-- that cannot de-duplicate), skipped (with `reason`). `attempts` counts claims; `tries` counts
-- hand-overs to the provider.
ALTER TABLE email_jobs ADD COLUMN scheduled_for BIGINT;
UPDATE email_jobs SET scheduled_for = due_at;
ALTER TABLE email_jobs ADD COLUMN tries BIGINT NOT NULL DEFAULT 0;
ALTER TABLE email_jobs ADD COLUMN resends BIGINT NOT NULL DEFAULT 0;
-- A sentence: why skipped, why failed, what the provider answered last.
ALTER TABLE email_jobs ADD COLUMN detail TEXT;
-- The rendered e-mail (JSON), kept from `sending` on so that a retry sends the same message.
ALTER TABLE email_jobs ADD COLUMN message TEXT;
-- SHA-256 of the lower-cased address it went to: bounces find their customer by it, and the
-- store keeps no second copy of the address.
ALTER TABLE email_jobs ADD COLUMN to_hash TEXT;
-- When it was handed over first (the frequency cap counts these) and when it ended.
ALTER TABLE email_jobs ADD COLUMN sending_at BIGINT;
ALTER TABLE email_jobs ADD COLUMN finished_at BIGINT;
DROP INDEX email_jobs_pending_due;
CREATE INDEX email_jobs_open_due ON email_jobs (due_at) WHERE state IN ('pending', 'retry', 'sending');
CREATE INDEX email_jobs_customer_sending ON email_jobs (customer_id, sending_at);
CREATE INDEX email_jobs_to_hash ON email_jobs (to_hash);
-- Addresses that bounced hard or complained, by SHA-256 of the lower-cased address.
CREATE TABLE email_suppressions (
    email_hash TEXT PRIMARY KEY, reason TEXT NOT NULL, occurred_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL);
-- Customers who used an e-mail's unsubscribe link; a later customer.subscribed event removes
-- the row (an unsubscribed event from the shop sets the profile's flag instead).
CREATE TABLE unsubscribes (customer_id TEXT PRIMARY KEY, at BIGINT NOT NULL);
