//! The messages Packwell emits (docs/REFERENCE.md §5) as types: each is built in one place here,
//! turned into the one shape the outbox stores ([`OutboxMessage`]), and its JSON Schema in
//! `schemas/` is generated from the same types ([`message_schemas`]).
//!
//! - `coupons`: [`CouponIssued`], [`CouponVoided`] (key: the code).
//! - `customer-preferences`: [`CustomerUnsubscribed`], [`CustomerSuppressed`] (key: the
//!   customer id).
//! - `orders.dlq`: [`DeadLetter`], the rejected message with [`DlqHeaders`].
//! - `packing-instructions`: the decision itself, [`crate::engine::Decision`].
//!
//! The JSON of every message is what it was when these were written as `json!` literals: the
//! same fields in the same order, amounts and dates as strings, times as the caller formatted
//! them (`message/tests.rs` and `message/dlq.rs` pin this byte for byte).

mod dlq;
pub mod schema;

pub use dlq::{DLQ_MAX_VALUE, DeadLetter, DlqHeaders, DlqSource};
pub use schema::{MessageSchema, message_schemas};

use crate::engine::{CouponGiven, Decision, GivenInsert};
use crate::kafka::{TOPIC_COUPONS, TOPIC_CUSTOMER_PREFERENCES, TOPIC_PACKING_INSTRUCTIONS};
use crate::money::CURRENCY_PATTERN;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;
use std::borrow::Cow;

/// The `schema_version` of the coupon and customer-preference messages.
pub const SCHEMA_VERSION: u32 = 1;

/// A row for the outbox: what the relay sends to Kafka after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub topic: &'static str,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// JSON object of header name → value.
    pub headers: Option<String>,
}

impl OutboxMessage {
    /// A JSON message under `key`, without headers.
    fn keyed_json(topic: &'static str, key: &str, payload: &impl Serialize) -> Self {
        OutboxMessage {
            topic,
            key: Some(key.as_bytes().to_vec()),
            payload: to_json(payload).into_bytes(),
            headers: None,
        }
    }
}

/// The decision on `packing-instructions` (key: the order id).
impl TryFrom<&Decision> for OutboxMessage {
    type Error = serde_json::Error;

    fn try_from(decision: &Decision) -> Result<Self, Self::Error> {
        Ok(OutboxMessage {
            topic: TOPIC_PACKING_INSTRUCTIONS,
            key: Some(decision.order_id.as_bytes().to_vec()),
            payload: serde_json::to_vec(decision)?,
            headers: None,
        })
    }
}

/// The messages' JSON. They hold strings, integers and unit enums only, which always serialize.
fn to_json(message: &impl Serialize) -> String {
    serde_json::to_string(message).unwrap_or_default()
}

/// A message's `type`: one fixed string, serialized as such and a `const` in its schema.
macro_rules! message_type {
    ($(#[$doc:meta])* $name:ident = $value:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name;

        impl $name {
            pub const NAME: &'static str = $value;
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str($value)
            }
        }

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({"const": $value})
            }
        }
    };
}

message_type!(
    /// `coupon.issued`
    CouponIssuedType = "coupon.issued"
);
message_type!(
    /// `coupon.voided`
    CouponVoidedType = "coupon.voided"
);
message_type!(
    /// `customer.unsubscribed`
    CustomerUnsubscribedType = "customer.unsubscribed"
);
message_type!(
    /// `customer.suppressed`
    CustomerSuppressedType = "customer.suppressed"
);

/// A coupon was given: in a parcel (with the order's decision) or in an e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CouponIssued {
    #[schemars(with = "schema::SchemaVersion")]
    schema_version: u32,
    #[serde(rename = "type")]
    kind: CouponIssuedType,
    #[schemars(with = "schema::Code")]
    code: String,
    #[schemars(with = "schema::Version")]
    version: i64,
    /// The order the coupon was given with (or the order whose follow-up e-mail gave it).
    #[schemars(length(min = 1))]
    order_id: String,
    #[schemars(length(min = 1))]
    customer_id: String,
    /// The rule that gave the coupon, or the follow-up whose e-mail gave it.
    #[schemars(length(min = 1))]
    rule_id: String,
    /// The coupon's insert id in the rules.
    #[schemars(length(min = 1))]
    insert_id: String,
    /// Face value in `currency`.
    #[schemars(with = "schema::Amount")]
    amount: String,
    /// The order's currency (ISO 4217).
    #[schemars(pattern(CURRENCY_PATTERN))]
    currency: String,
    /// The least order total the coupon is valid for; null when it has none.
    #[schemars(with = "Option<schema::Amount>")]
    min_order: Option<String>,
    /// The last day the coupon is valid (YYYY-MM-DD).
    #[schemars(extend("format" = "date"))]
    expires_on: String,
    /// When it was issued: the decision time, or when the e-mail that gives it was sent.
    #[schemars(with = "schema::Time")]
    occurred_at: String,
}

