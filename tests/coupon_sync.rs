//! Coupon sync end to end (docs/REFERENCE.md §8): `packwell run` as a child process with the
//! embedded broker, and a fake shop served by the test (Shopify's Admin GraphQL, or
//! WooCommerce's coupon endpoints) that answers a 429, a throttle and a 500 on the way. Every
//! issued code is created once; `coupon void` disables it in the shop; a code the shop refuses
//! is recorded `sync_failed`, listed, and not tried again; a crash right after the shop
//! created a code, before the outcome was recorded, creates nothing more after the restart.

mod service_support;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use service_support::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An answer the fake shop gives instead of the real one, by request number.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// 429 with `Retry-After: 1` (and Shopify's `THROTTLED` body).
    TooMany,
    /// Shopify: 200 with a `THROTTLED` error and the throttle's budget.
    Throttled,
    /// 500.
    ServerError,
}

#[derive(Debug, Clone)]
struct Discount {
    id: String,
    active: bool,
    input: Value,
}

#[derive(Default)]
struct Shop {
    requests: usize,
    faults: BTreeMap<usize, Fault>,
    /// By code.
    discounts: BTreeMap<String, Discount>,
    /// Create requests per code, refused ones included.
    creates: BTreeMap<String, usize>,
    next_id: u64,
    /// Shopify: a customer gid whose codes are refused; WooCommerce: an address.
    refuse: String,
}

type Shared = Arc<Mutex<Shop>>;

const SHOPIFY_TOKEN: &str = "shpat_test";
const WOO_AUTH: &str = "Basic Y2tfdGVzdDpjc190ZXN0"; // ck_test:cs_test

fn budget() -> Value {
    json!({ "cost": { "requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": { "maximumAvailable": 2000.0, "currentlyAvailable": 1990, "restoreRate": 100.0 } } })
}

fn throttled_body() -> Value {
    json!({
        "errors": [{ "message": "Throttled", "extensions": { "code": "THROTTLED",
            "documentation": "https://shopify.dev/api/usage/rate-limits" } }],
        "extensions": { "cost": { "requestedQueryCost": 10, "actualQueryCost": null,
            "throttleStatus": { "maximumAvailable": 2000.0, "currentlyAvailable": 0, "restoreRate": 20.0 } } }
    })
}

async fn serve(
    State(shop): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut s = shop.lock().expect("shop");
    s.requests += 1;
    let n = s.requests;
    let shopify = uri.path().ends_with("graphql.json");
    if let Some(fault) = s.faults.remove(&n) {
        return match (fault, shopify) {
            (Fault::TooMany, true) => (
                StatusCode::TOO_MANY_REQUESTS,
                [("Retry-After", "1")],
                throttled_body().to_string(),
            )
                .into_response(),
            (Fault::TooMany, false) => (
                StatusCode::TOO_MANY_REQUESTS,
                [("Retry-After", "1")],
                "slow down",
            )
                .into_response(),
            (Fault::Throttled, _) => (StatusCode::OK, throttled_body().to_string()).into_response(),
            (Fault::ServerError, _) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "upstream hiccup").into_response()
            }
        };
    }
    let (status, reply) = if shopify {
        shopify_answer(&mut s, &headers, &body)
    } else {
        woo_answer(&mut s, &method, &uri, &headers, &body)
    };
    (status, reply.to_string()).into_response()
}

