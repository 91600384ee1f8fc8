//! A compact, versioned encoding of a validated [`Event`], the form in which the store keeps the
//! events it applied (`events.body`, see `store/events.rs`): a version byte, then the fields in
//! a fixed order. Text is a varint length and its UTF-8 bytes (an optional text: length + 1, 0
//! for none); whole numbers are LEB128 varints, signed ones zig-zagged; an amount is a byte
//! with its scale and sign, then its exact mantissa; a time is seconds and nanoseconds; a date
//! days from the common era; a time zone its IANA name (chrono-tz numbers its zones differently
//! from one version to the next; the names stay) and a currency its three letters.
//!
//! Stored bytes are input like any other: [`decode`] checks every bound the JSON parser checks
//! (text lengths, non-blank and control-free ids, the e-mail shape, item counts, quantities,
//! amounts, NPS), allocates nothing larger than the bytes could hold, rejects what follows the
//! event and never panics. The encoding is canonical (minimal varints, one marker per optional
//! value), so bytes that decode are exactly what [`encode`] makes of the event. The digest is
//! not stored: it is a function of the fields ([`super::digest`]) and is recomputed.
//!
//! Not compressed, as it would not pay: on the example history an event takes 106 bytes here
//! on average (330 as JSON), mostly distinct words, which zlib shrinks by 3 % even when each
//! event is compressed only where that helps, for a decompression per read.

use super::{
    Customer, Event, EventBody, Item, Order, ReturnedItem, Shipping, bounds, digest, fields,
};
use crate::money::Currency;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

/// The encoding's version, its first byte. A change of layout takes the next number and
/// `decode` keeps reading the earlier ones.
pub const VERSION: u8 = 1;

/// Why stored bytes are not an event: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct DecodeError {
    pub field: &'static str,
    pub why: String,
}

fn bad(field: &'static str, why: impl Into<String>) -> DecodeError {
    DecodeError {
        field,
        why: why.into(),
    }
}

/// Body tags: the letters the digest uses.
const PLACED: u8 = b'P';
const SHIPPED: u8 = b'S';
const DELIVERED: u8 = b'D';
const CANCELLED: u8 = b'C';
const RETURNED: u8 = b'R';
const FEEDBACK: u8 = b'F';
const UNSUBSCRIBED: u8 = b'U';
const SUBSCRIBED: u8 = b'B';

/// The event in the current version's layout.
pub fn encode(event: &Event) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(128));
    w.0.push(VERSION);
    w.text(&event.event_id);
    w.time(event.occurred_at);
    match &event.body {
        EventBody::OrderPlaced(o) => {
            w.0.push(PLACED);
            w.order(o);
        }
        EventBody::OrderShipped {
            order_id,
            customer_id,
            carrier,
            tracking,
        } => {
            w.0.push(SHIPPED);
            w.text(order_id);
            w.text(customer_id);
            w.opt_text(carrier.as_deref());
            w.opt_text(tracking.as_deref());
        }
        EventBody::OrderDelivered {
            order_id,
            customer_id,
            delivered_at,
        } => {
            w.0.push(DELIVERED);
            w.text(order_id);
            w.text(customer_id);
            w.time(*delivered_at);
        }
        EventBody::OrderCancelled {
            order_id,
            customer_id,
        } => {
            w.0.push(CANCELLED);
            w.text(order_id);
            w.text(customer_id);
        }
        EventBody::OrderReturned {
            order_id,
            customer_id,
            items,
            reason,
        } => {
            w.0.push(RETURNED);
            w.text(order_id);
            w.text(customer_id);
            match items {
                None => w.varint(0),
                Some(list) => {
                    w.varint(list.len() as u128 + 1);
                    for i in list {
                        w.text(&i.sku);
                        w.varint(i.quantity.into());
                    }
                }
            }
            w.opt_text(reason.as_deref());
        }
        EventBody::Feedback {
            customer_id,
            nps,
            comment,
        } => {
            w.0.push(FEEDBACK);
            w.text(customer_id);
            w.0.push(*nps);
            w.opt_text(comment.as_deref());
        }
        EventBody::Unsubscribed { customer_id } => {
            w.0.push(UNSUBSCRIBED);
            w.text(customer_id);
        }
        EventBody::Subscribed { customer_id } => {
            w.0.push(SUBSCRIBED);
            w.text(customer_id);
        }
    }
    w.0
}

