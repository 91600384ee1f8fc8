//! The dead letter on `orders.dlq`: the rejected message's key and value as read, with headers
//! saying why it was rejected and where it came from (docs/REFERENCE.md §5).

use super::OutboxMessage;
use crate::event::RejectReason;
use crate::kafka::TOPIC_ORDERS_DLQ;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;

/// A DLQ value is cut at this size, with header `packwell-truncated` giving the original size.
pub const DLQ_MAX_VALUE: usize = 512 * 1024;

/// The Kafka headers of a message on `orders.dlq`, as an object of header name to UTF-8 value.
/// The message's key and value are the rejected message's, unchanged (a value over 512 KiB is
/// cut there). Every header value is a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields, title = "Packwell dead-letter headers")]
pub struct DlqHeaders {
    /// Why the event was rejected.
    #[serde(rename = "packwell-reason")]
    #[schemars(schema_with = "reject_reasons")]
    reason: RejectReason,
    /// A sentence naming the field, e.g. `order.items[0].quantity: must be at least 1`.
    #[serde(rename = "packwell-error")]
    #[schemars(length(min = 1))]
    error: String,
    /// The topic the event was read from; for `packwell import`, the imported file; for a shop
    /// webhook that could not be mapped, the platform and its topic (`shopify:orders/create`).
    #[serde(rename = "packwell-source-topic")]
    source_topic: String,
    /// The partition the event was read from, a decimal integer; empty when it was not read
    /// from Kafka (`packwell import`); absent for a shop webhook.
    #[serde(
        rename = "packwell-source-partition",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(pattern("^(0|[1-9][0-9]*)?$"))]
    source_partition: Option<String>,
    /// The event's offset in that partition (for `packwell import`: its line, counted from 0),
    /// a decimal integer; absent for a shop webhook.
    #[serde(
        rename = "packwell-source-offset",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(pattern("^(0|[1-9][0-9]*)$"))]
    source_offset: Option<String>,
    /// Only when the value was cut at 512 KiB: the original value's size in bytes, a decimal
    /// integer.
    #[serde(rename = "packwell-truncated", skip_serializing_if = "Option::is_none")]
    #[schemars(pattern("^[1-9][0-9]*$"))]
    truncated: Option<String>,
}

/// Every reason by its name. (The variants' own docs are for the code, not for consumers.)
fn reject_reasons(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"enum": RejectReason::ALL.map(|r| r.as_str())})
}

impl DlqHeaders {
    /// The headers as the outbox stores them: a JSON object.
    pub fn to_json(&self) -> String {
        super::to_json(self)
    }
}

/// Where a rejected message came from, as its DLQ headers name it: a topic and partition, or
/// an import's file (no partition), or nothing (a scratch store).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DlqSource<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
}

/// A rejected message on its way to `orders.dlq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub key: Option<Vec<u8>>,
    /// The value as read, cut at [`DLQ_MAX_VALUE`].
    pub value: Vec<u8>,
    pub headers: DlqHeaders,
}

impl DeadLetter {
    /// The message at `offset` of `source` (for an import: its line), rejected for `reason`,
    /// `error` saying why.
    pub fn new(
        source: DlqSource,
        offset: i64,
        key: Option<Vec<u8>>,
        value: &[u8],
        reason: RejectReason,
        error: &str,
    ) -> Self {
        let source_partition = source.partition.map(|p| p.to_string()).unwrap_or_default();
        Self::cut(
            key,
            value,
            reason,
            error,
            source.topic.to_string(),
            Some((source_partition, offset.to_string())),
        )
    }

    /// A shop webhook that could not be mapped: its raw body, with the platform and its topic
    /// as the source (`shopify:orders/create`) and no partition or offset.
    pub fn webhook(
        platform: &str,
        topic: &str,
        key: Option<Vec<u8>>,
        body: &[u8],
        error: &str,
    ) -> Self {
        Self::cut(
            key,
            body,
            RejectReason::Unmappable,
            error,
            format!("{platform}:{topic}"),
            None,
        )
    }

