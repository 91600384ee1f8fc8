//! Where each issued code stands in the shops' checkouts (docs/REFERENCE.md §8, coupon sync):
//! one row per code and platform in `coupon_sync`, written by the sync worker after the shop
//! answered, and what `packwell coupon list` reads (the store's coupons with those rows).
//!
//! A row carries the version of the `coupons` message it recorded, so that a message of an
//! older version (a late re-send) is recognised and skipped. Codes are not personal data:
//! `forget` leaves the rows; retention removes those whose coupon the store no longer holds.
//!
//! The SQL is in `backend/sql/coupon_sync.rs`, written once for both backends.

use super::StoreError;
use async_trait::async_trait;

/// A code's state in one shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// The shop has the discount (created by Packwell, or found there already).
    Synced,
    /// Voided in Packwell and disabled in the shop (or never there to disable).
    Disabled,
    /// The shop refused it, or did not answer within the retry bound: `error` says why.
    SyncFailed,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Synced => "synced",
            SyncState::Disabled => "disabled",
            SyncState::SyncFailed => "sync_failed",
        }
    }

    pub fn parse(text: &str) -> Option<SyncState> {
        match text {
            "synced" => Some(SyncState::Synced),
            "disabled" => Some(SyncState::Disabled),
            "sync_failed" => Some(SyncState::SyncFailed),
            _ => None,
        }
    }
}

/// One code's row for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRecord {
    pub code: String,
    /// `shopify` or `woocommerce`.
    pub platform: String,
    pub state: SyncState,
    /// The version of the `coupons` message this row records.
    pub version: i64,
    /// The shop's id of the discount, when it has one.
    pub shop_id: Option<String>,
    /// The shop's refusal, or the last failure, for `sync_failed`.
    pub error: Option<String>,
    /// Calls to the shop the last message took.
    pub attempts: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// Which coupons `coupon list` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CouponFilter {
    All,
    /// The coupon's own state: `issued`, `voided` or `redeemed`.
    State(String),
    /// Coupons some shop has as `sync_failed`.
    SyncFailed,
}

/// A coupon as `coupon list` shows it, with its rows in the shops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponListing {
    pub code: String,
    pub order_id: String,
    pub customer_id: String,
    pub insert_id: String,
    pub amount: String,
    pub currency: String,
    pub expires_on: String,
    pub state: String,
    pub version: i64,
    pub redeemed_order_id: Option<String>,
    /// Unix seconds.
    pub issued_at: i64,
    /// By platform name.
    pub sync: Vec<SyncRecord>,
}

/// The sync rows (every [`Store`](super::Store) offers them).
#[async_trait]
pub trait CouponSyncStore {
    /// The row of a code in one platform's shop.
    async fn coupon_sync(
        &self,
        code: &str,
        platform: &str,
    ) -> Result<Option<SyncRecord>, StoreError>;
    /// Writes a code's row, unless one of a newer version is there already (a late message
    /// never overwrites what a newer one recorded). Returns whether it was written.
    async fn record_coupon_sync(&self, record: &SyncRecord) -> Result<bool, StoreError>;
    /// The coupons `filter` selects, newest issued first, at most `limit`, each with its sync
    /// rows.
    async fn coupon_listing(
        &self,
        filter: &CouponFilter,
        limit: i64,
    ) -> Result<Vec<CouponListing>, StoreError>;
}
