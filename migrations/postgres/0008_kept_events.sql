-- Every event a batch applies, kept in the compact encoding of src/event/compact.rs (`body`)
-- for [store] retention, so that the shop's own history can be replayed (`packwell backtest
-- --from-store`). `seq` is the order they were applied in; times are Unix seconds: the event's
-- own (`occurred_at`, read by time) and when it was kept (`stored_at`, what retention goes by).
-- `forget` removes a customer's.
CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, customer_id TEXT NOT NULL,
    occurred_at BIGINT NOT NULL, stored_at BIGINT NOT NULL, body BYTEA NOT NULL);
CREATE INDEX events_occurred_at ON events (occurred_at);
CREATE INDEX events_stored_at ON events (stored_at);
CREATE INDEX events_customer ON events (customer_id);
