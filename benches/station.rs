//! End-to-end HTTP benchmark of the station API, not criterion: `wrk` against `packwell run`
//! (the release binary, a child process) and against an axum route in this process that
//! serves the very same answers from memory, figures printed as a table.
//!
//! For each store (SQLite in a temporary data folder, then PostgreSQL in a database of its
//! own), a fresh embedded broker and service get `PW_BENCH_ORDERS` first orders (default
//! 10 000), each of which the repository's rules give a welcome note and a coupon; once all are
//! decided, every order's insert list is fetched once, and wrk asks for random orders' inserts
//! with a bearer token limited to their warehouse.
//!
//! The baseline is an axum route `GET /v1/orders/{order_id}/inserts` in this process that
//! answers each order with the bytes and headers the service answered for it, from memory,
//! without checking the token wrk sends (the same script, so the same requests): what this
//! machine serves for the same answers with no work behind the route. It is measured right
//! before each store, so that the ratio is taken under the same load on the machine: the goal
//! is ≥ 0.8× its rate and a p99 under 5 ms at 64 connections. A 17-byte hello world is
//! measured once, for reference.
//!
//! The bench fails when wrk saw error responses or socket errors (the figures would then be
//! those of errors), not when a goal is missed.
//!
//! Needs `wrk` on PATH (`apt-get install -y wrk`). Environment: `PW_BENCH_ORDERS`,
//! `PW_BENCH_SECONDS` (each measured wrk run, default 10), `PW_BENCH_SKIP_PG=1`,
//! `PW_BENCH_PG_URL` (see `support::ScratchDatabase`), `PW_BENCH_CACHE_TTL_MS` (the cached
//! rows' `[http] cache_ttl_ms`, default 2000 as in the service).
//! Run: `cargo bench --bench station`.

#[path = "../tests/service_support/mod.rs"]
mod service_support;
mod support;
#[path = "station_wrk/mod.rs"]
mod wrk;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use service_support::{ServiceProcess, TestBroker, Workdir, metric, produce};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{ScratchDatabase, env_usize, skip_postgres};
use wrk::{WRK_CONNECTIONS, WRK_THREADS, WrkFigures, find_wrk, write_script, wrk_run};

/// The same allocator as the `packwell` binary, so that the baselines do not differ from the
/// service in that respect.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The route measured on the service and on the baseline; every request puts a random
/// decided order's id in place of `{order_id}`.
const ROUTE: &str = "/v1/orders/{order_id}/inserts";
const ORDER_ID_PLACEHOLDER: &str = "{order_id}";
/// Order `i` of the bench is `O-BENCH-<i>`, its customer `C-BENCH-<i>`.
const ORDER_ID_PREFIX: &str = "O-BENCH-";

const TOKEN: &str = "bench-token";
const WAREHOUSE: &str = "WH-BER";

/// Fills caches and connection pools on both sides before anything is measured.
const WARM_UP_SECONDS: usize = 2;

const RATIO_GOAL: f64 = 0.8;
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
    let script = write_script(scripts.path(), "inserts", TOKEN, &lua_path(orders));
    let hello = Baseline::start(
        Router::new().route("/", get(|| async { Json(json!({"hello": "world"})) })),
    );
    let hello_script = write_script(scripts.path(), "hello", TOKEN, "\"/\"");
    wrk_run(&wrk, &hello.url(), &hello_script, WARM_UP_SECONDS)?;
    let mut rows = vec![Row {
        route: "/",
        backend: "hello world (17 bytes)",
        figures: wrk_run(&wrk, &hello.url(), &hello_script, seconds)?,
        baseline_rate: None,
    }];
    let hello_rate = rows[0].figures.requests_per_second;
    for backend in backends() {
        let service = StationService::start(&backend, orders)?;
        let http = &service.process.http;
        let answers = Answers::fetch(http, orders)?;
        println!(
            "{}: answers of {}–{} bytes, headers {}",
            backend.name,
            answers.bodies.values().map(Bytes::len).min().unwrap_or(0),
            answers.bodies.values().map(Bytes::len).max().unwrap_or(0),
            answers.header_names()
        );
        let same_bytes = Baseline::same_bytes(answers);
        let service_url = format!("http://{http}/");
        wrk_run(&wrk, &same_bytes.url(), &script, WARM_UP_SECONDS)?;
        wrk_run(&wrk, &service_url, &script, WARM_UP_SECONDS)?;
        let baseline = wrk_run(&wrk, &same_bytes.url(), &script, seconds)?;
        let measured = wrk_run(&wrk, &service_url, &script, seconds)?;
        rows.push(Row {
            route: ROUTE,
            backend: "same bytes from memory",
            figures: baseline.clone(),
            baseline_rate: None,
        });
        rows.push(Row {
            route: ROUTE,
            backend: backend.name,
            figures: measured,
            baseline_rate: Some(baseline.requests_per_second),
        });
    }
    print_table(&rows, seconds, hello_rate);
    check_no_errors(&rows)
}

/// The Lua expression for a request's path, with a random order id in every request.
/// Rust's `{:?}` of these ASCII strings is also a valid Lua string literal.
fn lua_path(orders: usize) -> String {
    let (before, after) = ROUTE
        .split_once(ORDER_ID_PLACEHOLDER)
        .expect("the route has the order id");
    format!(
        "{before:?} .. {ORDER_ID_PREFIX:?} .. math.random(0, {last}) .. {after:?}",
        last = orders.saturating_sub(1)
    )
}

