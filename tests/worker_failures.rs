//! Failures inside `packwell run`, through the binary and the real Kafka protocol: an event
//! that makes the decision path panic twice is set aside (`internal_error`) while the orders
//! around it are decided and the service stays ready; a consumer thread that dies makes
//! `/readyz` answer 503 naming it and the process exit non-zero; SIGTERM with the broker gone
//! and messages unsent exits within `[service] shutdown_timeout`, the messages kept for the
//! next start; batches that keep failing make `/readyz` say so. Faults are injected with
//! `PACKWELL_FAULT` (see `packwell::fault`).

mod service_support;

use serde_json::{Value, json};
use service_support::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

fn example(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/orders")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("example")).expect("json")
}

/// An example order under another order id, event id and customer.
fn order(n: usize) -> Value {
    let mut e = example("first-book-order.json");
    e["event_id"] = json!(format!("ev-wf-{n}"));
    e["order"]["id"] = json!(format!("O-WF-{n}"));
    e["order"]["customer"]["id"] = json!(format!("C-WF-{n}"));
    e
}

fn keyed(events: &[Value]) -> Vec<(Option<String>, Vec<u8>)> {
    events
        .iter()
        .map(|e| (customer_key(e), e.to_string().into_bytes()))
        .collect()
}

fn decided(brokers: &str, wanted: &BTreeSet<String>) -> BTreeSet<String> {
    read_topic(
        brokers,
        "packing-instructions",
        Duration::from_secs(60),
        |m| {
            let keys: BTreeSet<String> = m.iter().filter_map(|c| c.key.clone()).collect();
            wanted.is_subset(&keys)
        },
    )
    .into_iter()
    .filter_map(|c| c.key)
    .collect()
}

#[test]
fn an_event_that_panics_the_decision_path_twice_goes_to_the_dlq_and_the_rest_is_decided() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let service = ServiceProcess::start(
        work.path(),
        &broker.addr,
        &[("PACKWELL_FAULT", "decide-panic:ev-wf-2")],
    );
    let events: Vec<Value> = (1..=4).map(order).collect();
    produce(&broker.addr, &keyed(&events));
    let dlq = read_topic(&broker.addr, "orders.dlq", Duration::from_secs(60), |m| {
        !m.is_empty()
    });
    assert_eq!(dlq.len(), 1, "{}", service.log());
    let m = &dlq[0];
    assert_eq!(m.headers["packwell-reason"], "internal_error");
    assert_eq!(m.key.as_deref(), Some("C-WF-2"));
    assert_eq!(m.json()["event_id"], "ev-wf-2");
    assert!(
        m.headers["packwell-error"].contains("failed on this event twice"),
        "{:?}",
        m.headers
    );
    let wanted: BTreeSet<String> = ["O-WF-1", "O-WF-3", "O-WF-4"]
        .into_iter()
        .map(String::from)
        .collect();
    let found = decided(&broker.addr, &wanted);
    assert!(wanted.is_subset(&found), "{found:?}\n{}", service.log());
    assert!(!found.contains("O-WF-2"), "{found:?}");
    let (status, body) = service.get("/readyz");
    assert_eq!(status, 200, "{body}");
    let log = service.log();
    assert!(
        log.contains("panicked twice") && log.contains("offset"),
        "the log names where it happened:\n{log}"
    );
}

#[test]
fn a_consumer_thread_that_dies_turns_readyz_to_503_and_the_process_exits_non_zero() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let mut service = ServiceProcess::start(
        work.path(),
        &broker.addr,
        &[("PACKWELL_FAULT", "consumer-panic:ev-wf-9")],
    );
    assert_eq!(service.get("/readyz").0, 200);
    produce(&broker.addr, &keyed(&[order(9)]));
    // Polled until the process is gone: the 503 must be seen on the way out.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut unready: Option<Value> = None;
    let code = loop {
        if let Ok(Some(status)) = service.child.try_wait() {
            break status.code();
        }
        assert!(
            Instant::now() < deadline,
            "still running:\n{}",
            service.log()
        );
        if unready.is_none() {
            let (status, body) = service.get("/readyz");
            if status == 503 {
                unready = serde_json::from_str(&body).ok();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let body = unready.unwrap_or_else(|| panic!("no 503 from /readyz seen:\n{}", service.log()));
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["workers"]["ok"], false, "{body}");
    let failed = body["workers"]["failed"].as_str().unwrap_or_default();
    assert!(
        failed.starts_with("consumer: panicked"),
        "the failed worker is named: {body}"
    );
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit code {code:?}:\n{}",
        service.log()
    );
}

