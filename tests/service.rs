//! `packwell run` end to end through the binary, on the real Kafka protocol (librdkafka's mock
//! cluster, held by the test so it can be taken down): events in, packing instructions and
//! coupon events out with the content `simulate` gives; poison messages in the DLQ with their
//! headers while the good events around them are decided; a broker outage loses nothing; a
//! broken rule file keeps the old rules serving and `/readyz` says why; SIGTERM stops cleanly;
//! a second `run` on the same data folder is refused.

mod service_support;

use serde_json::{Value, json};
use service_support::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn example_orders() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/orders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let v: Value =
                serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("json");
            (p.display().to_string(), v)
        })
        .collect()
}

fn keyed(events: &[Value]) -> Vec<(Option<String>, Vec<u8>)> {
    events
        .iter()
        .map(|e| (customer_key(e), e.to_string().into_bytes()))
        .collect()
}

fn decided_orders(brokers: &str, n: usize, timeout: Duration) -> BTreeMap<String, Value> {
    let msgs = read_topic(brokers, "packing-instructions", timeout, |m| {
        m.iter()
            .filter_map(|c| c.key.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            >= n
    });
    msgs.iter()
        .map(|m| (m.key.clone().unwrap_or_default(), m.json()))
        .collect()
}

#[test]
fn orders_in_packing_instructions_and_coupons_out_as_simulate_says() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let mut service = ServiceProcess::start(work.path(), &broker.addr, &[]);
    let orders = example_orders();
    let events: Vec<Value> = orders.iter().map(|(_, v)| v.clone()).collect();
    produce(&broker.addr, &keyed(&events));
    let decided = decided_orders(&broker.addr, orders.len(), Duration::from_secs(60));
    assert_eq!(decided.len(), orders.len(), "{}", service.log());
    let mut codes = Vec::new();
    for (file, event) in &orders {
        let order_id = event["order"]["id"].as_str().expect("order id");
        let out = Command::new(BIN)
            .args(["simulate", "--order", file, "--format", "json"])
            .current_dir(work.path())
            .output()
            .expect("simulate");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let simulated: Value = serde_json::from_slice(&out.stdout).expect("simulate json");
        let emitted = &decided[order_id];
        assert_eq!(
            emitted, &simulated,
            "order {order_id}: emitted vs simulated"
        );
        for insert in emitted["inserts"].as_array().expect("inserts") {
            if let Some(code) = insert["coupon"]["code"].as_str() {
                codes.push(code.to_string());
            }
        }
    }
    assert!(!codes.is_empty(), "the examples give at least one coupon");
    let coupons = read_topic(&broker.addr, "coupons", Duration::from_secs(30), |m| {
        m.len() >= codes.len()
    });
    for code in &codes {
        let issued = coupons
            .iter()
            .find(|c| c.key.as_deref() == Some(code))
            .unwrap_or_else(|| panic!("no coupon event for {code}"));
        let v = issued.json();
        assert_eq!(v["type"], "coupon.issued");
        assert_eq!(v["version"], 1);
        assert_eq!(v["schema_version"], 1);
    }
    let (status, body) = service.get("/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        metric(&body, "packwell_orders_decided_total"),
        orders.len() as f64
    );
    let (code, took) = service.terminate();
    assert_eq!(code, Some(0), "{}", service.log());
    assert!(
        took < Duration::from_secs(15),
        "SIGTERM to exit took {took:?}"
    );
}

