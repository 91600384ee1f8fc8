-- Only pending jobs are ever looked up by due time. A partial index keeps that lookup small,
-- and leaves the primary key (order_id, followup_id) to serve "the pending jobs of an order"
-- (a full index on (state, due_at) made the planner scan every pending job for that).
DROP INDEX email_jobs_due;
CREATE INDEX email_jobs_pending_due ON email_jobs (due_at) WHERE state = 'pending';
