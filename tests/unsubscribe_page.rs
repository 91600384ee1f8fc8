//! The customer's unsubscribe page at `/u/{token}`, in a real browser: headless Chromium driven
//! over the DevTools protocol against `packwell run` (the binary, with the embedded broker). A
//! customer known from an order opens the link of an e-mail: the page shows a button, and
//! opening it again (as a mail scanner's prefetch would) changes nothing and emits nothing. The
//! button unsubscribes: the page says so, `customer-preferences` gets one
//! `customer.unsubscribed` with the customer's address, and a second POST (a mail client's
//! one-click) emits nothing again. Opened later, the page says the customer is unsubscribed,
//! with no button; a tampered link shows the not-found page (404). The page after the click is
//! left as a screenshot in `target/test-artifacts/unsubscribe-page.png`.
//!
//! Needs a Chromium: `PACKWELL_CHROMIUM`, else `chromium`, `chromium-browser` or
//! `google-chrome` on PATH. Without one the test says it was skipped, unless
//! `PACKWELL_REQUIRE_TOOLS=1` (as in CI), where a missing browser is a failure.

mod browser_support;
mod service_support;

use browser_support::*;
use headless_chrome::Tab;
use packwell::coupon::CouponKey;
use packwell::email::token::unsubscribe_token;
use packwell::kafka::fast_consumer_config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value;
use service_support::*;
use std::path::Path;
use std::time::{Duration, Instant};

const ORDER_FILE: &str = "first-book-order.json";
const ORDER: &str = "O-1001"; // examples/orders/first-book-order.json
const CUSTOMER: &str = "C-1001";
const EMAIL: &str = "lena.hoffmann@example.com";
const PREFERENCES: &str = "customer-preferences";
/// About the size of a phone held sideways, or a small laptop window.
const VIEWPORT: (u32, u32) = (800, 700);
/// How long a message that should not come is waited for: the relay looks at the outbox every
/// 200 ms, and is woken at once by a new unsubscribe.
const QUIET: Duration = Duration::from_secs(2);

