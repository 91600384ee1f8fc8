//! E-mail jobs as operators see and steer them: listed, cancelled, sent again, each change
//! logged in the operator log.

use super::This;
use crate::store::backend::now_secs;
use crate::store::emails::*;
use crate::store::types::*;
use serde_json::json;
use sqlx::Row;

impl This {
    /// The work of [`EmailStore::email_jobs`](crate::store::EmailStore::email_jobs).
    pub(super) async fn read_email_jobs(
        &self,
        order_id: Option<&str>,
        customer_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EmailJobRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT order_id, followup_id, customer_id, state, reason, detail, due_at, COALESCE(scheduled_for, due_at), tries, sending_at, finished_at \
             FROM email_jobs WHERE ($1 IS NULL OR order_id = $1) AND ($2 IS NULL OR customer_id = $2) \
             ORDER BY created_at DESC, order_id, followup_id LIMIT $3",
        )
        .bind(order_id)
        .bind(customer_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let order_id: String = r.try_get(0)?;
                let followup_id: String = r.try_get(1)?;
                Ok(EmailJobRow {
                    id: job_id(&order_id, &followup_id),
                    order_id,
                    followup_id,
                    customer_id: r.try_get(2)?,
                    state: r.try_get(3)?,
                    reason: r.try_get(4)?,
                    detail: r.try_get(5)?,
                    due_at: r.try_get(6)?,
                    scheduled_for: r.try_get(7)?,
                    tries: r.try_get(8)?,
                    sending_at: r.try_get(9)?,
                    finished_at: r.try_get(10)?,
                })
            })
            .collect()
    }

    /// The work of [`EmailStore::cancel_email`](crate::store::EmailStore::cancel_email).
    pub(super) async fn cancel_email_job(
        &self,
        order_id: &str,
        followup_id: &str,
        actor: &str,
    ) -> Result<EmailControl, StoreError> {
        let mut tx = self.begin_write().await?;
        let state: Option<String> = sqlx::query(&format!(
            "SELECT state FROM email_jobs WHERE order_id = $1 AND followup_id = $2{}",
            Self::LOCK_ROW
        ))
        .bind(order_id)
        .bind(followup_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        let Some(state) = state else {
            return Ok(EmailControl::Unknown);
        };
        if !["pending", "retry"].contains(&state.as_str()) {
            return Ok(EmailControl::Refused { state });
        }
        let row = sqlx::query(
            "UPDATE email_jobs SET state = 'skipped', reason = 'cancelled', detail = $3, claimed_until = NULL, finished_at = $4 \
             WHERE order_id = $1 AND followup_id = $2 RETURNING tries, resends",
        )
        .bind(order_id)
        .bind(followup_id)
        .bind(format!("cancelled by {actor}"))
        .bind(now_secs())
        .fetch_one(&mut *tx)
        .await?;
        if row.try_get::<i64, _>(0)? > 0 && row.try_get::<i64, _>(1)? == 0 {
            Self::void_email_coupons(&mut tx, order_id, followup_id).await?;
        }
        Self::operator_row(
            &mut tx,
            actor,
            "email.cancel",
            &job_id(order_id, followup_id),
            &json!({"state_before": state}),
        )
        .await?;
        tx.commit().await?;
        Ok(EmailControl::Done { before: state })
    }

    /// The work of [`EmailStore::resend_email`](crate::store::EmailStore::resend_email).
    pub(super) async fn resend_email_job(
        &self,
        order_id: &str,
        followup_id: &str,
        actor: &str,
        now: i64,
    ) -> Result<EmailControl, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "SELECT state, reason FROM email_jobs WHERE order_id = $1 AND followup_id = $2{}",
            Self::LOCK_ROW
        ))
        .bind(order_id)
        .bind(followup_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(EmailControl::Unknown);
        };
        let state: String = row.try_get(0)?;
        let reason: Option<String> = row.try_get(1)?;
        let resendable = ["sent", "failed", "unknown", "skipped"].contains(&state.as_str())
            && reason.as_deref() != Some("holdout");
        if !resendable {
            let shown = match reason {
                Some(r) => format!("{state} ({r})"),
                None => state,
            };
            return Ok(EmailControl::Refused { state: shown });
        }
        sqlx::query(
            "UPDATE email_jobs SET state = 'pending', reason = NULL, detail = $3, due_at = $4, scheduled_for = $4, claimed_until = NULL, \
             tries = 0, resends = resends + 1, message = NULL, sending_at = NULL, finished_at = NULL WHERE order_id = $1 AND followup_id = $2",
        )
        .bind(order_id)
        .bind(followup_id)
        .bind(format!("resend asked by {actor}"))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Self::operator_row(
            &mut tx,
            actor,
            "email.resend",
            &job_id(order_id, followup_id),
            &json!({"state_before": state}),
        )
        .await?;
        tx.commit().await?;
        Ok(EmailControl::Done { before: state })
    }
}
