//! The JSON Schemas of the messages, as shipped in `schemas/`, generated from the types.
//!
//! The message types name the shared shapes below (`#[schemars(with = ...)]`) so that each is
//! written once, under `$defs`, with its description; the two topics that carry two kinds of
//! message get one schema each that picks the kind by its `type`.

use super::{
    CouponEvent, CouponIssued, CouponIssuedType, CouponVoided, CouponVoidedType,
    CustomerPreference, CustomerSuppressed, CustomerSuppressedType, CustomerUnsubscribed,
    CustomerUnsubscribedType, DlqHeaders, SCHEMA_VERSION,
};
use crate::coupon::CODE_PATTERN;
use crate::engine::Decision;
use crate::kafka::{
    TOPIC_COUPONS, TOPIC_CUSTOMER_PREFERENCES, TOPIC_ORDERS_DLQ, TOPIC_PACKING_INSTRUCTIONS,
};
use crate::money::AMOUNT_PATTERN;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use std::borrow::Cow;

/// One shipped message schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSchema {
    /// The topic whose messages follow it (for `orders.dlq`: their headers).
    pub topic: &'static str,
    /// Its file in `schemas/`.
    pub file: &'static str,
    /// The schema, pretty-printed, with a trailing newline.
    pub json: String,
}

/// Every message schema, as the files in `schemas/` must read.
pub fn message_schemas() -> Vec<MessageSchema> {
    vec![
        MessageSchema {
            topic: TOPIC_PACKING_INSTRUCTIONS,
            file: "packing-instruction.schema.json",
            json: root_schema::<Decision>(),
        },
        MessageSchema {
            topic: TOPIC_COUPONS,
            file: "coupon-event.schema.json",
            json: root_schema::<CouponEvent>(),
        },
        MessageSchema {
            topic: TOPIC_ORDERS_DLQ,
            file: "dlq-headers.schema.json",
            json: root_schema::<DlqHeaders>(),
        },
        MessageSchema {
            topic: TOPIC_CUSTOMER_PREFERENCES,
            file: "customer-preference.schema.json",
            json: root_schema::<CustomerPreference>(),
        },
    ]
}

/// `T`'s schema as a file: draft 2020-12, of what is serialized, pretty-printed.
fn root_schema<T: JsonSchema>() -> String {
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>();
    absent_not_null(&mut schema);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

/// A shape several messages share: a `$defs` entry of its own.
macro_rules! shared_shape {
    ($name:ident $schema:tt) => {
        pub(super) struct $name;

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

shared_shape!(SchemaVersion {
    "description": "The version of this message's shape.",
    "type": "integer",
    "const": SCHEMA_VERSION
});
shared_shape!(Code {
    "description": "The coupon code: its prefix, a dash and 12 characters of Crockford's base32 (no I, L, O, U).",
    "type": "string",
    "pattern": CODE_PATTERN
});
shared_shape!(Version {
    "description": "The code's version: 1 when issued, higher with every later change.",
    "type": "integer",
    "minimum": 1
});
shared_shape!(Amount {
    "description": "Money: a decimal string with at least two decimals, never a JSON number.",
    "type": "string",
    "pattern": AMOUNT_PATTERN
});
shared_shape!(Time {
    "description": "An RFC 3339 time, UTC.",
    "type": "string",
    "format": "date-time"
});
shared_shape!(CustomerId {
    "description": "The customer id, as in the `orders` events.",
    "type": "string",
    "minLength": 1
});
shared_shape!(Email {
    "description": "The customer's e-mail address, when known.",
    "type": "string",
    "format": "email"
});

/// A topic's messages: exactly one of `kinds`, told apart by their `type` (listed first, so that
/// a message of an unknown type is refused for that, not for every field of every kind).
fn one_of_types(title: &str, description: &str, kinds: Vec<(&str, Schema)>) -> Schema {
    let (types, schemas): (Vec<&str>, Vec<Schema>) = kinds.into_iter().unzip();
    json_schema!({
        "title": title,
        "description": description,
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": types}},
        "oneOf": schemas,
    })
}

impl JsonSchema for CouponEvent {
    fn schema_name() -> Cow<'static, str> {
        "CouponEvent".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        one_of_types(
            "Packwell coupon event",
            "A message on Kafka `coupons` (key: the coupon code): `coupon.issued` or \
             `coupon.voided`. Each carries the code's `version`, which grows with every change of \
             the code, so a consumer that upserts by code keeps the highest version and never \
             revives a voided code from a late re-send.",
            vec![
                (
                    CouponIssuedType::NAME,
                    generator.subschema_for::<CouponIssued>(),
                ),
                (
                    CouponVoidedType::NAME,
                    generator.subschema_for::<CouponVoided>(),
                ),
            ],
        )
    }
}

impl JsonSchema for CustomerPreference {
    fn schema_name() -> Cow<'static, str> {
        "CustomerPreference".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        one_of_types(
            "Packwell customer preference event",
            "A message on Kafka `customer-preferences` (key: the customer id): \
             `customer.unsubscribed` when a customer used an e-mail's unsubscribe link, \
             `customer.suppressed` after a hard bounce or a spam complaint.",
            vec![
                (
                    CustomerUnsubscribedType::NAME,
                    generator.subschema_for::<CustomerUnsubscribed>(),
                ),
                (
                    CustomerSuppressedType::NAME,
                    generator.subschema_for::<CustomerSuppressed>(),
                ),
            ],
        )
    }
}

/// An optional field of a message is left out when it has no value (`skip_serializing_if`),
/// never written as null: the schema says so rather than allow a null nobody sends. (A field
/// that is written as null, such as `min_order` of `coupon.issued`, is required, and keeps it.)
fn absent_not_null(schema: &mut schemars::Schema) {
    use serde_json::Value;
    schemars::transform::transform_subschemas(&mut absent_not_null, schema);
    let required: Vec<Value> = match schema.get("required") {
        Some(Value::Array(r)) => r.clone(),
        _ => Vec::new(),
    };
    let Some(Value::Object(properties)) = schema.get_mut("properties") else {
        return;
    };
    let null = serde_json::json!({"type": "null"});
    for (name, property) in properties.iter_mut() {
        let Some(property) = property.as_object_mut() else {
            continue;
        };
        if required.contains(&Value::String(name.clone())) {
            continue;
        }
        if let Some(Value::Array(types)) = property.get_mut("type") {
            types.retain(|t| t != "null");
            if let [only] = types.as_slice() {
                let only = only.clone();
                property.insert("type".into(), only);
            }
        }
        let some = match property.get("anyOf") {
            Some(Value::Array(any)) if any.len() == 2 && any[1] == null => any[0].clone(),
            _ => continue,
        };
        property.remove("anyOf");
        if let Value::Object(some) = some {
            property.extend(some);
        }
    }
}