#[test]
fn a_customer_unsubscribes_with_the_button_once_and_gets_are_harmless() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };

    // The service on its defaults (SQLite under data/, the key in data/coupon.key), and one
    // order so that the customer's profile, with the e-mail address, is in the store.
    let broker = TestBroker::start();
    let work = Workdir::new();
    let service = ServiceProcess::start(work.path(), &broker.addr, &[]);
    let event = example_order(ORDER_FILE);
    assert_eq!(customer_key(&event).as_deref(), Some(CUSTOMER), "{event}");
    assert_eq!(event["order"]["customer"]["email"], EMAIL, "{event}");
    produce(
        &broker.addr,
        &[(customer_key(&event), event.to_string().into_bytes())],
    );
    // The profile and the decision are stored in one batch before the decision is relayed.
    let decided = read_topic(
        &broker.addr,
        "packing-instructions",
        Duration::from_secs(60),
        |m| m.iter().any(|m| m.key.as_deref() == Some(ORDER)),
    );
    assert!(
        decided.iter().any(|m| m.key.as_deref() == Some(ORDER)),
        "no packing instruction for {ORDER} within 60 s; the service's log:\n{}",
        service.log()
    );

    let key_file = work.path().join("data/coupon.key");
    let key = CouponKey::read(&key_file)
        .unwrap_or_else(|e| panic!("{}: {e}", key_file.display()))
        .unwrap_or_else(|| panic!("packwell run made no key at {}", key_file.display()));
    let token = unsubscribe_token(&key, CUSTOMER);
    let url = format!("http://{}/u/{token}", service.http);
    let preferences = TopicCount::new(&broker.addr, PREFERENCES);
    assert_eq!(preferences.messages(), 0, "nothing unsubscribed yet");

    // A plain GET: an HTML page of its own, with a content security policy. (reqwest has no
    // TLS crypto provider of its own and refuses to build a client before one is chosen.)
    packwell::email::provider::ensure_tls_provider();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let response = http.get(&url).send().expect("GET the unsubscribe page");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = header(&response, "content-type");
    assert!(content_type.starts_with("text/html"), "{content_type:?}");
    let policy = header(&response, "content-security-policy");
    assert!(
        !policy.trim().is_empty(),
        "an empty content-security-policy"
    );
    let body = response.text().expect("page body");
    assert!(body.contains("id=\"unsubscribe\""), "no button in {body}");

    let (_browser, tab) = launch(chromium, VIEWPORT);
    // Waits go by the page's state, never by DevTools events: this crate's messages are an
    // untagged enum, and with serde_json's `arbitrary_precision` (on for the whole build, see
    // Cargo.toml) events with fractional numbers (timestamps) fail to parse and are dropped,
    // so `wait_until_navigated` would never return. Replies to calls parse. So that a wait
    // cannot be met by the page still on screen, each navigation first marks the old page
    // (`mark_page`) and the wait asks for an unmarked one (`wait_for_new_page`).

    // The link as the e-mail gives it, opened twice (a scanner's prefetch, then the person).
    mark_page(&tab);
    tab.navigate_to(&url).expect("open the unsubscribe page");
    wait_for_new_page(
        &tab,
        "the page with its button",
        "!!document.getElementById('unsubscribe')",
    );
    assert_button_page(&tab);
    mark_page(&tab);
    tab.reload(false, None).expect("reload");
    wait_for_new_page(
        &tab,
        "the reloaded page",
        "!!document.getElementById('unsubscribe')",
    );
    assert_button_page(&tab);
    // Three GETs: none of them unsubscribed, so the relay has nothing to send.
    let deadline = Instant::now() + QUIET;
    while Instant::now() < deadline {
        assert_eq!(
            preferences.messages(),
            0,
            "a GET of the unsubscribe page emitted a message"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The button: the form posts to the same address and the answer says it is done.
    mark_page(&tab);
    tab.find_element("#unsubscribe")
        .expect("unsubscribe button")
        .click()
        .expect("click unsubscribe");
    wait_for_new_page(
        &tab,
        "the page after the click",
        "document.querySelector('h1')?.textContent === 'You are unsubscribed'",
    );
    assert_eq!(
        eval(&tab, "location.pathname"),
        format!("/u/{token}").as_str(),
        "the form posts to its own address"
    );
    assert_eq!(
        eval(&tab, "document.querySelectorAll('button, form').length"),
        0,
        "nothing left to click after unsubscribing"
    );
    let screenshot = artifacts_dir().join("unsubscribe-page.png");
    std::fs::write(&screenshot, whole_page_png(&tab, VIEWPORT)).expect("write screenshot");
    eprintln!("screenshot: {}", screenshot.display());

    // One message, for this customer, with the address of the profile.
    let messages = read_topic(&broker.addr, PREFERENCES, Duration::from_secs(30), |m| {
        !m.is_empty()
    });
    let [message] = messages.as_slice() else {
        panic!(
            "expected one message on {PREFERENCES} within 30 s, got {messages:?}; the service's log:\n{}",
            service.log()
        );
    };
    assert_eq!(message.key.as_deref(), Some(CUSTOMER), "{message:?}");
    let body = message.json();
    assert_eq!(body["schema_version"], 1, "{body}");
    assert_eq!(body["type"], "customer.unsubscribed", "{body}");
    assert_eq!(body["customer_id"], CUSTOMER, "{body}");
    assert_eq!(body["email"], EMAIL, "{body}");
    let occurred_at = body["occurred_at"].as_str().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(occurred_at).is_ok(),
        "occurred_at is not an RFC 3339 time: {body}"
    );
    assert_schema_valid("customer-preference.schema.json", &body);

    // A mail client's one-click POST afterwards: the same answer, nothing emitted again.
    let again = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .expect("POST again");
    let quiet_from = Instant::now();
    assert_eq!(again.status().as_u16(), 200);
    let text = again.text().expect("body");
    assert!(text.contains("You are unsubscribed"), "{text}");

    // Opened again: unsubscribed, no button.
    mark_page(&tab);
    tab.navigate_to(&url).expect("open the page again");
    wait_for_new_page(
        &tab,
        "the page of an unsubscribed customer",
        "document.querySelector('h1')?.textContent === 'You are unsubscribed'",
    );
    assert_eq!(
        eval(&tab, "document.querySelectorAll('button, form').length"),
        0,
        "no button once unsubscribed"
    );

    // One character of the tag changed: the link does not work, for the browser and for HTTP.
    let tampered = tamper(&token);
    let tampered_url = format!("http://{}/u/{tampered}", service.http);
    mark_page(&tab);
    tab.navigate_to(&tampered_url)
        .expect("open the tampered link");
    wait_for_new_page(
        &tab,
        "the page of a link that does not work",
        "document.querySelector('h1')?.textContent === 'This link does not work'",
    );
    assert_eq!(
        eval(&tab, "document.querySelectorAll('button, form').length"),
        0
    );
    let response = http
        .get(&tampered_url)
        .send()
        .expect("GET the tampered link");
    assert_eq!(response.status().as_u16(), 404);
    let content_type = header(&response, "content-type");
    assert!(content_type.starts_with("text/html"), "{content_type:?}");
    let text = response.text().expect("body");
    assert!(text.contains("This link does not work"), "{text}");
    let response = http
        .post(&tampered_url)
        .body("List-Unsubscribe=One-Click")
        .send()
        .expect("POST the tampered link");
    assert_eq!(response.status().as_u16(), 404);

    // Still the one message, a quiet while after the second POST.
    loop {
        assert_eq!(
            preferences.messages(),
            1,
            "exactly one customer.unsubscribed on {PREFERENCES}"
        );
        if quiet_from.elapsed() >= QUIET {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Counts the messages ever written to a topic (the sum of its partitions' high watermarks):
/// unlike a consumer that may not have joined its group yet, a zero here means none.
struct TopicCount {
    consumer: BaseConsumer,
    topic: &'static str,
    partitions: Vec<i32>,
}

impl TopicCount {
    fn new(brokers: &str, topic: &'static str) -> TopicCount {
        let consumer: BaseConsumer = fast_consumer_config(brokers, "unsubscribe-page-watermarks")
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        assert!(!partitions.is_empty(), "the broker has no topic {topic}");
        TopicCount {
            consumer,
            topic,
            partitions,
        }
    }

    fn messages(&self) -> i64 {
        self.partitions
            .iter()
            .map(|&p| {
                self.consumer
                    .fetch_watermarks(self.topic, p, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("watermarks of {}/{p}: {e}", self.topic))
                    .1
            })
            .sum()
    }
}

/// The token with the first character of its tag (after the '.') changed.
fn tamper(token: &str) -> String {
    let (id, tag) = token
        .split_once('.')
        .unwrap_or_else(|| panic!("a token is `id.tag`: {token:?}"));
    let mut chars = tag.chars();
    let first = chars
        .next()
        .unwrap_or_else(|| panic!("an empty tag in {token:?}"));
    let other = if first == 'A' { 'B' } else { 'A' };
    format!("{id}.{other}{}", chars.as_str())
}

/// The page before the customer clicked: its button, in a form posting to the page itself.
fn assert_button_page(tab: &Tab) {
    assert_eq!(
        eval(
            tab,
            "document.getElementById('unsubscribe').textContent.trim()"
        ),
        "Unsubscribe"
    );
    assert_eq!(
        eval(tab, "document.getElementById('unsubscribe').type"),
        "submit"
    );
    assert_eq!(
        eval(tab, "document.getElementById('unsubscribe').form?.method"),
        "post"
    );
    assert_eq!(
        eval(
            tab,
            "document.getElementById('unsubscribe').form?.action === location.href"
        ),
        true,
        "the form posts to the page's own address"
    );
    let heading = eval(tab, "document.querySelector('h1')?.textContent ?? ''");
    assert_ne!(heading, "You are unsubscribed", "a GET unsubscribed");
}

/// A response header as text, or a failure naming it.
fn header(response: &reqwest::blocking::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {:?}", response.headers()))
        .to_str()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .to_string()
}

/// Checks a message against its schema in `schemas/`, formats included.
fn assert_schema_valid(schema: &str, message: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(schema);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let errors: Vec<String> = validator
        .iter_errors(message)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{message} does not fit {}: {errors:?}",
        path.display()
    );
}

/// Marks the page now on screen, so that `wait_for_new_page` knows it from the next one.
fn mark_page(tab: &Tab) {
    eval(tab, "window.__packwellOldPage = true");
}

/// Waits until a page other than the marked one has loaded and `condition` holds in it.
fn wait_for_new_page(tab: &Tab, what: &str, condition: &str) {
    let condition = format!(
        "window.__packwellOldPage !== true && document.readyState === 'complete' && ({condition})"
    );
    // While the next page loads, an evaluation may fail (no execution context): not yet.
    wait_for(what, Duration::from_secs(30), || {
        tab.evaluate(&condition, false)
            .is_ok_and(|r| r.value == Some(Value::Bool(true)))
    });
}
