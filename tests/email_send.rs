//! The e-mail sender against both stores, with a clock the test moves: scheduling from
//! events, each way a job ends (sent, every skip reason, waiting out quiet hours), coupons
//! issued only when an e-mail goes, the frequency cap under two workers on PostgreSQL, and
//! delivery to a real local HTTP server that answers 429 with Retry-After, 500, hangs, and
//! 200 (retries, the idempotency key, exactly one accepted send per job).

#[macro_use]
mod store_support;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use packwell::config::HttpApi;
use packwell::email::provider::{Http, OutboxDir, Provider};
use packwell::email::{ManualClock, Worker, WorkerSettings};
use packwell::metrics::Metrics;
use packwell::store::emails::EmailJobRow;
use packwell::store::{DecideEnv, Store};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store_support::*;

const RULES: &str = r#"
[[insert]]
id = "sorry-coupon"
kind = "coupon"
title = "5 off your next order"
amount = { EUR = "5.00" }
min_order = { EUR = "20.00" }
valid_days = 30
code_prefix = "SORRY"

[[followup]]
id = "thanks"
on = "order.placed"
when = "customer.orders_count == 1"
template = "hello"
after = "2h"

[[followup]]
id = "sorry"
on = "order.delivered"
when = "delivery.late_days >= 2"
template = "hello"
after = "1h"
give = ["sorry-coupon"]

[[followup]]
id = "never"
on = "order.placed"
when = "true"
template = "hello"
after = "1h"
holdout = "100%"

[email]
max_per_customer = { count = 1, per = "7d" }
quiet_hours = { from = "21:00", until = "08:00" }
default_time_zone = "Europe/Berlin"
expire_after = "3d"
"#;

const TEMPLATES: &[(&str, &str)] = &[
    ("emails/hello/subject.hbs", "Hello {{customer.first_name}}"),
    (
        "emails/hello/html.hbs",
        "<p>Dear {{customer.first_name}},</p>{{#if coupon}}<p>{{coupon.code}}: {{money coupon.amount coupon.currency}}</p>{{/if}}<p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p>",
    ),
];

fn env_of(rules: &str) -> DecideEnv {
    env_from(rules, TEMPLATES)
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn placed_at(customer: &str, order: &str, at: &str, tz: Option<&str>) -> Value {
    let mut c =
        json!({"id": customer, "email": format!("{customer}@mail.example"), "first_name": "Greta"});
    if let Some(tz) = tz {
        c["time_zone"] = json!(tz);
    }
    json!({"event_id": format!("p-{order}"), "type": "order.placed", "occurred_at": at,
        "order": {"id": order, "customer": c, "currency": "EUR", "total": "30.00",
            "items": [{"sku": "S", "name": "Book", "category": "books", "quantity": 1, "unit_price": "30.00"}],
            "shipping": {"country": "DE"}, "warehouse": "WH-BER", "promised_delivery": "2026-11-17"}})
}

fn event(kind: &str, id: &str, customer: &str, order: Option<&str>, at: &str) -> Value {
    let mut e = json!({"event_id": id, "type": kind, "occurred_at": at, "customer_id": customer});
    if let Some(o) = order {
        e["order_id"] = json!(o);
    }
    e
}

fn delivered(customer: &str, order: &str, at: &str) -> Value {
    let mut e = event(
        "order.delivered",
        &format!("d-{order}"),
        customer,
        Some(order),
        at,
    );
    e["delivered_at"] = json!(at);
    e
}

struct Sender {
    worker: Arc<Worker>,
    clock: Arc<ManualClock>,
    outbox: tempfile::TempDir,
}

fn settings() -> WorkerSettings {
    WorkerSettings {
        concurrency: 4,
        max_tries: 4,
        timeout: Duration::from_millis(400),
        retry_base: Duration::from_millis(500),
        retry_max: Duration::from_secs(60),
        poll: Duration::from_millis(50),
        from: "Shop <hello@shop.example>".into(),
        public_url: "https://shop.example".into(),
    }
}

fn sender_with(
    store: Arc<dyn Store>,
    env: &DecideEnv,
    provider: Option<Arc<dyn Provider>>,
    settings: WorkerSettings,
    at: &str,
) -> Sender {
    let outbox = tempfile::tempdir().unwrap();
    let provider =
        provider.unwrap_or_else(|| Arc::new(OutboxDir::new(outbox.path().to_path_buf())));
    let clock = Arc::new(ManualClock::new(t(at)));
    let worker = Arc::new(Worker::new(
        store,
        Arc::new(arc_swap::ArcSwap::from_pointee(env.clone())),
        provider,
        settings,
        Metrics::new().email,
        clock.clone(),
    ));
    Sender {
        worker,
        clock,
        outbox,
    }
}

fn sender(b: &Backend, env: &DecideEnv, at: &str) -> Sender {
    sender_with(b.store.clone(), env, None, settings(), at)
}

impl Sender {
    async fn at(&self, at: &str) -> usize {
        self.clock.set(t(at));
        self.worker.drain().await.unwrap()
    }

    /// The `.eml` files written, each as its headers and its decoded HTML part.
    fn files(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.outbox.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
            .map(|e| read_eml(&std::fs::read(e.path()).unwrap()))
            .collect();
        out.sort();
        out
    }
}

/// An e-mail as headers (`Name: value` lines, as written) and the decoded HTML body.
fn read_eml(raw: &[u8]) -> String {
    let message = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("a parsable e-mail");
    let text = String::from_utf8_lossy(raw);
    let headers = text.split("\r\n\r\n").next().unwrap_or("").to_string();
    format!(
        "{headers}\n\n{}",
        message
            .body_html(0)
            .map(|h| h.to_string())
            .unwrap_or_default()
    )
}

async fn jobs(store: &dyn Store, order: &str) -> BTreeMap<String, EmailJobRow> {
    store
        .email_jobs(Some(order), None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.followup_id.clone(), r))
        .collect()
}

