//! The values that go in and out of the store.

use crate::coupon::CouponKey;
use crate::engine::{Decision, Shop};
use crate::event::{Event, Rejected};
use crate::rules::RuleSet;
use crate::step::Applied;

/// Most rows in one statement: 1 000 rows of at most 11 columns stay well inside both
/// databases' limits on parameters (SQLite 32 766, PostgreSQL 65 535).
pub const ROWS_PER_STATEMENT: usize = 1000;

/// The row counts of the multi-row statements of a batch, largest first.
const STATEMENT_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// `rows` cut into slices of the few sizes of [`STATEMENT_SIZES`], largest first: a batch's
/// multi-row statements then have only a handful of shapes, each prepared once per connection
/// and kept (parsing and planning a fresh 500-row `INSERT` cost as much as running it).
pub fn statement_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = STATEMENT_SIZES
            .into_iter()
            .find(|&s| s <= rest.len())
            .unwrap_or(1);
        let (head, tail) = rest.split_at(size);
        rest = tail;
        Some(head)
    })
}

/// Prepared statements each connection keeps: the batch's statements in each of their sizes.
pub const STATEMENT_CACHE: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrating the store: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the store's schema is newer than this Packwell knows (migration {0}): run a newer Packwell, or restore a backup"
    )]
    SchemaTooNew(i64),
    #[error("fenced off: partition {topic}/{partition} is owned by another instance now")]
    Fenced { topic: String, partition: i32 },
    #[error(
        "the coupon key's fingerprint {found} differs from the one this store was made with ({stored}): codes would not match; use the original key file"
    )]
    KeyMismatch { stored: String, found: String },
    /// Counters or a coupon code this batch counted on were taken by another instance; the
    /// batch is applied again, order by order.
    #[error("counters changed by another instance while the batch was applied")]
    Contended,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The step panicked on the event at `offset`; the batch was rolled back.
    #[error("the decision path failed on the event at offset {offset}: {message}")]
    Panicked { offset: i64, message: String },
    #[error("{0}")]
    Other(String),
}

/// One consumed message: its offset, key and value, and the event parsed from it (or why not).
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub event: Result<Event, Rejected>,
    /// False for events older than `[decide] max_event_age` and for imports: fold only.
    pub decide: bool,
}

/// Where a batch came from, checked and advanced in the batch's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// A scratch or test store: nothing to check.
    None,
    /// Offsets [start, end) of a partition owned with `epoch`.
    Partition {
        topic: String,
        partition: i32,
        epoch: i64,
        start: i64,
        end: i64,
    },
    /// Lines [start, end) of an import of `source`.
    Import {
        source: String,
        start: i64,
        end: i64,
    },
}

impl Fence {
    /// Where a message of this batch came from, as its DLQ headers name it.
    pub fn dlq_source(&self) -> crate::message::DlqSource<'_> {
        match self {
            Fence::Partition {
                topic, partition, ..
            } => crate::message::DlqSource {
                topic,
                partition: Some(*partition),
            },
            Fence::Import { source, .. } => crate::message::DlqSource {
                topic: source,
                partition: None,
            },
            Fence::None => crate::message::DlqSource::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Batch {
    pub fence: Fence,
    pub items: Vec<BatchItem>,
}

/// What deciding needs besides the store: the rules, the coupon key, the shop.
#[derive(Clone)]
pub struct DecideEnv {
    pub rules: std::sync::Arc<RuleSet>,
    pub key: CouponKey,
    pub shop: Shop,
}

/// What a batch did, event by event (in batch order).
#[derive(Debug, Default)]
pub struct BatchReport {
    pub applied: Vec<Applied>,
    /// Events set aside in the DLQ (`rejections.len()`), and why, in batch order.
    pub rejected: usize,
    pub rejections: Vec<crate::event::RejectReason>,
    pub seen_before: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub partition: i32,
    pub next_offset: i64,
    pub epoch: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredDecision {
    pub decision: Decision,
    pub warehouse: String,
    /// The packing station's confirmation, once there is one.
    pub packed: Option<PackedConfirmation>,
}

/// Why a station did not pack an insert (docs/REFERENCE.md §7), and so what happens to its stock.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NotPackedReason {
    /// None left at the station: that warehouse's remaining stock of the insert becomes 0.
    OutOfStock,
    /// Spoilt: it does not go back to stock.
    Damaged,
    /// Any other reason: it goes back to stock.
    Other,
}

impl NotPackedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            NotPackedReason::OutOfStock => "out_of_stock",
            NotPackedReason::Damaged => "damaged",
            NotPackedReason::Other => "other",
        }
    }
}

