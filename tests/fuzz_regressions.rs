//! The fuzz targets' code (`fuzz/harness/`) run on every input a fuzzer ever crashed on
//! (`fuzz/regressions/<target>/`), on the seed corpora (`fuzz/corpus/<target>/seed-*`) and on
//! hostile inputs written by hand: what `scripts/fuzz.sh` once found stays a test here.
//!
//! Each input runs on a thread of its own with the 8 MiB stack of a main thread (libFuzzer
//! runs the targets on the main thread), and fails the test if anything panicked on the way,
//! also a panic that the code under test caught and set aside.

#[path = "../fuzz/harness/mod.rs"]
mod harness;

use serde_json::{Value, json};
use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    /// Panic messages of this thread since the input started.
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn record_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|p| p.borrow_mut().push(info.to_string()));
            previous(info);
        }));
    });
}

fn target(name: &str) -> harness::Target {
    harness::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
}

/// Runs one input through a target; returns what went wrong, if anything.
fn run(target_name: &str, label: &str, data: Vec<u8>) -> Option<String> {
    record_panics();
    let f = target(target_name);
    let thread = std::thread::Builder::new()
        .name(format!("{target_name}/{label}"))
        .stack_size(8 << 20)
        .spawn(move || {
            PANICS.with(|p| p.borrow_mut().clear());
            let outcome = std::panic::catch_unwind(|| f(&data));
            let panics = PANICS.with(|p| p.borrow_mut().split_off(0));
            (outcome.is_ok(), panics)
        })
        .expect("a thread");
    match thread.join() {
        Ok((true, panics)) if panics.is_empty() => None,
        Ok((_, panics)) => Some(format!("{target_name} {label}: {}", panics.join("; "))),
        Err(_) => Some(format!("{target_name} {label}: the thread died")),
    }
}

fn assert_all_pass(failures: Vec<String>) {
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The files of `fuzz/<folder>/<target>/` whose names start with `prefix`.
fn inputs(folder: &str, target_name: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let dir = harness::repo_root()
        .join("fuzz")
        .join(folder)
        .join(target_name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.is_file())
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            (name.starts_with(prefix) && !name.starts_with('.') && name != "README.md")
                .then(|| (name, std::fs::read(&p).expect("read an input")))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_crash_the_fuzzers_found_stays_fixed() {
    let root = harness::repo_root().join("fuzz/regressions");
    // A folder named after no target would be silently skipped.
    for entry in std::fs::read_dir(&root).expect("fuzz/regressions") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            assert!(
                harness::TARGETS.iter().any(|(t, _)| *t == name),
                "{} names no fuzz target",
                path.display()
            );
        }
    }
    let mut failures = Vec::new();
    for (name, _) in harness::TARGETS {
        for (file, data) in inputs("regressions", name, "") {
            failures.extend(run(name, &file, data));
        }
    }
    assert_all_pass(failures);
}

#[test]
fn the_seed_corpora_pass() {
    let mut failures = Vec::new();
    for (name, _) in harness::TARGETS {
        let seeds = inputs("corpus", name, "seed-");
        assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seed-* file");
        for (file, data) in seeds {
            failures.extend(run(name, &file, data));
        }
    }
    assert_all_pass(failures);
}

// ---------------------------------------------------------------------------------------------
// Hostile inputs written by hand

const DECIMAL_MAX: &str = "79228162514264337593543950335";

fn placed(order: &str, customer: &str, total: &str, items: Value) -> Value {
    json!({"event_id": format!("ev-{order}"), "type": "order.placed",
        "occurred_at": "2026-11-20T09:30:00Z",
        "order": {"id": order, "customer": {"id": customer, "email": "c@example.com", "first_name": "C"},
            "currency": "EUR", "total": total, "items": items,
            "shipping": {"country": "DE"}, "warehouse": "WH-BER"}})
}

fn line(quantity: u64, unit_price: &str) -> Value {
    json!({"sku": "BK-1", "name": "Book", "category": "books", "quantity": quantity, "unit_price": unit_price})
}