async fn state(store: &dyn Store, order: &str, followup: &str) -> String {
    let all = jobs(store, order).await;
    let r = all
        .get(followup)
        .unwrap_or_else(|| panic!("no job {order}/{followup}: {all:?}"));
    match &r.reason {
        Some(reason) => format!("{} {reason}", r.state),
        None => r.state.clone(),
    }
}

async fn apply(b: &Backend, env: &DecideEnv, events: &[Value]) {
    b.store.apply_batch(&batch(events), env).await.unwrap();
}

async fn sends_when_due(b: Backend) {
    let env = env_of(RULES);
    apply(
        &b,
        &env,
        &[placed_at("c1", "o1", "2026-11-20T10:00:00Z", None)],
    )
    .await;
    // The held-out follow-up is recorded, keyed like a scheduled one, and never sent.
    assert_eq!(
        state(&*b.store, "o1", "never").await,
        "skipped holdout",
        "{}",
        b.name
    );
    let s = sender(&b, &env, "2026-11-20T11:59:59Z");
    assert_eq!(
        s.at("2026-11-20T11:59:59Z").await,
        0,
        "{}: not due yet",
        b.name
    );
    assert_eq!(s.at("2026-11-20T12:00:00Z").await, 1, "{}", b.name);
    assert_eq!(state(&*b.store, "o1", "thanks").await, "sent", "{}", b.name);
    let files = s.files();
    assert_eq!(files.len(), 1, "{}", b.name);
    let eml = &files[0];
    assert!(eml.contains("Subject: Hello Greta"), "{eml}");
    assert!(eml.contains("To: Greta <c1@mail.example>"), "{eml}");
    assert!(
        eml.contains("List-Unsubscribe: <https://shop.example/u/"),
        "{eml}"
    );
    assert!(
        eml.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{eml}"
    );
    // Nothing is sent twice: the job is finished.
    assert_eq!(s.at("2026-11-20T13:00:00Z").await, 0, "{}", b.name);
    // Replaying the events schedules nothing new.
    apply(
        &b,
        &env,
        &[placed_at("c1", "o1", "2026-11-20T10:00:00Z", None)],
    )
    .await;
    assert_eq!(s.at("2026-11-20T13:00:00Z").await, 0, "{}", b.name);
    assert_eq!(s.files().len(), 1, "{}", b.name);
}
on_both!(an_email_goes_when_due_and_once, sends_when_due);