/// One given insert of a confirmation: packed, or not with a reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PackedLine {
    pub insert_id: String,
    /// The rule that gave the insert.
    pub rule_id: String,
    pub packed: bool,
    /// Why not, when not packed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<NotPackedReason>,
}

/// What a packing station confirmed went into a parcel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PackedConfirmation {
    /// The station's name, as it sent it.
    pub station: String,
    /// When the confirmation was first recorded (UTC).
    #[schema(format = DateTime)]
    pub confirmed_at: String,
    /// One line per insert of the decision, in the decision's order.
    pub inserts: Vec<PackedLine>,
}

/// What became of a confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackedOutcome {
    /// The first confirmation of the order: recorded, with its effects.
    Recorded(PackedConfirmation),
    /// The same confirmation again: nothing changed; the one recorded first.
    Repeated(PackedConfirmation),
    /// A different confirmation was recorded before: nothing changed; that one.
    Conflict(PackedConfirmation),
    /// The order has no decision.
    NotDecided,
    /// The order was cancelled before anything was confirmed: nothing changed.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// JSON object of header name → value.
    pub headers: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponRow {
    pub code: String,
    pub insert_id: String,
    pub state: String,
    pub version: i64,
    pub redeemed_order_id: Option<String>,
}

/// What `forget` erased, by kind (rows whose personal data went), and what finds the
/// customer's e-mails outside the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForgetReport {
    pub profiles: u64,
    pub orders: u64,
    pub decisions: u64,
    pub email_jobs: u64,
    /// Outbox messages scrubbed, sent or not.
    pub outbox_rows: u64,
    /// Kept events removed (`store/events.rs`).
    pub events: u64,
    /// The keys the customer's e-mails were handed over under (the outbox folder's file names).
    pub email_keys: Vec<String>,
    /// Hashes of the addresses their e-mails went to ([`crate::store::emails::address_hash`]).
    pub address_hashes: Vec<String>,
    /// What the backend did so that no copy stays readable in the database's own files.
    pub cleanup: Option<String>,
}

/// An operator's setting of one stock counter: `remaining` of an insert in a slot (`*` for a
/// pool, else the warehouse), counted against `allocation`, the insert's `stock` in the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockSetting {
    pub insert_id: String,
    pub slot: String,
    pub allocation: i64,
    /// At most `allocation`, at least 0.
    pub remaining: i64,
}

/// What a [`StockSetting`] changed: the counter's `used` before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockChange {
    pub insert_id: String,
    pub slot: String,
    pub allocation: i64,
    pub used_before: i64,
    pub used_after: i64,
}

/// What voiding a coupon by hand did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoidOutcome {
    /// Voided now; its `coupon.voided` message (this version) is in the outbox.
    Voided {
        version: i64,
        order_id: String,
        customer_id: String,
    },
    /// No coupon has this code.
    Unknown,
    /// Already `voided` or `redeemed` (then with the order it was redeemed on): unchanged.
    Final {
        state: String,
        redeemed_order_id: Option<String>,
    },
}

/// A DLQ row of the outbox (topic `orders.dlq`), sent or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqRow {
    pub id: i64,
    /// The rejected message's key and value, unchanged (a value over 512 KiB cut there).
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// JSON object of header name → value.
    pub headers: Option<String>,
    pub sent: bool,
    /// When the row was written (Unix seconds): when the event was rejected.
    pub created_at: i64,
}

/// One row of the operator log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorLogRow {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub actor: String,
    /// `stock.set`, `coupon.void`, `dlq.replay`.
    pub action: String,
    /// What it was done to: `insert/slot`, a coupon code, a topic.
    pub subject: String,
    /// A JSON object.
    pub detail: String,
}

// The topic names live in `crate::kafka`; the store names the ones its outbox rows go to.
pub use crate::kafka::{
    TOPIC_COUPONS, TOPIC_ORDERS, TOPIC_ORDERS_DLQ as TOPIC_DLQ,
    TOPIC_PACKING_INSTRUCTIONS as TOPIC_PACKING,
};
pub use crate::message::DLQ_MAX_VALUE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_chunks_cover_the_rows_in_order_in_the_fixed_sizes() {
        for n in 0..1200 {
            let rows: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = statement_chunks(&rows).collect();
            assert!(chunks.iter().all(|c| STATEMENT_SIZES.contains(&c.len())));
            assert!(chunks.windows(2).all(|w| w[0].len() >= w[1].len()));
            assert_eq!(chunks.concat(), rows);
        }
        assert_eq!(
            statement_chunks(&[0u8; 500])
                .map(<[u8]>::len)
                .collect::<Vec<_>>(),
            [256, 64, 64, 64, 16, 16, 16, 4]
        );
    }
}
