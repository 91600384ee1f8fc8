//! What each fuzz target does with its input, shared by the libFuzzer targets
//! (`fuzz/fuzz_targets/`) and by `tests/fuzz_regressions.rs`, which runs every input the
//! fuzzers ever crashed on (`fuzz/regressions/<target>/`) through the same function.
//!
//! Each function takes any bytes and returns normally; a panic (or an abort) is a finding.
//! Besides "no panic", each checks what must hold for any input: an event set aside changes
//! no history, a replayed event changes nothing, no request is answered with 500, every error
//! of the HTTP API is a JSON body.

// Each fuzz target uses a part of this, the regression test all of it.
#![allow(dead_code, unused_imports)]

mod events;
mod folders;
mod http;

pub use events::{DESCRIBED, described_events, event_path};
pub use folders::{load_rules_folder, load_template, rules_folder, template};
pub use http::{request_bodies, request_status};

use packwell::coupon::CouponKey;
use packwell::event::{Event, EventBody, RejectReason, parse_event};
use packwell::profile::Profile;
use packwell::replay::{Applied, Replay};
use packwell::rules::{RuleSet, load_rules};
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

/// The example order of the repository (`examples/orders/`), decided with the example rules.
const EXAMPLE_ORDER: &str = include_str!("../../examples/orders/first-book-order.json");

/// The repository's root: this code is compiled from `fuzz/` (the fuzz crate) and from the
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

/// Applies one event and checks what must hold whatever it holds.
fn apply_checked(replay: &mut Replay<'_>, event: &Event, explain: bool) {
    let customer = event.customer_id().to_string();
    let before = snapshot(replay, event, &customer);
    let first = replay.apply(event, true, explain);
    let conflict = matches!(first, Applied::Conflict);
    match first {
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
    // The same event again (a redelivery) changes nothing: it is seen before, or, when it
    // reused the id of another event, it is that conflict again.
    let after = snapshot(replay, event, &customer);
    match replay.apply(event, true, false) {
        Applied::Unchanged => {}
        Applied::Conflict if conflict => {}
        other => panic!("event {} applied a second time: {other:?}", event.event_id),
    }
    assert!(snapshot(replay, event, &customer) == after);
}

type Snapshot = (Option<Profile>, Option<packwell::profile::OrderSummary>);

fn snapshot(replay: &Replay<'_>, event: &Event, customer: &str) -> Snapshot {
    (
        replay.state.profiles.get(customer).cloned(),
        event
            .order_id()
            .and_then(|id| replay.state.orders.get(id))
            .cloned(),
    )
}

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
