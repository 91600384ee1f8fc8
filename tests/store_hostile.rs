//! Hostile events in the store's batch path, on both backends: an event whose effect on the
//! history cannot be held exactly (built past the parser's bounds, as a history stored before
//! them could hold) goes to the DLQ with `out_of_range` and leaves the history as it was, while
//! the events around it apply; an event id reused for another event, and an order sent again
//! with other content, go to the DLQ with `conflict`, while a true redelivery is only seen
//! before.

use packwell::event::{Event, EventBody, event_from_value};
use packwell::store::{Batch, BatchItem, Fence};
use rust_decimal::Decimal;
use serde_json::{Value, json};

#[macro_use]
mod store_support;
use store_support::*;

const RULES: &str = "[[insert]]\nid = \"tea\"\nkind = \"gift\"\n\
    [[rule]]\nid = \"tea\"\nwhen = \"true\"\ngive = [\"tea\"]\n";

fn placed(customer: &str, order: &str, total: &str) -> Value {
    json!({"event_id": format!("p-{order}"), "type": "order.placed", "occurred_at": "2026-11-20T10:00:00Z",
        "order": {"id": order, "customer": {"id": customer, "email": "kim@example.com", "first_name": "Kim"},
            "currency": "EUR", "total": total,
            "items": [{"sku": "S", "name": "Book", "category": "books", "quantity": 2, "unit_price": "10.00"}],
            "shipping": {"country": "DE"}, "warehouse": "WH-BER"}})
}

/// A parsed event with its amounts set past the bounds the parser enforces.
fn with_amounts(v: &Value, total: Decimal, unit_price: Decimal) -> Event {
    let mut e = event_from_value(v).expect("valid");
    let EventBody::OrderPlaced(o) = &mut e.body else {
        panic!("an order")
    };
    o.total = total;
    o.items[0].unit_price = unit_price;
    e
}

fn raw_item(offset: i64, customer: &str, event: Event) -> BatchItem {
    BatchItem {
        offset,
        key: Some(customer.as_bytes().to_vec()),
        value: b"{}".to_vec(),
        event: Ok(event),
        decide: true,
    }
}

async fn dlq_reasons(b: &Backend) -> Vec<(String, String)> {
    b.store
        .unsent_outbox(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.topic == "orders.dlq")
        .map(|r| {
            let h: Value = serde_json::from_str(r.headers.as_deref().unwrap()).unwrap();
            (
                h["packwell-reason"].as_str().unwrap().to_string(),
                h["packwell-error"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn unholdable(b: Backend) {
    let env = env_from(RULES, &[]);
    let max = Decimal::MAX;
    let ten: Decimal = "10.00".parse().unwrap();
    let returned = json!({"event_id": "r-o3", "type": "order.returned", "occurred_at": "2026-11-21T10:00:00Z",
        "order_id": "o3", "customer_id": "c1", "items": [{"sku": "S", "quantity": 2}]});
    let items = vec![
        // The largest total a Decimal holds, twice for one customer: the second cannot add up.
        raw_item(0, "c1", with_amounts(&placed("c1", "o1", "1"), max, ten)),
        raw_item(1, "c1", with_amounts(&placed("c1", "o2", "1"), max, ten)),
        // A line priced at the largest amount, two of them returned: the value cannot be held.
        raw_item(2, "c9", with_amounts(&placed("c9", "o3", "1"), ten, max)),
        item(3, &placed("c2", "o4", "20.00")),
    ];
    let mut r = returned.clone();
    r["customer_id"] = json!("c9");
    let mut items = items;
    items.push(item(4, &r));
    let report = b
        .store
        .apply_batch(
            &Batch {
                fence: Fence::None,
                items,
            },
            &env,
        )
        .await
        .unwrap();
    assert_eq!(report.rejected, 2, "{}", b.name);
    let reasons = dlq_reasons(&b).await;
    assert_eq!(reasons.len(), 2, "{}: {reasons:?}", b.name);
    assert_eq!(reasons[0].0, "out_of_range", "{}", b.name);
    assert!(reasons[0].1.starts_with("order.total: "), "{reasons:?}");
    assert_eq!(reasons[1].0, "out_of_range", "{}", b.name);
    assert!(
        reasons[1].1.starts_with("items[0].quantity: "),
        "{reasons:?}"
    );
    // The history is as the events before the refused ones left it.
    let c1 = b.store.profile("c1").await.unwrap().unwrap();
    assert_eq!(c1.orders_count, 1, "{}", b.name);
    assert_eq!(c1.spend[0].net, max, "{}", b.name);
    let c9 = b.store.profile("c9").await.unwrap().unwrap();
    assert_eq!((c9.orders_count, c9.returns_count), (1, 0), "{}", b.name);
    assert_eq!(c9.spend[0].net, ten, "{}", b.name);
    // The orders around them were decided.
    for order in ["o1", "o3", "o4"] {
        assert!(
            b.store.decision(order).await.unwrap().is_some(),
            "{}: {order}",
            b.name
        );
    }
    assert!(
        b.store.decision("o2").await.unwrap().is_none(),
        "{}",
        b.name
    );
}
on_both!(
    an_event_whose_effect_cannot_be_held_exactly_is_set_aside_and_changes_nothing,
    unholdable
);

async fn conflicts(b: Backend) {
    let env = env_from(RULES, &[]);
    let first = placed("c1", "o1", "20.00");
    b.store
        .apply_batch(&batch(std::slice::from_ref(&first)), &env)
        .await
        .unwrap();
    // Again, with its amount written otherwise: a redelivery, seen before.
    let again: Value = serde_json::from_str(
        &first
            .to_string()
            .replace("\"total\":\"20.00\"", "\"total\":20.0"),
    )
    .unwrap();
    assert_ne!(again, first, "the amount is written otherwise");
    // The same event id for another event; the same order under a new id with other lines.
    let mut reused = first.clone();
    reused["order"]["total"] = json!("99.00");
    let mut changed = first.clone();
    changed["event_id"] = json!("p-o1-again");
    changed["order"]["items"][0]["quantity"] = json!(3);
    // The same order under a new id, unchanged: nothing changes, no conflict.
    let mut resent = first.clone();
    resent["event_id"] = json!("p-o1-resent");
    let report = b
        .store
        .apply_batch(&batch(&[again, reused, changed, resent]), &env)
        .await
        .unwrap();
    assert_eq!(report.seen_before, 1, "{}", b.name);
    assert_eq!(report.rejected, 2, "{}", b.name);
    let reasons = dlq_reasons(&b).await;
    assert_eq!(
        reasons.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["conflict", "conflict"],
        "{}",
        b.name
    );
    assert!(reasons[0].1.starts_with("event_id: "), "{reasons:?}");
    assert!(reasons[1].1.contains("other content"), "{reasons:?}");
    let c1 = b.store.profile("c1").await.unwrap().unwrap();
    assert_eq!(c1.orders_count, 1, "{}", b.name);
}
on_both!(
    a_reused_event_id_or_a_changed_order_is_a_conflict_and_a_redelivery_is_not,
    conflicts
);
