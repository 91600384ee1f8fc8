//! End-to-end store throughput, the figures of issue 4: events applied per second in batches
//! of 500 (the example history's mix: placed, shipped, delivered, feedback, …) for SQLite and
//! PostgreSQL, with `pgbench -S` TPS measured in the same run as a reference; bytes per
//! customer in each store; the import rate for a 1M-event file.
//!
//! A plain timed loop over a large stream (not criterion): one figure per store, printed with a
//! summary table at the end. Run: `cargo bench --bench store`.
//!
//! Knobs (environment variables):
//! - `PW_BENCH_EVENTS`: size of the main stream (default 200 000, rounded up to whole copies of
//!   the history: 214 092 events).
//! - `PW_BENCH_IMPORT_LINES`: lines of the import file (default 1 000 000).
//! - `PW_BENCH_PG_URL`: default `postgres://postgres@127.0.0.1:5432/test`.
//! - `PW_BENCH_SKIP_PG`, `PW_BENCH_SKIP_PGBENCH`, `PW_BENCH_SKIP_IMPORT`, `PW_BENCH_SKIP_FOLD`:
//!   set to 1 to leave a part out.
//! - `PW_BENCH_TRACE_BATCHES`: batches (from the middle of each run) whose SQL statements are
//!   counted and timed for the breakdown; default 20, 0 for none. They are left out of the
//!   events/s figure.
//! - `PW_BENCH_MAX_SECS` (default 150), `PW_BENCH_FOLD_MAX_SECS` (default 30),
//!   `PW_BENCH_IMPORT_TIMEOUT` (default 200): time caps, so the whole run stays near 10 minutes;
//!   a capped run reports its rate over the events it applied.

use anyhow::{Context as _, Result, bail};

/// The allocator of the `packwell` binary, so the figures are the service's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use packwell::coupon::CouponKey;
use packwell::engine::Shop;
use packwell::event::parse_event;
use packwell::replay::Applied;
use packwell::rules::load_rules;
use packwell::store::{Batch, BatchItem, DecideEnv, Fence, PgStore, SqliteStore, Store};
use serde_json::Value;
use sqlx::Connection as _;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Events per batch: `PW_BENCH_BATCH` (default 500).
fn batch_size() -> usize {
    env_usize("PW_BENCH_BATCH", 500)
}
const IMPORT_BATCH: usize = 2000;
const HISTORY_EVENTS: usize = 23_788;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Time cap of one store run: `PW_BENCH_MAX_SECS` (default 150) for the `decide: true` runs,
/// `PW_BENCH_FOLD_MAX_SECS` (default 30) for the `decide: false` ones.
fn max_secs(fold: bool) -> f64 {
    if fold {
        env_usize("PW_BENCH_FOLD_MAX_SECS", 30) as f64
    } else {
        env_usize("PW_BENCH_MAX_SECS", 150) as f64
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

// ---------------------------------------------------------------------------------------------
// Counting SQL statements: sqlx reports every statement as a `sqlx::query` tracing event with
// its text and elapsed time. The layer below is off (and costs nothing) unless `TRACE` is set.

static TRACE: AtomicBool = AtomicBool::new(false);
/// Statement (whitespace-normalised, cut) → (calls, seconds).
static STATEMENTS: Mutex<BTreeMap<String, (u64, f64)>> = Mutex::new(BTreeMap::new());

struct StatementCounter;

#[derive(Default)]
struct StatementFields {
    summary: String,
    statement: String,
    secs: f64,
}

impl tracing::field::Visit for StatementFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_string(),
            "db.statement" => self.statement = value.to_string(),
            _ => {}
        }
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.secs = value;
        }
    }
    fn record_debug(&mut self, _field: &tracing::field::Field, _value: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StatementCounter {
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if meta.target() == "sqlx::query" {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        meta.target() == "sqlx::query" && TRACE.load(Ordering::Relaxed)
    }

    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut f = StatementFields::default();
        event.record(&mut f);
        let text = if f.statement.trim().is_empty() {
            f.summary
        } else {
            f.statement
        };
        let mut key = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if key.len() > 118 {
            let mut cut = 115;
            while !key.is_char_boundary(cut) {
                cut -= 1;
            }
            key.truncate(cut);
            key.push('…');
        }
        let mut map = STATEMENTS.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(key).or_default();
        e.0 += 1;
        e.1 += f.secs;
    }
}

fn install_statement_counter() {
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(StatementCounter);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        eprintln!("note: a tracing subscriber was already set; no statement breakdown");
    }
}

// ---------------------------------------------------------------------------------------------
// The event stream.

/// The history as JSON values, in file order.
fn load_history() -> Result<Vec<Value>> {
    let path = root().join("examples/history.ndjson");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).context("a history line is not JSON"))
        .collect()
}

fn suffix_at(v: &mut Value, path: &[&str], sfx: &str) {
    let mut cur = v;
    for p in path {
        cur = match cur.get_mut(*p) {
            Some(next) => next,
            None => return,
        };
    }
    if let Value::String(s) = cur {
        s.push_str(sfx);
    }
}

