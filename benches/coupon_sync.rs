//! End-to-end benchmark of coupon sync (docs/REFERENCE.md §8), not criterion: how many issued
//! codes a second `packwell run` creates in a shop's checkout, against a fake Shopify Admin
//! GraphQL server in this process (axum; `codeDiscountNodeByCode` answers null until the code
//! is created, `discountCodeBasicCreate` creates it; never a 429, a throttle or an error; a
//! budget that never asks for a wait).
//!
//! Protocol, in one run:
//! 1. Baseline: `PW_BENCH_CODES` (default 2 000) look-up + create pairs, the same GraphQL
//!    bodies the worker sends (`create_variables` of the library), posted one after the other
//!    by a bare reqwest client to the fake server: what this machine does for those calls with
//!    no Packwell behind them.
//! 2. Measured: as many `coupon.issued` messages (checked against
//!    schemas/coupon-event.schema.json; distinct codes `TY-` + 12 Crockford base32 characters,
//!    all-digit customer ids) produced to `coupons` on the embedded broker, then `packwell
//!    run` started (the release binary, a child process, SQLite store) with
//!    `[connectors.shopify] sync_coupons = true` and `max_rps = 100000`, so the pacer does not
//!    bound it.
//!
//! Both rates are taken the same way, from the fake server's clock: codes from the first create
//! it sees to the last, over that span. The bench fails when a code is not created exactly once,
//! when a call is retried, or when `/metrics` does not count every code `created`; not when a
//! figure is low.
//!
//! What bounds the figure: the worker handles one message at a time (the consumer of
//! src/connector/sync/consumer.rs), and for each one makes its steps in sequence: a store read
//! of the code's sync row, the look-up, the create, the store write of the outcome (SQLite, WAL,
//! no fsync per commit), an asynchronous Kafka commit, the next `recv`. Nothing overlaps, so the
//! rate is one over the sum of those steps. The second table splits the time between codes from
//! the fake server's side: `look-up → create` is the look-up's answer handled and the create
//! sent; `create → next look-up` adds the store write, the commit, the next message and the
//! store read. Against a shop this fast the largest step is neither the calls nor the store but
//! the pacer (`Pacer::slot`, src/connector/api/mod.rs): it waits with `tokio::time::sleep_until`
//! even when the slot is already due, and tokio's timer rounds a deadline up to its next
//! millisecond tick, so each call waits about a millisecond whatever `max_rps` says (the last
//! row measures that wait alone, for slots already due): about 2.2 ms of the 2.9 to 3.3 ms a
//! code took on a 2-core machine (300 to 345 codes a second over several runs). The rest,
//! under 1 ms, is the two calls (0.1 to 0.3 ms for the bare client) and the store read and
//! write, the commit and `recv`. `perf record -g` on the service during a run: about a quarter
//! of one core busy, most of it thread hand-offs (tokio's workers, sqlx's SQLite thread,
//! librdkafka's threads) rather than work; the service waits, it does not compute. Skipping the
//! sleep when the slot is due would, by that arithmetic, raise the ceiling here to the order of
//! 1 000 codes a second; a real shop's round trips (tens of milliseconds or more) and its
//! query-cost budget bound it far below either.
//!
//! Environment: `PW_BENCH_CODES`. Run: `cargo bench --bench coupon_sync`.

#[path = "../tests/service_support/mod.rs"]
mod service_support;
#[allow(dead_code)] // the PostgreSQL helpers: this bench runs on SQLite
mod support;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{SecondsFormat, Utc};
use packwell::connector::api::shopify::create_variables;
use packwell::connector::api::{NewCoupon, Pacer};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use service_support::{ServiceProcess, TestBroker, Workdir, metric, produce_to};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::env_usize;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOKEN: &str = "shpat_bench";

/// The worker's query texts (src/connector/api/shopify.rs).
const FIND_CODE: &str = "query codeDiscountNodeByCode($code: String!) { codeDiscountNodeByCode(code: $code) { id codeDiscount { ... on DiscountCodeBasic { status } } } }";
const CREATE_CODE: &str = "mutation discountCodeBasicCreate($basicCodeDiscount: DiscountCodeBasicInput!) { discountCodeBasicCreate(basicCodeDiscount: $basicCodeDiscount) { codeDiscountNode { id } userErrors { field code message } } }";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A call the fake shop answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Lookup,
    Create,
}

/// What the fake shop holds and saw.
#[derive(Default)]
struct Shop {
    /// Create requests per code, and the created discount's number.
    creates: HashMap<String, (usize, u64)>,
    /// Every call in the order it arrived, with when.
    calls: Vec<(Call, Instant)>,
    /// Requests that were not a look-up or a create, or lacked the token.
    strange: usize,
}