/// The event `bytes` hold, checked as the parser checks an event (see the module's notes).
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let mut r = Reader { bytes, pos: 0 };
    let version = r.byte("version")?;
    if version != VERSION {
        return Err(bad(
            "version",
            format!("unknown encoding version {version} (this Packwell reads {VERSION})"),
        ));
    }
    let event_id = r.plain("event_id")?;
    let occurred_at = r.time("occurred_at")?;
    let body = match r.byte("type")? {
        PLACED => EventBody::OrderPlaced(Box::new(r.order()?)),
        SHIPPED => EventBody::OrderShipped {
            order_id: r.plain("order_id")?,
            customer_id: r.plain("customer_id")?,
            carrier: r.opt_text("carrier")?,
            tracking: r.opt_text("tracking")?,
        },
        DELIVERED => EventBody::OrderDelivered {
            order_id: r.plain("order_id")?,
            customer_id: r.plain("customer_id")?,
            delivered_at: r.time("delivered_at")?,
        },
        CANCELLED => EventBody::OrderCancelled {
            order_id: r.plain("order_id")?,
            customer_id: r.plain("customer_id")?,
        },
        RETURNED => {
            let order_id = r.plain("order_id")?;
            let customer_id = r.plain("customer_id")?;
            let items = match r.count("items", 0, bounds::MAX_ITEMS + 1)? {
                0 => None,
                n => {
                    let mut list = Vec::with_capacity(n - 1);
                    for _ in 1..n {
                        list.push(ReturnedItem {
                            sku: r.required("items.sku")?,
                            quantity: r.quantity("items.quantity")?,
                        });
                    }
                    Some(list)
                }
            };
            EventBody::OrderReturned {
                order_id,
                customer_id,
                items,
                reason: r.opt_text("reason")?,
            }
        }
        FEEDBACK => {
            let customer_id = r.plain("customer_id")?;
            let nps = r.byte("nps")?;
            if nps > 10 {
                return Err(bad("nps", format!("must be between 0 and 10, found {nps}")));
            }
            EventBody::Feedback {
                customer_id,
                nps,
                comment: r.opt_text("comment")?,
            }
        }
        UNSUBSCRIBED => EventBody::Unsubscribed {
            customer_id: r.plain("customer_id")?,
        },
        SUBSCRIBED => EventBody::Subscribed {
            customer_id: r.plain("customer_id")?,
        },
        other => return Err(bad("type", format!("unknown event tag {other}"))),
    };
    if r.pos != bytes.len() {
        return Err(bad(
            "event",
            format!("{} bytes after its end", bytes.len() - r.pos),
        ));
    }
    let digest = digest::of(&event_id, occurred_at, &body);
    Ok(Event {
        event_id,
        occurred_at,
        body,
        digest,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut n: u128) {
        while n >= 0x80 {
            self.0.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn signed(&mut self, n: i64) {
        self.varint(u128::from(((n << 1) ^ (n >> 63)) as u64));
    }

    fn text(&mut self, s: &str) {
        self.varint(s.len() as u128);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_text(&mut self, s: Option<&str>) {
        match s {
            None => self.varint(0),
            Some(s) => {
                self.varint(s.len() as u128 + 1);
                self.0.extend_from_slice(s.as_bytes());
            }
        }
    }

    fn time(&mut self, t: DateTime<Utc>) {
        self.signed(t.timestamp());
        self.varint(t.timestamp_subsec_nanos().into());
    }

    fn opt_date(&mut self, d: Option<NaiveDate>) {
        match d {
            None => self.0.push(0),
            Some(d) => {
                self.0.push(1);
                self.signed(d.num_days_from_ce().into());
            }
        }
    }

    /// The scale (at most 28) with the sign in the top bit, then the magnitude: exact, so
    /// `54.90` comes back with its two places.
    fn amount(&mut self, d: Decimal) {
        let sign = if d.is_sign_negative() { 0x80 } else { 0 };
        self.0.push(d.scale() as u8 | sign);
        self.varint(d.mantissa().unsigned_abs());
    }

    fn order(&mut self, o: &Order) {
        self.text(&o.id);
        let c = &o.customer;
        self.text(&c.id);
        self.text(&c.email);
        self.text(&c.first_name);
        self.opt_text(c.last_name.as_deref());
        self.opt_text(c.locale.as_deref());
        self.opt_text(c.time_zone.map(|tz| tz.name()));
        self.opt_date(c.birthday);
        self.0.extend_from_slice(o.currency.as_str().as_bytes());
        self.amount(o.total);
        self.varint(o.items.len() as u128);
        for i in &o.items {
            self.text(&i.sku);
            self.text(&i.name);
            self.text(&i.category);
            self.varint(i.quantity.into());
            self.amount(i.unit_price);
        }
        self.text(&o.shipping.country);
        self.opt_text(o.shipping.city.as_deref());
        self.opt_text(o.shipping.postcode.as_deref());
        self.text(&o.warehouse);
        self.opt_text(o.channel.as_deref());
        self.varint(o.coupon_codes.len() as u128);
        for code in &o.coupon_codes {
            self.text(code);
        }
        self.opt_date(o.promised_delivery);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| bad(field, "the bytes end before it"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&[u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| bad(field, "the bytes end before it"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// A minimal LEB128 varint of at most 128 bits.
    fn varint(&mut self, field: &'static str) -> Result<u128, DecodeError> {
        let mut n: u128 = 0;
        for shift in (0..128).step_by(7) {
            let b = self.byte(field)?;
            let part = u128::from(b & 0x7f);
            if shift > 0 && b == 0 {
                return Err(bad(field, "a number not written in its shortest form"));
            }
            if shift == 126 && part > 0b11 {
                return Err(bad(field, "a number over 128 bits"));
            }
            n |= part << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(bad(field, "a number over 128 bits"))
    }

    fn signed(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let z = u64::try_from(self.varint(field)?).map_err(|_| bad(field, "out of range"))?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// A count within `min..=max`.
    fn count(&mut self, field: &'static str, min: usize, max: usize) -> Result<usize, DecodeError> {
        let n = self.varint(field)?;
        match usize::try_from(n) {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(bad(
                field,
                format!("{n} entries; between {min} and {max} are accepted"),
            )),
        }
    }

    fn str_of_len(&mut self, field: &'static str, len: u128) -> Result<String, DecodeError> {
        let len = match usize::try_from(len) {
            Ok(len) if len <= bounds::MAX_TEXT_BYTES => len,
            _ => {
                return Err(bad(
                    field,
                    format!(
                        "{len} bytes long; at most {} are accepted",
                        bounds::MAX_TEXT_BYTES
                    ),
                ));
            }
        };
        let raw = self.take(field, len)?;
        std::str::from_utf8(raw)
            .map(str::to_string)
            .map_err(|_| bad(field, "not UTF-8"))
    }

    /// Any text within the bounds (a coupon code, an optional field's value).
    fn text(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.varint(field)?;
        self.str_of_len(field, len)
    }

    fn opt_text(&mut self, field: &'static str) -> Result<Option<String>, DecodeError> {
        match self.varint(field)? {
            0 => Ok(None),
            n => self.str_of_len(field, n - 1).map(Some),
        }
    }

    /// A required text: not blank.
    fn required(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let s = self.text(field)?;
        if s.trim().is_empty() {
            return Err(bad(field, "must not be empty"));
        }
        Ok(s)
    }

    /// An identifier: not blank, no control characters.
    fn plain(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let s = self.required(field)?;
        if let Some(c) = s.chars().find(|c| c.is_control()) {
            return Err(bad(
                field,
                format!(
                    "must not contain control characters, found U+{:04X}",
                    c as u32
                ),
            ));
        }
        Ok(s)
    }

    fn time(&mut self, field: &'static str) -> Result<DateTime<Utc>, DecodeError> {
        let secs = self.signed(field)?;
        let nanos = u32::try_from(self.varint(field)?).map_err(|_| bad(field, "out of range"))?;
        DateTime::from_timestamp(secs, nanos).ok_or_else(|| bad(field, "not a time"))
    }

    fn opt_date(&mut self, field: &'static str) -> Result<Option<NaiveDate>, DecodeError> {
        match self.byte(field)? {
            0 => Ok(None),
            1 => {
                let days =
                    i32::try_from(self.signed(field)?).map_err(|_| bad(field, "out of range"))?;
                NaiveDate::from_num_days_from_ce_opt(days)
                    .map(Some)
                    .ok_or_else(|| bad(field, "not a date"))
            }
            other => Err(bad(field, format!("unknown marker {other}"))),
        }
    }

    fn quantity(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let q = self.varint(field)?;
        match u32::try_from(q) {
            Ok(q) if (1..=bounds::MAX_QUANTITY).contains(&q) => Ok(q),
            _ => Err(bad(
                field,
                format!("{q}: between 1 and {} are accepted", bounds::MAX_QUANTITY),
            )),
        }
    }

    /// An amount as the parser accepts one: not negative, at most four places, within
    /// [`bounds::MAX_AMOUNT`].
    fn amount(&mut self, field: &'static str) -> Result<Decimal, DecodeError> {
        let head = self.byte(field)?;
        let (negative, scale) = (head & 0x80 != 0, u32::from(head & 0x7f));
        let mantissa = i128::try_from(self.varint(field)?)
            .map_err(|_| bad(field, "the amount is out of range"))?;
        if scale > bounds::MAX_AMOUNT_SCALE {
            return Err(bad(
                field,
                format!(
                    "{scale} decimal places; at most {} are accepted",
                    bounds::MAX_AMOUNT_SCALE
                ),
            ));
        }
        let mut d = Decimal::try_from_i128_with_scale(mantissa, scale)
            .map_err(|_| bad(field, "the amount is out of range"))?;
        if d > bounds::MAX_AMOUNT {
            return Err(bad(
                field,
                format!(
                    "{d} is over the largest amount accepted, {}",
                    bounds::MAX_AMOUNT
                ),
            ));
        }
        if negative {
            if !d.is_zero() {
                return Err(bad(field, format!("must not be negative, found -{d}")));
            }
            // "-0" is accepted by the parser and kept as written.
            d.set_sign_negative(true);
        }
        Ok(d)
    }

    fn order(&mut self) -> Result<Order, DecodeError> {
        let id = self.plain("order.id")?;
        let email_field = "order.customer.email";
        let customer = Customer {
            id: self.plain("order.customer.id")?,
            email: {
                let e = self.plain(email_field)?;
                if !fields::is_email(&e) {
                    return Err(bad(
                        email_field,
                        format!("expected an e-mail address, found {e:?}"),
                    ));
                }
                e
            },
            first_name: self.required("order.customer.first_name")?,
            last_name: self.opt_text("order.customer.last_name")?,
            locale: self.opt_text("order.customer.locale")?,
            time_zone: match self.opt_text("order.customer.time_zone")? {
                None => None,
                Some(name) => Some(
                    name.parse::<Tz>()
                        .ok()
                        .filter(|tz| tz.name() == name)
                        .ok_or_else(|| {
                            bad(
                                "order.customer.time_zone",
                                format!("unknown IANA time zone {name:?}"),
                            )
                        })?,
                ),
            },
            birthday: self.opt_date("order.customer.birthday")?,
        };
        let code = self.take("order.currency", 3)?;
        let currency = std::str::from_utf8(code)
            .ok()
            .and_then(|c| c.parse::<Currency>().ok())
            .filter(|c| c.as_str().as_bytes() == code)
            .ok_or_else(|| bad("order.currency", "not an ISO 4217 code"))?;
        let total = self.amount("order.total")?;
        let n = self.count("order.items", 1, bounds::MAX_ITEMS)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(Item {
                sku: self.required("order.items.sku")?,
                name: self.required("order.items.name")?,
                category: self.required("order.items.category")?,
                quantity: self.quantity("order.items.quantity")?,
                unit_price: self.amount("order.items.unit_price")?,
            });
        }
        let shipping = Shipping {
            country: self.required("order.shipping.country")?,
            city: self.opt_text("order.shipping.city")?,
            postcode: self.opt_text("order.shipping.postcode")?,
        };
        let warehouse = self.required("order.warehouse")?;
        let channel = self.opt_text("order.channel")?;
        let n = self.count("order.coupon_codes", 0, bounds::MAX_COUPON_CODES)?;
        let mut coupon_codes = Vec::with_capacity(n);
        for _ in 0..n {
            let code = self.text("order.coupon_codes")?;
            if code.is_empty() {
                return Err(bad("order.coupon_codes", "an empty code"));
            }
            coupon_codes.push(code);
        }
        Ok(Order {
            id,
            customer,
            currency,
            total,
            items,
            shipping,
            warehouse,
            channel,
            coupon_codes,
            promised_delivery: self.opt_date("order.promised_delivery")?,
        })
    }
}
