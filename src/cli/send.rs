//! `packwell send`: produce the events of an NDJSON file to `orders`, keyed by customer id, to
//! try the service with example files (or replay an export into a real cluster).
//!
//! Every non-blank line is sent, in file order, valid or not: the service must put a bad event
//! in `orders.dlq`, and sending it is how one tries that. The key is the event's customer id
//! (`order.customer.id` for `order.placed`, `customer_id` otherwise). A line that is not a
//! valid event is keyed by the customer id found at that place anyway, so its DLQ entry keeps
//! the customer's key and partition; one where none can be found (not JSON, no id) is sent
//! without a key. Each such line is reported on stderr.

use super::{CliResult, Common, Failure, load_config};
use crate::event::{Rejected, event_from_value, parse_event};
use crate::kafka::{DEFAULT_BROKER_ADDR, TOPIC_ORDERS, producer_config};
use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat, TimeDelta, Utc};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// How long to wait for the cluster's metadata before saying it cannot be reached.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long librdkafka keeps retrying one message. Its default is 5 minutes: too long for a
/// command someone watches.
pub(super) const MESSAGE_TIMEOUT_MS: u64 = 30_000;
/// Invalid lines reported one by one; past this only counted.
const MAX_REPORTED: usize = 10;

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub common: Common,
    /// The events (NDJSON, one event a line).
    #[arg(long, value_name = "FILE")]
    pub events: PathBuf,
    /// Kafka bootstrap servers (default: `[kafka] brokers`, else 127.0.0.1:9092).
    #[arg(long, value_name = "HOSTS")]
    pub brokers: Option<String>,
    /// Move every timestamp by the same amount so that the newest occurred_at is now.
    #[arg(long)]
    pub retime: bool,
}

pub fn run(args: &SendArgs) -> CliResult {
    send(args, &|_| ())
}

/// As [`run`], calling `pace` with the number of events queued so far after each one:
/// `run --demo` waits there while the service's consumer is too far behind.
pub(super) fn send(args: &SendArgs, pace: &dyn Fn(usize)) -> CliResult {
    let (events, retime) = (args.events.as_path(), args.retime);
    let config = load_config(&args.common)?;
    let brokers = args
        .brokers
        .as_deref()
        .or(config.kafka.brokers.as_deref())
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .unwrap_or(DEFAULT_BROKER_ADDR)
        .to_string();
    let shift = if retime {
        let newest = scan(events)?.newest;
        if newest.is_none() {
            eprintln!(
                "note: {}: no event has a readable occurred_at; nothing to retime",
                events.display()
            );
        }
        newest.map(|n| retime_shift(n, Utc::now()))
    } else {
        None
    };
    let file = open(events)?;
    let producer = connect(&brokers)?;

    let mut sent = 0usize;
    let mut invalid = 0usize;
    // What stopped the sending early; the events queued before it are still delivered first.
    let mut stopped: Option<String> = None;
    for (i, line) in file.lines().enumerate() {
        let number = i + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                stopped = Some(format!("error: {}:{number}: {e}", events.display()));
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let message = prepare(&line, shift);
        if let Some(problem) = &message.problem {
            invalid += 1;
            if invalid <= MAX_REPORTED {
                let keyed = match &message.key {
                    Some(k) => format!("sent with key {k}"),
                    None => "sent without a key".to_string(),
                };
                eprintln!(
                    "warning: {}:{number}: {} ({}); {keyed}, for the service to put in orders.dlq",
                    events.display(),
                    problem.message,
                    problem.reason.as_str()
                );
            }
        }
        if let Err(e) = produce(&producer, &message, number) {
            stopped = Some(format!(
                "error: {}:{number}: cannot send to {TOPIC_ORDERS} at {brokers}: {e}",
                events.display()
            ));
            break;
        }
        sent += 1;
        pace(sent);
    }
    if invalid > MAX_REPORTED {
        eprintln!(
            "warning: {} more lines that are not valid events",
            invalid - MAX_REPORTED
        );
    }

    // Wait for every delivery report: the summary says what the cluster acknowledged.
    let flushed = producer.flush(Duration::from_millis(MESSAGE_TIMEOUT_MS + 10_000));
    let deliveries = producer.context();
    let failed = deliveries.failed();
    if let Some((line, error)) = failed.first() {
        return Err(Failure::usage(format!(
            "error: {} of {sent} events were not delivered to {TOPIC_ORDERS} at {brokers}; the first, line {line}: {error}",
            failed.len()
        )));
    }
    if let Err(e) = flushed {
        return Err(Failure::usage(format!(
            "error: {TOPIC_ORDERS} at {brokers} did not acknowledge every event in time: {e}"
        )));
    }
    if let Some(message) = stopped {
        return Err(Failure::usage(format!(
            "{message}\nerror: stopped there; events sent before it: {sent}"
        )));
    }

    let mut summary = format!("sent {sent} events to {TOPIC_ORDERS} at {brokers}");
    if invalid > 0 {
        summary.push_str(&format!(
            " ({invalid} not valid, for the service's orders.dlq)"
        ));
    }
    if let Some(by) = shift {
        summary.push_str(&format!(
            "; timestamps moved by {}, the newest event happened now",
            describe(by)
        ));
    }
    println!("{summary}");
    Ok(())
}

