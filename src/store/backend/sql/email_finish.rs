//! How claimed e-mail jobs end (or wait), a batch of them in one write transaction: each end is
//! conditional on the lease its job was claimed (or handed over) with.

use super::{Db, This};
use crate::store::emails::*;
use crate::store::types::*;
use sqlx::Row;

type Tx = sqlx::Transaction<'static, Db>;

impl This {
    /// The work of [`EmailStore::finish_emails`](crate::store::EmailStore::finish_emails): the
    /// ends in the order of their jobs' keys, so that row locks are taken in one order.
    pub(crate) async fn finish_email_jobs(
        &self,
        ends: &[(&EmailJob, &EmailEnd)],
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        if ends.is_empty() {
            return Ok(Vec::new());
        }
        let mut order: Vec<usize> = (0..ends.len()).collect();
        order.sort_by_key(|&i| (&ends[i].0.order_id, &ends[i].0.followup_id));
        let mut tx = self.begin_write().await?;
        let mut out = vec![false; ends.len()];
        for i in order {
            let (job, end) = ends[i];
            out[i] = Self::finish_one(&mut tx, job, end, now).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn finish_one(
        tx: &mut Tx,
        job: &EmailJob,
        end: &EmailEnd,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (state, reason, detail, due, finished): (
            &str,
            Option<&str>,
            Option<&str>,
            Option<i64>,
            Option<i64>,
        ) = match end {
            EmailEnd::Sent { detail } => ("sent", None, Some(detail), None, Some(now)),
            EmailEnd::Retry { due_at, detail } => {
                ("retry", None, Some(detail), Some(*due_at), None)
            }
            EmailEnd::Failed { detail } => ("failed", None, Some(detail), None, Some(now)),
            EmailEnd::Unknown { detail } => ("unknown", None, Some(detail), None, Some(now)),
            EmailEnd::Skipped { reason, detail } => (
                "skipped",
                Some(reason.as_str()),
                Some(detail),
                None,
                Some(now),
            ),
            EmailEnd::Deferred { due_at } => (job.state.as_str(), None, None, Some(*due_at), None),
        };
        let row = sqlx::query(
            "UPDATE email_jobs SET state = $4, reason = $5, detail = COALESCE($6, detail), due_at = COALESCE($7, due_at), \
             finished_at = $8, claimed_until = NULL \
             WHERE order_id = $1 AND followup_id = $2 AND claimed_until = $3 AND state IN ('pending', 'retry', 'sending') \
             RETURNING tries, resends",
        )
        .bind(&job.order_id)
        .bind(&job.followup_id)
        .bind(job.lease)
        .bind(state)
        .bind(reason)
        .bind(detail)
        .bind(due)
        .bind(finished)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let (tries, resends): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        if matches!(end, EmailEnd::Failed { .. } | EmailEnd::Skipped { .. })
            && tries > 0
            && resends == 0
        {
            Self::void_email_coupons(tx, &job.order_id, &job.followup_id).await?;
        }
        Ok(true)
    }
}
