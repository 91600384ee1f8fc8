//! The webhook records (`store/webhooks.rs`), on both backends: a group of deliveries written
//! in one go, a delivery repeated within the group or later recorded once with one dead
//! letter, event ids known afterwards, and the customer of a stored order.

use packwell::message::DeadLetter;
use packwell::store::HandledWebhook;
use serde_json::json;

#[macro_use]
mod store_support;
use store_support::*;

fn handled(delivery: &str, events: &[&str], unmappable: bool) -> HandledWebhook {
    HandledWebhook {
        platform: "shopify".into(),
        delivery_id: delivery.into(),
        event_ids: events.iter().map(|e| e.to_string()).collect(),
        dead_letter: unmappable.then(|| {
            DeadLetter::webhook("shopify", "orders/create", None, b"{}", "no customer")
                .into_outbox()
        }),
    }
}

async fn deliveries_and_events_recorded_once(b: Backend) {
    let store = &b.store;
    assert!(!store.webhook_delivery_seen("shopify", "d-1").await.unwrap());
    // One group: d-1 twice (a retry while the first was under way), d-2 set aside.
    store
        .record_webhooks(&[
            handled("d-1", &["shopify:order:1:placed"], false),
            handled("d-1", &["shopify:order:1:placed"], false),
            handled("d-2", &[], true),
            handled(
                "d-3",
                &["shopify:order:1:shipped", "shopify:order:1:delivered"],
                false,
            ),
        ])
        .await
        .unwrap();
    // d-2 again, in a later group: no second dead letter.
    store
        .record_webhooks(&[handled("d-2", &[], true)])
        .await
        .unwrap();
    for d in ["d-1", "d-2", "d-3"] {
        assert!(
            store.webhook_delivery_seen("shopify", d).await.unwrap(),
            "{d}"
        );
    }
    assert!(
        !store
            .webhook_delivery_seen("woocommerce", "d-1")
            .await
            .unwrap()
    );
    let asked = [
        "shopify:order:1:placed".to_string(),
        "shopify:order:1:delivered".to_string(),
        "shopify:order:2:placed".to_string(),
    ];
    let known = store.webhook_events_produced(&asked).await.unwrap();
    assert_eq!(known.len(), 2);
    assert!(!known.contains("shopify:order:2:placed"));
    let letters = store.dlq_rows(i64::MIN, 0, 100).await.unwrap();
    assert_eq!(letters.len(), 1, "one dead letter for d-2");

    // The customer of a stored order; none for an order not applied.
    let env = env_from("", &[]);
    let placed = json!({"event_id": "p-1", "type": "order.placed", "occurred_at": "2026-03-01T10:00:00Z",
        "order": {"id": "1", "customer": {"id": "42", "email": "a@mail.example", "first_name": "A"},
            "currency": "EUR", "total": "20.00",
            "items": [{"sku": "S", "name": "Book", "category": "books", "quantity": 1, "unit_price": "20.00"}],
            "shipping": {"country": "DE"}, "warehouse": "WH-BER"}});
    store.apply_batch(&batch(&[placed]), &env).await.unwrap();
    assert_eq!(
        store.order_customer("1").await.unwrap().as_deref(),
        Some("42")
    );
    assert_eq!(store.order_customer("2").await.unwrap(), None);
}

on_both!(
    webhook_deliveries_and_events_are_recorded_once,
    deliveries_and_events_recorded_once
);
