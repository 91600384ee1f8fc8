//! Where consumption stands: each partition's epoch and next offset, and the next line of each
//! import. A batch moves them on under its fence (`batch.rs`).

use super::This;
use crate::store::types::*;
use sqlx::Row;

impl This {
    /// The work of [`Store::claim_partition`](crate::store::Store::claim_partition).
    pub(super) async fn bump_partition_epoch(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(i64, i64), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO partitions (topic, partition, next_offset, epoch) VALUES ($1, $2, 0, 0) ON CONFLICT (topic, partition) DO NOTHING")
            .bind(topic)
            .bind(i64::from(partition))
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query("UPDATE partitions SET epoch = epoch + 1 WHERE topic = $1 AND partition = $2 RETURNING epoch, next_offset")
            .bind(topic)
            .bind(i64::from(partition))
            .fetch_one(&mut *tx)
            .await?;
        let out = (row.try_get(0)?, row.try_get(1)?);
        tx.commit().await?;
        Ok(out)
    }

    /// The work of [`Store::partition_offsets`](crate::store::Store::partition_offsets).
    pub(super) async fn read_partition_offsets(
        &self,
        topic: &str,
    ) -> Result<Vec<PartitionState>, StoreError> {
        let rows = sqlx::query("SELECT partition, next_offset, epoch FROM partitions WHERE topic = $1 ORDER BY partition")
            .bind(topic)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PartitionState {
                    partition: i32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(i32::MAX),
                    next_offset: r.try_get(1)?,
                    epoch: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// The work of [`Store::import_position`](crate::store::Store::import_position).
    pub(super) async fn read_import_position(&self, source: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT next_line FROM imports WHERE source = $1")
            .bind(source)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
    }
}
