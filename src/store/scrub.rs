//! What `forget` does to the stored copies of a customer's messages: pure functions over the
//! bytes of an outbox row, so that the two backends erase alike and tests see it plainly.
//!
//! A message keeps its shape and its anonymous facts (ids, amounts, reasons); what names or
//! locates the customer goes: the `customer` object of an event keeps its `id` only, the
//! `shipping` object its `country` only, fields that hold contact data anywhere are dropped,
//! a note's text (it greets the customer by name) becomes [`ERASED`], and every other string
//! has each of the customer's known values (their names, e-mail addresses, city, postcode)
//! replaced. Bytes that are not JSON (a cut or garbled event in the DLQ) cannot be taken apart
//! safely, and are replaced whole.

use serde_json::{Map, Value};

/// What stands where personal data was.
pub const ERASED: &str = "[erased]";

/// Fields that hold contact data wherever they are.
const CONTACT_FIELDS: &[&str] = &[
    "email",
    "first_name",
    "last_name",
    "birthday",
    "phone",
    "address",
    "address1",
    "address2",
    "street",
    "city",
    "postcode",
    "billing",
];

/// The customer's known values, each replaced wherever it appears.
#[derive(Debug, Default, Clone)]
pub struct Needles(Vec<String>);

impl Needles {
    /// Adds a value (trimmed; one shorter than 2 characters is left to the field rules). An
    /// e-mail address is also added lower-cased (mail systems fold its case).
    pub fn add(&mut self, value: &str) {
        let value = value.trim();
        if value.chars().count() < 2 {
            return;
        }
        let mut forms = vec![value.to_string()];
        if value.contains('@') {
            forms.push(value.to_lowercase());
        }
        for v in forms {
            if !self.0.contains(&v) {
                self.0.push(v);
            }
        }
        // Longest first, so that a name inside an address does not leave the rest of it.
        self.0
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// The personal values an event carries: the customer's fields and where it ships to.
    pub fn add_from_event(&mut self, event: &Value) {
        for customer in [event.pointer("/order/customer"), event.get("customer")]
            .into_iter()
            .flatten()
        {
            for field in ["email", "first_name", "last_name"] {
                if let Some(v) = customer.get(field).and_then(Value::as_str) {
                    self.add(v);
                }
            }
        }
        if let Some(shipping) = event.pointer("/order/shipping") {
            for field in ["city", "postcode", "street", "address"] {
                if let Some(v) = shipping.get(field).and_then(Value::as_str) {
                    self.add(v);
                }
            }
        }
    }

    /// `text` with every needle replaced where it stands as a word of its own (so that the
    /// name "Al" leaves "Almond" alone).
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.0 {
            out = replace_words(&out, n);
        }
        out
    }
}

fn replace_words(text: &str, needle: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(needle) {
        let before = if at == 0 {
            out.chars().next_back()
        } else {
            rest[..at].chars().next_back()
        };
        let after = rest[at + needle.len()..].chars().next();
        out.push_str(&rest[..at]);
        if word(before) || word(after) {
            out.push_str(needle);
        } else {
            out.push_str(ERASED);
        }
        rest = &rest[at + needle.len()..];
    }
    out.push_str(rest);
    out
}

/// The JSON value with the customer taken out (see the module's notes).
pub fn scrub_value(value: &mut Value, needles: &Needles) {
    match value {
        Value::Object(map) => scrub_object(map, needles),
        Value::Array(list) => list.iter_mut().for_each(|v| scrub_value(v, needles)),
        Value::String(s) => {
            let redacted = needles.redact(s);
            if redacted != *s {
                *s = redacted;
            }
        }
        _ => {}
    }
}

fn scrub_object(map: &mut Map<String, Value>, needles: &Needles) {
    map.retain(|k, _| !CONTACT_FIELDS.contains(&k.as_str()));
    for (key, v) in map.iter_mut() {
        match (key.as_str(), v) {
            ("customer", Value::Object(c)) => c.retain(|k, _| k == "id"),
            ("shipping", Value::Object(s)) => s.retain(|k, _| k == "country"),
            ("note", Value::Object(n)) => {
                if n.contains_key("text") {
                    n.insert("text".into(), Value::String(ERASED.into()));
                }
                scrub_object(n, needles);
            }
            (_, v) => scrub_value(v, needles),
        }
    }
}

