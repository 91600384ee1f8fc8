//! `packwell dlq replay [--since TIME] [--brokers HOSTS]`: sends the events the service set
//! aside in `orders.dlq` back to `orders`, after a fix (a new release that accepts them, a
//! corrected upstream producer).
//!
//! The DLQ rows are read from the store's outbox, where each rejected event was written in the
//! transaction of its batch (docs/ARCHITECTURE.md "The DLQ is an effect like any other"): sent to
//! `orders.dlq` already or not, with the rejected message's key and value unchanged. Each value
//! is produced with its original key to `orders`, in the order the rows were written, and the
//! command waits for the cluster to acknowledge every one. Replaying is safe: the service skips
//! event ids it processed before, and an event still invalid is set aside again.
//!
//! Not replayed, and reported: values cut at 512 KiB (header `packwell-truncated`: the event
//! is not all there), rows written by `packwell import` (their source is a file: import the
//! fixed lines again, a replay would have the service decide them), and a row with the same key
//! and value as one already sent by this run (an event set aside again by an earlier replay).
//! A shop webhook set aside as `unmappable` is mapped again with the configuration as it is
//! now (after a fix of the catalogue, say), and the events it becomes are produced: never
//! the platform's raw body, which the consumer could not read.

use super::send::{Deliveries, MESSAGE_TIMEOUT_MS, connect, produce_to_orders};
use super::{CliResult, Common, ExistingStore, Failure, load_config};
use crate::config::Platform;
use crate::connector::{Mapped, Mapper, StoredOrders};
use crate::kafka::{DEFAULT_BROKER_ADDR, TOPIC_ORDERS, TOPIC_ORDERS_DLQ};
use crate::store::DlqRow;
use chrono::{DateTime, NaiveDate, Utc};
use rdkafka::producer::{BaseProducer, Producer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// DLQ rows read from the store at a time (a value is at most 512 KiB).
const PAGE: i64 = 100;
/// Rows not replayed listed one by one; past this only counted.
const MAX_LISTED: usize = 20;

#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Send the events set aside in `orders.dlq` back to `orders` (after a fix).
    ///
    /// Reads the DLQ rows kept in the store's outbox (sent to `orders.dlq` or not) and produces
    /// each value with its original key to `orders`, waiting for the cluster to acknowledge
    /// every one. Replaying is safe: the service skips event ids it processed before, and an
    /// event still invalid goes to `orders.dlq` again. Values cut at 512 KiB (header
    /// `packwell-truncated`) cannot be replayed and are listed by partition and offset; lines
    /// rejected by `packwell import` are listed too (import the fixed lines again). Shop
    /// webhooks set aside as `unmappable` are mapped again with the configuration as it is now
    /// and their events produced; those that still map to nothing are listed. Rows
    /// removed by `[store] retention` are no longer in the store: it says so.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only events set aside at or after this time (RFC 3339, or a date: midnight UTC).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Kafka bootstrap servers (default: `[kafka] brokers`, else 127.0.0.1:9092).
    #[arg(long, value_name = "HOSTS")]
    pub brokers: Option<String>,
}

pub fn run(args: &DlqArgs) -> CliResult {
    match &args.command {
        DlqCommand::Replay(replay) => run_replay(replay),
    }
}

