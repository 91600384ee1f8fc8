//! Order events: the wire format of CONTRACT §1, validated into domain types at the edge.
//!
//! Events are read from a `serde_json::Value` by hand rather than derived, so every rejection
//! names the exact field (`order.items[2].quantity: must be >= 1`) and money is read exactly.

use crate::money::{Currency, amount_from_json, json_kind};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value};
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
    fn missing(path: &str) -> Self {
        Rejected {
            reason: RejectReason::MissingField,
            message: format!("{path}: required field is missing"),
        }
    }
    fn invalid(path: &str, why: impl fmt::Display) -> Self {
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

/// The domain's sane bounds, checked at the edge so that every sum the history keeps is exact.
///
/// With amounts of at most [`MAX_AMOUNT`](bounds::MAX_AMOUNT) to four decimal places and
/// quantities of at most [`MAX_QUANTITY`](bounds::MAX_QUANTITY), a line's value is below 10^18
/// and a lifetime of `u32::MAX` such orders below 10^26: far inside `Decimal`'s 96-bit mantissa
/// at scale 4, so no sum or product of accepted input rounds or overflows. The fold still checks
/// every operation (a stored history may predate these bounds).
pub mod bounds {
    use rust_decimal::Decimal;

    /// The largest order total or unit price: 10^12 in the currency's main unit, room for
    /// currencies with large numbers (a trillion Vietnamese dong is about 40 million euros).
    pub const MAX_AMOUNT: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);
    /// At most four decimal places: the finest minor unit of ISO 4217 (CLF, UYW).
    pub const MAX_AMOUNT_SCALE: u32 = 4;
    /// The most units of one line of an order.
    pub const MAX_QUANTITY: u32 = 1_000_000;
    /// The most lines in one order, and items in one return.
    pub const MAX_ITEMS: usize = 1_000;
    /// The most coupon codes redeemed on one order.
    pub const MAX_COUPON_CODES: usize = 100;
    /// The longest text field (ids, names, SKUs, comments), in bytes.
    pub const MAX_TEXT_BYTES: usize = 4_096;
}

/// A validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub body: EventBody,
    /// SHA-256 of the event as parsed ([`digest`]): the same `event_id` with another digest is
    /// another event under a reused id (a conflict), not a redelivery.
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
    let value: Value = serde_json::from_slice(bytes).map_err(|e| Rejected {
        reason: RejectReason::InvalidJson,
        message: format!("not valid JSON: {e}"),
    })?;
    event_from_value(&value)
}

/// Validates an already parsed JSON value as an event.
pub fn event_from_value(value: &Value) -> Result<Event, Rejected> {
    let root = Fields::root(value, "event")?;
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
    Ok(Event {
        event_id,
        occurred_at,
        body,
        digest: digest(value),
    })
}

