//! Packwell: post-purchase personalization. Order events in; what goes into the parcel
//! (coupons, notes, gifts, samples, packaging) and which follow-up e-mails to schedule out.
//!
//! The map, in the order data flows:
//! - [`event`]: the wire format of order events, validated into domain types at the edge.
//! - [`money`]: exact decimal amounts and ISO 4217 currencies (never a float).
//! - [`profile`]: folding events into a bounded per-customer purchase history.
//! - [`rules`]: the marketer's rule folder, validated and compiled into a [`rules::RuleSet`].
//! - [`engine`]: the pure decision — segments, rules, inserts, follow-ups.
//! - [`coupon`]: coupon codes derived from a secret key.
//! - [`render`]: Handlebars notes and e-mails, and the template checks of `validate`.
//! - [`step`]: the one event path: an event applied to the state it touches, every effect
//!   returned as data; the store, `import`, `backtest`, `simulate` and `test` all call it.
//! - [`replay`]: events replayed in memory through the step, the whole state kept.
//! - [`store`]: the source of truth (SQLite or PostgreSQL): a batch's state loaded and its
//!   effects written in one transaction.
//! - [`message`]: the messages the outbox sends (coupons, customer preferences, the DLQ) as
//!   types, and the JSON Schemas of every message, generated from them.
//! - [`report`]: the effect report: treated against held-out customers, per rule.
//! - [`connector`]: Shopify and WooCommerce: their webhooks in as events, Packwell's codes out
//!   into their checkout.
//! - [`service`]: `packwell run`: consumer, relay, e-mail sender, reloads; it starts [`http`].
//! - [`http`]: the HTTP layer: routes (one file per group), their state, errors, tokens.
//! - [`metrics`]: the Prometheus metrics every part counts into.
//! - [`station`]: the packing stations' insert-list cache, printable card and page.
//! - [`email`]: follow-up e-mails: checks at send time, rendering, providers, the sender.
//! - [`kafka`]: topic names, the shared client settings, the embedded development broker.
//! - [`config`]: layered configuration (defaults, file, `PACKWELL_*`).
//! - [`cli`]: the commands behind the `packwell` binary.
//! - [`files`]: the data folder's private files and folders (0700/0600 from the start).
//! - [`fault`]: a switch that makes chosen steps fail, for the tests of failure handling.
//! - [`suggest`]: "did you mean ...?": the known name closest to a misspelt one, for every
//!   message that names something unknown.
//!
//! Money in and out is exact:
//! ```
//! use packwell::money::{amount_from_json, format_amount};
//! let v: serde_json::Value = serde_json::from_str("54.9").unwrap();
//! assert_eq!(format_amount(amount_from_json(&v).unwrap()), "54.90");
//! ```

pub mod backtest;
pub mod cli;
pub mod config;
pub mod connector;
pub mod coupon;
pub mod email;
pub mod engine;
pub mod event;
pub mod fault;
pub mod files;
pub mod http;
pub mod kafka;
pub mod message;
pub mod metrics;
pub mod money;
pub mod profile;
pub mod render;
pub mod replay;
pub mod report;
pub mod rules;
pub mod service;
pub mod station;
pub mod step;
pub mod store;
pub mod suggest;
pub mod workbench;

/// The text of a caught panic's payload (a `&str` or `String` for `panic!` with a message).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}