type Shared = Arc<Mutex<Shop>>;

fn budget() -> Value {
    json!({ "cost": { "requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": { "maximumAvailable": 2000.0, "currentlyAvailable": 1990, "restoreRate": 100.0 } } })
}

async fn serve(
    State(shop): State<Shared>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let at = Instant::now();
    let request: Value = serde_json::from_str(&body).unwrap_or_default();
    let query = request["query"].as_str().unwrap_or_default();
    let vars = &request["variables"];
    let mut s = shop.lock().unwrap_or_else(|p| p.into_inner());
    if headers
        .get("X-Shopify-Access-Token")
        .is_none_or(|t| t != TOKEN)
    {
        s.strange += 1;
        return (
            StatusCode::UNAUTHORIZED,
            "{\"errors\":\"Invalid API key or access token\"}".into(),
        );
    }
    let data = if query.contains("codeDiscountNodeByCode") {
        s.calls.push((Call::Lookup, at));
        let code = vars["code"].as_str().unwrap_or_default();
        match s.creates.get(code) {
            Some((_, id)) => json!({ "codeDiscountNodeByCode": {
                "id": format!("gid://shopify/DiscountCodeNode/{id}"),
                "codeDiscount": { "status": "ACTIVE" } } }),
            None => json!({ "codeDiscountNodeByCode": null }),
        }
    } else if query.contains("discountCodeBasicCreate") {
        s.calls.push((Call::Create, at));
        let code = vars["basicCodeDiscount"]["code"]
            .as_str()
            .unwrap_or_default();
        let next = s.creates.len() as u64 + 1;
        let entry = s.creates.entry(code.to_string()).or_insert((0, next));
        entry.0 += 1;
        let id = entry.1;
        json!({ "discountCodeBasicCreate": {
            "codeDiscountNode": { "id": format!("gid://shopify/DiscountCodeNode/{id}") },
            "userErrors": [] } })
    } else {
        s.strange += 1;
        return (
            StatusCode::BAD_REQUEST,
            "{\"errors\":\"unknown query\"}".into(),
        );
    };
    drop(s);
    (
        StatusCode::OK,
        json!({ "data": data, "extensions": budget() }).to_string(),
    )
}

/// One code to issue: its `coupons` message and the coupon the worker makes of it.
struct Code {
    code: String,
    message: Vec<u8>,
    coupon: NewCoupon,
}

/// Crockford's base32, as the codes use it.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `prefix-` + 12 characters: `i` spread over the 60 bits by an odd multiplier (a bijection
/// modulo 2^60), so the codes are distinct and do not look sequential.
fn code_of(prefix: &str, i: usize) -> String {
    let mut v = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) & ((1u64 << 60) - 1);
    let mut chars = [b'0'; 12];
    for c in chars.iter_mut().rev() {
        *c = CROCKFORD[(v & 31) as usize];
        v >>= 5;
    }
    format!("{prefix}-{}", String::from_utf8_lossy(&chars))
}

fn codes(prefix: &str, n: usize) -> Vec<Code> {
    let now = Utc::now();
    let occurred_at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let expires_on = (now + chrono::Duration::days(30)).date_naive();
    (0..n)
        .map(|i| {
            let code = code_of(prefix, i);
            let customer_id = (6_000_000_000u64 + i as u64).to_string();
            let message = json!({
                "schema_version": 1, "type": "coupon.issued", "code": code, "version": 1,
                "order_id": format!("O-{prefix}-{i}"), "customer_id": customer_id,
                "rule_id": "welcome", "insert_id": "welcome-coupon",
                "amount": "10.00", "currency": "EUR", "min_order": "40.00",
                "expires_on": expires_on.format("%Y-%m-%d").to_string(),
                "occurred_at": occurred_at,
            });
            Code {
                coupon: NewCoupon {
                    code: code.clone(),
                    rule_id: "welcome".into(),
                    customer_id,
                    amount: Decimal::new(1000, 2),
                    min_order: Some(Decimal::new(4000, 2)),
                    expires_on,
                    starts_at: occurred_at.clone(),
                    email: None,
                },
                message: message.to_string().into_bytes(),
                code,
            }
        })
        .collect()
}

/// Every message valid against the published schema, or the first that is not.
fn check_schema(codes: &[Code]) -> Result<(), String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/coupon-event.schema.json");
    let schema: Value = serde_json::from_slice(&std::fs::read(&path).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| e.to_string())?;
    for c in codes {
        let v: Value = serde_json::from_slice(&c.message).map_err(|e| e.to_string())?;
        if let Some(e) = validator.iter_errors(&v).next() {
            return Err(format!("{}: not a valid coupon event: {e}", c.code));
        }
    }
    Ok(())
}