fn shopify_answer(s: &mut Shop, headers: &HeaderMap, body: &str) -> (StatusCode, Value) {
    if headers
        .get("X-Shopify-Access-Token")
        .is_none_or(|t| t != SHOPIFY_TOKEN)
    {
        return (
            StatusCode::UNAUTHORIZED,
            json!({ "errors": "Invalid API key or access token" }),
        );
    }
    let request: Value = serde_json::from_str(body).expect("a GraphQL request");
    let query = request["query"].as_str().expect("query");
    let vars = &request["variables"];
    let data = if query.contains("codeDiscountNodeByCode") {
        let code = vars["code"].as_str().expect("code");
        match s.discounts.get(code) {
            Some(d) => json!({ "codeDiscountNodeByCode": { "id": d.id,
                "codeDiscount": { "status": if d.active { "ACTIVE" } else { "EXPIRED" } } } }),
            None => json!({ "codeDiscountNodeByCode": null }),
        }
    } else if query.contains("discountCodeBasicCreate") {
        let input = &vars["basicCodeDiscount"];
        let code = input["code"].as_str().expect("code").to_string();
        *s.creates.entry(code.clone()).or_default() += 1;
        for (field, ok) in [
            ("title", input["title"].is_string()),
            ("startsAt", input["startsAt"].is_string()),
            ("endsAt", input["endsAt"].is_string()),
            ("usageLimit", input["usageLimit"] == 1),
            (
                "appliesOncePerCustomer",
                input["appliesOncePerCustomer"] == true,
            ),
            (
                "customerGets",
                input["customerGets"]["value"]["discountAmount"]["amount"].is_string()
                    && input["customerGets"]["items"]["all"] == true,
            ),
        ] {
            assert!(
                ok,
                "discountCodeBasicCreate without a proper {field}: {input}"
            );
        }
        let refused = input["customerSelection"]["customers"]["add"][0] == s.refuse.as_str();
        let taken = s.discounts.contains_key(&code);
        if refused || taken {
            let message = if refused {
                "Customer selection contains a customer that does not exist."
            } else {
                "Code must be unique. Please try a different code."
            };
            json!({ "discountCodeBasicCreate": { "codeDiscountNode": null, "userErrors": [
                { "field": ["basicCodeDiscount", "customerSelection"], "code": "INVALID", "message": message }
            ] } })
        } else {
            s.next_id += 1;
            let id = format!("gid://shopify/DiscountCodeNode/{}", s.next_id);
            s.discounts.insert(
                code,
                Discount {
                    id: id.clone(),
                    active: true,
                    input: input.clone(),
                },
            );
            json!({ "discountCodeBasicCreate": { "codeDiscountNode": { "id": id }, "userErrors": [] } })
        }
    } else if query.contains("discountCodeDeactivate") {
        let id = vars["id"].as_str().expect("id");
        match s.discounts.values_mut().find(|d| d.id == id) {
            Some(d) => {
                d.active = false;
                json!({ "discountCodeDeactivate": { "codeDiscountNode": { "id": id }, "userErrors": [] } })
            }
            None => json!({ "discountCodeDeactivate": { "codeDiscountNode": null,
                "userErrors": [{ "field": ["id"], "code": "INVALID", "message": "Discount does not exist" }] } }),
        }
    } else {
        panic!("a query the fake shop does not know: {query}");
    };
    (
        StatusCode::OK,
        json!({ "data": data, "extensions": budget() }),
    )
}

fn woo_answer(
    s: &mut Shop,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &str,
) -> (StatusCode, Value) {
    if headers.get("authorization").is_none_or(|a| a != WOO_AUTH) {
        return (
            StatusCode::UNAUTHORIZED,
            json!({ "code": "woocommerce_rest_cannot_view", "message": "Sorry, you cannot list resources." }),
        );
    }
    let path = uri
        .path()
        .strip_prefix("/wp-json/wc/v3/")
        .expect("the REST prefix");
    let coupon_json = |d: &Discount| {
        let mut c = d.input.clone();
        c["id"] = json!(d.id.parse::<u64>().expect("id"));
        c
    };
    match (method.as_str(), path) {
        ("GET", "coupons") => {
            let code = uri
                .query()
                .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("code=")))
                .expect("?code=");
            let found: Vec<Value> = s.discounts.get(code).map(coupon_json).into_iter().collect();
            (StatusCode::OK, json!(found))
        }
        ("POST", "coupons") => {
            let input: Value = serde_json::from_str(body).expect("a coupon");
            let code = input["code"].as_str().expect("code").to_string();
            *s.creates.entry(code.clone()).or_default() += 1;
            assert_eq!(input["discount_type"], "fixed_cart", "{input}");
            assert_eq!(input["usage_limit"], 1, "{input}");
            assert!(input["date_expires"].is_string(), "{input}");
            if input["email_restrictions"][0] == s.refuse.as_str() {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({ "code": "rest_invalid_param", "message": "Invalid parameter(s): email_restrictions", "data": { "status": 400 } }),
                );
            }
            if s.discounts.contains_key(&code) {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({ "code": "woocommerce_rest_coupon_code_already_exists", "message": "The coupon code already exists", "data": { "status": 400 } }),
                );
            }
            s.next_id += 1;
            let d = Discount {
                id: s.next_id.to_string(),
                active: true,
                input,
            };
            let reply = coupon_json(&d);
            s.discounts.insert(code, d);
            (StatusCode::CREATED, reply)
        }
        ("DELETE", p) if p.starts_with("coupons/") => {
            assert!(uri.query().is_some_and(|q| q.contains("force=true")));
            let id = &p["coupons/".len()..];
            let code = s
                .discounts
                .iter()
                .find(|(_, d)| d.id == id)
                .map(|(c, _)| c.clone());
            match code.and_then(|c| s.discounts.remove(&c)) {
                Some(d) => (StatusCode::OK, coupon_json(&d)),
                None => (
                    StatusCode::NOT_FOUND,
                    json!({ "code": "woocommerce_rest_shop_coupon_invalid_id", "message": "Invalid ID.", "data": { "status": 404 } }),
                ),
            }
        }
        other => panic!("a call the fake shop does not know: {other:?}"),
    }
}