fn run_replay(args: &ReplayArgs) -> CliResult {
    let config = load_config(&args.common)?;
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let brokers = args
        .brokers
        .as_deref()
        .or(config.kafka.brokers.as_deref())
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .unwrap_or(DEFAULT_BROKER_ADDR)
        .to_string();
    let store = ExistingStore::open(&config)?;
    let since_secs = since.map_or(i64::MIN, |t| t.timestamp());
    if let Some(through) = store.block_on(store.store().dlq_purged_through())?
        && since_secs <= through
    {
        eprintln!(
            "note: [store] retention removed DLQ rows written up to {}: events set aside until then are no longer in the store and are not replayed (the {TOPIC_ORDERS_DLQ} topic may still hold them)",
            crate::engine::format_time(DateTime::from_timestamp(through, 0).unwrap_or_default())
        );
    }
    let since_text = since.map(crate::engine::format_time);
    let mut rows = store.block_on(store.store().dlq_rows(since_secs, 0, PAGE))?;
    if rows.is_empty() {
        let after = since_text
            .as_ref()
            .map(|t| format!(" set aside since {t}"))
            .unwrap_or_default();
        println!(
            "nothing to replay: no {TOPIC_ORDERS_DLQ} events{after} in the store {}",
            store.shown()
        );
        log(&store, &since_text, &brokers, &Replay::default(), 0)?;
        return Ok(());
    }
    let producer = connect(&brokers)?;
    let mappers = mappers(&config)?;
    let mut remap = |platform: Platform, topic: &str, body: &[u8]| {
        let mapper = mappers.get(&platform).ok_or_else(|| {
            format!("the {platform} connector is no longer configured ([connectors.{platform}])")
        })?;
        let orders = StoredOrders(store.store());
        store
            .runtime()
            .block_on(mapper.map(topic, body, &orders))
            .map_err(|e| e.to_string())
    };
    let mut replay = Replay::default();
    // What stopped producing early; the messages queued before it are still delivered first.
    let mut stopped = None;
    'pages: while let Some(last) = rows.last().map(|r| r.id) {
        for row in &rows {
            if let Err(e) = replay.row(&producer, row, &mut remap) {
                stopped = Some(format!(
                    "error: cannot send to {TOPIC_ORDERS} at {brokers}: {e}"
                ));
                break 'pages;
            }
        }
        rows = store.block_on(store.store().dlq_rows(since_secs, last, PAGE))?;
    }
    let flushed = producer.flush(Duration::from_millis(MESSAGE_TIMEOUT_MS + 10_000));
    let failed = producer.context().failed();
    log(&store, &since_text, &brokers, &replay, failed.len())?;
    if let Some((i, error)) = failed.first() {
        let which = replay.sent.get(*i).map(String::as_str).unwrap_or("?");
        return Err(Failure::usage(format!(
            "error: {} of {} events were not delivered to {TOPIC_ORDERS} at {brokers}; the first, {which}: {error}",
            failed.len(),
            replay.sent.len()
        )));
    }
    if let Err(e) = flushed {
        return Err(Failure::usage(format!(
            "error: {TOPIC_ORDERS} at {brokers} did not acknowledge every event in time: {e}"
        )));
    }
    if let Some(message) = stopped {
        return Err(Failure::usage(format!(
            "{message}\nerror: stopped there; events sent before it: {}",
            replay.sent.len()
        )));
    }
    for line in replay.report() {
        eprintln!("{line}");
    }
    println!(
        "sent {} events from {TOPIC_ORDERS_DLQ} to {TOPIC_ORDERS} at {brokers}",
        replay.sent.len()
    );
    Ok(())
}

/// The configured connectors' mappings, for webhooks set aside as unmappable.
fn mappers(config: &crate::config::Config) -> Result<HashMap<Platform, Mapper>, Failure> {
    let connectors = &config.settings().connectors;
    let mut out = HashMap::new();
    for shop in [&connectors.shopify, &connectors.woocommerce]
        .into_iter()
        .flatten()
    {
        let mapper = Mapper::new(shop, crate::service::product_directory(shop))
            .map_err(|e| Failure::usage(format!("error: {e}")))?;
        out.insert(shop.platform, mapper);
    }
    Ok(out)
}

/// `--since`: an RFC 3339 time, or a date (midnight UTC).
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, Failure> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    Err(Failure::usage(format!(
        "error: --since {s:?}: expected an RFC 3339 time such as 2026-11-20T10:00:00Z, or a date such as 2026-11-20"
    )))
}

/// What happens to one DLQ row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Produced to `orders`.
    Replay,
    /// The value was cut (original size in bytes): not the whole event, not replayed.
    Truncated(String),
    /// Rejected by `packwell import` of this file: not from `orders`.
    Imported(String),
    /// A shop webhook that could not be mapped: mapped again with the configuration as it is
    /// now, and the events it becomes produced (never the raw body).
    Webhook { platform: Platform, topic: String },
}