/// What the fake shop saw of one run, taken out of it (the shop is empty again after).
struct Seen {
    creates: HashMap<String, (usize, u64)>,
    calls: Vec<(Call, Instant)>,
    strange: usize,
}

fn take(shop: &Shared) -> Seen {
    let mut s = shop.lock().unwrap_or_else(|p| p.into_inner());
    let s = std::mem::take(&mut *s);
    Seen {
        creates: s.creates,
        calls: s.calls,
        strange: s.strange,
    }
}

/// Every code created exactly once, nothing else asked.
fn check_once(seen: &Seen, codes: &[Code], what: &str) -> Result<(), String> {
    if seen.strange > 0 {
        return Err(format!(
            "{what}: {} requests the fake shop did not know",
            seen.strange
        ));
    }
    if seen.creates.len() != codes.len() {
        return Err(format!(
            "{what}: {} codes created of {}",
            seen.creates.len(),
            codes.len()
        ));
    }
    for c in codes {
        match seen.creates.get(&c.code) {
            Some((1, _)) => {}
            Some((n, _)) => return Err(format!("{what}: {} created {n} times", c.code)),
            None => return Err(format!("{what}: {} never created", c.code)),
        }
    }
    Ok(())
}

/// The figures of one run, from the fake server's clock.
struct Figures {
    per_second: f64,
    span: Duration,
    /// Median gap from a look-up to the create after it.
    lookup_to_create: Duration,
    /// Median gap from a create to the next look-up.
    create_to_lookup: Duration,
}

fn figures(seen: &Seen) -> Result<Figures, String> {
    let creates: Vec<Instant> = seen
        .calls
        .iter()
        .filter(|(c, _)| *c == Call::Create)
        .map(|(_, at)| *at)
        .collect();
    let (Some(first), Some(last)) = (creates.first(), creates.last()) else {
        return Err("no create".into());
    };
    let span = *last - *first;
    let mut l2c = Vec::new();
    let mut c2l = Vec::new();
    for w in seen.calls.windows(2) {
        let gap = w[1].1 - w[0].1;
        match (w[0].0, w[1].0) {
            (Call::Lookup, Call::Create) => l2c.push(gap),
            (Call::Create, Call::Lookup) => c2l.push(gap),
            other => return Err(format!("calls out of turn: {other:?} (a retry?)")),
        }
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    Ok(Figures {
        per_second: (creates.len().saturating_sub(1)) as f64 / span.as_secs_f64().max(1e-9),
        span,
        lookup_to_create: median(l2c),
        create_to_lookup: median(c2l),
    })
}

/// The bare client: each code's look-up then create, one after the other.
async fn baseline(url: &str, codes: &[Code]) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let call = |body: Value| {
        let client = client.clone();
        async move {
            let r = client
                .post(url)
                .header("X-Shopify-Access-Token", TOKEN)
                .json(&body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status();
            let text = r.text().await.map_err(|e| e.to_string())?;
            let reply: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
            if status != reqwest::StatusCode::OK {
                return Err(format!("HTTP {status}: {text}"));
            }
            Ok::<_, String>(reply)
        }
    };
    for c in codes {
        let found = call(json!({ "query": FIND_CODE, "variables": { "code": c.code } })).await?;
        if !found["data"]["codeDiscountNodeByCode"].is_null() {
            return Err(format!("baseline: {} found before its create", c.code));
        }
        let created =
            call(json!({ "query": CREATE_CODE, "variables": create_variables(&c.coupon) })).await?;
        if !created["data"]["discountCodeBasicCreate"]["codeDiscountNode"]["id"].is_string() {
            return Err(format!("baseline: {} not created: {created}", c.code));
        }
    }
    Ok(())
}

/// The mean wait of the worker's pacer at `max_rps` for `calls` calls, each made 0.2 ms after
/// the one before (about a call's time here, so every slot is already due), on a runtime like
/// the service's.
fn pacer_wait(max_rps: u32, calls: u32) -> Result<Duration, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    Ok(runtime.block_on(async {
        let pacer = Pacer::new(max_rps);
        let mut waited = Duration::ZERO;
        for _ in 0..calls {
            // Blocking on purpose: the stand-in for a call must not itself wait on the timer.
            std::thread::sleep(Duration::from_micros(200));
            let began = Instant::now();
            pacer.slot().await;
            waited += began.elapsed();
        }
        waited / calls.max(1)
    }))
}

