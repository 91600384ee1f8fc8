//! End-to-end benchmark of the shop webhook route, not criterion: Shopify `orders/create`
//! webhooks posted to `packwell run` (the release binary, a child process, SQLite store,
//! embedded broker), each a new order, signed, and answered 200 only once its event is
//! acknowledged by Kafka; and the same requests posted to a bare axum route in this process
//! that answers 200 without reading them, measured right before, in the same run: what this
//! machine serves for the same requests with no work behind the route.
//!
//! The client is the same for both: `PW_BENCH_CONCURRENCY` tasks (default 64) on a reqwest
//! client, each posting the next body until `PW_BENCH_WEBHOOKS` (default 20 000) are sent.
//! Every answer must be 200 (and, from the service, `produced`), or the bench fails; the
//! events on `orders` are counted afterwards.
//!
//! Environment: `PW_BENCH_WEBHOOKS`, `PW_BENCH_CONCURRENCY`. Run: `cargo bench --bench webhooks`.

#[path = "../tests/service_support/mod.rs"]
mod service_support;
#[allow(dead_code)] // the PostgreSQL helpers: this bench measures the route on SQLite
mod support;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use packwell::connector::signature::sign;
use serde_json::Value;
use service_support::{ServiceProcess, TestBroker, Workdir, read_topic};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::env_usize;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "bench-secret";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// One signed delivery.
struct Delivery {
    id: String,
    body: Vec<u8>,
    signature: String,
}

/// `n` new orders from the fixture: order, customer and line ids made unique.
fn deliveries(n: usize) -> Vec<Delivery> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let template: Value = serde_json::from_slice(
        &std::fs::read(root.join("tests/fixtures/shopify/orders-create.json")).expect("fixture"),
    )
    .expect("JSON fixture");
    (0..n)
        .map(|i| {
            let mut order = template.clone();
            order["id"] = Value::from(7_000_000_000u64 + i as u64);
            order["customer"]["id"] = Value::from(8_000_000_000u64 + i as u64);
            let body = serde_json::to_vec(&order).expect("JSON");
            Delivery {
                id: format!("bench-{i}"),
                signature: sign(SECRET.as_bytes(), &body),
                body,
            }
        })
        .collect()
}

/// What one load run saw.
struct Load {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// Posts every delivery to `url` from `concurrency` tasks; every answer must be 200 and pass
/// `check`.
async fn load(
    url: &str,
    deliveries: Arc<Vec<Delivery>>,
    concurrency: usize,
    check: fn(&[u8]) -> bool,
) -> Result<Load, String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next, deliveries, url) = (
            client.clone(),
            next.clone(),
            deliveries.clone(),
            url.to_string(),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(d) = deliveries.get(i) else {
                    return Ok::<_, String>(latencies);
                };
                let sent = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("X-Shopify-Topic", "orders/create")
                    .header("X-Shopify-Hmac-Sha256", &d.signature)
                    .header("X-Shopify-Webhook-Id", &d.id)
                    .body(d.body.clone())
                    .send()
                    .await
                    .map_err(|e| format!("delivery {}: {e}", d.id))?;
                let status = r.status();
                let body = r.bytes().await.map_err(|e| e.to_string())?;
                if status != reqwest::StatusCode::OK || !check(&body) {
                    return Err(format!(
                        "delivery {} answered {status}: {}",
                        d.id,
                        String::from_utf8_lossy(&body)
                    ));
                }
                latencies.push(sent.elapsed());
            }
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.map_err(|e| e.to_string())??);
    }
    let elapsed = began.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Load {
        per_second: latencies.len() as f64 / elapsed,
        p50: at(0.5),
        p99: at(0.99),
    })
}

fn produced(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| v["status"] == "produced")
}

fn anything(_: &[u8]) -> bool {
    true
}

fn run() -> Result<(), String> {
    let n = env_usize("PW_BENCH_WEBHOOKS", 20_000);
    let concurrency = env_usize("PW_BENCH_CONCURRENCY", 64);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let deliveries = Arc::new(deliveries(n));

    // The baseline: the same requests to a route that answers 200 without reading them.
    let bare = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let app = Router::new().route("/v1/ingest/shopify", post(|| async { StatusCode::OK }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let url = format!("http://{addr}/v1/ingest/shopify");
        let figures = load(&url, deliveries.clone(), concurrency, anything).await;
        server.abort();
        figures
    })?;

    let broker = TestBroker::start();
    let work = Workdir::new();
    let config = work.path().join("packwell.toml");
    std::fs::write(
        &config,
        format!("[connectors.shopify]\nwebhook_secrets = [\"{SECRET}\"]\ncategory = \"vendor\"\n"),
    )
    .map_err(|e| e.to_string())?;
    let service = ServiceProcess::start_with_args(
        work.path(),
        &broker.addr,
        &[],
        &["--config", config.to_str().unwrap_or_default()],
    );
    let url = format!("http://{}/v1/ingest/shopify", service.http);
    let webhooks = runtime.block_on(load(&url, deliveries.clone(), concurrency, produced))?;
    let on_topic = read_topic(&broker.addr, "orders", Duration::from_secs(60), |m| {
        m.len() >= n
    })
    .len();
    if on_topic != n {
        return Err(format!("{on_topic} events on orders for {n} webhooks"));
    }

    println!(
        "webhooks: {n} Shopify orders/create, {concurrency} concurrent, SQLite store, embedded broker"
    );
    println!("| route | per second | p50 | p99 |");
    println!("|---|---|---|---|");
    for (name, l) in [
        ("bare axum route (200, body unread)", &bare),
        ("POST /v1/ingest/shopify", &webhooks),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms |",
            l.per_second,
            l.p50.as_secs_f64() * 1e3,
            l.p99.as_secs_f64() * 1e3
        );
    }
    println!(
        "ratio to the bare route: {:.3}×",
        webhooks.per_second / bare.per_second
    );
    Ok(())
}
