//! Shopify's fixtures (tests/fixtures/shopify/) mapped, compared as whole events.

use crate::config::{CategorySource, Platform, ShopConnector};
use crate::connector::Mapper;
use crate::connector::mapping::{LookupError, Mapped, OrderLookup, ProductDirectory, ProductInfo};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

const ORDER_ID: &str = "5870126457091";
const CUSTOMER_ID: &str = "7265411039495";

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/shopify")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

fn connector(category: CategorySource) -> ShopConnector {
    ShopConnector {
        platform: Platform::Shopify,
        webhook_secrets: Vec::new(),
        category,
        warehouse: "main".into(),
        warehouse_by_country: BTreeMap::from([("DE".to_string(), "WH-BER".to_string())]),
        sync_coupons: false,
        api: None,
        max_rps: 4,
    }
}

fn catalogue_mapper() -> Mapper {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shopify/catalogue.csv");
    Mapper::new(&connector(CategorySource::Catalogue(path)), None).unwrap()
}

/// The store, knowing the fixtures' order or not, or not answering.
enum Orders {
    Known,
    Unknown,
    Down,
}

#[async_trait]
impl OrderLookup for Orders {
    async fn customer_of_order(&self, order_id: &str) -> Result<Option<String>, LookupError> {
        match self {
            Orders::Known if order_id == ORDER_ID => Ok(Some(CUSTOMER_ID.into())),
            Orders::Down => Err(LookupError("the store does not answer".into())),
            _ => Ok(None),
        }
    }
}

async fn map(m: &Mapper, topic: &str, body: &[u8]) -> Mapped {
    m.map(topic, body, &Orders::Known).await.unwrap()
}

fn only_event(mapped: Mapped) -> Value {
    match mapped {
        Mapped::Events(mut events) if events.len() == 1 => {
            let e = events.remove(0);
            assert_eq!(e.event_id, e.value["event_id"]);
            e.value
        }
        other => panic!("expected one event, got {other:?}"),
    }
}

fn unmappable(mapped: Mapped) -> String {
    match mapped {
        Mapped::Unmappable(why) => why,
        other => panic!("expected unmappable, got {other:?}"),
    }
}

#[tokio::test]
async fn orders_create_becomes_order_placed() {
    let m = catalogue_mapper();
    let e = only_event(map(&m, "orders/create", &fixture("orders-create.json")).await);
    assert_eq!(
        e,
        json!({
            "event_id": "shopify:order:5870126457091:placed",
            "type": "order.placed",
            "occurred_at": "2026-03-14T10:32:07Z",
            "order": {
                "id": ORDER_ID,
                "customer": {
                    "id": CUSTOMER_ID,
                    "email": "lena.hoffmann@example.de",
                    "first_name": "Lena",
                    "last_name": "Hoffmann",
                    "locale": "de",
                },
                "currency": "EUR",
                "total": "58.85",
                "items": [
                    {"sku": "BK-ATLAS-01", "name": "The Atlas of Remote Islands", "category": "books", "quantity": 1, "unit_price": "24.00"},
                    {"sku": "FR-CEDAR-50", "name": "Cedar & Smoke Eau de Parfum", "category": "fragrance", "quantity": 1, "unit_price": "39.95"},
                ],
                "shipping": {"country": "DE", "city": "Berlin", "postcode": "10437"},
                "warehouse": "WH-BER",
                "channel": "shopify",
                "coupon_codes": ["SPRING10"],
            },
        })
    );
}

#[tokio::test]
async fn vendors_are_categories_by_default() {
    let m = Mapper::new(&connector(CategorySource::Vendor), None).unwrap();
    let e = only_event(map(&m, "orders/create", &fixture("orders-create.json")).await);
    assert_eq!(e["order"]["items"][0]["category"], "Northwind Books");
    assert_eq!(e["order"]["items"][1]["category"], "Maison Cèdre");
}

#[tokio::test]
async fn edited_orders_skip_removed_items_and_fall_back_on_ids_and_addresses() {
    let m = catalogue_mapper();
    let mut o = fixture_json("orders-create.json");
    o["line_items"][0]["quantity"] = json!(0);
    o["line_items"][1]["sku"] = json!("");
    o["shipping_address"] = Value::Null;
    o["customer"]["first_name"] = Value::Null;
    o["customer"]["email"] = Value::Null;
    o["id"] = json!(18446744073709551615u64);
    let e = only_event(map(&m, "orders/create", o.to_string().as_bytes()).await);
    let order = &e["order"];
    assert_eq!(order["id"], "18446744073709551615");
    assert_eq!(order["items"].as_array().unwrap().len(), 1);
    assert_eq!(order["items"][0]["sku"], "45190447857923");
    assert_eq!(order["items"][0]["category"], "uncategorized");
    assert_eq!(order["customer"]["first_name"], "Lena");
    assert_eq!(order["customer"]["email"], "lena.hoffmann@example.de");
    assert_eq!(order["shipping"]["country"], "DE");
}

