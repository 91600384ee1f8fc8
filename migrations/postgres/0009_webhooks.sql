-- Shop webhooks (docs/REFERENCE.md §8). `webhook_deliveries`: each platform delivery handled
-- (produced, set aside or mapped to nothing), so that a re-delivery produces nothing.
-- `webhook_events`: each event id produced from a webhook, so that a second webhook mapping to
-- the same event (a later fulfillment of a shipped order, a customer update whose consent did
-- not change) produces nothing either. Retention removes both by when they were written.
CREATE TABLE webhook_deliveries (
    platform TEXT NOT NULL, delivery_id TEXT NOT NULL, received_at BIGINT NOT NULL,
    PRIMARY KEY (platform, delivery_id));
CREATE INDEX webhook_deliveries_at ON webhook_deliveries (received_at);
CREATE TABLE webhook_events (event_id TEXT PRIMARY KEY, produced_at BIGINT NOT NULL);
CREATE INDEX webhook_events_at ON webhook_events (produced_at);
