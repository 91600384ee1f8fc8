-- Packwell store, SQLite. Money as decimal text; counters of money in 1/10000 units
-- (BIGINT) so that conditional updates compare exactly; times as Unix seconds.
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE processed_events (event_id TEXT PRIMARY KEY, processed_at BIGINT NOT NULL);
CREATE INDEX processed_events_at ON processed_events (processed_at);
CREATE TABLE profiles (customer_id TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE orders (
    order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, data TEXT NOT NULL, placed_at BIGINT NOT NULL);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE TABLE decisions (
    order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, warehouse TEXT NOT NULL,
    rules_version TEXT NOT NULL, decided_at BIGINT NOT NULL, decision TEXT NOT NULL);
CREATE INDEX decisions_customer ON decisions (customer_id);
CREATE INDEX decisions_at ON decisions (decided_at);
CREATE TABLE given_inserts (
    order_id TEXT NOT NULL, seq BIGINT NOT NULL, insert_id TEXT NOT NULL, rule_id TEXT NOT NULL,
    kind TEXT NOT NULL, stock_slot TEXT, state TEXT NOT NULL, reason TEXT,
    PRIMARY KEY (order_id, seq));
CREATE TABLE coupons (
    code TEXT PRIMARY KEY, order_id TEXT NOT NULL, source_id TEXT NOT NULL, insert_id TEXT NOT NULL,
    customer_id TEXT NOT NULL, amount TEXT NOT NULL, currency TEXT NOT NULL, expires_on TEXT NOT NULL,
    state TEXT NOT NULL, version BIGINT NOT NULL, redeemed_order_id TEXT, issued_at BIGINT NOT NULL);
CREATE INDEX coupons_order ON coupons (order_id);
CREATE TABLE stock (insert_id TEXT NOT NULL, slot TEXT NOT NULL, used BIGINT NOT NULL, PRIMARY KEY (insert_id, slot));
CREATE TABLE budgets (
    rule_id TEXT NOT NULL, period TEXT NOT NULL, currency TEXT NOT NULL, spent_units BIGINT NOT NULL,
    PRIMARY KEY (rule_id, period, currency));
CREATE TABLE email_jobs (
    order_id TEXT NOT NULL, followup_id TEXT NOT NULL, customer_id TEXT NOT NULL, due_at BIGINT NOT NULL,
    state TEXT NOT NULL, reason TEXT, claimed_until BIGINT, attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL, PRIMARY KEY (order_id, followup_id));
CREATE INDEX email_jobs_due ON email_jobs (state, due_at);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, msg_key BLOB, payload BLOB NOT NULL,
    headers TEXT, sent BOOLEAN NOT NULL DEFAULT FALSE, created_at BIGINT NOT NULL);
CREATE INDEX outbox_unsent ON outbox (sent, id);
CREATE TABLE partitions (
    topic TEXT NOT NULL, partition BIGINT NOT NULL, next_offset BIGINT NOT NULL, epoch BIGINT NOT NULL,
    PRIMARY KEY (topic, partition));
CREATE TABLE imports (source TEXT PRIMARY KEY, next_line BIGINT NOT NULL);
