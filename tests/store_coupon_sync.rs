//! The coupon sync rows (`store/coupon_sync.rs`), on both backends: a row is written unless a
//! newer version is recorded; `coupon_listing` gives the store's coupons newest first with
//! their rows, filtered by the coupon's state or by `sync_failed`; retention removes the rows
//! of codes the store does not hold, and keeps those of coupons it does.

use packwell::store::{CouponFilter, SyncRecord, SyncState};
use serde_json::{Value, json};

#[macro_use]
mod store_support;
use store_support::*;

const RULES: &str = "[[insert]]\nid = \"thanks\"\nkind = \"coupon\"\namount = { EUR = \"5.00\" }\n\
    code_prefix = \"TY\"\n[[rule]]\nid = \"thanks\"\nwhen = \"true\"\ngive = [\"thanks\"]\n";

fn placed(customer: &str, order: &str, at: &str) -> Value {
    json!({"event_id": format!("p-{order}"), "type": "order.placed", "occurred_at": at,
        "order": {"id": order, "customer": {"id": customer, "email": "a@mail.example", "first_name": "A"},
            "currency": "EUR", "total": "20.00",
            "items": [{"sku": "S", "name": "Book", "category": "books", "quantity": 1, "unit_price": "20.00"}],
            "shipping": {"country": "DE"}, "warehouse": "WH-BER"}})
}

fn record(code: &str, platform: &str, state: SyncState, version: i64) -> SyncRecord {
    SyncRecord {
        code: code.into(),
        platform: platform.into(),
        state,
        version,
        shop_id: Some("gid://shopify/DiscountCodeNode/1".into()),
        error: (state == SyncState::SyncFailed).then(|| "Code must be unique.".to_string()),
        attempts: 1,
        updated_at: 1_000,
    }
}

async fn rows_listed_and_purged(b: Backend) {
    let env = env_from(RULES, &[]);
    b.store
        .apply_batch(
            &batch(&[
                placed("c1", "o1", "2026-11-20T10:00:00Z"),
                placed("c2", "o2", "2026-11-21T10:00:00Z"),
            ]),
            &env,
        )
        .await
        .unwrap();
    let all = b
        .store
        .coupon_listing(&CouponFilter::All, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "{}", b.name);
    assert_eq!(all[0].order_id, "o2", "newest first ({})", b.name);
    let (newer, older) = (all[0].code.clone(), all[1].code.clone());

    let s = &b.store;
    assert!(
        s.record_coupon_sync(&record(&newer, "shopify", SyncState::Synced, 1))
            .await
            .unwrap()
    );
    assert!(
        s.record_coupon_sync(&record(&older, "shopify", SyncState::SyncFailed, 1))
            .await
            .unwrap()
    );
    assert!(
        s.record_coupon_sync(&record(&older, "woocommerce", SyncState::Disabled, 2))
            .await
            .unwrap()
    );
    // Not newer than what is there: kept as it was.
    assert!(
        !s.record_coupon_sync(&record(&older, "woocommerce", SyncState::Synced, 1))
            .await
            .unwrap()
    );
    let mut gone = record("GONE-1", "shopify", SyncState::Synced, 1);
    gone.shop_id = None;
    assert!(s.record_coupon_sync(&gone).await.unwrap());

    let failed = s
        .coupon_listing(&CouponFilter::SyncFailed, 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1, "{}", b.name);
    assert_eq!(failed[0].code, older);
    let platforms: Vec<(&str, SyncState)> = failed[0]
        .sync
        .iter()
        .map(|r| (r.platform.as_str(), r.state))
        .collect();
    assert_eq!(
        platforms,
        [
            ("shopify", SyncState::SyncFailed),
            ("woocommerce", SyncState::Disabled)
        ],
        "{}",
        b.name
    );
    assert_eq!(
        failed[0].sync[0].error.as_deref(),
        Some("Code must be unique.")
    );
    let issued = s
        .coupon_listing(&CouponFilter::State("issued".into()), 1)
        .await
        .unwrap();
    assert_eq!(issued.len(), 1, "bounded by the limit ({})", b.name);
    assert!(
        s.coupon_listing(&CouponFilter::State("voided".into()), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Retention: the row of a code the store does not hold goes; the others stay.
    packwell::store::purge(&**s, 2_000, 10).await.unwrap();
    assert!(
        s.coupon_sync("GONE-1", "shopify").await.unwrap().is_none(),
        "{}",
        b.name
    );
    assert!(
        s.coupon_sync(&newer, "shopify").await.unwrap().is_some(),
        "{}",
        b.name
    );
    assert!(
        s.coupon_sync(&older, "woocommerce")
            .await
            .unwrap()
            .is_some(),
        "{}",
        b.name
    );
}
on_both!(
    sync_rows_are_versioned_listed_and_purged,
    rows_listed_and_purged
);