/// The row's DLQ headers (an empty map when it has none or they do not parse).
fn headers(row: &DlqRow) -> serde_json::Map<String, Value> {
    row.headers
        .as_deref()
        .and_then(|h| serde_json::from_str::<Value>(h).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default()
}

fn header<'a>(h: &'a serde_json::Map<String, Value>, name: &str) -> &'a str {
    h.get(name).and_then(Value::as_str).unwrap_or("")
}

pub fn disposition(row: &DlqRow) -> Disposition {
    let h = headers(row);
    if let Some(size) = h.get("packwell-truncated") {
        return Disposition::Truncated(
            size.as_str()
                .map_or_else(|| size.to_string(), str::to_string),
        );
    }
    match header(&h, "packwell-source-topic") {
        // A scratch store's rows name no source; the service's name `orders`.
        "" | TOPIC_ORDERS => Disposition::Replay,
        source => match source
            .split_once(':')
            .and_then(|(p, topic)| Some((Platform::parse(p)?, topic)))
        {
            Some((platform, topic)) => Disposition::Webhook {
                platform,
                topic: topic.to_string(),
            },
            None => Disposition::Imported(source.to_string()),
        },
    }
}

/// Where a rejected event was read: `partition 3 offset 1234` (or the import's file and line).
pub fn origin(row: &DlqRow) -> String {
    let h = headers(row);
    let (partition, offset) = (
        header(&h, "packwell-source-partition"),
        header(&h, "packwell-source-offset"),
    );
    match disposition(row) {
        Disposition::Imported(source) => format!("{source} line {}", offset_as_line(offset)),
        Disposition::Webhook { platform, topic } => {
            format!("{platform}:{topic} webhook (outbox row {})", row.id)
        }
        _ if partition.is_empty() && offset.is_empty() => format!("outbox row {}", row.id),
        _ => format!("partition {partition} offset {offset}"),
    }
}

/// An import's DLQ offset is the line's index from 0; people count lines from 1.
fn offset_as_line(offset: &str) -> String {
    offset
        .parse::<i64>()
        .map(|o| (o + 1).to_string())
        .unwrap_or_else(|_| offset.to_string())
}

/// What a replay did, row by row.
#[derive(Debug, Default)]
pub struct Replay {
    /// Where each produced event came from, in the order produced (the delivery opaque).
    pub sent: Vec<String>,
    /// (origin, original size) of values that were cut.
    pub truncated: Vec<(String, String)>,
    pub imported: Vec<String>,
    /// Webhooks mapped again that became no event now, and why.
    pub not_remapped: Vec<String>,
    pub duplicates: usize,
    /// Rows read, and the first and last row id.
    pub rows: usize,
    pub ids: Option<(i64, i64)>,
    seen: HashSet<[u8; 32]>,
}

/// Maps a set-aside webhook again: its platform, topic and body.
type Remap<'a> = dyn FnMut(Platform, &str, &[u8]) -> Result<Mapped, String> + 'a;

impl Replay {
    fn row(
        &mut self,
        producer: &BaseProducer<Deliveries>,
        row: &DlqRow,
        remap: &mut Remap<'_>,
    ) -> Result<(), String> {
        if self.decide(row) {
            produce_to_orders(producer, row.key.as_deref(), &row.value, self.sent.len())
                .map_err(|e| e.to_string())?;
            self.sent.push(origin(row));
            return Ok(());
        }
        let Disposition::Webhook { platform, topic } = disposition(row) else {
            return Ok(());
        };
        let why = match remap(platform, &topic, &row.value) {
            Ok(Mapped::Events(events)) => {
                for e in events {
                    let value = e.value.to_string();
                    let key = e.customer_id.as_bytes();
                    produce_to_orders(producer, Some(key), value.as_bytes(), self.sent.len())
                        .map_err(|e| e.to_string())?;
                    self.sent.push(format!("{} ({})", origin(row), e.event_id));
                }
                return Ok(());
            }
            Ok(Mapped::Nothing(why)) => format!("it maps to no event ({why})"),
            Ok(Mapped::OrderNotStored(order)) => format!("order {order} is not stored yet"),
            Ok(Mapped::Unmappable(why)) => format!("still unmappable: {why}"),
            Err(e) => e,
        };
        self.not_remapped.push(format!("{}: {why}", origin(row)));
        Ok(())
    }

