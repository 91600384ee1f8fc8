//! The outbox: Kafka messages written in the transaction of the change they tell, read in id
//! order and marked sent by the relay.

use super::{Db, This};
use crate::store::backend::now_secs;
use crate::store::types::*;
use sqlx::Row;

impl This {
    /// Writes a message to the outbox, in the transaction of the change it tells of.
    pub(super) async fn outbox_message(
        tx: &mut sqlx::Transaction<'_, Db>,
        message: crate::message::OutboxMessage,
    ) -> Result<(), StoreError> {
        Self::outbox(
            tx,
            message.topic,
            message.key.as_deref(),
            &message.payload,
            message.headers.as_deref(),
        )
        .await
    }

    /// One outbox row written at once, for writes outside a batch (packed confirmations).
    pub(super) async fn outbox(
        tx: &mut sqlx::Transaction<'_, Db>,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO outbox (topic, msg_key, payload, headers, sent, created_at) VALUES ($1, $2, $3, $4, FALSE, $5)")
            .bind(topic)
            .bind(key)
            .bind(payload)
            .bind(headers)
            .bind(now_secs())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The work of [`Store::unsent_outbox`](crate::store::Store::unsent_outbox).
    pub(super) async fn read_unsent_outbox(
        &self,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        // By id, not "after the last id sent": ids may commit out of order.
        let rows = sqlx::query("SELECT id, topic, msg_key, payload, headers FROM outbox WHERE NOT sent ORDER BY id LIMIT $1")
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxRow {
                    id: r.try_get(0)?,
                    topic: r.try_get(1)?,
                    key: r.try_get(2)?,
                    payload: r.try_get(3)?,
                    headers: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// The work of [`Store::mark_sent`](crate::store::Store::mark_sent).
    pub(super) async fn mark_outbox_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut qb =
                sqlx::QueryBuilder::<Db>::new("UPDATE outbox SET sent = TRUE WHERE id IN (");
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            qb.push(")");
            qb.build().persistent(false).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The work of [`Store::outbox_backlog`](crate::store::Store::outbox_backlog).
    pub(super) async fn count_outbox_backlog(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM outbox WHERE NOT sent")
            .fetch_one(&self.read)
            .await?
            .try_get(0)?)
    }
}