/// Who a coupon is issued to, and what gave it.
#[derive(Debug, Clone, Copy)]
pub struct IssuedFor<'a> {
    pub order_id: &'a str,
    pub customer_id: &'a str,
    /// The rule, or the follow-up whose e-mail gives it.
    pub rule_id: &'a str,
    pub insert_id: &'a str,
}

impl CouponIssued {
    /// A coupon's first version (1), with its terms as the decision or the e-mail plan has them.
    pub fn new(given: IssuedFor<'_>, coupon: &CouponGiven, occurred_at: &str) -> Self {
        CouponIssued {
            schema_version: SCHEMA_VERSION,
            kind: CouponIssuedType,
            code: coupon.code.clone(),
            version: 1,
            order_id: given.order_id.to_string(),
            customer_id: given.customer_id.to_string(),
            rule_id: given.rule_id.to_string(),
            insert_id: given.insert_id.to_string(),
            amount: coupon.amount.clone(),
            currency: coupon.currency.clone(),
            min_order: coupon.min_order.clone(),
            expires_on: coupon.expires_on.clone(),
            occurred_at: occurred_at.to_string(),
        }
    }

    /// A coupon given in a parcel: issued at the decision time.
    pub fn in_parcel(decision: &Decision, insert: &GivenInsert, coupon: &CouponGiven) -> Self {
        let given = IssuedFor {
            order_id: &decision.order_id,
            customer_id: &decision.customer_id,
            rule_id: &insert.rule_id,
            insert_id: &insert.insert_id,
        };
        Self::new(given, coupon, &decision.decided_at)
    }

    pub fn into_outbox(self) -> OutboxMessage {
        OutboxMessage::keyed_json(TOPIC_COUPONS, &self.code, &self)
    }
}

/// Why a coupon was voided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(inline)]
pub enum CouponVoidReason {
    OrderCancelled,
    NotPacked,
    Operator,
    EmailNotSent,
}

/// A coupon no longer valid: its order was cancelled before packing, the packing station did
/// not pack it, an operator voided it, or the e-mail that gave it never went out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CouponVoided {
    #[schemars(with = "schema::SchemaVersion")]
    schema_version: u32,
    #[serde(rename = "type")]
    kind: CouponVoidedType,
    #[schemars(with = "schema::Code")]
    code: String,
    #[schemars(with = "schema::Version")]
    version: i64,
    /// The order the coupon was given with.
    #[schemars(length(min = 1))]
    order_id: String,
    #[schemars(length(min = 1))]
    customer_id: String,
    /// `order_cancelled`: an `order.cancelled` before packing; `not_packed`: the station
    /// confirmed the parcel without it; `operator`: `packwell coupon void`; `email_not_sent`:
    /// the follow-up e-mail that gave it failed, or was skipped or cancelled before a retry, so
    /// the customer never received it.
    reason: CouponVoidReason,
    /// The cancellation's `occurred_at`, when the station's confirmation was recorded, when the
    /// operator voided it, or when the e-mail was given up.
    #[schemars(with = "schema::Time")]
    occurred_at: String,
}

impl CouponVoided {
    /// `version` is the code's version after voiding (the one the store just wrote).
    pub fn new(
        code: &str,
        version: i64,
        order_id: &str,
        customer_id: &str,
        reason: CouponVoidReason,
        occurred_at: &str,
    ) -> Self {
        CouponVoided {
            schema_version: SCHEMA_VERSION,
            kind: CouponVoidedType,
            code: code.to_string(),
            version,
            order_id: order_id.to_string(),
            customer_id: customer_id.to_string(),
            reason,
            occurred_at: occurred_at.to_string(),
        }
    }

