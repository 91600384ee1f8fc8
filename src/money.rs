//! Money: exact decimal amounts and ISO 4217 currency codes.
//!
//! Amounts are `rust_decimal::Decimal` end to end; JSON numbers are read from their text
//! (serde_json's `arbitrary_precision`), never through a float.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An amount as emitted ([`format_amount`]) as a regular expression (JSON Schema `pattern`): a
/// non-negative decimal string with at least two decimals, such as "10.00".
pub const AMOUNT_PATTERN: &str = "^(0|[1-9][0-9]*)\\.[0-9]{2,}$";

/// A currency code as a regular expression (JSON Schema `pattern`).
pub const CURRENCY_PATTERN: &str = "^[A-Z]{3}$";

/// An ISO 4217 currency code, upper case, known to the ISO list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl FromStr for Currency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if iso_currency::Currency::from_code(s).is_none() {
            return Err(format!(
                "unknown currency {s:?} (expected an ISO 4217 code such as \"EUR\")"
            ));
        }
        let b = s.as_bytes();
        Ok(Currency([b[0], b[1], b[2]]))
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_string()
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a money amount written as a decimal string (`"54.90"`), exactly.
pub fn parse_amount(s: &str) -> Result<Decimal, String> {
    let t = s.trim();
    if t.is_empty() || t != s {
        return Err(format!("{s:?} is not a decimal amount"));
    }
    Decimal::from_str_exact(t).map_err(|_| format!("{s:?} is not a decimal amount"))
}

/// Reads an amount from a JSON value: a decimal string, or a JSON number taken from its
/// literal text (exact with `arbitrary_precision`).
pub fn amount_from_json(v: &serde_json::Value) -> Result<Decimal, String> {
    match v {
        serde_json::Value::String(s) => parse_amount(s),
        serde_json::Value::Number(n) => {
            let text = n.to_string();
            Decimal::from_str_exact(&text)
                .or_else(|_| Decimal::from_scientific(&text))
                .map_err(|_| format!("{text} is not a decimal amount"))
        }
        other => Err(format!(
            "expected a decimal amount, found {}",
            json_kind(other)
        )),
    }
}

/// `a + b`, or `None` when the sum cannot be held exactly: rust_decimal rounds decimals away
/// rather than fail when a sum needs more than its 96 bits, so a sum that kept fewer decimal
/// places than its terms had was rounded.
pub fn exact_add(a: Decimal, b: Decimal) -> Option<Decimal> {
    let r = a.checked_add(b)?;
    (r.scale() >= a.scale().max(b.scale())).then_some(r)
}

/// `a - b`, or `None` when the difference cannot be held exactly (see [`exact_add`]).
pub fn exact_sub(a: Decimal, b: Decimal) -> Option<Decimal> {
    let r = a.checked_sub(b)?;
    (r.scale() >= a.scale().max(b.scale())).then_some(r)
}

/// `a * b`, or `None` when the product cannot be held exactly (see [`exact_add`]).
pub fn exact_mul(a: Decimal, b: Decimal) -> Option<Decimal> {
    let r = a.checked_mul(b)?;
    (r.scale() >= a.scale() + b.scale()).then_some(r)
}

/// A short name of a JSON value's kind, for error messages.
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Formats an amount with at least two decimals, as money is shown in decisions (`"10.00"`).
pub fn format_amount(d: Decimal) -> String {
    let mut d = d.normalize();
    if d.scale() < 2 {
        d.rescale(2);
    }
    d.to_string()
}

/// Money counters are integers of 1/10000 so that a conditional `UPDATE` compares exactly in
/// both databases. Amounts finer than that round up: a budget is never overspent.
pub const UNITS_PER_ONE: i64 = 10_000;

pub fn to_units(d: Decimal) -> i64 {
    match d.checked_mul(Decimal::from(UNITS_PER_ONE)) {
        Some(scaled) => {
            let scaled = scaled.ceil();
            i64::try_from(scaled.mantissa() / 10i128.pow(scaled.scale())).unwrap_or(i64::MAX)
        }
        None => i64::MAX,
    }
}

