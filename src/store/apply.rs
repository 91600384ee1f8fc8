//! The parts of writing a batch that do not touch the database: DLQ headers.

use crate::event::RejectReason;
use serde_json::json;

use super::types::{DLQ_MAX_VALUE, Fence};

/// The DLQ headers of CONTRACT §5 as a JSON object, and the value cut to the size limit.
pub fn dlq_message(
    fence: &Fence,
    offset: i64,
    value: &[u8],
    reason: RejectReason,
    error: &str,
) -> (Vec<u8>, String) {
    let (topic, partition, offset) = match fence {
        Fence::Partition {
            topic, partition, ..
        } => (topic.clone(), partition.to_string(), offset.to_string()),
        Fence::Import { source, .. } => (source.clone(), "".to_string(), offset.to_string()),
        Fence::None => ("".to_string(), "".to_string(), offset.to_string()),
    };
    let mut headers = serde_json::Map::new();
    headers.insert("packwell-reason".into(), json!(reason.as_str()));
    headers.insert("packwell-error".into(), json!(error));
    headers.insert("packwell-source-topic".into(), json!(topic));
    headers.insert("packwell-source-partition".into(), json!(partition));
    headers.insert("packwell-source-offset".into(), json!(offset));
    let body = if value.len() > DLQ_MAX_VALUE {
        headers.insert("packwell-truncated".into(), json!(value.len().to_string()));
        value[..DLQ_MAX_VALUE].to_vec()
    } else {
        value.to_vec()
    };
    (body, serde_json::Value::Object(headers).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_dlq_values_are_cut_with_a_header() {
        let value = vec![b'x'; DLQ_MAX_VALUE + 10];
        let (body, headers) = dlq_message(
            &Fence::None,
            7,
            &value,
            RejectReason::InvalidJson,
            "not valid JSON",
        );
        assert_eq!(body.len(), DLQ_MAX_VALUE);
        let h: serde_json::Value = serde_json::from_str(&headers).unwrap();
        assert_eq!(h["packwell-truncated"], (DLQ_MAX_VALUE + 10).to_string());
        assert_eq!(h["packwell-reason"], "invalid_json");
    }
}