/// Copy `n` of an event: copy 0 is the original, copy n ≥ 1 has `-r{n}` after its event id,
/// order id and customer id (a different customer with the same history).
fn rewrite(v: &Value, n: usize) -> Value {
    let mut v = v.clone();
    if n > 0 {
        let sfx = format!("-r{n}");
        for path in [
            &["event_id"][..],
            &["order_id"],
            &["customer_id"],
            &["order", "id"],
            &["order", "customer", "id"],
        ] {
            suffix_at(&mut v, path, &sfx);
        }
    }
    v
}

fn item(value: Vec<u8>, offset: i64, decide: bool) -> BatchItem {
    let event = parse_event(&value);
    // The Kafka key is the customer id (docs/REFERENCE.md §1): the store checks it.
    let key = event
        .as_ref()
        .ok()
        .map(|e| e.customer_id().as_bytes().to_vec());
    BatchItem {
        offset,
        key,
        value,
        event,
        decide,
    }
}

struct Stream {
    items: Vec<BatchItem>,
    copies: usize,
    customers: usize,
    mix: BTreeMap<String, usize>,
}

/// `target` events: whole copies of the history, interleaved event by event (copy 0 … copy
/// n−1 of event 1, then of event 2, …) so the stream stays in time order, as a shop with n
/// times the customers over the same weeks would send it.
fn build_stream(history: &[Value], target: usize) -> Stream {
    let copies = target.div_ceil(history.len()).max(1);
    let wanted = target.max(1).min(history.len() * copies);
    let mut items = Vec::with_capacity(wanted);
    let mut mix = BTreeMap::new();
    let mut customers = HashSet::new();
    'outer: for ev in history {
        for n in 0..copies {
            if items.len() == wanted {
                break 'outer;
            }
            let v = rewrite(ev, n);
            let ty = v
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            *mix.entry(ty).or_insert(0) += 1;
            let bytes = serde_json::to_vec(&v).expect("JSON out");
            let it = item(bytes, items.len() as i64, true);
            if let Ok(e) = &it.event {
                customers.insert(e.customer_id().to_string());
            }
            items.push(it);
        }
    }
    Stream {
        items,
        copies,
        customers: customers.len(),
        mix,
    }
}

// ---------------------------------------------------------------------------------------------
// Timed runs.

/// Statements seen while tracing: (statement, calls, seconds), with the traced events and
/// seconds.
type Breakdown = (Vec<(String, u64, f64)>, usize, f64);

#[derive(Default)]
struct RunFigures {
    label: String,
    events: usize,
    timed_events: usize,
    secs: f64,
    decided: usize,
    inserts: usize,
    coupons: usize,
    followups: usize,
    rejected: usize,
    seen_before: usize,
    /// (statement, calls, seconds) over the traced batches, and the traced events and seconds.
    breakdown: Option<Breakdown>,
    /// Untraced batches: (seconds, batch index, orders decided in it).
    batch_secs: Vec<(f64, usize, usize)>,
    /// Stopped before the end of the stream by the time cap.
    capped: bool,
    load_before: String,
    load_after: String,
}

impl RunFigures {
    fn rate(&self) -> f64 {
        self.timed_events as f64 / self.secs.max(1e-9)
    }
}

/// Applies `items` in batches of `batch` with `Fence::None`; only `apply_batch` is timed.
#[allow(clippy::too_many_arguments)] // each is one knob of the run, named at the call
async fn run_stream(
    label: &str,
    store: &dyn Store,
    env: &DecideEnv,
    items: &[BatchItem],
    decide: bool,
    trace_batches: usize,
    max_secs: f64,
    analyze: Option<&sqlx::PgPool>,
) -> Result<RunFigures> {
    let mut f = RunFigures {
        label: label.to_string(),
        events: items.len(),
        ..Default::default()
    };
    let chunks: Vec<&[BatchItem]> = items.chunks(batch_size()).collect();
    let trace_from = chunks.len().saturating_sub(trace_batches) / 2;
    let trace = trace_from..trace_from + trace_batches.min(chunks.len());
    let mut traced_events = 0;
    let mut traced_secs = 0.0;
    let started = Instant::now();
    f.load_before = loadavg();
    let mut next_note = 0.1;
    for (i, chunk) in chunks.iter().enumerate() {
        let batch = Batch {
            fence: Fence::None,
            items: chunk
                .iter()
                .map(|it| BatchItem {
                    decide,
                    ..it.clone()
                })
                .collect(),
        };
        let traced = trace.contains(&i);
        if traced {
            if i == trace.start {
                STATEMENTS.lock().unwrap_or_else(|e| e.into_inner()).clear();
            }
            TRACE.store(true, Ordering::Relaxed);
        }
        let t = Instant::now();
        let report = store
            .apply_batch(&batch, env)
            .await
            .with_context(|| format!("{label}: batch {i}"))?;
        let secs = t.elapsed().as_secs_f64();
        TRACE.store(false, Ordering::Relaxed);
        if traced {
            traced_events += chunk.len();
            traced_secs += secs;
        } else {
            f.timed_events += chunk.len();
            f.secs += secs;
        }
        f.rejected += report.rejected;
        f.seen_before += report.seen_before;
        let decided_before = f.decided;
        for a in &report.applied {
            match a {
                Applied::Decided(o) => {
                    f.decided += 1;
                    f.inserts += o.decision.inserts.len();
                    f.coupons += o
                        .decision
                        .inserts
                        .iter()
                        .filter(|g| g.coupon.is_some())
                        .count();
                    f.followups += o.decision.followups.len();
                }
                Applied::Folded { followups, .. } => f.followups += followups.len(),
                Applied::Unchanged | Applied::Conflict | Applied::Rejected(_) => {}
            }
        }
        if !traced {
            f.batch_secs.push((secs, i, f.decided - decided_before));
        }
        if f.secs + traced_secs > max_secs && i + 1 < chunks.len() {
            f.capped = true;
            eprintln!("    {label}: stopped after {max_secs:.0} s (time cap)");
            break;
        }
        let done = (i + 1) as f64 / chunks.len() as f64;
        if let Some(pool) = analyze
            && done >= 0.1
            && done - (1.0 / chunks.len() as f64) < 0.1
        {
            // A store in use has statistics (autovacuum gathers them within a minute); without
            // them PostgreSQL plans on an empty table. Not timed.
            sqlx::query("ANALYZE").execute(pool).await?;
        }
        if done >= next_note {
            eprintln!(
                "    {label}: {:>3.0}% ({} events, {:.0} events/s so far, {:.0} s)",
                done * 100.0,
                f.timed_events + traced_events,
                f.rate(),
                started.elapsed().as_secs_f64()
            );
            next_note += 0.1;
        }
    }
    f.events = f.timed_events + traced_events;
    f.load_after = loadavg();
    if !trace.is_empty() && traced_events > 0 {
        let map = STATEMENTS.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<(String, u64, f64)> =
            map.iter().map(|(k, (n, s))| (k.clone(), *n, *s)).collect();
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        f.breakdown = Some((rows, traced_events, traced_secs));
    }
    Ok(f)
}

