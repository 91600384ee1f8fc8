//! WooCommerce's fixtures (tests/fixtures/woocommerce/) mapped, compared as whole events.

use crate::config::{CategorySource, Platform, ShopConnector};
use crate::connector::Mapper;
use crate::connector::mapping::{
    LookupError, Mapped, MappedEvent, OrderLookup, ProductDirectory, ProductInfo,
};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/woocommerce")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// WooCommerce names no order without its customer: the store is never asked.
struct NoOrders;

#[async_trait]
impl OrderLookup for NoOrders {
    async fn customer_of_order(&self, _: &str) -> Result<Option<String>, LookupError> {
        panic!("WooCommerce bodies carry their customer")
    }
}

/// Products 802 (a book) and 815 (a candle); others unknown.
#[derive(Default)]
struct Products {
    calls: AtomicUsize,
}

#[async_trait]
impl ProductDirectory for Products {
    async fn product(&self, id: &str) -> Result<Option<ProductInfo>, LookupError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let categories = match id {
            "802" => vec!["books".to_string(), "Paperbacks".to_string()],
            "815" => vec![" home ".to_string()],
            _ => return Ok(None),
        };
        Ok(Some(ProductInfo {
            categories,
            ..ProductInfo::default()
        }))
    }
}

fn mapper(products: Arc<Products>) -> Mapper {
    let c = ShopConnector {
        platform: Platform::WooCommerce,
        webhook_secrets: Vec::new(),
        category: CategorySource::ProductCategories,
        warehouse: "main".into(),
        warehouse_by_country: BTreeMap::from([("DE".to_string(), "WH-BER".to_string())]),
        sync_coupons: false,
        api: None,
        max_rps: 4,
    };
    Mapper::new(&c, Some(products)).unwrap()
}

async fn events(m: &Mapper, topic: &str, body: &[u8]) -> Vec<MappedEvent> {
    match m.map(topic, body, &NoOrders).await.unwrap() {
        Mapped::Events(e) => e,
        other => panic!("expected events, got {other:?}"),
    }
}

fn placed() -> Value {
    json!({
        "event_id": "woocommerce:order:4127:placed",
        "type": "order.placed",
        "occurred_at": "2026-03-14T11:05:44Z",
        "order": {
            "id": "4127",
            "customer": {
                "id": "58",
                "email": "marc.lefevre@example.org",
                "first_name": "Marc",
                "last_name": "Lefèvre",
            },
            "currency": "EUR",
            "total": "63.09",
            "items": [
                {"sku": "BK-TIDES-02", "name": "The Tides Within - Paperback", "category": "books", "quantity": 2, "unit_price": "14.485"},
                {"sku": "HM-CANDLE-FIG", "name": "Fig Leaf Candle", "category": "home", "quantity": 1, "unit_price": "22.85"},
            ],
            "shipping": {"country": "DE", "city": "Hamburg", "postcode": "20095"},
            "warehouse": "WH-BER",
            "channel": "woocommerce",
            "coupon_codes": ["welcome5"],
        },
    })
}

