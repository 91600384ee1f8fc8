//! The connector commands (docs/REFERENCE.md §4, §8): `packwell ingest replay` on saved bodies,
//! `packwell ingest` as an edge of its own beside a PostgreSQL store, and `packwell dlq replay`
//! of a webhook set aside as unmappable.

mod pg_schema;
mod service_support;

use packwell::connector::signature::sign;
use pg_schema::Schema;
use serde_json::Value;
use service_support::{BIN, TestBroker, read_topic};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const SECRET: &str = "edge-secret";

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// A folder with a configuration that turns the Shopify connector on (categories from the
/// catalogue fixture) and names `store` as the store.
fn workdir(store: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("packwell.toml");
    let text = format!(
        "[store]\nurl = {store:?}\n[connectors.shopify]\nwebhook_secrets = [\"{SECRET}\"]\n\
         category = \"catalogue\"\ncatalogue = {:?}\nwarehouse_by_country = {{ DE = \"WH-BER\" }}\n",
        fixture("shopify/catalogue.csv")
    );
    std::fs::write(&config, text).expect("config");
    (dir, config)
}

fn packwell(dir: &Path, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .current_dir(dir)
        .env_remove("PACKWELL_STORE_URL")
        .env_remove("PACKWELL_KAFKA_BROKERS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("packwell")
}

#[test]
fn ingest_replay_prints_the_events_a_saved_body_becomes() {
    let (dir, config) = workdir("data/packwell.db");
    let replay = |platform: &str, topic: &str, file: &Path| {
        let file = file.to_str().unwrap();
        packwell(
            dir.path(),
            &config,
            &[
                "ingest",
                "replay",
                "--platform",
                platform,
                "--topic",
                topic,
                file,
            ],
            &[],
        )
    };
    let order: Value =
        serde_json::from_slice(&std::fs::read(fixture("shopify/orders-create.json")).unwrap())
            .unwrap();
    let out = replay(
        "shopify",
        "orders/create",
        &fixture("shopify/orders-create.json"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one event per line"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0]["event_id"],
        format!("shopify:order:{}:placed", order["id"])
    );
    assert_eq!(lines[0]["order"]["warehouse"], "WH-BER");

    // A fulfillment names an order the (absent) store does not hold: exit 1, saying so.
    let out = replay(
        "shopify",
        "fulfillments/create",
        &fixture("shopify/fulfillments-create.json"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not in the store"));

    // An unmappable body: exit 1 with the sentence naming the field.
    let mut bad = order.clone();
    bad["currency"] = Value::String("XYZ".into());
    let bad_file = dir.path().join("bad.json");
    std::fs::write(&bad_file, serde_json::to_vec(&bad).unwrap()).unwrap();
    let out = replay("shopify", "orders/create", &bad_file);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unmappable") && stderr.contains("currency"),
        "{stderr}"
    );

    // A platform the configuration does not turn on: a usage error.
    let out = replay(
        "woocommerce",
        "order.created",
        &fixture("woocommerce/order-processing.json"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[connectors.woocommerce]"));
}

#[test]
fn the_ingest_edge_needs_kafka_and_postgres() {
    let (dir, config) = workdir("data/packwell.db");
    let out = packwell(dir.path(), &config, &["ingest"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[kafka] brokers"));
    let out = packwell(
        dir.path(),
        &config,
        &["ingest", "--listen", "127.0.0.1:0"],
        &[("PACKWELL_KAFKA_BROKERS", "127.0.0.1:9")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs the PostgreSQL store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_ingest_edge_takes_webhooks_beside_a_postgres_store() {
    let schema = Schema::new(&format!("pw_ingest_edge_{}", std::process::id()));
    let store = schema.store_url();
    let (dir, config) = workdir(&store);
    let broker = TestBroker::start();
    let mut child = Command::new(BIN)
        .args(["ingest", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("PACKWELL_KAFKA_BROKERS", &broker.addr)
        .env_remove("PACKWELL_STORE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("packwell ingest");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .expect("the first line");
    let addr = first
        .trim()
        .strip_prefix("packwell ingest listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();

    let body = std::fs::read(fixture("shopify/orders-create.json")).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::new();
    let post = |topic: &str, delivery: &str, body: &[u8]| {
        let r = client
            .post(format!("http://{addr}/v1/ingest/shopify"))
            .header("X-Shopify-Topic", topic)
            .header("X-Shopify-Hmac-Sha256", sign(SECRET.as_bytes(), body))
            .header("X-Shopify-Webhook-Id", delivery)
            .body(body.to_vec())
            .send()
            .expect("POST");
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let (status, answer) = post("orders/create", "edge-1", &body);
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("produced")),
        "{answer}"
    );
    // The delivery id is recorded in PostgreSQL: a repeat is a duplicate.
    let (_, answer) = post("orders/create", "edge-1", &body);
    assert_eq!(answer["status"], "duplicate");
    // No service applies `orders` here: the order is not stored, the fulfillment waits.
    let fulfillment = std::fs::read(fixture("shopify/fulfillments-create.json")).unwrap();
    let (status, _) = post("fulfillments/create", "edge-2", &fulfillment);
    assert_eq!(status, 503);
    let events = read_topic(&broker.addr, "orders", Duration::from_secs(30), |m| {
        !m.is_empty()
    });
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].json()["type"], "order.placed");
    let (status, ready) = service_support::http_get(&addr, "/readyz");
    assert_eq!(status, 200, "{ready}");

    // SIGTERM stops it.
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
}

#[test]
fn dlq_replay_maps_a_set_aside_webhook_again() {
    let (dir, config) = workdir("data/packwell.db");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let body = std::fs::read(fixture("shopify/orders-create.json")).unwrap();
    let order: Value = serde_json::from_slice(&body).unwrap();
    // A webhook an earlier configuration could not map, set aside as the route does.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let path = dir.path().join("data/packwell.db");
        let store = packwell::store::open(path.to_str().unwrap()).await.unwrap();
        let letter = packwell::message::DeadLetter::webhook(
            "shopify",
            "orders/create",
            Some(b"d-9".to_vec()),
            &body,
            "an earlier configuration could not map it",
        );
        store
            .record_webhooks(&[packwell::store::HandledWebhook {
                platform: "shopify".into(),
                delivery_id: "d-9".into(),
                event_ids: Vec::new(),
                dead_letter: Some(letter.into_outbox()),
            }])
            .await
            .unwrap();
    });
    let broker = TestBroker::start();
    let out = packwell(
        dir.path(),
        &config,
        &["dlq", "replay", "--brokers", &broker.addr],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent 1 events"));
    let events = read_topic(&broker.addr, "orders", Duration::from_secs(30), |m| {
        !m.is_empty()
    });
    assert_eq!(events.len(), 1, "the mapped event, not the raw body");
    let event = events[0].json();
    assert_eq!(
        event["event_id"],
        format!("shopify:order:{}:placed", order["id"])
    );
    assert_eq!(
        events[0].key.as_deref(),
        Some(order["customer"]["id"].to_string().as_str())
    );
}
