//! Order events: the wire format of docs/REFERENCE.md §1, validated into domain types at the edge.
//!
//! Events are read from a `serde_json::Value` by hand rather than derived, so every rejection
//! names the exact field (`order.items[2].quantity: must be >= 1`) and money is read exactly.

use crate::money::Currency;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// Why an event was set aside (the `packwell-reason` of the DLQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    InvalidJson,
    UnknownType,
    MissingField,
    InvalidValue,
    KeyMismatch,
    Conflict,
    /// An amount, quantity or sum beyond the documented bounds ([`bounds`]), or one whose
    /// effect on the history cannot be held exactly: the history stays as it was.
    OutOfRange,
    /// A message over `[kafka] max_event_bytes`.
    TooLarge,
    /// The decision path failed on this event twice; it is set aside so the partition moves on.
    InternalError,
    /// A shop webhook that could not be turned into an event (docs/REFERENCE.md §8).
    Unmappable,
}

impl RejectReason {
    /// Every reason: the `packwell-reason` values the DLQ headers' schema lists (a test holds
    /// this list against an exhaustive `match`).
    pub const ALL: [RejectReason; 10] = [
        RejectReason::InvalidJson,
        RejectReason::UnknownType,
        RejectReason::MissingField,
        RejectReason::InvalidValue,
        RejectReason::KeyMismatch,
        RejectReason::Conflict,
        RejectReason::OutOfRange,
        RejectReason::TooLarge,
        RejectReason::InternalError,
        RejectReason::Unmappable,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidValue => "invalid_value",
            RejectReason::KeyMismatch => "key_mismatch",
            RejectReason::Conflict => "conflict",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::TooLarge => "too_large",
            RejectReason::InternalError => "internal_error",
            RejectReason::Unmappable => "unmappable",
        }
    }
}

/// An event that cannot be used, with a sentence naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejected {
    pub reason: RejectReason,
    pub message: String,
}

impl Rejected {
    pub(crate) fn missing(path: &str) -> Self {
        Rejected {
            reason: RejectReason::MissingField,
            message: format!("{path}: required field is missing"),
        }
    }
    pub(crate) fn invalid(path: &str, why: impl fmt::Display) -> Self {
        Rejected {
            reason: RejectReason::InvalidValue,
            message: format!("{path}: {why}"),
        }
    }
    /// A value or sum out of range (`out_of_range`), naming the field.
    pub fn out_of_range(path: &str, why: impl fmt::Display) -> Self {
        Rejected {
            reason: RejectReason::OutOfRange,
            message: format!("{path}: {why}"),
        }
    }
}

pub mod bounds;
pub mod compact;
mod digest;
mod fields;
mod json;
mod parse;

pub use parse::{event_from_value, parse_event, parse_event_within};

