//! Shop webhooks through the running service (docs/REFERENCE.md §8): signed fixtures of
//! Shopify's and WooCommerce's published payloads posted over real HTTP to `packwell run` on
//! the embedded broker, read back from `orders`, `packing-instructions` and `orders.dlq`.

mod service_support;

use packwell::connector::signature::sign;
use serde_json::Value;
use service_support::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SECRET: &str = "test-webhook-secret";
const WAIT: Duration = Duration::from_secs(60);

fn fixture(path: &str) -> Vec<u8> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn json_fixture(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).expect("a JSON fixture")
}

/// A config with both connectors on, categories from the Shopify catalogue fixture.
fn config(workdir: &Path) -> PathBuf {
    let catalogue =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shopify/catalogue.csv");
    let text = format!(
        "[connectors]\nmax_body_bytes = 300000\n\
         [connectors.shopify]\nwebhook_secrets = [\"old-secret\", \"{SECRET}\"]\ncategory = \"catalogue\"\ncatalogue = {catalogue:?}\n\
         warehouse_by_country = {{ DE = \"WH-BER\" }}\n\
         [connectors.woocommerce]\nwebhook_secrets = [\"{SECRET}\"]\ncategory = \"catalogue\"\ncatalogue = {catalogue:?}\n"
    );
    let path = workdir.join("packwell.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// `packwell run` with both connectors on, on a broker of its own. Fields drop in order: the
/// service stops before its broker goes.
struct Running {
    service: ServiceProcess,
    broker: TestBroker,
    work: Workdir,
}

impl Running {
    fn start() -> Running {
        let broker = TestBroker::start();
        let work = Workdir::new();
        let cfg = config(work.path());
        let service = ServiceProcess::start_with_args(
            work.path(),
            &broker.addr,
            &[],
            &["--config", cfg.to_str().unwrap()],
        );
        Running {
            service,
            broker,
            work,
        }
    }
}

/// A coupon's state as `packwell coupon list` shows it.
fn coupon_state(running: &Running, code: &str) -> Option<String> {
    let out = std::process::Command::new(BIN)
        .args(["coupon", "list", "--format", "json", "--config"])
        .arg(running.work.path().join("packwell.toml"))
        .current_dir(running.work.path())
        .env("PACKWELL_STORE_URL", running.work.sqlite_url())
        .output()
        .expect("packwell coupon list");
    let listed: Value = serde_json::from_slice(&out.stdout).ok()?;
    listed
        .as_array()?
        .iter()
        .find(|c| c["code"] == code)
        .and_then(|c| c["state"].as_str().map(str::to_string))
}

/// Headers of one platform's delivery.
struct Webhook<'a> {
    platform: &'a str,
    topic: Option<&'a str>,
    delivery: &'a str,
    secret: &'a str,
}

fn client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Posts a webhook as the platform would; returns the status, Retry-After and body.
fn post(http: &str, w: &Webhook, body: &[u8]) -> (u16, Option<String>, Value) {
    let (topic_h, sig_h, id_h) = match w.platform {
        "shopify" => (
            "X-Shopify-Topic",
            "X-Shopify-Hmac-Sha256",
            "X-Shopify-Webhook-Id",
        ),
        _ => (
            "X-WC-Webhook-Topic",
            "X-WC-Webhook-Signature",
            "X-WC-Webhook-Delivery-ID",
        ),
    };
    let mut req = client()
        .post(format!("http://{http}/v1/ingest/{}", w.platform))
        .header("content-type", "application/json")
        .header(sig_h, sign(w.secret.as_bytes(), body))
        .header(id_h, w.delivery)
        .body(body.to_vec());
    if let Some(t) = w.topic {
        req = req.header(topic_h, t);
    }
    let r = req.send().expect("POST the webhook");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = r.json::<Value>().unwrap_or(Value::Null);
    (status, retry, body)
}

fn shopify<'a>(topic: &'a str, delivery: &'a str) -> Webhook<'a> {
    Webhook {
        platform: "shopify",
        topic: Some(topic),
        delivery,
        secret: SECRET,
    }
}

/// The events on `orders` once `done` holds, as JSON.
fn orders_until(brokers: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let read = read_topic(brokers, "orders", WAIT, |m| {
        done(&m.iter().map(Consumed::json).collect::<Vec<_>>())
    });
    read.iter().map(Consumed::json).collect()
}

fn count_id(events: &[Value], id: &str) -> usize {
    events.iter().filter(|e| e["event_id"] == id).count()
}

#[test]
fn shopify_webhooks_become_events_that_are_decided() {
    let running = Running::start();
    let (broker, http) = (&running.broker, running.service.http.clone());
    let order = json_fixture("shopify/orders-create.json");
    let order_id = order["id"].to_string();
    let placed_id = format!("shopify:order:{order_id}:placed");

    // A fulfillment before its order is stored: 503, so that Shopify delivers it again.
    let fulfillment = fixture("shopify/fulfillments-create.json");
    let (status, retry, _) = post(&http, &shopify("fulfillments/create", "d-f1"), &fulfillment);
    assert_eq!((status, retry.as_deref()), (503, Some("30")));

    // A wrong signature: 401, and nothing produced (the signed delivery below is the first
    // and only event of this order on the topic).
    let body = fixture("shopify/orders-create.json");
    let forged = Webhook {
        secret: "not-the-secret",
        ..shopify("orders/create", "d-forged")
    };
    let (status, _, answer) = post(&http, &forged, &body);
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"], "unauthorized");

    // Signed with either secret of the rotation pair.
    let (status, _, answer) = post(&http, &shopify("orders/create", "d-1"), &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "produced");
    assert_eq!(answer["events"][0], placed_id.as_str());
    // Delivered again: 200, nothing new.
    let (status, _, answer) = post(&http, &shopify("orders/create", "d-1"), &body);
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("duplicate"))
    );

    // Mapped into Packwell's own event, keyed by the customer, with the warehouse of its
    // shipping country and categories from the catalogue; then decided.
    let decided = read_topic(&broker.addr, "packing-instructions", WAIT, |m| {
        m.iter().any(|c| c.json()["order_id"] == order_id.as_str())
    });
    let decision = decided
        .iter()
        .map(Consumed::json)
        .find(|d| d["order_id"] == order_id.as_str())
        .expect("the order is decided");
    assert_eq!(decision["warehouse"], "WH-BER");
    let events = orders_until(&broker.addr, |e| count_id(e, &placed_id) > 0);
    assert_eq!(count_id(&events, &placed_id), 1, "{events:#?}");
    let placed = events
        .iter()
        .find(|e| e["event_id"] == placed_id.as_str())
        .unwrap();
    assert_eq!(placed["type"], "order.placed");
    assert_eq!(
        placed["order"]["customer"]["id"],
        order["customer"]["id"].to_string()
    );
    assert_eq!(placed["order"]["currency"], order["currency"]);
    assert_eq!(placed["order"]["total"], order["total_price"]);
    let items = placed["order"]["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert!(
        items.iter().all(|i| i["category"] != "uncategorized"),
        "{items:?}"
    );

    // Now stored: the fulfillment Shopify delivers again is taken, and a second fulfillment of
    // the same order maps to the same event.
    let mut answer = Value::Null;
    wait_for("the fulfillment to be taken", WAIT, || {
        let (status, _, a) = post(&http, &shopify("fulfillments/create", "d-f1"), &fulfillment);
        answer = a;
        status == 200
    });
    let shipped_id = format!("shopify:order:{order_id}:shipped");
    assert_eq!(answer["events"][0], shipped_id.as_str(), "{answer}");
    let (_, _, answer) = post(&http, &shopify("fulfillments/create", "d-f2"), &fulfillment);
    assert_eq!(answer["status"], "duplicate");

    let delivered = fixture("shopify/fulfillments-update-delivered.json");
    let (status, _, answer) = post(&http, &shopify("fulfillments/update", "d-u1"), &delivered);
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("produced")),
        "{answer}"
    );
    let refund = fixture("shopify/refunds-create-partial.json");
    let (_, _, answer) = post(&http, &shopify("refunds/create", "d-r1"), &refund);
    assert_eq!(answer["status"], "produced", "{answer}");
    let money_only = fixture("shopify/refunds-create-money-only.json");
    let (_, _, answer) = post(&http, &shopify("refunds/create", "d-r2"), &money_only);
    assert_eq!(
        (answer["status"].as_str(), answer["reason"].as_str()),
        (Some("ignored"), Some("money_only_refund"))
    );
    // A customer update whose consent did not change (the same delivery re-sent under a new
    // id, as an address edit is) produces nothing the second time.
    let customer = fixture("shopify/customers-update.json");
    let (_, _, first) = post(&http, &shopify("customers/update", "d-c1"), &customer);
    assert_eq!(first["status"], "produced", "{first}");
    let (_, _, second) = post(&http, &shopify("customers/update", "d-c2"), &customer);
    assert_eq!(second["status"], "duplicate", "{second}");

    let returned_prefix = "shopify:refund:";
    let events = orders_until(&broker.addr, |e| {
        e.iter().any(|v| {
            v["event_id"]
                .as_str()
                .is_some_and(|i| i.starts_with(returned_prefix))
        }) && e.iter().any(|v| v["type"] == "order.delivered")
            && e.iter().any(|v| {
                v["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("customer."))
            })
    });
    let returned = events
        .iter()
        .find(|e| e["type"] == "order.returned")
        .expect("order.returned");
    assert_eq!(returned["order_id"], order_id.as_str());
    assert!(
        !returned["items"]
            .as_array()
            .expect("returned items")
            .is_empty()
    );
    assert_eq!(count_id(&events, &shipped_id), 1);

    // What cannot be mapped (a currency that does not exist) is set aside, never lost.
    let mut guest = order.clone();
    guest["id"] = serde_json::json!(5_550_001);
    guest["currency"] = Value::String("XYZ".into());
    let guest = serde_json::to_vec(&guest).unwrap();
    let (status, _, answer) = post(&http, &shopify("orders/create", "d-guest"), &guest);
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("set_aside")),
        "{answer}"
    );
    let dlq = read_topic(&broker.addr, "orders.dlq", WAIT, |m| !m.is_empty());
    let letter = dlq.first().expect("a dead letter");
    assert_eq!(letter.headers["packwell-reason"], "unmappable");
    assert_eq!(
        letter.headers["packwell-source-topic"],
        "shopify:orders/create"
    );
    assert!(!letter.headers.contains_key("packwell-source-offset"));
    assert_eq!(letter.value, guest, "the raw body, unchanged");

    // The coupon in the first parcel comes back as a discount code on a later order: the
    // Packwell coupon is redeemed (what the effect report counts).
    let code = decision["inserts"]
        .as_array()
        .expect("inserts")
        .iter()
        .find_map(|i| i["coupon"]["code"].as_str())
        .expect("the first order's parcel has a coupon")
        .to_string();
    let mut next = order.clone();
    next["id"] = serde_json::json!(order["id"].as_u64().unwrap() + 1);
    next["created_at"] = Value::String("2026-03-30T09:00:00+01:00".into());
    next["discount_codes"] =
        serde_json::json!([{"code": code, "amount": "10.00", "type": "fixed_amount"}]);
    let next = serde_json::to_vec(&next).unwrap();
    let (_, _, answer) = post(&http, &shopify("orders/create", "d-next"), &next);
    assert_eq!(answer["status"], "produced", "{answer}");
    wait_for("the code to be redeemed", WAIT, || {
        coupon_state(&running, &code).as_deref() == Some("redeemed")
    });

    let (_, metrics) = http_get(&http, "/metrics");
    assert!(
        metrics
            .contains(r#"packwell_webhooks_total{outcome="bad_signature",platform="shopify"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"packwell_webhooks_total{outcome="order_not_stored",platform="shopify"} 1"#
        ),
        "{metrics}"
    );
}

