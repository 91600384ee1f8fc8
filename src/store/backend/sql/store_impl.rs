//! [`Store`] for the backend. Each method calls the inherent method that does the work, in the
//! file of its concern, under a name of its own, so that it is plain which of the two a call
//! reaches.

use super::This;
use crate::profile::Profile;
use crate::store::Store;
use crate::store::attribution::{AttributionData, AttributionQuery};
use crate::store::types::*;
use async_trait::async_trait;

#[async_trait]
impl Store for This {
    async fn apply_batch(&self, batch: &Batch, env: &DecideEnv) -> Result<BatchReport, StoreError> {
        self.apply_batch_retrying(batch, env).await
    }

    async fn claim_partition(&self, topic: &str, partition: i32) -> Result<(i64, i64), StoreError> {
        self.bump_partition_epoch(topic, partition).await
    }

    async fn partition_offsets(&self, topic: &str) -> Result<Vec<PartitionState>, StoreError> {
        self.read_partition_offsets(topic).await
    }

    async fn import_position(&self, source: &str) -> Result<i64, StoreError> {
        self.read_import_position(source).await
    }

    async fn decision(&self, order_id: &str) -> Result<Option<StoredDecision>, StoreError> {
        self.read_decision(order_id).await
    }

    async fn profile(&self, customer_id: &str) -> Result<Option<Profile>, StoreError> {
        self.read_profile(customer_id).await
    }

    async fn coupons_of_order(&self, order_id: &str) -> Result<Vec<CouponRow>, StoreError> {
        self.read_coupons_of_order(order_id).await
    }

    async fn stock_used(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.read_stock_used().await
    }

    async fn newest_decision_at(&self) -> Result<Option<i64>, StoreError> {
        self.read_newest_decision_at().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.ping_reader().await
    }

    async fn dump_text(&self) -> Result<String, StoreError> {
        self.dump_tables_text().await
    }

    async fn unsent_outbox(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        self.read_unsent_outbox(limit).await
    }

    async fn mark_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.mark_outbox_sent(ids).await
    }

    async fn outbox_backlog(&self) -> Result<i64, StoreError> {
        self.count_outbox_backlog().await
    }

    async fn try_relay_lock(&self) -> Result<bool, StoreError> {
        self.try_take_relay_lock().await
    }

    async fn confirm_packed(
        &self,
        order_id: &str,
        station: &str,
        lines: &[PackedLine],
        rules: &crate::rules::RuleSet,
    ) -> Result<PackedOutcome, StoreError> {
        self.confirm_packed_retrying(order_id, station, lines, rules)
            .await
    }

    async fn set_stock(
        &self,
        settings: &[StockSetting],
        actor: &str,
    ) -> Result<Vec<StockChange>, StoreError> {
        self.set_stock_counters(settings, actor).await
    }

    async fn void_coupon(&self, code: &str, actor: &str) -> Result<VoidOutcome, StoreError> {
        self.void_coupon_by_operator(code, actor).await
    }

    async fn log_operator(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.log_operator_action(actor, action, subject, detail)
            .await
    }

    async fn operator_log(&self, limit: i64) -> Result<Vec<OperatorLogRow>, StoreError> {
        self.read_operator_log(limit).await
    }

    async fn dlq_rows(
        &self,
        since: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<DlqRow>, StoreError> {
        self.read_dlq_rows(since, after_id, limit).await
    }

    async fn dlq_purged_through(&self) -> Result<Option<i64>, StoreError> {
        self.read_dlq_purged_through().await
    }

    async fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        self.read_key_fingerprint().await
    }

    async fn check_key_fingerprint(&self, fingerprint: &str) -> Result<(), StoreError> {
        self.record_key_fingerprint(fingerprint).await
    }

    async fn forget_customer(&self, customer_id: &str) -> Result<ForgetReport, StoreError> {
        self.erase_customer(customer_id).await
    }

    async fn purge_older_than(&self, cutoff: i64, limit: i64) -> Result<u64, StoreError> {
        self.purge_rows_older_than(cutoff, limit).await
    }

    async fn attribution(&self, q: &AttributionQuery) -> Result<AttributionData, StoreError> {
        self.read_attribution(q).await
    }
}