#[test]
fn poison_messages_go_to_the_dlq_and_the_good_ones_around_them_are_decided() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let service = ServiceProcess::start(work.path(), &broker.addr, &[]);
    let good: Vec<Value> = example_orders().into_iter().map(|(_, v)| v).collect();
    let base = good[0].clone();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        v
    };
    // 5 MB (decimal): librdkafka's mock keeps at most 5 MiB per partition, message included.
    let big = json!({"event_id": "big", "type": "order.placed", "pad": "x".repeat(5_000_000)});
    let poison: Vec<(&str, Option<String>, Vec<u8>)> = vec![
        ("invalid_json", Some("C-1".into()), b"{not json".to_vec()),
        (
            "unknown_type",
            Some("C-1".into()),
            json!({"event_id": "p-1", "type": "order.teleported", "occurred_at": "2026-11-20T10:00:00Z", "customer_id": "C-1"})
                .to_string()
                .into_bytes(),
        ),
        (
            "missing_field",
            customer_key(&base),
            with(&|v| {
                v["event_id"] = json!("p-2");
                v["order"].as_object_mut().expect("order").remove("total");
            })
            .to_string()
            .into_bytes(),
        ),
        (
            "invalid_value",
            customer_key(&base),
            with(&|v| {
                v["event_id"] = json!("p-3");
                v["order"]["total"] = json!("12,50");
            })
            .to_string()
            .into_bytes(),
        ),
        (
            "invalid_value",
            customer_key(&base),
            with(&|v| {
                v["event_id"] = json!("p-4");
                v["order"]["items"][0]["quantity"] = json!(-1);
            })
            .to_string()
            .into_bytes(),
        ),
        // Over `[kafka] max_event_bytes` (1 MiB): set aside unparsed.
        ("too_large", Some("C-1".into()), big.to_string().into_bytes()),
        // The largest amount a Decimal holds, as a total and as a price: beyond the bounds.
        (
            "out_of_range",
            customer_key(&base),
            with(&|v| {
                v["event_id"] = json!("p-7");
                v["order"]["id"] = json!("O-P7");
                v["order"]["total"] = json!("79228162514264337593543950335");
            })
            .to_string()
            .into_bytes(),
        ),
        (
            "out_of_range",
            customer_key(&base),
            with(&|v| {
                v["event_id"] = json!("p-8");
                v["order"]["id"] = json!("O-P8");
                v["order"]["items"][0]["unit_price"] = json!("79228162514264337593543950335");
                v["order"]["items"][0]["quantity"] = json!(2);
            })
            .to_string()
            .into_bytes(),
        ),
        // The first good order's event id again, with another event under it.
        (
            "conflict",
            customer_key(&base),
            with(&|v| {
                v["order"]["total"] = json!("1.00");
            })
            .to_string()
            .into_bytes(),
        ),
        // The first good order again under a new event id, with other items.
        (
            "conflict",
            customer_key(&base),
            with(&|v| {
                v["event_id"] = json!("p-9");
                v["order"]["items"][0]["quantity"] = json!(7);
            })
            .to_string()
            .into_bytes(),
        ),
        (
            "key_mismatch",
            Some("somebody-else".into()),
            with(&|v| {
                v["event_id"] = json!("p-6");
                v["order"]["id"] = json!("O-P6");
            })
            .to_string()
            .into_bytes(),
        ),
    ];
    // Good and bad interleaved: a bad one never holds up the good ones after it.
    let mut messages = Vec::new();
    for (i, (_, key, value)) in poison.iter().enumerate() {
        if let Some(g) = good.get(i) {
            messages.push((customer_key(g), g.to_string().into_bytes()));
        }
        messages.push((key.clone(), value.clone()));
    }
    // The mock broker keeps a few MiB per partition: a 5 MB message evicts the older ones of
    // its partition from the log, so it goes last, once the others were read.
    let big_at = messages
        .iter()
        .position(|(_, v)| v.len() > 1024 * 1024)
        .expect("the big one");
    let big_message = messages.remove(big_at);
    produce(&broker.addr, &messages);
    let _ = read_topic(&broker.addr, "orders.dlq", Duration::from_secs(60), |m| {
        m.len() >= poison.len() - 1
    });
    produce(&broker.addr, &[big_message]);
    let dlq = read_topic(&broker.addr, "orders.dlq", Duration::from_secs(60), |m| {
        m.len() >= poison.len()
    });
    assert_eq!(dlq.len(), poison.len(), "{}", service.log());
    for (reason, key, value) in &poison {
        let m = dlq
            .iter()
            .find(|m| {
                m.key == *key
                    && (m.value == *value || m.headers.contains_key("packwell-truncated"))
                    && m.headers["packwell-reason"] == *reason
            })
            .unwrap_or_else(|| panic!("no DLQ message with reason {reason} and key {key:?}"));
        assert!(!m.headers["packwell-error"].is_empty());
        assert_eq!(m.headers["packwell-source-topic"], "orders");
        assert!(
            m.headers["packwell-source-partition"]
                .parse::<i32>()
                .is_ok()
        );
        assert!(m.headers["packwell-source-offset"].parse::<i64>().is_ok());
        if value.len() > 512 * 1024 {
            assert_eq!(m.value.len(), 512 * 1024);
            assert_eq!(m.headers["packwell-truncated"], value.len().to_string());
            assert_eq!(&m.value[..], &value[..512 * 1024]);
        }
    }
    let decided = decided_orders(&broker.addr, good.len(), Duration::from_secs(30));
    assert_eq!(decided.len(), good.len());
    let (_, body) = service.get("/metrics");
    assert_eq!(
        metric(&body, "packwell_events_rejected_total"),
        poison.len() as f64,
        "{body}"
    );
}

