//! A message of Kafka `coupons` (docs/REFERENCE.md §5) as the sync worker reads it: only the
//! fields it needs, checked once here. Packwell wrote it, but the topic is open to others, so
//! nothing in it is trusted to parse.

use rust_decimal::Decimal;
use serde::Deserialize;
use std::str::FromStr;

/// What the worker does with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CouponMessage {
    Issued(Issued),
    Voided { code: String, version: i64 },
}

impl CouponMessage {
    pub fn code(&self) -> &str {
        match self {
            CouponMessage::Issued(i) => &i.code,
            CouponMessage::Voided { code, .. } => code,
        }
    }

    pub fn version(&self) -> i64 {
        match self {
            CouponMessage::Issued(i) => i.version,
            CouponMessage::Voided { version, .. } => *version,
        }
    }
}

/// `coupon.issued`, its terms read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub code: String,
    pub version: i64,
    pub customer_id: String,
    pub rule_id: String,
    pub amount: Decimal,
    pub min_order: Option<Decimal>,
    pub expires_on: chrono::NaiveDate,
    /// RFC 3339, as written.
    pub occurred_at: String,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "type")]
    kind: String,
    code: String,
    version: i64,
    #[serde(default)]
    customer_id: Option<String>,
    #[serde(default)]
    rule_id: Option<String>,
    #[serde(default)]
    amount: Option<String>,
    #[serde(default)]
    min_order: Option<String>,
    #[serde(default)]
    expires_on: Option<String>,
    #[serde(default)]
    occurred_at: Option<String>,
}

/// Reads a message; the error is a sentence naming the field.
pub fn parse(key: Option<&[u8]>, payload: &[u8]) -> Result<CouponMessage, String> {
    let wire: Wire =
        serde_json::from_slice(payload).map_err(|e| format!("not a coupon message: {e}"))?;
    let code = wire.code.trim();
    if code.is_empty() || code.len() > 64 {
        return Err(format!("code {:?}: expected 1 to 64 characters", wire.code));
    }
    if let Some(k) = key
        && k != code.as_bytes()
    {
        return Err(format!(
            "the key {:?} is not the code {code}",
            String::from_utf8_lossy(k)
        ));
    }
    if wire.version < 1 {
        return Err(format!("version {}: expected 1 or more", wire.version));
    }
    let required = |name: &str, v: Option<String>| {
        v.filter(|s| !s.trim().is_empty())
            .ok_or_else(|| format!("{}: {name} is missing", wire.kind))
    };
    match wire.kind.as_str() {
        "coupon.voided" => Ok(CouponMessage::Voided {
            code: code.to_string(),
            version: wire.version,
        }),
        "coupon.issued" => {
            let amount_text = required("amount", wire.amount)?;
            let amount = Decimal::from_str(amount_text.trim())
                .ok()
                .filter(|a| *a > Decimal::ZERO)
                .ok_or_else(|| format!("amount {amount_text:?}: expected a positive amount"))?;
            let min_order = match wire.min_order {
                None => None,
                Some(m) => Some(
                    Decimal::from_str(m.trim())
                        .ok()
                        .filter(|a| *a >= Decimal::ZERO)
                        .ok_or_else(|| format!("min_order {m:?}: expected an amount"))?,
                ),
            };
            let expires = required("expires_on", wire.expires_on)?;
            let expires_on = chrono::NaiveDate::parse_from_str(expires.trim(), "%Y-%m-%d")
                .map_err(|_| format!("expires_on {expires:?}: expected YYYY-MM-DD"))?;
            let occurred_at = required("occurred_at", wire.occurred_at)?;
            chrono::DateTime::parse_from_rfc3339(occurred_at.trim())
                .map_err(|_| format!("occurred_at {occurred_at:?}: expected RFC 3339"))?;
            Ok(CouponMessage::Issued(Issued {
                code: code.to_string(),
                version: wire.version,
                customer_id: required("customer_id", wire.customer_id)?,
                rule_id: required("rule_id", wire.rule_id)?,
                amount,
                min_order,
                expires_on,
                occurred_at: occurred_at.trim().to_string(),
            }))
        }
        other => Err(format!(
            "type {other:?}: expected coupon.issued or coupon.voided"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issued() -> serde_json::Value {
        json!({
            "schema_version": 1, "type": "coupon.issued", "code": "TY-7K2M", "version": 1,
            "order_id": "O-1", "customer_id": "701", "rule_id": "first-order",
            "insert_id": "welcome-coupon", "amount": "5.00", "currency": "EUR",
            "min_order": "30.00", "expires_on": "2026-03-31", "occurred_at": "2026-01-05T10:00:00Z"
        })
    }

    #[test]
    fn an_issued_coupon_is_read_with_its_terms() {
        let m = parse(Some(b"TY-7K2M"), issued().to_string().as_bytes()).unwrap();
        let CouponMessage::Issued(i) = m else {
            panic!("issued")
        };
        assert_eq!(i.amount, Decimal::from_str("5.00").unwrap());
        assert_eq!(i.min_order, Some(Decimal::from_str("30.00").unwrap()));
        assert_eq!(i.expires_on.to_string(), "2026-03-31");
        let mut no_min = issued();
        no_min["min_order"] = serde_json::Value::Null;
        let m = parse(None, no_min.to_string().as_bytes()).unwrap();
        assert!(matches!(
            m,
            CouponMessage::Issued(Issued {
                min_order: None,
                ..
            })
        ));
    }

    #[test]
    fn a_voided_coupon_needs_its_code_and_version_only() {
        let v = json!({ "schema_version": 1, "type": "coupon.voided", "code": "TY-1", "version": 2,
            "order_id": "O-1", "customer_id": "C", "reason": "operator", "occurred_at": "2026-01-05T10:00:00Z" });
        assert_eq!(
            parse(Some(b"TY-1"), v.to_string().as_bytes()),
            Ok(CouponMessage::Voided {
                code: "TY-1".into(),
                version: 2
            })
        );
    }

    #[test]
    fn bad_messages_name_the_field() {
        let with = |field: &str, value: serde_json::Value| {
            let mut m = issued();
            m[field] = value;
            parse(None, m.to_string().as_bytes()).unwrap_err()
        };
        assert!(with("amount", json!("-1")).contains("amount \"-1\""));
        assert!(with("amount", json!("ten")).contains("amount"));
        assert!(with("expires_on", json!("31.03.2026")).contains("expires_on"));
        assert!(with("type", json!("coupon.redeemed")).contains("type"));
        assert!(with("version", json!(0)).contains("version 0"));
        assert!(
            parse(None, b"{")
                .unwrap_err()
                .contains("not a coupon message")
        );
        assert!(
            parse(Some(b"OTHER"), issued().to_string().as_bytes())
                .unwrap_err()
                .contains("not the code")
        );
    }
}
