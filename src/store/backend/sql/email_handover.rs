//! The hand-over of a batch of e-mail jobs, in one write transaction (docs/ARCHITECTURE.md "E-mail
//! jobs"): each job is marked `sending` (with its rendered message, its coupons issued) before the
//! worker sends it, so that a crash can never send it twice. Locks are taken in one order:
//! the customers' (the frequency cap's), then the profiles of jobs that give coupons, then
//! the jobs' rows, each set sorted, as the consumer's batch takes profiles before jobs.

use super::{Db, IDS_PER_STATEMENT, This, in_list, sorted_unique};
use crate::profile::Profile;
use crate::store::backend::corrupt;
use crate::store::emails::*;
use crate::store::types::*;
use sqlx::{Connection, Row};
use std::collections::HashMap;

type Tx = sqlx::Transaction<'static, Db>;

/// A job's row as the hand-over found it, locked: its state and lease.
type Held = HashMap<(String, String), (String, Option<i64>)>;

impl This {
    /// The work of [`EmailStore::begin_sends`](crate::store::EmailStore::begin_sends).
    pub(crate) async fn begin_email_sends(
        &self,
        hand_overs: &[HandOver<'_>],
    ) -> Result<Vec<BeginSend>, StoreError> {
        if hand_overs.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let firsts: Vec<(&EmailJob, &SendPlan<'_>)> = hand_overs
            .iter()
            .filter_map(|h| match h {
                HandOver::First { job, plan } => Some((*job, plan)),
                HandOver::Again { .. } => None,
            })
            .collect();
        for customer in sorted_unique(firsts.iter().map(|(j, _)| j.customer_id.as_str())) {
            Self::lock_customer(&mut tx, customer).await?;
        }
        let givers = sorted_unique(
            firsts
                .iter()
                .filter(|(_, p)| !p.coupons.is_empty())
                .map(|(j, _)| j.customer_id.as_str()),
        );
        let mut profiles = Self::locked_profiles(&mut tx, &givers).await?;
        let held = Self::held_jobs(&mut tx, &firsts).await?;
        // Jobs in the order of their keys, so that row locks are taken in one order.
        let mut order: Vec<usize> = (0..hand_overs.len()).collect();
        order.sort_by_key(|&i| {
            let j = hand_overs[i].job();
            (&j.customer_id, &j.order_id, &j.followup_id)
        });
        let mut out = vec![BeginSend::Lost; hand_overs.len()];
        for i in order {
            out[i] = match &hand_overs[i] {
                HandOver::Again { job, lease_until } => {
                    Self::resume_one(&mut tx, job, *lease_until).await?
                }
                HandOver::First { job, plan } => {
                    let key = (job.order_id.clone(), job.followup_id.clone());
                    match held.get(&key) {
                        Some((state, lease)) if state == "pending" && *lease == Some(job.lease) => {
                            Self::hand_over_one(&mut tx, job, plan, &mut profiles).await?
                        }
                        _ => BeginSend::Lost,
                    }
                }
            };
        }
        tx.commit().await?;
        Ok(out)
    }

    /// The customer's lock for the frequency cap: PostgreSQL takes an advisory lock
    /// until the transaction ends; SQLite's write transactions are serial already.
    async fn lock_customer(tx: &mut Tx, customer_id: &str) -> Result<(), StoreError> {
        if let Some(sql) = Self::LOCK_CUSTOMER_SQL {
            sqlx::query(sql)
                .bind(format!("packwell email {customer_id}"))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// The profiles (JSON) of the customers whose e-mails give coupons, locked in sorted
    /// order: the hand-over counts the coupons in them.
    async fn locked_profiles(
        tx: &mut Tx,
        customers: &[&str],
    ) -> Result<HashMap<String, String>, StoreError> {
        let mut out = HashMap::with_capacity(customers.len());
        for chunk in customers.chunks(IDS_PER_STATEMENT) {
            let head = "SELECT customer_id, data FROM profiles WHERE customer_id IN (";
            let tail = format!(" ORDER BY customer_id{}", Self::LOCK_ROW);
            for r in in_list(head, chunk, &tail)
                .build()
                .persistent(false)
                .fetch_all(&mut **tx)
                .await?
            {
                out.insert(r.try_get(0)?, r.try_get(1)?);
            }
        }
        Ok(out)
    }

    /// The rows of the jobs to hand over for the first time, locked in key order. Selected by
    /// the primary key's two columns each in a list (a row-value list is a table scan on
    /// SQLite): of the rows of those orders and follow-ups, those of the batch are kept.
    async fn held_jobs(
        tx: &mut Tx,
        firsts: &[(&EmailJob, &SendPlan<'_>)],
    ) -> Result<Held, StoreError> {
        let mut out = Held::with_capacity(firsts.len());
        let orders = sorted_unique(firsts.iter().map(|(j, _)| j.order_id.as_str()));
        let followups = sorted_unique(firsts.iter().map(|(j, _)| j.followup_id.as_str()));
        for chunk in orders.chunks(IDS_PER_STATEMENT) {
            let mut qb = in_list(
                "SELECT order_id, followup_id, state, claimed_until FROM email_jobs WHERE order_id IN (",
                chunk,
                " AND followup_id IN (",
            );
            let mut list = qb.separated(", ");
            for followup in &followups {
                list.push_bind(*followup);
            }
            qb.push(format!(
                ") ORDER BY order_id, followup_id{}",
                Self::LOCK_ROW
            ));
            for r in qb.build().persistent(false).fetch_all(&mut **tx).await? {
                out.insert(
                    (r.try_get(0)?, r.try_get(1)?),
                    (r.try_get(2)?, r.try_get(3)?),
                );
            }
        }
        Ok(out)
    }

    /// One more try of a job handed over before: `sending` again, its lease renewed.
    async fn resume_one(
        tx: &mut Tx,
        job: &EmailJob,
        lease_until: i64,
    ) -> Result<BeginSend, StoreError> {
        let r = sqlx::query(
            "UPDATE email_jobs SET state = 'sending', tries = tries + 1, claimed_until = $4 WHERE order_id = $1 AND followup_id = $2 \
             AND claimed_until = $3 AND state IN ('retry', 'sending') AND message IS NOT NULL",
        )
        .bind(&job.order_id)
        .bind(&job.followup_id)
        .bind(job.lease)
        .bind(lease_until)
        .execute(&mut **tx)
        .await?;
        Ok(if r.rows_affected() == 1 {
            BeginSend::Go
        } else {
            BeginSend::Lost
        })
    }

    /// A pending job this lease holds, handed over: the frequency cap counted, its coupons
    /// issued (in a savepoint of their own, undone when the job is sent back for other
    /// codes), marked `sending` with its message.
    async fn hand_over_one(
        tx: &mut Tx,
        job: &EmailJob,
        plan: &SendPlan<'_>,
        profiles: &mut HashMap<String, String>,
    ) -> Result<BeginSend, StoreError> {
        let now = plan.now.timestamp();
        if let Some((count, since)) = plan.frequency {
            // Counts the hand-overs of this transaction too: one customer's jobs of one batch
            // take turns as they would one transaction after the other.
            let handed: i64 = sqlx::query(
                "SELECT COUNT(*) FROM email_jobs WHERE customer_id = $1 AND sending_at >= $2 AND state IN ('sending', 'retry', 'sent', 'unknown')",
            )
            .bind(&job.customer_id)
            .bind(since)
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
            if handed >= i64::from(count) {
                sqlx::query("UPDATE email_jobs SET state = 'skipped', reason = 'frequency', detail = $3, claimed_until = NULL, finished_at = $4 WHERE order_id = $1 AND followup_id = $2")
                    .bind(&job.order_id)
                    .bind(&job.followup_id)
                    .bind(format!("{handed} e-mails to this customer already in the cap's window (at most {count})"))
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                return Ok(BeginSend::Frequency);
            }
        }
        if !plan.coupons.is_empty() {
            let mut savepoint = tx.begin().await?;
            let given = Self::issue_coupons(&mut savepoint, job, plan, profiles).await?;
            if !matches!(given, BeginSend::Go) {
                savepoint.rollback().await?;
                return Ok(given);
            }
            savepoint.commit().await?;
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
        .execute(&mut **tx)
        .await?;
        Ok(BeginSend::Go)
    }

    /// The plan's coupons issued (`coupon.issued` in the outbox) and counted in the profile;
    /// `Go`, or why the e-mail must be rendered again first.
    async fn issue_coupons(
        tx: &mut sqlx::Transaction<'_, Db>,
        job: &EmailJob,
        plan: &SendPlan<'_>,
        profiles: &mut HashMap<String, String>,
    ) -> Result<BeginSend, StoreError> {
        // Coupons issued before (a resend) stand; a plan that differs is sent back.
        let mut existing = Vec::new();
        for c in plan.coupons {
            if let Some(found) = Self::coupon_row(tx, job, &c.insert_id).await? {
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
        let now = plan.now.timestamp();
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
            .fetch_optional(&mut **tx)
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
            Self::outbox_message(tx, msg.into_outbox()).await?;
            issued += 1;
        }
        if issued > 0
            && let Some(data) = profiles.get_mut(&job.customer_id)
        {
            let mut p: Profile = serde_json::from_str(data).map_err(corrupt)?;
            p.coupons_received += issued;
            // Kept counted for another job of this customer in the same batch.
            *data = serde_json::to_string(&p).map_err(corrupt)?;
            sqlx::query("UPDATE profiles SET data = $1, updated_at = $2 WHERE customer_id = $3")
                .bind(&*data)
                .bind(now)
                .bind(&job.customer_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(BeginSend::Go)
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
}
