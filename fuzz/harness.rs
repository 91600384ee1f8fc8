//! What each fuzz target does with its input, shared by the libFuzzer targets
//! (`fuzz/fuzz_targets/`) and by `tests/fuzz_regressions.rs`, which runs every input the
//! fuzzers ever crashed on (`fuzz/regressions/<target>/`) through the same function.
//!
//! Each function takes any bytes and returns normally; a panic (or an abort) is a finding.
//! Besides "no panic", each checks what must hold for any input: an event set aside changes
//! no history, a replayed event changes nothing, no request is answered with 500, every error
//! of the HTTP API is a JSON body.

#![allow(dead_code)]

use packwell::coupon::CouponKey;
use packwell::engine::{Shop, template_context};
use packwell::event::{Event, EventBody, RejectReason, parse_event};
use packwell::profile::Profile;
use packwell::render::Templates;
use packwell::replay::{Applied, Replay};
use packwell::rules::{RuleSet, load_rules};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/regressions/<name>/` and `cargo fuzz run <name>` call them.
pub const TARGETS: &[(&str, Target)] = &[
    ("event_path", event_path),
    ("rules_folder", rules_folder),
    ("template", template),
    ("request_bodies", request_bodies),
];

/// At most this many events per input: enough for a history, a new order and what follows it.
const MAX_EVENTS: usize = 32;

/// The example order of the repository (`examples/orders/`), decided with the example rules.
const EXAMPLE_ORDER: &str = include_str!("../examples/orders/first-book-order.json");

/// The repository's root: this file is compiled from `fuzz/` (the fuzz crate) and from the
/// package root (the regression test), each with its own manifest folder.
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if here.join("rules").is_dir() {
        here.to_path_buf()
    } else {
        here.parent().unwrap_or(here).to_path_buf()
    }
}

/// The example rules (`rules/`, `templates/`), loaded once.
fn example_rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| {
        let root = repo_root();
        let out = load_rules(&root.join("rules"), &root.join("templates"));
        let errors: Vec<String> = out.errors().map(|f| f.to_string()).collect();
        out.rules
            .unwrap_or_else(|| panic!("the example rules do not load: {errors:?}"))
    })
}

fn key() -> &'static CouponKey {
    static KEY: OnceLock<CouponKey> = OnceLock::new();
    KEY.get_or_init(|| CouponKey::from_bytes(vec![7; 32]))
}

fn example_event() -> Event {
    parse_event(EXAMPLE_ORDER.as_bytes()).expect("the example order parses")
}

// ---------------------------------------------------------------------------------------------
// event_path

/// Each line of the input is an event (the wire format of Kafka `orders`), parsed, folded into
/// the customers' history and decided with the example rules, as `simulate` and `backtest`
/// replay them.
pub fn event_path(data: &[u8]) {
    let shop = Shop::default();
    let mut replay = Replay::new(example_rules(), key(), &shop);
    for (i, line) in data.split(|b| *b == b'\n').take(MAX_EVENTS).enumerate() {
        let Ok(event) = parse_event(line) else {
            continue;
        };
        apply_checked(&mut replay, &event, i % 2 == 1);
    }
}

/// Applies one event and checks what must hold whatever it holds.
fn apply_checked(replay: &mut Replay<'_>, event: &Event, explain: bool) {
    let customer = event.customer_id().to_string();
    let before = snapshot(replay, event, &customer);
    match replay.apply(event, true, explain) {
        Applied::Rejected(r) if r.reason == RejectReason::InternalError => {
            panic!(
                "the decision path panicked on {}: {}",
                event.event_id, r.message
            )
        }
        Applied::Rejected(r) => assert!(
            snapshot(replay, event, &customer) == before,
            "event {} was set aside ({}) but changed the history",
            event.event_id,
            r.message
        ),
        Applied::Decided(outcome) => {
            let EventBody::OrderPlaced(order) = &event.body else {
                panic!("a decision for a {} event", event.type_name());
            };
            let d = &outcome.decision;
            assert_eq!(d.order_id, order.id);
            assert_eq!(d.customer_id, order.customer.id);
            // What the service stores and emits.
            serde_json::to_vec(d).expect("a decision serializes");
        }
        Applied::Unchanged | Applied::Conflict | Applied::Folded { .. } => {}
    }
    // The same event again (a redelivery) changes nothing.
    let after = snapshot(replay, event, &customer);
    match replay.apply(event, true, false) {
        Applied::Unchanged => {}
        other => panic!("event {} applied a second time: {other:?}", event.event_id),
    }
    assert!(snapshot(replay, event, &customer) == after);
}

type Snapshot = (Option<Profile>, Option<packwell::profile::OrderSummary>);

fn snapshot(replay: &Replay<'_>, event: &Event, customer: &str) -> Snapshot {
    (
        replay.history.profile(customer).cloned(),
        event
            .order_id()
            .and_then(|id| replay.history.orders.get(id))
            .cloned(),
    )
}

// ---------------------------------------------------------------------------------------------
// rules_folder

/// A scratch folder of this thread, kept while it runs: files are rewritten per input, and
/// tests running targets side by side do not share one.
fn scratch() -> PathBuf {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().expect("a scratch folder");
    }
    DIR.with(|d| d.path().to_path_buf())
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a folder");
    for entry in std::fs::read_dir(from).expect("read a folder") {
        let entry = entry.expect("read a folder");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}

/// The input up to its first NUL byte is a rule file, `rules/fuzz.toml`; what follows, if
/// anything, is a note template, `templates/notes/fuzz.hbs`, beside a copy of the example
/// templates. The folder is loaded as `validate` and the service load it; rules that load
/// decide the example order.
pub fn rules_folder(data: &[u8]) {
    let out = load_rules_folder(data);
    let Some(rules) = out.rules else {
        assert!(
            out.errors().next().is_some(),
            "no rules and no error to say why"
        );
        return;
    };
    let shop = Shop::default();
    let mut replay = Replay::new(&rules, key(), &shop);
    apply_checked(&mut replay, &example_event(), true);
}

/// The folder of [`rules_folder`]'s input, loaded.
pub fn load_rules_folder(data: &[u8]) -> packwell::rules::LoadOutcome {
    let base = scratch().join("rules_folder");
    let (rules_dir, templates_dir) = (base.join("rules"), base.join("templates"));
    if !templates_dir.is_dir() {
        std::fs::create_dir_all(&rules_dir).expect("create the rules folder");
        copy_folder(&repo_root().join("templates"), &templates_dir);
    }
    let (rule_file, note) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    std::fs::write(rules_dir.join("fuzz.toml"), rule_file).expect("write the rule file");
    let note_path = templates_dir.join("notes/fuzz.hbs");
    match note {
        Some(text) => std::fs::write(&note_path, text).expect("write the note"),
        None => {
            let _ = std::fs::remove_file(&note_path);
        }
    }
    load_rules(&rules_dir, &templates_dir)
}

// ---------------------------------------------------------------------------------------------
// template

/// The first byte picks the part (a note; an e-mail's HTML without a text part, its subject,
/// its text part) and the data (the example order, or one with the largest amounts and
/// unusual names); the rest is the template. The folder is loaded (parsed and checked as
/// `validate` does) and, when it is clean, the template is rendered.
pub fn template(data: &[u8]) {
    let Some((&selector, _)) = data.split_first() else {
        return;
    };
    let Some(Ok(templates)) = load_template(data) else {
        return;
    };
    let part = selector % 4;
    let contexts = template_contexts();
    let ctx = &contexts[usize::from(selector / 4) % contexts.len()];
    if part == 0 {
        let _ = templates.render_note("fuzz", ctx);
    } else if let Ok(email) = templates.render_email("fuzz", ctx) {
        assert!(
            !email.subject.contains(['\r', '\n']),
            "a subject with a line break: {:?}",
            email.subject
        );
    }
}

/// The templates folder of [`template`]'s input, loaded; `None` for an empty input.
pub fn load_template(
    data: &[u8],
) -> Option<Result<Templates, Vec<packwell::render::TemplateIssue>>> {
    let (&selector, text) = data.split_first()?;
    let dir = scratch().join("template");
    let notes = dir.join("notes");
    let email = dir.join("emails/fuzz");
    let part = selector % 4;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(if part == 0 { &notes } else { &email }).expect("create a folder");
    let write = |path: PathBuf, fuzzed: bool, default: &str| {
        let bytes = if fuzzed { text } else { default.as_bytes() };
        std::fs::write(path, bytes).expect("write a template");
    };
    if part == 0 {
        write(notes.join("fuzz.hbs"), true, "");
    } else {
        write(
            email.join("subject.hbs"),
            part == 2,
            "Thanks, {{customer.first_name}}",
        );
        write(
            email.join("html.hbs"),
            part == 1,
            "<p>Dear {{customer.first_name}}, {{money order.total order.currency}}</p>",
        );
        if part == 3 {
            write(email.join("text.hbs"), true, "");
        }
    }
    Some(Templates::load(&dir))
}

/// Template data of CONTRACT §6: the example order, and an order at the edges of what an event
/// may hold.
fn template_contexts() -> &'static [Value] {
    static CONTEXTS: OnceLock<Vec<Value>> = OnceLock::new();
    CONTEXTS.get_or_init(|| {
        // The largest amount an event may carry; coupons in the data are text, as large as a
        // `Decimal` goes.
        let order_max = packwell::event::bounds::MAX_AMOUNT.to_string();
        let max = "79228162514264337593543950335";
        let mut edge: Value = serde_json::from_str(EXAMPLE_ORDER).expect("the example order");
        edge["event_id"] = json!("ev-edge");
        edge["order"]["id"] = json!("O-EDGE");
        edge["order"]["total"] = json!(order_max);
        edge["order"]["items"] = json!([{"sku": "S", "name": "\u{202e}<b>&\"'{{x}}", "category": "books",
            "quantity": 1, "unit_price": order_max}]);
        let customer = &mut edge["order"]["customer"];
        customer["id"] = json!("C-EDGE");
        customer["first_name"] = json!("Zoë\u{0}\r\nBcc: x@example.com");
        customer["locale"] = json!("ar-EG-u-nu-arab");
        let edge_coupon = json!({"code": "EDGE-0000", "title": null, "amount": max,
            "currency": "JPY", "min_order": max, "expires_on": "9999-12-31"});
        let example_coupon = json!({"code": "WELCOME-ABCD", "title": "Welcome back", "amount": "5.00",
            "currency": "EUR", "min_order": "30.00", "expires_on": "2027-01-31"});
        let delivery = json!({"delivered_at": "2026-11-23T10:00:00Z", "late_days": 2});
        [
            (serde_json::from_str(EXAMPLE_ORDER).expect("the example order"), example_coupon, None),
            (edge, edge_coupon, Some(delivery)),
        ]
        .into_iter()
        .map(|(value, coupon, delivery)| {
            let event = packwell::event::event_from_value(&value).expect("a valid event");
            let EventBody::OrderPlaced(order) = &event.body else {
                panic!("not an order");
            };
            let mut profile = Profile::new(&order.customer.id);
            profile
                .apply_placed(order, event.occurred_at)
                .expect("one order folds");
            let mut ctx = template_context(
                &profile,
                order,
                &[coupon],
                event.occurred_at,
                delivery,
                &Shop::default(),
            );
            ctx["unsubscribe_url"] = json!("https://shop.example/u/abc.def");
            ctx
        })
        .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// request_bodies

/// The low three bits of the first byte pick a route of the service's HTTP API; the rest is
/// its body or a part of its path: the packing confirmation (`POST /v1/orders/O-1001/packed`,
/// an order the example rules decided), a bounce or complaint (`POST /v1/email-events`), an
/// unsubscribe link made for the rest as a customer id, an unsubscribe link with the rest as
/// its token (the page, then the one-click `POST`), a confirmation, the insert list and the
/// card of the order id in the rest. The real router runs in this process on a SQLite store in
/// a scratch folder.
pub fn request_bodies(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let api = http_api();
    let json = "application/json";
    let (method, path, body, content_type) = match selector & 7 {
        0 => (
            "POST",
            "/v1/orders/O-1001/packed".to_string(),
            rest.to_vec(),
            json,
        ),
        1 => ("POST", "/v1/email-events".to_string(), rest.to_vec(), json),
        2 => {
            let customer = String::from_utf8_lossy(rest);
            let token = packwell::email::token::unsubscribe_token(&api.key, &customer);
            let body = b"List-Unsubscribe=One-Click".to_vec();
            (
                "POST",
                format!("/u/{token}"),
                body,
                "application/x-www-form-urlencoded",
            )
        }
        3 => (
            "GET",
            format!("/u/{}", percent_encode(rest)),
            Vec::new(),
            "text/plain",
        ),
        4 => (
            "POST",
            format!("/u/{}", percent_encode(rest)),
            Vec::new(),
            "text/plain",
        ),
        5 => {
            let path = format!("/v1/orders/{}/packed", percent_encode(rest));
            (
                "POST",
                path,
                br#"{"station":"fuzz","inserts":[]}"#.to_vec(),
                json,
            )
        }
        6 => (
            "GET",
            format!("/v1/orders/{}/inserts", percent_encode(rest)),
            Vec::new(),
            json,
        ),
        _ => (
            "GET",
            format!("/v1/orders/{}/card", percent_encode(rest)),
            Vec::new(),
            json,
        ),
    };
    let (status, is_json, answer) = api.call(method, &path, body, content_type);
    assert!(
        status != 500,
        "{method} {path} answered 500: {}",
        String::from_utf8_lossy(&answer)
    );
    if path.starts_with("/v1/") && status >= 400 {
        assert!(
            is_json,
            "{method} {path} answered {status} without a JSON body"
        );
        serde_json::from_slice::<Value>(&answer).unwrap_or_else(|e| {
            panic!("{method} {path} answered {status} with a body that is not JSON: {e}")
        });
    }
}

/// Every byte outside the unreserved set of RFC 3986 as `%XX`, so any input makes a path.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const TOKEN: &str = "fuzz-station-token";

/// The service's router on a SQLite store holding the example order, decided.
struct HttpApi {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    key: CouponKey,
    _dir: tempfile::TempDir,
}

fn http_api() -> &'static HttpApi {
    static API: OnceLock<HttpApi> = OnceLock::new();
    API.get_or_init(HttpApi::start)
}

impl HttpApi {
    fn start() -> HttpApi {
        use packwell::service::{Readiness, Settings, Shared, http, metrics::Metrics};
        use packwell::store::{Batch, BatchItem, DecideEnv, Fence};
        use std::sync::atomic::{AtomicBool, AtomicI64};
        use std::sync::{Arc, Mutex};
        use std::time::Duration;

        // Several test threads may send requests at once (the fuzzer sends one at a time).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a scratch folder");
        let db = dir.path().join("packwell.db");
        let store = runtime
            .block_on(packwell::store::open(&db.to_string_lossy()))
            .expect("a SQLite store");
        let env = DecideEnv {
            rules: Arc::new(example_rules().clone()),
            key: key().clone(),
            shop: Shop::default(),
        };
        let batch = Batch {
            fence: Fence::None,
            items: vec![BatchItem {
                offset: 0,
                key: Some(b"C-1001".to_vec()),
                value: EXAMPLE_ORDER.as_bytes().to_vec(),
                event: Ok(example_event()),
                decide: true,
            }],
        };
        runtime
            .block_on(store.apply_batch(&batch, &env))
            .expect("the example order is decided");
        let tokens = packwell::station::Tokens::from_config(&[packwell::config::TokenConfig {
            name: "fuzz".into(),
            token: Some(TOKEN.into()),
            token_sha256: None,
            warehouses: None,
        }])
        .expect("a token");
        let shared = Arc::new(Shared {
            store,
            env: arc_swap::ArcSwap::from_pointee(env),
            metrics: Metrics::new(),
            settings: Settings {
                batch_max: 100,
                batch_wait: Duration::from_millis(10),
                max_outbox_backlog: 10_000,
                max_event_age: chrono::Duration::days(7),
                max_event_bytes: 1 << 20,
            },
            runtime: runtime.handle().clone(),
            stop: tokio_util::sync::CancellationToken::new(),
            kafka_ok: AtomicBool::new(true),
            backlog: AtomicI64::new(0),
            relay_wake: tokio::sync::Notify::new(),
            consumer_done: AtomicBool::new(false),
            abandon: AtomicBool::new(false),
            readiness: Mutex::new(Readiness::default()),
            tokens,
            insert_lists: packwell::station::InsertListCache::new(Duration::from_secs(1), 100),
            reports: Default::default(),
        });
        let router = http::router(
            shared,
            http::Limits {
                max_body_bytes: 64 * 1024,
                request_timeout: Duration::from_secs(5),
            },
        );
        HttpApi {
            runtime,
            router,
            key: key().clone(),
            _dir: dir,
        }
    }

    /// One request through the router: the status, whether the answer says it is JSON, and
    /// its body.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> (u16, bool, Vec<u8>) {
        use hyper::service::Service;
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", content_type)
            .body(axum::body::Body::from(body))
            .expect("a request");
        let service = hyper_util::service::TowerToHyperService::new(self.router.clone());
        self.runtime.block_on(async {
            let response = match service.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let status = response.status().as_u16();
            let is_json = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .expect("the answer's body");
            (status, is_json, body.to_vec())
        })
    }
}
