//! The effect report on a big store, the figures of issue 8: how long `packwell report` takes
//! for 1M customers and about 5M events on SQLite and PostgreSQL (goal: under 10 s), and the
//! memory it needs. Run: `cargo bench --bench report`.
//!
//! The store is filled through the service's own write path (`Store::apply_batch`, deciding
//! with the example rules in `rules/`), from a seeded generator: customers' first orders spread
//! over a year, shipped and delivered, about half of them ordering again (some a third time),
//! some answering the NPS survey, some cancelling. Filling takes many minutes, so the stores are
//! kept (`target/bench-data/report-<N>.db`, PostgreSQL database `packwell_bench_report_<N>`)
//! and reused by later runs; `PW_BENCH_REBUILD=1` fills them again.
//!
//! Each report is timed three times (the figure is the median), next to a baseline measured in
//! the same run on the same store: one full scan of the orders and of the exposures (a
//! `COUNT(*)` each), the least any report that reads every customer's outcome must do. Peak
//! memory (VmHWM) is measured in a child process that opens the store and runs one report.
//!
//! Knobs: `PW_BENCH_CUSTOMERS` (default 1 000 000), `PW_BENCH_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`, the server to create the database on),
//! `PW_BENCH_SKIP_PG=1`, `PW_BENCH_REBUILD=1`.

// The report bench keeps its database (filling it takes minutes): no scratch database here.
#[allow(dead_code)]
mod support;

use packwell::coupon::CouponKey;
use packwell::engine::Shop;
use packwell::event::event_from_value;
use packwell::report::{self, ReportOptions};
use packwell::rules::{RuleSet, load_rules};
use packwell::store::{Batch, BatchItem, DecideEnv, Fence, Store};
use serde_json::{Value, json};
use sqlx::Row;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The allocator of the `packwell` binary, so the figures are the service's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GOAL_SECS: f64 = 10.0;
/// Customers generated (and their events sorted) at once; events per `apply_batch`.
const BLOCK: usize = 5_000;
const BATCH: usize = 1_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// SplitMix64: the same seed, the same history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const CATEGORIES: [(&str, &str, &str); 4] = [
    ("books", "BK-0001", "18.00"),
    ("tea", "TE-0101", "14.50"),
    ("fragrance", "FR-0201", "68.00"),
    ("home", "HM-0301", "14.00"),
];

fn time(minutes: i64) -> String {
    let start = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").expect("a time");
    (start + chrono::Duration::minutes(minutes))
        .to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One customer's events, each with its time in minutes.
fn customer_events(rng: &mut Rng, i: usize, out: &mut Vec<(i64, Value)>) {
    let c = format!("C{i}");
    let (category, sku, price) = CATEGORIES[rng.below(4) as usize];
    let mut at = rng.below(365 * 24 * 60) as i64;
    let mut orders = 1;
    if rng.unit() < 0.5 {
        orders += 1;
        if rng.unit() < 0.3 {
            orders += 1;
        }
    }
    for n in 1..=orders {
        let order = format!("{c}-{n}");
        let quantity = 1 + rng.below(2);
        out.push((at, json!({"event_id": format!("p-{order}"), "type": "order.placed", "occurred_at": time(at),
            "order": {"id": order, "customer": {"id": c, "email": format!("{c}@example.com"), "first_name": "Kim"},
                "currency": "EUR", "total": format!("{}.00", quantity * 20),
                "items": [{"sku": sku, "name": category, "category": category, "quantity": quantity, "unit_price": price}],
                "shipping": {"country": "DE"}, "warehouse": "WH-BER"}})));
        if rng.unit() < 0.03 {
            out.push((
                at + 60,
                json!({"event_id": format!("c-{order}"), "type": "order.cancelled",
                "occurred_at": time(at + 60), "order_id": order, "customer_id": c}),
            ));
        } else {
            let shipped = at + 24 * 60;
            let delivered = shipped + (1 + rng.below(4) as i64) * 24 * 60;
            out.push((
                shipped,
                json!({"event_id": format!("s-{order}"), "type": "order.shipped",
                "occurred_at": time(shipped), "order_id": order, "customer_id": c}),
            ));
            out.push((delivered, json!({"event_id": format!("d-{order}"), "type": "order.delivered",
                "occurred_at": time(delivered), "order_id": order, "customer_id": c, "delivered_at": time(delivered)})));
            if rng.unit() < 0.15 {
                let answered = delivered + 3 * 24 * 60;
                out.push((
                    answered,
                    json!({"event_id": format!("f-{order}"), "type": "customer.feedback",
                    "occurred_at": time(answered), "customer_id": c, "nps": rng.below(11)}),
                ));
            }
        }
        at += (10 + rng.below(110) as i64) * 24 * 60;
    }
}

fn rules() -> RuleSet {
    let out = load_rules(&root().join("rules"), &root().join("templates"));
    out.rules.expect("the example rules load")
}

/// Fills the store with `customers` customers; returns the events applied.
async fn fill(store: &dyn Store, env: &DecideEnv, customers: usize) -> u64 {
    let started = Instant::now();
    let mut rng = Rng(42);
    let mut applied = 0u64;
    let mut events: Vec<(i64, Value)> = Vec::new();
    for block in (0..customers).step_by(BLOCK) {
        events.clear();
        for i in block..(block + BLOCK).min(customers) {
            customer_events(&mut rng, i, &mut events);
        }
        // One block's customers in time order, as one partition would bring them.
        events.sort_by_key(|(at, _)| *at);
        for chunk in events.chunks(BATCH) {
            let items = chunk
                .iter()
                .enumerate()
                .map(|(n, (_, v))| BatchItem {
                    offset: n as i64,
                    key: None,
                    value: Vec::new(),
                    event: event_from_value(v),
                    decide: true,
                })
                .collect();
            store
                .apply_batch(
                    &Batch {
                        fence: Fence::None,
                        items,
                    },
                    env,
                )
                .await
                .expect("a batch");
            applied += chunk.len() as u64;
        }
        if (block / BLOCK).is_multiple_of(20) {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "  {} customers, {applied} events, {:.0} events/s",
                block + BLOCK,
                applied as f64 / secs
            );
        }
    }
    applied
}

