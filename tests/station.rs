//! The packing-station API through real HTTP against `packwell run` (the binary, with the
//! example rules, on the real Kafka protocol): insert lists and cards for the token's
//! warehouses only, JSON errors for every failure, packed confirmations with their effects
//! (a coupon not packed is voided and its event emitted, out-of-stock empties the warehouse's
//! shelf), idempotency and conflicts, and an OpenAPI document that matches the routes. On
//! SQLite and on PostgreSQL.

mod service_support;

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};
use service_support::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const BER: &str = "s3cret-ber";
const NYC: &str = "s3cret-nyc";
const ADMIN: &str = "s3cret-admin";

/// Tokens for a Berlin station, a New York station (given as a digest) and an operator.
fn config(work: &Path, store_url: Option<&str>) -> String {
    let nyc_digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(NYC.as_bytes()))
    };
    let store = store_url
        .map(|u| format!("[store]\nurl = {u:?}\n"))
        .unwrap_or_default();
    let text = format!(
        r#"{store}
[http]
max_body_bytes = 4096
request_timeout_ms = 1500
[[http.tokens]]
name = "berlin-1"
token = "{BER}"
warehouses = ["WH-BER"]
[[http.tokens]]
name = "new-york-1"
token_sha256 = "{nyc_digest}"
warehouses = ["WH-NYC"]
[[http.tokens]]
name = "operator"
token = "{ADMIN}"
"#
    );
    let path = work.join("packwell.toml");
    std::fs::write(&path, text).expect("config");
    path.display().to_string()
}

/// A broker and `packwell run` with the tokens of [`config`], on SQLite or the given store.
struct Station {
    api: Api,
    service: ServiceProcess,
    _work: Workdir,
    broker: TestBroker,
}

impl Station {
    fn start(store_url: Option<&str>) -> Station {
        let broker = TestBroker::start();
        let work = Workdir::new();
        let config = config(work.path(), store_url);
        let service =
            ServiceProcess::start_with_args(work.path(), &broker.addr, &[], &["--config", &config]);
        Station {
            api: Api::new(&service),
            service,
            _work: work,
            broker,
        }
    }
}

struct Api {
    base: String,
    client: Client,
}

impl Api {
    fn new(service: &ServiceProcess) -> Api {
        packwell::email::provider::ensure_tls_provider();
        Api {
            base: format!("http://{}", service.http),
            client: Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
        }
    }

    fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(self.client.get(format!("{}{path}", self.base)), token)
    }

    fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send(
            self.client.post(format!("{}{path}", self.base)).json(body),
            token,
        )
    }

    fn send(&self, request: RequestBuilder, token: Option<&str>) -> Response {
        let request = match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        request.send().expect("request")
    }
}

/// Status and JSON body; fails when the body is not JSON.
fn json_of(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = response.text().expect("body");
    assert!(
        content_type.starts_with("application/json"),
        "{status} with {content_type:?}: {text}"
    );
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, body)
}

fn example(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/orders")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("example")).expect("json")
}

/// A copy of an example order with another order id (and event id).
fn renamed(mut event: Value, order_id: &str) -> Value {
    event["event_id"] = json!(format!("ev-{order_id}-placed"));
    event["order"]["id"] = json!(order_id);
    event
}

fn send(broker: &TestBroker, events: &[Value]) {
    let messages: Vec<(Option<String>, Vec<u8>)> = events
        .iter()
        .map(|e| (customer_key(e), e.to_string().into_bytes()))
        .collect();
    produce(&broker.addr, &messages);
}

fn wait_decided(api: &Api, order_ids: &[&str]) {
    wait_for("the orders to be decided", Duration::from_secs(60), || {
        order_ids.iter().all(|o| {
            api.get(&format!("/v1/orders/{o}/inserts"), Some(ADMIN))
                .status()
                .as_u16()
                == 200
        })
    });
}

