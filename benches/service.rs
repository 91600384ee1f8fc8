//! End-to-end service benchmark (issue 17's figures), not criterion: `packwell run` (the
//! release binary, a child process) on each store, figures printed as a table.
//!
//! The protocol, per run, each on a fresh embedded broker (librdkafka's mock cluster) and a
//! fresh store (SQLite in a temporary data folder; PostgreSQL in a database of its own):
//! 1. `PW_BENCH_EVENTS` example events (default 45 000: the history repeated with new ids) are
//!    produced to `orders` (6 partitions) before anything else starts. The mock keeps about
//!    5 MiB per partition and drops the oldest messages beyond that, so the partitions' low
//!    watermarks are checked: the events counted are those the topic holds.
//! 2. A bare rdkafka consumer (the service's consumer settings, a group of its own) reads them
//!    all: events / (its last message − its first), the ceiling.
//! 3. `packwell run` starts with nothing produced while it runs (a producer would take a core).
//!    A reader in this process takes `packing-instructions` from the beginning; the service's
//!    rate is events / (the last packing instruction received − the first). The run is over
//!    when the service's committed offsets cover every event and the reader has as many
//!    packing instructions as `packwell_orders_decided_total` says; after the service stopped,
//!    the store's `decisions` must count the same, or the bench fails.
//! 4. Memory: the child's VmRSS when 25/50/75/100 % of the events are applied (by its
//!    committed offsets) and its VmHWM (peak) at the end, from `/proc/PID/status`: the service
//!    alone, not this process, which holds the broker, the events and the reader.
//!
//! The median of `PW_BENCH_RUNS` runs per store (default 5); the ratio to the bare consumer is
//! median over median, the bare consumer measured in the same runs.
//!
//! Environment: `PW_BENCH_EVENTS`, `PW_BENCH_RUNS`, `PW_BENCH_SKIP_PG=1`, `PW_BENCH_PG_URL`
//! (see `support::ScratchDatabase`). Run: `cargo bench --bench service`.

mod service_probes;
#[path = "../tests/service_support/mod.rs"]
mod service_support;
mod support;

use packwell::config::Config;
use packwell::kafka::{TOPIC_ORDERS, fast_consumer_config};
use rdkafka::TopicPartitionList;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use service_probes::{Reader, bare_rate, committed, events_held, partitions, proc_kib};
use service_support::{ServiceProcess, TestBroker, Workdir, http_get, metric};
use sqlx::Row;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{ScratchDatabase, env_usize, skip_postgres};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A run that has not finished by then has gone wrong.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the run's progress (committed offsets) and the child's memory are looked at.
const PROBE_EVERY: Duration = Duration::from_millis(50);

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
    let producer: BaseProducer = packwell::kafka::producer_config(brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .expect("producer");
    for (key, value) in events {
        let mut record = Some(
            BaseRecord::to(TOPIC_ORDERS)
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

/// One number from the store, read after the service stopped.
async fn count(url: &str, sql: &str) -> i64 {
    let row = if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url)
            .await
            .expect("the bench database");
        let n = sqlx::query(sql).fetch_one(&pool).await.map(|r| r.get(0));
        pool.close().await;
        n
    } else {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(url)
            .read_only(true);
        let pool = sqlx::SqlitePool::connect_with(opts)
            .await
            .expect("the bench's SQLite store");
        let n = sqlx::query(sql).fetch_one(&pool).await.map(|r| r.get(0));
        pool.close().await;
        n
    };
    row.expect("a count from the store")
}

/// One run's figures.
struct Run {
    events: usize,
    rate: f64,
    stamped_rate: f64,
    bare: f64,
    decided: usize,
    first_decision: Duration,
    stop: Duration,
    /// VmRSS and RssAnon (KiB) when 25, 50, 75 and 100 % of the events were applied: the
    /// anonymous part is the heap; the rest is mostly files mapped (the binary, SQLite's).
    rss: [(u64, u64); 4],
    peak_kib: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

fn one_run(backend: Backend, events: &[(String, Vec<u8>)], run: usize) -> Run {
    let broker = TestBroker::start();
    fill(&broker.addr, events);
    let n = events_held(&broker.addr, events.len());
    let bare = bare_rate(&broker.addr, &format!("bench-bare-{run}"), n);

    let workdir = Workdir::new();
    let database = (backend == Backend::Postgres).then(|| ScratchDatabase::create("pw_bench_svc"));
    let store_url = match &database {
        Some(d) => d.url.clone(),
        None => workdir.sqlite_url(),
    };
    let defaults = Config::load(None, []).expect("the default configuration");
    let batch_wait = defaults.kafka.batch_wait_ms.to_string();
    // The shipped defaults (service_support shortens the batch wait for tests); warnings kept.
    let mut env = vec![
        ("PACKWELL_LOG", "warn"),
        ("PACKWELL_KAFKA_BATCH_WAIT_MS", batch_wait.as_str()),
    ];
    if let Some(d) = &database {
        env.push(("PACKWELL_STORE_URL", d.url.as_str()));
    }

    let offsets: BaseConsumer = fast_consumer_config(&broker.addr, &defaults.kafka.group)
        .create()
        .expect("an offsets client");
    let mut orders = TopicPartitionList::new();
    for p in partitions(&offsets, TOPIC_ORDERS) {
        orders.add_partition(TOPIC_ORDERS, p);
    }
    let reader = Reader::start(&broker.addr);
    let started = Instant::now();
    let mut process = ServiceProcess::start_with_args(workdir.path(), &broker.addr, &env, &[]);
    let pid = process.child.id();

    let mut rss = [(0, 0); 4];
    let mut next_mark = 0;
    loop {
        std::thread::sleep(PROBE_EVERY);
        let applied = committed(&offsets, &orders);
        while next_mark < 4 && applied * 4 >= n * (next_mark + 1) {
            rss[next_mark] = (
                proc_kib(pid, "VmRSS").unwrap_or(0),
                proc_kib(pid, "RssAnon").unwrap_or(0),
            );
            next_mark += 1;
        }
        if applied >= n {
            // Every event applied, so the decisions are all counted: wait for their messages.
            let (_, text) = http_get(&process.http, "/metrics");
            let decided = metric(&text, "packwell_orders_decided_total") as usize;
            if decided > 0 && reader.count() >= decided {
                break;
            }
        }
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "{}: run {run} did not finish: {applied} of {n} events applied, {} packing instructions read; the service's log:\n{}",
            backend.name(),
            reader.count(),
            process.log()
        );
    }
    let peak_kib = proc_kib(pid, "VmHWM").unwrap_or(0);
    let (code, stop) = process.terminate();
    assert_eq!(code, Some(0), "packwell run's exit: {}", process.log());
    let got = reader.finish();

    let decided = broker
        .runtime
        .block_on(count(&store_url, "SELECT COUNT(*) FROM decisions"));
    assert_eq!(
        decided,
        got.count as i64,
        "{}: the store holds {decided} decisions, the reader got {} packing instructions",
        backend.name(),
        got.count
    );
    let (first, last) = (got.first.expect("a first"), got.last.expect("a last"));
    let span = last.duration_since(first).as_secs_f64();
    let stamped = (got.last_stamp.unwrap_or(0) - got.first_stamp.unwrap_or(0)) as f64 / 1000.0;
    drop(database);
    Run {
        events: n,
        rate: n as f64 / span,
        stamped_rate: n as f64 / stamped,
        bare,
        decided: got.count,
        first_decision: first.duration_since(started),
        stop,
        rss,
        peak_kib,
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0}", kib as f64 / 1024.0)
}

fn print_run(backend: Backend, i: usize, r: &Run) {
    println!(
        "{} run {}: {} events, {} decided; {:.0} events/s (by the producer's stamps {:.0}); bare {:.0}/s ({:.3}×); first decision {:.0} ms after start, stop {:.0} ms; VmRSS (RssAnon) at 25/50/75/100 %: {} MiB; VmHWM {} MiB",
        backend.name(),
        i + 1,
        r.events,
        r.decided,
        r.rate,
        r.stamped_rate,
        r.bare,
        r.rate / r.bare,
        r.first_decision.as_secs_f64() * 1000.0,
        r.stop.as_secs_f64() * 1000.0,
        r.rss
            .iter()
            .map(|(all, anon)| format!("{} ({})", mib(*all), mib(*anon)))
            .collect::<Vec<_>>()
            .join(" / "),
        mib(r.peak_kib),
    );
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    }
}

