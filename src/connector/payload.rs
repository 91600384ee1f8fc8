//! Reading a webhook body leniently: unknown fields are ignored, a null or empty value is an
//! absent one, and what is required but missing or malformed is a sentence naming the field by
//! its path in the body (`line_items[1].price: …`), for the DLQ. Ids and money are read from
//! the JSON text itself (serde_json keeps numbers as written), never through a float.

use crate::event::bounds::MAX_AMOUNT_SCALE;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

/// Why a body cannot be mapped: a sentence naming the field.
pub type Why = String;

/// Parses a webhook body as a JSON object.
pub fn parse_body(body: &[u8]) -> Result<Value, Why> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(format!(
            "body: expected a JSON object, found {}",
            kind(&other)
        )),
        Err(e) => Err(format!("body: not JSON ({e})")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON value in a body, with its path for messages.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    value: &'a Value,
    path: &'a str,
}

/// A node's child, owning its path.
pub struct Child<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Child<'a> {
    pub fn node(&self) -> Node<'_> {
        Node {
            value: self.value,
            path: &self.path,
        }
    }
}

impl<'a> Node<'a> {
    pub fn root(value: &'a Value) -> Node<'a> {
        Node { value, path: "" }
    }

    pub fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// A field that is present and not null.
    fn raw(&self, key: &str) -> Option<&'a Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    /// An object field; absent or null is None, another type an error.
    pub fn object(&self, key: &str) -> Result<Option<Child<'a>>, Why> {
        match self.raw(key) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(Child {
                value: v,
                path: self.path(key),
            })),
            Some(other) => Err(format!(
                "{}: expected an object, found {}",
                self.path(key),
                kind(other)
            )),
        }
    }

    /// An array field's elements; absent or null is empty, another type an error.
    pub fn array(&self, key: &str) -> Result<Vec<Child<'a>>, Why> {
        match self.raw(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(list)) => Ok(list
                .iter()
                .enumerate()
                .map(|(i, v)| Child {
                    value: v,
                    path: format!("{}[{i}]", self.path(key)),
                })
                .collect()),
            Some(other) => Err(format!(
                "{}: expected an array, found {}",
                self.path(key),
                kind(other)
            )),
        }
    }

    /// The `field` texts of an array's elements, those that have one: the codes of
    /// `discount_codes` or `coupon_lines`.
    pub fn texts_of(&self, array: &str, field: &str) -> Result<Vec<String>, Why> {
        let mut out = Vec::new();
        for element in self.array(array)? {
            if let Some(text) = element.node().text(field)? {
                out.push(text.to_string());
            }
        }
        Ok(out)
    }

    /// This node as an object, for array elements.
    pub fn expect_object(&self) -> Result<(), Why> {
        match self.value {
            Value::Object(_) => Ok(()),
            other => Err(format!(
                "{}: expected an object, found {}",
                self.path,
                kind(other)
            )),
        }
    }

    /// A text field trimmed; absent, null or blank is None, another type an error.
    pub fn text(&self, key: &str) -> Result<Option<&'a str>, Why> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim())),
            Some(other) => Err(format!(
                "{}: expected a string, found {}",
                self.path(key),
                kind(other)
            )),
        }
    }

    pub fn required_text(&self, key: &str) -> Result<&'a str, Why> {
        self.text(key)?
            .ok_or_else(|| format!("{}: required field is missing", self.path(key)))
    }

    /// A platform id: a whole non-negative JSON number (written out as it was sent, so ids
    /// beyond 2^53 stay exact) or a non-blank string. 0 is None: both platforms use it for
    /// "none" (a guest's customer_id, a product without variations).
    pub fn id(&self, key: &str) -> Result<Option<String>, Why> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                let text = n.to_string();
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "{}: expected a whole number id, found {text}",
                        self.path(key)
                    ));
                }
                let trimmed = text.trim_start_matches('0');
                Ok((!trimmed.is_empty()).then(|| trimmed.to_string()))
            }
            Some(Value::String(s)) => {
                let s = s.trim();
                Ok((!s.is_empty() && s != "0").then(|| s.to_string()))
            }
            Some(other) => Err(format!(
                "{}: expected an id, found {}",
                self.path(key),
                kind(other)
            )),
        }
    }

    pub fn required_id(&self, key: &str) -> Result<String, Why> {
        self.id(key)?
            .ok_or_else(|| format!("{}: required field is missing", self.path(key)))
    }

    /// An amount from a decimal string or a JSON number, exact: returned as a decimal string
    /// with the digits as sent (`"19.95"`), or None when absent.
    pub fn money(&self, key: &str) -> Result<Option<Decimal>, Why> {
        let parsed = match self.raw(key) {
            None => return Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
            Some(Value::String(s)) => decimal(s.trim()),
            Some(Value::Number(n)) => decimal(&n.to_string()),
            Some(other) => {
                return Err(format!(
                    "{}: expected a decimal amount, found {}",
                    self.path(key),
                    kind(other)
                ));
            }
        };
        parsed.map(Some).ok_or_else(|| {
            format!(
                "{}: expected a decimal amount, found {}",
                self.path(key),
                self.raw(key).map(Value::to_string).unwrap_or_default()
            )
        })
    }

    pub fn required_money(&self, key: &str) -> Result<Decimal, Why> {
        self.money(key)?
            .ok_or_else(|| format!("{}: required field is missing", self.path(key)))
    }

    /// A whole number of units (0 allowed: the caller skips such lines).
    pub fn quantity(&self, key: &str) -> Result<u64, Why> {
        match self.raw(key) {
            None => Err(format!("{}: required field is missing", self.path(key))),
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
                format!(
                    "{}: expected a whole number of units, found {n}",
                    self.path(key)
                )
            }),
            Some(other) => Err(format!(
                "{}: expected a number, found {}",
                self.path(key),
                kind(other)
            )),
        }
    }

    /// A timestamp as RFC 3339 in UTC (`2026-03-01T10:15:00Z`). With `naive_is_utc`, a time
    /// without a zone (WooCommerce's `*_gmt` fields) is read as UTC.
    pub fn timestamp(&self, key: &str, naive_is_utc: bool) -> Result<Option<String>, Why> {
        let Some(text) = self.text(key)? else {
            return Ok(None);
        };
        let parsed = DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                naive_is_utc
                    .then(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok())
                    .flatten()
                    .map(|t| t.and_utc())
            });
        match parsed {
            Some(t) => Ok(Some(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))),
            None => Err(format!(
                "{}: expected a timestamp, found {text:?}",
                self.path(key)
            )),
        }
    }

    pub fn required_timestamp(&self, key: &str, naive_is_utc: bool) -> Result<String, Why> {
        self.timestamp(key, naive_is_utc)?
            .ok_or_else(|| format!("{}: required field is missing", self.path(key)))
    }
}