pub fn from_units(u: i64) -> Decimal {
    Decimal::from(u) / Decimal::from(UNITS_PER_ONE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_exact_and_round_up() {
        assert_eq!(to_units("10.00".parse().unwrap()), 100_000);
        assert_eq!(to_units("0.40".parse().unwrap()), 4_000);
        assert_eq!(to_units("0.00001".parse().unwrap()), 1);
        assert_eq!(from_units(4_000).normalize().to_string(), "0.4");
    }

    #[test]
    fn exact_arithmetic_refuses_to_round() {
        let big = Decimal::MAX;
        let small: Decimal = "0.0001".parse().unwrap();
        // rust_decimal keeps the integer part and drops the decimals: not exact.
        assert!(big.checked_sub(small).is_some());
        assert_eq!(exact_sub(big, small), None);
        assert_eq!(exact_add(big - Decimal::ONE, small), None);
        assert_eq!(exact_add(big, Decimal::ONE), None);
        assert_eq!(
            exact_add("10.50".parse().unwrap(), small).map(|d| d.to_string()),
            Some("10.5001".into())
        );
        assert_eq!(
            exact_mul("27.45".parse().unwrap(), Decimal::from(2)).map(|d| d.to_string()),
            Some("54.90".into())
        );
        assert_eq!(exact_mul(big, Decimal::TWO), None);
        assert_eq!(exact_mul("0.1".parse().unwrap(), Decimal::new(1, 28)), None);
    }

    #[test]
    fn currency_must_be_iso() {
        assert!("EUR".parse::<Currency>().is_ok());
        assert!("eur".parse::<Currency>().is_err());
        assert!("EURO".parse::<Currency>().is_err());
        assert!("XYZ".parse::<Currency>().is_err());
    }

    #[test]
    fn json_numbers_are_exact() {
        // 28 significant digits: more than an f64 holds, exactly what a Decimal holds.
        let v: serde_json::Value = serde_json::from_str("0.1000000000000000055511151231").unwrap();
        assert_eq!(
            amount_from_json(&v).unwrap().to_string(),
            "0.1000000000000000055511151231"
        );
        // More digits than can be kept exactly is an error, never a silent rounding.
        let v: serde_json::Value =
            serde_json::from_str("0.1000000000000000055511151231257827").unwrap();
        assert!(amount_from_json(&v).is_err());
        let v: serde_json::Value = serde_json::from_str("54.90").unwrap();
        assert_eq!(amount_from_json(&v).unwrap().to_string(), "54.90");
        assert!(amount_from_json(&serde_json::json!("5,00")).is_err());
        assert!(amount_from_json(&serde_json::json!(" 5")).is_err());
        assert!(amount_from_json(&serde_json::json!(true)).is_err());
    }

    #[test]
    fn amounts_show_two_decimals() {
        assert_eq!(format_amount(Decimal::from(10)), "10.00");
        assert_eq!(format_amount("10.5".parse().unwrap()), "10.50");
        assert_eq!(format_amount("10.125".parse().unwrap()), "10.125");
    }

    #[test]
    fn formatted_amounts_match_the_published_pattern() {
        let pattern = regex::Regex::new(AMOUNT_PATTERN).unwrap();
        for a in [
            "0", "0.4", "10", "10.5", "10.125", "1000000", "0.00", "7.0000",
        ] {
            let text = format_amount(a.parse().unwrap());
            assert!(pattern.is_match(&text), "{a} -> {text}");
        }
        for bad in ["10", "10.0", "-1.00", "01.00", "1e3", "10,00", " 1.00"] {
            assert!(!pattern.is_match(bad), "{bad}");
        }
        let currency = regex::Regex::new(CURRENCY_PATTERN).unwrap();
        assert!(currency.is_match(Currency::from_str("EUR").unwrap().as_str()));
    }
}
