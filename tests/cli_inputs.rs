//! `packwell simulate` through the binary with bad input files (docs/REFERENCE.md §1, §4): exit 2,
//! a message on stderr naming the field (and the history line), never a panic; and the JSON
//! decision of the valid base project (docs/REFERENCE.md §3), the same on every run.

mod cli_support;

use cli_support::*;
use serde_json::{Value, json};

/// The base order as JSON, to be changed by a test.
fn base_order() -> Value {
    serde_json::from_str(BASE_ORDER).expect("BASE_ORDER is JSON")
}

/// Sets the value at a JSON pointer (which must exist).
fn set(mut v: Value, pointer: &str, new: Value) -> Value {
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in the base order")) = new;
    v
}

/// Removes the key at a JSON pointer (which must exist).
fn remove(mut v: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer with a parent");
    let removed = v
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|o| o.remove(key));
    assert!(removed.is_some(), "no {pointer} in the base order");
    v
}

/// Simulates the base project on an order file with this text; expects exit 2, no panic, no
/// decision on stdout, and stderr naming the order file and saying every fragment.
fn expect_bad_order(text: &str, fragments: &[&str]) -> Run {
    let p = Project::base();
    let order = p.write("order.json", text);
    let run = p.simulate(&["--order", order.to_str().unwrap()]);
    run.assert_code(2)
        .assert_no_panic()
        .assert_stderr_contains("order.json");
    for f in fragments {
        run.assert_stderr_contains(f);
    }
    assert!(
        !run.stdout.contains("Inserts"),
        "no decision may be printed for a bad order:\n{}",
        run.stdout
    );
    run
}

fn expect_bad_order_json(order: Value, fragments: &[&str]) -> Run {
    expect_bad_order(&serde_json::to_string_pretty(&order).unwrap(), fragments)
}

// ---------------------------------------------------------------------------------------------
// The control: the base order is fine

