//! The e-mail side of both backends ([`EmailStore`]): the worker's path, from claiming due jobs
//! to handing one over and finishing it. Every change to a claimed job is conditional on the
//! lease it was claimed with, so a worker whose lease ran out (and whose job another worker
//! took) changes nothing.

use super::{Db, This};
use crate::profile::{OrderSummary, Profile};
use crate::store::backend::corrupt;
use crate::store::emails::*;
use crate::store::types::*;
use chrono::Utc;
use sqlx::Row;

impl This {
    /// The work of [`EmailStore::claim_due_emails`](crate::store::EmailStore::claim_due_emails).
    pub(super) async fn claim_due_jobs(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<EmailJob>, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(Self::CLAIM_EMAILS_SQL)
            .bind(now)
            .bind(limit)
            .bind(lease_until)
            .fetch_all(&mut *tx)
            .await?;
        let jobs = rows
            .iter()
            .map(Self::job_from_row)
            .collect::<Result<Vec<_>, StoreError>>()?;
        tx.commit().await?;
        Ok(jobs)
    }

    fn job_from_row(r: &<Db as sqlx::Database>::Row) -> Result<EmailJob, StoreError> {
        Ok(EmailJob {
            order_id: r.try_get(0)?,
            followup_id: r.try_get(1)?,
            customer_id: r.try_get(2)?,
            state: r.try_get(3)?,
            due_at: r.try_get(4)?,
            scheduled_for: r.try_get(5)?,
            lease: r.try_get::<Option<i64>, _>(6)?.unwrap_or(0),
            attempts: r.try_get(7)?,
            tries: r.try_get(8)?,
            resends: r.try_get(9)?,
            message: r.try_get(10)?,
        })
    }

    /// The work of [`EmailStore::email_facts`](crate::store::EmailStore::email_facts).
    pub(super) async fn read_email_facts(&self, job: &EmailJob) -> Result<EmailFacts, StoreError> {
        // One round trip for what is keyed by the job, one more for the address.
        let row = sqlx::query(
            "SELECT (SELECT data FROM profiles WHERE customer_id = $1), (SELECT data FROM orders WHERE order_id = $2), \
             (SELECT COUNT(*) FROM unsubscribes WHERE customer_id = $1)",
        )
        .bind(&job.customer_id)
        .bind(&job.order_id)
        .fetch_one(&self.read)
        .await?;
        let json = |i: usize| -> Result<Option<String>, StoreError> {
            Ok(row.try_get::<Option<String>, _>(i)?)
        };
        let profile: Option<Profile> = json(0)?
            .map(|d| serde_json::from_str(&d).map_err(corrupt))
            .transpose()?;
        let order: Option<OrderSummary> = json(1)?
            .map(|d| serde_json::from_str(&d).map_err(corrupt))
            .transpose()?;
        let unsubscribed_by_link = row.try_get::<i64, _>(2)? > 0;
        let suppressed = match profile
            .as_ref()
            .and_then(|p| p.email.as_deref())
            .filter(|e| !e.trim().is_empty())
        {
            Some(email) => {
                sqlx::query("SELECT reason FROM email_suppressions WHERE email_hash = $1")
                    .bind(address_hash(email))
                    .fetch_optional(&self.read)
                    .await?
                    .map(|r| r.try_get::<String, _>(0))
                    .transpose()?
            }
            None => None,
        };
        Ok(EmailFacts {
            profile,
            order,
            unsubscribed_by_link,
            suppressed,
        })
    }