fn open(path: &Path) -> Result<std::io::BufReader<std::fs::File>, Failure> {
    std::fs::File::open(path)
        .map(std::io::BufReader::new)
        .map_err(|e| Failure::usage(format!("error: cannot read {}: {e}", path.display())))
}

/// A line ready to send.
#[derive(Debug, PartialEq)]
struct Outgoing {
    key: Option<String>,
    payload: String,
    /// Why the service will reject it, if it will.
    problem: Option<Rejected>,
}

fn prepare(line: &str, shift: Option<TimeDelta>) -> Outgoing {
    let Ok(mut value) = serde_json::from_str::<Value>(line) else {
        return Outgoing {
            key: None,
            payload: line.to_string(),
            problem: parse_event(line.as_bytes()).err(),
        };
    };
    // Without --retime the line goes out byte for byte as it is in the file.
    let payload = match shift {
        Some(by) => {
            retime_event(&mut value, by);
            value.to_string()
        }
        None => line.to_string(),
    };
    match event_from_value(&value) {
        Ok(event) => Outgoing {
            key: Some(event.customer_id().to_string()),
            payload,
            problem: None,
        },
        Err(problem) => Outgoing {
            key: raw_customer_id(&value),
            payload,
            problem: Some(problem),
        },
    }
}

/// The customer id where the contract puts it, read from an event that did not validate.
fn raw_customer_id(value: &Value) -> Option<String> {
    let id = if value.get("type").and_then(Value::as_str) == Some("order.placed") {
        value.pointer("/order/customer/id")
    } else {
        value.get("customer_id")
    };
    id.and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// What a first reading of an events file finds.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Span {
    /// The oldest and the newest readable `occurred_at` (lines that do not parse are skipped
    /// here; the sending pass reports them).
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
    /// Lines that are not blank: the events that will be sent.
    pub lines: usize,
}

