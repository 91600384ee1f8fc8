//! E-mails delivered per second by the sender to a local HTTP provider, not criterion: one run,
//! figures printed as a table.
//!
//! Set-up, for each store (SQLite in a temporary folder, then PostgreSQL in a scratch database
//! unless `PW_BENCH_SKIP_PG` is set): rules with one follow-up on `order.placed` (the example
//! `order_thanks` template, due a minute after the order), and `PW_BENCH_EMAILS` first orders
//! (default 5 000, one customer each) applied in batches as the consumer would, which schedules
//! one e-mail job per order. The clock (a `ManualClock`) is then set to when they are all due,
//! and `Worker::drain` is timed until every job is sent through `packwell::email::provider::Http`
//! to an axum server in this process that answers 200 at once; concurrency is the default
//! `[email] concurrency` (8). Second, as many new orders are scheduled and the service's own
//! loop, `Worker::run`, is timed until its metrics count them all sent. Third, to tell the
//! store's share of the sender's time from the rest, as many jobs again go through only the
//! store calls the sender makes, in its batches (a claim, the facts of the claimed jobs in one
//! go, hand-overs and ends a slot's worth at a time), with neither rendering nor HTTP; and
//! fourth, for comparison, as many through the same calls one job at a time from 8 tasks (a
//! claim of one, its facts, its hand-over, its end), as the sender made them before it
//! batched.
//!
//! For comparison, in the same run and against the same server: as many bare `reqwest` POSTs
//! of the body the sender posted (one of them, taken from the server), with its headers, from 8
//! tasks on one client. The ratio between the two rates is the sender's own overhead: claims,
//! the checks, rendering, the hand-over and the end recorded in the store.
//!
//! The bench fails (exit 1) when a job did not end `sent`, or when the server did not receive
//! exactly one request per job, not when a goal is missed.
//!
//! Environment: `PW_BENCH_EMAILS`, `PW_BENCH_SKIP_PG`, `PW_BENCH_PG_URL`.
//! Run: `cargo bench --bench email_delivery`.

#[allow(dead_code)]
mod support;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use packwell::config::{Config, EmailConfig, EmailProvider};
use packwell::coupon::CouponKey;
use packwell::email::provider::Http;
use packwell::email::{ManualClock, Worker, WorkerSettings};
use packwell::engine::Shop;
use packwell::event::event_from_value;
use packwell::metrics::Metrics;
use packwell::store::emails::{BeginSend, EmailEnd, EmailJob, HandOver, SendPlan, address_hash};
use packwell::store::{Batch, BatchItem, DecideEnv, Fence, PgStore, SqliteStore, Store};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{ScratchDatabase, env_usize, skip_postgres};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One follow-up, due a minute after the order (the shortest `after` there is), with nothing
/// in `[email]` that could hold an e-mail back: no frequency cap, no quiet hours.
const RULES: &str = r#"
[[followup]]
id = "thanks"
on = "order.placed"
when = "true"
template = "order_thanks"
after = "1m"
"#;