fn not_found_body(order_id: &str) -> Value {
    json!({"error": "not_found",
           "message": format!("No inserts for order {order_id} here: the order is unknown, or not decided yet.")})
}

#[test]
fn stations_see_their_warehouses_orders_and_errors_are_json() {
    let station = Station::start(None);
    let (broker, service, api) = (&station.broker, &station.service, &station.api);
    send(
        broker,
        &[
            example("first-book-order.json"),
            example("fragrance-new-york.json"),
        ],
    );
    wait_decided(api, &["O-1001", "O-2101"]);

    // Berlin sees its order: the decision without `skipped`, with `packed` null.
    let (status, list) = json_of(api.get("/v1/orders/O-1001/inserts", Some(BER)));
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        (list["order_id"].as_str(), list["warehouse"].as_str()),
        (Some("O-1001"), Some("WH-BER"))
    );
    assert!(
        list["rules_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("sha256:")),
        "{list}"
    );
    assert_eq!(list["packed"], Value::Null);
    assert!(
        list.get("skipped").is_none() && list.get("explain").is_none(),
        "{list}"
    );
    let inserts = list["inserts"].as_array().expect("inserts");
    let coupon = inserts
        .iter()
        .find(|i| i["kind"] == "coupon")
        .expect("a coupon for a first order");
    for field in ["code", "amount", "currency", "expires_on"] {
        assert!(
            coupon["coupon"][field].is_string(),
            "coupon.{field}: {coupon}"
        );
    }
    let note = inserts
        .iter()
        .find(|i| i["kind"] == "note")
        .expect("a note");
    assert!(
        note["note"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Lena")),
        "{note}"
    );

    // New York never learns that a Berlin order exists: the answer is the one for an order
    // that does not exist at all.
    let (status, body) = json_of(api.get("/v1/orders/O-1001/inserts", Some(NYC)));
    assert_eq!((status, body), (404, not_found_body("O-1001")));
    let (status, body) = json_of(api.get("/v1/orders/O-9999/inserts", Some(NYC)));
    assert_eq!((status, body), (404, not_found_body("O-9999")));
    let (status, body) = json_of(api.get("/v1/orders/O-1001/card", Some(NYC)));
    assert_eq!((status, body), (404, not_found_body("O-1001")));
    let (status, body) = json_of(api.post(
        "/v1/orders/O-1001/packed",
        Some(NYC),
        &json!({"station": "nyc-1", "inserts": []}),
    ));
    assert_eq!((status, body), (404, not_found_body("O-1001")));
    // New York sees its own (the token given as a digest).
    assert_eq!(
        api.get("/v1/orders/O-2101/inserts", Some(NYC))
            .status()
            .as_u16(),
        200
    );

    // No token, a wrong one: 401 with a JSON body and a Bearer challenge.
    for token in [None, Some("s3cret-be"), Some("")] {
        let response = api.get("/v1/orders/O-1001/inserts", token);
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"packwell\"")
        );
        let (status, body) = json_of(response);
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("unauthorized")),
            "{token:?}"
        );
    }

    // The card: printable HTML with the note, the code and a QR code of it.
    let response = api.get("/v1/orders/O-1001/card", Some(BER));
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/html")
    );
    let card = response.text().expect("card");
    let code = coupon["coupon"]["code"].as_str().expect("code");
    assert!(
        card.contains(code) && card.contains("<svg") && card.contains("@page"),
        "{card}"
    );
    assert!(card.contains("Lena"), "the note: {card}");

    // Errors of the request itself are JSON too, without internals.
    let (status, body) = json_of(api.get("/v1/nothing-here", Some(BER)));
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = json_of(
        api.send(
            api.client
                .delete(format!("{}/v1/orders/O-1001/inserts", api.base)),
            Some(BER),
        ),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let raw = |content_type: &str, body: String| {
        json_of(
            api.send(
                api.client
                    .post(format!("{}/v1/orders/O-1001/packed", api.base))
                    .header("content-type", content_type)
                    .body(body),
                Some(BER),
            ),
        )
    };
    let (status, body) = raw("application/json", "{\"station\": ".into());
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = raw("text/plain", "{}".into());
    assert_eq!(
        (status, body["error"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );
    let (status, body) = raw(
        "application/json",
        format!("{{\"station\": \"{}\"}}", "x".repeat(5000)),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    let (status, body) = json_of(api.post(
        "/v1/orders/O-1001/packed",
        Some(BER),
        &json!({"station": "ber-1", "inserts": [{"insert_id": "nope", "packed": true}]}),
    ));
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("no such insert")),
        "{body}"
    );
    let (status, body) = json_of(api.post(
        "/v1/orders/O-1001/packed",
        Some(BER),
        &json!({"station": "ber-1", "inserts": []}),
    ));
    assert!(
        status == 422
            && body["message"]
                .as_str()
                .is_some_and(|m| m.contains("missing")),
        "{body}"
    );

    // A request that does not finish in time (its body never comes) is ended with 408.
    let (status, body) = stalled_post(&service.http, "/v1/orders/O-1001/packed");
    assert_eq!(status, 408, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(body["error"], "timeout");

    // A client that never finishes its headers is disconnected.
    let started = std::time::Instant::now();
    let mut slow = std::net::TcpStream::connect(&service.http).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    std::io::Write::write_all(&mut slow, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").expect("write");
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut slow, &mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "held for {:?}",
        started.elapsed()
    );

    // Requests are counted by route pattern and status.
    let (_, metrics) = service.get("/metrics");
    assert!(
        metric(
            &metrics,
            "packwell_http_requests_total{route=\"/v1/orders/{order_id}/inserts\",status=\"200\"}"
        ) >= 2.0,
        "{metrics}"
    );
    // Tokens never reach the log.
    let log = service.log();
    assert!(
        !log.contains(BER) && !log.contains(NYC) && !log.contains(ADMIN),
        "{log}"
    );
}

/// A POST that announces a body and sends only half of it, then waits for the answer.
fn stalled_post(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {BER}\r\n\
         Content-Type: application/json\r\nContent-Length: 40\r\nConnection: close\r\n\r\n{{\"station\": \"ber"
    )
    .expect("write");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    status_and_body(&text)
}

/// The confirmation of every insert as packed, but those named with a reason.
fn confirmation(list: &Value, station: &str, not_packed: &[(&str, &str)]) -> Value {
    let inserts: Vec<Value> = list["inserts"]
        .as_array()
        .expect("inserts")
        .iter()
        .map(|i| {
            let id = i["insert_id"].as_str().expect("insert_id");
            match not_packed.iter().find(|(n, _)| *n == id) {
                Some((_, reason)) => json!({"insert_id": id, "packed": false, "reason": reason}),
                None => json!({"insert_id": id, "packed": true}),
            }
        })
        .collect();
    json!({"station": station, "inserts": inserts})
}

fn skipped_reason(decision: &Value, insert_id: &str) -> Option<String> {
    decision["skipped"]
        .as_array()?
        .iter()
        .find(|s| s["insert_id"] == insert_id)
        .and_then(|s| s["reason"].as_str())
        .map(str::to_string)
}

/// Confirms O-2101 (New York: a fragrance sample, a coupon) with the coupon not packed and
/// the sample out of stock, then checks the effects through Kafka and the API.
fn packed_confirmation_effects(store_url: Option<&str>) {
    let station = Station::start(store_url);
    let (broker, api) = (&station.broker, &station.api);
    send(broker, &[example("fragrance-new-york.json")]);
    wait_decided(api, &["O-2101"]);
    let (_, list) = json_of(api.get("/v1/orders/O-2101/inserts", Some(NYC)));
    let kinds: BTreeSet<&str> = list["inserts"]
        .as_array()
        .expect("inserts")
        .iter()
        .filter_map(|i| i["kind"].as_str())
        .collect();
    assert!(
        kinds.contains("coupon") && kinds.contains("sample"),
        "{list}"
    );
    let coupon = list["inserts"]
        .as_array()
        .expect("inserts")
        .iter()
        .find(|i| i["kind"] == "coupon")
        .expect("coupon");
    let code = coupon["coupon"]["code"].as_str().expect("code").to_string();
    let coupon_id = coupon["insert_id"].as_str().expect("id").to_string();

    let body = confirmation(
        &list,
        "nyc-1",
        &[(&coupon_id, "other"), ("fragrance-sample", "out_of_stock")],
    );
    let (status, first) = json_of(api.post("/v1/orders/O-2101/packed", Some(NYC), &body));
    assert_eq!(status, 200, "{first}");
    let packed = first["packed"].clone();
    assert_eq!(packed["station"], "nyc-1");
    let lines = packed["inserts"].as_array().expect("lines");
    assert!(
        lines
            .iter()
            .any(|l| l["insert_id"] == "fragrance-sample" && l["reason"] == "out_of_stock"),
        "{packed}"
    );

    // The same body again: 200 with the first confirmation; another body: 409 showing it.
    let (status, again) = json_of(api.post("/v1/orders/O-2101/packed", Some(NYC), &body));
    assert_eq!((status, &again["packed"]), (200, &packed));
    let (status, conflict) = json_of(api.post(
        "/v1/orders/O-2101/packed",
        Some(NYC),
        &confirmation(&list, "nyc-1", &[]),
    ));
    assert_eq!(
        (status, conflict["error"].as_str()),
        (409, Some("conflict")),
        "{conflict}"
    );
    assert_eq!(conflict["packed"], packed);
    let (_, now) = json_of(api.get("/v1/orders/O-2101/inserts", Some(NYC)));
    assert_eq!(now["packed"], packed);

    // The code nobody received is voided, and the voiding is emitted.
    let voided = read_topic(&broker.addr, "coupons", Duration::from_secs(30), |msgs| {
        msgs.iter().any(|m| m.json()["type"] == "coupon.voided")
    });
    let voided: Vec<Value> = voided
        .iter()
        .map(|m| m.json())
        .filter(|m| m["type"] == "coupon.voided")
        .collect();
    assert_eq!(voided.len(), 1, "{voided:?}");
    assert_eq!(
        (
            voided[0]["code"].as_str(),
            voided[0]["reason"].as_str(),
            voided[0]["version"].as_i64()
        ),
        (Some(code.as_str()), Some("not_packed"), Some(2))
    );

    // The card no longer prints the voided coupon (the note's own text is the marketer's).
    let card = api
        .get("/v1/orders/O-2101/card", Some(NYC))
        .text()
        .expect("card");
    assert!(
        card.contains("<main") && !card.contains("class=\"coupon\""),
        "{card}"
    );

    // New York's shelf of samples is empty now; Berlin's is not.
    let mut nyc_again = renamed(example("fragrance-new-york.json"), "O-2102");
    nyc_again["order"]["customer"]["id"] = json!("C-2003");
    let mut berlin = renamed(example("fragrance-new-york.json"), "O-2103");
    berlin["order"]["customer"]["id"] = json!("C-2004");
    berlin["order"]["warehouse"] = json!("WH-BER");
    send(broker, &[nyc_again, berlin]);
    wait_decided(api, &["O-2102", "O-2103"]);
    let decisions = read_topic(
        &broker.addr,
        "packing-instructions",
        Duration::from_secs(30),
        |msgs| {
            msgs.iter()
                .filter(|m| {
                    m.key.as_deref() == Some("O-2102") || m.key.as_deref() == Some("O-2103")
                })
                .count()
                >= 2
        },
    );
    let decision = |order: &str| {
        decisions
            .iter()
            .find(|m| m.key.as_deref() == Some(order))
            .map(|m| m.json())
            .expect("decided")
    };
    assert_eq!(
        skipped_reason(&decision("O-2102"), "fragrance-sample").as_deref(),
        Some("stock"),
        "{}",
        decision("O-2102")
    );
    assert!(
        decision("O-2103")["inserts"]
            .as_array()
            .expect("inserts")
            .iter()
            .any(|i| i["insert_id"] == "fragrance-sample"),
        "{}",
        decision("O-2103")
    );
}

#[test]
fn a_packed_confirmation_voids_unpacked_coupons_and_empties_the_shelf_sqlite() {
    packed_confirmation_effects(None);
}

#[test]
fn a_packed_confirmation_voids_unpacked_coupons_and_empties_the_shelf_postgres() {
    let db = format!("pw_station_{}", std::process::id());
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    psql(&format!("CREATE DATABASE {db}"));
    let outcome = std::panic::catch_unwind(|| packed_confirmation_effects(Some(&url)));
    psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// `GET /v1/report`: the effect report as JSON, for tokens without a warehouse limit only.
#[test]
fn the_report_is_served_to_unlimited_tokens_only() {
    let station = Station::start(None);
    let api = &station.api;
    send(
        &station.broker,
        &[
            example("first-book-order.json"),
            example("fragrance-new-york.json"),
        ],
    );
    wait_decided(api, &["O-1001", "O-2101"]);
    let (status, body) = json_of(api.get("/v1/report", None));
    assert_eq!(status, 401, "{body}");
    let (status, body) = json_of(api.get("/v1/report", Some(BER)));
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "forbidden", "{body}");

    let (status, report) = json_of(api.get("/v1/report", Some(ADMIN)));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["window_days"], 90);
    assert!(report["as_of"].is_string(), "{report}");
    let ids: Vec<(&str, &str)> = report["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or(""),
                r["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for expected in [
        ("welcome", "rule"),
        ("home-linen-spray", "rule"),
        ("fragrance-check-in", "followup"),
    ] {
        assert!(ids.contains(&expected), "{expected:?} in {ids:?}");
    }
    // The orders were just decided: each customer is still inside the window, none compared.
    let welcome = &report["rules"][0];
    assert_eq!(welcome["id"], "welcome");
    assert_eq!(welcome["treated"], 0, "{welcome}");
    assert_eq!(welcome["in_window"], 2, "{welcome}");

    let (status, short) = json_of(api.get("/v1/report?window=12w&since=2026-01-01", Some(ADMIN)));
    assert_eq!(status, 200, "{short}");
    assert_eq!(
        (short["window_days"].as_u64(), short["since"].as_str()),
        (Some(84), Some("2026-01-01"))
    );
    for bad in [
        "window=4h",
        "window=ninety",
        "since=2026-13-01",
        "since=yesterday",
    ] {
        let (status, body) = json_of(api.get(&format!("/v1/report?{bad}"), Some(ADMIN)));
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{bad}: {body}"
        );
    }
}

#[test]
fn the_openapi_document_matches_the_routes() {
    let station = Station::start(None);
    let api = &station.api;
    let (status, doc) = json_of(api.get("/openapi.json", None));
    assert_eq!(status, 200);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{doc}"
    );
    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|m| ["get", "post", "put", "delete", "patch"].contains(&m.as_str()))
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("GET", "/v1/orders/{order_id}/inserts"),
        ("GET", "/v1/orders/{order_id}/card"),
        ("POST", "/v1/orders/{order_id}/packed"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/u/{token}"),
        ("POST", "/u/{token}"),
        ("POST", "/v1/email-events"),
        ("GET", "/v1/report"),
        ("POST", "/v1/ingest/{platform}"),
        ("GET", "/v1/rules/files"),
        ("GET", "/v1/rules/files/{path}"),
        ("PUT", "/v1/rules/files/{path}"),
        ("POST", "/v1/rules/validate"),
        ("GET", "/v1/rules/orders"),
        ("POST", "/v1/rules/try"),
        ("POST", "/v1/rules/backtests"),
        ("GET", "/v1/rules/backtests/{id}"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(documented, expected);
    // Every documented operation is served (an unknown route says "no such route"), and the
    // station's need the bearer scheme the document defines.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (method, path) in &documented {
        let concrete = path
            .replace("{order_id}", "O-none")
            .replace("{token}", "not-a-token");
        let request = match method.as_str() {
            "GET" => api.client.get(format!("{}{concrete}", api.base)),
            "PUT" => api.client.put(format!("{}{concrete}", api.base)).body("x"),
            _ => api
                .client
                .post(format!("{}{concrete}", api.base))
                .json(&json!({"station": "s", "inserts": []})),
        };
        let response = api.send(request, Some(ADMIN));
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        assert!(
            !text.contains("no such route") && status != 405,
            "{method} {path}: {status} {text}"
        );
        let operation = &paths[path][method.to_lowercase()];
        let documented_statuses: Vec<&String> = operation["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .collect();
        assert!(
            documented_statuses
                .iter()
                .any(|s| s.as_str() == status.to_string()),
            "{method} {path} answered {status}, documented {documented_statuses:?}"
        );
        if path.starts_with("/v1/ingest/") {
            // Shop webhooks carry the platform's signature, not a bearer token.
            assert_eq!(operation["security"], Value::Null, "{method} {path}");
        } else if path.starts_with("/v1/") {
            assert_eq!(
                operation["security"],
                json!([{"bearer": []}]),
                "{method} {path}"
            );
        }
    }
    // The station page is served as HTML.
    let response = api.get("/station", None);
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/html")
    );
}

/// Answers that carry order data or coupon codes (insert lists, cards, confirmations, the
/// report, the unsubscribe pages), and every error under those paths, say `no-store`: no
/// browser, proxy or CDN keeps a copy of a parcel's coupon codes.
#[test]
fn answers_with_order_data_are_never_stored_by_caches() {
    let station = Station::start(None);
    let api = &station.api;
    send(&station.broker, &[example("first-book-order.json")]);
    wait_decided(api, &["O-1001"]);
    let cache_control = |response: &Response| {
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let no_store = |what: &str, response: Response, status: u16| -> Response {
        assert_eq!(response.status().as_u16(), status, "{what}");
        assert_eq!(
            cache_control(&response).as_deref(),
            Some("no-store"),
            "{what}"
        );
        response
    };
    let list: Value = no_store(
        "inserts",
        api.get("/v1/orders/O-1001/inserts", Some(BER)),
        200,
    )
    .json()
    .expect("json");
    let code = list["inserts"]
        .as_array()
        .and_then(|a| a.iter().find_map(|i| i["coupon"]["code"].as_str()))
        .expect("a coupon code")
        .to_string();
    let card = no_store("card", api.get("/v1/orders/O-1001/card", Some(BER)), 200);
    assert!(card.text().expect("card").contains(&code));
    let body = confirmation(&list, "ber-1", &[]);
    no_store(
        "confirmation",
        api.post("/v1/orders/O-1001/packed", Some(BER), &body),
        200,
    );
    no_store(
        "the confirmation repeated",
        api.post("/v1/orders/O-1001/packed", Some(BER), &body),
        200,
    );
    no_store(
        "another warehouse",
        api.get("/v1/orders/O-1001/inserts", Some(NYC)),
        404,
    );
    no_store("no token", api.get("/v1/orders/O-1001/card", None), 401);
    no_store(
        "a body too large",
        api.post(
            "/v1/orders/O-1001/packed",
            Some(BER),
            &json!({"station": "x".repeat(5000)}),
        ),
        413,
    );
    no_store("the report", api.get("/v1/report", Some(ADMIN)), 200);
    no_store("an unsubscribe page", api.get("/u/not-a-token", None), 404);
    // What carries none keeps its own caching.
    assert_eq!(cache_control(&api.get("/openapi.json", None)), None);
}