fn print_run(f: &RunFigures) {
    println!(
        "  {:<28} {:>9} events in {:>7.2} s = {:>8.0} events/s   (of {} applied)",
        f.label,
        f.timed_events,
        f.secs,
        f.rate(),
        f.events,
    );
    println!(
        "  {:<28} load average before {}, after {} (2 cores: above 2, others compete for the CPU)",
        "", f.load_before, f.load_after
    );
    if f.capped {
        println!(
            "  {:<28} (stopped early by the time cap: the rate is over the events applied)",
            ""
        );
    }
    let mut by_time = f.batch_secs.clone();
    by_time.sort_by(|a, b| a.0.total_cmp(&b.0));
    if !by_time.is_empty() {
        let q = |p: f64| by_time[((by_time.len() - 1) as f64 * p).round() as usize].0 * 1e3;
        let slowest: Vec<String> = by_time
            .iter()
            .rev()
            .take(3)
            .map(|(s, i, d)| format!("#{i} {:.0} ms ({d} decided)", s * 1e3))
            .collect();
        println!(
            "  {:<28} batch of {}: median {:.1} ms, p90 {:.1} ms, max {:.1} ms; slowest: {}",
            "",
            batch_size(),
            q(0.5),
            q(0.9),
            q(1.0),
            slowest.join(", ")
        );
    }
    println!(
        "  {:<28} decided {} orders ({} inserts, {} coupons), {} follow-ups scheduled, {} rejected, {} seen before",
        "", f.decided, f.inserts, f.coupons, f.followups, f.rejected, f.seen_before
    );
    if let Some((rows, events, secs)) = &f.breakdown {
        let calls: u64 = rows.iter().map(|r| r.1).sum();
        let in_db: f64 = rows.iter().map(|r| r.2).sum();
        println!(
            "  SQL breakdown over {} traced events ({:.0} events/s while traced): {} statements = {:.1} per event; \
             {:.0}% of the time waiting on statements, {:.0}% outside (fold, decide, JSON, sqlx)",
            events,
            *events as f64 / secs.max(1e-9),
            calls,
            calls as f64 / *events as f64,
            100.0 * in_db / secs.max(1e-9),
            100.0 * (1.0 - in_db / secs.max(1e-9)).max(0.0)
        );
        println!(
            "    {:>8} {:>7} {:>8} {:>6} {:>6}  statement",
            "calls", "/event", "µs/call", "ms", "share"
        );
        for (sql, n, s) in rows.iter().take(16) {
            println!(
                "    {:>8} {:>7.2} {:>8.1} {:>6.0} {:>5.1}%  {}",
                n,
                *n as f64 / *events as f64,
                s * 1e6 / *n as f64,
                s * 1e3,
                100.0 * s / secs.max(1e-9),
                sql
            );
        }
        if rows.len() > 16 {
            let rest: &[(String, u64, f64)] = &rows[16..];
            println!(
                "    {:>8} {:>7.2} {:>8} {:>6.0} {:>5.1}%  ({} other statements)",
                rest.iter().map(|r| r.1).sum::<u64>(),
                rest.iter().map(|r| r.1).sum::<u64>() as f64 / *events as f64,
                "",
                rest.iter().map(|r| r.2).sum::<f64>() * 1e3,
                100.0 * rest.iter().map(|r| r.2).sum::<f64>() / secs.max(1e-9),
                rest.len()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sizes.

struct Size {
    bytes: u64,
    customers: i64,
    tables: Vec<(String, u64)>,
    rows: Vec<(String, i64)>,
}

impl Size {
    fn per_customer(&self) -> f64 {
        self.bytes as f64 / self.customers.max(1) as f64
    }
}

const TABLES: &[&str] = &[
    "processed_events",
    "profiles",
    "orders",
    "decisions",
    "given_inserts",
    "coupons",
    "email_jobs",
    "outbox",
];

async fn sqlite_size(path: &Path) -> Result<Size> {
    use sqlx::sqlite::SqliteConnectOptions;
    let mut c =
        sqlx::SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path)).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut c)
        .await?;
    let customers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM profiles")
        .fetch_one(&mut c)
        .await?;
    let mut rows = Vec::new();
    for t in TABLES {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {t}"))
            .fetch_one(&mut c)
            .await?;
        rows.push((t.to_string(), n));
    }
    // Pages per table and index, when SQLite was built with the dbstat table.
    let tables = match sqlx::query_as::<_, (String, i64)>(
        "SELECT COALESCE(m.tbl_name, d.name), SUM(d.pgsize) FROM dbstat d LEFT JOIN sqlite_master m ON m.name = d.name \
         GROUP BY 1 ORDER BY 2 DESC",
    )
    .fetch_all(&mut c)
    .await
    {
        Ok(v) => v.into_iter().map(|(n, b)| (n, b.max(0) as u64)).collect(),
        Err(_) => Vec::new(),
    };
    c.close().await?;
    let mut bytes = 0;
    for sfx in ["", "-wal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(sfx);
        bytes += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    }
    Ok(Size {
        bytes,
        customers,
        tables,
        rows,
    })
}

async fn pg_size(pool: &sqlx::PgPool, schema: &str) -> Result<Size> {
    let total: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
    )
    .bind(schema)
    .fetch_one(pool)
    .await?;
    let tables: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.relname::text, pg_total_relation_size(c.oid) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 2 DESC",
    )
    .bind(schema)
    .fetch_all(pool)
    .await?;
    let customers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM profiles")
        .fetch_one(pool)
        .await?;
    let mut rows = Vec::new();
    for t in TABLES {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {t}"))
            .fetch_one(pool)
            .await?;
        rows.push((t.to_string(), n));
    }
    Ok(Size {
        bytes: total.max(0) as u64,
        customers,
        tables: tables
            .into_iter()
            .map(|(n, b)| (n, b.max(0) as u64))
            .collect(),
        rows,
    })
}

