//! The packer's page at `/station`, in a real browser: headless Chromium driven over the
//! DevTools protocol against `packwell run` (the binary, with the embedded broker). A packer
//! types the token and station, scans an order, sees its note and coupon, prints the card,
//! confirms with one insert left out, and the service then reports the order as packed; a
//! different second confirmation is refused and the page shows the one that stands; an order of
//! another warehouse shows the service's not-found message. The page is left as a screenshot in
//! `target/test-artifacts/station-page.png` for a person to look at.
//!
//! Needs a Chromium: `PACKWELL_CHROMIUM`, else `chromium`, `chromium-browser` or
//! `google-chrome` on PATH. Without one the test says it was skipped, unless
//! `PACKWELL_REQUIRE_TOOLS=1` (as in CI), where a missing browser is a failure.

mod browser_support;
mod service_support;

use browser_support::*;
use serde_json::Value;
use service_support::*;
use std::time::Duration;

/// Limited to WH-BER: the station's view.
const STATION_TOKEN: &str = "ber-station-token";
/// No warehouse limit: lets the test see that the other warehouse's order was decided.
const OFFICE_TOKEN: &str = "office-token";
const BERLIN_ORDER: &str = "O-1001"; // examples/orders/first-book-order.json
const NEW_YORK_ORDER: &str = "O-2101"; // examples/orders/fragrance-new-york.json
/// About the size of a station's screen.
const VIEWPORT: (u32, u32) = (1024, 900);

