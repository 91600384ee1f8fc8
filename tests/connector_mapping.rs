//! Webhook mapping through the public API: the fixtures played in sequence, and properties
//! that hold for any body a shop (or anyone who got hold of a secret) can send: mapping never
//! panics, and every event it returns is one the consumer accepts, keyed by its customer.

use async_trait::async_trait;
use packwell::config::{CategorySource, Platform, ShopConnector};
use packwell::connector::{
    LookupError, Mapped, Mapper, OrderLookup, ProductDirectory, ProductInfo,
};
use packwell::event::event_from_value;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

const SHOPIFY_TOPICS: [&str; 7] = [
    "orders/create",
    "orders/cancelled",
    "fulfillments/create",
    "fulfillments/update",
    "refunds/create",
    "customers/update",
    "products/update",
];
const WOO_TOPICS: [&str; 3] = ["order.created", "order.updated", "order.deleted"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(path)).expect("a fixture")
}

/// Every order is stored, with the same customer.
struct AnyOrder;

#[async_trait]
impl OrderLookup for AnyOrder {
    async fn customer_of_order(&self, _: &str) -> Result<Option<String>, LookupError> {
        Ok(Some("7265411039495".into()))
    }
}

/// Every product has categories; "0"-ending ids do not exist.
struct AnyProduct;

#[async_trait]
impl ProductDirectory for AnyProduct {
    async fn product(&self, id: &str) -> Result<Option<ProductInfo>, LookupError> {
        Ok((!id.ends_with('0')).then(|| ProductInfo {
            product_type: Some("books".into()),
            tags: vec!["cat-home".into()],
            categories: vec!["fragrance".into()],
        }))
    }
}

fn connector(platform: Platform, category: CategorySource) -> ShopConnector {
    ShopConnector {
        platform,
        webhook_secrets: Vec::new(),
        category,
        warehouse: "main".into(),
        warehouse_by_country: BTreeMap::from([("DE".to_string(), "WH-BER".to_string())]),
        sync_coupons: false,
        api: None,
        max_rps: 4,
    }
}

struct World {
    shopify: Mapper,
    woocommerce: Mapper,
    runtime: tokio::runtime::Runtime,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| World {
        shopify: Mapper::new(
            &connector(
                Platform::Shopify,
                CategorySource::Catalogue(fixtures().join("shopify/catalogue.csv")),
            ),
            None,
        )
        .expect("the catalogue fixture"),
        woocommerce: Mapper::new(
            &connector(Platform::WooCommerce, CategorySource::ProductCategories),
            Some(Arc::new(AnyProduct)),
        )
        .expect("a WooCommerce mapper"),
        runtime: tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime"),
    })
}

fn map(m: &Mapper, topic: &str, body: &[u8]) -> Mapped {
    world()
        .runtime
        .block_on(m.map(topic, body, &AnyOrder))
        .expect("the fakes never fail")
}

/// What every mapping must satisfy: events parse, their ids and keys are theirs.
fn check(mapped: &Mapped) -> Result<(), TestCaseError> {
    if let Mapped::Events(events) = mapped {
        prop_assert!(!events.is_empty());
        for e in events {
            let parsed = event_from_value(&e.value);
            prop_assert!(parsed.is_ok(), "{:?}: {}", parsed, e.value);
            prop_assert_eq!(&e.value["event_id"], &json!(e.event_id));
            let key = e.value["order"]["customer"]["id"]
                .as_str()
                .or(e.value["customer_id"].as_str());
            prop_assert_eq!(key, Some(e.customer_id.as_str()));
        }
    }
    Ok(())
}

#[test]
fn the_shopify_fixtures_play_in_sequence_for_one_order_and_customer() {
    let w = world();
    let mut ids = Vec::new();
    for (topic, file) in [
        ("orders/create", "orders-create.json"),
        ("fulfillments/create", "fulfillments-create.json"),
        ("fulfillments/update", "fulfillments-update-delivered.json"),
        ("refunds/create", "refunds-create-partial.json"),
        ("customers/update", "customers-update.json"),
        ("orders/cancelled", "orders-cancelled.json"),
    ] {
        let mapped = map(&w.shopify, topic, &fixture(&format!("shopify/{file}")));
        let Mapped::Events(events) = mapped else {
            panic!("{topic}: {mapped:?}");
        };
        for e in events {
            assert_eq!(e.customer_id, "7265411039495", "{topic}");
            ids.push(e.event_id);
        }
    }
    assert_eq!(
        ids,
        [
            "shopify:order:5870126457091:placed",
            "shopify:order:5870126457091:shipped",
            "shopify:order:5870126457091:delivered",
            "shopify:refund:929361465347:returned",
            "shopify:consent:7265411039495:unsubscribed:2026-03-20T17:22:05Z",
            "shopify:order:5870126457091:cancelled",
        ]
    );
}

#[test]
fn the_woocommerce_fixtures_name_one_order() {
    let w = world();
    for file in [
        "order-processing.json",
        "order-completed.json",
        "order-cancelled.json",
        "order-refunded.json",
    ] {
        let mapped = map(
            &w.woocommerce,
            "order.updated",
            &fixture(&format!("woocommerce/{file}")),
        );
        let Mapped::Events(events) = mapped else {
            panic!("{file}: {mapped:?}");
        };
        assert!(events.iter().all(|e| e.customer_id == "58"
            && e.event_id.starts_with("woocommerce:order:4127:")));
    }
}