const PLACED_AT: &str = "2026-11-20T10:00:00Z";
const BATCH: usize = 500;
/// Bare requests sent before the measured ones, to open the connections and warm both sides.
const WARM_UP_REQUESTS: usize = 500;

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
    let n = env_usize("PW_BENCH_EMAILS", 5_000);
    let concurrency = EmailConfig::default().concurrency;
    // Made outside any runtime: it runs its statements on one of its own.
    let database = (!skip_postgres()).then(|| ScratchDatabase::create("pw_bench_email"));
    // The client side (the sender, or the bare POSTs) and the provider each get a runtime of
    // two worker threads, as the service has on this two-core machine.
    let server = LocalProvider::start();
    let runtime = runtime("the sender's runtime");
    println!("== Packwell e-mail delivery benchmark ==");
    println!(
        "{n} e-mails (template order_thanks) to a local HTTP provider answering 200, concurrency {concurrency}"
    );
    runtime.block_on(async {
        let dir = tempfile::tempdir().map_err(|e| format!("a temporary folder: {e}"))?;
        let env = decide_env(dir.path())?;
        let config = Config::load(
            None,
            [
                ("PACKWELL_EMAIL_PROVIDER".to_string(), "http".to_string()),
                ("PACKWELL_EMAIL_HTTP_URL".to_string(), server.url()),
            ],
        )
        .map_err(|e| e.to_string())?;

        let path = dir.path().join("packwell.db").display().to_string();
        let sqlite: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&path)
                .await
                .map_err(|e| format!("the SQLite store: {e}"))?,
        );
        let mut figures = vec![("SQLite", measure(sqlite, &env, &config, &server, n).await?)];
        if let Some(database) = &database {
            let pg: Arc<dyn Store> = Arc::new(
                PgStore::connect(&database.url)
                    .await
                    .map_err(|e| format!("the PostgreSQL store: {e}"))?,
            );
            figures.push(("PostgreSQL", measure(pg, &env, &config, &server, n).await?));
        } else {
            println!("PostgreSQL skipped (PW_BENCH_SKIP_PG)");
        }

        let request = server.first_request().ok_or("the server kept no request")?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.email.timeout_ms))
            .build()
            .map_err(|e| format!("the HTTP client: {e}"))?;
        let url = server.url();
        bare_posts(&client, &url, &request, WARM_UP_REQUESTS, concurrency).await?;
        let before = server.received();
        let started = Instant::now();
        bare_posts(&client, &url, &request, n, concurrency).await?;
        let bare = started.elapsed();
        if server.received() - before != n {
            return Err(format!(
                "the server received {} bare requests, {n} expected",
                server.received() - before
            ));
        }
        print_table(n, concurrency, &figures, bare, request.body.len());
        Ok(())
    })
}