/// Starts the fake shop on the broker's runtime; returns its address.
fn start_shop(broker: &TestBroker, shop: Shared) -> String {
    let listener = broker
        .runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let app = axum::Router::new().fallback(serve).with_state(shop);
    broker.runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn write_config(work: &Workdir, section: &str) -> PathBuf {
    std::fs::write(
        work.path().join("catalogue.csv"),
        "BK-0001,books\nBK-0002,books\n",
    )
    .expect("catalogue");
    let path = work.path().join("packwell.toml");
    std::fs::write(&path, section).expect("config");
    path
}

/// A first order (which the example rules give a welcome coupon) of `customer`.
fn first_order(order: &str, customer: &str, email: &str) -> (Option<String>, Vec<u8>) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/orders/first-book-order.json"),
    )
    .expect("example order");
    let mut e: Value = serde_json::from_str(&text).expect("json");
    e["event_id"] = json!(format!("ev-{order}"));
    e["occurred_at"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    e["order"]["id"] = json!(order);
    e["order"]["customer"]["id"] = json!(customer);
    e["order"]["customer"]["email"] = json!(email);
    (Some(customer.to_string()), e.to_string().into_bytes())
}

fn packwell(work: &Workdir, config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .current_dir(work.path())
        .output()
        .expect("packwell");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `coupon list --format json`, with `--state` when given.
fn listed(work: &Workdir, config: &Path, state: Option<&str>) -> Vec<Value> {
    let mut args = vec!["coupon", "list", "--format", "json"];
    if let Some(s) = state {
        args.extend(["--state", s]);
    }
    let (ok, text) = packwell(work, config, &args);
    assert!(ok, "{text}");
    serde_json::from_str(&text).expect("a JSON list")
}

/// The sync state of a listed coupon in `platform`.
fn sync_state(coupon: &Value, platform: &str) -> Option<String> {
    coupon["sync"]
        .as_array()?
        .iter()
        .find(|s| s["platform"] == platform)
        .and_then(|s| s["state"].as_str().map(str::to_string))
}

#[test]
fn shopify_gets_every_code_once_refusals_are_listed_and_voids_disable() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let shop: Shared = Arc::new(Mutex::new(Shop {
        faults: BTreeMap::from([
            (1, Fault::TooMany),
            (3, Fault::ServerError),
            (5, Fault::Throttled),
        ]),
        refuse: "gid://shopify/Customer/999".into(),
        ..Shop::default()
    }));
    let addr = start_shop(&broker, shop.clone());
    let config = write_config(
        &work,
        &format!(
            "[connectors.shopify]\nwebhook_secrets = [\"s\"]\nsync_coupons = true\n\
             admin_url = \"http://{addr}/admin/api/2025-10/graphql.json\"\n\
             access_token = \"{SHOPIFY_TOKEN}\"\nmax_rps = 20\n"
        ),
    );
    let config_arg = config.display().to_string();
    let service =
        ServiceProcess::start_with_args(work.path(), &broker.addr, &[], &["--config", &config_arg]);
    // The example rules' `welcome` holds 10% of first-time customers out, by a fixed bucket
    // of (customer id, rule id): these three are among those it gives its coupon to.
    produce(
        &broker.addr,
        &[
            first_order("O-S1", "1001", "ada@example.com"),
            first_order("O-S2", "1003", "ben@example.com"),
            first_order("O-S3", "999", "refused@example.com"),
        ],
    );
    wait_for("three coupons recorded", Duration::from_secs(90), || {
        listed(&work, &config, None)
            .iter()
            .filter(|c| sync_state(c, "shopify").is_some())
            .count()
            == 3
    });
    let coupons = listed(&work, &config, None);
    let code_of = |customer: &str| {
        coupons
            .iter()
            .find(|c| c["customer_id"] == customer)
            .and_then(|c| c["code"].as_str())
            .expect("a coupon of the customer")
            .to_string()
    };
    let (ada, ben, refused) = (code_of("1001"), code_of("1003"), code_of("999"));
    {
        let s = shop.lock().expect("shop");
        assert!(s.faults.is_empty(), "every fault was served");
        assert_eq!(s.discounts.len(), 2, "{:?}", s.discounts.keys());
        for code in [&ada, &ben] {
            let d = &s.discounts[code];
            assert_eq!(s.creates[code], 1, "{code} created once");
            assert_eq!(
                d.input["customerGets"]["value"]["discountAmount"]["amount"],
                "10.00"
            );
            assert_eq!(
                d.input["minimumRequirement"]["subtotal"]["greaterThanOrEqualToSubtotal"],
                "40.00"
            );
        }
        assert_eq!(
            s.discounts[&ada].input["customerSelection"]["customers"]["add"][0],
            "gid://shopify/Customer/1001"
        );
    }
    let failed = listed(&work, &config, Some("sync_failed"));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["code"], refused.as_str());
    let error = failed[0]["sync"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("does not exist"), "{error}");
    let (ok, text) = packwell(
        &work,
        &config,
        &["coupon", "list", "--state", "sync_failed"],
    );
    assert!(
        ok && text.contains(&refused) && text.contains("sync_failed"),
        "{text}"
    );

    let (ok, text) = packwell(&work, &config, &["coupon", "void", &ada]);
    assert!(ok, "{text}");
    wait_for("the voided code disabled", Duration::from_secs(60), || {
        !shop.lock().expect("shop").discounts[&ada].active
    });
    wait_for("the void recorded", Duration::from_secs(30), || {
        listed(&work, &config, Some("voided")).iter().any(|c| {
            c["code"] == ada.as_str() && sync_state(c, "shopify").as_deref() == Some("disabled")
        })
    });
    {
        // The void came after the refusal on the topic: the refused code was not tried again.
        let s = shop.lock().expect("shop");
        assert_eq!(s.creates[&refused], 1);
        assert!(s.discounts[&ben].active);
        assert_eq!(s.creates.values().sum::<usize>(), 3);
    }
    let (_, metrics) = service.get("/metrics");
    for (outcome, n) in [("created", 2.0), ("failed", 1.0), ("disabled", 1.0)] {
        let line =
            format!("packwell_coupon_sync_total{{outcome=\"{outcome}\",platform=\"shopify\"}} {n}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    assert!(
        metric(&metrics, "packwell_coupon_sync_retries_total") >= 3.0,
        "{metrics}"
    );
}