    /// Notes the row; true when it is to be produced.
    pub fn decide(&mut self, row: &DlqRow) -> bool {
        self.rows += 1;
        self.ids = Some(
            self.ids
                .map_or((row.id, row.id), |(first, _)| (first, row.id)),
        );
        match disposition(row) {
            Disposition::Truncated(size) => {
                self.truncated.push((origin(row), size));
                false
            }
            Disposition::Imported(_) => {
                self.imported.push(origin(row));
                false
            }
            Disposition::Webhook { .. } => false,
            Disposition::Replay => {
                let mut h = Sha256::new();
                match &row.key {
                    Some(k) => {
                        h.update([1]);
                        h.update((k.len() as u64).to_be_bytes());
                        h.update(k);
                    }
                    None => h.update([0]),
                }
                h.update(&row.value);
                if self.seen.insert(h.finalize().into()) {
                    true
                } else {
                    self.duplicates += 1;
                    false
                }
            }
        }
    }

    /// Warnings and notes about the rows not replayed, for stderr.
    pub fn report(&self) -> Vec<String> {
        let mut out = Vec::new();
        let list = |items: &[String]| {
            let mut text = items
                .iter()
                .take(MAX_LISTED)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            if items.len() > MAX_LISTED {
                text.push_str(&format!("; and {} more", items.len() - MAX_LISTED));
            }
            text
        };
        if !self.truncated.is_empty() {
            let items: Vec<String> = self
                .truncated
                .iter()
                .map(|(o, size)| format!("{o} ({size} bytes)"))
                .collect();
            out.push(format!(
                "warning: {} not replayed: the value was cut at 512 KiB when it was set aside (header packwell-truncated), so the event is not all there; send it again from its source: {}",
                plural(self.truncated.len(), "event", "events"),
                list(&items)
            ));
        }
        if !self.imported.is_empty() {
            out.push(format!(
                "note: {} rejected by `packwell import` not replayed (fix those lines and import them again): {}",
                plural(self.imported.len(), "line", "lines"),
                list(&self.imported)
            ));
        }
        if !self.not_remapped.is_empty() {
            out.push(format!(
                "note: {} mapped again produced nothing: {}",
                plural(self.not_remapped.len(), "webhook", "webhooks"),
                list(&self.not_remapped)
            ));
        }
        if self.duplicates > 0 {
            out.push(format!(
                "note: {} with the same key and value as an earlier one (set aside again after a replay) sent once",
                plural(self.duplicates, "row", "rows")
            ));
        }
        out
    }