fn returned(order: &str, customer: &str, quantity: u64) -> Value {
    json!({"event_id": format!("ev-{order}-returned-{quantity}"), "type": "order.returned",
        "occurred_at": "2026-11-25T09:30:00Z", "order_id": order, "customer_id": customer,
        "items": [{"sku": "BK-1", "quantity": quantity}]})
}

fn cancelled(order: &str, customer: &str) -> Value {
    json!({"event_id": format!("ev-{order}-cancelled"), "type": "order.cancelled",
        "occurred_at": "2026-11-21T09:30:00Z", "order_id": order, "customer_id": customer})
}

/// Events as one input of `event_path`: one per line.
fn lines(events: &[Value]) -> Vec<u8> {
    events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

#[test]
fn amounts_at_and_past_the_edge_neither_panic_nor_change_history_by_halves() {
    let max = packwell::event::bounds::MAX_AMOUNT.to_string();
    let max_quantity = u64::from(packwell::event::bounds::MAX_QUANTITY);
    let full_order: Vec<Value> = (0..packwell::event::bounds::MAX_ITEMS)
        .map(|_| line(max_quantity, &max))
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "Decimal::MAX totals twice for one customer",
            lines(&[
                placed("O-1", "C-1", DECIMAL_MAX, json!([line(1, DECIMAL_MAX)])),
                placed("O-2", "C-1", DECIMAL_MAX, json!([line(1, DECIMAL_MAX)])),
            ]),
        ),
        (
            "a quantity-2 line at Decimal::MAX, returned",
            lines(&[
                placed("O-1", "C-1", DECIMAL_MAX, json!([line(2, DECIMAL_MAX)])),
                returned("O-1", "C-1", 2),
                returned("O-1", "C-1", u64::from(u32::MAX)),
            ]),
        ),
        (
            "the largest accepted amounts, many times over, returned and cancelled",
            lines(
                &(0..12)
                    .flat_map(|i| {
                        let order = format!("O-{i}");
                        [
                            placed(&order, "C-1", &max, Value::Array(full_order.clone())),
                            returned(&order, "C-1", max_quantity),
                            returned(&order, "C-1", max_quantity),
                            cancelled(&order, "C-1"),
                        ]
                    })
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "a quantity past u32 and a negative price",
            lines(&[placed(
                "O-1",
                "C-1",
                "-1",
                json!([line(u64::MAX, "-79228162514264337593543950335")]),
            )]),
        ),
        (
            "an order of 100 000 lines",
            lines(&[placed(
                "O-1",
                "C-1",
                "1",
                Value::Array(vec![line(1, "1"); 100_000]),
            )]),
        ),
        (
            "an event nested 100 000 deep",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        ),
    ];
    assert_all_pass(
        cases
            .into_iter()
            .filter_map(|(label, data)| run("event_path", label, data))
            .collect(),
    );
}

/// A described record (`fuzz/harness/events.rs`) as one event's JSON.
fn described(record: [u8; 8]) -> Result<packwell::event::Event, packwell::event::Rejected> {
    let lines = harness::described_events(&record);
    packwell::event::parse_event(&lines[0])
}

#[test]
fn described_events_reach_the_edges_of_what_an_event_may_hold() {
    use packwell::event::RejectReason::OutOfRange;
    // 1 000 lines of 10^6 units at 10^12, in EUR and JPY; a return of each line; a delivery.
    for record in [
        [0, 0, 0, 7, 6, 6, 0, 0],
        [0, 1, 1, 7, 6, 6, 0, 7],
        [4, 0, 0, 0, 6, 6, 1, 0],
        [2, 0, 0, 0, 0, 0, 1, 200],
        [6, 2, 0, 0, 0, 0, 1, 10],
    ] {
        let event = described(record).unwrap_or_else(|r| panic!("{record:?}: {}", r.message));
        if let packwell::event::EventBody::OrderPlaced(order) = &event.body {
            assert_eq!(order.items.len(), 1_000);
            assert_eq!(order.total, packwell::event::bounds::MAX_AMOUNT);
        }
    }
    // Just past them: an amount, a quantity, Decimal::MAX.
    for record in [
        [0, 0, 0, 8, 1, 0, 0, 0],
        [0, 0, 0, 9, 1, 0, 0, 0],
        [0, 0, 0, 1, 7, 0, 0, 0],
    ] {
        let rejected = described(record).expect_err("set aside");
        assert_eq!(
            rejected.reason, OutOfRange,
            "{record:?}: {}",
            rejected.message
        );
    }
    let mut data = vec![harness::DESCRIBED];
    data.extend([
        0, 0, 0, 7, 6, 6, 0, 0, 4, 0, 0, 0, 6, 6, 1, 0, 3, 0, 0, 0, 0, 0, 2, 0,
    ]);
    assert_all_pass(
        run("event_path", "described bounds", data)
            .into_iter()
            .collect(),
    );
}