#[test]
fn a_broker_outage_loses_nothing() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let service = ServiceProcess::start(work.path(), &broker.addr, &[]);
    let events: Vec<Value> = history()
        .into_iter()
        .filter(|e| e["type"] == "order.placed")
        .take(400)
        .collect();
    let (first, second) = events.split_at(200);
    produce(&broker.addr, &keyed(first));
    broker.set_available(false);
    let brokers = broker.addr.clone();
    let second_keyed = keyed(second);
    // Sent while the broker is down: the producer holds them and delivers when it is back.
    let sender = std::thread::spawn(move || produce(&brokers, &second_keyed));
    std::thread::sleep(Duration::from_secs(4));
    broker.set_available(true);
    sender.join().expect("sender");
    let decided = decided_orders(&broker.addr, events.len(), Duration::from_secs(90));
    assert_eq!(decided.len(), events.len(), "{}", service.log());
    wait_for("ready again", Duration::from_secs(30), || {
        service.get("/readyz").0 == 200
    });
}

#[test]
fn a_broken_rule_file_keeps_the_old_rules_serving_and_readyz_says_why() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let service = ServiceProcess::start(work.path(), &broker.addr, &[]);
    let (status, body) = service.get("/readyz");
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).expect("json");
    let version = ready["rules"]["version"]
        .as_str()
        .expect("version")
        .to_string();
    let file = work.path().join("rules/30-rules.toml");
    let original = std::fs::read_to_string(&file).expect("read");
    std::fs::write(
        &file,
        format!("{original}\n[[rule]]\nid = \"broken\"\nwhen = \"order.total >\"\n"),
    )
    .expect("write");
    wait_for(
        "the reload error in /readyz",
        Duration::from_secs(30),
        || {
            let (_, body) = service.get("/readyz");
            body.contains("30-rules.toml")
        },
    );
    let (status, body) = service.get("/readyz");
    assert_eq!(status, 200, "old rules keep serving: {body}");
    let ready: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(ready["rules"]["ok"], false);
    assert_eq!(ready["rules"]["version"], version.as_str());
    let order = example_orders().remove(0).1;
    produce(&broker.addr, &keyed(std::slice::from_ref(&order)));
    let decided = decided_orders(&broker.addr, 1, Duration::from_secs(60));
    let d = decided.values().next().expect("a decision");
    assert_eq!(
        d["rules_version"],
        version.as_str(),
        "decided with the old rules"
    );
    let (_, metrics) = service.get("/metrics");
    assert!(metric(&metrics, "packwell_rules_reloads_total") >= 1.0);
    // Fixed: the new version serves.
    std::fs::write(&file, format!("{original}\n# touched\n")).expect("write");
    wait_for("the fixed rules", Duration::from_secs(30), || {
        let (_, body) = service.get("/readyz");
        serde_json::from_str::<Value>(&body)
            .map(|v| v["rules"]["ok"] == true && v["rules"]["version"] != version.as_str())
            .unwrap_or(false)
    });
}

#[test]
fn a_second_run_on_the_same_data_folder_is_refused() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let _first = ServiceProcess::start(work.path(), &broker.addr, &[]);
    let out = Command::new(BIN)
        .arg("run")
        .current_dir(work.path())
        .env("PACKWELL_KAFKA_BROKERS", &broker.addr)
        .env("PACKWELL_HTTP_LISTEN", "127.0.0.1:0")
        .output()
        .expect("second run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another `packwell run`"), "{stderr}");
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_masked() {
    let out = Command::new(BIN)
        .args(["run", "--check-config"])
        .env("PACKWELL_STORE_URL", "postgres://pw:hunter2@db/packwell")
        .env("PACKWELL_KAFKA_BATCH_MAX", "200")
        .output()
        .expect("run --check-config");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("batch_max = 200"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let out = Command::new(BIN)
        .args(["run", "--check-config"])
        .env("PACKWELL_KAFKA_BATCH_MAX", "lots")
        .output()
        .expect("run --check-config");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PACKWELL_KAFKA_BATCH_MAX"), "{stderr}");
}
