-- Where each issued code stands in a shop's checkout (docs/REFERENCE.md §8, coupon sync): one
-- row per code and platform, written by the sync worker once the shop has answered. `version`
-- is that of the `coupons` message recorded, so that an older message is skipped; `shop_id` is
-- the shop's id of the discount; `error` the refusal or last failure of a `sync_failed` code;
-- `attempts` the calls the last message took; `updated_at` Unix seconds. Codes are not personal
-- data; retention removes the rows of codes whose coupon is gone.
CREATE TABLE coupon_sync (
    code TEXT NOT NULL, platform TEXT NOT NULL, state TEXT NOT NULL, version BIGINT NOT NULL,
    shop_id TEXT, error TEXT, attempts BIGINT NOT NULL, updated_at BIGINT NOT NULL,
    PRIMARY KEY (code, platform));
-- `coupon list --state sync_failed`.
CREATE INDEX coupon_sync_state ON coupon_sync (state);