/// JSON shaped like the platforms' bodies: their keys, their words, numbers as they send them.
fn json_value() -> impl Strategy<Value = Value> {
    let word = prop_oneof![
        Just("subscribed"),
        Just("unsubscribed"),
        Just("not_subscribed"),
        Just("delivered"),
        Just("processing"),
        Just("completed"),
        Just("cancelled"),
        Just("refunded"),
        Just("EUR"),
        Just("XYZ"),
        Just("DE"),
        Just("2026-03-14T10:00:00Z"),
        Just("2026-03-14T10:00:00"),
        Just("19.95"),
        Just("-1"),
        Just("1e400"),
        Just(""),
        Just("a@b"),
        Just(" "),
        Just("\u{0}"),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        "[0-9]{1,30}(\\.[0-9]{0,12})?(e-?[0-9]{1,3})?"
            .prop_map(|t| serde_json::from_str::<Value>(&t).unwrap_or(Value::Null)),
        word.prop_map(|w| json!(w)),
        ".{0,12}".prop_map(Value::String),
    ];
    let key = prop_oneof![
        Just("id"),
        Just("customer"),
        Just("email"),
        Just("first_name"),
        Just("line_items"),
        Just("sku"),
        Just("quantity"),
        Just("price"),
        Just("title"),
        Just("name"),
        Just("total_price"),
        Just("total"),
        Just("currency"),
        Just("created_at"),
        Just("shipping_address"),
        Just("billing_address"),
        Just("country_code"),
        Just("order_id"),
        Just("shipment_status"),
        Just("updated_at"),
        Just("refund_line_items"),
        Just("line_item"),
        Just("email_marketing_consent"),
        Just("state"),
        Just("consent_updated_at"),
        Just("status"),
        Just("customer_id"),
        Just("billing"),
        Just("shipping"),
        Just("country"),
        Just("date_created_gmt"),
        Just("date_modified_gmt"),
        Just("product_id"),
        Just("variant_id"),
        Just("cancelled_at"),
        Just("discount_codes"),
        Just("code"),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..8).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// The paths of every value in a JSON document.
fn paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    let children: Vec<(String, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => return,
    };
    for (k, child) in children {
        at.push(k);
        paths(child, at, out);
        at.pop();
    }
}

fn replace(v: &mut Value, path: &[String], new: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        if let Some(n) = new {
            *v = n;
        }
        return;
    };
    let mut target = v;
    for p in parents {
        target = match target {
            Value::Object(m) => m.get_mut(p).expect("a path of the document"),
            Value::Array(a) => &mut a[p.parse::<usize>().expect("an index")],
            _ => return,
        };
    }
    match (target, new) {
        (Value::Object(m), Some(n)) => {
            m.insert(last.clone(), n);
        }
        (Value::Object(m), None) => {
            m.remove(last);
        }
        (Value::Array(a), Some(n)) => a[last.parse::<usize>().expect("an index")] = n,
        (Value::Array(a), None) => {
            a.remove(last.parse::<usize>().expect("an index"));
        }
        _ => {}
    }
}

const FIXTURES: [(&str, &str); 11] = [
    ("orders/create", "shopify/orders-create.json"),
    ("orders/cancelled", "shopify/orders-cancelled.json"),
    ("fulfillments/create", "shopify/fulfillments-create.json"),
    (
        "fulfillments/update",
        "shopify/fulfillments-update-delivered.json",
    ),
    ("refunds/create", "shopify/refunds-create-partial.json"),
    ("customers/update", "shopify/customers-update.json"),
    ("order.updated", "woocommerce/order-processing.json"),
    ("order.updated", "woocommerce/order-completed.json"),
    ("order.updated", "woocommerce/order-cancelled.json"),
    ("order.updated", "woocommerce/order-refunded.json"),
    ("order.created", "woocommerce/order-guest.json"),
];

fn mapper_for(topic: &str) -> &'static Mapper {
    if topic.contains('/') {
        &world().shopify
    } else {
        &world().woocommerce
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_json_body_maps_without_panicking_to_valid_events(value in json_value()) {
        let body = value.to_string();
        for topic in SHOPIFY_TOPICS {
            check(&map(&world().shopify, topic, body.as_bytes()))?;
        }
        for topic in WOO_TOPICS {
            check(&map(&world().woocommerce, topic, body.as_bytes()))?;
        }
    }

    #[test]
    fn any_bytes_map_without_panicking(body in prop::collection::vec(any::<u8>(), 0..64)) {
        for topic in SHOPIFY_TOPICS {
            check(&map(&world().shopify, topic, &body))?;
        }
        for topic in WOO_TOPICS {
            check(&map(&world().woocommerce, topic, &body))?;
        }
    }

    #[test]
    fn a_fixture_with_one_value_changed_or_removed_maps_to_valid_events(
        which in 0..FIXTURES.len(),
        at in any::<prop::sample::Index>(),
        new in prop::option::of(json_value()),
    ) {
        let (topic, file) = FIXTURES[which];
        let mut doc: Value = serde_json::from_slice(&fixture(file)).expect("a JSON fixture");
        let mut all = Vec::new();
        paths(&doc, &mut Vec::new(), &mut all);
        replace(&mut doc, &all[at.index(all.len())], new);
        check(&map(mapper_for(topic), topic, doc.to_string().as_bytes()))?;
    }
}
