//! Unsubscribes by link and suppressed addresses: each new one is told to the shop by an
//! outbox message on the customer preferences topic.

use super::This;
use crate::profile::Profile;
use crate::store::Store;
use crate::store::backend::now_secs;
use crate::store::emails::*;
use crate::store::types::*;
use chrono::{DateTime, Utc};
use sqlx::Row;

impl This {
    /// The work of [`EmailStore::unsubscribe`](crate::store::EmailStore::unsubscribe).
    pub(super) async fn record_unsubscribe(
        &self,
        customer_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let profile: Option<Profile> =
            sqlx::query("SELECT data FROM profiles WHERE customer_id = $1")
                .bind(customer_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get::<String, _>(0))
                .transpose()?
                .and_then(|d| serde_json::from_str::<Profile>(&d).ok());
        if profile.as_ref().is_some_and(|p| !p.subscribed) {
            // Unsubscribed through the shop already: the shop knows; nothing to tell.
            return Ok(false);
        }
        let new = sqlx::query("INSERT INTO unsubscribes (customer_id, at) VALUES ($1, $2) ON CONFLICT (customer_id) DO NOTHING RETURNING customer_id")
            .bind(customer_id)
            .bind(at.timestamp())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if new {
            let email = profile.and_then(|p| p.email);
            let msg = crate::message::CustomerUnsubscribed::new(
                customer_id,
                email.as_deref(),
                &crate::engine::format_time(at),
            );
            Self::outbox_message(&mut tx, msg.into_outbox()).await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    /// The work of [`EmailStore::is_unsubscribed`](crate::store::EmailStore::is_unsubscribed).
    pub(super) async fn read_unsubscribed(&self, customer_id: &str) -> Result<bool, StoreError> {
        if sqlx::query("SELECT 1 FROM unsubscribes WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(&self.read)
            .await?
            .is_some()
        {
            return Ok(true);
        }
        Ok(Store::profile(self, customer_id)
            .await?
            .is_some_and(|p| !p.subscribed))
    }

    /// The work of [`EmailStore::suppress`](crate::store::EmailStore::suppress).
    pub(super) async fn record_suppression(
        &self,
        email: &str,
        reason: &str,
        occurred_at: DateTime<Utc>,
    ) -> Result<Suppression, StoreError> {
        let reason: crate::message::SuppressionReason =
            reason.parse().map_err(StoreError::Other)?;
        let hash = address_hash(email);
        let mut tx = self.begin_write().await?;
        let new = sqlx::query("INSERT INTO email_suppressions (email_hash, reason, occurred_at, recorded_at) VALUES ($1, $2, $3, $4) ON CONFLICT (email_hash) DO NOTHING RETURNING email_hash")
            .bind(&hash)
            .bind(reason.as_str())
            .bind(occurred_at.timestamp())
            .bind(now_secs())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let customers: Vec<String> = sqlx::query(
            "SELECT DISTINCT customer_id FROM email_jobs WHERE to_hash = $1 ORDER BY customer_id",
        )
        .bind(&hash)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
        if new {
            for c in &customers {
                let msg = crate::message::CustomerSuppressed::new(
                    c,
                    email,
                    reason,
                    &crate::engine::format_time(occurred_at),
                );
                Self::outbox_message(&mut tx, msg.into_outbox()).await?;
            }
        }
        tx.commit().await?;
        Ok(Suppression { new, customers })
    }
}
