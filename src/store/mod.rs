//! The store: the source of truth. Purchase history, decisions, coupons, stock and budget
//! counters, e-mail jobs, an outbox of Kafka messages and the consumed offsets, written in one
//! transaction per batch. SQLite (embedded default, one instance) and PostgreSQL (several
//! instances) share one schema shape, one batch procedure and one test suite.

pub mod attribution;
mod backend;
pub mod coupon_sync;
pub mod emails;
pub mod events;
mod scrub;
pub mod types;
pub mod webhooks;

pub use attribution::{AttributionData, AttributionQuery};
pub use backend::{PgStore, SqliteStore};
pub use coupon_sync::{CouponFilter, CouponListing, CouponSyncStore, SyncRecord, SyncState};
pub use emails::{EmailJob, EmailStore};
pub use events::{EventRow, EventStore, KeptEvent};
pub use types::*;
pub use webhooks::{HandledWebhook, WebhookStore};

use async_trait::async_trait;
use std::sync::Arc;

/// What every backend offers. Writes go through [`Store::apply_batch`]; reads serve the
/// station API, the relay and the e-mail worker.
#[async_trait]
pub trait Store: EmailStore + EventStore + WebhookStore + CouponSyncStore + Send + Sync {
    /// Applies a batch of events in one transaction (all or nothing), fenced by partition epoch.
    async fn apply_batch(&self, batch: &Batch, env: &DecideEnv) -> Result<BatchReport, StoreError>;
    /// Takes ownership of a partition: bumps its epoch; returns (epoch, next offset).
    async fn claim_partition(&self, topic: &str, partition: i32) -> Result<(i64, i64), StoreError>;
    /// Stored offsets and epochs per partition of a topic.
    async fn partition_offsets(&self, topic: &str) -> Result<Vec<PartitionState>, StoreError>;
    /// The decision of an order, as stored.
    async fn decision(&self, order_id: &str) -> Result<Option<StoredDecision>, StoreError>;
    /// The folded history of a customer.
    async fn profile(
        &self,
        customer_id: &str,
    ) -> Result<Option<crate::profile::Profile>, StoreError>;
    /// Outbox rows not sent yet, oldest first.
    async fn unsent_outbox(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError>;
    async fn mark_sent(&self, ids: &[i64]) -> Result<(), StoreError>;
    /// Outbox rows not yet sent: the relay's backlog, for backpressure and metrics.
    async fn outbox_backlog(&self) -> Result<i64, StoreError>;
    /// Whether this instance may run the relay (one per store; see docs/ARCHITECTURE.md "Order per
    /// key in the relay").
    async fn try_relay_lock(&self) -> Result<bool, StoreError>;
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Coupons of an order, with their state and version.
    async fn coupons_of_order(&self, order_id: &str) -> Result<Vec<CouponRow>, StoreError>;
    /// Remaining stock counters: (insert, slot, used).
    async fn stock_used(&self) -> Result<Vec<(String, String, i64)>, StoreError>;
    /// A packing station's confirmation (docs/REFERENCE.md §7): `lines` has one entry per insert of
    /// the order's decision, in its order. The first confirmation moves each given insert to
    /// `packed` or `not_packed` (the insert state machine of docs/ARCHITECTURE.md, so nothing
    /// settled by a cancellation is settled twice) with its effects — an unpacked coupon is
    /// voided with a `coupon.voided` message, an `other` goes back to stock, an `out_of_stock` empties the
    /// stock counter it drew on (its allocation in `rules`) — all in one write transaction.
    /// The same station and lines again are `Repeated`; different ones are a `Conflict`.
    async fn confirm_packed(
        &self,
        order_id: &str,
        station: &str,
        lines: &[PackedLine],
        rules: &crate::rules::RuleSet,
    ) -> Result<PackedOutcome, StoreError>;
    /// Erases a customer's personal data, keeping anonymous counts.
    async fn forget_customer(&self, customer_id: &str) -> Result<ForgetReport, StoreError>;
    /// Removes decisions, processed event ids, kept events, finished e-mail jobs and sent outbox
    /// rows older than `cutoff` (Unix seconds), at most `limit` rows per table; returns rows
    /// removed. Kept events go by when they were kept (`stored_at`, the wall clock), as
    /// processed event ids go by when they were processed, not by the events' own times.
    /// Coupon sync rows go when their coupon is gone and they were last written before `cutoff`.
    async fn purge_older_than(&self, cutoff: i64, limit: i64) -> Result<u64, StoreError>;
    /// The fingerprint of the coupon key this store's codes were made with, if recorded.
    async fn key_fingerprint(&self) -> Result<Option<String>, StoreError>;
    /// Records the key's fingerprint; a different one already recorded is an error.
    async fn check_key_fingerprint(&self, fingerprint: &str) -> Result<(), StoreError>;
    /// Where an import of `source` stopped (the next line), for resuming.
    async fn import_position(&self, source: &str) -> Result<i64, StoreError>;
    /// Sets stock counters by hand (`packwell stock set`): for each setting, `used` becomes
    /// `allocation - remaining` with one conditional statement per key (keys in sorted order),
    /// and an `operator_log` row is written, all in one write transaction.
    async fn set_stock(
        &self,
        settings: &[StockSetting],
        actor: &str,
    ) -> Result<Vec<StockChange>, StoreError>;
    /// Voids an issued coupon by hand (`packwell coupon void`): state `voided`, version + 1, a
    /// `coupon.voided` outbox message (reason `operator`) and an `operator_log` row, in one
    /// transaction. A code that is unknown, voided or redeemed changes nothing.
    async fn void_coupon(&self, code: &str, actor: &str) -> Result<VoidOutcome, StoreError>;
    /// DLQ rows of the outbox (sent or not) written at or after `since` (Unix seconds), with
    /// ids above `after_id`, oldest first, at most `limit`.
    async fn dlq_rows(
        &self,
        since: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<DlqRow>, StoreError>;
    /// The newest `created_at` of DLQ rows that retention removed, if it removed any: DLQ
    /// events rejected up to then can no longer be read from the store.
    async fn dlq_purged_through(&self) -> Result<Option<i64>, StoreError>;
    /// Writes an `operator_log` row for a control that changes nothing else in the store
    /// (`packwell dlq replay`); `detail` is a JSON object.
    async fn log_operator(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError>;
    /// The newest `limit` rows of the operator log, newest first.
    async fn operator_log(&self, limit: i64) -> Result<Vec<OperatorLogRow>, StoreError>;
    /// The time of the newest decision (Unix seconds): the effect report's "now", so that a
    /// history imported from the past is read on its own clock.
    async fn newest_decision_at(&self) -> Result<Option<i64>, StoreError>;
    /// The effect report's aggregates ([`attribution`]), read on the read side.
    async fn attribution(&self, q: &AttributionQuery) -> Result<AttributionData, StoreError>;
    /// Every text value of every table, for tests that search for personal data.
    async fn dump_text(&self) -> Result<String, StoreError>;
}

/// Opens the store the configuration names: `postgres://…` or a SQLite path / `sqlite:` URL.
/// The file of a SQLite store URL (`data/packwell.db`, `sqlite:…` or `sqlite://…`), or None
/// for a PostgreSQL URL.
pub fn sqlite_file(url: &str) -> Option<&str> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return None;
    }
    Some(
        url.strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url),
    )
}

pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if sqlite_file(url).is_none() {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else {
        Ok(Arc::new(SqliteStore::open(url).await?))
    }
}

/// Applies a batch, setting aside an event that makes the step panic: the batch (rolled back)
/// is tried again once as it was, and if the same event panics again it goes to the DLQ with
/// reason `internal_error` and the rest of the batch is applied. The partition moves on; the
/// service stays ready. Other errors are the caller's to retry.
pub async fn apply_guarded(
    store: &dyn Store,
    batch: &mut Batch,
    env: &DecideEnv,
) -> Result<BatchReport, StoreError> {
    use futures_util::FutureExt;
    let mut panicked: std::collections::HashSet<i64> = std::collections::HashSet::new();
    loop {
        // The step's panics are caught per event inside; one anywhere else (loading or writing
        // the batch) is an error of the batch, which rolled back, for the caller to retry.
        let applied = std::panic::AssertUnwindSafe(store.apply_batch(batch, env))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                Err(StoreError::Other(format!(
                    "applying the batch panicked: {}",
                    crate::panic_message(&*panic)
                )))
            });
        match applied {
            Err(StoreError::Panicked { offset, message }) => {
                let source = match &batch.fence {
                    Fence::Partition {
                        topic, partition, ..
                    } => format!("{topic}/{partition}"),
                    Fence::Import { source, .. } => source.clone(),
                    Fence::None => String::new(),
                };
                if panicked.insert(offset) {
                    tracing::warn!(source, offset, %message, "the decision path panicked on an event; trying the batch again");
                    continue;
                }
                tracing::error!(source, offset, %message, "the decision path panicked twice on an event: it goes to the DLQ (internal_error)");
                let Some(item) = batch.items.iter_mut().find(|i| i.offset == offset) else {
                    return Err(StoreError::Panicked { offset, message });
                };
                item.event = Err(crate::event::Rejected {
                    reason: crate::event::RejectReason::InternalError,
                    message: format!("the decision path failed on this event twice: {message}"),
                });
            }
            other => return other,
        }
    }
}

/// Retention: removes rows older than `cutoff` (Unix seconds) in small batches, yielding in
/// between so that a long purge never holds the writer for long. Returns the rows removed.
pub async fn purge(store: &dyn Store, cutoff: i64, batch: i64) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let removed = store.purge_older_than(cutoff, batch).await?;
        total += removed;
        if removed == 0 {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}