/// The furthest line any import into the SQLite file at `path` has committed.
async fn imported_lines(path: &Path) -> Result<usize> {
    use sqlx::sqlite::SqliteConnectOptions;
    let mut c =
        sqlx::SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path)).await?;
    let n: Option<i64> = sqlx::query_scalar("SELECT MAX(next_line) FROM imports")
        .fetch_one(&mut c)
        .await?;
    c.close().await?;
    Ok(n.unwrap_or(0).max(0) as usize)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn print_size(name: &str, s: &Size) {
    println!(
        "  {name} size: {} total, {} customers = {:.0} bytes per customer",
        mib(s.bytes),
        s.customers,
        s.per_customer()
    );
    if !s.tables.is_empty() {
        let parts: Vec<String> = s
            .tables
            .iter()
            .filter(|(_, b)| *b > 0)
            .take(9)
            .map(|(n, b)| format!("{n} {}", mib(*b)))
            .collect();
        println!("    by table (with indexes): {}", parts.join(", "));
    }
    let rows: Vec<String> = s.rows.iter().map(|(n, c)| format!("{n} {c}")).collect();
    println!("    rows: {}", rows.join(", "));
}

// ---------------------------------------------------------------------------------------------
// The stores.

fn rules_env() -> Result<DecideEnv> {
    let out = load_rules(&root().join("rules"), &root().join("templates"));
    for f in out.findings.iter().filter(|f| !f.warning) {
        eprintln!("rules: {}:{}: {}", f.file.display(), f.line, f.message);
    }
    let rules = out.rules.context("the example rules did not load")?;
    Ok(DecideEnv {
        rules: std::sync::Arc::new(rules),
        key: CouponKey::preview(),
        shop: Shop::default(),
    })
}

struct StoreFigures {
    decide: RunFigures,
    import_like: RunFigures,
    size: Size,
    /// µs per `SELECT 1` through sqlx on one connection: the floor of one statement.
    floor_us: f64,
}

const FLOOR_STATEMENTS: u32 = 5000;

/// Times `SELECT 1` through sqlx, one statement after the other on one connection.
macro_rules! statement_floor {
    ($conn:expr) => {{
        let t = Instant::now();
        for _ in 0..FLOOR_STATEMENTS {
            let _: i32 = sqlx::query_scalar("SELECT 1").fetch_one($conn).await?;
        }
        t.elapsed().as_secs_f64() * 1e6 / f64::from(FLOOR_STATEMENTS)
    }};
}