async fn skip_reasons(b: Backend) {
    let env = env_of(RULES);
    let at = "2026-11-20T10:00:00Z";
    apply(
        &b,
        &env,
        &[
            placed_at("unsub", "o-unsub", at, None),
            placed_at("link", "o-link", at, None),
            placed_at("bounced", "o-bounced", at, None),
            placed_at("cancel", "o-cancel", at, None),
            placed_at("returned", "o-returned", at, None),
            placed_at("again", "o-again", at, None),
            placed_at("busy", "o-busy", at, None),
            placed_at("late", "o-late", "2026-11-10T10:00:00Z", None),
        ],
    )
    .await;
    apply(
        &b,
        &env,
        &[
            event(
                "customer.unsubscribed",
                "u1",
                "unsub",
                None,
                "2026-11-20T10:30:00Z",
            ),
            event(
                "order.cancelled",
                "x1",
                "cancel",
                Some("o-cancel"),
                "2026-11-20T10:30:00Z",
            ),
            event(
                "order.returned",
                "r1",
                "returned",
                Some("o-returned"),
                "2026-11-20T10:30:00Z",
            ),
            // A second order: the first one's "first order" thank-you no longer fits.
            placed_at("again", "o-again-2", "2026-11-20T11:00:00Z", None),
            // Delivered three days late: an apology due at 11:30, before the thank-you.
            delivered("busy", "o-busy", "2026-11-20T10:30:00Z"),
        ],
    )
    .await;
    b.store
        .unsubscribe("link", t("2026-11-20T10:40:00Z"))
        .await
        .unwrap();
    let suppressed = b
        .store
        .suppress(
            "  Bounced@Mail.example ",
            "hard_bounce",
            t("2026-11-20T10:41:00Z"),
        )
        .await
        .unwrap();
    assert!(suppressed.new, "{}", b.name);
    let s = sender(&b, &env, at);
    s.at("2026-11-20T11:30:00Z").await;
    s.at("2026-11-20T12:00:00Z").await;
    let store = &*b.store;
    assert_eq!(
        state(store, "o-unsub", "thanks").await,
        "skipped unsubscribed",
        "{}",
        b.name
    );
    assert_eq!(
        state(store, "o-link", "thanks").await,
        "skipped unsubscribed",
        "{}",
        b.name
    );
    assert_eq!(
        state(store, "o-bounced", "thanks").await,
        "skipped suppressed",
        "{}",
        b.name
    );
    assert_eq!(
        state(store, "o-cancel", "thanks").await,
        "skipped cancelled",
        "{}",
        b.name
    );
    assert_eq!(
        state(store, "o-returned", "thanks").await,
        "skipped cancelled",
        "{}",
        b.name
    );
    assert_eq!(
        state(store, "o-again", "thanks").await,
        "skipped condition",
        "{}",
        b.name
    );
    assert!(
        !jobs(store, "o-again-2").await.contains_key("thanks"),
        "{}: a second order schedules no first-order thanks",
        b.name
    );
    // At most one e-mail in 7 days: the apology went, the thank-you did not.
    assert_eq!(state(store, "o-busy", "sorry").await, "sent", "{}", b.name);
    assert_eq!(
        state(store, "o-busy", "thanks").await,
        "skipped frequency",
        "{}",
        b.name
    );
    // Due on the 10th, still not sent on the 20th: past expire_after (3 days).
    assert_eq!(
        state(store, "o-late", "thanks").await,
        "skipped expired",
        "{}",
        b.name
    );
    // Only the apology was sent, and only it issued a coupon.
    assert_eq!(s.files().len(), 1, "{}", b.name);
    let codes: Vec<String> = store
        .coupons_of_order("o-busy")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.code)
        .collect();
    assert_eq!(codes.len(), 1, "{}", b.name);
    assert!(
        s.files()[0].contains(&codes[0]),
        "{}: the e-mail shows its code",
        b.name
    );
    // Unsubscribing by link once is told to the shop once; after the shop's own event, or a
    // second time, it is not told again.
    let told = |rows: Vec<packwell::store::OutboxRow>| {
        rows.iter()
            .filter(|r| r.topic == "customer-preferences")
            .count()
    };
    assert_eq!(
        told(store.unsent_outbox(10_000).await.unwrap()),
        1,
        "{}",
        b.name
    );
    assert!(
        !store
            .unsubscribe("link", t("2026-11-20T13:00:00Z"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .unsubscribe("unsub", t("2026-11-20T13:00:00Z"))
            .await
            .unwrap()
    );
    assert_eq!(
        told(store.unsent_outbox(10_000).await.unwrap()),
        1,
        "{}",
        b.name
    );
    assert!(
        store.is_unsubscribed("unsub").await.unwrap()
            && store.is_unsubscribed("link").await.unwrap()
    );
    assert!(!store.is_unsubscribed("busy").await.unwrap());
    for order in ["o-unsub", "o-link", "o-bounced", "o-cancel", "o-again"] {
        assert!(
            store.coupons_of_order(order).await.unwrap().is_empty(),
            "{}",
            b.name
        );
    }
}
on_both!(every_skip_reason, skip_reasons);

async fn coupons_when_sent(b: Backend) {
    let env = env_of(RULES);
    apply(
        &b,
        &env,
        &[
            // An earlier order: the thank-you for o1 does not apply (not a first order).
            placed_at("c1", "o0", "2026-11-01T10:00:00Z", None),
            placed_at("c1", "o1", "2026-11-18T10:00:00Z", None),
            delivered("c1", "o1", "2026-11-20T10:00:00Z"),
        ],
    )
    .await;
    let store = &*b.store;
    // Scheduled, not issued: no coupon exists before the e-mail goes.
    assert!(
        store.coupons_of_order("o1").await.unwrap().is_empty(),
        "{}",
        b.name
    );
    let received_before = store.profile("c1").await.unwrap().unwrap().coupons_received;
    let s = sender(&b, &env, "2026-11-20T11:00:00Z");
    s.at("2026-11-20T11:00:00Z").await;
    assert_eq!(state(store, "o1", "sorry").await, "sent", "{}", b.name);
    let coupons = store.coupons_of_order("o1").await.unwrap();
    assert_eq!(coupons.len(), 1, "{}", b.name);
    let expected = env.key.code("SORRY", "o1", "sorry", "sorry-coupon", 0);
    assert_eq!(
        coupons[0].code, expected,
        "{}: the code is derived, the same on a replay",
        b.name
    );
    assert_eq!(
        store.profile("c1").await.unwrap().unwrap().coupons_received,
        received_before + 1,
        "{}",
        b.name
    );
    let issued: Vec<Value> = store
        .unsent_outbox(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.topic == "coupons")
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .filter(|m: &Value| m["code"] == expected.as_str())
        .collect();
    assert_eq!(issued.len(), 1, "{}", b.name);
    assert_eq!(issued[0]["rule_id"], "sorry");
    assert_eq!(
        issued[0]["expires_on"], "2026-12-20",
        "{}: 30 days from the sending",
        b.name
    );
    assert!(
        s.files()[0].contains(&format!("{expected}: €5.00")),
        "{}",
        s.files()[0]
    );
    // An operator's resend sends it again, with the same coupon, under a new key.
    let done = store
        .resend_email("o1", "sorry", "test", t("2026-11-21T11:00:00Z").timestamp())
        .await
        .unwrap();
    assert!(
        matches!(done, packwell::store::emails::EmailControl::Done { .. }),
        "{done:?}"
    );
    s.at("2026-11-21T11:00:00Z").await;
    assert_eq!(state(store, "o1", "sorry").await, "sent", "{}", b.name);
    assert_eq!(
        store.coupons_of_order("o1").await.unwrap().len(),
        1,
        "{}",
        b.name
    );
    let files = s.files();
    assert_eq!(
        files.len(),
        2,
        "{}: two files, two idempotency keys",
        b.name
    );
    assert!(files.iter().all(|f| f.contains(&expected)), "{}", b.name);
    // A held-out job is the control group: it is never sent, not even by hand.
    let refused = store
        .resend_email("o1", "never", "test", t("2026-11-21T11:00:00Z").timestamp())
        .await
        .unwrap();
    assert!(
        matches!(
            refused,
            packwell::store::emails::EmailControl::Refused { .. }
        ),
        "{refused:?}"
    );
}
on_both!(coupons_are_issued_when_the_email_goes, coupons_when_sent);

async fn quiet_hours(b: Backend) {
    let env = env_of(RULES);
    apply(
        &b,
        &env,
        &[
            // Due 02:00 UTC: 03:00 in Berlin (the default zone), 21:00 in New York.
            placed_at("berlin", "o-ber", "2026-11-20T00:00:00Z", None),
            placed_at(
                "ny",
                "o-ny",
                "2026-11-20T00:00:00Z",
                Some("America/New_York"),
            ),
        ],
    )
    .await;
    let s = sender(&b, &env, "2026-11-20T02:00:00Z");
    assert_eq!(s.at("2026-11-20T02:00:00Z").await, 2, "{}", b.name);
    assert_eq!(
        state(&*b.store, "o-ber", "thanks").await,
        "pending",
        "{}",
        b.name
    );
    let ber = &jobs(&*b.store, "o-ber").await["thanks"];
    assert_eq!(
        ber.due_at,
        t("2026-11-20T07:00:00Z").timestamp(),
        "{}: 08:00 in Berlin",
        b.name
    );
    let ny = &jobs(&*b.store, "o-ny").await["thanks"];
    assert_eq!(
        ny.due_at,
        t("2026-11-20T13:00:00Z").timestamp(),
        "{}: 08:00 in New York",
        b.name
    );
    assert_eq!(s.at("2026-11-20T06:59:59Z").await, 0, "{}", b.name);
    assert_eq!(s.at("2026-11-20T07:00:00Z").await, 1, "{}", b.name);
    assert_eq!(
        state(&*b.store, "o-ber", "thanks").await,
        "sent",
        "{}",
        b.name
    );
    assert_eq!(
        state(&*b.store, "o-ny", "thanks").await,
        "pending",
        "{}",
        b.name
    );
    assert_eq!(s.at("2026-11-20T13:00:00Z").await, 1, "{}", b.name);
    assert_eq!(
        state(&*b.store, "o-ny", "thanks").await,
        "sent",
        "{}",
        b.name
    );
}
on_both!(quiet_hours_hold_emails_in_the_customers_zone, quiet_hours);

/// Three follow-ups per order, at most two e-mails per customer: two workers on two
/// connection pools race for the same customers' jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_frequency_cap_holds_under_two_workers_on_postgres() {
    let rules = r#"
[[followup]]
id = "a"
on = "order.placed"
template = "hello"
after = "1h"
[[followup]]
id = "b"
on = "order.placed"
template = "hello"
after = "1h"
[[followup]]
id = "c"
on = "order.placed"
template = "hello"
after = "1h"
[email]
max_per_customer = { count = 2, per = "7d" }
"#;
    let b = postgres().await;
    let env = env_of(rules);
    let events: Vec<Value> = (0..40)
        .map(|i| {
            placed_at(
                &format!("c{i}"),
                &format!("o{i}"),
                "2026-11-20T10:00:00Z",
                None,
            )
        })
        .collect();
    apply(&b, &env, &events).await;
    let first = sender(&b, &env, "2026-11-20T11:00:00Z");
    let second = sender_with(
        b.another().await,
        &env,
        None,
        settings(),
        "2026-11-20T11:00:00Z",
    );
    let (w1, w2) = (first.worker.clone(), second.worker.clone());
    let (n1, n2) = tokio::join!(
        tokio::spawn(async move { w1.drain().await.unwrap() }),
        tokio::spawn(async move { w2.drain().await.unwrap() })
    );
    let (n1, n2) = (n1.unwrap(), n2.unwrap());
    assert_eq!(n1 + n2, 120, "every job claimed once");
    assert!(n1 > 0 && n2 > 0, "both workers took part: {n1} and {n2}");
    for i in 0..40 {
        let all = jobs(&*b.store, &format!("o{i}")).await;
        let sent = all.values().filter(|j| j.state == "sent").count();
        let capped = all
            .values()
            .filter(|j| j.reason.as_deref() == Some("frequency"))
            .count();
        assert_eq!((sent, capped), (2, 1), "customer c{i}: {all:?}");
    }
    assert_eq!(first.files().len() + second.files().len(), 80);
}