/// The sender's times on one store: `Worker::drain`, `Worker::run`, its store calls alone in
/// its batches, and the same calls one job at a time.
async fn measure(
    store: Arc<dyn Store>,
    env: &DecideEnv,
    config: &Config,
    server: &LocalProvider,
    n: usize,
) -> Result<[Duration; 4], String> {
    let started = Instant::now();
    schedule(&*store, env, "O-DRAIN", n).await?;
    println!(
        "set-up: {n} orders applied, {n} e-mail jobs scheduled in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let settings = WorkerSettings::from_config(config);
    let concurrency = settings.concurrency;
    let lease = i64::try_from(settings.lease().as_secs()).unwrap_or(60);
    let EmailProvider::Http(api) = &config.settings().email.provider else {
        return Err("the benchmark's configuration names no HTTP provider".into());
    };
    let provider = Http::new(api, settings.timeout)?;
    let due: DateTime<Utc> = t(PLACED_AT) + ChronoDuration::minutes(1);
    let metrics = Metrics::new().email;
    let worker = Arc::new(Worker::new(
        store.clone(),
        Arc::new(arc_swap::ArcSwap::from_pointee(env.clone())),
        Arc::new(provider),
        settings,
        metrics.clone(),
        Arc::new(ManualClock::new(due)),
    ));

    let before = server.received();
    let started = Instant::now();
    let worked = worker
        .drain()
        .await
        .map_err(|e| format!("the sender's store failed: {e}"))?;
    let drain = started.elapsed();
    let received = server.received() - before;
    if worked != n || received != n {
        return Err(format!(
            "drain worked on {worked} jobs and the server received {received} requests; {n} expected"
        ));
    }
    check_all_sent(&*store, n).await?;

    schedule(&*store, env, "O-RUN", n).await?;
    let sent = || metrics.sent.with_label_values(&["thanks"]).get() as usize;
    let stop = CancellationToken::new();
    let before = server.received();
    let started = Instant::now();
    let running = tokio::spawn(worker.clone().run(stop.clone()));
    let deadline = started + Duration::from_secs(600);
    while sent() < 2 * n {
        if Instant::now() > deadline {
            return Err(format!(
                "Worker::run sent {} of {n} in 600 s",
                sent().saturating_sub(n)
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let looped = started.elapsed();
    stop.cancel();
    running
        .await
        .map_err(|e| format!("Worker::run failed: {e}"))?;
    if server.received() - before != n {
        return Err(format!(
            "the server received {} requests from Worker::run, {n} expected",
            server.received() - before
        ));
    }
    check_all_sent(&*store, 2 * n).await?;

    let request = server.first_request().ok_or("the server kept no request")?;
    let message = String::from_utf8_lossy(&request.body).into_owned();
    schedule(&*store, env, "O-STORE", n).await?;
    let started = Instant::now();
    let worked = store_batched(&store, due, lease, &message, concurrency).await?;
    let batched = started.elapsed();
    if worked != n {
        return Err(format!(
            "the batched store-only run worked on {worked} jobs, {n} expected"
        ));
    }
    check_all_sent(&*store, 3 * n).await?;

    schedule(&*store, env, "O-ONE", n).await?;
    let started = Instant::now();
    let worked = store_one_by_one(&store, due, lease, &message, concurrency).await?;
    let one_by_one = started.elapsed();
    if worked != n {
        return Err(format!(
            "the one-by-one store-only run worked on {worked} jobs, {n} expected"
        ));
    }
    check_all_sent(&*store, 4 * n).await?;
    Ok([drain, looped, batched, one_by_one])
}

fn runtime(what: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("a timestamp")
        .with_timezone(&Utc)
}

/// The rules above in `dir/rules`, with the repository's templates.
fn decide_env(dir: &Path) -> Result<DecideEnv, String> {
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).map_err(|e| format!("the rules folder: {e}"))?;
    std::fs::write(rules_dir.join("followups.toml"), RULES)
        .map_err(|e| format!("the rules file: {e}"))?;
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let out = packwell::rules::load_rules(&rules_dir, &templates);
    let findings: Vec<String> = out.findings.iter().map(|f| f.to_string()).collect();
    let rules = out
        .rules
        .ok_or_else(|| format!("the bench's rules did not load: {findings:?}"))?;
    Ok(DecideEnv {
        rules: Arc::new(rules),
        key: CouponKey::from_bytes(vec![9; 32]),
        shop: Shop::default(),
    })
}

/// `n` first orders `<prefix>-<i>`, each of its own customer, applied `BATCH` at a time.
async fn schedule(
    store: &dyn Store,
    env: &DecideEnv,
    prefix: &str,
    n: usize,
) -> Result<(), String> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/orders/first-book-order.json");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let example: Value = serde_json::from_str(&text).map_err(|e| format!("the example: {e}"))?;
    let mut offset = 0;
    for start in (0..n).step_by(BATCH) {
        let items = (start..n.min(start + BATCH))
            .map(|i| {
                let order = format!("{prefix}-{i}");
                let customer = format!("C-{order}");
                let mut event = example.clone();
                event["event_id"] = json!(format!("ev-{order}-placed"));
                event["occurred_at"] = json!(PLACED_AT);
                event["order"]["id"] = json!(order);
                event["order"]["customer"]["id"] = json!(customer);
                event["order"]["customer"]["email"] = json!(format!("{customer}@mail.example"));
                offset += 1;
                BatchItem {
                    offset,
                    key: Some(customer.into_bytes()),
                    value: event.to_string().into_bytes(),
                    event: event_from_value(&event),
                    decide: true,
                }
            })
            .collect();
        let batch = Batch {
            fence: Fence::None,
            items,
        };
        store
            .apply_batch(&batch, env)
            .await
            .map_err(|e| format!("applying the orders: {e}"))?;
    }
    Ok(())
}

/// The store holds `n` jobs, every one `sent`; fails naming the first ones that are not.
async fn check_all_sent(store: &dyn Store, n: usize) -> Result<(), String> {
    let jobs = store
        .email_jobs(None, None, (n + 100) as i64)
        .await
        .map_err(|e| format!("reading the jobs: {e}"))?;
    let not_sent: Vec<String> = jobs
        .iter()
        .filter(|j| j.state != "sent")
        .take(5)
        .map(|j| {
            format!(
                "{}/{}: {} {}",
                j.order_id,
                j.followup_id,
                j.state,
                j.detail.as_deref().or(j.reason.as_deref()).unwrap_or("")
            )
        })
        .collect();
    if jobs.len() != n || !not_sent.is_empty() {
        return Err(format!(
            "{} jobs found for {n} orders; not sent: {not_sent:?}",
            jobs.len()
        ));
    }
    Ok(())
}

/// The store's part of sending, in the sender's batches, with neither rendering nor HTTP: a
/// claim of `4 × slots` jobs, their facts in one go, then hand-overs and ends `slots` at a
/// time; returns how many jobs were worked on.
async fn store_batched(
    store: &Arc<dyn Store>,
    now: DateTime<Utc>,
    lease: i64,
    message: &str,
    slots: usize,
) -> Result<usize, String> {
    let at = now.timestamp();
    let mut worked = 0;
    loop {
        let jobs = store
            .claim_due_emails(at, at + lease, (slots * 4) as i64)
            .await
            .map_err(|e| format!("claim: {e}"))?;
        if jobs.is_empty() {
            return Ok(worked);
        }
        worked += jobs.len();
        let facts = store
            .email_facts_of(&jobs)
            .await
            .map_err(|e| format!("facts: {e}"))?;
        let hashes: Vec<String> = facts
            .into_iter()
            .map(|f| address_hash(&f.profile.and_then(|p| p.email).unwrap_or_default()))
            .collect();
        for (jobs, hashes) in jobs.chunks(slots).zip(hashes.chunks(slots)) {
            let hand_overs: Vec<HandOver<'_>> = jobs
                .iter()
                .zip(hashes)
                .map(|(job, to_hash)| HandOver::First {
                    job,
                    plan: plan(message, to_hash, now, job),
                })
                .collect();
            let answers = store
                .begin_sends(&hand_overs)
                .await
                .map_err(|e| format!("hand-over: {e}"))?;
            if let Some(other) = answers.iter().find(|a| **a != BeginSend::Go) {
                return Err(format!("hand-over: {other:?}"));
            }
            let end = sent_end();
            let ends: Vec<(&EmailJob, &EmailEnd)> = jobs.iter().map(|j| (j, &end)).collect();
            let held = store
                .finish_emails(&ends, at)
                .await
                .map_err(|e| format!("end: {e}"))?;
            if !held.iter().all(|h| *h) {
                return Err("a lease was lost".into());
            }
        }
    }
}

/// The hand-over of a job as the sender plans it, its claim's lease kept (the job's copy stays
/// valid for its end).
fn plan<'a>(
    message: &'a str,
    to_hash: &'a str,
    now: DateTime<Utc>,
    job: &EmailJob,
) -> SendPlan<'a> {
    SendPlan {
        coupons: &[],
        message,
        to_hash,
        now,
        frequency: None,
        lease_until: job.lease,
    }
}

fn sent_end() -> EmailEnd {
    EmailEnd::Sent {
        detail: "stored only".into(),
    }
}

/// The store's part of sending one job at a time, as the sender made it before it batched:
/// `tasks` tasks each claim one due job, read its facts, hand it over with `message` and end
/// it `sent`; returns how many jobs they worked on.
async fn store_one_by_one(
    store: &Arc<dyn Store>,
    now: DateTime<Utc>,
    lease: i64,
    message: &str,
    tasks: usize,
) -> Result<usize, String> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (store, message) = (store.clone(), message.to_string());
        set.spawn(async move {
            let at = now.timestamp();
            let mut worked = 0;
            loop {
                let jobs = store
                    .claim_due_emails(at, at + lease, 1)
                    .await
                    .map_err(|e| format!("claim: {e}"))?;
                let Some(job) = jobs.into_iter().next() else {
                    return Ok::<usize, String>(worked);
                };
                worked += 1;
                let facts = store
                    .email_facts(&job)
                    .await
                    .map_err(|e| format!("facts: {e}"))?;
                let email = facts.profile.and_then(|p| p.email).unwrap_or_default();
                let to_hash = address_hash(&email);
                match store
                    .begin_send(&job, &plan(&message, &to_hash, now, &job))
                    .await
                {
                    Ok(BeginSend::Go) => {}
                    Ok(other) => return Err(format!("hand-over of {}: {other:?}", job.id())),
                    Err(e) => return Err(format!("hand-over: {e}")),
                }
                if !store
                    .finish_email(&job, &sent_end(), at)
                    .await
                    .map_err(|e| format!("end: {e}"))?
                {
                    return Err(format!("{}: the lease was lost", job.id()));
                }
            }
        });
    }
    let mut total = 0;
    while let Some(done) = set.join_next().await {
        total += done.map_err(|e| format!("a store task: {e}"))??;
    }
    Ok(total)
}

