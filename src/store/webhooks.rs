//! What the store offers the shop webhook routes (docs/REFERENCE.md §8): whether a delivery or
//! an event was handled before, the customer of a stored order (fulfillment and refund webhooks
//! name none), and the record of a delivery handled, with the dead letter an unmappable one
//! became.
//!
//! The SQL is in `backend/sql/webhooks.rs`, written once for both backends.

use super::StoreError;
use crate::message::OutboxMessage;
use async_trait::async_trait;
use std::collections::HashSet;

/// A delivery handled: the events it produced (acknowledged by Kafka), or the dead letter it
/// became, or neither (it mapped to nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandledWebhook {
    /// `shopify` or `woocommerce`.
    pub platform: String,
    pub delivery_id: String,
    pub event_ids: Vec<String>,
    /// Goes to the outbox (`orders.dlq`) in the same transaction.
    pub dead_letter: Option<OutboxMessage>,
}

#[async_trait]
pub trait WebhookStore {
    /// Whether this delivery of the platform was handled before.
    async fn webhook_delivery_seen(
        &self,
        platform: &str,
        delivery_id: &str,
    ) -> Result<bool, StoreError>;
    /// Those of `event_ids` that an earlier webhook produced.
    async fn webhook_events_produced(
        &self,
        event_ids: &[String],
    ) -> Result<HashSet<String>, StoreError>;
    /// Records deliveries handled, all in one transaction (the webhook route groups those that
    /// arrive together, so that one commit serves many); what was recorded before stays as it
    /// was.
    async fn record_webhooks(&self, handled: &[HandledWebhook]) -> Result<(), StoreError>;
    /// The customer id of a stored order (placed and applied by the consumer).
    async fn order_customer(&self, order_id: &str) -> Result<Option<String>, StoreError>;
}
