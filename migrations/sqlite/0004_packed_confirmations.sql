-- What a packing station confirmed for an order: one row per order, written with the insert
-- state changes it causes (DESIGN "counters": given -> packed | not_packed). `body` holds the
-- confirmation's lines as JSON text: one per insert of the decision, in its order, with the
-- rule that gave it, so that the same confirmation again is recognised and another refused.
CREATE TABLE packed_confirmations (
    order_id TEXT PRIMARY KEY, station TEXT NOT NULL, body TEXT NOT NULL,
    confirmed_at BIGINT NOT NULL);
