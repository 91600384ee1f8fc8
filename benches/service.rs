//! End-to-end service benchmark (issue 5's figures), not criterion: one run, figures printed.
//!
//! On the embedded broker (librdkafka's mock cluster, in process), a stream of ≥ 200 000 events
//! (the example history repeated with new ids) flows through `orders` (6 partitions):
//! 1. a bare rdkafka consumer reads the first 40 000: the raw rate, the ceiling;
//! 2. the service (`packwell::service::run`, in process) consumes, decides, stores and relays
//!    the whole stream, on SQLite and then on PostgreSQL (each on a fresh broker): events per
//!    second from start until the last event is stored, as a ratio to the raw rate; time from
//!    start to the first decision; time from the stop signal to `run` returning.
//!
//! The mock keeps at most 5 MiB per partition and drops older messages beyond that, so the
//! stream is produced while the service consumes, topped up whenever fewer than 20 000 events
//! wait: the service always has work, and nothing is dropped unread.
//!
//! Environment: `PW_BENCH_EVENTS` (default 200 000), `PW_BENCH_SKIP_PG`,
//! `PW_BENCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Run: `cargo bench --bench service`.

use packwell::config::Config;
use packwell::kafka::{EmbeddedBroker, fast_consumer_config, producer_config};
use packwell::service::{self, Options};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use sqlx::Row;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

mod support;

use support::{ScratchDatabase, env_usize, skip_postgres};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The example history repeated with new event, order and customer ids until `n` events.
fn stream(n: usize) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/history.ndjson")).expect("history");
    let history: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let mut out = Vec::with_capacity(n);
    let mut copy = 0;
    while out.len() < n {
        for e in &history {
            if out.len() >= n {
                break;
            }
            let mut e = e.clone();
            let suffix = format!("-r{copy}");
            let append = |v: &mut Value| {
                if let Some(s) = v.as_str() {
                    *v = Value::String(format!("{s}{suffix}"));
                }
            };
            append(&mut e["event_id"]);
            if e["order"].is_object() {
                append(&mut e["order"]["id"]);
                append(&mut e["order"]["customer"]["id"]);
            } else {
                append(&mut e["order_id"]);
                append(&mut e["customer_id"]);
            }
            let key = e["order"]["customer"]["id"]
                .as_str()
                .or_else(|| e["customer_id"].as_str())
                .unwrap_or_default()
                .to_string();
            out.push((key, e.to_string().into_bytes()));
        }
        copy += 1;
    }
    out
}

