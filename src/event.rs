//! Order events: the wire format of CONTRACT §1, validated into domain types at the edge.
//!
//! Events are read from a `serde_json::Value` by hand rather than derived, so every rejection
//! names the exact field (`order.items[2].quantity: must be >= 1`) and money is read exactly.

use crate::money::Currency;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use json::Json;
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
}

impl RejectReason {
    /// Every reason: the `packwell-reason` values the DLQ headers' schema lists (a test holds
    /// this list against an exhaustive `match`).
    pub const ALL: [RejectReason; 9] = [
        RejectReason::InvalidJson,
        RejectReason::UnknownType,
        RejectReason::MissingField,
        RejectReason::InvalidValue,
        RejectReason::KeyMismatch,
        RejectReason::Conflict,
        RejectReason::OutOfRange,
        RejectReason::TooLarge,
        RejectReason::InternalError,
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

use fields::Fields;

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

/// Parses an event no larger than `max_bytes` (`[kafka] max_event_bytes`); a larger one is
/// not parsed at all (`too_large`). The JSON parser's own nesting limit (128) keeps a deep
/// document from exhausting the stack.
pub fn parse_event_within(bytes: &[u8], max_bytes: usize) -> Result<Event, Rejected> {
    if bytes.len() > max_bytes {
        return Err(Rejected {
            reason: RejectReason::TooLarge,
            message: format!(
                "value: {} bytes, over [kafka] max_event_bytes = {max_bytes}",
                bytes.len()
            ),
        });
    }
    parse_event(bytes)
}

/// Parses and validates one event from its JSON bytes.
pub fn parse_event(bytes: &[u8]) -> Result<Event, Rejected> {
    let json = Json::parse(bytes).map_err(|e| Rejected {
        reason: RejectReason::InvalidJson,
        message: format!("not valid JSON: {e}"),
    })?;
    event_from_json(&json)
}

/// Validates an already parsed JSON value as an event.
pub fn event_from_value(value: &Value) -> Result<Event, Rejected> {
    event_from_json(&Json::from_value(value))
}

fn event_from_json(json: &Json) -> Result<Event, Rejected> {
    let root = Fields::root(json, "event")?;
    let event_id = root.plain_string("event_id")?;
    let kind = root.string("type")?;
    let occurred_at = root.timestamp("occurred_at")?;
    let body = match kind.as_str() {
        "order.placed" => EventBody::OrderPlaced(Box::new(parse_order(&root.object("order")?)?)),
        "order.shipped" => EventBody::OrderShipped {
            order_id: root.plain_string("order_id")?,
            customer_id: root.plain_string("customer_id")?,
            carrier: root.opt_string("carrier")?,
            tracking: root.opt_string("tracking")?,
        },
        "order.delivered" => EventBody::OrderDelivered {
            order_id: root.plain_string("order_id")?,
            customer_id: root.plain_string("customer_id")?,
            delivered_at: root.timestamp("delivered_at")?,
        },
        "order.cancelled" => EventBody::OrderCancelled {
            order_id: root.plain_string("order_id")?,
            customer_id: root.plain_string("customer_id")?,
        },
        "order.returned" => {
            let items = match root.opt_array("items")? {
                None => None,
                Some(list) => {
                    let mut out = Vec::with_capacity(list.len());
                    for (i, v) in list.iter().enumerate() {
                        let item = root.child(v, &format!("items[{i}]"))?;
                        out.push(ReturnedItem {
                            sku: item.string("sku")?,
                            quantity: item.quantity("quantity")?,
                        });
                    }
                    Some(out)
                }
            };
            EventBody::OrderReturned {
                order_id: root.plain_string("order_id")?,
                customer_id: root.plain_string("customer_id")?,
                items,
                reason: root.opt_string("reason")?,
            }
        }
        "customer.feedback" => {
            let nps = root.integer("nps")?;
            if !(0..=10).contains(&nps) {
                return Err(Rejected::invalid(
                    "nps",
                    format!("must be between 0 and 10, found {nps}"),
                ));
            }
            EventBody::Feedback {
                customer_id: root.plain_string("customer_id")?,
                nps: nps as u8,
                comment: root.opt_string("comment")?,
            }
        }
        "customer.unsubscribed" => EventBody::Unsubscribed {
            customer_id: root.plain_string("customer_id")?,
        },
        "customer.subscribed" => EventBody::Subscribed {
            customer_id: root.plain_string("customer_id")?,
        },
        other => {
            return Err(Rejected {
                reason: RejectReason::UnknownType,
                message: format!("type: unknown event type {other:?}"),
            });
        }
    };
    let digest = digest::of(&event_id, occurred_at, &body);
    Ok(Event {
        event_id,
        occurred_at,
        body,
        digest,
    })
}

fn parse_order(o: &Fields<'_>) -> Result<Order, Rejected> {
    let c = o.object("customer")?;
    let customer = Customer {
        id: c.plain_string("id")?,
        email: c.email("email")?,
        first_name: c.string("first_name")?,
        last_name: c.opt_string("last_name")?,
        locale: c.opt_string("locale")?,
        time_zone: match c.opt_string("time_zone")? {
            None => None,
            Some(tz) => Some(tz.parse::<Tz>().map_err(|_| {
                Rejected::invalid(
                    &c.path("time_zone"),
                    format!("unknown IANA time zone {tz:?}"),
                )
            })?),
        },
        birthday: c.opt_date("birthday")?,
    };
    let currency_text = o.string("currency")?;
    let currency: Currency = currency_text
        .parse()
        .map_err(|e| Rejected::invalid(&o.path("currency"), e))?;
    let total = o.amount("total")?;
    let list = o.array("items")?;
    if list.is_empty() {
        return Err(Rejected::invalid(
            &o.path("items"),
            "an order needs at least one item",
        ));
    }
    let mut items = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let it = o.child(v, &format!("items[{i}]"))?;
        items.push(Item {
            sku: it.string("sku")?,
            name: it.string("name")?,
            category: it.string("category")?,
            quantity: it.quantity("quantity")?,
            unit_price: it.amount("unit_price")?,
        });
    }
    let s = o.object("shipping")?;
    let shipping = Shipping {
        country: s.string("country")?,
        city: s.opt_string("city")?,
        postcode: s.opt_string("postcode")?,
    };
    let coupon_codes = match o.opt_array("coupon_codes")? {
        None => Vec::new(),
        Some(list) if list.len() > bounds::MAX_COUPON_CODES => {
            return Err(Rejected::out_of_range(
                &o.path("coupon_codes"),
                format!(
                    "{} codes; at most {} are accepted",
                    list.len(),
                    bounds::MAX_COUPON_CODES
                ),
            ));
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Json::String(s) if !s.is_empty() => o.text(&format!("coupon_codes[{i}]"), s),
                other => Err(Rejected::invalid(
                    &o.path(&format!("coupon_codes[{i}]")),
                    format!("expected a coupon code string, found {}", other.kind()),
                )),
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Order {
        id: o.plain_string("id")?,
        customer,
        currency,
        total,
        items,
        shipping,
        warehouse: o.string("warehouse")?,
        channel: o.opt_string("channel")?,
        coupon_codes,
        promised_delivery: o.opt_date("promised_delivery")?,
    })
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
