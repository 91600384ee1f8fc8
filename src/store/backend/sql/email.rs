//! The e-mail side of both backends ([`EmailStore`]): the worker's path, from claiming due jobs
//! to handing them over and finishing them, each step for a batch of jobs at a time (one
//! statement or one transaction for the batch, not one per job). Every change to a claimed job
//! is conditional on the lease it was claimed with, so a worker whose lease ran out (and whose
//! job another worker took) changes nothing.
//!
//! - here: claiming, the facts of the checks, voiding an unsent e-mail's coupons;
//! - [`handover`]: the hand-over (frequency cap and coupons under the customer's lock);
//! - [`finish`]: how jobs end.

#[path = "email_finish.rs"]
mod finish;
#[path = "email_handover.rs"]
mod handover;

use super::batch_load::in_list;
use super::{Db, This};
use crate::profile::{OrderSummary, Profile};
use crate::store::backend::corrupt;
use crate::store::emails::*;
use crate::store::types::*;
use chrono::Utc;
use sqlx::Row;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Ids bound in one `IN (…)` list: far under both databases' limits on bound values.
const IDS_PER_STATEMENT: usize = 500;

/// The distinct values, sorted: locks and lists are always taken in one order.
fn sorted_unique<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    ids.into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `(key, value)` rows of `head … IN (ids) tail`, a statement per `IDS_PER_STATEMENT` ids, read
/// from `pool` (nothing locked: the facts are read outside the writer).
async fn read_pairs(
    pool: &sqlx::Pool<Db>,
    head: &str,
    ids: &[&str],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        for r in in_list(head, chunk, "")
            .build()
            .persistent(false)
            .fetch_all(pool)
            .await?
        {
            out.push((r.try_get(0)?, r.try_get(1)?));
        }
    }
    Ok(out)
}

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
            variant: r.try_get(11)?,
        })
    }

    /// The work of [`EmailStore::email_facts_of`](crate::store::EmailStore::email_facts_of):
    /// four statements for the whole batch (profiles, orders and unsubscribes side by side,
    /// then the suppressions of the addresses found), whatever its size.
    pub(super) async fn read_email_facts(
        &self,
        jobs: &[EmailJob],
    ) -> Result<Vec<EmailFacts>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let customers = sorted_unique(jobs.iter().map(|j| j.customer_id.as_str()));
        let order_ids = sorted_unique(jobs.iter().map(|j| j.order_id.as_str()));
        let (profile_rows, order_rows, unsubscribe_rows) = tokio::try_join!(
            read_pairs(
                &self.read,
                "SELECT customer_id, data FROM profiles WHERE customer_id IN (",
                &customers,
            ),
            read_pairs(
                &self.read,
                "SELECT order_id, data FROM orders WHERE order_id IN (",
                &order_ids,
            ),
            read_pairs(
                &self.read,
                "SELECT customer_id, customer_id FROM unsubscribes WHERE customer_id IN (",
                &customers,
            ),
        )?;
        let mut profiles = HashMap::with_capacity(profile_rows.len());
        for (customer, data) in profile_rows {
            let p: Profile = serde_json::from_str(&data).map_err(corrupt)?;
            profiles.insert(customer, p);
        }
        let mut orders = HashMap::with_capacity(order_rows.len());
        for (order, data) in order_rows {
            let o: OrderSummary = serde_json::from_str(&data).map_err(corrupt)?;
            orders.insert(order, o);
        }
        let unsubscribed: HashSet<String> = unsubscribe_rows.into_iter().map(|(c, _)| c).collect();
        let hash_of: HashMap<&str, String> = profiles
            .iter()
            .filter_map(|(c, p)| {
                let email = p.email.as_deref().filter(|e| !e.trim().is_empty())?;
                Some((c.as_str(), address_hash(email)))
            })
            .collect();
        let hashes = sorted_unique(hash_of.values().map(String::as_str));
        let suppressed: HashMap<String, String> = read_pairs(
            &self.read,
            "SELECT email_hash, reason FROM email_suppressions WHERE email_hash IN (",
            &hashes,
        )
        .await?
        .into_iter()
        .collect();
        Ok(jobs
            .iter()
            .map(|job| EmailFacts {
                profile: profiles.get(&job.customer_id).cloned(),
                order: orders.get(&job.order_id).cloned(),
                unsubscribed_by_link: unsubscribed.contains(&job.customer_id),
                suppressed: hash_of
                    .get(job.customer_id.as_str())
                    .and_then(|h| suppressed.get(h))
                    .cloned(),
            })
            .collect())
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
