//! [`CouponSyncStore`] for the backend: the `coupon_sync` rows the sync worker writes and
//! `coupon list` reads with the coupons. Retention's statement for the table is in
//! `retention.rs`.

use super::{Db, This};
use crate::store::StoreError;
use crate::store::coupon_sync::{
    CouponFilter, CouponListing, CouponSyncStore, SyncRecord, SyncState,
};
use async_trait::async_trait;
use sqlx::Row;

/// Codes per statement when reading the sync rows of a listing.
const CODES_PER_STATEMENT: usize = 500;

const SYNC_COLUMNS: &str =
    "SELECT code, platform, state, version, shop_id, error, attempts, updated_at FROM coupon_sync";

fn record_of(r: &<Db as sqlx::Database>::Row) -> Result<SyncRecord, StoreError> {
    let state: String = r.try_get(2)?;
    Ok(SyncRecord {
        code: r.try_get(0)?,
        platform: r.try_get(1)?,
        state: SyncState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("coupon_sync state {state:?}")))?,
        version: r.try_get(3)?,
        shop_id: r.try_get(4)?,
        error: r.try_get(5)?,
        attempts: r.try_get(6)?,
        updated_at: r.try_get(7)?,
    })
}

#[async_trait]
impl CouponSyncStore for This {
    async fn coupon_sync(
        &self,
        code: &str,
        platform: &str,
    ) -> Result<Option<SyncRecord>, StoreError> {
        let row = sqlx::query(&format!("{SYNC_COLUMNS} WHERE code = $1 AND platform = $2"))
            .bind(code)
            .bind(platform)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(record_of).transpose()
    }

    async fn record_coupon_sync(&self, r: &SyncRecord) -> Result<bool, StoreError> {
        // One statement: the version check and the write cannot be split by another instance.
        let written = sqlx::query(
            "INSERT INTO coupon_sync (code, platform, state, version, shop_id, error, attempts, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (code, platform) DO UPDATE SET state = excluded.state, version = excluded.version, \
             shop_id = COALESCE(excluded.shop_id, coupon_sync.shop_id), error = excluded.error, \
             attempts = excluded.attempts, updated_at = excluded.updated_at \
             WHERE coupon_sync.version <= excluded.version",
        )
        .bind(&r.code)
        .bind(&r.platform)
        .bind(r.state.as_str())
        .bind(r.version)
        .bind(&r.shop_id)
        .bind(&r.error)
        .bind(r.attempts)
        .bind(r.updated_at)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(written > 0)
    }

    async fn coupon_listing(
        &self,
        filter: &CouponFilter,
        limit: i64,
    ) -> Result<Vec<CouponListing>, StoreError> {
        const COLUMNS: &str = "SELECT code, order_id, customer_id, insert_id, amount, currency, expires_on, state, version, redeemed_order_id, issued_at FROM coupons";
        const ORDER: &str = "ORDER BY issued_at DESC, code LIMIT";
        let limit = limit.max(0);
        let rows = match filter {
            CouponFilter::All => {
                sqlx::query(&format!("{COLUMNS} {ORDER} $1"))
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?
            }
            CouponFilter::State(state) => {
                sqlx::query(&format!("{COLUMNS} WHERE state = $1 {ORDER} $2"))
                    .bind(state)
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?
            }
            CouponFilter::SyncFailed => sqlx::query(&format!(
                "{COLUMNS} WHERE code IN (SELECT code FROM coupon_sync WHERE state = $1) {ORDER} $2"
            ))
            .bind(SyncState::SyncFailed.as_str())
            .bind(limit)
            .fetch_all(&self.read)
            .await?,
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(CouponListing {
                code: r.try_get(0)?,
                order_id: r.try_get(1)?,
                customer_id: r.try_get(2)?,
                insert_id: r.try_get(3)?,
                amount: r.try_get(4)?,
                currency: r.try_get(5)?,
                expires_on: r.try_get(6)?,
                state: r.try_get(7)?,
                version: r.try_get(8)?,
                redeemed_order_id: r.try_get(9)?,
                issued_at: r.try_get(10)?,
                sync: Vec::new(),
            });
        }
        let codes: Vec<String> = out.iter().map(|c| c.code.clone()).collect();
        let mut records: Vec<SyncRecord> = Vec::new();
        for chunk in codes.chunks(CODES_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(SYNC_COLUMNS);
            qb.push(" WHERE code IN (");
            let mut list = qb.separated(", ");
            for c in chunk {
                list.push_bind(c.as_str());
            }
            qb.push(") ORDER BY code, platform");
            for r in qb.build().persistent(false).fetch_all(&self.read).await? {
                records.push(record_of(&r)?);
            }
        }
        for c in &mut out {
            c.sync = records
                .iter()
                .filter(|r| r.code == c.code)
                .cloned()
                .collect();
        }
        Ok(out)
    }
}
