//! Reading a JSON object's fields by hand, each rejection naming the field's path
//! (`order.items[2].quantity: must be >= 1`) and every value checked against [`super::bounds`].

use super::json::Json;
use super::{Rejected, bounds};
use crate::money::parse_amount;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use std::borrow::Cow;

/// A JSON object's fields.
type Map<'a> = [(Cow<'a, str>, Json<'a>)];

/// A JSON object being read, with its path for error messages.
pub(super) struct Fields<'a> {
    map: &'a Map<'a>,
    prefix: String,
}

/// An amount, from a number or a string: exact, as written.
fn amount_from_json(v: &Json) -> Result<Decimal, String> {
    match v {
        Json::String(s) => parse_amount(s),
        Json::Number(text) => Decimal::from_str_exact(text)
            .or_else(|_| Decimal::from_scientific(text))
            .map_err(|_| format!("{text} is not a decimal amount")),
        other => Err(format!("expected a decimal amount, found {}", other.kind())),
    }
}

/// A whole number that fits an `i64`, as `serde_json::Number::as_i64` reads one.
fn as_i64(text: &str) -> Option<i64> {
    text.parse().ok()
}

impl<'a> Fields<'a> {
    pub(super) fn root(v: &'a Json<'a>, what: &str) -> Result<Self, Rejected> {
        match v {
            Json::Object(map) => Ok(Fields {
                map,
                prefix: String::new(),
            }),
            other => Err(Rejected::invalid(
                what,
                format!("expected a JSON object, found {}", other.kind()),
            )),
        }
    }

    pub(super) fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    pub(super) fn child(&self, v: &'a Json<'a>, key: &str) -> Result<Fields<'a>, Rejected> {
        match v {
            Json::Object(map) => Ok(Fields {
                map,
                prefix: self.path(key),
            }),
            other => Err(Rejected::invalid(
                &self.path(key),
                format!("expected an object, found {}", other.kind()),
            )),
        }
    }

    /// A present, non-null value.
    pub(super) fn get(&self, key: &str) -> Option<&'a Json<'a>> {
        Json::field(self.map, key).filter(|v| !v.is_null())
    }

    pub(super) fn required(&self, key: &str) -> Result<&'a Json<'a>, Rejected> {
        self.get(key)
            .ok_or_else(|| Rejected::missing(&self.path(key)))
    }

    pub(super) fn object(&self, key: &str) -> Result<Fields<'a>, Rejected> {
        self.child(self.required(key)?, key)
    }

    pub(super) fn string(&self, key: &str) -> Result<String, Rejected> {
        match self.required(key)? {
            Json::String(s) if s.trim().is_empty() => {
                Err(Rejected::invalid(&self.path(key), "must not be empty"))
            }
            Json::String(s) => self.text(key, s),
            other => Err(Rejected::invalid(
                &self.path(key),
                format!("expected a string, found {}", other.kind()),
            )),
        }
    }

    pub(super) fn opt_string(&self, key: &str) -> Result<Option<String>, Rejected> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::String(s)) => self.text(key, s).map(Some),
            Some(other) => Err(Rejected::invalid(
                &self.path(key),
                format!("expected a string, found {}", other.kind()),
            )),
        }
    }

    /// A text field within [`bounds::MAX_TEXT_BYTES`].
    pub(super) fn text(&self, key: &str, s: &str) -> Result<String, Rejected> {
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
    pub(super) fn plain_string(&self, key: &str) -> Result<String, Rejected> {
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
    pub(super) fn email(&self, key: &str) -> Result<String, Rejected> {
        let s = self.plain_string(key)?;
        if is_email(&s) {
            Ok(s)
        } else {
            Err(Rejected::invalid(
                &self.path(key),
                format!("expected an e-mail address, found {s:?}"),
            ))
        }
    }

    pub(super) fn array(&self, key: &str) -> Result<&'a Vec<Json<'a>>, Rejected> {
        match self.required(key)? {
            Json::Array(a) if a.len() > bounds::MAX_ITEMS => Err(Rejected::out_of_range(
                &self.path(key),
                format!(
                    "{} entries; at most {} are accepted",
                    a.len(),
                    bounds::MAX_ITEMS
                ),
            )),
            Json::Array(a) => Ok(a),
            other => Err(Rejected::invalid(
                &self.path(key),
                format!("expected an array, found {}", other.kind()),
            )),
        }
    }

    pub(super) fn opt_array(&self, key: &str) -> Result<Option<&'a Vec<Json<'a>>>, Rejected> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.array(key).map(Some),
        }
    }

    pub(super) fn amount(&self, key: &str) -> Result<Decimal, Rejected> {
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
        // Zeros past the fourth place are dropped (exactly): a "1.000…0" written with 28
        // places would otherwise leave no room in a sum for the digits of the next amount.
        Ok(d.round_dp(bounds::MAX_AMOUNT_SCALE))
    }

    pub(super) fn integer(&self, key: &str) -> Result<i64, Rejected> {
        match self.required(key)? {
            Json::Number(n) => as_i64(n).ok_or_else(|| {
                Rejected::invalid(
                    &self.path(key),
                    format!("expected a whole number, found {n}"),
                )
            }),
            other => Err(Rejected::invalid(
                &self.path(key),
                format!("expected a number, found {}", other.kind()),
            )),
        }
    }

    pub(super) fn quantity(&self, key: &str) -> Result<u32, Rejected> {
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

    pub(super) fn timestamp(&self, key: &str) -> Result<DateTime<Utc>, Rejected> {
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

    pub(super) fn opt_date(&self, key: &str) -> Result<Option<NaiveDate>, Rejected> {
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

/// One `@` between a non-empty local part and a domain, and no white space: the shape of an
/// e-mail address as events carry it (also checked when a kept event is read back).
pub(super) fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}
