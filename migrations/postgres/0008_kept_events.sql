-- Every event a batch applies, kept in the compact encoding of src/event/compact.rs (`body`)
-- for [store] retention, so that the shop's own history can be replayed (`packwell backtest
-- --from-store`). `seq` is the order they were applied in; times are Unix seconds: the event's
-- own (`occurred_at`) and when it was kept (`stored_at`, what retention goes by). `forget`
-- removes a customer's.
--
-- Each row costs every batch a write per index, so there are only the two that something reads
-- by: `stored_at` for retention and `customer_id` for `forget`. Reading goes in `seq` order (the
-- key) and filters by time on the way. `event_id` needs no unique index: an event is kept only
-- in the transaction that first records its id in `processed_events`, whose key it is.
CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id TEXT NOT NULL, customer_id TEXT NOT NULL,
    occurred_at BIGINT NOT NULL, stored_at BIGINT NOT NULL, body BYTEA NOT NULL);
CREATE INDEX events_stored_at ON events (stored_at);
CREATE INDEX events_customer ON events (customer_id);
