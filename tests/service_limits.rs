//! `packwell run` given rules nested too deep while it runs: before the limits, a condition of
//! 20 000 nested parentheses written into `rules/` overflowed the reload thread's stack and
//! aborted the service (and then every start). Now the service stays up, `/readyz` names the
//! file, line, column and limit, the old rules keep deciding, and removing the file makes
//! `/readyz` clean again with the rules version it had (a reload that finds the rules deciding
//! already must still clear the error).

mod service_support;

use serde_json::Value;
use service_support::*;
use std::path::Path;
use std::time::Duration;

fn rules_status(service: &ServiceProcess) -> Value {
    let (_, body) = service.get("/readyz");
    serde_json::from_str::<Value>(&body).map_or(Value::Null, |v| v["rules"].clone())
}

/// Writes `text` to `path` whole: a temporary file renamed over it, so the watcher never loads
/// half a file.
fn write_whole(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Waits until `/readyz` reports a rules error that contains `needle`.
fn wait_for_rules_error(service: &ServiceProcess, needle: &str) -> Value {
    wait_for(
        &format!("a rules error with {needle:?} in /readyz"),
        Duration::from_secs(30),
        || {
            rules_status(service)["error"]
                .as_str()
                .is_some_and(|e| e.contains(needle))
        },
    );
    rules_status(service)
}

/// Waits until `/readyz` reports the rules clean again, at `version`.
fn wait_for_clean(service: &ServiceProcess, version: &str) {
    wait_for("clean rules in /readyz", Duration::from_secs(30), || {
        let r = rules_status(service);
        r["ok"] == true && r["error"].is_null() && r["version"] == version
    });
}

#[test]
fn a_rule_nested_20_000_deep_written_while_running_leaves_the_old_rules_deciding() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let mut service = ServiceProcess::start(work.path(), &broker.addr, &[]);
    let (status, _) = service.get("/readyz");
    assert_eq!(status, 200);
    let version = rules_status(&service)["version"]
        .as_str()
        .expect("version")
        .to_string();

    // Line 3, and the 65th parenthesis is the 65th character of the condition, which starts
    // after `when = "` (8 characters): column 73.
    let deep = work.path().join("rules/50-deep.toml");
    let when = format!(
        "{}customer.orders_count > 0{}",
        "(".repeat(20_000),
        ")".repeat(20_000)
    );
    write_whole(
        &deep,
        &format!("[[segment]]\nid = \"deep\"\nwhen = \"{when}\"\n"),
    );
    let rules = wait_for_rules_error(
        &service,
        "50-deep.toml:3:73: when: nested more than 64 levels deep (limit 64)",
    );
    assert_eq!(rules["ok"], false);
    assert_eq!(rules["version"], version.as_str());
    let (status, body) = service.get("/readyz");
    assert_eq!(status, 200, "the old rules keep serving: {body}");
    assert!(
        service.child.try_wait().expect("wait").is_none(),
        "the service is still running: {}",
        service.log()
    );

    // An order sent now is decided, by the rules from before.
    let order: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/orders/first-book-order.json"),
        )
        .expect("example order"),
    )
    .expect("json");
    produce(
        &broker.addr,
        &[(customer_key(&order), order.to_string().into_bytes())],
    );
    let decided = read_topic(
        &broker.addr,
        "packing-instructions",
        Duration::from_secs(60),
        |m| !m.is_empty(),
    );
    let decision = decided.first().expect("a decision").json();
    assert_eq!(decision["order_id"], order["order"]["id"]);
    assert_eq!(decision["rules_version"], version.as_str());

    // Removed: the folder is as it was, the version too, and /readyz is clean again.
    std::fs::remove_file(&deep).expect("remove");
    wait_for_clean(&service, &version);

    // A note template of 20 000 nested blocks: the same, with the template's position.
    let note = work.path().join("templates/notes/deep.hbs");
    write_whole(
        &note,
        &format!(
            "{}x{}",
            "{{#if locale}}".repeat(20_000),
            "{{/if}}".repeat(20_000)
        ),
    );
    wait_for_rules_error(
        &service,
        &format!(
            "deep.hbs:1:{}: nested more than 32 levels deep (limit 32)",
            32 * "{{#if locale}}".len() + 1
        ),
    );
    std::fs::remove_file(&note).expect("remove");
    wait_for_clean(&service, &version);

    let (code, _) = service.terminate();
    assert_eq!(code, Some(0), "{}", service.log());
}