#[tokio::test]
async fn a_guest_checkout_is_known_by_a_hash_of_its_address() {
    let m = catalogue_mapper();
    let id = crate::connector::woocommerce::guest_id("lena.hoffmann@example.de");
    assert!(id.starts_with("guest:") && !id.contains('@'), "{id}");
    let mut o = fixture_json("orders-create.json");
    o["customer"] = Value::Null;
    let placed = only_event(map(&m, "orders/create", o.to_string().as_bytes()).await);
    assert_eq!(placed["order"]["customer"]["id"], id.as_str());
    let mut cancelled = fixture_json("orders-cancelled.json");
    cancelled["customer"] = Value::Null;
    let cancelled = only_event(map(&m, "orders/cancelled", cancelled.to_string().as_bytes()).await);
    assert_eq!(
        cancelled["customer_id"],
        id.as_str(),
        "the cancellation names the same guest"
    );
}

/// A change made to a fixture.
type Edit = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn orders_that_cannot_be_mapped_name_the_field() {
    let m = catalogue_mapper();
    let cases: Vec<(&str, Edit)> = vec![
        (
            "customer.email: neither the customer nor the order names an e-mail address",
            Box::new(|o| {
                o["customer"] = Value::Null;
                o.as_object_mut().unwrap().remove("email");
                o.as_object_mut().unwrap().remove("contact_email");
            }),
        ),
        (
            "the mapped event shopify:order:5870126457091:placed is not valid: order.currency: unknown currency",
            Box::new(|o| o["currency"] = json!("XYZ")),
        ),
        (
            "total_price: expected a decimal amount",
            Box::new(|o| o["total_price"] = json!("58,85")),
        ),
        (
            "line_items[1].price: expected a decimal amount",
            Box::new(|o| o["line_items"][1]["price"] = json!(true)),
        ),
        (
            "line_items: the order has no item with a quantity",
            Box::new(|o| o["line_items"] = json!([])),
        ),
        (
            "shipping_address: the order has neither",
            Box::new(|o| {
                o["shipping_address"] = Value::Null;
                o["billing_address"] = Value::Null;
            }),
        ),
        (
            "customer.first_name: neither",
            Box::new(|o| {
                o["customer"]["first_name"] = json!("");
                o["billing_address"]["first_name"] = Value::Null;
                o["shipping_address"]["first_name"] = Value::Null;
            }),
        ),
    ];
    for (expected, edit) in cases {
        let mut o = fixture_json("orders-create.json");
        edit(&mut o);
        let why = unmappable(map(&m, "orders/create", o.to_string().as_bytes()).await);
        assert!(why.starts_with(expected), "{expected}: {why}");
    }
    let why = unmappable(map(&m, "orders/create", b"not json").await);
    assert!(why.starts_with("body: not JSON"), "{why}");
}

#[tokio::test]
async fn cancellations_shipments_and_deliveries_map_per_order() {
    let m = catalogue_mapper();
    let e = only_event(map(&m, "orders/cancelled", &fixture("orders-cancelled.json")).await);
    assert_eq!(
        e,
        json!({"event_id": "shopify:order:5870126457091:cancelled", "type": "order.cancelled",
               "occurred_at": "2026-03-15T08:04:51Z", "order_id": ORDER_ID, "customer_id": CUSTOMER_ID})
    );
    let e = only_event(
        map(
            &m,
            "fulfillments/create",
            &fixture("fulfillments-create.json"),
        )
        .await,
    );
    assert_eq!(
        e,
        json!({"event_id": "shopify:order:5870126457091:shipped", "type": "order.shipped",
               "occurred_at": "2026-03-16T07:45:12Z", "order_id": ORDER_ID, "customer_id": CUSTOMER_ID,
               "carrier": "DHL Express", "tracking": "JD014600003128475611"})
    );
    let mut second = fixture_json("fulfillments-create.json");
    second["id"] = json!(4739263127555u64);
    let again = only_event(map(&m, "fulfillments/create", second.to_string().as_bytes()).await);
    assert_eq!(again["event_id"], e["event_id"]);
    let e = only_event(
        map(
            &m,
            "fulfillments/update",
            &fixture("fulfillments-update-delivered.json"),
        )
        .await,
    );
    assert_eq!(
        e,
        json!({"event_id": "shopify:order:5870126457091:delivered", "type": "order.delivered",
               "occurred_at": "2026-03-18T13:02:40Z", "order_id": ORDER_ID, "customer_id": CUSTOMER_ID,
               "delivered_at": "2026-03-18T13:02:40Z"})
    );
    // An update that is not a delivery (in transit, a tracking number added) is nothing.
    let in_transit = map(
        &m,
        "fulfillments/update",
        &fixture("fulfillments-create.json"),
    )
    .await;
    assert_eq!(in_transit, Mapped::Nothing("not_delivered"));
}