/// A rule file with the segment's `when` given, for `rules_folder` (rule file only).
fn rule_with_when(when: &str) -> Vec<u8> {
    format!(
        "[[segment]]\nid = \"deep\"\nwhen = \"{when}\"\n\n[[insert]]\nid = \"fuzz-note\"\nkind = \"note\"\ntemplate = \"welcome\"\n\n[[rule]]\nid = \"deep\"\nwhen = \"'deep' in segments\"\ngive = [\"fuzz-note\"]\n"
    )
    .into_bytes()
}

/// `rules_folder`'s input: a rule file, a NUL, a note template.
fn rules_and_note(note: &str) -> Vec<u8> {
    let mut data = rule_with_when("true");
    data.push(0);
    data.extend_from_slice(note.as_bytes());
    data
}

fn nested_ifs(depth: usize) -> String {
    format!(
        "{}x{}",
        "{{#if customer.first_name}}".repeat(depth),
        "{{/if}}".repeat(depth)
    )
}

/// Runs `f` on a thread with the stack of a main thread, as the targets run.
fn on_main_sized_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(f)
        .expect("a thread")
        .join()
        .expect("no panic")
}

#[test]
fn deep_nesting_in_rules_and_templates_is_an_error_not_an_abort() {
    let parens = |n: usize| format!("{}true{}", "(".repeat(n), ")".repeat(n));
    let and_chain = vec!["order.total > 1"; 50_000].join(" and ");
    let nested_each = format!(
        "{}{{{{name}}}}{}",
        "{{#each order.items}}".repeat(5_000),
        "{{/each}}".repeat(5_000)
    );
    let mut failures = Vec::new();
    // (what, input, whether the folder loads)
    for (label, data, loads) in [
        (
            "a when of 30 000 parentheses",
            rule_with_when(&parens(30_000)),
            false,
        ),
        ("a when of 50 000 terms", rule_with_when(&and_chain), false),
        (
            "a note of 20 000 nested ifs",
            rules_and_note(&nested_ifs(20_000)),
            false,
        ),
        (
            "a when nested within the limits",
            rule_with_when(&parens(60)),
            true,
        ),
        (
            "a note nested within the limits",
            rules_and_note(&nested_ifs(30)),
            true,
        ),
    ] {
        let input = data.clone();
        let outcome = on_main_sized_stack(move || harness::load_rules_folder(&input));
        if outcome.rules.is_some() != loads {
            let errors: Vec<String> = outcome.errors().map(|f| f.to_string()).collect();
            failures.push(format!(
                "rules_folder {label}: loads {}, errors {errors:?}",
                !loads
            ));
        }
        failures.extend(run("rules_folder", label, data));
    }
    for (label, template, loads) in [
        ("20 000 nested ifs", nested_ifs(20_000), false),
        ("5 000 nested eaches", nested_each, false),
        ("30 nested ifs", nested_ifs(30), true),
        (
            "a money helper of the largest decimal",
            format!(
                "{{{{money \"{DECIMAL_MAX}\" \"JPY\"}}}} {{{{money coupon.amount coupon.currency}}}}"
            ),
            true,
        ),
    ] {
        // Every part (note, HTML, subject, text) with both data sets.
        for selector in 0..8u8 {
            let mut data = vec![selector];
            data.extend_from_slice(template.as_bytes());
            let label = format!("{label} ({selector})");
            let input = data.clone();
            let loaded = on_main_sized_stack(move || {
                harness::load_template(&input).is_some_and(|t| t.is_ok())
            });
            if loaded != loads {
                failures.push(format!("template {label}: loads {loaded}"));
            }
            failures.extend(run("template", &label, data));
        }
    }
    assert_all_pass(failures);
}

