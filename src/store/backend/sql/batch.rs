//! The batch procedure. A batch is applied in memory and written in a few multi-row statements
//! (see `pending.rs`): it reads the batch's profiles, orders and decisions in one statement
//! each, decides, and writes counters, coupons, decisions, outbox rows and e-mail jobs at its
//! end. Counter claims are totals per key, each a conditional upsert; when one fails (another
//! instance took what the batch's view still showed) the batch is rolled back and applied
//! again *carefully*: each decision written under a savepoint as soon as it is made, a failed
//! claim re-deciding just that order on a fresh view.
//!
//! Here: the tries, one try, its fence, and each event's step. What a batch reads first is in
//! `batch_load.rs`, deciding and staging in `batch_stage.rs`, cancellations in
//! `batch_cancel.rs`, writing in `batch_write.rs`.

use super::{Db, This};
use crate::engine;
use crate::event::{EventBody, RejectReason};
use crate::profile::{self, Folded};
use crate::replay::Applied;
use crate::rules::Trigger;
use crate::store::apply::dlq_message;
use crate::store::backend::{BatchCache, Mode, corrupt, is_transient, rand_u64};
use crate::store::pending::*;
use crate::store::types::*;
use futures_util::FutureExt;

impl This {
    /// The work of [`Store::apply_batch`](crate::store::Store::apply_batch).
    pub(super) async fn apply_batch_retrying(
        &self,
        batch: &Batch,
        env: &DecideEnv,
    ) -> Result<BatchReport, StoreError> {
        // A batch is all or nothing, so one that lost a deadlock or a serialization
        // check (two instances claiming the same counters in different orders) is
        // applied again, a bounded number of times, after a short random wait.
        // A batch whose totals lost a claim to another instance is applied again
        // carefully, order by order.
        let mut tries: u64 = 0;
        let mut mode = Mode::Batched;
        loop {
            match self.apply_batch_once(batch, env, mode).await {
                Err(StoreError::Db(e)) if is_transient(&e) && tries < 8 => {
                    tries += 1;
                    let wait = 5 + (rand_u64() % 20) * tries;
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                }
                Err(StoreError::Contended) if tries < 8 => {
                    tries += 1;
                    mode = Mode::Careful;
                }
                other => return other,
            }
        }
    }

