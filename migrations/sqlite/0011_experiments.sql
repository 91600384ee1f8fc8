-- Experiments between e-mails (docs/REFERENCE.md §2 Variants): the follow-up variant an e-mail job
-- was scheduled with, so that the sender renders that variant's template and coupons, and the
-- effect report counts each variant apart. NULL for follow-ups without variants and the held out.
-- Rules need no column: their variant is part of `exposures.arm` and `first_exposures.arm`
-- (`treated:<variant>`), so a customer met in two variants is `mixed` like one in two arms.
ALTER TABLE email_jobs ADD COLUMN variant TEXT;
-- The report reads a follow-up's exposures from this index alone: it now covers the variant.
DROP INDEX email_jobs_followup_customer;
CREATE INDEX email_jobs_followup_customer ON email_jobs (followup_id, customer_id, first_due_at, reason, order_id, variant);
