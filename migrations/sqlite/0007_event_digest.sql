-- A digest of each processed event as parsed (canonical JSON, SHA-256), so that the same
-- event_id arriving with another event is set aside as a conflict rather than counted as seen.
-- Rows from before have none: an id seen then is taken as seen before.
ALTER TABLE processed_events ADD COLUMN digest BLOB;