#[tokio::test]
async fn processing_places_the_order_and_categories_are_looked_up_once() {
    let products = Arc::new(Products::default());
    let m = mapper(products.clone());
    for topic in ["order.created", "order.updated"] {
        let e = events(&m, topic, &fixture("order-processing.json")).await;
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].value, placed());
        assert_eq!(e[0].customer_id, "58");
    }
    assert_eq!(products.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn completed_places_and_ships() {
    let m = mapper(Arc::default());
    let e = events(&m, "order.updated", &fixture("order-completed.json")).await;
    let values: Vec<&Value> = e.iter().map(|e| &e.value).collect();
    assert_eq!(
        values,
        [
            &placed(),
            &json!({"event_id": "woocommerce:order:4127:shipped", "type": "order.shipped",
                    "occurred_at": "2026-03-16T08:30:01Z", "order_id": "4127", "customer_id": "58"}),
        ]
    );
}

#[tokio::test]
async fn cancelled_and_refunded_orders_map_to_their_own_event() {
    let m = mapper(Arc::default());
    let e = events(&m, "order.updated", &fixture("order-cancelled.json")).await;
    assert_eq!(
        e[0].value,
        json!({"event_id": "woocommerce:order:4127:cancelled", "type": "order.cancelled",
               "occurred_at": "2026-03-14T14:20:10Z", "order_id": "4127", "customer_id": "58"})
    );
    let e = events(&m, "order.updated", &fixture("order-refunded.json")).await;
    assert_eq!(
        e[0].value,
        json!({"event_id": "woocommerce:order:4127:returned", "type": "order.returned",
               "occurred_at": "2026-03-27T09:02:19Z", "order_id": "4127", "customer_id": "58"})
    );
    assert_eq!(e.len(), 1);
}

#[tokio::test]
async fn guests_are_known_by_a_hash_of_their_billing_email() {
    let m = mapper(Arc::default());
    let e = events(&m, "order.created", &fixture("order-guest.json")).await;
    // printf %s sam.okafor@example.com | sha256sum, first 32 hex digits.
    let id = "guest:cadf509141f2575272ebb2a8dd6ebe01";
    assert_eq!(super::guest_id(" Sam.Okafor@Example.com"), id);
    assert_eq!(e[0].customer_id, id);
    let order = &e[0].value["order"];
    assert_eq!(order["customer"]["id"], id);
    assert_eq!(order["customer"]["email"], "Sam.Okafor@Example.com");
    assert_eq!(order["warehouse"], "main");
    assert_eq!(order["coupon_codes"], json!([]));

    let mut g: Value = serde_json::from_slice(&fixture("order-guest.json")).unwrap();
    g["billing"]["email"] = json!("");
    let mapped = m
        .map("order.created", g.to_string().as_bytes(), &NoOrders)
        .await;
    match mapped.unwrap() {
        Mapped::Unmappable(why) => {
            assert!(why.starts_with("billing.email: a guest order"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn other_statuses_and_topics_map_to_nothing() {
    let m = mapper(Arc::default());
    let mut o: Value = serde_json::from_slice(&fixture("order-processing.json")).unwrap();
    for status in ["pending", "on-hold", "failed", "checkout-draft"] {
        o["status"] = json!(status);
        let mapped = m
            .map("order.updated", o.to_string().as_bytes(), &NoOrders)
            .await;
        assert_eq!(mapped, Ok(Mapped::Nothing("status_unmapped")), "{status}");
    }
    let deleted = m.map("order.deleted", b"{}", &NoOrders).await;
    assert_eq!(deleted, Ok(Mapped::Nothing("topic_unmapped")));
    let ping = m
        .map("order.created", b"webhook_id=12", &NoOrders)
        .await
        .unwrap();
    assert!(
        matches!(ping, Mapped::Unmappable(ref w) if w.starts_with("body: not JSON")),
        "{ping:?}"
    );
}

#[tokio::test]
async fn prices_are_exact_and_bad_lines_name_themselves() {
    let m = mapper(Arc::default());
    let mut o: Value = serde_json::from_slice(&fixture("order-processing.json")).unwrap();
    o["line_items"][1]["price"] = json!("19.95");
    o["line_items"][0]["sku"] = json!("");
    let e = events(&m, "order.created", o.to_string().as_bytes()).await;
    assert_eq!(e[0].value["order"]["items"][1]["unit_price"], "19.95");
    assert_eq!(e[0].value["order"]["items"][0]["sku"], "802");
    o["line_items"][1]["quantity"] = json!(-1);
    match m
        .map("order.created", o.to_string().as_bytes(), &NoOrders)
        .await
        .unwrap()
    {
        Mapped::Unmappable(why) => {
            assert!(
                why.starts_with("line_items[1].quantity: expected a whole number"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
}