    fn detail(&self, since: &Option<String>, brokers: &str, failed: usize) -> Value {
        json!({
            "since": since,
            "brokers": brokers,
            "topic": TOPIC_ORDERS,
            "rows": self.rows,
            "first_row_id": self.ids.map(|i| i.0),
            "last_row_id": self.ids.map(|i| i.1),
            "sent": self.sent.len() - failed.min(self.sent.len()),
            "failed": failed,
            "duplicates": self.duplicates,
            "truncated": self.truncated.iter().map(|(o, size)| json!({"origin": o, "size": size})).collect::<Vec<_>>(),
            "imported": self.imported,
            "not_remapped": self.not_remapped,
        })
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn log(
    store: &ExistingStore,
    since: &Option<String>,
    brokers: &str,
    replay: &Replay,
    failed: usize,
) -> Result<(), Failure> {
    let detail = replay.detail(since, brokers, failed);
    store.block_on(store.store().log_operator(
        &super::actor(),
        "dlq.replay",
        TOPIC_ORDERS_DLQ,
        &detail,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, key: Option<&str>, value: &str, headers: Value) -> DlqRow {
        DlqRow {
            id,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.as_bytes().to_vec(),
            headers: Some(headers.to_string()),
            sent: false,
            created_at: 0,
        }
    }

    fn from_orders(partition: u32, offset: u32) -> Value {
        json!({"packwell-reason": "invalid_json", "packwell-error": "not valid JSON",
            "packwell-source-topic": "orders", "packwell-source-partition": partition.to_string(),
            "packwell-source-offset": offset.to_string()})
    }

    #[test]
    fn unmappable_webhooks_are_mapped_again_not_sent_raw() {
        let letter = crate::message::DeadLetter::webhook(
            "shopify",
            "orders/create",
            Some(b"d-1".to_vec()),
            b"{\"id\":1}",
            "customer: the order names no customer",
        );
        let headers: Value = serde_json::from_str(letter.headers.to_json().as_str()).unwrap();
        let r = row(9, Some("d-1"), "{\"id\":1}", headers);
        assert_eq!(
            disposition(&r),
            Disposition::Webhook {
                platform: Platform::Shopify,
                topic: "orders/create".into()
            }
        );
        assert_eq!(origin(&r), "shopify:orders/create webhook (outbox row 9)");
        let mut replay = Replay::default();
        assert!(!replay.decide(&r), "the raw body is never produced");
        // A file imported from a folder named like a platform is still an import.
        let imported = row(
            10,
            None,
            "{}",
            json!({"packwell-source-topic": "exports/shopify.ndjson", "packwell-source-offset": "3"}),
        );
        assert!(matches!(disposition(&imported), Disposition::Imported(_)));
    }

    #[test]
    fn since_takes_a_time_or_a_date() {
        assert_eq!(
            parse_since("2026-11-20T10:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2026-11-20T09:00:00+00:00"
        );
        assert_eq!(
            parse_since("2026-11-20").unwrap().to_rfc3339(),
            "2026-11-20T00:00:00+00:00"
        );
        let f = parse_since("yesterday").unwrap_err();
        assert_eq!(f.code, 2);
        assert!(f.message.contains("--since \"yesterday\""), "{}", f.message);
    }

    #[test]
    fn truncated_imported_and_repeated_rows_are_not_replayed() {
        let mut r = Replay::default();
        assert!(r.decide(&row(1, Some("C-1"), "{oops", from_orders(2, 17))));
        let mut cut = from_orders(0, 3);
        cut["packwell-truncated"] = json!("600000");
        assert!(!r.decide(&row(2, Some("C-2"), "{\"big", cut)));
        let imported = json!({"packwell-source-topic": "history.ndjson",
            "packwell-source-partition": "", "packwell-source-offset": "41"});
        assert!(!r.decide(&row(3, Some("C-3"), "{x", imported)));
        // The same event set aside again by an earlier replay: sent once.
        assert!(!r.decide(&row(4, Some("C-1"), "{oops", from_orders(2, 90))));
        // The same value under another key (or none) is another message.
        assert!(r.decide(&row(5, None, "{oops", from_orders(1, 5))));
        assert!(r.decide(&row(6, Some("C-9"), "{oops", from_orders(1, 6))));
        assert_eq!(r.rows, 6);
        assert_eq!(r.ids, Some((1, 6)));
        assert_eq!(r.duplicates, 1);
        assert_eq!(
            r.truncated,
            vec![("partition 0 offset 3".to_string(), "600000".to_string())]
        );
        assert_eq!(r.imported, vec!["history.ndjson line 42".to_string()]);
        let report = r.report().join("\n");
        assert!(
            report.contains("1 event not replayed")
                && report.contains("partition 0 offset 3 (600000 bytes)")
                && report.contains("history.ndjson line 42")
                && report.contains("1 row with the same key and value"),
            "{report}"
        );
    }

    #[test]
    fn rows_without_headers_are_replayed_and_named_by_row() {
        let bare = DlqRow {
            id: 7,
            key: None,
            value: b"x".to_vec(),
            headers: None,
            sent: true,
            created_at: 0,
        };
        assert_eq!(disposition(&bare), Disposition::Replay);
        assert_eq!(origin(&bare), "outbox row 7");
    }
}
