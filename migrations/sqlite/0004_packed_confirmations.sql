-- What a packing station confirmed for an order: one row per order, written with the insert
-- state changes it causes (DESIGN "counters": given -> packed | not_packed). `body` is the
-- confirmation as the station sent it, normalised (JSON text), so that the same confirmation
-- again is recognised and a different one is refused.
CREATE TABLE packed_confirmations (
    order_id TEXT PRIMARY KEY, station TEXT NOT NULL, body TEXT NOT NULL,
    confirmed_at BIGINT NOT NULL);