    fn cut(
        key: Option<Vec<u8>>,
        value: &[u8],
        reason: RejectReason,
        error: &str,
        source_topic: String,
        position: Option<(String, String)>,
    ) -> Self {
        let cut = value.len() > DLQ_MAX_VALUE;
        let (source_partition, source_offset) = position.unzip();
        DeadLetter {
            key,
            value: value[..value.len().min(DLQ_MAX_VALUE)].to_vec(),
            headers: DlqHeaders {
                reason,
                error: error.to_string(),
                source_topic,
                source_partition,
                source_offset,
                truncated: cut.then(|| value.len().to_string()),
            },
        }
    }

    pub fn into_outbox(self) -> OutboxMessage {
        OutboxMessage {
            topic: TOPIC_ORDERS_DLQ,
            key: self.key,
            payload: self.value,
            headers: Some(self.headers.to_json()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn big_dlq_values_are_cut_with_a_header() {
        let value = vec![b'x'; DLQ_MAX_VALUE + 10];
        let letter = DeadLetter::new(
            DlqSource::default(),
            7,
            None,
            &value,
            RejectReason::InvalidJson,
            "not valid JSON",
        );
        assert_eq!(letter.value.len(), DLQ_MAX_VALUE);
        let h: serde_json::Value = serde_json::from_str(&letter.headers.to_json()).unwrap();
        assert_eq!(h["packwell-truncated"], (DLQ_MAX_VALUE + 10).to_string());
        assert_eq!(h["packwell-reason"], "invalid_json");
    }

    #[test]
    fn every_reason_is_written_by_its_name() {
        for reason in RejectReason::ALL {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
    }

    #[test]
    fn a_value_at_the_limit_is_kept_whole() {
        let value = vec![b'x'; DLQ_MAX_VALUE];
        let letter = DeadLetter::new(
            DlqSource::default(),
            0,
            None,
            &value,
            RejectReason::TooLarge,
            "too large",
        );
        assert_eq!(letter.value, value);
        assert!(!letter.headers.to_json().contains("packwell-truncated"));
    }

    /// The headers as they were built before they were a type: a JSON object, key by key.
    fn headers_as_json_literal(
        topic: &str,
        partition: &str,
        offset: i64,
        reason: RejectReason,
        error: &str,
        truncated: Option<usize>,
    ) -> String {
        let mut headers = serde_json::Map::new();
        headers.insert("packwell-reason".into(), json!(reason.as_str()));
        headers.insert("packwell-error".into(), json!(error));
        headers.insert("packwell-source-topic".into(), json!(topic));
        headers.insert("packwell-source-partition".into(), json!(partition));
        headers.insert("packwell-source-offset".into(), json!(offset.to_string()));
        if let Some(size) = truncated {
            headers.insert("packwell-truncated".into(), json!(size.to_string()));
        }
        serde_json::Value::Object(headers).to_string()
    }

    #[test]
    fn the_headers_are_byte_for_byte_what_they_were() {
        let kafka = DlqSource {
            topic: "orders",
            partition: Some(3),
        };
        let import = DlqSource {
            topic: "history/2025.ndjson",
            partition: None,
        };
        let none = DlqSource::default();
        let error = "order.items[0].quantity: must be at least 1 \"quoted\"";
        let cases = [
            (&kafka, "orders", "3", 42, RejectReason::InvalidValue, 10),
            (
                &import,
                "history/2025.ndjson",
                "",
                4,
                RejectReason::InvalidJson,
                10,
            ),
            (&none, "", "", 0, RejectReason::TooLarge, DLQ_MAX_VALUE + 1),
        ];
        for (fence, topic, partition, offset, reason, size) in cases {
            let letter = DeadLetter::new(
                *fence,
                offset,
                Some(b"C-1".to_vec()),
                &vec![b'{'; size],
                reason,
                error,
            );
            let truncated = (size > DLQ_MAX_VALUE).then_some(size);
            let before =
                headers_as_json_literal(topic, partition, offset, reason, error, truncated);
            let row = letter.into_outbox();
            assert_eq!(row.headers.as_deref(), Some(before.as_str()));
            assert_eq!(row.topic, "orders.dlq");
            assert_eq!(row.key.as_deref(), Some(&b"C-1"[..]));
            assert_eq!(row.payload.len(), size.min(DLQ_MAX_VALUE));
        }
    }
}