/// A request the provider got: its idempotency key, auth header and JSON body.
type Request = (String, Option<String>, Value);

/// A local e-mail provider: records every request and answers from a script per
/// idempotency key; a key is accepted (2xx) at most once, later requests with it get 200
/// without counting, as a de-duplicating provider does.
#[derive(Clone, Default)]
struct LocalProvider {
    seen: Arc<Mutex<Vec<Request>>>,
    accepted: Arc<Mutex<BTreeMap<String, usize>>>,
    script: Arc<Mutex<Vec<&'static str>>>,
}

async fn provider_handler(
    State(p): State<LocalProvider>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let auth = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    p.seen.lock().unwrap().push((key.clone(), auth, json));
    let step = {
        let mut script = p.script.lock().unwrap();
        if script.is_empty() {
            "200"
        } else {
            script.remove(0)
        }
    };
    match step {
        "429" => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "2")],
            "slow down",
        )
            .into_response(),
        "500" => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        "400" => (StatusCode::BAD_REQUEST, "bad address").into_response(),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (StatusCode::OK, "late").into_response()
        }
        _ => {
            *p.accepted.lock().unwrap().entry(key).or_default() += 1;
            (StatusCode::OK, "{\"id\":\"msg-1\"}").into_response()
        }
    }
}