/// A decimal from its text, exactly; scientific notation allowed (a JSON number may use it).
fn decimal(text: &str) -> Option<Decimal> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

/// An amount as events carry it: a decimal string with the digits as sent, at least two
/// decimals (`"19.95"`, `"5.00"`). An amount with more places than events accept (WooCommerce
/// computes a line's `price` as its total over its quantity, in floating point) is rounded to
/// the fourth place, half away from zero.
pub fn amount_text(d: Decimal) -> String {
    let mut d = if d.normalize().scale() > MAX_AMOUNT_SCALE {
        d.round_dp_with_strategy(MAX_AMOUNT_SCALE, RoundingStrategy::MidpointAwayFromZero)
    } else {
        d
    };
    if d.scale() < 2 {
        d.rescale(2);
    }
    d.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(text: &str) -> Value {
        parse_body(text.as_bytes()).unwrap()
    }

    #[test]
    fn ids_are_written_as_sent_even_beyond_two_to_the_53() {
        let v = body(r#"{"a": 9007199254740993, "b": "gid-7", "c": 0, "d": -1, "e": 1.5}"#);
        let n = Node::root(&v);
        assert_eq!(n.id("a").unwrap().as_deref(), Some("9007199254740993"));
        assert_eq!(n.id("b").unwrap().as_deref(), Some("gid-7"));
        assert_eq!(n.id("c").unwrap(), None);
        assert_eq!(n.id("missing").unwrap(), None);
        assert_eq!(
            n.id("d").unwrap_err(),
            "d: expected a whole number id, found -1"
        );
        assert!(n.id("e").is_err());
    }

    #[test]
    fn money_is_exact_from_strings_and_numbers() {
        let v = body(r#"{"s": "19.95", "n": 19.95, "w": 5, "f": 3.3333333333333335, "x": "abc"}"#);
        let n = Node::root(&v);
        let text = |k: &str| amount_text(n.required_money(k).unwrap());
        assert_eq!(text("s"), "19.95");
        assert_eq!(text("n"), "19.95");
        assert_eq!(text("w"), "5.00");
        assert_eq!(text("f"), "3.3333");
        assert_eq!(
            n.money("x").unwrap_err(),
            "x: expected a decimal amount, found \"abc\""
        );
    }

    #[test]
    fn timestamps_become_utc_and_naive_ones_are_utc_only_when_said() {
        let v = json!({"z": "2026-03-01T10:15:00-05:00", "g": "2026-03-01T10:15:00", "bad": "yesterday"});
        let n = Node::root(&v);
        assert_eq!(
            n.timestamp("z", false).unwrap().as_deref(),
            Some("2026-03-01T15:15:00Z")
        );
        assert_eq!(
            n.timestamp("g", true).unwrap().as_deref(),
            Some("2026-03-01T10:15:00Z")
        );
        assert!(n.timestamp("g", false).is_err());
        assert_eq!(
            n.timestamp("bad", true).unwrap_err(),
            "bad: expected a timestamp, found \"yesterday\""
        );
    }

    #[test]
    fn paths_name_nested_fields() {
        let v = json!({"line_items": [{"price": "1.00"}, {"price": true}]});
        let n = Node::root(&v);
        let items = n.array("line_items").unwrap();
        assert_eq!(
            items[1].node().money("price").unwrap_err(),
            "line_items[1].price: expected a decimal amount, found a boolean"
        );
        assert_eq!(
            parse_body(b"[1]").unwrap_err(),
            "body: expected a JSON object, found an array"
        );
        assert!(
            parse_body(b"webhook_id=3")
                .unwrap_err()
                .starts_with("body: not JSON")
        );
    }
}
