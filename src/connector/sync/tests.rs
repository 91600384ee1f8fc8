//! One message at a time through [`CouponSync::handle`], against a shop in memory and a store
//! in memory: created once, skipped when not newer than what is recorded, disabled when voided,
//! a refusal recorded without a second try.

use super::*;
use crate::config::Platform;
use crate::connector::api::ShopCode;
use crate::store::SqliteStore;
use async_trait::async_trait;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
struct MemoryShop {
    /// code → (id, active)
    codes: Mutex<BTreeMap<String, (String, bool)>>,
    calls: Mutex<Vec<String>>,
    refuse: Option<String>,
}

#[async_trait]
impl CouponApi for MemoryShop {
    fn platform(&self) -> Platform {
        Platform::Shopify
    }

    async fn find_code(&self, code: &str) -> Result<Option<ShopCode>, ApiError> {
        self.calls.lock().unwrap().push(format!("find {code}"));
        Ok(self
            .codes
            .lock()
            .unwrap()
            .get(code)
            .map(|(id, active)| ShopCode {
                id: id.clone(),
                active: *active,
            }))
    }

    async fn create_code(&self, coupon: &NewCoupon) -> Result<String, ApiError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("create {}", coupon.code));
        if self.refuse.as_deref() == Some(coupon.code.as_str()) {
            return Err(ApiError::refused("Code must be unique."));
        }
        let id = format!("gid://shopify/DiscountCodeNode/{}", coupon.code);
        self.codes
            .lock()
            .unwrap()
            .insert(coupon.code.clone(), (id.clone(), true));
        Ok(id)
    }

    async fn disable_code(&self, found: &ShopCode) -> Result<(), ApiError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("disable {}", found.id));
        for v in self.codes.lock().unwrap().values_mut() {
            if v.0 == found.id {
                v.1 = false;
            }
        }
        Ok(())
    }
}

fn issued(code: &str, version: i64) -> Vec<u8> {
    json!({ "schema_version": 1, "type": "coupon.issued", "code": code, "version": version,
        "order_id": "O-1", "customer_id": "701", "rule_id": "welcome", "insert_id": "welcome-coupon",
        "amount": "10.00", "currency": "EUR", "min_order": null, "expires_on": "2026-03-31",
        "occurred_at": "2026-01-05T10:00:00Z" })
    .to_string()
    .into_bytes()
}

fn voided(code: &str, version: i64) -> Vec<u8> {
    json!({ "schema_version": 1, "type": "coupon.voided", "code": code, "version": version,
        "order_id": "O-1", "customer_id": "701", "reason": "operator",
        "occurred_at": "2026-01-06T10:00:00Z" })
    .to_string()
    .into_bytes()
}

async fn setup(refuse: Option<&str>) -> (CouponSync, Arc<MemoryShop>, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(":memory:").await.unwrap());
    let shop = Arc::new(MemoryShop {
        refuse: refuse.map(str::to_string),
        ..MemoryShop::default()
    });
    let sync = CouponSync::new(
        store.clone(),
        vec![shop.clone() as Arc<dyn CouponApi>],
        crate::metrics::Metrics::new().coupon_sync.clone(),
        RetryPolicy::LOOKUP,
    );
    (sync, shop, store)
}

#[tokio::test]
async fn created_once_skipped_when_not_newer_and_disabled_when_voided() {
    let (sync, shop, store) = setup(None).await;
    let stop = CancellationToken::new();
    sync.handle(Some(b"W-1"), &issued("W-1", 1), &stop)
        .await
        .unwrap();
    // A re-delivery of the same version, and after the void a late copy of the issue.
    sync.handle(Some(b"W-1"), &issued("W-1", 1), &stop)
        .await
        .unwrap();
    sync.handle(Some(b"W-1"), &voided("W-1", 2), &stop)
        .await
        .unwrap();
    sync.handle(Some(b"W-1"), &issued("W-1", 1), &stop)
        .await
        .unwrap();
    assert_eq!(
        *shop.calls.lock().unwrap(),
        [
            "find W-1",
            "create W-1",
            "find W-1",
            "disable gid://shopify/DiscountCodeNode/W-1"
        ]
    );
    let r = store.coupon_sync("W-1", "shopify").await.unwrap().unwrap();
    assert_eq!((r.state, r.version), (SyncState::Disabled, 2));
    assert_eq!(
        r.shop_id.as_deref(),
        Some("gid://shopify/DiscountCodeNode/W-1")
    );
}

#[tokio::test]
async fn a_code_found_in_the_shop_is_not_created_and_a_refusal_is_kept() {
    let (sync, shop, store) = setup(Some("W-2")).await;
    shop.codes
        .lock()
        .unwrap()
        .insert("W-3".into(), ("gid://x/3".into(), true));
    let stop = CancellationToken::new();
    sync.handle(None, &issued("W-3", 1), &stop).await.unwrap();
    sync.handle(None, &issued("W-2", 1), &stop).await.unwrap();
    sync.handle(None, &issued("W-2", 1), &stop).await.unwrap();
    sync.handle(None, b"not json", &stop).await.unwrap();
    assert_eq!(
        *shop.calls.lock().unwrap(),
        ["find W-3", "find W-2", "create W-2"]
    );
    let found = store.coupon_sync("W-3", "shopify").await.unwrap().unwrap();
    assert_eq!(found.state, SyncState::Synced);
    let refused = store.coupon_sync("W-2", "shopify").await.unwrap().unwrap();
    assert_eq!(refused.state, SyncState::SyncFailed);
    assert_eq!(refused.error.as_deref(), Some("Code must be unique."));
    assert_eq!(refused.attempts, 1);
}

#[tokio::test]
async fn an_older_record_never_overwrites_a_newer_one() {
    let (_, _, store) = setup(None).await;
    let record = |version, state| SyncRecord {
        code: "W-4".into(),
        platform: "woocommerce".into(),
        state,
        version,
        shop_id: Some("7".into()),
        error: None,
        attempts: 1,
        updated_at: 0,
    };
    assert!(
        store
            .record_coupon_sync(&record(2, SyncState::Disabled))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_coupon_sync(&record(1, SyncState::Synced))
            .await
            .unwrap()
    );
    let r = store
        .coupon_sync("W-4", "woocommerce")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.state, r.version), (SyncState::Disabled, 2));
}