    /// The work of [`EmailStore::begin_send`](crate::store::EmailStore::begin_send).
    pub(super) async fn begin_email_send(
        &self,
        job: &EmailJob,
        plan: &SendPlan<'_>,
    ) -> Result<BeginSend, StoreError> {
        let mut tx = self.begin_write().await?;
        Self::lock_customer(&mut tx, &job.customer_id).await?;
        // Locks in the batch's order: the profile, then coupons, then the job.
        let profile_row = if plan.coupons.is_empty() {
            None
        } else {
            sqlx::query(&format!(
                "SELECT data FROM profiles WHERE customer_id = $1{}",
                Self::LOCK_ROW
            ))
            .bind(&job.customer_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()?
        };
        if !Self::held(&mut tx, job, &["pending"]).await? {
            return Ok(BeginSend::Lost);
        }
        let now = plan.now.timestamp();
        if let Some((count, since)) = plan.frequency {
            let handed: i64 = sqlx::query(
                "SELECT COUNT(*) FROM email_jobs WHERE customer_id = $1 AND sending_at >= $2 AND state IN ('sending', 'retry', 'sent', 'unknown')",
            )
            .bind(&job.customer_id)
            .bind(since)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            if handed >= i64::from(count) {
                sqlx::query("UPDATE email_jobs SET state = 'skipped', reason = 'frequency', detail = $3, claimed_until = NULL, finished_at = $4 WHERE order_id = $1 AND followup_id = $2")
                    .bind(&job.order_id)
                    .bind(&job.followup_id)
                    .bind(format!("{handed} e-mails to this customer already in the cap's window (at most {count})"))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(BeginSend::Frequency);
            }
        }
        // Coupons issued before (a resend) stand; a plan that differs is sent back.
        let mut existing = Vec::new();
        for c in plan.coupons {
            if let Some(found) = Self::coupon_row(&mut tx, job, &c.insert_id).await? {
                existing.push(found);
            }
        }
        if !existing.is_empty() {
            let same = existing.len() == plan.coupons.len()
                && existing.iter().zip(plan.coupons).all(|(e, p)| {
                    e.code == p.code && e.amount == p.amount && e.expires_on == p.expires_on
                });
            if !same {
                return Ok(BeginSend::Existing(existing));
            }
        }
        let at = crate::engine::format_time(plan.now);
        let mut issued = 0u32;
        for c in plan
            .coupons
            .iter()
            .filter(|c| !existing.iter().any(|e| e.insert_id == c.insert_id))
        {
            let written = sqlx::query(
                "INSERT INTO coupons (code, order_id, source_id, insert_id, customer_id, amount, currency, expires_on, state, version, issued_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'issued', 1, $9) ON CONFLICT (code) DO NOTHING RETURNING code",
            )
            .bind(&c.code)
            .bind(&job.order_id)
            .bind(&job.followup_id)
            .bind(&c.insert_id)
            .bind(&job.customer_id)
            .bind(&c.amount)
            .bind(&c.currency)
            .bind(&c.expires_on)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if written.is_none() {
                return Ok(BeginSend::Collision {
                    insert_id: c.insert_id.clone(),
                });
            }
            // A coupon given in a follow-up e-mail: issued when the e-mail is handed over.
            let given = crate::message::IssuedFor {
                order_id: &job.order_id,
                customer_id: &job.customer_id,
                rule_id: &job.followup_id,
                insert_id: &c.insert_id,
            };
            let terms = crate::engine::CouponGiven {
                code: c.code.clone(),
                amount: c.amount.clone(),
                currency: c.currency.clone(),
                min_order: c.min_order.clone(),
                expires_on: c.expires_on.clone(),
            };
            let msg = crate::message::CouponIssued::new(given, &terms, &at);
            Self::outbox_message(&mut tx, msg.into_outbox()).await?;
            issued += 1;
        }
        if issued > 0
            && let Some(data) = profile_row
        {
            let mut p: Profile = serde_json::from_str(&data).map_err(corrupt)?;
            p.coupons_received += issued;
            sqlx::query("UPDATE profiles SET data = $1, updated_at = $2 WHERE customer_id = $3")
                .bind(serde_json::to_string(&p).map_err(corrupt)?)
                .bind(now)
                .bind(&job.customer_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE email_jobs SET state = 'sending', message = $3, to_hash = $4, sending_at = $5, tries = tries + 1, detail = NULL, \
             claimed_until = $6 WHERE order_id = $1 AND followup_id = $2",
        )
        .bind(&job.order_id)
        .bind(&job.followup_id)
        .bind(plan.message)
        .bind(plan.to_hash)
        .bind(now)
        .bind(plan.lease_until)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(BeginSend::Go)
    }

    /// The customer's lock for the frequency cap: PostgreSQL takes an advisory lock
    /// until the transaction ends; SQLite's write transactions are serial already.
    async fn lock_customer(
        tx: &mut sqlx::Transaction<'_, Db>,
        customer_id: &str,
    ) -> Result<(), StoreError> {
        if let Some(sql) = Self::LOCK_CUSTOMER_SQL {
            sqlx::query(sql)
                .bind(format!("packwell email {customer_id}"))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// The job's row, locked, if this lease still holds it in one of `states`.
    async fn held(
        tx: &mut sqlx::Transaction<'_, Db>,
        job: &EmailJob,
        states: &[&str],
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(&format!("SELECT state, claimed_until FROM email_jobs WHERE order_id = $1 AND followup_id = $2{}", Self::LOCK_ROW))
            .bind(&job.order_id)
            .bind(&job.followup_id)
            .fetch_optional(&mut **tx)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let state: String = row.try_get(0)?;
        let lease: Option<i64> = row.try_get(1)?;
        Ok(lease == Some(job.lease) && states.contains(&state.as_str()))
    }

    async fn coupon_row(
        tx: &mut sqlx::Transaction<'_, Db>,
        job: &EmailJob,
        insert_id: &str,
    ) -> Result<Option<PlannedCoupon>, StoreError> {
        // Issued ones only: a code voided since (an e-mail that failed) is not given
        // again; the new hand-over issues the next code.
        let row = sqlx::query("SELECT code, amount, currency, expires_on FROM coupons WHERE order_id = $1 AND source_id = $2 AND insert_id = $3 AND state = 'issued'")
            .bind(&job.order_id)
            .bind(&job.followup_id)
            .bind(insert_id)
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|r| {
            Ok(PlannedCoupon {
                insert_id: insert_id.to_string(),
                code: r.try_get(0)?,
                amount: r.try_get(1)?,
                currency: r.try_get(2)?,
                min_order: None,
                expires_on: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// The work of [`EmailStore::resume_send`](crate::store::EmailStore::resume_send).
    pub(super) async fn resume_email_send(
        &self,
        job: &EmailJob,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE email_jobs SET state = 'sending', tries = tries + 1, claimed_until = $4 WHERE order_id = $1 AND followup_id = $2 \
             AND claimed_until = $3 AND state IN ('retry', 'sending') AND message IS NOT NULL",
        )
        .bind(&job.order_id)
        .bind(&job.followup_id)
        .bind(job.lease)
        .bind(lease_until)
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The work of [`EmailStore::finish_email`](crate::store::EmailStore::finish_email).
    pub(super) async fn finish_email_job(
        &self,
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
        let mut tx = self.begin_write().await?;
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
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let (tries, resends): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        if matches!(end, EmailEnd::Failed { .. } | EmailEnd::Skipped { .. })
            && tries > 0
            && resends == 0
        {
            Self::void_email_coupons(&mut tx, &job.order_id, &job.followup_id).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Voids the coupons an e-mail issued when it was handed over and that it never
    /// delivered (it failed, or was skipped or cancelled before a retry): a
    /// `coupon.voided` (reason `email_not_sent`) each. An e-mail sent before (a resend)
    /// keeps them: the customer has them.
    pub(super) async fn void_email_coupons(
        tx: &mut sqlx::Transaction<'_, Db>,
        order_id: &str,
        followup_id: &str,
    ) -> Result<(), StoreError> {
        let voided = sqlx::query(
            "UPDATE coupons SET state = 'voided', version = version + 1 WHERE order_id = $1 AND source_id = $2 AND state = 'issued' \
             RETURNING code, version, customer_id",
        )
        .bind(order_id)
        .bind(followup_id)
        .fetch_all(&mut **tx)
        .await?;
        let at = crate::engine::format_time(Utc::now());
        for r in voided {
            let code: String = r.try_get(0)?;
            let version: i64 = r.try_get(1)?;
            let customer: String = r.try_get(2)?;
            let msg = crate::message::CouponVoided::new(
                &code,
                version,
                order_id,
                &customer,
                crate::message::CouponVoidReason::EmailNotSent,
                &at,
            );
            Self::outbox_message(tx, msg.into_outbox()).await?;
        }
        Ok(())
    }
}
