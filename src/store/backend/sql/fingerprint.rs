//! The fingerprint of the coupon key the store's codes are made with: recorded once, then
//! compared, so that a store is not run on with another key.

use super::This;
use crate::store::types::*;
use sqlx::Row;

impl This {
    /// The work of [`Store::key_fingerprint`](crate::store::Store::key_fingerprint).
    pub(super) async fn read_key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = 'coupon_key_fingerprint'")
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// The work of [`Store::check_key_fingerprint`](crate::store::Store::check_key_fingerprint).
    pub(super) async fn record_key_fingerprint(&self, fingerprint: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO meta (key, value) VALUES ('coupon_key_fingerprint', $1) ON CONFLICT (key) DO NOTHING")
            .bind(fingerprint)
            .execute(&mut *tx)
            .await?;
        let stored: String =
            sqlx::query("SELECT value FROM meta WHERE key = 'coupon_key_fingerprint'")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        tx.commit().await?;
        if stored != fingerprint {
            return Err(StoreError::KeyMismatch {
                stored,
                found: fingerprint.to_string(),
            });
        }
        Ok(())
    }
}