fn print_floor(name: &str, floor_us: f64, decide: &RunFigures) {
    let per_event = decide
        .breakdown
        .as_ref()
        .map(|(rows, events, _)| rows.iter().map(|r| r.1).sum::<u64>() as f64 / *events as f64);
    match per_event {
        Some(n) => println!(
            "  {name} statement floor: {floor_us:.1} µs per `SELECT 1` through sqlx; × {n:.1} statements per event \
             = {:.0} µs per event, a ceiling of {:.0} events/s before any work",
            floor_us * n,
            1e6 / (floor_us * n)
        ),
        None => println!("  {name} statement floor: {floor_us:.1} µs per `SELECT 1` through sqlx"),
    }
}

/// The load average, to judge how shared the machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn bench_sqlite(
    dir: &Path,
    env: &DecideEnv,
    items: &[BatchItem],
    trace: usize,
) -> Result<StoreFigures> {
    let path = dir.join("bench.db");
    let store = SqliteStore::open(path.to_str().context("temp path")?).await?;
    let decide = run_stream(
        "SQLite, decide: true",
        &store,
        env,
        items,
        true,
        trace,
        max_secs(false),
        None,
    )
    .await?;
    print_run(&decide);
    drop(store);
    let size = sqlite_size(&path).await?;
    print_size("SQLite", &size);
    let floor_us = {
        use sqlx::sqlite::SqliteConnectOptions;
        let mut c =
            sqlx::SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path))
                .await?;
        let us = statement_floor!(&mut c);
        c.close().await?;
        us
    };
    print_floor("SQLite", floor_us, &decide);

    let path2 = dir.join("bench-fold.db");
    let import_like = if env_flag("PW_BENCH_SKIP_FOLD") {
        RunFigures::default()
    } else {
        let store = SqliteStore::open(path2.to_str().context("temp path")?).await?;
        let f = run_stream(
            "SQLite, decide: false",
            &store,
            env,
            items,
            false,
            trace,
            max_secs(true),
            None,
        )
        .await?;
        print_run(&f);
        f
    };
    Ok(StoreFigures {
        decide,
        import_like,
        size,
        floor_us,
    })
}

/// A pool whose connections use `schema` (created here).
async fn pg_pool(url: &str, schema: &str) -> Result<sqlx::PgPool> {
    let mut admin = sqlx::PgConnection::connect(url).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let opts = sqlx::postgres::PgConnectOptions::from_str(url)?.options([("search_path", schema)]);
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await?)
}

async fn drop_schema(url: &str, schema: &str) {
    let r = async {
        let mut admin = sqlx::PgConnection::connect(url).await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&mut admin)
            .await?;
        admin.close().await
    }
    .await;
    if let Err(e) = r {
        eprintln!("warning: could not drop schema {schema}: {e}");
    }
}

async fn bench_pg(
    url: &str,
    env: &DecideEnv,
    items: &[BatchItem],
    trace: usize,
) -> Result<StoreFigures> {
    let pid = std::process::id();
    let s1 = format!("pw_bench_{pid}_decide");
    let s2 = format!("pw_bench_{pid}_fold");
    let r = async {
        let pool = pg_pool(url, &s1).await?;
        let store = PgStore::with_pool(pool.clone()).await?;
        let decide = run_stream(
            "PostgreSQL, decide: true",
            &store,
            env,
            items,
            true,
            trace,
            max_secs(false),
            Some(&pool),
        )
        .await?;
        print_run(&decide);
        let size = pg_size(&pool, &s1).await?;
        print_size("PostgreSQL", &size);
        let floor_us = {
            let mut c = pool.acquire().await?;
            statement_floor!(&mut *c)
        };
        print_floor("PostgreSQL", floor_us, &decide);
        drop(store);
        pool.close().await;

        let import_like = if env_flag("PW_BENCH_SKIP_FOLD") {
            RunFigures::default()
        } else {
            let pool = pg_pool(url, &s2).await?;
            let store = PgStore::with_pool(pool.clone()).await?;
            let f = run_stream(
                "PostgreSQL, decide: false",
                &store,
                env,
                items,
                false,
                trace,
                max_secs(true),
                Some(&pool),
            )
            .await?;
            print_run(&f);
            drop(store);
            pool.close().await;
            f
        };
        Ok::<_, anyhow::Error>(StoreFigures {
            decide,
            import_like,
            size,
            floor_us,
        })
    }
    .await;
    drop_schema(url, &s1).await;
    drop_schema(url, &s2).await;
    r
}

// ---------------------------------------------------------------------------------------------
// pgbench.

fn pg_tool(name: &str) -> Option<PathBuf> {
    let on_path = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    on_path.or_else(|| {
        ["15", "16", "17", "14"]
            .iter()
            .map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin/{name}")))
            .find(|p| p.exists())
    })
}

fn run_tool(tool: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", tool.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "{} {} failed: {}",
            tool.display(),
            args.join(" "),
            text.trim()
        );
    }
    Ok(text)
}