/// Polls `check` every 20 ms until it holds; Err after `timeout`.
fn wait(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !check()? {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn run() -> Result<(), String> {
    let n = env_usize("PW_BENCH_CODES", 2_000).max(2);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let broker = TestBroker::start();
    let shop: Shared = Arc::default();
    let addr = {
        let listener = broker
            .runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let app = axum::Router::new().fallback(serve).with_state(shop.clone());
        broker
            .runtime
            .spawn(async move { axum::serve(listener, app).await });
        addr
    };
    let url = format!("http://{addr}/admin/api/2025-10/graphql.json");

    // The baseline, on a runtime of its own (the server runs on the broker's).
    let bare_codes = codes("BL", n);
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    client_runtime.block_on(baseline(&url, &bare_codes))?;
    let bare_seen = take(&shop);
    check_once(&bare_seen, &bare_codes, "baseline")?;
    let bare = figures(&bare_seen)?;

    // The measured run: every message on the topic before the service starts.
    let issued = codes("TY", n);
    check_schema(&issued)?;
    let messages: Vec<(Option<String>, Vec<u8>)> = issued
        .iter()
        .map(|c| (Some(c.code.clone()), c.message.clone()))
        .collect();
    produce_to(&broker.addr, "coupons", &messages);
    let work = Workdir::new();
    let config = work.path().join("packwell.toml");
    std::fs::write(
        &config,
        format!(
            "[connectors.shopify]\nwebhook_secrets = [\"bench\"]\nsync_coupons = true\n\
             admin_url = \"{url}\"\naccess_token = \"{TOKEN}\"\nmax_rps = 100000\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut service = ServiceProcess::start_with_args(
        work.path(),
        &broker.addr,
        &[],
        &["--config", config.to_str().unwrap_or_default()],
    );
    let timeout = Duration::from_secs(60) + Duration::from_millis(50) * n as u32;
    wait("every code created", timeout, || {
        if let Ok(Some(status)) = service.child.try_wait() {
            return Err(format!(
                "packwell run ended ({status}); its log:\n{}",
                service.log()
            ));
        }
        let s = shop.lock().unwrap_or_else(|p| p.into_inner());
        Ok(s.creates.len() >= n)
    })?;
    let mut metrics = String::new();
    wait(
        "every code counted in /metrics",
        Duration::from_secs(30),
        || {
            metrics = service.get("/metrics").1;
            Ok(metric(&metrics, "packwell_coupon_sync_total") >= n as f64)
        },
    )?;
    let seen = take(&shop);
    let first_create = seen
        .calls
        .iter()
        .find(|(c, _)| *c == Call::Create)
        .map(|(_, at)| *at - started)
        .unwrap_or_default();
    check_once(&seen, &issued, "packwell run")?;
    let synced = figures(&seen)?;
    let line =
        format!("packwell_coupon_sync_total{{outcome=\"created\",platform=\"shopify\"}} {n}");
    if !metrics.contains(&line) {
        return Err(format!("no {line} in /metrics:\n{metrics}"));
    }
    let retries = metric(&metrics, "packwell_coupon_sync_retries_total");
    if retries > 0.0 {
        return Err(format!("{retries} retries against a shop that never fails"));
    }
    service.terminate();
    let slot = pacer_wait(100_000, 1_000)?;

    println!(
        "coupon sync: {n} coupon.issued on the embedded broker, Shopify fake in process, SQLite store, max_rps = 100000"
    );
    println!("| run | codes | span | per second |");
    println!("|---|---|---|---|");
    for (name, f) in [
        ("bare reqwest client, look-up + create in sequence", &bare),
        ("packwell run, coupon sync", &synced),
    ] {
        println!(
            "| {name} | {n} | {:.2} s | {:.0} |",
            f.span.as_secs_f64(),
            f.per_second
        );
    }
    println!(
        "ratio to the bare client: {:.3}× (first create {:.2} s after the start)",
        synced.per_second / bare.per_second,
        first_create.as_secs_f64()
    );
    println!();
    println!("| median gap, at the fake shop | bare client | packwell run |");
    println!("|---|---|---|");
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    println!(
        "| look-up → create | {} | {} |",
        ms(bare.lookup_to_create),
        ms(synced.lookup_to_create)
    );
    println!(
        "| create → next look-up | {} | {} |",
        ms(bare.create_to_lookup),
        ms(synced.create_to_lookup)
    );
    println!(
        "| of which: `Pacer::slot` at max_rps = 100000, alone | — | {} |",
        ms(slot)
    );
    println!(
        "/metrics: packwell_coupon_sync_total{{outcome=\"created\"}} = {n}, retries = {retries}"
    );
    Ok(())
}
