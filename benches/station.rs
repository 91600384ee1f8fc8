//! End-to-end HTTP benchmark of the station API, not criterion: `wrk` against `packwell run`
//! (the release binary, a child process) and against an axum "hello world" in this process,
//! figures printed as a table.
//!
//! For each store (SQLite in a temporary data folder, then PostgreSQL in a database of its
//! own), a fresh embedded broker and service get `PW_BENCH_ORDERS` first orders (default
//! 10 000), each of which the repository's rules give a welcome note and a coupon; once all are
//! decided, wrk asks for random orders' inserts with a bearer token limited to their
//! warehouse. The hello-world server is measured right before each store, with the same wrk
//! script, so that the ratio between the two is taken under the same load on the machine:
//! the goal is ≥ 0.6× the hello-world rate and a p99 under 5 ms at 64 connections.
//!
//! The bench fails when wrk saw error responses or socket errors (the figures would then be
//! those of errors), not when a goal is missed.
//!
//! Needs `wrk` on PATH (`apt-get install -y wrk`). Environment: `PW_BENCH_ORDERS`,
//! `PW_BENCH_SECONDS` (each measured wrk run, default 10), `PW_BENCH_SKIP_PG=1`,
//! `PW_BENCH_PG_URL` (see `support::ScratchDatabase`).
//! Run: `cargo bench --bench station`.

#[path = "../tests/service_support/mod.rs"]
mod service_support;
mod support;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use service_support::{ServiceProcess, TestBroker, Workdir, metric, produce};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};
use support::{ScratchDatabase, env_usize, skip_postgres};

/// The same allocator as the `packwell` binary, so that the hello-world baseline does not
/// differ from the service in that respect.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The route measured on the service; every request puts a random decided order's id in
/// place of `{order_id}`.
const SERVICE_ROUTE: &str = "/v1/orders/{order_id}/inserts";
const ORDER_ID_PLACEHOLDER: &str = "{order_id}";
/// Order `i` of the bench is `O-BENCH-<i>`, its customer `C-BENCH-<i>`.
const ORDER_ID_PREFIX: &str = "O-BENCH-";

const TOKEN: &str = "bench-token";
const WAREHOUSE: &str = "WH-BER";

const WRK_THREADS: u32 = 2;
const WRK_CONNECTIONS: u32 = 64;
/// Fills caches and connection pools on both sides before anything is measured.
const WARM_UP_SECONDS: usize = 2;

const RATIO_GOAL: f64 = 0.6;
const P99_GOAL: Duration = Duration::from_millis(5);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let wrk = find_wrk()?;
    let orders = env_usize("PW_BENCH_ORDERS", 10_000);
    let seconds = env_usize("PW_BENCH_SECONDS", 10);
    let scripts = tempfile::tempdir().expect("a folder for the wrk scripts");
    println!("== Packwell station HTTP benchmark ==");
    println!(
        "{orders} decided orders per store; wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{seconds}s --latency, after {WARM_UP_SECONDS} s of warm-up"
    );
    let hello = HelloWorld::start();
    let hello_target = Target {
        http: hello.addr.to_string(),
        route: "/",
        orders: 0,
    };
    let hello_script = write_script(scripts.path(), "hello", &hello_target);
    let mut rows = Vec::new();
    for backend in backends() {
        let service = StationService::start(&backend, orders)?;
        let target = Target {
            http: service.process.http.clone(),
            route: SERVICE_ROUTE,
            orders,
        };
        target.probe()?;
        let script = write_script(scripts.path(), backend.name, &target);
        wrk_run(&wrk, &hello_target, &hello_script, WARM_UP_SECONDS)?;
        wrk_run(&wrk, &target, &script, WARM_UP_SECONDS)?;
        let baseline = wrk_run(&wrk, &hello_target, &hello_script, seconds)?;
        let measured = wrk_run(&wrk, &target, &script, seconds)?;
        rows.push(Row::baseline(baseline.clone()));
        rows.push(Row::service(backend.name, measured, &baseline));
    }
    print_table(&rows, seconds);
    check_no_errors(&rows)
}