/// The baseline: one full count of the orders and of the exposures.
async fn baseline(store: &Backend) -> Duration {
    let started = Instant::now();
    for sql in [
        "SELECT COUNT(*) FROM orders",
        "SELECT COUNT(*) FROM exposures",
    ] {
        let _: i64 = store.scalar(sql).await;
    }
    started.elapsed()
}

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

struct Backend {
    name: &'static str,
    url: String,
    store: Arc<dyn Store>,
    pool: Pool,
}

impl Backend {
    async fn scalar(&self, sql: &str) -> i64 {
        match &self.pool {
            Pool::Sqlite(p) => sqlx::query(sql)
                .fetch_one(p)
                .await
                .and_then(|r| r.try_get(0)),
            Pool::Pg(p) => sqlx::query(sql)
                .fetch_one(p)
                .await
                .and_then(|r| r.try_get(0)),
        }
        .expect("a count")
    }
}

fn urls(customers: usize) -> Vec<(&'static str, String)> {
    let sqlite = root()
        .join(format!("target/bench-data/report-{customers}.db"))
        .display()
        .to_string();
    let mut out = vec![("SQLite", sqlite)];
    if !support::skip_postgres() {
        out.push((
            "PostgreSQL",
            support::database_url(&format!("packwell_bench_report_{customers}")),
        ));
    }
    out
}

async fn open(name: &'static str, url: &str, rebuild: bool) -> Backend {
    if name == "SQLite" {
        if rebuild {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{url}{suffix}"));
            }
        }
        let store = Arc::new(
            packwell::store::SqliteStore::open(url)
                .await
                .expect("SQLite"),
        );
        let pool = sqlx::SqlitePool::connect(&format!("sqlite:{url}"))
            .await
            .expect("SQLite");
        Backend {
            name,
            url: url.into(),
            store,
            pool: Pool::Sqlite(pool),
        }
    } else {
        let db = url.rsplit('/').next().unwrap_or_default().to_string();
        let admin = sqlx::PgPool::connect(&support::admin_url())
            .await
            .expect("PostgreSQL");
        if rebuild {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&admin)
                .await
                .expect("drop");
        }
        let exists: bool =
            sqlx::query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&db)
                .fetch_one(&admin)
                .await
                .and_then(|r| r.try_get(0))
                .expect("pg_database");
        if !exists {
            sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&admin)
                .await
                .expect("create");
        }
        let store = Arc::new(
            packwell::store::PgStore::connect(url)
                .await
                .expect("PostgreSQL"),
        );
        let pool = sqlx::PgPool::connect(url).await.expect("PostgreSQL");
        Backend {
            name,
            url: url.into(),
            store,
            pool: Pool::Pg(pool),
        }
    }
}

