//! The e-mail side of both backends ([`EmailStore`]), written once like the batch procedure.
//! Every change to a claimed job is conditional on the lease it was claimed with, so a worker
//! whose lease ran out (and whose job another worker took) changes nothing.

use super::{PgStore, SqliteStore, corrupt, now_secs};
use crate::message::{
    CouponIssued, CouponVoidReason, CouponVoided, CustomerSuppressed, CustomerUnsubscribed,
    OutboxMessage, SuppressionReason,
};
use crate::profile::{OrderSummary, Profile};
use crate::store::emails::*;
use crate::store::{Store, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::Row;

macro_rules! email_backend {
    ($store:ident, $db:ty) => {
        impl $store {
            fn job_from_row(r: &<$db as sqlx::Database>::Row) -> Result<EmailJob, StoreError> {
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

            /// The job's row, locked, if this lease still holds it in one of `states`.
            async fn held(tx: &mut sqlx::Transaction<'_, $db>, job: &EmailJob, states: &[&str]) -> Result<bool, StoreError> {
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

            /// Writes a message to the outbox, in the transaction of the change it tells of.
            pub(super) async fn outbox_message(tx: &mut sqlx::Transaction<'_, $db>, message: OutboxMessage) -> Result<(), StoreError> {
                Self::outbox(tx, message.topic, message.key.as_deref(), &message.payload, message.headers.as_deref()).await
            }

            /// The customer's lock for the frequency cap: PostgreSQL takes an advisory lock
            /// until the transaction ends; SQLite's write transactions are serial already.
            async fn lock_customer(tx: &mut sqlx::Transaction<'_, $db>, customer_id: &str) -> Result<(), StoreError> {
                if let Some(sql) = Self::LOCK_CUSTOMER_SQL {
                    sqlx::query(sql).bind(format!("packwell email {customer_id}")).execute(&mut **tx).await?;
                }
                Ok(())
            }

            /// Voids the coupons an e-mail issued when it was handed over and that it never
            /// delivered (it failed, or was skipped or cancelled before a retry): a
            /// `coupon.voided` (reason `email_not_sent`) each. An e-mail sent before (a resend)
            /// keeps them: the customer has them.
            pub(super) async fn void_email_coupons(tx: &mut sqlx::Transaction<'_, $db>, order_id: &str, followup_id: &str) -> Result<(), StoreError> {
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
                    let msg = CouponVoided::new(&code, version, order_id, &customer, CouponVoidReason::EmailNotSent, &at);
                    Self::outbox_message(tx, msg.into_outbox()).await?;
                }
                Ok(())
            }

            async fn coupon_row(tx: &mut sqlx::Transaction<'_, $db>, job: &EmailJob, insert_id: &str) -> Result<Option<PlannedCoupon>, StoreError> {
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
        }

        #[async_trait]
        impl EmailStore for $store {
            async fn claim_due_emails(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<EmailJob>, StoreError> {
                let mut tx = self.begin_write().await?;
                let rows = sqlx::query(Self::CLAIM_EMAILS_SQL)
                    .bind(now)
                    .bind(limit)
                    .bind(lease_until)
                    .fetch_all(&mut *tx)
                    .await?;
                let jobs = rows.iter().map(Self::job_from_row).collect::<Result<Vec<_>, StoreError>>()?;
                tx.commit().await?;
                Ok(jobs)
            }

            async fn email_facts(&self, job: &EmailJob) -> Result<EmailFacts, StoreError> {
                // One round trip for what is keyed by the job, one more for the address.
                let row = sqlx::query(
                    "SELECT (SELECT data FROM profiles WHERE customer_id = $1), (SELECT data FROM orders WHERE order_id = $2), \
                     (SELECT COUNT(*) FROM unsubscribes WHERE customer_id = $1)",
                )
                .bind(&job.customer_id)
                .bind(&job.order_id)
                .fetch_one(&self.read)
                .await?;
                let json = |i: usize| -> Result<Option<String>, StoreError> { Ok(row.try_get::<Option<String>, _>(i)?) };
                let profile: Option<Profile> = json(0)?.map(|d| serde_json::from_str(&d).map_err(corrupt)).transpose()?;
                let order: Option<OrderSummary> = json(1)?.map(|d| serde_json::from_str(&d).map_err(corrupt)).transpose()?;
                let unsubscribed_by_link = row.try_get::<i64, _>(2)? > 0;
                let suppressed = match profile.as_ref().and_then(|p| p.email.as_deref()).filter(|e| !e.trim().is_empty()) {
                    Some(email) => sqlx::query("SELECT reason FROM email_suppressions WHERE email_hash = $1")
                        .bind(address_hash(email))
                        .fetch_optional(&self.read)
                        .await?
                        .map(|r| r.try_get::<String, _>(0))
                        .transpose()?,
                    None => None,
                };
                Ok(EmailFacts { profile, order, unsubscribed_by_link, suppressed })
            }

            async fn begin_send(&self, job: &EmailJob, plan: &SendPlan<'_>) -> Result<BeginSend, StoreError> {
                let mut tx = self.begin_write().await?;
                Self::lock_customer(&mut tx, &job.customer_id).await?;
                // Locks in the batch's order: the profile, then coupons, then the job.
                let profile_row = if plan.coupons.is_empty() {
                    None
                } else {
                    sqlx::query(&format!("SELECT data FROM profiles WHERE customer_id = $1{}", Self::LOCK_ROW))
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
                        && existing.iter().zip(plan.coupons).all(|(e, p)| e.code == p.code && e.amount == p.amount && e.expires_on == p.expires_on);
                    if !same {
                        return Ok(BeginSend::Existing(existing));
                    }
                }
                let at = crate::engine::format_time(plan.now);
                let mut issued = 0u32;
                for c in plan.coupons.iter().filter(|c| !existing.iter().any(|e| e.insert_id == c.insert_id)) {
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
                        return Ok(BeginSend::Collision { insert_id: c.insert_id.clone() });
                    }
                    Self::outbox_message(&mut tx, CouponIssued::in_email(job, c, &at).into_outbox()).await?;
                    issued += 1;
                }
                if issued > 0 && let Some(data) = profile_row {
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

            async fn resume_send(&self, job: &EmailJob, lease_until: i64) -> Result<bool, StoreError> {
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

            async fn finish_email(&self, job: &EmailJob, end: &EmailEnd, now: i64) -> Result<bool, StoreError> {
                let (state, reason, detail, due, finished): (&str, Option<&str>, Option<&str>, Option<i64>, Option<i64>) = match end {
                    EmailEnd::Sent { detail } => ("sent", None, Some(detail), None, Some(now)),
                    EmailEnd::Retry { due_at, detail } => ("retry", None, Some(detail), Some(*due_at), None),
                    EmailEnd::Failed { detail } => ("failed", None, Some(detail), None, Some(now)),
                    EmailEnd::Unknown { detail } => ("unknown", None, Some(detail), None, Some(now)),
                    EmailEnd::Skipped { reason, detail } => ("skipped", Some(reason.as_str()), Some(detail), None, Some(now)),
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
                if matches!(end, EmailEnd::Failed { .. } | EmailEnd::Skipped { .. }) && tries > 0 && resends == 0 {
                    Self::void_email_coupons(&mut tx, &job.order_id, &job.followup_id).await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn unsubscribe(&self, customer_id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
                let mut tx = self.begin_write().await?;
                let profile: Option<Profile> = sqlx::query("SELECT data FROM profiles WHERE customer_id = $1")
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
                    let msg = CustomerUnsubscribed::new(customer_id, email.as_deref(), &crate::engine::format_time(at));
                    Self::outbox_message(&mut tx, msg.into_outbox()).await?;
                }
                tx.commit().await?;
                Ok(new)
            }

            async fn is_unsubscribed(&self, customer_id: &str) -> Result<bool, StoreError> {
                if sqlx::query("SELECT 1 FROM unsubscribes WHERE customer_id = $1").bind(customer_id).fetch_optional(&self.read).await?.is_some() {
                    return Ok(true);
                }
                Ok(Store::profile(self, customer_id).await?.is_some_and(|p| !p.subscribed))
            }

            async fn suppress(&self, email: &str, reason: &str, occurred_at: DateTime<Utc>) -> Result<Suppression, StoreError> {
                let reason: SuppressionReason = reason.parse().map_err(StoreError::Other)?;
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
                let customers: Vec<String> = sqlx::query("SELECT DISTINCT customer_id FROM email_jobs WHERE to_hash = $1 ORDER BY customer_id")
                    .bind(&hash)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?;
                if new {
                    for c in &customers {
                        let msg = CustomerSuppressed::new(c, email, reason, &crate::engine::format_time(occurred_at));
                        Self::outbox_message(&mut tx, msg.into_outbox()).await?;
                    }
                }
                tx.commit().await?;
                Ok(Suppression { new, customers })
            }

            async fn email_jobs(&self, order_id: Option<&str>, customer_id: Option<&str>, limit: i64) -> Result<Vec<EmailJobRow>, StoreError> {
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

            async fn cancel_email(&self, order_id: &str, followup_id: &str, actor: &str) -> Result<EmailControl, StoreError> {
                let mut tx = self.begin_write().await?;
                let state: Option<String> = sqlx::query(&format!("SELECT state FROM email_jobs WHERE order_id = $1 AND followup_id = $2{}", Self::LOCK_ROW))
                    .bind(order_id)
                    .bind(followup_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                let Some(state) = state else { return Ok(EmailControl::Unknown) };
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
                Self::operator_row(&mut tx, actor, "email.cancel", &job_id(order_id, followup_id), &json!({"state_before": state})).await?;
                tx.commit().await?;
                Ok(EmailControl::Done { before: state })
            }

            async fn resend_email(&self, order_id: &str, followup_id: &str, actor: &str, now: i64) -> Result<EmailControl, StoreError> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(&format!("SELECT state, reason FROM email_jobs WHERE order_id = $1 AND followup_id = $2{}", Self::LOCK_ROW))
                    .bind(order_id)
                    .bind(followup_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else { return Ok(EmailControl::Unknown) };
                let state: String = row.try_get(0)?;
                let reason: Option<String> = row.try_get(1)?;
                let resendable = ["sent", "failed", "unknown", "skipped"].contains(&state.as_str()) && reason.as_deref() != Some("holdout");
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
                Self::operator_row(&mut tx, actor, "email.resend", &job_id(order_id, followup_id), &json!({"state_before": state})).await?;
                tx.commit().await?;
                Ok(EmailControl::Done { before: state })
            }
        }
    };
}

email_backend!(SqliteStore, sqlx::Sqlite);
email_backend!(PgStore, sqlx::Postgres);