/// A stored message's bytes with the customer taken out, or `None` when nothing changes.
pub fn scrub_payload(payload: &[u8], needles: &Needles) -> Option<Vec<u8>> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(mut v) => {
            let before = v.clone();
            scrub_value(&mut v, needles);
            (v != before).then(|| v.to_string().into_bytes())
        }
        Err(_) if payload == ERASED.as_bytes() => None,
        Err(_) => Some(ERASED.as_bytes().to_vec()),
    }
}

/// A DLQ row's headers (a JSON object of strings) with the needles replaced in each value,
/// or `None` when nothing changes (the error sentence may quote the bad field's value).
pub fn scrub_headers(headers: &str, needles: &Needles) -> Option<String> {
    let mut v: Value = serde_json::from_str(headers).ok()?;
    let before = v.clone();
    if let Value::Object(map) = &mut v {
        for value in map.values_mut() {
            if let Value::String(s) = value {
                *s = needles.redact(s);
            }
        }
    }
    (v != before).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn needles() -> Needles {
        let mut n = Needles::default();
        n.add_from_event(&event());
        n
    }

    fn event() -> Value {
        json!({"event_id": "e1", "type": "order.placed", "order": {"id": "O-1",
            "customer": {"id": "C-1", "email": "Zoe.Q@Mail.example", "first_name": "Zoe", "last_name": "Quill",
                "locale": "de-DE", "time_zone": "Europe/Berlin", "birthday": "1990-01-02"},
            "items": [{"sku": "S", "name": "Tea for Zoe", "quantity": 1}],
            "shipping": {"country": "DE", "city": "Quedlinburg", "postcode": "06484", "street": "Markt 1"}}})
    }

    #[test]
    fn an_event_keeps_its_shape_and_loses_the_customer() {
        let raw = event().to_string();
        let out = scrub_payload(raw.as_bytes(), &needles()).expect("changed");
        let text = String::from_utf8(out).unwrap();
        for gone in [
            "Zoe",
            "zoe.q@mail.example",
            "Quill",
            "Quedlinburg",
            "06484",
            "Markt",
            "1990",
            "Berlin",
        ] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["order"]["customer"], json!({"id": "C-1"}));
        assert_eq!(v["order"]["shipping"], json!({"country": "DE"}));
        assert_eq!(v["order"]["items"][0]["name"], "Tea for [erased]");
        assert_eq!(
            scrub_payload(text.as_bytes(), &needles()),
            None,
            "done once"
        );
    }

    #[test]
    fn notes_messages_and_bytes_that_are_not_json() {
        let decision = json!({"order_id": "O-1", "customer_id": "C-1",
            "inserts": [{"insert_id": "card", "note": {"template": "welcome", "text": "Dear Zoe"}}]});
        let out = scrub_payload(decision.to_string().as_bytes(), &Needles::default()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["inserts"][0]["note"],
            json!({"template": "welcome", "text": "[erased]"})
        );
        let unsubscribed =
            json!({"type": "customer.unsubscribed", "customer_id": "C-1", "email": "a@b.example"});
        let out = scrub_payload(unsubscribed.to_string().as_bytes(), &Needles::default()).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"type": "customer.unsubscribed", "customer_id": "C-1"})
        );
        let coupon = json!({"type": "coupon.issued", "code": "TY-1", "customer_id": "C-1"});
        assert_eq!(
            scrub_payload(coupon.to_string().as_bytes(), &needles()),
            None
        );
        let cut = br#"{"order": {"customer": {"email": "zoe"#;
        assert_eq!(scrub_payload(cut, &needles()).unwrap(), ERASED.as_bytes());
        assert_eq!(scrub_payload(ERASED.as_bytes(), &needles()), None);
    }

    #[test]
    fn headers_and_short_values() {
        let headers = json!({"packwell-reason": "invalid", "packwell-error": "order.shipping.postcode: \"06484\" is not a postcode"});
        let out = scrub_headers(&headers.to_string(), &needles()).unwrap();
        assert!(
            !out.contains("06484") && out.contains("packwell-reason"),
            "{out}"
        );
        let mut n = Needles::default();
        n.add("J");
        n.add("Al");
        assert_eq!(n.redact("Just J"), "Just J");
        assert_eq!(
            n.redact("Almond for Al, Al."),
            "Almond for [erased], [erased]."
        );
    }
}