/// Peak resident memory of this process so far, in MiB (Linux: VmHWM).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The child's part: open the store, run one report, print peak memory before and after.
fn child(url: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rules = rules();
    runtime.block_on(async {
        let store = packwell::store::open(url).await.expect("store");
        let before = peak_rss_mib().unwrap_or(0.0);
        let r = report::build(&*store, Some(&rules), ReportOptions::default())
            .await
            .expect("report");
        let json = serde_json::to_string(&r).expect("json");
        println!(
            "peak {:.1} {:.1} {}",
            before,
            peak_rss_mib().unwrap_or(0.0),
            json.len()
        );
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(args.get(i + 1).map(String::as_str).unwrap_or_default());
        return;
    }
    let customers = support::env_usize("PW_BENCH_CUSTOMERS", 1_000_000);
    let rebuild = std::env::var("PW_BENCH_REBUILD").is_ok_and(|v| v == "1");
    std::fs::create_dir_all(root().join("target/bench-data")).expect("target/bench-data");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let env = DecideEnv {
        rules: Arc::new(rules()),
        key: CouponKey::from_bytes(vec![7; 32]),
        shop: Shop::default(),
    };
    let mut rows: Vec<String> = Vec::new();
    for (name, url) in urls(customers) {
        let backend = runtime.block_on(open(name, &url, rebuild));
        let orders = runtime.block_on(backend.scalar("SELECT COUNT(*) FROM orders"));
        if orders == 0 {
            eprintln!(
                "{name}: filling the store with {customers} customers (once; kept for later runs)"
            );
            let started = Instant::now();
            let events = runtime.block_on(fill(&*backend.store, &env, customers));
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{name}: {events} events applied in {secs:.0} s ({:.0}/s)",
                events as f64 / secs
            );
            if let Pool::Pg(p) = &backend.pool {
                // Fresh statistics and visibility map, as autovacuum leaves them after a while.
                runtime.block_on(async {
                    sqlx::query("VACUUM ANALYZE")
                        .execute(p)
                        .await
                        .expect("vacuum")
                });
            }
        }
        let count = |sql: &str| runtime.block_on(backend.scalar(sql));
        let events = count("SELECT COUNT(*) FROM processed_events");
        let customers_stored = count("SELECT COUNT(*) FROM profiles");
        let exposures = count("SELECT COUNT(*) FROM exposures");
        let jobs = count("SELECT COUNT(*) FROM email_jobs");
        eprintln!(
            "{name}: {customers_stored} customers, {events} events, {} orders, {exposures} exposures, {jobs} e-mail jobs",
            count("SELECT COUNT(*) FROM orders")
        );
        let mut base = Vec::new();
        let mut took = Vec::new();
        let mut size = 0;
        for _ in 0..3 {
            base.push(runtime.block_on(baseline(&backend)).as_secs_f64());
            let started = Instant::now();
            let r = runtime
                .block_on(report::build(
                    &*backend.store,
                    Some(&env.rules),
                    ReportOptions::default(),
                ))
                .expect("report");
            took.push(started.elapsed().as_secs_f64());
            size = r.rules.len();
        }
        base.sort_by(f64::total_cmp);
        took.sort_by(f64::total_cmp);
        let (base, took) = (base[1], took[1]);
        let exe = std::env::current_exe().expect("the bench binary");
        let out = std::process::Command::new(exe)
            .args(["--child", &backend.url])
            .output()
            .expect("the child");
        let peak = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("peak ").map(str::to_string))
            .unwrap_or_else(|| format!("? ({})", String::from_utf8_lossy(&out.stderr)));
        let mut parts = peak.split_whitespace();
        let (open_mib, peak_mib) = (parts.next().unwrap_or("?"), parts.next().unwrap_or("?"));
        eprintln!(
            "{name}: report of {size} rules in {took:.2} s (median of 3), baseline scan {base:.2} s, peak RSS {peak_mib} MiB (after opening the store: {open_mib} MiB)"
        );
        rows.push(format!(
            "| {} | {customers_stored} | {events} | {took:.2} s | {base:.2} s | {:.1}× | {peak_mib} MiB | {} |",
            backend.name,
            took / base,
            if took < GOAL_SECS { "met" } else { "not met" }
        ));
    }
    println!(
        "\n| store | customers | events | report (median of 3) | baseline: scan orders + exposures | ratio | peak RSS of a report process | goal < {GOAL_SECS:.0} s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
