//! An event's JSON as read, borrowing from the bytes: strings without escapes and numbers are
//! slices of the input, objects are short lists of fields. Reading an event into it costs a
//! fraction of a `serde_json::Value` (no map hashing, no allocation per key), and it keeps a
//! number's exact text, which amounts need.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// The key under which serde_json (with its `arbitrary_precision` feature, which this crate
/// enables) hands a number's text to a visitor as a one-entry map. The test
/// `numbers_keep_their_text` fails if serde_json ever hands numbers over another way.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// A number's text as written (`27.450`, `1e3`).
    Number(Cow<'a, str>),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Fields in the order written; a key written twice counts with its last value, as in
    /// `serde_json::Value`.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses `bytes` (serde_json's parser, with its nesting limit).
    pub fn parse(bytes: &'a [u8]) -> serde_json::Result<Json<'a>> {
        serde_json::from_slice(bytes)
    }

    /// The same document, borrowing from an already parsed `serde_json::Value`.
    pub fn from_value(v: &'a serde_json::Value) -> Json<'a> {
        use serde_json::Value;
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(Cow::Owned(n.to_string())),
            Value::String(s) => Json::String(Cow::Borrowed(s)),
            Value::Array(a) => Json::Array(a.iter().map(Json::from_value).collect()),
            Value::Object(m) => Json::Object(
                m.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Json::from_value(v)))
                    .collect(),
            ),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// A field of an object: its last value when the key was written more than once.
    pub fn field(fields: &'a [(Cow<'a, str>, Json<'a>)], key: &str) -> Option<&'a Json<'a>> {
        fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A short name of the value's kind, for error messages (as `money::json_kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Json<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }

    // Without `arbitrary_precision` numbers would come this way; kept exact all the same.
    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(Cow::Owned(n.to_string())))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(Cow::Owned(n.to_string())))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
        Ok(Json::Number(Cow::Owned(
            serde_json::Number::from_f64(n).map_or_else(|| "null".into(), |n| n.to_string()),
        )))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Json::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut out: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if out.is_empty() && key.0 == NUMBER_TOKEN {
                // Checked as serde_json checks it: an object written with this key by hand is
                // not a number.
                let text: String = map.next_value()?;
                return match text.parse::<serde_json::Number>() {
                    Ok(_) => Ok(Json::Number(Cow::Owned(text))),
                    Err(_) => Err(serde::de::Error::custom("invalid number")),
                };
            }
            out.push((key.0, map.next_value()?));
        }
        Ok(Json::Object(out))
    }
}