/// A request as the provider received it: the body and the headers a sender sets.
#[derive(Clone)]
struct Request {
    body: Bytes,
    idempotency_key: String,
    content_type: String,
}

/// `n` POSTs of the request from `tasks` tasks sharing one client, each answer read to its end
/// as the sender reads it.
async fn bare_posts(
    client: &reqwest::Client,
    url: &str,
    request: &Request,
    n: usize,
    tasks: usize,
) -> Result<(), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (client, url, request, next) = (
            client.clone(),
            url.to_string(),
            request.clone(),
            next.clone(),
        );
        set.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let response = client
                    .post(&url)
                    .header("Idempotency-Key", &request.idempotency_key)
                    .header("Content-Type", &request.content_type)
                    .body(request.body.clone())
                    .send()
                    .await
                    .map_err(|e| format!("POST {url}: {e}"))?;
                let status = response.status();
                let _ = response.text().await;
                if !status.is_success() {
                    return Err(format!("POST {url} answered {status}"));
                }
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = set.join_next().await {
        done.map_err(|e| format!("a POST task: {e}"))??;
    }
    Ok(())
}

/// The provider: counts requests, keeps the first, answers 200 with a message id at once.
/// On a runtime of its own, served until dropped.
struct LocalProvider {
    addr: SocketAddr,
    seen: Arc<Seen>,
    _runtime: tokio::runtime::Runtime,
}