fn parse_tps(out: &str) -> Option<f64> {
    out.lines()
        .find(|l| l.trim_start().starts_with("tps = "))
        .and_then(|l| l.trim_start()["tps = ".len()..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

struct PgBench {
    tps_c2: f64,
    tps_c1: f64,
}

fn pgbench() -> Result<PgBench> {
    let (Some(pgbench), Some(createdb), Some(dropdb)) =
        (pg_tool("pgbench"), pg_tool("createdb"), pg_tool("dropdb"))
    else {
        bail!("pgbench not found (it ships with the postgresql-15 / postgresql-contrib package)");
    };
    let db = format!("pw_pgbench_{}", std::process::id());
    let conn = ["-h", "127.0.0.1", "-U", "postgres"];
    let _ = run_tool(&dropdb, &[&conn[..], &["--if-exists", &db]].concat());
    run_tool(&createdb, &[&conn[..], &[&db]].concat())?;
    let r = (|| {
        let t = Instant::now();
        run_tool(
            &pgbench,
            &[&conn[..], &["-i", "-s", "10", "-q", &db]].concat(),
        )?;
        eprintln!("    pgbench -i -s 10: {:.1} s", t.elapsed().as_secs_f64());
        let out = run_tool(
            &pgbench,
            &[&conn[..], &["-S", "-c", "2", "-j", "2", "-T", "10", &db]].concat(),
        )?;
        let tps_c2 = parse_tps(&out).with_context(|| format!("no tps line in: {out}"))?;
        let out = run_tool(
            &pgbench,
            &[&conn[..], &["-S", "-c", "1", "-j", "1", "-T", "5", &db]].concat(),
        )?;
        let tps_c1 = parse_tps(&out).with_context(|| format!("no tps line in: {out}"))?;
        Ok(PgBench { tps_c2, tps_c1 })
    })();
    if let Err(e) = run_tool(&dropdb, &[&conn[..], &["--if-exists", &db]].concat()) {
        eprintln!("warning: {e}");
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Import.

/// Writes `lines` lines: the history repeated (copy n with `-r{n}` ids), cut at `lines`.
fn write_import_file(history: &[Value], path: &Path, lines: usize) -> Result<(u64, usize)> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut written = 0;
    let mut customers = HashSet::new();
    'outer: for n in 0.. {
        for ev in history {
            if written == lines {
                break 'outer;
            }
            let v = rewrite(ev, n);
            if let Some(c) = v
                .get("customer_id")
                .or_else(|| {
                    v.get("order")
                        .and_then(|o| o.get("customer"))
                        .and_then(|c| c.get("id"))
                })
                .and_then(Value::as_str)
                && !customers.contains(c)
            {
                customers.insert(c.to_string());
            }
            serde_json::to_writer(&mut w, &v)?;
            w.write_all(b"\n")?;
            written += 1;
        }
    }
    w.flush()?;
    Ok((std::fs::metadata(path)?.len(), customers.len()))
}

struct ImportFigures {
    how: String,
    lines: usize,
    secs: f64,
    file_bytes: u64,
    size: Option<Size>,
    note: String,
}

fn binary_has_import(bin: &Path) -> bool {
    Command::new(bin)
        .args(["import", "--help"])
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

async fn bench_import(history: &[Value], dir: &Path, env: &DecideEnv) -> Result<ImportFigures> {
    let lines = env_usize("PW_BENCH_IMPORT_LINES", 1_000_000);
    let file = dir.join("import.ndjson");
    let t = Instant::now();
    let (file_bytes, customers) = write_import_file(history, &file, lines)?;
    eprintln!(
        "    wrote {} lines ({}, {} customers) in {:.1} s",
        lines,
        mib(file_bytes),
        customers,
        t.elapsed().as_secs_f64()
    );
    let db = dir.join("import.db");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_packwell"));
    if binary_has_import(&bin) {
        let (out_path, err_path) = (dir.join("import.out"), dir.join("import.err"));
        let t = Instant::now();
        let mut child = Command::new(&bin)
            .args(["import", "--events"])
            .arg(&file)
            .env("PACKWELL_STORE_URL", &db)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path)?)
            .stderr(std::fs::File::create(&err_path)?)
            .spawn()?;
        let limit = Duration::from_secs(env_usize("PW_BENCH_IMPORT_TIMEOUT", 200) as u64);
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break Some(s);
            }
            if t.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let secs = t.elapsed().as_secs_f64();
        let mut tail = String::new();
        for p in [&out_path, &err_path] {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            // Progress bars redraw with \r: keep what the last redraw left.
            let lines: Vec<&str> = text
                .lines()
                .map(|l| l.rsplit('\r').next().unwrap_or(l))
                .collect();
            for l in lines.iter().rev().take(8).rev() {
                tail.push_str(&format!("      | {l}\n"));
            }
        }
        let note = match status {
            Some(s) if s.success() => {
                format!("`packwell import` exited 0; its output ends:\n{tail}")
            }
            Some(s) => format!("`packwell import` FAILED ({s}); its output ends:\n{tail}"),
            None => format!(
                "`packwell import` did not finish within {} s (killed)\n{tail}",
                limit.as_secs()
            ),
        };
        let size = sqlite_size(&db).await.ok();
        // A run that did not finish: the lines its committed batches reached.
        let done = if status.is_some_and(|s| s.success()) {
            lines
        } else {
            imported_lines(&db).await.unwrap_or(0)
        };
        return Ok(ImportFigures {
            how: format!("binary `packwell import` ({})", bin.display()),
            lines: done,
            secs,
            file_bytes,
            size,
            note,
        });
    }

    // No `import` command in the binary yet: the same work in-process, streaming the file.
    let store = SqliteStore::open(db.to_str().context("temp path")?).await?;
    let source = file.display().to_string();
    let t = Instant::now();
    let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(&file)?);
    let mut items = Vec::with_capacity(IMPORT_BATCH);
    let mut start = 0i64;
    let mut line_no = 0i64;
    let mut rejected = 0;
    let mut next_note = 0.1;
    for line in reader.lines() {
        let line = line?;
        let mut it = item(line.into_bytes(), line_no, false);
        it.key = None;
        items.push(it);
        line_no += 1;
        if items.len() == IMPORT_BATCH {
            let batch = Batch {
                fence: Fence::Import {
                    source: source.clone(),
                    start,
                    end: line_no,
                },
                items: std::mem::take(&mut items),
            };
            rejected += store.apply_batch(&batch, env).await?.rejected;
            start = line_no;
            let done = line_no as f64 / lines as f64;
            if done >= next_note {
                eprintln!(
                    "    import: {:>3.0}% ({} lines, {:.0} lines/s)",
                    done * 100.0,
                    line_no,
                    line_no as f64 / t.elapsed().as_secs_f64()
                );
                next_note += 0.1;
            }
        }
    }
    if !items.is_empty() {
        let batch = Batch {
            fence: Fence::Import {
                source: source.clone(),
                start,
                end: line_no,
            },
            items,
        };
        rejected += store.apply_batch(&batch, env).await?.rejected;
    }
    let secs = t.elapsed().as_secs_f64();
    let position = store.import_position(&source).await?;
    drop(store);
    let size = sqlite_size(&db).await.ok();
    Ok(ImportFigures {
        how: format!(
            "in-process (`packwell import` not in {}: `import --help` failed); SqliteStore, batches of {IMPORT_BATCH}, \
             decide: false, Fence::Import, parse included",
            bin.display()
        ),
        lines: line_no as usize,
        secs,
        file_bytes,
        size,
        note: format!(
            "      import position after the run: line {position}; rejected lines: {rejected}\n"
        ),
    })
}

