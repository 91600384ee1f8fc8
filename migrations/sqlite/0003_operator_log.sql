-- What operators did by hand (`packwell stock set`, `coupon void`, `dlq replay`): one row per
-- control, written in the same transaction as the change it records. `detail` is a JSON object
-- (as text, like every JSON column here). Kept whatever `[store] retention` says: an audit log.
CREATE TABLE operator_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at BIGINT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX operator_log_at ON operator_log (at);