fn print_table(rows: &[(Backend, Vec<Run>)]) {
    println!();
    println!(
        "{:<11} {:>7} {:>10} {:>16} {:>10} {:>8} {:>15} {:>9} {:>12} {:>10}",
        "store",
        "events",
        "events/s",
        "min..max",
        "bare/s",
        "÷ bare",
        "goal",
        "met",
        "VmHWM max",
        "1st dec."
    );
    for (backend, runs) in rows {
        let rate = median(runs.iter().map(|r| r.rate).collect());
        let bare = median(runs.iter().map(|r| r.bare).collect());
        let min = runs.iter().map(|r| r.rate).fold(f64::INFINITY, f64::min);
        let max = runs.iter().map(|r| r.rate).fold(0.0, f64::max);
        let ratio = rate / bare;
        let (goal, met) = match backend {
            Backend::Sqlite => ("≥40000, ≥0.2×", rate >= 40_000.0 && ratio >= 0.2),
            Backend::Postgres => ("≥20000", rate >= 20_000.0),
        };
        let peak = runs.iter().map(|r| r.peak_kib).max().unwrap_or(0);
        let first = median(
            runs.iter()
                .map(|r| r.first_decision.as_secs_f64())
                .collect(),
        );
        println!(
            "{:<11} {:>7} {:>10.0} {:>16} {:>10.0} {:>7.3}× {:>15} {:>9} {:>8} MiB {:>7.0} ms",
            backend.name(),
            runs[0].events,
            rate,
            format!("{min:.0}..{max:.0}"),
            bare,
            ratio,
            goal,
            if met { "yes" } else { "no" },
            mib(peak),
            first * 1000.0,
        );
    }
    println!(
        "events/s: events ÷ (last packing instruction received − first), median of the runs; \
         bare: the service's consumer settings reading the same topic, first message to last; \
         VmHWM: the child process's peak; 1st dec.: from spawning `packwell run` (median)"
    );
}

fn main() {
    let n = env_usize("PW_BENCH_EVENTS", 45_000);
    let runs = env_usize("PW_BENCH_RUNS", 5).max(1);
    println!("== Packwell service benchmark (issue 17, `packwell run` events/s) ==");
    let events = stream(n);
    println!(
        "{n} example events (the history repeated with new ids) produced to orders (6 partitions) before each run; {runs} runs per store, each on a fresh broker and store"
    );
    let mut backends = vec![Backend::Sqlite];
    if !skip_postgres() {
        backends.push(Backend::Postgres);
    }
    let mut rows = Vec::new();
    for backend in backends {
        let mut figures = Vec::new();
        for i in 0..runs {
            let r = one_run(backend, &events, i);
            print_run(backend, i, &r);
            figures.push(r);
        }
        rows.push((backend, figures));
    }
    print_table(&rows);
}
