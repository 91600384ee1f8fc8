//! Coupon sync (docs/REFERENCE.md §8): every code Packwell issues created as a discount in the
//! shop's checkout, and disabled there when voided.
//!
//! - [`message`]: a `coupons` message read and checked.
//! - [`consumer`]: the Kafka side: a consumer of `coupons` in a group of its own, one message
//!   at a time, its offset committed only once the store has recorded the outcome.
//! - this module: what one message does in each shop that syncs.
//!
//! Idempotent by code: each try starts by looking the code up in the shop, so a create whose
//! answer was lost (or a crash before the outcome was recorded) finds the discount there and
//! creates nothing. A message of a version not above the one recorded for the code is skipped.
//! A refusal is recorded `sync_failed` at once; failures worth another try are tried again with
//! back-off ([`RetryPolicy::SYNC`]: 8 tries over about two minutes), then recorded
//! `sync_failed` too. A recorded code is never tried again for the same message.

pub mod consumer;
pub mod message;

use super::api::{ApiError, CouponApi, NewCoupon, RetryPolicy, with_retries};
use crate::metrics::CouponSyncMetrics;
use crate::store::{Store, StoreError, SyncRecord, SyncState};
use message::CouponMessage;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The consumer group of the sync worker: its own, beside the service's `[kafka] group`.
pub fn group_of(group: &str) -> String {
    format!("{group}-coupon-sync")
}

/// The service stopped while a message was under way: it is not recorded, and its offset is
/// not committed; the next start handles it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// What the shop did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Done {
    Created(String),
    Existed(String),
    Disabled(Option<String>),
}

/// Syncs `coupons` messages to the shops whose connector has `sync_coupons = true`.
pub struct CouponSync {
    store: Arc<dyn Store>,
    shops: Vec<Arc<dyn CouponApi>>,
    metrics: CouponSyncMetrics,
    policy: RetryPolicy,
}

impl CouponSync {
    pub fn new(
        store: Arc<dyn Store>,
        shops: Vec<Arc<dyn CouponApi>>,
        metrics: CouponSyncMetrics,
        policy: RetryPolicy,
    ) -> CouponSync {
        CouponSync {
            store,
            shops,
            metrics,
            policy,
        }
    }

    /// Handles one message of `coupons` in every shop, recording each outcome. `Ok` means the
    /// message is done with (its offset may be committed), unreadable ones included.
    pub async fn handle(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        stop: &CancellationToken,
    ) -> Result<(), Stopped> {
        let message = match message::parse(key, payload) {
            Ok(m) => m,
            Err(why) => {
                tracing::warn!(%why, "coupon sync: a message of coupons that is not a coupon event; skipped");
                self.count("none", "unreadable");
                return Ok(());
            }
        };
        let mut email: Option<Option<String>> = None;
        for shop in &self.shops {
            let platform = shop.platform().as_str();
            let code = message.code();
            let recorded = self
                .store_call(stop, || self.store.coupon_sync(code, platform))
                .await?;
            if let Some(r) = recorded.filter(|r| r.version >= message.version()) {
                tracing::debug!(
                    code,
                    platform,
                    version = message.version(),
                    recorded = r.version,
                    "coupon sync: already recorded; skipped"
                );
                self.count(platform, "skipped");
                continue;
            }
            let new = match &message {
                CouponMessage::Issued(i) => {
                    // WooCommerce restricts the coupon to the customer's address, which the
                    // store keeps in their profile (gone after `forget`: then none).
                    let address = match (&email, shop.platform()) {
                        (Some(e), _) => e.clone(),
                        (None, crate::config::Platform::WooCommerce) => {
                            let profile = self
                                .store_call(stop, || self.store.profile(&i.customer_id))
                                .await?;
                            let e = profile.and_then(|p| p.email).filter(|e| !e.is_empty());
                            email = Some(e.clone());
                            e
                        }
                        (None, _) => None,
                    };
                    Some(NewCoupon {
                        code: i.code.clone(),
                        rule_id: i.rule_id.clone(),
                        customer_id: i.customer_id.clone(),
                        amount: i.amount,
                        min_order: i.min_order,
                        expires_on: i.expires_on,
                        starts_at: i.occurred_at.clone(),
                        email: address,
                    })
                }
                CouponMessage::Voided { .. } => None,
            };
            let record = self.sync_one(&**shop, &message, new.as_ref(), stop).await?;
            self.store_call(stop, || self.store.record_coupon_sync(&record))
                .await?;
        }
        Ok(())
    }