// ---------------------------------------------------------------------------------------------

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // On a worker thread, as the service's consumer task runs (not on the blocking main thread,
    // which would add a thread hop to every PostgreSQL round trip).
    rt.block_on(async { tokio::spawn(run()).await? })
}

async fn run() -> Result<()> {
    install_statement_counter();
    let began = Instant::now();
    let pg_url = std::env::var("PW_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let trace = env_usize("PW_BENCH_TRACE_BATCHES", 20);
    let env = rules_env()?;

    println!("== Packwell store benchmark (issue 4, Figures) ==");
    println!(
        "machine: {} cores; batches of {}, Fence::None; only apply_batch is timed (parsing is not)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        batch_size()
    );
    let history = load_history()?;
    if history.len() != HISTORY_EVENTS {
        println!(
            "note: the history has {} events (expected {HISTORY_EVENTS})",
            history.len()
        );
    }
    let t = Instant::now();
    let stream = build_stream(&history, env_usize("PW_BENCH_EVENTS", 200_000));
    let parse_secs = t.elapsed().as_secs_f64();
    let mix: Vec<String> = stream.mix.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "stream: {} events = history × {} (interleaved, ids -r{{n}}), {} customers; built and parsed in {:.1} s",
        stream.items.len(),
        stream.copies,
        stream.customers,
        parse_secs
    );
    println!("  mix: {}", mix.join(", "));
    let bad = stream.items.iter().filter(|i| i.event.is_err()).count();
    if bad > 0 {
        println!("  note: {bad} events did not parse (they go to the DLQ)");
    }

    // 1. The reference, before the stores load the machine.
    println!("\n-- pgbench -S reference --");
    let pgb = if env_flag("PW_BENCH_SKIP_PGBENCH") {
        println!("  skipped (PW_BENCH_SKIP_PGBENCH)");
        None
    } else {
        match pgbench() {
            Ok(p) => {
                println!(
                    "  pgbench -S -c 2 -j 2 -T 10 (scale 10): {:.0} tps",
                    p.tps_c2
                );
                println!(
                    "  pgbench -S -c 1 -j 1 -T 5  (scale 10): {:.0} tps",
                    p.tps_c1
                );
                Some(p)
            }
            Err(e) => {
                println!("  pgbench: {e:#}");
                None
            }
        }
    };

    // 2. SQLite.
    println!("\n-- SQLite (file in a temp dir, WAL) --");
    let dir = tempfile::Builder::new()
        .prefix("packwell-bench-")
        .tempdir()?;
    let sqlite = match bench_sqlite(dir.path(), &env, &stream.items, trace).await {
        Ok(f) => Some(f),
        Err(e) => {
            println!("  SQLite FAILED: {e:#}");
            None
        }
    };

    // 3. PostgreSQL.
    println!("\n-- PostgreSQL (own schema at {pg_url}) --");
    let pg = if env_flag("PW_BENCH_SKIP_PG") {
        println!("  skipped (PW_BENCH_SKIP_PG)");
        None
    } else {
        match bench_pg(&pg_url, &env, &stream.items, trace).await {
            Ok(f) => Some(f),
            Err(e) => {
                println!("  PostgreSQL FAILED: {e:#}");
                None
            }
        }
    };
    let stream_events = stream.items.len();
    drop(stream);

    // 4. Import.
    println!("\n-- import of a 1M-event file --");
    let import = if env_flag("PW_BENCH_SKIP_IMPORT") {
        println!("  skipped (PW_BENCH_SKIP_IMPORT)");
        None
    } else {
        match bench_import(&history, dir.path(), &env).await {
            Ok(f) => {
                println!("  how: {}", f.how);
                println!(
                    "  {} lines ({}) in {:.1} s = {:.0} lines/s",
                    f.lines,
                    mib(f.file_bytes),
                    f.secs,
                    f.lines as f64 / f.secs.max(1e-9)
                );
                print!("{}", f.note);
                if let Some(s) = &f.size {
                    print_size("imported SQLite", s);
                }
                Some(f)
            }
            Err(e) => {
                println!("  import FAILED: {e:#}");
                None
            }
        }
    };

    // 5. Summary.
    let tps = pgb.as_ref().map(|p| p.tps_c2);
    let ratio = |r: f64| {
        tps.map(|t| format!("{:.2}×", r / t))
            .unwrap_or_else(|| "-".into())
    };
    let verdict = |r: f64, goal: f64| if r >= goal { "met" } else { "NOT met" };
    println!(
        "\n== Summary (stream of {stream_events} events; batches of {}; load average now {}) ==",
        batch_size(),
        loadavg()
    );
    println!(
        "{:<38} {:>12} {:>10} {:>16}",
        "figure", "value", "÷ pgbench", "goal"
    );
    if let Some(p) = &pgb {
        println!(
            "{:<38} {:>12.0} {:>10} {:>16}",
            "pgbench -S TPS (-c 2 -j 2)", p.tps_c2, "1.00×", ""
        );
        println!(
            "{:<38} {:>12.0} {:>10} {:>16}",
            "pgbench -S TPS (-c 1 -j 1)",
            p.tps_c1,
            ratio(p.tps_c1),
            ""
        );
    } else {
        println!(
            "{:<38} {:>12} {:>10} {:>16}",
            "pgbench -S TPS", "n/a", "", ""
        );
    }
    for (name, goal, figs) in [("SQLite", 30_000.0, &sqlite), ("PostgreSQL", 20_000.0, &pg)] {
        match figs {
            Some(f) => {
                let r = f.decide.rate();
                println!(
                    "{:<38} {:>12.0} {:>10} {:>16}",
                    format!("{name} events/s (decide: true)"),
                    r,
                    ratio(r),
                    format!("≥ {:.0}k: {}", goal / 1000.0, verdict(r, goal))
                );
                println!(
                    "{:<38} {:>12} {:>10} {:>16}",
                    format!("  {name} events applied"),
                    f.decide.events,
                    "",
                    if f.decide.capped {
                        "time cap"
                    } else {
                        "whole stream"
                    }
                );
                println!(
                    "{:<38} {:>12} {:>10} {:>16}",
                    format!("  {name} orders decided"),
                    f.decide.decided,
                    "",
                    ""
                );
                if let Some((rows, events, _)) = &f.decide.breakdown {
                    let n = rows.iter().map(|r| r.1).sum::<u64>() as f64 / *events as f64;
                    println!(
                        "{:<38} {:>12.1} {:>10} {:>16}",
                        format!("  {name} SQL statements per event"),
                        n,
                        "",
                        format!("{:.0} µs/SELECT 1", f.floor_us)
                    );
                }
                if f.import_like.timed_events > 0 {
                    let r = f.import_like.rate();
                    println!(
                        "{:<38} {:>12.0} {:>10} {:>16}",
                        format!("{name} events/s (decide: false)"),
                        r,
                        ratio(r),
                        ""
                    );
                }
                println!(
                    "{:<38} {:>12} {:>10} {:>16}",
                    format!("{name} store size"),
                    mib(f.size.bytes),
                    "",
                    ""
                );
                println!(
                    "{:<38} {:>12.0} {:>10} {:>16}",
                    format!("{name} bytes per customer"),
                    f.size.per_customer(),
                    "",
                    format!("({} customers)", f.size.customers)
                );
            }
            None => println!(
                "{:<38} {:>12} {:>10} {:>16}",
                format!("{name} events/s"),
                "failed/skipped",
                "",
                ""
            ),
        }
    }
    match &import {
        Some(f) => {
            let r = f.lines as f64 / f.secs.max(1e-9);
            println!(
                "{:<38} {:>12.0} {:>10} {:>16}",
                "import lines/s (SQLite, 1M file)",
                r,
                ratio(r),
                if f.how.starts_with("binary") {
                    "binary"
                } else {
                    "in-process"
                }
            );
            if let Some(s) = &f.size {
                println!(
                    "{:<38} {:>12.0} {:>10} {:>16}",
                    "  imported bytes per customer",
                    s.per_customer(),
                    "",
                    format!("({} customers)", s.customers)
                );
            }
        }
        None => println!("{:<38} {:>12}", "import lines/s", "failed/skipped"),
    }
    println!("(whole run: {:.0} s)", began.elapsed().as_secs_f64());
    Ok(())
}