/// A validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub body: EventBody,
    /// SHA-256 of the event as parsed (see `event/digest.rs`): the same `event_id` with
    /// another digest is another event under a reused id (a conflict), not a redelivery.
    pub digest: [u8; 32],
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    OrderPlaced(Box<Order>),
    OrderShipped {
        order_id: String,
        customer_id: String,
        carrier: Option<String>,
        tracking: Option<String>,
    },
    OrderDelivered {
        order_id: String,
        customer_id: String,
        delivered_at: DateTime<Utc>,
    },
    OrderCancelled {
        order_id: String,
        customer_id: String,
    },
    OrderReturned {
        order_id: String,
        customer_id: String,
        items: Option<Vec<ReturnedItem>>,
        reason: Option<String>,
    },
    Feedback {
        customer_id: String,
        nps: u8,
        comment: Option<String>,
    },
    Unsubscribed {
        customer_id: String,
    },
    Subscribed {
        customer_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnedItem {
    pub sku: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: String,
    pub customer: Customer,
    pub currency: Currency,
    pub total: Decimal,
    pub items: Vec<Item>,
    pub shipping: Shipping,
    pub warehouse: String,
    pub channel: Option<String>,
    pub coupon_codes: Vec<String>,
    pub promised_delivery: Option<NaiveDate>,
}

impl Order {
    /// Distinct categories, in the order they first appear.
    pub fn categories(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::with_capacity(self.items.len());
        for item in &self.items {
            if !out.contains(&item.category.as_str()) {
                out.push(&item.category);
            }
        }
        out
    }

    /// Units in the order (saturating: an order built past the bounds cannot make it panic).
    pub fn item_count(&self) -> u32 {
        self.items
            .iter()
            .fold(0u32, |n, i| n.saturating_add(i.quantity))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: Option<String>,
    pub locale: Option<String>,
    pub time_zone: Option<Tz>,
    pub birthday: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub quantity: u32,
    pub unit_price: Decimal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Shipping {
    pub country: String,
    pub city: Option<String>,
    pub postcode: Option<String>,
}

impl Event {
    /// The customer this event belongs to (the Kafka key it must carry).
    pub fn customer_id(&self) -> &str {
        match &self.body {
            EventBody::OrderPlaced(o) => &o.customer.id,
            EventBody::OrderShipped { customer_id, .. }
            | EventBody::OrderDelivered { customer_id, .. }
            | EventBody::OrderCancelled { customer_id, .. }
            | EventBody::OrderReturned { customer_id, .. }
            | EventBody::Feedback { customer_id, .. }
            | EventBody::Unsubscribed { customer_id }
            | EventBody::Subscribed { customer_id } => customer_id,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match &self.body {
            EventBody::OrderPlaced(_) => "order.placed",
            EventBody::OrderShipped { .. } => "order.shipped",
            EventBody::OrderDelivered { .. } => "order.delivered",
            EventBody::OrderCancelled { .. } => "order.cancelled",
            EventBody::OrderReturned { .. } => "order.returned",
            EventBody::Feedback { .. } => "customer.feedback",
            EventBody::Unsubscribed { .. } => "customer.unsubscribed",
            EventBody::Subscribed { .. } => "customer.subscribed",
        }
    }

    pub fn order_id(&self) -> Option<&str> {
        match &self.body {
            EventBody::OrderPlaced(o) => Some(&o.id),
            EventBody::OrderShipped { order_id, .. }
            | EventBody::OrderDelivered { order_id, .. }
            | EventBody::OrderCancelled { order_id, .. }
            | EventBody::OrderReturned { order_id, .. } => Some(order_id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn placed() -> Value {
        json!({"event_id": "e1", "type": "order.placed", "occurred_at": "2026-11-20T10:00:00Z",
            "order": {"id": "O-1", "customer": {"id": "C-1", "email": "a@b.c", "first_name": "Ana",
                "time_zone": "Europe/Berlin", "birthday": "1990-03-04"},
                "currency": "EUR", "total": "54.90",
                "items": [{"sku": "B1", "name": "Book", "category": "books", "quantity": 2, "unit_price": 27.45}],
                "shipping": {"country": "DE"}, "warehouse": "WH-BER"}})
    }

    fn reject(mut v: Value, path: &[&str], new: Value) -> Rejected {
        let mut cur = &mut v;
        for p in &path[..path.len() - 1] {
            cur = match p.parse::<usize>() {
                Ok(i) => &mut cur[i],
                Err(_) => &mut cur[*p],
            };
        }
        let last = path[path.len() - 1];
        if new.is_null() {
            cur.as_object_mut().unwrap().remove(last);
        } else {
            cur[last] = new;
        }
        event_from_value(&v).unwrap_err()
    }

    #[test]
    fn a_valid_order_parses_exactly() {
        let e = event_from_value(&placed()).unwrap();
        let EventBody::OrderPlaced(o) = &e.body else {
            panic!("not an order")
        };
        assert_eq!(o.total.to_string(), "54.90");
        assert_eq!(o.items[0].unit_price.to_string(), "27.45");
        assert_eq!(o.customer.time_zone, Some(chrono_tz::Europe::Berlin));
        assert_eq!(e.customer_id(), "C-1");
    }

    #[test]
    fn rejections_name_the_field() {
        let r = reject(placed(), &["order", "items", "0", "quantity"], json!(0));
        assert_eq!(r.reason, RejectReason::InvalidValue);
        assert_eq!(r.message, "order.items[0].quantity: must be >= 1, found 0");
        let r = reject(placed(), &["order", "currency"], json!("EURO"));
        assert!(
            r.message.starts_with("order.currency: unknown currency"),
            "{}",
            r.message
        );
        let r = reject(placed(), &["order", "total"], json!("12,50"));
        assert!(r.message.starts_with("order.total: "), "{}", r.message);
        let r = reject(placed(), &["order", "customer", "email"], Value::Null);
        assert_eq!(r.reason, RejectReason::MissingField);
        assert_eq!(r.message, "order.customer.email: required field is missing");
        let r = reject(placed(), &["type"], json!("order.teleported"));
        assert_eq!(r.reason, RejectReason::UnknownType);
    }

    #[test]
    fn the_digest_ignores_key_order_and_spacing_but_not_values() {
        let a = parse_event(br#"{"event_id":"e","type":"customer.feedback","occurred_at":"2026-11-20T10:00:00Z","customer_id":"C","nps":9}"#).unwrap();
        let b = parse_event(b"{ \"nps\": 9, \"customer_id\": \"C\",\n \"type\": \"customer.feedback\", \"occurred_at\": \"2026-11-20T10:00:00Z\", \"event_id\": \"e\" }").unwrap();
        let c = parse_event(br#"{"event_id":"e","type":"customer.feedback","occurred_at":"2026-11-20T10:00:00Z","customer_id":"C","nps":8}"#).unwrap();
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
        // Compared as parsed: an amount written otherwise, a field not read, an optional
        // field given as null are the same event; a value read is not.
        let base = event_from_value(&placed()).unwrap();
        let mut same = placed();
        same["order"]["items"][0]["unit_price"] = json!("27.450");
        same["order"]["total"] = json!(54.9);
        same["trace_id"] = json!("abc");
        same["order"]["channel"] = Value::Null;
        assert_eq!(event_from_value(&same).unwrap().digest, base.digest);
        let mut other = placed();
        other["order"]["shipping"]["city"] = json!("Berlin");
        assert_ne!(event_from_value(&other).unwrap().digest, base.digest);
    }

    #[test]
    fn values_past_the_bounds_are_out_of_range() {
        let r = reject(
            placed(),
            &["order", "total"],
            json!("79228162514264337593543950335"),
        );
        assert_eq!(r.reason, RejectReason::OutOfRange);
        assert!(r.message.starts_with("order.total: "), "{}", r.message);
        let r = reject(
            placed(),
            &["order", "items", "0", "unit_price"],
            json!("1.00001"),
        );
        assert_eq!(r.reason, RejectReason::OutOfRange);
        assert!(
            r.message.starts_with("order.items[0].unit_price: "),
            "{}",
            r.message
        );
        let r = reject(
            placed(),
            &["order", "items", "0", "quantity"],
            json!(4_294_967_295u64),
        );
        assert_eq!(r.reason, RejectReason::OutOfRange);
        assert!(
            r.message.starts_with("order.items[0].quantity: "),
            "{}",
            r.message
        );
        let r = reject(
            placed(),
            &["order", "customer", "first_name"],
            json!("x".repeat(5000)),
        );
        assert_eq!(r.reason, RejectReason::OutOfRange);
        // Trailing zeros past the fourth place are dropped, and nothing else.
        let mut v = placed();
        v["order"]["total"] = json!("1.0000000000000000000000000000");
        let Ok(Event {
            body: EventBody::OrderPlaced(o),
            ..
        }) = event_from_value(&v)
        else {
            panic!("parses")
        };
        assert_eq!(o.total.to_string(), "1.0000");
        // The largest accepted values still parse, to the last place.
        let mut v = placed();
        v["order"]["total"] = json!("1000000000000.0000");
        v["order"]["items"][0]["quantity"] = json!(1_000_000);
        assert!(event_from_value(&v).is_ok());
    }

    #[test]
    fn addresses_and_ids_with_control_characters_are_invalid() {
        let r = reject(
            placed(),
            &["order", "customer", "email"],
            json!("a@b.c\r\nBcc: x@y.z"),
        );
        assert_eq!(r.reason, RejectReason::InvalidValue);
        assert!(
            r.message
                .starts_with("order.customer.email: must not contain control"),
            "{}",
            r.message
        );
        let r = reject(
            placed(),
            &["order", "customer", "email"],
            json!("not an address"),
        );
        assert_eq!(r.reason, RejectReason::InvalidValue);
        let r = reject(placed(), &["order", "id"], json!("O\u{0}1"));
        assert_eq!(r.reason, RejectReason::InvalidValue);
    }

    #[test]
    fn nps_must_be_0_to_10() {
        let v = json!({"event_id": "e", "type": "customer.feedback", "occurred_at": "2026-11-20T10:00:00Z",
            "customer_id": "C", "nps": 11});
        assert_eq!(
            event_from_value(&v).unwrap_err().message,
            "nps: must be between 0 and 10, found 11"
        );
    }

    #[test]
    fn not_json_is_rejected() {
        assert_eq!(
            parse_event(b"{oops").unwrap_err().reason,
            RejectReason::InvalidJson
        );
        assert_eq!(
            parse_event(b"[1]").unwrap_err().reason,
            RejectReason::InvalidValue
        );
    }
}