    pub fn into_outbox(self) -> OutboxMessage {
        OutboxMessage::keyed_json(TOPIC_COUPONS, &self.code, &self)
    }
}

/// The customer unsubscribed through an e-mail's link (RFC 8058 one-click or the page's
/// button), the first time they did. The shop may send `customer.unsubscribed` back to
/// `orders`; a later `customer.subscribed` there subscribes them again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CustomerUnsubscribed {
    #[schemars(with = "schema::SchemaVersion")]
    schema_version: u32,
    #[serde(rename = "type")]
    kind: CustomerUnsubscribedType,
    #[schemars(with = "schema::CustomerId")]
    customer_id: String,
    /// When the customer unsubscribed.
    #[schemars(with = "schema::Time")]
    occurred_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "schema::Email")]
    email: Option<String>,
}

impl CustomerUnsubscribed {
    /// `email`: the profile's address, left out when it is unknown or blank.
    pub fn new(customer_id: &str, email: Option<&str>, occurred_at: &str) -> Self {
        CustomerUnsubscribed {
            schema_version: SCHEMA_VERSION,
            kind: CustomerUnsubscribedType,
            customer_id: customer_id.to_string(),
            occurred_at: occurred_at.to_string(),
            email: email.filter(|e| !e.trim().is_empty()).map(str::to_string),
        }
    }

    pub fn into_outbox(self) -> OutboxMessage {
        OutboxMessage::keyed_json(TOPIC_CUSTOMER_PREFERENCES, &self.customer_id, &self)
    }
}

/// Why an address gets no more e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(inline)]
pub enum SuppressionReason {
    HardBounce,
    Complaint,
}

impl SuppressionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::HardBounce => "hard_bounce",
            SuppressionReason::Complaint => "complaint",
        }
    }
}

impl std::str::FromStr for SuppressionReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hard_bounce" => Ok(SuppressionReason::HardBounce),
            "complaint" => Ok(SuppressionReason::Complaint),
            other => Err(format!(
                "suppression reason {other:?}: expected hard_bounce or complaint"
            )),
        }
    }
}

/// No more e-mail to this address: the provider reported a hard bounce or a spam complaint
/// (POST /v1/email-events). One message per customer whose e-mails went to the address, the
/// first time it is reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CustomerSuppressed {
    #[schemars(with = "schema::SchemaVersion")]
    schema_version: u32,
    #[serde(rename = "type")]
    kind: CustomerSuppressedType,
    #[schemars(with = "schema::CustomerId")]
    customer_id: String,
    // Always written; `packwell forget` takes it out of a message not yet sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "schema::Email")]
    email: Option<String>,
    /// `hard_bounce`: the address does not exist or refuses mail for good; `complaint`: the
    /// customer marked an e-mail as spam.
    reason: SuppressionReason,
    /// The provider's `occurred_at` of the bounce or complaint.
    #[schemars(with = "schema::Time")]
    occurred_at: String,
}

impl CustomerSuppressed {
    /// `email` as reported, without surrounding blanks.
    pub fn new(
        customer_id: &str,
        email: &str,
        reason: SuppressionReason,
        occurred_at: &str,
    ) -> Self {
        CustomerSuppressed {
            schema_version: SCHEMA_VERSION,
            kind: CustomerSuppressedType,
            customer_id: customer_id.to_string(),
            email: Some(email.trim().to_string()),
            reason,
            occurred_at: occurred_at.to_string(),
        }
    }

    pub fn into_outbox(self) -> OutboxMessage {
        OutboxMessage::keyed_json(TOPIC_CUSTOMER_PREFERENCES, &self.customer_id, &self)
    }
}

macro_rules! into_outbox {
    ($($message:ty),*) => {
        $(impl From<$message> for OutboxMessage {
            fn from(message: $message) -> Self {
                message.into_outbox()
            }
        })*
    };
}

into_outbox!(
    CouponIssued,
    CouponVoided,
    CustomerUnsubscribed,
    CustomerSuppressed,
    DeadLetter
);

/// A message on `coupons`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CouponEvent {
    Issued(CouponIssued),
    Voided(CouponVoided),
}

/// A message on `customer-preferences`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CustomerPreference {
    Unsubscribed(CustomerUnsubscribed),
    Suppressed(CustomerSuppressed),
}

#[cfg(test)]
mod tests;