    async fn apply_batch_once(
        &self,
        batch: &Batch,
        env: &DecideEnv,
        mode: Mode,
    ) -> Result<BatchReport, StoreError> {
        let mut tx = self.begin_write().await?;
        Self::fence(&mut tx, &batch.fence).await?;
        let mut cache = BatchCache::default();
        Self::preload(&mut tx, &mut cache, batch).await?;
        let mut report = BatchReport::default();
        for item in &batch.items {
            // A panic in the step is caught here so that it cannot take the consumer
            // down: the transaction rolls back (dropped) and the caller tries the batch
            // again, then sets the event aside (`store::apply_guarded`).
            let step = Self::apply_item(
                &mut tx,
                &mut cache,
                &batch.fence,
                item,
                env,
                mode,
                &mut report,
            );
            match std::panic::AssertUnwindSafe(step).catch_unwind().await {
                Ok(result) => result?,
                Err(panic) => {
                    return Err(StoreError::Panicked {
                        offset: item.offset,
                        message: crate::panic_message(&*panic),
                    });
                }
            }
        }
        for item in &batch.items {
            if let Ok(e) = &item.event {
                crate::fault::check(crate::fault::Point::Write, &e.event_id);
            }
        }
        Self::flush_or_contended(&mut tx, &mut cache).await?;
        Self::write_profiles_and_orders(&mut tx, &cache).await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn fence(tx: &mut sqlx::Transaction<'_, Db>, fence: &Fence) -> Result<(), StoreError> {
        match fence {
            Fence::None => Ok(()),
            Fence::Partition {
                topic,
                partition,
                epoch,
                start,
                end,
            } => {
                let r = sqlx::query(
                    "UPDATE partitions SET next_offset = $1 WHERE topic = $2 AND partition = $3 AND epoch = $4 AND next_offset = $5",
                )
                .bind(*end)
                .bind(topic)
                .bind(i64::from(*partition))
                .bind(*epoch)
                .bind(*start)
                .execute(&mut **tx)
                .await?;
                if r.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(StoreError::Fenced {
                        topic: topic.clone(),
                        partition: *partition,
                    })
                }
            }
            Fence::Import { source, start, end } => {
                sqlx::query("INSERT INTO imports (source, next_line) VALUES ($1, 0) ON CONFLICT (source) DO NOTHING")
                    .bind(source)
                    .execute(&mut **tx)
                    .await?;
                let r = sqlx::query(
                    "UPDATE imports SET next_line = $1 WHERE source = $2 AND next_line = $3",
                )
                .bind(*end)
                .bind(source)
                .bind(*start)
                .execute(&mut **tx)
                .await?;
                if r.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(StoreError::Other(format!(
                        "the import of {source} moved on elsewhere (another import running?)"
                    )))
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_item(
        tx: &mut sqlx::Transaction<'_, Db>,
        cache: &mut BatchCache,
        fence: &Fence,
        item: &BatchItem,
        env: &DecideEnv,
        mode: Mode,
        report: &mut BatchReport,
    ) -> Result<(), StoreError> {
        let event = match &item.event {
            Ok(e) => e,
            Err(r) => {
                Self::dlq(cache, report, fence, item, r.reason, &r.message);
                report.applied.push(Applied::Unchanged);
                return Ok(());
            }
        };
        let customer = event.customer_id().to_string();
        if let Some(key) = &item.key
            && key.as_slice() != customer.as_bytes()
        {
            let msg = format!(
                "key: the message key {:?} is not the event's customer id {customer:?}",
                String::from_utf8_lossy(key)
            );
            Self::dlq(cache, report, fence, item, RejectReason::KeyMismatch, &msg);
            report.applied.push(Applied::Unchanged);
            return Ok(());
        }
        // The first occurrence of an event id in the batch takes it; later ones (and
        // ids processed by an earlier batch) are seen before, unless they carry another
        // event under the same id.
        if !cache.fresh.remove(&event.event_id) {
            if cache
                .digests
                .get(&event.event_id)
                .is_some_and(|d| *d != event.digest)
            {
                let msg = format!(
                    "event_id: {:?} was processed before with a different event",
                    event.event_id
                );
                Self::dlq(cache, report, fence, item, RejectReason::Conflict, &msg);
                report.applied.push(Applied::Conflict);
                return Ok(());
            }
            report.seen_before += 1;
            report.applied.push(Applied::Unchanged);
            return Ok(());
        }
        crate::fault::check(crate::fault::Point::Decide, &event.event_id);
        if let Some(oid) = event.order_id()
            && let Some(o) = cache.orders.get(oid)
            && o.customer_id != customer
        {
            // An event about someone else's order must not touch it (nor schedule an
            // e-mail about it to the wrong person).
            let msg =
                format!("order_id: order {oid:?} belongs to another customer, not {customer:?}");
            Self::dlq(cache, report, fence, item, RejectReason::Conflict, &msg);
            report.applied.push(Applied::Conflict);
            return Ok(());
        }
        let profile = cache
            .profiles
            .get_mut(&customer)
            .ok_or_else(|| corrupt("profile not loaded"))?;
        let order = event.order_id().and_then(|id| cache.orders.get_mut(id));
        let (folded, new_order) = match profile::fold(profile, order, event) {
            Ok(folded) => folded,
            Err(rejected) => {
                // Nothing was folded: the history stays as it was.
                Self::dlq(
                    cache,
                    report,
                    fence,
                    item,
                    rejected.reason,
                    &rejected.message,
                );
                report.applied.push(Applied::Rejected(rejected));
                return Ok(());
            }
        };
        cache.dirty_profiles.insert(customer.clone());
        if let Some(o) = new_order {
            cache.dirty_orders.insert(o.id.clone());
            cache.orders.insert(o.id.clone(), o);
        } else if let Some(id) = event.order_id() {
            cache.dirty_orders.insert(id.to_string());
        }
        let applied = match (folded, &event.body) {
            (Folded::Conflict, _) => {
                let msg = format!(
                    "order.id: order {:?} is known under another customer",
                    event.order_id().unwrap_or("")
                );
                Self::dlq(cache, report, fence, item, RejectReason::Conflict, &msg);
                Applied::Conflict
            }
            (Folded::ChangedOrder, _) => {
                let msg = format!(
                    "order.id: order {:?} is known with other content (items, amounts, warehouse or shipping differ)",
                    event.order_id().unwrap_or("")
                );
                Self::dlq(cache, report, fence, item, RejectReason::Conflict, &msg);
                Applied::Conflict
            }
            (Folded::DuplicateOrder, _) => Applied::Unchanged,
            (Folded::NewOrder, EventBody::OrderPlaced(order)) => {
                if cache.pending.touches_coupons(&order.coupon_codes) {
                    // A code issued earlier in this batch must exist before it is redeemed.
                    Self::flush_or_contended(tx, cache).await?;
                }
                for code in &order.coupon_codes {
                    sqlx::query("UPDATE coupons SET state = 'redeemed', redeemed_order_id = $1 WHERE code = $2 AND state = 'issued'")
                        .bind(&order.id)
                        .bind(code)
                        .execute(&mut **tx)
                        .await?;
                }
                if item.decide {
                    Self::decide_and_stage(tx, cache, event, env, mode).await?
                } else {
                    Applied::Folded {
                        followups: Vec::new(),
                        skipped: Vec::new(),
                    }
                }
            }
            (Folded::Cancelled, EventBody::OrderCancelled { order_id, .. }) => {
                Self::cancel(tx, cache, order_id, &engine::format_time(event.occurred_at)).await?;
                Applied::Folded {
                    followups: Vec::new(),
                    skipped: Vec::new(),
                }
            }
            (_, EventBody::Subscribed { customer_id }) => {
                // Subscribed again through the shop: an earlier unsubscribe by link
                // no longer holds (the profile's flag is folded above).
                // Only an unsubscribe from before this event: a late, older event does
                // not undo a newer click.
                sqlx::query("DELETE FROM unsubscribes WHERE customer_id = $1 AND at <= $2")
                    .bind(customer_id)
                    .bind(event.occurred_at.timestamp())
                    .execute(&mut **tx)
                    .await?;
                Applied::Folded {
                    followups: Vec::new(),
                    skipped: Vec::new(),
                }
            }
            (
                _,
                EventBody::Feedback {
                    customer_id, nps, ..
                },
            ) => {
                cache.pending.feedback.push(FeedbackInsert {
                    customer_id: customer_id.clone(),
                    at: event.occurred_at.timestamp(),
                    nps: i64::from(*nps),
                });
                Applied::Folded {
                    followups: Vec::new(),
                    skipped: Vec::new(),
                }
            }
            (Folded::Returned, EventBody::OrderReturned { order_id, .. }) => {
                Self::cancel_emails(tx, cache, order_id).await?;
                Applied::Folded {
                    followups: Vec::new(),
                    skipped: Vec::new(),
                }
            }
            (folded, body) => {
                let trigger = match body {
                    EventBody::OrderDelivered { .. } => Some(Trigger::OrderDelivered),
                    EventBody::OrderShipped { .. } => Some(Trigger::OrderShipped),
                    _ => None,
                };
                let late = if let Folded::Delivered { late_days } = folded {
                    Some(late_days)
                } else {
                    None
                };
                match (trigger, event.order_id()) {
                    (Some(trigger), Some(oid)) if item.decide => {
                        let (Some(p), Some(o)) =
                            (cache.profiles.get(&customer), cache.orders.get(oid))
                        else {
                            report.applied.push(Applied::Folded {
                                followups: Vec::new(),
                                skipped: Vec::new(),
                            });
                            return Ok(());
                        };
                        if o.status == profile::OrderStatus::Cancelled {
                            Applied::Folded {
                                followups: Vec::new(),
                                skipped: Vec::new(),
                            }
                        } else {
                            let at = match body {
                                EventBody::OrderDelivered { delivered_at, .. } => *delivered_at,
                                _ => event.occurred_at,
                            };
                            let order = o.to_order(p);
                            let (followups, skipped) = engine::followups_for_event(
                                &env.rules, p, &order, trigger, at, late,
                            );
                            let held_out = engine::held_out_followups(&env.rules, &skipped, at);
                            Self::stage_emails(
                                &mut cache.pending,
                                oid,
                                &customer,
                                p.first_order_at,
                                &followups,
                                &held_out,
                            )?;
                            Applied::Folded { followups, skipped }
                        }
                    }
                    _ => Applied::Folded {
                        followups: Vec::new(),
                        skipped: Vec::new(),
                    },
                }
            }
        };
        report.applied.push(applied);
        Ok(())
    }

    /// Sets an event aside: its DLQ row is staged and the report counts it by reason.
    fn dlq(
        cache: &mut BatchCache,
        report: &mut BatchReport,
        fence: &Fence,
        item: &BatchItem,
        reason: RejectReason,
        error: &str,
    ) {
        let (value, headers) = dlq_message(fence, item.offset, &item.value, reason, error);
        cache.pending.outbox.push(OutboxInsert {
            topic: TOPIC_DLQ,
            key: item.key.clone(),
            payload: value,
            headers: Some(headers),
        });
        report.rejected += 1;
        report.rejections.push(reason);
    }
}