#[test]
fn a_crash_between_create_and_record_creates_nothing_more_in_woocommerce() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let shop: Shared = Arc::new(Mutex::new(Shop {
        faults: BTreeMap::from([(1, Fault::TooMany), (2, Fault::ServerError)]),
        refuse: "nobody@example.com".into(),
        ..Shop::default()
    }));
    let addr = start_shop(&broker, shop.clone());
    let config = write_config(
        &work,
        &format!(
            "[connectors.woocommerce]\nwebhook_secrets = [\"s\"]\ncategory = \"catalogue\"\n\
             catalogue = \"catalogue.csv\"\nsync_coupons = true\nurl = \"http://{addr}/\"\n\
             consumer_key = \"ck_test\"\nconsumer_secret = \"cs_test\"\nmax_rps = 20\n"
        ),
    );
    let config_arg = config.display().to_string();
    let args = ["--config", config_arg.as_str()];
    let mut first = ServiceProcess::start_with_args(
        work.path(),
        &broker.addr,
        &[("PACKWELL_FAULT", "sync-crash:*")],
        &args,
    );
    produce(
        &broker.addr,
        &[first_order("O-W1", "C-2001", "cleo@example.com")],
    );
    // The service ends itself right after the shop created the code, before recording it.
    wait_for(
        "the crash after the create",
        Duration::from_secs(90),
        || matches!(first.child.try_wait(), Ok(Some(_))),
    );
    assert!(first.log().contains("fault injected"), "{}", first.log());
    let code = {
        let s = shop.lock().expect("shop");
        assert_eq!(s.discounts.len(), 1);
        let (code, d) = s.discounts.iter().next().expect("a coupon");
        assert_eq!(s.creates[code], 1);
        assert_eq!(d.input["email_restrictions"], json!(["cleo@example.com"]));
        assert_eq!(d.input["amount"], "10.00");
        assert_eq!(d.input["minimum_amount"], "40.00");
        code.clone()
    };
    assert!(
        listed(&work, &config, None)
            .iter()
            .all(|c| sync_state(c, "woocommerce").is_none()),
        "nothing recorded before the crash"
    );

    let _second = ServiceProcess::start_with_args(work.path(), &broker.addr, &[], &args);
    wait_for(
        "the code recorded after the restart",
        Duration::from_secs(90),
        || {
            listed(&work, &config, None).iter().any(|c| {
                c["code"] == code.as_str()
                    && sync_state(c, "woocommerce").as_deref() == Some("synced")
            })
        },
    );
    assert_eq!(
        shop.lock().expect("shop").creates[&code],
        1,
        "no second coupon"
    );

    let (ok, text) = packwell(&work, &config, &["coupon", "void", &code]);
    assert!(ok, "{text}");
    wait_for("the voided code deleted", Duration::from_secs(60), || {
        shop.lock().expect("shop").discounts.is_empty()
    });
    wait_for("the void recorded", Duration::from_secs(30), || {
        listed(&work, &config, None).iter().any(|c| {
            c["code"] == code.as_str()
                && sync_state(c, "woocommerce").as_deref() == Some("disabled")
        })
    });
}