/// SHA-256 of a JSON value in a canonical form: object keys sorted, no whitespace, every
/// value tagged with its kind and length. Key order and spacing do not change it; any value does.
pub fn digest(value: &Value) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    fn feed(v: &Value, h: &mut Sha256) {
        match v {
            Value::Null => h.update(b"n"),
            Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
            Value::Number(n) => text(b'#', &n.to_string(), h),
            Value::String(s) => text(b's', s, h),
            Value::Array(a) => {
                h.update(b"[");
                h.update((a.len() as u64).to_le_bytes());
                for x in a {
                    feed(x, h);
                }
            }
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_unstable();
                h.update(b"{");
                h.update((keys.len() as u64).to_le_bytes());
                for k in keys {
                    text(b'k', k, h);
                    feed(&m[k.as_str()], h);
                }
            }
        }
    }
    fn text(tag: u8, s: &str, h: &mut Sha256) {
        h.update([tag]);
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    let mut h = Sha256::new();
    feed(value, &mut h);
    h.finalize().into()
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
                Value::String(s) if !s.is_empty() => o.text(&format!("coupon_codes[{i}]"), s),
                other => Err(Rejected::invalid(
                    &o.path(&format!("coupon_codes[{i}]")),
                    format!("expected a coupon code string, found {}", json_kind(other)),
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

/// A JSON object being read, with its path for error messages.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Fields<'a> {
    fn root(v: &'a Value, what: &str) -> Result<Self, Rejected> {
        match v {
            Value::Object(map) => Ok(Fields {
                map,
                prefix: String::new(),
            }),
            other => Err(Rejected::invalid(
                what,
                format!("expected a JSON object, found {}", json_kind(other)),
            )),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn child(&self, v: &'a Value, key: &str) -> Result<Fields<'a>, Rejected> {
        match v {
            Value::Object(map) => Ok(Fields {
                map,
                prefix: self.path(key),
            }),
            other => Err(Rejected::invalid(
                &self.path(key),
                format!("expected an object, found {}", json_kind(other)),
            )),
        }
    }

    /// A present, non-null value.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn required(&self, key: &str) -> Result<&'a Value, Rejected> {
        self.get(key)
            .ok_or_else(|| Rejected::missing(&self.path(key)))
    }

    fn object(&self, key: &str) -> Result<Fields<'a>, Rejected> {
        self.child(self.required(key)?, key)
    }

    fn string(&self, key: &str) -> Result<String, Rejected> {
        match self.required(key)? {
            Value::String(s) if s.trim().is_empty() => {
                Err(Rejected::invalid(&self.path(key), "must not be empty"))
            }
            Value::String(s) => self.text(key, s),
            other => Err(Rejected::invalid(
                &self.path(key),
                format!("expected a string, found {}", json_kind(other)),
            )),
        }
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>, Rejected> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => self.text(key, s).map(Some),
            Some(other) => Err(Rejected::invalid(
                &self.path(key),
                format!("expected a string, found {}", json_kind(other)),
            )),
        }
    }

    /// A text field within [`bounds::MAX_TEXT_BYTES`].
    fn text(&self, key: &str, s: &str) -> Result<String, Rejected> {
        if s.len() > bounds::MAX_TEXT_BYTES {
            return Err(Rejected::out_of_range(
                &self.path(key),
                format!(
                    "{} bytes long; at most {} are accepted",
                    s.len(),
                    bounds::MAX_TEXT_BYTES
                ),
            ));
        }
        Ok(s.to_string())
    }

    /// An identifier or address: text without control characters (a CR or LF in an e-mail
    /// address would otherwise only fail at send time, or worse, add a header).
    fn plain_string(&self, key: &str) -> Result<String, Rejected> {
        let s = self.string(key)?;
        if let Some(c) = s.chars().find(|c| c.is_control()) {
            return Err(Rejected::invalid(
                &self.path(key),
                format!(
                    "must not contain control characters, found U+{:04X}",
                    c as u32
                ),
            ));
        }
        Ok(s)
    }

    /// An e-mail address: plain text with one `@` between a local part and a domain.
    fn email(&self, key: &str) -> Result<String, Rejected> {
        let s = self.plain_string(key)?;
        match s.split_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !s.chars().any(char::is_whitespace) =>
            {
                Ok(s)
            }
            _ => Err(Rejected::invalid(
                &self.path(key),
                format!("expected an e-mail address, found {s:?}"),
            )),
        }
    }

    fn array(&self, key: &str) -> Result<&'a Vec<Value>, Rejected> {
        match self.required(key)? {
            Value::Array(a) if a.len() > bounds::MAX_ITEMS => Err(Rejected::out_of_range(
                &self.path(key),
                format!(
                    "{} entries; at most {} are accepted",
                    a.len(),
                    bounds::MAX_ITEMS
                ),
            )),
            Value::Array(a) => Ok(a),
            other => Err(Rejected::invalid(
                &self.path(key),
                format!("expected an array, found {}", json_kind(other)),
            )),
        }
    }

    fn opt_array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, Rejected> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.array(key).map(Some),
        }
    }

    fn amount(&self, key: &str) -> Result<Decimal, Rejected> {
        let d = amount_from_json(self.required(key)?)
            .map_err(|e| Rejected::invalid(&self.path(key), e))?;
        if d.is_sign_negative() && !d.is_zero() {
            return Err(Rejected::invalid(
                &self.path(key),
                format!("must not be negative, found {d}"),
            ));
        }
        if d > bounds::MAX_AMOUNT {
            return Err(Rejected::out_of_range(
                &self.path(key),
                format!(
                    "{d} is over the largest amount accepted, {}",
                    bounds::MAX_AMOUNT
                ),
            ));
        }
        // "54.90" keeps its two places; only digits beyond the fourth that are not 0 count.
        if d.normalize().scale() > bounds::MAX_AMOUNT_SCALE {
            return Err(Rejected::out_of_range(
                &self.path(key),
                format!(
                    "{d} has more than {} decimal places",
                    bounds::MAX_AMOUNT_SCALE
                ),
            ));
        }
        Ok(d)
    }

    fn integer(&self, key: &str) -> Result<i64, Rejected> {
        match self.required(key)? {
            Value::Number(n) => n.as_i64().ok_or_else(|| {
                Rejected::invalid(
                    &self.path(key),
                    format!("expected a whole number, found {n}"),
                )
            }),
            other => Err(Rejected::invalid(
                &self.path(key),
                format!("expected a number, found {}", json_kind(other)),
            )),
        }
    }

    fn quantity(&self, key: &str) -> Result<u32, Rejected> {
        let q = self.integer(key)?;
        if q < 1 {
            return Err(Rejected::invalid(
                &self.path(key),
                format!("must be >= 1, found {q}"),
            ));
        }
        match u32::try_from(q) {
            Ok(q) if q <= bounds::MAX_QUANTITY => Ok(q),
            _ => Err(Rejected::out_of_range(
                &self.path(key),
                format!(
                    "{q} is over the largest quantity accepted, {}",
                    bounds::MAX_QUANTITY
                ),
            )),
        }
    }

    fn timestamp(&self, key: &str) -> Result<DateTime<Utc>, Rejected> {
        let s = self.string(key)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                Rejected::invalid(
                    &self.path(key),
                    format!("expected an RFC 3339 timestamp, found {s:?}"),
                )
            })
    }

    fn opt_date(&self, key: &str) -> Result<Option<NaiveDate>, Rejected> {
        match self.opt_string(key)? {
            None => Ok(None),
            Some(s) => NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| {
                    Rejected::invalid(
                        &self.path(key),
                        format!("expected a date YYYY-MM-DD, found {s:?}"),
                    )
                }),
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