fn fill(brokers: &str, events: &[(String, Vec<u8>)]) {
    let producer: BaseProducer = producer_config(brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .expect("producer");
    for (key, value) in events {
        let mut record = Some(
            BaseRecord::to("orders")
                .key(key.as_str())
                .payload(value.as_slice()),
        );
        while let Some(r) = record.take() {
            if let Err((_, r)) = producer.send(r) {
                producer.poll(Duration::from_millis(10));
                record = Some(r);
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("filled");
}

/// A bare consumer in a group of its own reading `n` messages: events per second.
fn raw_rate(brokers: &str, n: usize) -> f64 {
    let consumer: BaseConsumer = fast_consumer_config(brokers, "bench-raw")
        .create()
        .expect("consumer");
    consumer.subscribe(&["orders"]).expect("subscribe");
    let started = Instant::now();
    let mut seen = 0;
    while seen < n && started.elapsed() < Duration::from_secs(300) {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            seen += 1;
        }
    }
    seen as f64 / started.elapsed().as_secs_f64()
}

struct ServiceFigures {
    rate: f64,
    first_decision: Duration,
    stop: Duration,
    decided: i64,
}

async fn count(url: &str, sql: &str) -> i64 {
    if url.starts_with("postgres") {
        let Ok(pool) = sqlx::PgPool::connect(url).await else {
            return 0;
        };
        let n = sqlx::query(sql)
            .fetch_one(&pool)
            .await
            .ok()
            .and_then(|r| r.try_get(0).ok())
            .unwrap_or(0);
        pool.close().await;
        n
    } else {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(url)
            .read_only(true);
        let Ok(pool) = sqlx::SqlitePool::connect_with(opts).await else {
            return 0;
        };
        let n = sqlx::query(sql)
            .fetch_one(&pool)
            .await
            .ok()
            .and_then(|r| r.try_get(0).ok())
            .unwrap_or(0);
        pool.close().await;
        n
    }
}

/// Runs the service on `store_url` while `events` are produced to it, paced (see above);
/// `already` events are in the topic before it starts.
async fn run_service(
    brokers: &str,
    store_url: &str,
    dir: &Path,
    group: &str,
    events: &[(String, Vec<u8>)],
    already: usize,
) -> ServiceFigures {
    let n = events.len() + already;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = Config::load(None, []).expect("defaults");
    config.store.url = Some(store_url.to_string());
    config.kafka.group = group.to_string();
    config.http.listen = "127.0.0.1:0".into();
    config.decide.max_event_age = "3650d".into();
    config.coupons.key_file = dir.join("coupon.key");
    let opts = Options {
        config,
        brokers: brokers.to_string(),
        fast_group: true,
        rules_dir: root.join("rules"),
        templates_dir: root.join("templates"),
    };
    let stop = CancellationToken::new();
    let started = Instant::now();
    let service = tokio::spawn(service::run(opts, stop.clone(), None));
    let mut first_decision = None;
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut produced = already;
    let mut rest = events;
    loop {
        let pause = if first_decision.is_none() { 10 } else { 100 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if first_decision.is_none()
            && count(
                store_url,
                "SELECT COUNT(*) FROM (SELECT 1 FROM decisions LIMIT 1) d",
            )
            .await
                > 0
        {
            first_decision = Some(started.elapsed());
        }
        // Events applied = the sum of the partitions' stored offsets (a fresh broker starts
        // at 0): six rows to read, where counting processed events would scan them all, ten
        // times a second, on the cores the service needs.
        let done = count(
            store_url,
            "SELECT CAST(COALESCE(SUM(next_offset), 0) AS BIGINT) FROM partitions",
        )
        .await as usize;
        if done >= n || Instant::now() > deadline {
            break;
        }
        if !rest.is_empty() && produced.saturating_sub(done) < 20_000 {
            let (chunk, tail) = rest.split_at(rest.len().min(20_000));
            let chunk = chunk.to_vec();
            produced += chunk.len();
            rest = tail;
            let brokers = brokers.to_string();
            tokio::task::spawn_blocking(move || fill(&brokers, &chunk))
                .await
                .expect("producer");
        }
    }
    let elapsed = started.elapsed();
    let stopping = Instant::now();
    stop.cancel();
    let result = service.await.expect("service task");
    let stop_took = stopping.elapsed();
    if let Err(e) = result {
        panic!("the service failed: {e}");
    }
    ServiceFigures {
        rate: n as f64 / elapsed.as_secs_f64(),
        first_decision: first_decision.unwrap_or_default(),
        stop: stop_took,
        decided: count(store_url, "SELECT COUNT(*) FROM decisions").await,
    }
}

fn start_broker(runtime: &tokio::runtime::Runtime) -> EmbeddedBroker {
    runtime
        .block_on(EmbeddedBroker::start("127.0.0.1:0".parse().expect("addr")))
        .expect("embedded broker")
}

fn main() {
    let n = env_usize("PW_BENCH_EVENTS", 200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("== Packwell service benchmark (issue 5, Figures) ==");
    let events = stream(n);
    println!(
        "stream: {n} events (the example history repeated with new ids); orders has 6 partitions"
    );
    let broker = start_broker(&runtime);
    let raw_n = 40_000.min(n);
    fill(&broker.bootstrap(), &events[..raw_n]);
    let raw = raw_rate(&broker.bootstrap(), raw_n);
    println!("bare rdkafka consumer: {raw:>10.0} events/s over {raw_n} events (the ceiling)");
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = dir.path().join("bench.db").display().to_string();
    let f = runtime.block_on(run_service(
        &broker.bootstrap(),
        &sqlite,
        dir.path(),
        "bench-sqlite",
        &events[raw_n..],
        raw_n,
    ));
    runtime.block_on(broker.shutdown());
    let mut rows = vec![("SQLite", f)];
    if !skip_postgres() {
        let database = ScratchDatabase::create("pw_bench_service");
        let pg_dir = tempfile::tempdir().expect("tempdir");
        // A fresh broker: the SQLite run's messages are not in the way.
        let broker = start_broker(&runtime);
        let f = runtime.block_on(run_service(
            &broker.bootstrap(),
            &database.url,
            pg_dir.path(),
            "bench-pg",
            &events,
            0,
        ));
        runtime.block_on(broker.shutdown());
        rows.push(("PostgreSQL", f));
    }
    println!();
    println!(
        "{:<12} {:>12} {:>9} {:>10} {:>16} {:>14}",
        "store", "events/s", "÷ raw", "decided", "start→decision", "stop→return"
    );
    for (name, f) in &rows {
        println!(
            "{:<12} {:>12.0} {:>8.2}× {:>10} {:>13.0} ms {:>11.0} ms",
            name,
            f.rate,
            f.rate / raw,
            f.decided,
            f.first_decision.as_secs_f64() * 1000.0,
            f.stop.as_secs_f64() * 1000.0
        );
    }
    println!("goal: SQLite ≥ 0.3× the raw rate");
}