/// A store to run the service on, with or without the insert-list cache; PostgreSQL's
/// database lives as long as this.
struct Backend {
    name: &'static str,
    database: Option<ScratchDatabase>,
    /// `[http] cache_ttl_ms`: the default (or `PW_BENCH_CACHE_TTL_MS`), or 0 so that every
    /// request reads the store.
    cache_ttl_ms: String,
}

fn backends() -> Vec<Backend> {
    // The documented default; another value shows what the cache's reloads of the store cost.
    let cached_ttl = std::env::var("PW_BENCH_CACHE_TTL_MS").unwrap_or_else(|_| "2000".into());
    let mut backends = vec![
        Backend {
            name: "SQLite",
            database: None,
            cache_ttl_ms: cached_ttl.clone(),
        },
        Backend {
            name: "SQLite, no cache",
            database: None,
            cache_ttl_ms: "0".into(),
        },
    ];
    if skip_postgres() {
        println!("PostgreSQL skipped (PW_BENCH_SKIP_PG)");
    } else {
        backends.push(Backend {
            name: "PostgreSQL",
            database: Some(ScratchDatabase::create("pw_bench_station_cached")),
            cache_ttl_ms: cached_ttl.clone(),
        });
        backends.push(Backend {
            name: "PostgreSQL, no cache",
            database: Some(ScratchDatabase::create("pw_bench_station_direct")),
            cache_ttl_ms: "0".into(),
        });
    }
    backends
}

/// An axum server in this process: the baselines. Two worker threads, like the service's
/// runtime on this two-core machine.
struct Baseline {
    addr: SocketAddr,
    /// Serving until dropped.
    _runtime: tokio::runtime::Runtime,
}

impl Baseline {
    fn start(app: Router) -> Baseline {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the baseline's runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a free loopback port for the baseline");
        let addr = listener.local_addr().expect("the baseline's address");
        runtime.spawn(async move { axum::serve(listener, app).await });
        Baseline {
            addr,
            _runtime: runtime,
        }
    }

    /// `GET /v1/orders/{order_id}/inserts` answering what the service answered, from memory.
    /// The token is sent by wrk as to the service but not checked.
    fn same_bytes(answers: Answers) -> Baseline {
        async fn answer(
            State(answers): State<Arc<Answers>>,
            UrlPath(order_id): UrlPath<String>,
        ) -> Response {
            let Some(body) = answers.bodies.get(&order_id) else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let mut response = body.clone().into_response();
            let headers = response.headers_mut();
            for (name, value) in &answers.headers {
                headers.insert(name.clone(), value.clone());
            }
            response
        }
        Baseline::start(
            Router::new()
                .route(ROUTE, get(answer))
                .with_state(Arc::new(answers)),
        )
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// What the service answered for every order: the body, and the headers but those hyper
/// writes itself (`date`, `content-length`).
struct Answers {
    headers: Vec<(HeaderName, HeaderValue)>,
    bodies: HashMap<String, Bytes>,
}

impl Answers {
    /// One request per order before wrk's thousands: a route this build does not serve, or a
    /// token it does not take, shows up here with its answer rather than as a count of errors.
    fn fetch(http: &str, orders: usize) -> Result<Answers, String> {
        packwell::email::provider::ensure_tls_provider();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("an HTTP client: {e}"))?;
        let mut headers = Vec::new();
        let mut bodies = HashMap::with_capacity(orders);
        for i in 0..orders {
            let order_id = format!("{ORDER_ID_PREFIX}{i}");
            let path = ROUTE.replace(ORDER_ID_PLACEHOLDER, &order_id);
            let response = client
                .get(format!("http://{http}{path}"))
                .bearer_auth(TOKEN)
                .send()
                .map_err(|e| format!("GET {path}: {e}"))?;
            let status = response.status();
            if !status.is_success() {
                let body = response.text().unwrap_or_default();
                return Err(format!(
                    "GET {path} answered {status} {}; is the route in this build of packwell?",
                    body.trim()
                ));
            }
            if headers.is_empty() {
                headers = response
                    .headers()
                    .iter()
                    .filter(|(name, _)| ![header::DATE, header::CONTENT_LENGTH].contains(name))
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect();
            }
            let body = response.bytes().map_err(|e| format!("GET {path}: {e}"))?;
            bodies.insert(order_id, body);
        }
        Ok(Answers { headers, bodies })
    }

    fn header_names(&self) -> String {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        names.join(", ")
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
            ("PACKWELL_HTTP_CACHE_TTL_MS", backend.cache_ttl_ms.as_str()),
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

/// A line of the table: a measured run and, for the service, the rate of the baseline run
/// before it.
struct Row {
    route: &'static str,
    backend: &'static str,
    figures: WrkFigures,
    baseline_rate: Option<f64>,
}

fn print_table(rows: &[Row], seconds: usize, hello_rate: f64) {
    let route_width = rows.iter().map(|r| r.route.len()).max().unwrap_or(0) + 4;
    let backend_width = rows.iter().map(|r| r.backend.len()).max().unwrap_or(0) + 1;
    let p99_goal = format!("p99 < {} ms", P99_GOAL.as_millis());
    let line = |cells: [&str; 8]| {
        let [route, backend, rate, p50, p99, ratio, hello, p99_met] = cells;
        let text = format!(
            "{route:<route_width$} {backend:<backend_width$} {rate:>10} {p50:>9} {p99:>9} {ratio:>12} {hello:>8} {p99_met:>11}"
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
        "÷ same bytes",
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
            &format!("{:.2}×", f.requests_per_second / hello_rate),
            p99_met,
        ]);
    }
    println!(
        "goals: ≥ {RATIO_GOAL:.1}× the same bytes from memory, measured just before; {p99_goal} at {WRK_CONNECTIONS} connections (wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{seconds}s); hello world for reference"
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