/// wrk's path, or how to install it.
fn find_wrk() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("wrk"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| "wrk is not on PATH; install it with `apt-get install -y wrk`".to_string())
}

/// A store to run the service on, with or without the insert-list cache; PostgreSQL's
/// database lives as long as this.
struct Backend {
    name: &'static str,
    database: Option<ScratchDatabase>,
    /// `[http] cache_ttl_ms`: the default, or 0 so that every request reads the store.
    cache_ttl_ms: &'static str,
}

fn backends() -> Vec<Backend> {
    let mut backends = vec![
        Backend {
            name: "SQLite",
            database: None,
            cache_ttl_ms: "2000",
        },
        Backend {
            name: "SQLite, no cache",
            database: None,
            cache_ttl_ms: "0",
        },
    ];
    if skip_postgres() {
        println!("PostgreSQL skipped (PW_BENCH_SKIP_PG)");
    } else {
        backends.push(Backend {
            name: "PostgreSQL",
            database: Some(ScratchDatabase::create("pw_bench_station_cached")),
            cache_ttl_ms: "2000",
        });
        backends.push(Backend {
            name: "PostgreSQL, no cache",
            database: Some(ScratchDatabase::create("pw_bench_station_direct")),
            cache_ttl_ms: "0",
        });
    }
    backends
}

/// The axum "hello world" baseline: what this machine serves with no work behind a route.
/// Two worker threads, like the service's runtime on this two-core machine.
struct HelloWorld {
    addr: SocketAddr,
    /// Serving until dropped.
    _runtime: tokio::runtime::Runtime,
}

impl HelloWorld {
    fn start() -> HelloWorld {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the hello-world runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a free loopback port for hello world");
        let addr = listener.local_addr().expect("hello world's address");
        let app = Router::new().route("/", get(|| async { Json(json!({"hello": "world"})) }));
        runtime.spawn(async move { axum::serve(listener, app).await });
        HelloWorld {
            addr,
            _runtime: runtime,
        }
    }
}

/// `packwell run` on one store with its own embedded broker, every order fed and decided.
struct StationService {
    /// Declared first so that it is dropped (killed) before its folder and broker go.
    process: ServiceProcess,
    _workdir: Workdir,
    _broker: TestBroker,
}

impl StationService {
    fn start(backend: &Backend, orders: usize) -> Result<StationService, String> {
        let broker = TestBroker::start();
        let workdir = Workdir::new();
        let config = workdir.path().join("station-bench.toml");
        std::fs::write(&config, config_toml()).expect("the service's config file");
        let config = config.display().to_string();
        let mut env = vec![
            ("PACKWELL_LOG", "warn"),
            ("PACKWELL_HTTP_CACHE_TTL_MS", backend.cache_ttl_ms),
        ];
        if let Some(database) = &backend.database {
            env.push(("PACKWELL_STORE_URL", database.url.as_str()));
        }
        let process = ServiceProcess::start_with_args(
            workdir.path(),
            &broker.addr,
            &env,
            &["--config", &config],
        );
        let started = Instant::now();
        produce(&broker.addr, &order_placed_events(orders));
        wait_until_decided(&process, orders)?;
        println!(
            "{}: {orders} orders fed and decided in {:.1} s",
            backend.name,
            started.elapsed().as_secs_f64()
        );
        check_note_and_coupon_each(&process, orders)?;
        Ok(StationService {
            process,
            _workdir: workdir,
            _broker: broker,
        })
    }
}

/// One station token, limited to the orders' warehouse as a real station's would be.
fn config_toml() -> String {
    format!(
        "[[http.tokens]]\nname = \"bench\"\ntoken = \"{TOKEN}\"\nwarehouses = [\"{WAREHOUSE}\"]\n"
    )
}