#[test]
fn woocommerce_status_changes_become_events_and_its_ping_is_answered() {
    let running = Running::start();
    let (broker, http) = (&running.broker, running.service.http.clone());
    // WooCommerce pings a new webhook's URL with an unsigned form body.
    let r = client()
        .post(format!("http://{http}/v1/ingest/woocommerce"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("webhook_id=42")
        .send()
        .expect("ping");
    assert_eq!(r.status().as_u16(), 200);

    let woo = |topic, delivery| Webhook {
        platform: "woocommerce",
        topic: Some(topic),
        delivery,
        secret: SECRET,
    };
    let processing = fixture("woocommerce/order-processing.json");
    let order_id = json_fixture("woocommerce/order-processing.json")["id"].to_string();
    let (status, _, answer) = post(&http, &woo("order.created", "w-1"), &processing);
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("produced")),
        "{answer}"
    );
    let completed = fixture("woocommerce/order-completed.json");
    let (_, _, answer) = post(&http, &woo("order.updated", "w-2"), &completed);
    assert_eq!(answer["status"], "produced", "{answer}");
    // The placed event was produced before: only the shipped one is new.
    assert_eq!(
        answer["events"],
        serde_json::json!([format!("woocommerce:order:{order_id}:shipped")])
    );
    let events = orders_until(&broker.addr, |e| {
        e.iter().any(|v| v["type"] == "order.shipped")
    });
    assert_eq!(
        count_id(&events, &format!("woocommerce:order:{order_id}:placed")),
        1
    );
    read_topic(&broker.addr, "packing-instructions", WAIT, |m| {
        m.iter().any(|c| c.json()["order_id"] == order_id.as_str())
    })
    .iter()
    .find(|c| c.json()["order_id"] == order_id.as_str())
    .expect("the WooCommerce order is decided");
}