pub(super) fn scan(path: &Path) -> Result<Span, Failure> {
    let mut span = Span::default();
    for (i, line) in open(path)?.lines().enumerate() {
        let line =
            line.map_err(|e| Failure::usage(format!("error: {}:{}: {e}", path.display(), i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        span.lines += 1;
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(t) = value
            .get("occurred_at")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        {
            let t = t.with_timezone(&Utc);
            span.newest = Some(span.newest.map_or(t, |n| n.max(t)));
            span.oldest = Some(span.oldest.map_or(t, |o| o.min(t)));
        }
    }
    Ok(span)
}

/// The shift that makes `newest` become `now`, in whole seconds so retimed events keep the
/// sub-second digits they had.
pub fn retime_shift(newest: DateTime<Utc>, now: DateTime<Utc>) -> TimeDelta {
    TimeDelta::seconds((now - newest).num_seconds())
}

/// Moves every time in an event by `by`: `occurred_at`, `delivered_at` (order.delivered) and
/// the date `order.promised_delivery` (order.placed), so delays between them stay as they were.
/// The date moves by `by` rounded to whole days, so a delivery's lateness changes by at most a
/// day. A birthday is not a time of the event and stays. Values that do not parse stay as they
/// are (the service will reject them either way).
pub fn retime_event(event: &mut Value, by: TimeDelta) {
    for field in ["/occurred_at", "/delivered_at"] {
        if let Some(v) = event.pointer_mut(field) {
            shift_timestamp(v, by);
        }
    }
    if let Some(v) = event.pointer_mut("/order/promised_delivery") {
        // Round half up to whole days, in integers.
        let days = (by.num_seconds() + 43_200).div_euclid(86_400);
        shift_date(v, TimeDelta::days(days));
    }
}

fn shift_timestamp(v: &mut Value, by: TimeDelta) {
    let Some(t) = v
        .as_str()
        .and_then(|s| DateTime::<FixedOffset>::parse_from_rfc3339(s).ok())
    else {
        return;
    };
    if let Some(moved) = t.checked_add_signed(by) {
        // Keeps the event's own UTC offset; `Z` for UTC.
        *v = Value::String(moved.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }
}

fn shift_date(v: &mut Value, by: TimeDelta) {
    let Some(d) = v
        .as_str()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
    else {
        return;
    };
    if let Some(moved) = d.checked_add_signed(by) {
        *v = Value::String(moved.format("%Y-%m-%d").to_string());
    }
}

/// `97 days 3 hours`, for the summary.
fn describe(by: TimeDelta) -> String {
    let sign = if by < TimeDelta::zero() { "-" } else { "" };
    let secs = by.num_seconds().unsigned_abs();
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match (days, hours) {
        (0, 0) => format!("{sign}{}", plural(minutes, "minute")),
        (0, h) => format!("{sign}{}", plural(h, "hour")),
        (d, h) => format!("{sign}{} {}", plural(d, "day"), plural(h, "hour")),
    }
}

/// Collects delivery failures (the opaque number given with the message, error); librdkafka
/// reports each message once.
#[derive(Default)]
pub(super) struct Deliveries {
    failed: Mutex<Vec<(usize, KafkaError)>>,
}

impl Deliveries {
    pub(super) fn failed(&self) -> Vec<(usize, KafkaError)> {
        self.failed.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    /// A number naming the message (`send`: its line), to say which one failed.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, line: usize) {
        if let Err((e, _)) = result
            && let Ok(mut failed) = self.failed.lock()
        {
            failed.push((line, e.clone()));
        }
    }
}

/// A producer that has reached the cluster and seen `orders` in its metadata.
pub(super) fn connect(brokers: &str) -> Result<BaseProducer<Deliveries>, Failure> {
    let producer: BaseProducer<Deliveries> = producer_config(brokers)
        .set("message.timeout.ms", MESSAGE_TIMEOUT_MS.to_string())
        .create_with_context(Deliveries::default())
        .map_err(|e| Failure::usage(format!("error: Kafka client for {brokers}: {e}")))?;
    let metadata = producer
        .client()
        .fetch_metadata(Some(TOPIC_ORDERS), CONNECT_TIMEOUT)
        .map_err(|e| {
            Failure::usage(format!(
                "error: cannot reach Kafka at {brokers}: {e}; is `packwell broker` running there, or are --brokers / [kafka] brokers right?"
            ))
        })?;
    let topic = metadata.topics().iter().find(|t| t.name() == TOPIC_ORDERS);
    match topic {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(producer),
        _ => Err(Failure::usage(format!(
            "error: Kafka at {brokers} has no topic {TOPIC_ORDERS}; create it (keyed by customer id, partitions for as many instances as you will run)"
        ))),
    }
}

fn produce(
    producer: &BaseProducer<Deliveries>,
    message: &Outgoing,
    line: usize,
) -> Result<(), KafkaError> {
    produce_to_orders(
        producer,
        message.key.as_deref().map(str::as_bytes),
        message.payload.as_bytes(),
        line,
    )
}

/// Queues one message to `orders`, waiting while librdkafka's queue is full.
pub(super) fn produce_to_orders(
    producer: &BaseProducer<Deliveries>,
    key: Option<&[u8]>,
    payload: &[u8],
    opaque: usize,
) -> Result<(), KafkaError> {
    let mut record = BaseRecord::with_opaque_to(TOPIC_ORDERS, opaque).payload(payload);
    if let Some(key) = key {
        record = record.key(key);
    }
    loop {
        match producer.send(record) {
            Ok(()) => {
                // Serve delivery reports as they come, so they do not pile up.
                producer.poll(Duration::ZERO);
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(100));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn retime_moves_every_time_of_the_event_and_keeps_the_rest() {
        let by = retime_shift(at("2026-07-01T06:56:09Z"), at("2026-11-20T10:00:00.750Z"));
        assert_eq!(
            by,
            TimeDelta::seconds(142 * 86_400 + 3 * 3_600 + 3 * 60 + 51)
        );

        let mut placed = json!({"event_id": "e1", "type": "order.placed",
            "occurred_at": "2026-07-01T06:56:09Z",
            "order": {"id": "O-1", "total": "54.90", "promised_delivery": "2026-07-04",
                      "customer": {"id": "C-1", "birthday": "1951-08-17"}}});
        retime_event(&mut placed, by);
        assert_eq!(placed["occurred_at"], "2026-11-20T10:00:00Z");
        // 142 days 3 hours rounds to 142 days.
        assert_eq!(placed["order"]["promised_delivery"], "2026-11-23");
        assert_eq!(placed["order"]["customer"]["birthday"], "1951-08-17");
        assert_eq!(placed["order"]["total"], "54.90");

        let mut delivered = json!({"type": "order.delivered",
            "occurred_at": "2026-07-03T12:00:00.250+02:00",
            "delivered_at": "2026-07-03T11:59:00+02:00"});
        retime_event(&mut delivered, by);
        assert_eq!(delivered["occurred_at"], "2026-11-22T15:03:51.250+02:00");
        assert_eq!(delivered["delivered_at"], "2026-11-22T15:02:51+02:00");
    }

    #[test]
    fn retime_leaves_what_does_not_parse() {
        let mut e = json!({"occurred_at": "yesterday", "delivered_at": 5,
                           "order": {"promised_delivery": "soon"}});
        let before = e.clone();
        retime_event(&mut e, TimeDelta::days(3));
        assert_eq!(e, before);
    }

    #[test]
    fn dates_move_by_the_shift_rounded_to_days() {
        let mut e = json!({"order": {"promised_delivery": "2026-07-04"}});
        retime_event(&mut e, TimeDelta::hours(11));
        assert_eq!(e["order"]["promised_delivery"], "2026-07-04");
        retime_event(&mut e, TimeDelta::hours(12));
        assert_eq!(e["order"]["promised_delivery"], "2026-07-05");
        retime_event(&mut e, TimeDelta::hours(-36));
        assert_eq!(e["order"]["promised_delivery"], "2026-07-04");
    }

    #[test]
    fn keys_are_customer_ids_even_for_lines_the_service_will_reject() {
        let valid = r#"{"event_id":"e2","type":"order.shipped","occurred_at":"2026-07-02T10:00:00Z","order_id":"O-1","customer_id":"C-7"}"#;
        let out = prepare(valid, None);
        assert_eq!(out.key.as_deref(), Some("C-7"));
        assert_eq!(out.payload, valid);
        assert_eq!(out.problem, None);

        let bad_nps = r#"{"event_id":"e3","type":"customer.feedback","occurred_at":"2026-07-02T10:00:00Z","customer_id":"C-8","nps":11}"#;
        let out = prepare(bad_nps, None);
        assert_eq!(out.key.as_deref(), Some("C-8"));
        assert_eq!(out.payload, bad_nps);
        assert!(out.problem.is_some());

        let placed_without_email = r#"{"event_id":"e4","type":"order.placed","occurred_at":"2026-07-02T10:00:00Z","order":{"customer":{"id":"C-9"}}}"#;
        assert_eq!(
            prepare(placed_without_email, None).key.as_deref(),
            Some("C-9")
        );

        let not_json = "{oops";
        let out = prepare(not_json, Some(TimeDelta::days(1)));
        assert_eq!(out.key, None);
        assert_eq!(out.payload, not_json);
        assert_eq!(out.problem.map(|p| p.reason.as_str()), Some("invalid_json"));
    }

    #[test]
    fn a_scan_finds_the_oldest_and_newest_times_and_counts_the_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.ndjson");
        std::fs::write(
            &path,
            "{\"occurred_at\":\"2026-07-02T10:00:00+02:00\"}\n\n{oops\n{\"occurred_at\":\"2026-06-30T23:00:00Z\"}\n{\"occurred_at\":\"2026-07-01T00:00:00Z\"}\n",
        )
        .unwrap();
        let span = scan(&path).unwrap();
        assert_eq!(span.oldest, Some(at("2026-06-30T23:00:00Z")));
        assert_eq!(span.newest, Some(at("2026-07-02T08:00:00Z")));
        assert_eq!(span.lines, 4);
    }

    #[test]
    fn shifts_are_described_for_people() {
        assert_eq!(
            describe(TimeDelta::seconds(97 * 86_400 + 3 * 3_600 + 59)),
            "97 days 3 hours"
        );
        assert_eq!(describe(TimeDelta::minutes(-1)), "-1 minute");
        assert_eq!(describe(TimeDelta::hours(1)), "1 hour");
    }
}