async fn start_provider(script: &[&'static str]) -> (LocalProvider, String) {
    let p = LocalProvider {
        script: Arc::new(Mutex::new(script.to_vec())),
        ..Default::default()
    };
    let app = axum::Router::new()
        .route("/send", axum::routing::post(provider_handler))
        .with_state(p.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (p, format!("http://{addr}/send"))
}

fn http_provider(url: &str, timeout_ms: u64) -> Arc<dyn Provider> {
    let api = HttpApi {
        url: url.to_string(),
        auth_header: HeaderName::from_static("x-api-key"),
        auth: Some(packwell::config::Secret("k-123".into())),
    };
    Arc::new(Http::new(&api, Duration::from_millis(timeout_ms)).unwrap())
}

/// Drains again after each retry's due time until nothing is left or `rounds` ran out.
async fn drain_retries(s: &Sender, rounds: usize) {
    for _ in 0..rounds {
        s.worker.drain().await.unwrap();
        s.clock.advance(chrono::Duration::seconds(120));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_delivery_retries_429_500_and_timeouts_under_one_key() {
    let b = sqlite().await;
    let env = env_of(RULES);
    apply(
        &b,
        &env,
        &[placed_at("c1", "o1", "2026-11-20T10:00:00Z", None)],
    )
    .await;
    let (p, url) = start_provider(&["429", "500", "hang", "200"]).await;
    let s = sender_with(
        b.store.clone(),
        &env,
        Some(http_provider(&url, 500)),
        settings(),
        "2026-11-20T12:00:00Z",
    );
    // The 429 asked for 2 s: the job waits that long, not the back-off.
    s.worker.drain().await.unwrap();
    let job = &jobs(&*b.store, "o1").await["thanks"];
    assert_eq!(job.state, "retry");
    assert_eq!(
        job.due_at,
        t("2026-11-20T12:00:02Z").timestamp(),
        "Retry-After honoured"
    );
    assert!(
        job.detail.as_deref().unwrap_or("").contains("429"),
        "{job:?}"
    );
    drain_retries(&s, 5).await;
    let job = &jobs(&*b.store, "o1").await["thanks"];
    assert_eq!(job.state, "sent", "{job:?}");
    assert_eq!(job.tries, 4);
    let seen = p.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "429, 500, a timeout, then 200");
    let key = &seen[0].0;
    assert!(key.starts_with("pw-"), "{key}");
    assert!(
        seen.iter().all(|(k, _, _)| k == key),
        "one idempotency key for every try"
    );
    assert!(
        seen.iter().all(|(_, a, _)| a.as_deref() == Some("k-123")),
        "the configured auth header"
    );
    let body = &seen[3].2;
    assert_eq!(body["from"], "Shop <hello@shop.example>");
    assert_eq!(body["to"], "\"Greta\" <c1@mail.example>");
    assert_eq!(body["subject"], "Hello Greta");
    assert_eq!(body["tags"], json!(["thanks"]));
    assert!(
        body["headers"]["List-Unsubscribe"]
            .as_str()
            .unwrap()
            .starts_with("<https://shop.example/u/")
    );
    assert_eq!(
        body["headers"]["List-Unsubscribe-Post"],
        "List-Unsubscribe=One-Click"
    );
    assert!(
        body["text"].as_str().unwrap().contains("Dear Greta"),
        "{body}"
    );
    assert_eq!(
        *p.accepted.lock().unwrap(),
        BTreeMap::from([(key.clone(), 1)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_delivery_gives_up_after_the_configured_tries_or_a_refusal() {
    let b = sqlite().await;
    let env = env_of(RULES);
    apply(
        &b,
        &env,
        &[
            placed_at("c1", "o1", "2026-11-20T10:00:00Z", None),
            placed_at("c2", "o2", "2026-11-20T10:00:05Z", None),
        ],
    )
    .await;
    // o1 gets 500s until its tries run out; o2 a 400, which no retry mends.
    let (p, url) = start_provider(&["500", "400", "500", "500", "500"]).await;
    let mut one_at_a_time = settings();
    one_at_a_time.concurrency = 1;
    let s = sender_with(
        b.store.clone(),
        &env,
        Some(http_provider(&url, 500)),
        one_at_a_time,
        "2026-11-20T12:00:05Z",
    );
    drain_retries(&s, 6).await;
    let o1 = &jobs(&*b.store, "o1").await["thanks"];
    assert_eq!((o1.state.as_str(), o1.tries), ("failed", 4), "{o1:?}");
    assert!(
        o1.detail
            .as_deref()
            .unwrap_or("")
            .contains("gave up after 4 tries"),
        "{o1:?}"
    );
    let o2 = &jobs(&*b.store, "o2").await["thanks"];
    assert_eq!((o2.state.as_str(), o2.tries), ("failed", 1), "{o2:?}");
    assert!(o2.detail.as_deref().unwrap_or("").contains("400"), "{o2:?}");
    assert_eq!(p.seen.lock().unwrap().len(), 5);
    assert!(p.accepted.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_emails_each_accepted_once() {
    let b = sqlite().await;
    let env = env_of(RULES);
    let events: Vec<Value> = (0..30)
        .map(|i| {
            placed_at(
                &format!("c{i}"),
                &format!("o{i}"),
                "2026-11-20T10:00:00Z",
                None,
            )
        })
        .collect();
    apply(&b, &env, &events).await;
    // Every fourth request fails once; the rest go through.
    let (p, url) = start_provider(&[
        "500", "200", "200", "200", "500", "200", "200", "200", "500",
    ])
    .await;
    let s = sender_with(
        b.store.clone(),
        &env,
        Some(http_provider(&url, 1000)),
        settings(),
        "2026-11-20T12:00:00Z",
    );
    drain_retries(&s, 4).await;
    let accepted = p.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 30, "one key per job");
    assert!(accepted.values().all(|n| *n == 1), "{accepted:?}");
    for i in 0..30 {
        assert_eq!(state(&*b.store, &format!("o{i}"), "thanks").await, "sent");
    }
}

/// The coupons of an order's e-mail, by state.
async fn coupon_states(store: &dyn Store, order: &str) -> Vec<String> {
    store
        .coupons_of_order(order)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.state)
        .collect()
}

async fn voided_for_emails(store: &dyn Store) -> usize {
    store
        .unsent_outbox(10_000)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.topic == "coupons")
        .map(|r| serde_json::from_slice::<Value>(&r.payload).unwrap())
        .filter(|m| m["type"] == "coupon.voided" && m["reason"] == "email_not_sent")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coupons_of_emails_that_never_went_are_voided_and_retries_are_checked_again() {
    let b = sqlite().await;
    let env = env_of(RULES);
    // Three late deliveries: three apologies with a coupon each, due at 11:00.
    let mut events = Vec::new();
    for c in ["unsub", "refused", "returned"] {
        events.push(placed_at(
            c,
            &format!("o-{c}"),
            "2026-11-01T10:00:00Z",
            None,
        ));
        events.push(delivered(c, &format!("o-{c}"), "2026-11-20T10:00:00Z"));
    }
    apply(&b, &env, &events).await;
    let (p, url) = start_provider(&["500", "400", "500"]).await;
    let mut one_at_a_time = settings();
    one_at_a_time.concurrency = 1;
    let s = sender_with(
        b.store.clone(),
        &env,
        Some(http_provider(&url, 500)),
        one_at_a_time,
        "2026-11-20T11:00:00Z",
    );
    s.worker.drain().await.unwrap();
    let store = &*b.store;
    // Handed over, so their coupons were issued; the first and third wait for a retry, the
    // second was refused for good: its coupon is voided.
    let all: Vec<String> = [
        state(store, "o-unsub", "sorry").await,
        state(store, "o-refused", "sorry").await,
        state(store, "o-returned", "sorry").await,
    ]
    .into();
    assert_eq!(all, ["retry", "failed", "retry"]);
    assert_eq!(coupon_states(store, "o-unsub").await, ["issued"]);
    assert_eq!(coupon_states(store, "o-refused").await, ["voided"]);
    // Before the retries: one customer unsubscribes, the other's order comes back.
    store
        .unsubscribe("unsub", t("2026-11-20T11:00:30Z"))
        .await
        .unwrap();
    apply(
        &b,
        &env,
        &[event(
            "order.returned",
            "ret-1",
            "returned",
            Some("o-returned"),
            "2026-11-20T11:00:30Z",
        )],
    )
    .await;
    assert_eq!(
        state(store, "o-returned", "sorry").await,
        "skipped cancelled"
    );
    drain_retries(&s, 2).await;
    assert_eq!(
        state(store, "o-unsub", "sorry").await,
        "skipped unsubscribed"
    );
    for order in ["o-unsub", "o-refused", "o-returned"] {
        assert_eq!(coupon_states(store, order).await, ["voided"], "{order}");
    }
    assert_eq!(voided_for_emails(store).await, 3);
    assert_eq!(p.seen.lock().unwrap().len(), 3, "no retry went out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscribed_event_does_not_undo_a_newer_unsubscribe() {
    let b = sqlite().await;
    let env = env_of(RULES);
    apply(
        &b,
        &env,
        &[placed_at("c1", "o1", "2026-11-20T10:00:00Z", None)],
    )
    .await;
    b.store
        .unsubscribe("c1", t("2026-11-20T11:00:00Z"))
        .await
        .unwrap();
    let older = event(
        "customer.subscribed",
        "s-old",
        "c1",
        None,
        "2026-11-20T10:30:00Z",
    );
    apply(&b, &env, &[older]).await;
    assert!(
        b.store.is_unsubscribed("c1").await.unwrap(),
        "the click is newer"
    );
    let newer = event(
        "customer.subscribed",
        "s-new",
        "c1",
        None,
        "2026-11-20T11:30:00Z",
    );
    apply(&b, &env, &[newer]).await;
    assert!(!b.store.is_unsubscribed("c1").await.unwrap());
}