#[test]
fn a_packer_scans_sees_the_inserts_and_confirms_and_other_warehouses_stay_hidden() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };

    let broker = TestBroker::start();
    let work = Workdir::new();
    let config = work.path().join("packwell.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[http.tokens]]
name = "berlin-station-1"
token = "{STATION_TOKEN}"
warehouses = ["WH-BER"]

[[http.tokens]]
name = "office"
token = "{OFFICE_TOKEN}"
"#
        ),
    )
    .expect("write config");
    let service = ServiceProcess::start_with_args(
        work.path(),
        &broker.addr,
        &[],
        &["--config", config.to_str().expect("utf-8 path")],
    );
    let events: Vec<Value> = ["first-book-order.json", "fragrance-new-york.json"]
        .iter()
        .map(|f| example_order(f))
        .collect();
    produce(
        &broker.addr,
        &events
            .iter()
            .map(|e| (customer_key(e), e.to_string().into_bytes()))
            .collect::<Vec<_>>(),
    );
    // Both decided before the browser looks: the New York order's 404 must come from the
    // warehouse limit, not from a decision still on its way.
    for order in [BERLIN_ORDER, NEW_YORK_ORDER] {
        wait_for(&format!("{order} decided"), Duration::from_secs(60), || {
            inserts(&service, OFFICE_TOKEN, order).0 == 200
        });
    }
    let (_, decision) = inserts(&service, STATION_TOKEN, BERLIN_ORDER);
    let decision: Value = serde_json::from_str(&decision).expect("inserts json");
    let of_kind = |kind: &str| {
        decision["inserts"]
            .as_array()
            .expect("inserts")
            .iter()
            .find(|i| i["kind"] == kind)
            .unwrap_or_else(|| panic!("the example order gets a {kind}: {decision}"))
            .clone()
    };
    let code = of_kind("coupon")["coupon"]["code"]
        .as_str()
        .expect("coupon code")
        .to_string();
    let note = of_kind("note")["note"]["text"]
        .as_str()
        .expect("note text")
        .to_string();
    let gift = of_kind("gift")["insert_id"]
        .as_str()
        .expect("gift id")
        .to_string();
    assert!(decision["packed"].is_null(), "{decision}");

    let (_browser, tab) = launch(chromium, VIEWPORT);
    // Waits go by the page's elements and state, never by DevTools events: this crate's
    // messages are an untagged enum, and with serde_json's `arbitrary_precision` (on for the
    // whole build, see Cargo.toml) events with fractional numbers (timestamps) fail to parse
    // and are dropped, so `wait_until_navigated` would never return. Replies to calls parse.
    tab.navigate_to(&format!("http://{}/station", service.http))
        .expect("open /station");

    type_into(&tab, "#token", STATION_TOKEN);
    type_into(&tab, "#station", "ber-1");
    type_into(&tab, "#order", BERLIN_ORDER);
    tab.press_key("Enter").expect("Enter");
    tab.wait_for_element(".insert").expect("inserts shown");
    let shown = text_of(&tab, "#inserts");
    assert!(shown.contains(&code), "coupon code {code} not in {shown:?}");
    assert!(shown.contains(&note), "note text not in {shown:?}");
    assert_eq!(
        eval(&tab, "document.querySelectorAll('#inserts .insert').length"),
        decision["inserts"].as_array().expect("inserts").len(),
        "one element per insert"
    );

    // The gift ran out on the shelf: unticked, with a reason, before confirming.
    let gift_item = format!(".insert[data-insert-id=\"{gift}\"]");
    tab.find_element(&format!("{gift_item} input[type=checkbox]"))
        .expect("gift checkbox")
        .click()
        .expect("untick the gift");
    eval(
        &tab,
        &format!(
            "(() => {{ const s = document.querySelector('{gift_item} select'); \
             s.value = 'out_of_stock'; s.dispatchEvent(new Event('change')); return s.value; }})()"
        ),
    );

    let screenshot = artifacts_dir().join("station-page.png");
    std::fs::write(&screenshot, whole_page_png(&tab, VIEWPORT)).expect("write screenshot");
    eprintln!("screenshot: {}", screenshot.display());

    // The card goes into the hidden frame and to the printer (headless: printed to nowhere).
    tab.find_element("#print")
        .expect("print button")
        .click()
        .expect("click print");
    wait_for_page(
        &tab,
        "the card printed",
        &format!(
            "document.getElementById('print-frame').srcdoc.includes('{code}') \
             && document.getElementById('status').textContent.includes('printer')"
        ),
    );

    tab.find_element("#confirm")
        .expect("confirm button")
        .click()
        .expect("click confirm");
    wait_for("the confirmation stored", Duration::from_secs(30), || {
        let (status, body) = inserts(&service, STATION_TOKEN, BERLIN_ORDER);
        status == 200 && serde_json::from_str::<Value>(&body).is_ok_and(|v| !v["packed"].is_null())
    });
    let (_, body) = inserts(&service, STATION_TOKEN, BERLIN_ORDER);
    let packed = serde_json::from_str::<Value>(&body).expect("json")["packed"].clone();
    assert_eq!(packed["station"], "ber-1", "{packed}");
    for line in packed["inserts"].as_array().expect("packed inserts") {
        if line["insert_id"] == gift.as_str() {
            assert_eq!(line["packed"], false, "{packed}");
            assert_eq!(line["reason"], "out_of_stock", "{packed}");
        } else {
            assert_eq!(line["packed"], true, "{packed}");
        }
    }
    // The page is ready for the next scan: order field empty and focused, success shown.
    wait_for_page(
        &tab,
        "the page ready for the next scan",
        "document.getElementById('order').value === '' \
         && document.activeElement === document.getElementById('order') \
         && document.getElementById('status').dataset.state === 'ok'",
    );

    // Scanned again, the page shows the confirmation; a different one is refused (409) and
    // the page goes back to showing what was recorded.
    type_into(&tab, "#order", BERLIN_ORDER);
    tab.press_key("Enter").expect("Enter");
    wait_for_page(
        &tab,
        "the confirmation shown",
        &format!(
            "document.querySelector('{gift_item} input[type=checkbox]')?.checked === false \
             && document.getElementById('status').dataset.state === 'info'"
        ),
    );
    tab.find_element(&format!("{gift_item} input[type=checkbox]"))
        .expect("gift checkbox")
        .click()
        .expect("tick the gift");
    tab.find_element("#confirm")
        .expect("confirm button")
        .click()
        .expect("click confirm");
    wait_for_page(
        &tab,
        "the conflict shown",
        &format!(
            "document.getElementById('status').dataset.state === 'error' \
             && document.querySelector('{gift_item} input[type=checkbox]').checked === false"
        ),
    );
    let (_, body) = inserts(&service, STATION_TOKEN, BERLIN_ORDER);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["packed"],
        packed,
        "the first confirmation stands"
    );

    // Another warehouse's order: the service's own message, and no inserts.
    type_into(&tab, "#order", NEW_YORK_ORDER);
    tab.press_key("Enter").expect("Enter");
    wait_for_page(
        &tab,
        "the error shown",
        "document.getElementById('status').dataset.state === 'error'",
    );
    let (status, body) = inserts(&service, STATION_TOKEN, NEW_YORK_ORDER);
    assert_eq!(status, 404, "{body}");
    let error: Value = serde_json::from_str(&body).expect("error json");
    assert_eq!(error["error"], "not_found", "{error}");
    let message = error["message"].as_str().expect("message");
    assert_eq!(text_of(&tab, "#status"), message);
    assert_eq!(
        eval(&tab, "document.querySelectorAll('#inserts .insert').length"),
        0
    );
}

/// GET the order's inserts with a bearer token: status and body.
fn inserts(service: &ServiceProcess, token: &str, order: &str) -> (u16, String) {
    packwell::email::provider::ensure_tls_provider();
    let response = reqwest::blocking::Client::new()
        .get(format!("http://{}/v1/orders/{order}/inserts", service.http))
        .bearer_auth(token)
        .timeout(Duration::from_secs(10))
        .send()
        .expect("GET inserts");
    let status = response.status().as_u16();
    (status, response.text().expect("body"))
}