#[test]
fn webhooks_have_their_own_body_limit_and_unconfigured_platforms_are_404() {
    let running = Running::start();
    let http = running.service.http.clone();
    // Over the API's 64 KiB but within [connectors] max_body_bytes: taken (an order with a
    // long note attribute), over it: 413.
    let mut big = json_fixture("shopify/orders-create.json");
    big["note"] = Value::String("x".repeat(100_000));
    let big = serde_json::to_vec(&big).unwrap();
    let (status, _, answer) = post(&http, &shopify("orders/create", "big-1"), &big);
    assert_eq!(status, 200, "{answer}");
    let mut huge = json_fixture("shopify/orders-create.json");
    huge["note"] = Value::String("x".repeat(400_000));
    let (status, _, answer) = post(
        &http,
        &shopify("orders/create", "huge-1"),
        &serde_json::to_vec(&huge).unwrap(),
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (status, _, answer) = post(
        &http,
        &Webhook {
            platform: "magento",
            ..shopify("orders/create", "m-1")
        },
        b"{}",
    );
    assert_eq!((status, answer["error"].as_str()), (404, Some("not_found")));
}

#[test]
fn webhooks_are_not_answered_200_while_kafka_is_down() {
    let running = Running::start();
    let http = running.service.http.clone();
    let body = fixture("shopify/orders-create.json");
    running.broker.set_available(false);
    // Not acknowledged: 503, and the delivery is not recorded as handled.
    let (status, _, answer) = post(&http, &shopify("orders/create", "k-1"), &body);
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("unavailable")),
        "{answer}"
    );
    running.broker.set_available(true);
    // Shopify delivers it again once Kafka is back: produced now.
    let mut answer = Value::Null;
    wait_for("the webhook to be taken again", WAIT, || {
        let (status, _, a) = post(&http, &shopify("orders/create", "k-1"), &body);
        answer = a;
        status == 200
    });
    assert_eq!(answer["status"], "produced", "{answer}");
}