#[derive(Default)]
struct Seen {
    count: AtomicUsize,
    first: Mutex<Option<Request>>,
}

async fn accept(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> &'static str {
    if seen.count.fetch_add(1, Ordering::Relaxed) == 0 {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        *seen.first.lock().unwrap_or_else(|e| e.into_inner()) = Some(Request {
            body,
            idempotency_key: header("idempotency-key"),
            content_type: header("content-type"),
        });
    }
    "{\"id\":\"msg-1\"}"
}

impl LocalProvider {
    fn start() -> LocalProvider {
        let runtime = runtime("the provider's runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a free loopback port for the provider");
        let addr = listener.local_addr().expect("the provider's address");
        let seen = Arc::new(Seen::default());
        let app = Router::new()
            .route("/send", post(accept))
            .with_state(seen.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        LocalProvider {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/send", self.addr)
    }

    fn received(&self) -> usize {
        self.seen.count.load(Ordering::Relaxed)
    }

    fn first_request(&self) -> Option<Request> {
        self.seen
            .first
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn print_table(
    n: usize,
    concurrency: usize,
    figures: &[(&str, [Duration; 4])],
    bare: Duration,
    body: usize,
) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let line = |what: &str, secs: &str, rate: &str, ratio: &str| {
        let text = format!("{what:<58} {secs:>9} {rate:>11} {ratio:>9}");
        println!("{}", text.trim_end());
    };
    let row = |what: &str, d: Duration| {
        line(
            what,
            &format!("{:.2} s", d.as_secs_f64()),
            &format!("{:.0}", rate(d)),
            &format!("{:.2}×", rate(d) / rate(bare)),
        );
    };
    println!();
    line("", "time", "e-mails/s", "÷ bare");
    for (store, [drain, run, batched, one_by_one]) in figures {
        row(&format!("{store}: Worker::drain → Http provider"), *drain);
        row(&format!("{store}: Worker::run → Http provider"), *run);
        row(
            "  its store calls alone, batched (no rendering, no HTTP)",
            *batched,
        );
        row("  the same calls one job at a time, 8 tasks", *one_by_one);
    }
    line(
        &format!("bare reqwest POST, {concurrency} tasks"),
        &format!("{:.2} s", bare.as_secs_f64()),
        &format!("{:.0}", rate(bare)),
        "",
    );
    println!(
        "{n} e-mails each, concurrency {concurrency}; the same {body}-byte JSON body (the first the sender posted), the same local server; every job ended `sent`"
    );
}