#[tokio::test]
async fn refunds_return_their_line_items_and_money_only_ones_nothing() {
    let m = catalogue_mapper();
    let e = only_event(
        map(
            &m,
            "refunds/create",
            &fixture("refunds-create-partial.json"),
        )
        .await,
    );
    assert_eq!(
        e,
        json!({"event_id": "shopify:refund:929361465347:returned", "type": "order.returned",
               "occurred_at": "2026-03-25T09:12:33Z", "order_id": ORDER_ID, "customer_id": CUSTOMER_ID,
               "items": [{"sku": "FR-CEDAR-50", "quantity": 1}]})
    );
    let money = map(
        &m,
        "refunds/create",
        &fixture("refunds-create-money-only.json"),
    )
    .await;
    assert_eq!(money, Mapped::Nothing("money_only_refund"));
}

#[tokio::test]
async fn webhooks_naming_an_order_need_it_stored() {
    let m = catalogue_mapper();
    for (topic, file) in [
        ("fulfillments/create", "fulfillments-create.json"),
        ("fulfillments/update", "fulfillments-update-delivered.json"),
        ("refunds/create", "refunds-create-partial.json"),
    ] {
        let mapped = m
            .map(topic, &fixture(file), &Orders::Unknown)
            .await
            .unwrap();
        assert_eq!(mapped, Mapped::OrderNotStored(ORDER_ID.into()), "{topic}");
        let down = m.map(topic, &fixture(file), &Orders::Down).await;
        assert!(down.is_err(), "{topic}");
    }
}

#[tokio::test]
async fn consent_changes_map_at_their_time_and_nothing_else_does() {
    let m = catalogue_mapper();
    let e = only_event(map(&m, "customers/update", &fixture("customers-update.json")).await);
    assert_eq!(
        e,
        json!({"event_id": "shopify:consent:7265411039495:unsubscribed:2026-03-20T17:22:05Z",
               "type": "customer.unsubscribed", "occurred_at": "2026-03-20T17:22:05Z",
               "customer_id": CUSTOMER_ID})
    );
    let mut c = fixture_json("customers-update.json");
    c["email_marketing_consent"]["state"] = json!("subscribed");
    let e = only_event(map(&m, "customers/update", c.to_string().as_bytes()).await);
    assert_eq!(e["type"], "customer.subscribed");
    c["email_marketing_consent"]["state"] = json!("pending");
    let pending = map(&m, "customers/update", c.to_string().as_bytes()).await;
    assert_eq!(pending, Mapped::Nothing("consent_unmapped"));
    c["email_marketing_consent"] = json!({"state": "subscribed", "consent_updated_at": null});
    let unchanged = map(&m, "customers/update", c.to_string().as_bytes()).await;
    assert_eq!(unchanged, Mapped::Nothing("consent_unchanged"));
}

#[tokio::test]
async fn other_topics_map_to_nothing_without_reading_the_body() {
    let m = catalogue_mapper();
    assert_eq!(
        map(&m, "products/update", b"not json").await,
        Mapped::Nothing("topic_unmapped")
    );
}

struct Failing;

#[async_trait]
impl ProductDirectory for Failing {
    async fn product(&self, _: &str) -> Result<Option<ProductInfo>, LookupError> {
        Err(LookupError("the Admin API answered 503".into()))
    }
}

#[tokio::test]
async fn a_failed_product_lookup_propagates() {
    let m = Mapper::new(
        &connector(CategorySource::ProductType),
        Some(Arc::new(Failing)),
    )
    .unwrap();
    let r = m
        .map(
            "orders/create",
            &fixture("orders-create.json"),
            &Orders::Known,
        )
        .await;
    assert_eq!(r, Err(LookupError("the Admin API answered 503".into())));
}