/// An object's key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_text() {
        let doc = Json::parse(br#"{"a": 27.450, "b": 1e3, "c": -0, "d": 12345678901234567890123}"#)
            .unwrap();
        let Json::Object(fields) = doc else {
            panic!("an object")
        };
        let texts: Vec<_> = fields
            .iter()
            .map(|(k, v)| (k.as_ref(), v.clone()))
            .collect();
        assert_eq!(
            texts,
            [
                ("a", Json::Number("27.450".into())),
                // serde_json's scanner writes an exponent's sign (as in `serde_json::Value`).
                ("b", Json::Number("1e+3".into())),
                ("c", Json::Number("-0".into())),
                ("d", Json::Number("12345678901234567890123".into())),
            ]
        );
    }

    #[test]
    fn fields_read_as_from_serde_json_value() {
        let text = r#"{"s": "a\"b", "t": "plain", "n": null, "b": true, "x": [1, {"y": 2.50}], "k": 1, "k": 2}"#;
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let Json::Object(fields) = Json::parse(text.as_bytes()).unwrap() else {
            panic!("an object")
        };
        for key in ["s", "t", "n", "b", "x", "k", "absent"] {
            assert_eq!(
                Json::field(&fields, key),
                value.get(key).map(Json::from_value).as_ref(),
                "{key}"
            );
        }
        assert_eq!(Json::field(&fields, "k"), Some(&Json::Number("2".into())));
        assert!(matches!(
            Json::field(&fields, "t"),
            Some(Json::String(Cow::Borrowed("plain")))
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert!(Json::parse(deep.as_bytes()).is_err());
    }

    /// Reading an event from its bytes through `Json` gives what reading it through
    /// `serde_json::Value` gives: the same event, or the same rejection.
    mod same_as_value {
        use crate::event::{event_from_value, parse_event};
        use proptest::prelude::*;
        use serde_json::{Value, json};

        fn placed() -> Value {
            json!({"event_id": "e1", "type": "order.placed", "occurred_at": "2026-11-20T10:00:00Z",
                "order": {"id": "O-1", "customer": {"id": "C-1", "email": "a@b.c", "first_name": "Ana",
                    "time_zone": "Europe/Berlin", "birthday": "1990-03-04"},
                    "currency": "EUR", "total": "54.90", "coupon_codes": ["X-1"],
                    "items": [{"sku": "B1", "name": "Book", "category": "books", "quantity": 2, "unit_price": 27.45}],
                    "shipping": {"country": "DE"}, "warehouse": "WH-BER"}})
        }

        fn other_kinds() -> Vec<Value> {
            let history = include_str!("../../examples/history.ndjson");
            history
                .lines()
                .take(40)
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        }

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                "-?[0-9]{1,30}(\\.[0-9]{1,30})?(e-?[0-9]{1,2})?"
                    .prop_map(|t| serde_json::from_str(&t).unwrap_or(Value::Null)),
                ".{0,12}".prop_map(Value::String),
                "[0-9]{1,4}\\.[0-9]{0,6}".prop_map(Value::String),
                Just(json!("2026-11-20T10:00:00+01:00")),
                Just(json!("1990-02-30")),
                Just(json!([])),
                Just(json!({})),
                Just(json!(["a", 1])),
            ]
        }

        /// Every path to a value in `v`.
        fn paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        prefix.push(k.clone());
                        out.push(prefix.clone());
                        paths(x, prefix, out);
                        prefix.pop();
                    }
                }
                Value::Array(a) => {
                    for (i, x) in a.iter().enumerate() {
                        prefix.push(i.to_string());
                        out.push(prefix.clone());
                        paths(x, prefix, out);
                        prefix.pop();
                    }
                }
                _ => {}
            }
        }

        fn set(v: &mut Value, path: &[String], new: Value) {
            let mut cur = v;
            for p in path {
                cur = match cur {
                    Value::Object(m) => m.get_mut(p).expect("a path of the value"),
                    Value::Array(a) => &mut a[p.parse::<usize>().expect("an index")],
                    _ => unreachable!("paths lead through objects and arrays"),
                };
            }
            *cur = new;
        }

        fn check(text: &str) {
            let by_value = serde_json::from_str::<Value>(text)
                .map_err(|e| e.to_string())
                .map(|v| event_from_value(&v));
            match (parse_event(text.as_bytes()), by_value) {
                (Ok(a), Ok(Ok(b))) => assert_eq!(a, b, "{text}"),
                (Err(a), Ok(Err(b))) => assert_eq!(a, b, "{text}"),
                (Err(a), Err(json)) => assert_eq!(a.message, format!("not valid JSON: {json}")),
                (a, b) => panic!("{text}: {a:?} against {b:?}"),
            }
        }

        proptest! {
            #[test]
            fn a_changed_field(which in 0usize..40, pick in any::<prop::sample::Index>(), new in leaf()) {
                let mut events = other_kinds();
                events.push(placed());
                let mut v = events[which % events.len()].clone();
                let mut all = Vec::new();
                paths(&v, &mut Vec::new(), &mut all);
                let path: &Vec<String> = pick.get(&all);
                set(&mut v, path, new);
                check(&v.to_string());
            }

            #[test]
            fn a_key_written_twice(value in leaf(), key in prop::sample::select(vec!["event_id", "type", "occurred_at", "order"])) {
                let text = placed().to_string();
                let twice = format!("{}, {:?}: {}}}", &text[..text.len() - 1], key, value);
                check(&twice);
            }

            #[test]
            fn broken_text(cut in 0usize..400, junk in "[\\[\\]{}\",:0-9a-z\\\\ ]{0,4}") {
                let text = placed().to_string();
                let cut = cut.min(text.len());
                check(&format!("{}{junk}{}", &text[..cut], &text[cut..]));
            }
        }
    }
}