#[test]
fn the_base_order_simulates() {
    let p = Project::base();
    let order = p.write("order.json", BASE_ORDER);
    p.simulate(&["--order", order.to_str().unwrap()])
        .assert_code(0)
        .assert_contains("coupon-10")
        .assert_contains("hello-note")
        .assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// Bad order files

#[test]
fn order_that_is_not_json_is_an_input_error() {
    expect_bad_order("{ \"event_id\": \"ev-1\", \"type\": ", &["JSON"]);
}

#[test]
fn order_that_is_a_json_array_is_an_input_error() {
    let run = expect_bad_order("[]", &[]);
    // Whatever the wording, it must say that an object was expected.
    run.assert_stderr_contains("object");
}

#[test]
fn order_with_unknown_type_is_an_input_error() {
    expect_bad_order_json(
        set(base_order(), "/type", json!("order.teleported")),
        &["type", "order.teleported"],
    );
}

#[test]
fn order_without_an_id_names_order_id() {
    expect_bad_order_json(remove(base_order(), "/order/id"), &["order.id", "missing"]);
}

#[test]
fn quantity_zero_names_the_item() {
    expect_bad_order_json(
        set(base_order(), "/order/items/0/quantity", json!(0)),
        &["order.items[0].quantity", ">= 1"],
    );
}

#[test]
fn money_with_a_decimal_comma_names_the_field() {
    expect_bad_order_json(
        set(base_order(), "/order/total", json!("12,50")),
        &["order.total", "12,50"],
    );
}

#[test]
fn bad_unit_price_names_the_item() {
    expect_bad_order_json(
        set(base_order(), "/order/items/0/unit_price", json!("12,50")),
        &["order.items[0].unit_price"],
    );
}

#[test]
fn unknown_currency_names_the_field() {
    expect_bad_order_json(
        set(base_order(), "/order/currency", json!("EUX")),
        &["order.currency", "EUX"],
    );
}

#[test]
fn missing_order_file_is_an_input_error() {
    let p = Project::base();
    let missing = p.path("no-such-order.json");
    p.simulate(&["--order", missing.to_str().unwrap()])
        .assert_code(2)
        .assert_no_panic()
        .assert_stderr_contains("no-such-order.json");
}

#[test]
fn bad_history_line_is_named_by_number() {
    let p = Project::base();
    let order = p.write("order.json", BASE_ORDER);
    let history = [
        r#"{"event_id":"ev-h1","type":"customer.subscribed","occurred_at":"2026-10-01T09:00:00Z","customer_id":"C-1"}"#,
        r#"{"event_id":"ev-h2","type":"customer.feedback","occurred_at":"2026-10-02T09:00:00Z","customer_id":"C-1","nps":11}"#,
    ]
    .join("\n")
        + "\n";
    let history = p.write("history.ndjson", &history);
    p.simulate(&[
        "--order",
        order.to_str().unwrap(),
        "--history",
        history.to_str().unwrap(),
    ])
    .assert_code(2)
    .assert_no_panic()
    .assert_stderr_contains(&format!("{}:2:", history.display()))
    .assert_stderr_contains("nps")
    .assert_stderr_contains("11");
}

#[test]
fn missing_history_file_is_an_input_error() {
    let p = Project::base();
    let order = p.write("order.json", BASE_ORDER);
    let missing = p.path("no-such-history.ndjson");
    p.simulate(&[
        "--order",
        order.to_str().unwrap(),
        "--history",
        missing.to_str().unwrap(),
    ])
    .assert_code(2)
    .assert_no_panic()
    .assert_stderr_contains("no-such-history.ndjson");
}

#[test]
fn at_that_is_not_a_time_is_a_usage_error() {
    let p = Project::base();
    let order = p.write("order.json", BASE_ORDER);
    p.simulate(&["--order", order.to_str().unwrap(), "--at", "next tuesday"])
        .assert_code(2)
        .assert_no_panic()
        .assert_stderr_contains("--at")
        .assert_stderr_contains("next tuesday");
}

#[test]
fn unknown_format_is_a_usage_error() {
    let p = Project::base();
    let order = p.write("order.json", BASE_ORDER);
    p.simulate(&["--order", order.to_str().unwrap(), "--format", "yaml"])
        .assert_code(2)
        .assert_no_panic()
        .assert_stderr_contains("yaml");
}

// ---------------------------------------------------------------------------------------------
// The JSON decision

fn decide_json(p: &Project) -> Run {
    let order = p.path("order.json");
    let run = p.simulate(&["--order", order.to_str().unwrap(), "--format", "json"]);
    run.assert_code(0).assert_no_panic();
    run
}

#[test]
fn json_decision_has_the_contract_shape() {
    let p = Project::base();
    p.write("order.json", BASE_ORDER);
    let run = decide_json(&p);
    let d: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", run.stdout));

    assert_eq!(d["schema_version"], json!(1), "{d:#}");
    assert_eq!(d["order_id"], json!("O-1"), "{d:#}");
    assert_eq!(d["customer_id"], json!("C-1"), "{d:#}");
    let version = d["rules_version"].as_str().unwrap_or_default();
    let version_re = regex::Regex::new("^sha256:[0-9a-f]{64}$").unwrap();
    assert!(version_re.is_match(version), "rules_version {version:?}");

    let inserts = d["inserts"].as_array().expect("inserts is a list");
    let coupon = inserts
        .iter()
        .find(|i| i["insert_id"] == json!("coupon-10"))
        .unwrap_or_else(|| panic!("no coupon-10 in the decision: {d:#}"));
    assert_eq!(coupon["kind"], json!("coupon"));
    assert_eq!(coupon["rule_id"], json!("welcome"));
    let code = coupon["coupon"]["code"].as_str().unwrap_or_default();
    let code_re = regex::Regex::new("^THANKS-[0-9A-HJKMNP-TV-Z]{12}$").unwrap();
    assert!(code_re.is_match(code), "coupon code {code:?}");
    assert_eq!(coupon["coupon"]["amount"], json!("10.00"));
    assert_eq!(coupon["coupon"]["currency"], json!("EUR"));

    let note = inserts
        .iter()
        .find(|i| i["insert_id"] == json!("hello-note"))
        .unwrap_or_else(|| panic!("no hello-note in the decision: {d:#}"));
    let text = note["note"]["text"].as_str().unwrap_or_default();
    assert!(text.contains("Hello Ann!"), "note text {text:?}");
}

#[test]
fn json_decision_is_the_same_on_every_run() {
    let p = Project::base();
    p.write("order.json", BASE_ORDER);
    let first = decide_json(&p);
    let second = decide_json(&p);
    assert!(!first.stdout.is_empty());
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn rules_version_changes_with_the_rules() {
    let p = Project::base();
    p.write("order.json", BASE_ORDER);
    let before: Value = serde_json::from_str(&decide_json(&p).stdout).unwrap();
    p.write(
        RULES_FILE,
        &edit(
            BASE_RULES,
            "title = \"10 off your next order\"",
            "title = \"10 off\"",
        ),
    );
    let after: Value = serde_json::from_str(&decide_json(&p).stdout).unwrap();
    assert_ne!(before["rules_version"], after["rules_version"]);
}