    /// The message in one shop, tried until done, refused, or out of tries.
    async fn sync_one(
        &self,
        shop: &dyn CouponApi,
        message: &CouponMessage,
        new: Option<&NewCoupon>,
        stop: &CancellationToken,
    ) -> Result<SyncRecord, Stopped> {
        let platform = shop.platform().as_str();
        let code = message.code();
        let tries = AtomicU32::new(0);
        let retried = self.metrics.retried.with_label_values(&[platform]);
        let attempts = with_retries(
            self.policy,
            None,
            |_| retried.inc(),
            || {
                tries.fetch_add(1, Ordering::Relaxed);
                attempt(shop, code, new)
            },
        );
        let result = tokio::select! {
            r = attempts => r,
            _ = stop.cancelled() => return Err(Stopped),
        };
        let mut record = SyncRecord {
            code: code.to_string(),
            platform: platform.to_string(),
            state: SyncState::Synced,
            version: message.version(),
            shop_id: None,
            error: None,
            attempts: i64::from(tries.load(Ordering::Relaxed)),
            updated_at: chrono::Utc::now().timestamp(),
        };
        let outcome = match result {
            Ok(Done::Created(id)) => {
                record.shop_id = Some(id);
                "created"
            }
            Ok(Done::Existed(id)) => {
                record.shop_id = Some(id);
                "existed"
            }
            Ok(Done::Disabled(id)) => {
                record.state = SyncState::Disabled;
                record.shop_id = id;
                "disabled"
            }
            Err((e, tried)) => {
                record.state = SyncState::SyncFailed;
                record.error = Some(match e {
                    ApiError::Refused { detail } => detail,
                    ApiError::Transient { detail, .. } => {
                        format!("gave up after {tried} tries: {detail}")
                    }
                });
                tracing::warn!(
                    code,
                    platform,
                    error = record.error.as_deref().unwrap_or(""),
                    "coupon sync: failed"
                );
                "failed"
            }
        };
        tracing::info!(
            code,
            platform,
            outcome,
            version = record.version,
            "coupon sync"
        );
        self.count(platform, outcome);
        Ok(record)
    }

    fn count(&self, platform: &str, outcome: &str) {
        self.metrics
            .synced
            .with_label_values(&[platform, outcome])
            .inc();
    }

    /// A store call, tried again until it answers: the outcome must be recorded before the
    /// offset moves on, and the shop's side is idempotent, so waiting costs nothing but time.
    async fn store_call<T, F, Fut>(&self, stop: &CancellationToken, call: F) -> Result<T, Stopped>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut wait = Duration::from_millis(100);
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    tracing::warn!(%e, "coupon sync: the store does not answer; trying again");
                    tokio::select! {
                        _ = stop.cancelled() => return Err(Stopped),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// One try: look the code up, then create or disable it as the message says.
async fn attempt(
    shop: &dyn CouponApi,
    code: &str,
    new: Option<&NewCoupon>,
) -> Result<Done, ApiError> {
    let found = shop.find_code(code).await?;
    match (new, found) {
        (Some(_), Some(f)) => Ok(Done::Existed(f.id)),
        (Some(coupon), None) => {
            let id = shop.create_code(coupon).await?;
            crate::fault::crash(crate::fault::Point::SyncCreated, code);
            Ok(Done::Created(id))
        }
        (None, None) => Ok(Done::Disabled(None)),
        (None, Some(f)) if !f.active => Ok(Done::Disabled(Some(f.id))),
        (None, Some(f)) => {
            shop.disable_code(&f).await?;
            Ok(Done::Disabled(Some(f.id)))
        }
    }
}

#[cfg(test)]
mod tests;
