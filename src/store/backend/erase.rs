//! What `forget` (`sql/erase.rs`) uses that does not depend on the database: the e-mail jobs
//! it reads, and how it tells what names the customer. What each backend does afterwards, so
//! that no copy of what was erased stays readable, is in `sqlite.rs` (SQLite overwrites what
//! it frees, `secure_delete` set on every connection, and empties its WAL) and `postgres.rs`
//! (PostgreSQL vacuums the tables it wrote).

use crate::store::scrub::Needles;
use serde_json::Value;

/// One of the customer's e-mail jobs, as `forget` finds it.
pub(super) struct JobRow {
    pub(super) order_id: String,
    pub(super) followup_id: String,
    pub(super) resends: i64,
    pub(super) message: Option<String>,
    pub(super) to_hash: Option<String>,
    pub(super) detail: Option<String>,
}

/// The recipient of a rendered e-mail (`"First Last" <address>`): the name, its words and
/// the address, for the needles.
pub(super) fn add_recipient(needles: &mut Needles, message: &str) {
    let Ok(v) = serde_json::from_str::<Value>(message) else {
        return;
    };
    let Some(to) = v.get("to").and_then(Value::as_str) else {
        return;
    };
    match to.rsplit_once('<') {
        Some((name, address)) => {
            needles.add(address.trim_end_matches('>'));
            let name = name.trim().trim_matches('"');
            needles.add(name);
            name.split_whitespace().for_each(|w| needles.add(w));
        }
        None => needles.add(to),
    }
}

/// Whether a DLQ row without a key holds an event of `customer_id`.
pub(super) fn names_customer(payload: &[u8], customer_id: &str) -> bool {
    serde_json::from_slice::<Value>(payload).is_ok_and(|v| {
        [
            v.pointer("/order/customer/id"),
            v.get("customer_id"),
            v.pointer("/customer/id"),
        ]
        .into_iter()
        .flatten()
        .any(|c| c.as_str() == Some(customer_id))
    })
}
