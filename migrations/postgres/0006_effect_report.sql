-- The effect report's read side (CONTRACT §4 `report`). Written by the batch that makes the
-- decision, read only by the report, with indexes shaped for its queries.
--
-- How each rule met a customer: one row per (rule, decision) that gave (`treated`), was held
-- out (`held_out`) or ran in shadow (`shadow`). Follow-ups need no table of their own: their
-- e-mail jobs (held-out ones skipped with reason `holdout`) are their exposures.
CREATE TABLE exposures (
    source_id TEXT NOT NULL, order_id TEXT NOT NULL, customer_id TEXT NOT NULL,
    arm TEXT NOT NULL, at BIGINT NOT NULL, PRIMARY KEY (source_id, order_id));
-- A customer's exposures to a rule in time order, read from the index alone.
CREATE INDEX exposures_first ON exposures (source_id, customer_id, at, arm, order_id);
-- What a rule gave in a decision (or would have given, held out or in shadow), per currency, in
-- 1/10000 units (CONTRACT §2's cost: a coupon's face value, an item's unit cost).
-- The key includes `units`, so the report reads a cost from the index alone.
CREATE TABLE exposure_costs (
    source_id TEXT NOT NULL, order_id TEXT NOT NULL, currency TEXT NOT NULL, units BIGINT NOT NULL,
    PRIMARY KEY (source_id, order_id, currency) INCLUDE (units));
-- Each customer's first exposure to each rule (`kind` rule) and follow-up (`kind` followup),
-- kept up to date as exposures are written: the report's cohorts, read without grouping every
-- exposure. A shadow rule's first exposure has a row of its own (`shadow`); `arm` is
-- `treated`, `held_out`, `mixed` (both, when the holdout share changed) or `shadow`.
-- `customer_since` is the customer's first order then, for the relationship's length.
CREATE TABLE first_exposures (
    kind TEXT NOT NULL, source_id TEXT NOT NULL, customer_id TEXT NOT NULL, shadow BOOLEAN NOT NULL,
    at BIGINT NOT NULL, arm TEXT NOT NULL, customer_since BIGINT,
    PRIMARY KEY (kind, source_id, customer_id, shadow));
-- NPS answers (customer.feedback) with their time: the report reads those after a treatment.
CREATE TABLE feedback (customer_id TEXT NOT NULL, at BIGINT NOT NULL, nps BIGINT NOT NULL);
CREATE INDEX feedback_customer ON feedback (customer_id, at);
-- An order's currency, value kept (total less returns; 0 once cancelled) and whether it was
-- cancelled, as columns: the report sums later orders without parsing `data`.
ALTER TABLE orders ADD COLUMN currency TEXT NOT NULL DEFAULT '';
ALTER TABLE orders ADD COLUMN net_units BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN cancelled BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE orders SET currency = data::jsonb->>'currency',
    cancelled = (data::jsonb->>'status' = 'cancelled'),
    net_units = CASE WHEN data::jsonb->>'status' = 'cancelled' THEN 0 ELSE
        ceil(((data::jsonb->>'total')::numeric - COALESCE((data::jsonb->>'returned_value')::numeric, 0)) * 10000)::bigint END;
-- A customer's orders in time order, covering what the report reads of them.
CREATE INDEX orders_customer_placed ON orders (customer_id, placed_at, cancelled, currency, net_units);
DROP INDEX orders_customer;
-- When an e-mail job was first due: a follow-up's exposure, which an operator's resend
-- (which moves `due_at` and `scheduled_for`) leaves alone.
ALTER TABLE email_jobs ADD COLUMN first_due_at BIGINT;
UPDATE email_jobs SET first_due_at = COALESCE(scheduled_for, due_at);
-- A follow-up's e-mail jobs per customer in time order, and their arm, from the index alone.
CREATE INDEX email_jobs_followup_customer ON email_jobs (followup_id, customer_id, first_due_at, reason, order_id);
-- An order's coupons, with what the report reads of them (the index on order_id alone served
-- only the lookups this one serves too).
DROP INDEX coupons_order;
CREATE INDEX coupons_order ON coupons (order_id, source_id, state, currency, amount);
-- Redeemed coupons, for the redemptions over time.
CREATE INDEX coupons_redeemed ON coupons (redeemed_order_id, source_id, issued_at) WHERE redeemed_order_id IS NOT NULL;

-- Decisions made before this version: the rules that gave (from given_inserts), held out or
-- ran in shadow (from the stored decision; a held-out follow-up has its e-mail job instead),
-- and the face value of the coupons they gave. Items' unit costs were not recorded then.
INSERT INTO exposures (source_id, order_id, customer_id, arm, at)
    SELECT DISTINCT g.rule_id, g.order_id, d.customer_id, 'treated', d.decided_at
    FROM given_inserts g JOIN decisions d ON d.order_id = g.order_id;
INSERT INTO exposures (source_id, order_id, customer_id, arm, at)
    SELECT s->>'rule_id', d.order_id, d.customer_id,
        CASE s->>'reason' WHEN 'holdout' THEN 'held_out' ELSE 'shadow' END, d.decided_at
    FROM decisions d, jsonb_array_elements(d.decision::jsonb->'skipped') s
    WHERE s->>'reason' IN ('holdout', 'shadow') AND s->>'insert_id' IS NULL
      AND NOT EXISTS (SELECT 1 FROM email_jobs j WHERE j.order_id = d.order_id AND j.followup_id = s->>'rule_id')
    ON CONFLICT DO NOTHING;
INSERT INTO exposure_costs (source_id, order_id, currency, units)
    SELECT c.source_id, c.order_id, c.currency, SUM(ceil(c.amount::numeric * 10000)::bigint)
    FROM coupons c JOIN exposures e ON e.source_id = c.source_id AND e.order_id = c.order_id
    GROUP BY c.source_id, c.order_id, c.currency;
-- The first exposures of rules and follow-ups so far.
INSERT INTO first_exposures (kind, source_id, customer_id, shadow, at, arm, customer_since)
    SELECT 'rule', e.source_id, e.customer_id, e.arm = 'shadow', MIN(e.at),
        CASE WHEN MIN(e.arm) = MAX(e.arm) THEN MIN(e.arm) ELSE 'mixed' END,
        (SELECT MIN(o.placed_at) FROM orders o WHERE o.customer_id = e.customer_id)
    FROM exposures e GROUP BY e.source_id, e.customer_id, e.arm = 'shadow';
INSERT INTO first_exposures (kind, source_id, customer_id, shadow, at, arm, customer_since)
    SELECT 'followup', j.followup_id, j.customer_id, FALSE, MIN(j.first_due_at),
        CASE WHEN MIN(CASE WHEN j.reason = 'holdout' THEN 'held_out' ELSE 'treated' END)
            = MAX(CASE WHEN j.reason = 'holdout' THEN 'held_out' ELSE 'treated' END)
            THEN MIN(CASE WHEN j.reason = 'holdout' THEN 'held_out' ELSE 'treated' END) ELSE 'mixed' END,
        (SELECT MIN(o.placed_at) FROM orders o WHERE o.customer_id = j.customer_id)
    FROM email_jobs j GROUP BY j.followup_id, j.customer_id;
