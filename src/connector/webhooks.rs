//! A shop webhook received (docs/REFERENCE.md §8), from the raw request to its answer: verified
//! against the platform's signature before anything else, de-duplicated by the platform's
//! delivery id, mapped, produced to `orders` and acknowledged by Kafka before it is answered
//! 200, so the platform retries whatever was not. What cannot be mapped is set aside in the DLQ
//! through the store's outbox (never lost, and `dlq replay` finds it there); the HTTP route
//! (`http/ingest.rs`) only turns [`Received`] and [`Refused`] into answers.

use super::mapper::Mapper;
use super::mapping::{LookupError, Mapped, MappedEvent, OrderLookup, ProductDirectory};
use super::recorder::Recorder;
use super::signature;
use crate::config::{ConnectorSettings, Platform, ShopConnector};
use crate::kafka::TOPIC_ORDERS;
use crate::message::DeadLetter;
use crate::metrics::Metrics;
use crate::store::{HandledWebhook, Store};
use async_trait::async_trait;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A webhook as it arrived: the platform's headers (absent ones as None) and the raw body.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub topic: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub delivery_id: Option<&'a str>,
    pub body: &'a [u8],
}

/// A webhook taken: the platform is answered 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The events produced to `orders` and acknowledged, by id.
    Produced(Vec<String>),
    /// This delivery, or the events it maps to, were handled before: nothing produced.
    Duplicate,
    /// It maps to no event (a ping, a money-only refund, a status that means nothing here).
    Ignored(&'static str),
    /// It could not be mapped: set aside in `orders.dlq` (`unmappable`) with this sentence.
    SetAside(String),
}

/// A webhook not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The platform's section is not configured (404).
    NotConfigured(Platform),
    /// Missing or wrong signature (401); the body is never logged.
    BadSignature,
    /// A header the platform always sends is missing (400).
    MissingHeader(&'static str),
    /// The webhook names an order not stored yet (503: the platform retries later).
    OrderNotStored(String),
    /// The store, Kafka or the shop's API did not answer (503).
    Unavailable(String),
}

/// One platform's connector: its settings and its mapping.
struct Shop {
    settings: ShopConnector,
    mapper: Mapper,
}

/// The webhook side of the configured connectors.
pub struct Webhooks {
    shops: HashMap<Platform, Shop>,
    store: Arc<dyn Store>,
    producer: FutureProducer,
    metrics: Arc<Metrics>,
    /// Writes what was handled, many requests to a transaction.
    recorder: Recorder,
    /// Longest wait for Kafka's acknowledgement of one event.
    produce_timeout: Duration,
}

/// The platforms' header names.
struct Headers {
    topic: &'static str,
    signature: &'static str,
    delivery_id: &'static str,
}

impl Platform {
    fn headers(self) -> Headers {
        match self {
            Platform::Shopify => Headers {
                topic: "X-Shopify-Topic",
                signature: "X-Shopify-Hmac-Sha256",
                delivery_id: "X-Shopify-Webhook-Id",
            },
            Platform::WooCommerce => Headers {
                topic: "X-WC-Webhook-Topic",
                signature: "X-WC-Webhook-Signature",
                delivery_id: "X-WC-Webhook-Delivery-ID",
            },
        }
    }

    /// The header that carries the webhook's topic.
    pub fn topic_header(self) -> &'static str {
        self.headers().topic
    }

    /// The header that carries the signature.
    pub fn signature_header(self) -> &'static str {
        self.headers().signature
    }

    /// The header that carries the delivery id.
    pub fn delivery_header(self) -> &'static str {
        self.headers().delivery_id
    }
}

/// The orders the store holds, as mapping asks for them.
pub struct StoredOrders<'a>(pub &'a dyn Store);

#[async_trait]
impl OrderLookup for StoredOrders<'_> {
    async fn customer_of_order(&self, order_id: &str) -> Result<Option<String>, LookupError> {
        self.0
            .order_customer(order_id)
            .await
            .map_err(|e| LookupError(format!("the store: {e}")))
    }
}

/// WooCommerce's ping when a webhook is created: a form-encoded `webhook_id=N`, unsigned.
fn is_woocommerce_ping(body: &[u8]) -> bool {
    body.strip_prefix(b"webhook_id=")
        .is_some_and(|id| !id.is_empty() && id.iter().all(u8::is_ascii_digit))
}

impl Webhooks {
    /// The connectors of `settings`; `products` looks products up for a platform whose
    /// categories come from its API. An unreadable catalogue is an error naming it. Starts the
    /// recorder's task on the current runtime.
    pub fn new(
        settings: &ConnectorSettings,
        products: impl Fn(&ShopConnector) -> Option<Arc<dyn ProductDirectory>>,
        store: Arc<dyn Store>,
        producer: FutureProducer,
        metrics: Arc<Metrics>,
        outbox_written: Arc<tokio::sync::Notify>,
    ) -> Result<Webhooks, String> {
        let mut shops = HashMap::new();
        for shop in [&settings.shopify, &settings.woocommerce]
            .into_iter()
            .flatten()
        {
            let mapper = Mapper::new(shop, products(shop))?;
            shops.insert(
                shop.platform,
                Shop {
                    settings: shop.clone(),
                    mapper,
                },
            );
        }
        Ok(Webhooks {
            shops,
            store: store.clone(),
            producer,
            metrics,
            recorder: Recorder::start(store, outbox_written),
            produce_timeout: Duration::from_secs(5),
        })
    }