#[test]
fn the_request_seeds_reach_the_routes_behind_the_store() {
    let seed = |name: &str| {
        let path = harness::repo_root()
            .join("fuzz/corpus/request_bodies")
            .join(name);
        std::fs::read(path).expect("a seed")
    };
    let status = |name: &str| {
        let data = seed(name);
        on_main_sized_stack(move || harness::request_status(&data)).expect("a request")
    };
    // The example order, decided when the store started: its list, its card, a confirmation
    // (recorded, or the same again when another test sent it first).
    assert_eq!(status("seed-inserts"), 200);
    assert_eq!(status("seed-card"), 200);
    assert!(matches!(status("seed-packed"), 200 | 409));
    assert_eq!(status("seed-email-event"), 200);
    assert_eq!(status("seed-unsubscribe-customer"), 200);
    // A token not made with the key, and an order of no one.
    assert_eq!(status("seed-unsubscribe-token"), 404);
    assert_eq!(harness::request_status(b"\x06O-NONE"), Some(404));
}

#[test]
fn hostile_request_bodies_are_answered_without_a_server_error() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let many_inserts = json!({"station": "s", "inserts":
        vec![json!({"insert_id": "welcome-note", "packed": true}); 1_500]});
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        (
            "a confirmation nested 30 000 deep",
            0,
            deep(30_000).into_bytes(),
        ),
        (
            "a confirmation of 1 500 inserts",
            0,
            many_inserts.to_string().into_bytes(),
        ),
        (
            "a confirmation larger than allowed",
            0,
            deep(100_000).into_bytes(),
        ),
        (
            "a not-packed insert without a reason",
            0,
            br#"{"station":"s","inserts":[{"insert_id":"welcome-note","packed":false}]}"#.to_vec(),
        ),
        (
            "a station of spaces",
            0,
            br#"{"station":"   ","inserts":[]}"#.to_vec(),
        ),
        ("an e-mail event nested deep", 1, deep(30_000).into_bytes()),
        (
            "an e-mail event with a 60 000-byte address",
            1,
            json!({"type": "bounce", "email": format!("{}@example.com", "a".repeat(60_000)),
                "occurred_at": "2026-11-20T10:00:00Z"})
            .to_string()
            .into_bytes(),
        ),
        (
            "an e-mail event at the end of time",
            1,
            br#"{"type":"complaint","email":"a@b","occurred_at":"+262143-12-31T23:59:59Z"}"#
                .to_vec(),
        ),
        (
            "an unsubscribe link for a customer id of controls",
            2,
            b"\0\r\n\xff".to_vec(),
        ),
        ("an unsubscribe token of 10 000 dots", 3, vec![b'.'; 10_000]),
        (
            "a confirmation for an order id of 10 000 slashes",
            5,
            vec![b'/'; 10_000],
        ),
        ("the card of an order id of NULs", 7, vec![0; 1_000]),
    ];
    assert_all_pass(
        cases
            .into_iter()
            .filter_map(|(label, route, body)| {
                let mut data = vec![route];
                data.extend(body);
                run("request_bodies", label, data)
            })
            .collect(),
    );
}

#[test]
fn the_targets_take_empty_and_arbitrary_bytes() {
    let noise: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let mut failures = Vec::new();
    for (name, _) in harness::TARGETS {
        for (label, data) in [("empty", Vec::new()), ("every byte", noise.clone())] {
            failures.extend(run(name, label, data));
        }
    }
    assert_all_pass(failures);
}
