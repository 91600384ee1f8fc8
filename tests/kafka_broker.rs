//! `packwell broker` and `packwell send` through the binary, read back with a plain rdkafka
//! consumer in a consumer group: the broker advertises its fixed address (not the mock's random
//! port), has Packwell's topics, serves groups without the 3 s initial rebalance delay, and
//! stops on SIGTERM; `send` keys events by customer id, keeps each customer's order, sends bad
//! lines too, and `--retime` moves every time so the newest event happened now; `dlq replay`
//! sends the DLQ rows of a store's outbox back to `orders` with their keys.

use chrono::{DateTime, TimeDelta, Utc};
use packwell::event::parse_event;
use packwell::kafka::broker::TOPICS;
use packwell::kafka::{TOPIC_ORDERS, fast_consumer_config};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_packwell");
const BANNER: &str = "packwell broker listening on ";

/// A `packwell broker` child process, killed when the test ends, however it ends.
struct Broker {
    child: Child,
    addr: String,
    /// The rest of the broker's standard output, drained by a thread so the pipe stays open.
    lines: mpsc::Receiver<String>,
}

impl Broker {
    fn start() -> Broker {
        let child = Command::new(BIN)
            .args(["broker", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start packwell broker");
        let mut broker = Broker {
            child,
            addr: String::new(),
            lines: mpsc::channel().1,
        };
        let stdout = broker.child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("packwell broker printed no address within 30 s");
        broker.addr = first
            .strip_prefix(BANNER)
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .trim()
            .to_string();
        broker.lines = rx;
        broker
    }

    fn port(&self) -> u16 {
        self.addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("a port")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn send(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("send")
        .args(args)
        .env_remove("PACKWELL_KAFKA_BROKERS")
        .output()
        .expect("run packwell send")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_events(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("events.ndjson");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write events");
    path
}

/// The first `n` lines of the example history (many customers, so several partitions).
fn example_lines(n: usize) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/history.ndjson");
    let text = std::fs::read_to_string(&path).expect("examples/history.ndjson");
    text.lines().take(n).map(str::to_string).collect()
}

#[derive(Debug)]
struct Received {
    partition: i32,
    offset: i64,
    key: Option<String>,
    payload: String,
}

/// Joins a fresh consumer group on `orders` and reads `expected` messages (then a moment
/// more, to see that there are no others). Also returns how long the first message took.
fn consume(addr: &str, group: &str, expected: usize) -> (BaseConsumer, Vec<Received>, Duration) {
    let consumer: BaseConsumer = fast_consumer_config(addr, group)
        .create()
        .expect("create consumer");
    consumer.subscribe(&[TOPIC_ORDERS]).expect("subscribe");
    let subscribed = Instant::now();
    let mut first = None;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet_until = None;
    loop {
        let now = Instant::now();
        assert!(
            now < deadline,
            "read {} of {expected} messages in 30 s",
            out.len()
        );
        if out.len() >= expected {
            let until = *quiet_until.get_or_insert(now + Duration::from_millis(500));
            if now >= until {
                break;
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(|| subscribed.elapsed());
                out.push(Received {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(text),
                    payload: text(m.payload().unwrap_or_default()),
                })
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    (consumer, out, first.unwrap_or_default())
}

#[test]
fn sent_events_are_keyed_by_customer_in_order_and_metadata_advertises_the_fixed_address() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = example_lines(300);
    let events = write_events(dir.path(), &lines);

    let out = send(&[
        "--events",
        events.to_str().expect("utf-8 path"),
        "--brokers",
        &broker.addr,
    ]);
    assert!(out.status.success(), "send failed: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("sent 300 events to orders at {}", broker.addr)
    );

    let (consumer, received, first) = consume(&broker.addr, "kafka-broker-test", lines.len());
    assert_eq!(received.len(), lines.len());
    // One member of a group gets every partition, and without the mock's default 3 s initial
    // rebalance delay (a join takes some 100 ms here).
    let assigned = consumer.assignment().expect("assignment");
    assert_eq!(assigned.count(), 6, "{assigned:?}");
    assert!(
        first < Duration::from_millis(2500),
        "the group took {first:?} to deliver its first message"
    );

    // Every message: the file's line unchanged, keyed by its event's customer id.
    let mut by_customer: BTreeMap<String, Vec<(i32, i64, String)>> = BTreeMap::new();
    for m in &received {
        let event = parse_event(m.payload.as_bytes()).expect("a valid event");
        assert_eq!(m.key.as_deref(), Some(event.customer_id()), "{m:?}");
        by_customer
            .entry(event.customer_id().to_string())
            .or_default()
            .push((m.partition, m.offset, event.event_id.clone()));
    }
    let sent: BTreeSet<&str> = lines.iter().map(String::as_str).collect();
    let got: BTreeSet<&str> = received.iter().map(|m| m.payload.as_str()).collect();
    assert_eq!(sent, got);

    // One customer, one partition, in file order.
    let partitions: BTreeSet<i32> = received.iter().map(|m| m.partition).collect();
    assert!(
        partitions.len() > 1,
        "300 events of many customers all in {partitions:?}"
    );
    for (customer, mut seen) in by_customer {
        seen.sort();
        let parts: BTreeSet<i32> = seen.iter().map(|s| s.0).collect();
        assert_eq!(parts.len(), 1, "{customer} spread over {parts:?}");
        let in_file: Vec<String> = lines
            .iter()
            .map(|l| parse_event(l.as_bytes()).expect("valid example"))
            .filter(|e| e.customer_id() == customer)
            .map(|e| e.event_id)
            .collect();
        let in_topic: Vec<String> = seen.into_iter().map(|s| s.2).collect();
        assert_eq!(in_topic, in_file, "{customer}");
    }

    // Clients learn the broker's address from metadata: it must be the fixed one, or every
    // client (kcat included) would go around the forward to the mock's random port.
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let brokers: Vec<(String, i32)> = metadata
        .brokers()
        .iter()
        .map(|b| (b.host().to_string(), b.port()))
        .collect();
    assert_eq!(
        brokers,
        vec![("127.0.0.1".to_string(), i32::from(broker.port()))]
    );
    for (topic, partitions) in TOPICS {
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == *topic)
            .unwrap_or_else(|| panic!("no topic {topic}"));
        assert_eq!(t.partitions().len(), *partitions as usize, "{topic}");
    }
}

#[test]
fn lines_that_are_not_valid_events_are_sent_too() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = vec![
        r#"{"event_id":"e1","type":"customer.subscribed","occurred_at":"2026-07-01T10:00:00Z","customer_id":"C-1"}"#.to_string(),
        "{not json".to_string(),
        String::new(),
        r#"{"event_id":"e3","type":"customer.feedback","occurred_at":"2026-07-01T11:00:00Z","customer_id":"C-2","nps":11}"#.to_string(),
    ];
    let events = write_events(dir.path(), &lines);
    let out = send(&[
        "--events",
        events.to_str().expect("utf-8 path"),
        "--brokers",
        &broker.addr,
    ]);
    assert!(out.status.success(), "send failed: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with(&format!(
            "sent 3 events to orders at {} (2 not valid",
            broker.addr
        )),
        "{}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(":2: not valid JSON") && stderr.contains("sent without a key"),
        "{stderr}"
    );
    assert!(
        stderr.contains(":4: nps: must be between 0 and 10") && stderr.contains("key C-2"),
        "{stderr}"
    );

    let (_, received, _) = consume(&broker.addr, "kafka-broker-test", 3);
    let mut got: Vec<(Option<String>, String)> =
        received.into_iter().map(|m| (m.key, m.payload)).collect();
    got.sort();
    let mut want = vec![
        (Some("C-1".to_string()), lines[0].clone()),
        (None, lines[1].clone()),
        (Some("C-2".to_string()), lines[3].clone()),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn retime_moves_every_time_so_the_newest_event_is_now() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = vec![
        r#"{"event_id":"p1","type":"order.placed","occurred_at":"2026-07-01T06:56:09Z","order":{"id":"O-1","customer":{"id":"C-1","email":"a@example.com","first_name":"Ann","birthday":"1980-02-03"},"currency":"EUR","total":"54.90","items":[{"sku":"B1","name":"Book","category":"books","quantity":1,"unit_price":"54.90"}],"shipping":{"country":"DE"},"warehouse":"WH-BER","promised_delivery":"2026-07-04"}}"#.to_string(),
        r#"{"event_id":"d1","type":"order.delivered","occurred_at":"2026-07-05T09:00:00Z","order_id":"O-1","customer_id":"C-1","delivered_at":"2026-07-05T08:30:00Z"}"#.to_string(),
        r#"{"event_id":"f1","type":"customer.feedback","occurred_at":"2026-07-03T12:00:00Z","customer_id":"C-1","nps":9}"#.to_string(),
    ];
    let events = write_events(dir.path(), &lines);
    let before = Utc::now() - TimeDelta::seconds(1);
    let out = send(&[
        "--events",
        events.to_str().expect("utf-8 path"),
        "--brokers",
        &broker.addr,
        "--retime",
    ]);
    let after = Utc::now();
    assert!(out.status.success(), "send failed: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("timestamps moved by"),
        "{}",
        text(&out.stdout)
    );

    let (_, received, _) = consume(&broker.addr, "kafka-broker-test", 3);
    let by_id: BTreeMap<String, Value> = received
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_str(&m.payload).expect("JSON");
            (v["event_id"].as_str().expect("event_id").to_string(), v)
        })
        .collect();
    let time = |id: &str, field: &str| -> DateTime<Utc> {
        let s = by_id[id][field].as_str().expect("a time");
        DateTime::parse_from_rfc3339(s)
            .expect("RFC 3339")
            .with_timezone(&Utc)
    };
    let newest = time("d1", "occurred_at");
    assert!(
        before <= newest && newest <= after,
        "{newest} not in {before}..{after}"
    );
    // Gaps between events and inside one are kept.
    assert_eq!(
        newest - time("p1", "occurred_at"),
        TimeDelta::seconds(4 * 86_400 + 2 * 3_600 + 3 * 60 + 51)
    );
    assert_eq!(newest - time("f1", "occurred_at"), TimeDelta::hours(45));
    assert_eq!(newest - time("d1", "delivered_at"), TimeDelta::minutes(30));
    // The promised date moved with the order (by whole days), the birthday did not.
    let shift = time("p1", "occurred_at")
        - DateTime::parse_from_rfc3339("2026-07-01T06:56:09Z")
            .expect("RFC 3339")
            .with_timezone(&Utc);
    let promised = chrono::NaiveDate::from_ymd_opt(2026, 7, 4).expect("date")
        + TimeDelta::days((shift.num_seconds() + 43_200).div_euclid(86_400));
    assert_eq!(
        by_id["p1"]["order"]["promised_delivery"],
        promised.format("%Y-%m-%d").to_string()
    );
    assert_eq!(by_id["p1"]["order"]["customer"]["birthday"], "1980-02-03");
    // The events are still valid, still keyed by their customer.
    for m in &received {
        let event = parse_event(m.payload.as_bytes()).expect("valid after retime");
        assert_eq!(m.key.as_deref(), Some(event.customer_id()));
    }
}

#[test]
fn the_broker_stops_on_sigterm() {
    let mut broker = Broker::start();
    // The banner goes on to say how to feed it.
    let second = broker
        .lines
        .recv_timeout(Duration::from_secs(5))
        .expect("more banner");
    assert!(second.contains("mock cluster"), "{second}");
    let status = Command::new("kill")
        .args(["-TERM", &broker.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let status = wait_with_timeout(&mut broker.child, Duration::from_secs(10))
        .expect("packwell broker still running 10 s after SIGTERM");
    assert!(status.success(), "{status:?}");
    // Its port is free again.
    std::net::TcpListener::bind(&broker.addr).expect("the broker's port is free after it stopped");
}

#[test]
fn a_taken_address_is_an_error_naming_it() {
    let broker = Broker::start();
    let mut second = Command::new(BIN)
        .args(["broker", "--listen", &broker.addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a second broker");
    let status = wait_with_timeout(&mut second, Duration::from_secs(10));
    if status.is_none() {
        let _ = second.kill();
        let _ = second.wait();
        panic!("a second broker on {} did not stop", broker.addr);
    }
    let out = second.wait_with_output().expect("output");
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {}", broker.addr))
            && stderr.contains("another `packwell broker`")
            && stderr.contains("--listen"),
        "{stderr}"
    );
}

#[test]
fn send_without_a_broker_exits_2_naming_the_address() {
    // A port that was free a moment ago; nothing listens there.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let events = write_events(dir.path(), &example_lines(2));
    let out = send(&[
        "--events",
        events.to_str().expect("utf-8 path"),
        "--brokers",
        &addr,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!("cannot reach Kafka at {addr}")),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn send_reports_a_missing_file_before_connecting() {
    let out = send(&[
        "--events",
        "no/such/file.ndjson",
        "--brokers",
        "127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot read no/such/file.ndjson"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn two_members_of_a_group_share_the_partitions_and_one_takes_over() {
    let broker = Broker::start();
    let member = || -> BaseConsumer {
        let c: BaseConsumer = fast_consumer_config(&broker.addr, "shared")
            .create()
            .expect("create consumer");
        c.subscribe(&[TOPIC_ORDERS]).expect("subscribe");
        c
    };
    let assigned = |c: &BaseConsumer| c.assignment().map(|a| a.count()).unwrap_or(0);
    let a = member();
    let b = member();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(assigned(&a) == 3 && assigned(&b) == 3) {
        assert!(
            Instant::now() < deadline,
            "no 3 + 3 split: {} and {}",
            assigned(&a),
            assigned(&b)
        );
        for c in [&a, &b] {
            if let Some(Err(e)) = c.poll(Duration::from_millis(50)) {
                panic!("consumer error: {e}");
            }
        }
    }
    // One leaves the group (closing sends LeaveGroup); the other gets every partition.
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(20);
    while assigned(&a) != 6 {
        assert!(
            Instant::now() < deadline,
            "still {} partitions after the other member left",
            assigned(&a)
        );
        if let Some(Err(e)) = a.poll(Duration::from_millis(50)) {
            panic!("consumer error: {e}");
        }
    }
}

#[test]
fn a_line_kafka_refuses_stops_the_sending_naming_it() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = example_lines(3);
    // Past librdkafka's default message.max.bytes (1 MB).
    lines[1] = format!(r#"{{"comment":"{}"}}"#, "x".repeat(1_100_000));
    let events = write_events(dir.path(), &lines);
    let out = send(&[
        "--events",
        events.to_str().expect("utf-8 path"),
        "--brokers",
        &broker.addr,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(":2: cannot send to orders at") && stderr.contains("sent before it: 1"),
        "{stderr}"
    );
    let (_, received, _) = consume(&broker.addr, "kafka-broker-test", 1);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].payload, lines[0]);
}

/// A SQLite store at `url` whose outbox holds DLQ rows, written the way the service writes
/// them: a batch of partition 4 of `orders` whose events were rejected.
fn store_with_dlq_rows(url: &str, rows: &[(Option<&str>, Vec<u8>)]) {
    use packwell::coupon::CouponKey;
    use packwell::event::{RejectReason, Rejected};
    use packwell::store::{Batch, BatchItem, DecideEnv, Fence};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = packwell::rules::load_rules(&root.join("rules"), &root.join("templates"));
    let env = DecideEnv {
        rules: std::sync::Arc::new(loaded.rules.expect("the example rules are valid")),
        key: CouponKey::from_bytes(vec![9; 32]),
        shop: packwell::engine::Shop::default(),
    };
    let items: Vec<BatchItem> = rows
        .iter()
        .enumerate()
        .map(|(i, (key, value))| BatchItem {
            offset: i as i64,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.clone(),
            event: Err(Rejected {
                reason: RejectReason::InvalidValue,
                message: "nps: must be between 0 and 10".into(),
            }),
            decide: true,
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = packwell::store::open(url).await.expect("open the store");
        let (epoch, start) = store.claim_partition(TOPIC_ORDERS, 4).await.expect("claim");
        let batch = Batch {
            fence: Fence::Partition {
                topic: TOPIC_ORDERS.into(),
                partition: 4,
                epoch,
                start,
                end: start + items.len() as i64,
            },
            items,
        };
        let report = store.apply_batch(&batch, &env).await.expect("apply");
        assert_eq!(report.rejected, rows.len());
    });
}

/// The operator log's `dlq.replay` rows (newest first) of the store at `url`.
fn replay_log(url: &str) -> Vec<(String, Value)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = packwell::store::open(url).await.expect("open the store");
        store
            .operator_log(10)
            .await
            .expect("operator log")
            .into_iter()
            .filter(|r| r.action == "dlq.replay")
            .map(|r| (r.subject, serde_json::from_str(&r.detail).expect("JSON")))
            .collect()
    })
}

fn dlq_replay(dir: &Path, store: &str, args: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("PACKWELL_") {
            c.env_remove(k);
        }
    }
    c.env("PACKWELL_STORE_URL", store)
        .args(["dlq", "replay"])
        .args(args)
        .output()
        .expect("run packwell dlq replay")
}

#[test]
fn dlq_replay_sends_set_aside_events_back_to_orders_with_their_keys() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("packwell.db").display().to_string();
    let feedback = |id: &str, customer: &str, nps: u32| {
        format!(
            r#"{{"event_id":"{id}","type":"customer.feedback","occurred_at":"2026-07-01T10:00:00Z","customer_id":"{customer}","nps":{nps}}}"#
        )
        .into_bytes()
    };
    // Past the DLQ's 512 KiB: cut when set aside, so it cannot be replayed.
    let mut big = feedback("e-big", "C-3", 11);
    big.splice(
        1..1,
        format!(r#""pad":"{}","#, "x".repeat(600_000)).into_bytes(),
    );
    let rows: Vec<(Option<&str>, Vec<u8>)> = vec![
        (Some("C-1"), feedback("e1", "C-1", 11)),
        (Some("C-2"), b"{not json".to_vec()),
        (None, br#"{"type":"customer.feedback"}"#.to_vec()),
        (Some("C-3"), big.clone()),
        (Some("C-1"), feedback("e5", "C-1", 12)),
    ];
    store_with_dlq_rows(&url, &rows);

    let out = dlq_replay(dir.path(), &url, &["--brokers", &broker.addr]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "replay failed: {stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("sent 4 events from orders.dlq to orders at {}", broker.addr)
    );
    assert!(
        stderr.contains("1 event not replayed")
            && stderr.contains(&format!("partition 4 offset 3 ({} bytes)", big.len())),
        "{stderr}"
    );

    // Back in `orders`: each value unchanged with its original key, one key's in row order.
    let (_, received, _) = consume(&broker.addr, "dlq-replay-test", 4);
    let mut got: Vec<(Option<String>, String)> = received
        .iter()
        .map(|m| (m.key.clone(), m.payload.clone()))
        .collect();
    got.sort();
    let mut want: Vec<(Option<String>, String)> = [0, 1, 2, 4]
        .iter()
        .map(|&i| (rows[i].0.map(str::to_string), text(&rows[i].1)))
        .collect();
    want.sort();
    assert_eq!(got, want);
    let mut c1: Vec<&Received> = received
        .iter()
        .filter(|m| m.key.as_deref() == Some("C-1"))
        .collect();
    c1.sort_by_key(|m| m.offset);
    assert_eq!(c1[0].partition, c1[1].partition);
    assert_eq!(
        (c1[0].payload.as_bytes(), c1[1].payload.as_bytes()),
        (rows[0].1.as_slice(), rows[4].1.as_slice())
    );

    // Recorded: what was sent and what was not.
    let log = replay_log(&url);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].0, "orders.dlq");
    assert_eq!(log[0].1["sent"], 4);
    assert_eq!(log[0].1["rows"], 5);
    assert_eq!(log[0].1["truncated"][0]["origin"], "partition 4 offset 3");

    // Nothing set aside since a time to come: nothing sent, and no broker needed for that.
    let out = dlq_replay(
        dir.path(),
        &url,
        &["--since", "2999-01-01", "--brokers", "127.0.0.1:1"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("nothing to replay"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(replay_log(&url).len(), 2);

    // A bad --since, and a store that does not exist, are exit 2.
    let out = dlq_replay(dir.path(), &url, &["--since", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--since \"soon\""));
    let missing = dir.path().join("absent.db").display().to_string();
    let out = dlq_replay(dir.path(), &missing, &["--brokers", &broker.addr]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("there is no store at"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("absent.db").exists());
}