/// `n` first orders in the warehouse, made from the example first book order: the rules give
/// each a welcome note and a coupon (and tea while the sachets last). Keyed by customer.
fn order_placed_events(n: usize) -> Vec<(Option<String>, Vec<u8>)> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/orders/first-book-order.json");
    let text = std::fs::read_to_string(&file).expect("the example first book order");
    let example: Value = serde_json::from_str(&text).expect("the example order is JSON");
    (0..n)
        .map(|i| {
            let order_id = format!("{ORDER_ID_PREFIX}{i}");
            let customer_id = format!("C-BENCH-{i}");
            let mut event = example.clone();
            event["event_id"] = json!(format!("ev-{order_id}-placed"));
            event["order"]["id"] = json!(order_id);
            event["order"]["customer"]["id"] = json!(customer_id);
            event["order"]["warehouse"] = json!(WAREHOUSE);
            (Some(customer_id), event.to_string().into_bytes())
        })
        .collect()
}

/// Polls the service's own count of decided orders: the same for both stores, and cheap.
fn wait_until_decided(process: &ServiceProcess, orders: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, metrics) = process.get("/metrics");
        if metric(&metrics, "packwell_orders_decided_total") >= orders as f64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{orders} orders not decided within 600 s; the service's log:\n{}",
                process.log()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The bench is meant to measure decisions with a note and a coupon in them (the card and
/// the coupon code are what a station prints); other rules would make other figures.
fn check_note_and_coupon_each(process: &ServiceProcess, orders: usize) -> Result<(), String> {
    let (_, metrics) = process.get("/metrics");
    for insert in ["welcome-note", "welcome-coupon"] {
        let given = inserts_given(&metrics, insert);
        if given < orders as f64 {
            return Err(format!(
                "the rules gave {insert} to {given} of {orders} orders; the bench expects every order to get it"
            ));
        }
    }
    Ok(())
}

/// `packwell_inserts_given_total` of one insert id.
fn inserts_given(metrics: &str, insert: &str) -> f64 {
    let series = format!("packwell_inserts_given_total{{insert=\"{insert}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// What wrk asks for: a route on a server, with an order id in it when the route has the
/// placeholder.
struct Target {
    http: String,
    route: &'static str,
    /// How many orders, numbered from 0, the ids are drawn from.
    orders: usize,
}

impl Target {
    fn url(&self) -> String {
        format!("http://{}/", self.http)
    }

    /// One request before wrk's thousands: a route this build does not serve, or a token it
    /// does not take, shows up here with its answer rather than as a count of errors.
    fn probe(&self) -> Result<(), String> {
        let path = self
            .route
            .replace(ORDER_ID_PLACEHOLDER, &format!("{ORDER_ID_PREFIX}0"));
        packwell::email::provider::ensure_tls_provider();
        let response = reqwest::blocking::Client::new()
            .get(format!("http://{}{path}", self.http))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(10))
            .send()
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().unwrap_or_default();
        Err(format!(
            "GET {path} answered {status} {}; is the route in this build of packwell?",
            body.trim()
        ))
    }

    /// The Lua expression for a request's path, with a random order id in every request.
    /// Rust's `{:?}` of these ASCII strings is also a valid Lua string literal.
    fn lua_path(&self) -> String {
        match self.route.split_once(ORDER_ID_PLACEHOLDER) {
            Some((before, after)) => format!(
                "{before:?} .. {ORDER_ID_PREFIX:?} .. math.random(0, {last}) .. {after:?}",
                last = self.orders.saturating_sub(1)
            ),
            None => format!("{:?}", self.route),
        }
    }
}

/// A wrk script for `target`. The hello-world baseline runs a script of the same shape (same
/// header, a `request` function per request) so that wrk spends the same on both sides of the
/// ratio. Each wrk thread draws ids from a seed of its own, the same in every run.
fn write_script(folder: &Path, name: &str, target: &Target) -> PathBuf {
    let script = format!(
        r#"wrk.headers["Authorization"] = "Bearer {TOKEN}"

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("seed", threads)
end

function init(args)
  math.randomseed(seed)
end

function request()
  return wrk.format(nil, {path})
end
"#,
        path = target.lua_path()
    );
    let file = folder.join(format!("{name}.lua"));
    std::fs::write(&file, script).expect("the wrk script");
    file
}

/// What one wrk run reported.
#[derive(Clone, Debug)]
struct WrkFigures {
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
    /// Responses with a status of 400 or more.
    error_responses: u64,
    /// Connect, read, write errors and timeouts.
    socket_errors: u64,
}

fn wrk_run(
    wrk: &Path,
    target: &Target,
    script: &Path,
    seconds: usize,
) -> Result<WrkFigures, String> {
    let output = Command::new(wrk)
        .arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{WRK_CONNECTIONS}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(target.url())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", wrk.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed ({}) against {}:\n{text}{}",
            output.status,
            target.url(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse_wrk(&text).ok_or_else(|| format!("wrk's output was not as expected:\n{text}"))
}

/// Reads wrk's report. Its error lines are printed only when there were errors.
fn parse_wrk(text: &str) -> Option<WrkFigures> {
    let mut requests_per_second = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut error_responses = 0;
    let mut socket_errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some(rate) = line.strip_prefix("Requests/sec:") {
            requests_per_second = rate.trim().parse().ok();
        } else if let Some(latency) = line.strip_prefix("50%") {
            p50 = parse_wrk_duration(latency.trim());
        } else if let Some(latency) = line.strip_prefix("99%") {
            p99 = parse_wrk_duration(latency.trim());
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            error_responses = count.trim().parse().ok()?;
        } else if let Some(counts) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            socket_errors = counts
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        }
    }
    Some(WrkFigures {
        requests_per_second: requests_per_second?,
        p50: p50?,
        p99: p99?,
        error_responses,
        socket_errors,
    })
}

/// wrk's latencies: "812.00us", "1.53ms", "2.01s", "1.00m".
fn parse_wrk_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

/// A line of the table: a measured run and, for the service, the baseline run before it.
struct Row {
    route: &'static str,
    backend: &'static str,
    figures: WrkFigures,
    baseline_rate: Option<f64>,
}

impl Row {
    fn baseline(figures: WrkFigures) -> Row {
        Row {
            route: "/",
            backend: "hello world",
            figures,
            baseline_rate: None,
        }
    }

    fn service(backend: &'static str, figures: WrkFigures, baseline: &WrkFigures) -> Row {
        Row {
            route: SERVICE_ROUTE,
            backend,
            figures,
            baseline_rate: Some(baseline.requests_per_second),
        }
    }
}

fn print_table(rows: &[Row], seconds: usize) {
    let route_width = rows.iter().map(|r| r.route.len()).max().unwrap_or(0) + 4;
    let p99_goal = format!("p99 < {} ms", P99_GOAL.as_millis());
    let line = |cells: [&str; 7]| {
        let [route, backend, rate, p50, p99, ratio, p99_met] = cells;
        let text = format!(
            "{route:<route_width$} {backend:<21} {rate:>12} {p50:>10} {p99:>10} {ratio:>9} {p99_met:>11}"
        );
        println!("{}", text.trim_end());
    };
    println!();
    line([
        "route",
        "backend",
        "requests/s",
        "p50",
        "p99",
        "÷ hello",
        &p99_goal,
    ]);
    for row in rows {
        let f = &row.figures;
        let (ratio, p99_met) = match row.baseline_rate {
            Some(base) => (
                format!("{:.2}×", f.requests_per_second / base),
                if f.p99 < P99_GOAL { "yes" } else { "no" },
            ),
            None => (String::new(), ""),
        };
        line([
            &format!("GET {}", row.route),
            row.backend,
            &format!("{:.0}", f.requests_per_second),
            &milliseconds(f.p50),
            &milliseconds(f.p99),
            &ratio,
            p99_met,
        ]);
    }
    println!(
        "goals: ≥ {RATIO_GOAL:.1}× the hello-world requests/s measured just before; {p99_goal} at {WRK_CONNECTIONS} connections (wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{seconds}s)"
    );
}

fn milliseconds(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Figures of error responses are no figures of the route: fail, naming the run.
fn check_no_errors(rows: &[Row]) -> Result<(), String> {
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.figures.error_responses > 0 || r.figures.socket_errors > 0)
        .map(|r| {
            format!(
                "GET {} on {}: {} error responses, {} socket errors",
                r.route, r.backend, r.figures.error_responses, r.figures.socket_errors
            )
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("wrk measured errors:\n  {}", failed.join("\n  ")))
    }
}
