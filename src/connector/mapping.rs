//! What a verified webhook becomes, and what mapping may look up on the way: the customer of a
//! stored order (fulfillment and refund webhooks name none) and a product's type, tags or
//! categories in the shop (Shopify's line items carry neither).

use async_trait::async_trait;

/// A webhook mapped.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Events of docs/REFERENCE.md §1 to produce to `orders`, keyed by their customer id, in
    /// this order. Each has been checked by Packwell's own event parser.
    Events(Vec<MappedEvent>),
    /// Nothing to produce, and why (a word for the metric's label and the answer's body): a
    /// WooCommerce ping, a money-only refund, a status or topic that maps to no event, consent
    /// that did not change.
    Nothing(&'static str),
    /// The webhook names an order that is not stored yet: webhooks arrive out of order, so the
    /// platform is answered 503 and retries later.
    OrderNotStored(String),
    /// The webhook cannot become an event: a sentence naming the field, for the DLQ
    /// (`unmappable`).
    Unmappable(String),
}

/// One event mapped from a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedEvent {
    /// Derived from the platform's ids, so a re-delivery is the same event.
    pub event_id: String,
    /// The Kafka key.
    pub customer_id: String,
    /// The event as produced: a JSON object of §1.
    pub value: serde_json::Value,
}

/// A lookup that failed for now (the store or the shop's API does not answer): the webhook is
/// answered 503 and the platform retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

/// The orders the store holds, for webhooks that name an order but no customer.
#[async_trait]
pub trait OrderLookup: Send + Sync {
    /// The customer id of a stored order; None while the order is not stored.
    async fn customer_of_order(&self, order_id: &str) -> Result<Option<String>, LookupError>;
}

/// What the shop's API says of a product.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductInfo {
    /// Shopify's `productType` (empty: none).
    pub product_type: Option<String>,
    /// Shopify's tags.
    pub tags: Vec<String>,
    /// WooCommerce's category names, in the product's order.
    pub categories: Vec<String>,
}

/// Products looked up through the shop's API by the platform's product id.
#[async_trait]
pub trait ProductDirectory: Send + Sync {
    /// None when the shop has no such product.
    async fn product(&self, product_id: &str) -> Result<Option<ProductInfo>, LookupError>;
}