#[test]
fn sigterm_with_the_broker_down_exits_within_the_bound_and_keeps_unsent_messages() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let config = work.path().join("packwell.toml");
    std::fs::write(
        &config,
        "[service]\nshutdown_timeout = \"4s\"\n[[http.tokens]]\nname = \"operator\"\ntoken = \"s3cret\"\n",
    )
    .expect("config");
    let mut service = ServiceProcess::start_with_args(
        work.path(),
        &broker.addr,
        &[],
        &["--config", &config.display().to_string()],
    );
    // A New York order with a coupon, decided and relayed while the broker is up.
    let placed = example("fragrance-new-york.json");
    produce(&broker.addr, &keyed(&[placed]));
    let wanted: BTreeSet<String> = ["O-2101".to_string()].into();
    assert!(decided(&broker.addr, &wanted).contains("O-2101"));
    packwell::email::provider::ensure_tls_provider();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let base = format!("http://{}", service.http);
    let list: Value = client
        .get(format!("{base}/v1/orders/O-2101/inserts"))
        .bearer_auth("s3cret")
        .send()
        .expect("inserts")
        .json()
        .expect("json");
    let inserts: Vec<Value> = list["inserts"]
        .as_array()
        .expect("inserts")
        .iter()
        .map(|i| {
            let id = i["insert_id"].as_str().expect("id");
            if i["kind"] == "coupon" {
                json!({"insert_id": id, "packed": false, "reason": "other"})
            } else {
                json!({"insert_id": id, "packed": true})
            }
        })
        .collect();
    assert!(list.to_string().contains("\"coupon\""), "{list}");

    // The broker goes; the coupon left out of the parcel is voided: a message the relay
    // cannot deliver.
    broker.set_available(false);
    let confirmed = client
        .post(format!("{base}/v1/orders/O-2101/packed"))
        .bearer_auth("s3cret")
        .json(&json!({"station": "nyc-1", "inserts": inserts}))
        .send()
        .expect("confirm");
    assert_eq!(confirmed.status().as_u16(), 200);

    let (code, took) = service.terminate();
    let log = service.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        took < Duration::from_secs(4 + 3),
        "SIGTERM took {took:?} with a bound of 4 s:\n{log}"
    );
    assert!(
        log.contains("go out at the next start"),
        "the log says what is left for the next start:\n{log}"
    );
    // The voiding message is still in the outbox, unsent.
    let db = work.path().join("data/packwell.db");
    let unsent = broker.runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display()))
            .await
            .expect("open the store");
        let rows: Vec<(Vec<u8>,)> =
            sqlx::query_as("SELECT payload FROM outbox WHERE sent = 0 AND topic = 'coupons'")
                .fetch_all(&pool)
                .await
                .expect("outbox");
        rows.into_iter()
            .map(|(p,)| String::from_utf8_lossy(&p).into_owned())
            .collect::<Vec<_>>()
    });
    assert!(
        unsent.iter().any(|p| p.contains("coupon.voided")),
        "{unsent:?}"
    );
}

/// `simulate` runs the same guard: the order whose decision panics twice is set aside, and
/// the history it was folded into is put back between the tries (else the second try would
/// find the order "already held").
#[test]
fn simulate_sets_aside_an_order_whose_decision_panics_twice() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let order = root.join("examples/orders/first-book-order.json");
    let event_id = example("first-book-order.json")["event_id"]
        .as_str()
        .expect("event_id")
        .to_string();
    let out = std::process::Command::new(BIN)
        .current_dir(root)
        .args(["simulate", "--order"])
        .arg(&order)
        .env("PACKWELL_FAULT", format!("decide-panic:{event_id}"))
        .output()
        .expect("simulate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("set aside (internal_error)") && stderr.contains("twice"),
        "{stderr}"
    );
    // Without the fault the same order is decided.
    let ok = std::process::Command::new(BIN)
        .current_dir(root)
        .args(["simulate", "--order"])
        .arg(&order)
        .output()
        .expect("simulate");
    assert_eq!(ok.status.code(), Some(0));
}

/// A batch that keeps failing (here, writing it panics every time) is retried, never skipped,
/// and `/readyz` says deciding is stuck instead of answering ready.
#[test]
fn batches_that_keep_failing_make_the_service_unready() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let service = ServiceProcess::start(
        work.path(),
        &broker.addr,
        &[("PACKWELL_FAULT", "write-panic:ev-wf-7")],
    );
    assert_eq!(service.get("/readyz").0, 200);
    produce(&broker.addr, &keyed(&[order(7)]));
    let mut seen = String::new();
    wait_for(
        "/readyz to report the stuck consumer",
        Duration::from_secs(60),
        || {
            let (status, body) = service.get("/readyz");
            seen = body;
            status == 503
        },
    );
    let body: Value = serde_json::from_str(&seen).expect("json");
    assert_eq!(body["consumer"]["ok"], false, "{body}");
    let error = body["consumer"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("panicked"), "{body}");
    // Not a dead worker: the process keeps running and retrying.
    assert_eq!(body["workers"]["ok"], true, "{body}");
}