    /// Whether any platform is configured.
    pub fn is_empty(&self) -> bool {
        self.shops.is_empty()
    }

    /// Takes one webhook, and counts how it went.
    pub async fn receive(
        &self,
        platform: Platform,
        delivery: Delivery<'_>,
    ) -> Result<Received, Refused> {
        let outcome = self.take(platform, delivery).await;
        let label = match &outcome {
            Ok(Received::Produced(_)) => "produced",
            Ok(Received::Duplicate) => "duplicate",
            Ok(Received::Ignored(_)) => "ignored",
            Ok(Received::SetAside(_)) => "unmappable",
            Err(Refused::NotConfigured(_)) => "not_configured",
            Err(Refused::BadSignature) => "bad_signature",
            Err(Refused::MissingHeader(_)) => "missing_header",
            Err(Refused::OrderNotStored(_)) => "order_not_stored",
            Err(Refused::Unavailable(_)) => "unavailable",
        };
        self.metrics
            .webhooks
            .with_label_values(&[platform.as_str(), label])
            .inc();
        outcome
    }

    async fn take(&self, platform: Platform, d: Delivery<'_>) -> Result<Received, Refused> {
        let shop = self
            .shops
            .get(&platform)
            .ok_or(Refused::NotConfigured(platform))?;
        if platform == Platform::WooCommerce && d.topic.is_none() && is_woocommerce_ping(d.body) {
            return Ok(Received::Ignored("ping"));
        }
        let signature = d.signature.ok_or(Refused::BadSignature)?;
        if !signature::verify(&shop.settings.webhook_secrets, d.body, signature) {
            return Err(Refused::BadSignature);
        }
        let topic = d
            .topic
            .ok_or(Refused::MissingHeader(platform.topic_header()))?;
        // Both platforms send a delivery id; without one, the body itself names the delivery.
        let delivery_id = match d.delivery_id {
            Some(id) if !id.trim().is_empty() => id.trim().to_string(),
            _ => format!("sha256:{}", hex::encode(Sha256::digest(d.body))),
        };
        let store = &*self.store;
        if store
            .webhook_delivery_seen(platform.as_str(), &delivery_id)
            .await
            .map_err(unavailable)?
        {
            return Ok(Received::Duplicate);
        }
        let mapped = shop
            .mapper
            .map(topic, d.body, &StoredOrders(store))
            .await
            .map_err(|e| Refused::Unavailable(e.0))?;
        let mut handled = HandledWebhook {
            platform: platform.as_str().to_string(),
            delivery_id,
            event_ids: Vec::new(),
            dead_letter: None,
        };
        let received = match mapped {
            Mapped::Events(events) => {
                let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
                let known = store
                    .webhook_events_produced(&ids)
                    .await
                    .map_err(unavailable)?;
                let mut produced = Vec::new();
                for event in events.iter().filter(|e| !known.contains(&e.event_id)) {
                    self.produce(event).await?;
                    produced.push(event.event_id.clone());
                }
                handled.event_ids = ids;
                if produced.is_empty() {
                    Received::Duplicate
                } else {
                    Received::Produced(produced)
                }
            }
            Mapped::Nothing(why) => Received::Ignored(why),
            Mapped::OrderNotStored(order) => return Err(Refused::OrderNotStored(order)),
            Mapped::Unmappable(why) => {
                let letter = DeadLetter::webhook(
                    platform.as_str(),
                    topic,
                    Some(handled.delivery_id.clone().into_bytes()),
                    d.body,
                    &why,
                );
                handled.dead_letter = Some(letter.into_outbox());
                tracing::warn!(platform = platform.as_str(), topic, delivery = %handled.delivery_id, error = %why, "a webhook could not be mapped: set aside in the DLQ (unmappable)");
                Received::SetAside(why)
            }
        };
        // Recorded once Kafka has the events: a crash in between makes the platform deliver
        // again, which produces the same event ids (the consumer changes nothing the second
        // time).
        self.recorder
            .record(handled)
            .await
            .map_err(Refused::Unavailable)?;
        Ok(received)
    }

    /// Produces one event to `orders`, keyed by its customer id, and waits for Kafka's
    /// acknowledgement.
    async fn produce(&self, event: &MappedEvent) -> Result<(), Refused> {
        let payload = event.value.to_string();
        let record = FutureRecord::to(TOPIC_ORDERS)
            .key(&event.customer_id)
            .payload(&payload);
        // `send`'s own timeout bounds only the wait for room in the queue; the acknowledgement
        // is bounded here. An event acknowledged after the 503 is delivered again by the
        // platform under the same id, which the consumer applies once.
        let sent = self.producer.send(record, self.produce_timeout);
        match tokio::time::timeout(self.produce_timeout, sent).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(Refused::Unavailable(format!(
                "Kafka did not take the event: {e}"
            ))),
            Err(_) => Err(Refused::Unavailable(format!(
                "Kafka did not acknowledge the event within {} s",
                self.produce_timeout.as_secs()
            ))),
        }
    }
}

fn unavailable(e: crate::store::StoreError) -> Refused {
    Refused::Unavailable(format!("the store: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bare_webhook_id_is_a_ping() {
        assert!(is_woocommerce_ping(b"webhook_id=17"));
        for body in [&b"webhook_id="[..], b"webhook_id=1&x=2", b"{\"id\":1}", b""] {
            assert!(!is_woocommerce_ping(body), "{body:?}");
        }
    }
}
