//! The decision procedure of docs/REFERENCE.md §3 ("How a decision is made"), case by case,
//! through the public library: the in-memory replay that `simulate` and `backtest` run.

use packwell::coupon::CouponKey;
use packwell::engine::{Decision, Shop, SkipReason};
use packwell::event::{Event, event_from_value};
use packwell::replay::{Applied, Replay};
use packwell::rules::{RuleSet, load_rules};
use serde_json::json;
use std::sync::LazyLock;

static KEY: LazyLock<CouponKey> = LazyLock::new(CouponKey::preview);
static SHOP: LazyLock<Shop> = LazyLock::new(Shop::default);

fn ruleset(toml: &str) -> RuleSet {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::create_dir_all(dir.path().join("templates/notes")).unwrap();
    std::fs::write(dir.path().join("rules/r.toml"), toml).unwrap();
    std::fs::write(
        dir.path().join("templates/notes/n.hbs"),
        "Hi {{customer.first_name}}{{#each coupons}} {{code}}{{/each}}",
    )
    .unwrap();
    let out = load_rules(&dir.path().join("rules"), &dir.path().join("templates"));
    let msgs: Vec<String> = out.findings.iter().map(|f| f.to_string()).collect();
    out.rules.unwrap_or_else(|| panic!("{msgs:#?}"))
}

fn placed(customer: &str, order: &str, at: &str, warehouse: &str, cats: &[&str]) -> Event {
    let items: Vec<_> = cats
        .iter()
        .map(|c| json!({"sku": "S", "name": "n", "category": c, "quantity": 1, "unit_price": "30.00"}))
        .collect();
    event_from_value(&json!({"event_id": format!("e-{order}"), "type": "order.placed", "occurred_at": at,
        "order": {"id": order, "customer": {"id": customer, "email": "a@b.c", "first_name": "Ada"}, "currency": "EUR",
        "total": format!("{}.00", 30 * cats.len()), "items": items, "shipping": {"country": "DE"}, "warehouse": warehouse}}))
    .unwrap()
}

fn decide(replay: &mut Replay<'_>, e: &Event) -> Decision {
    match replay.apply(e, true, true) {
        Applied::Decided(o) => o.decision,
        other => panic!("not decided: {other:?}"),
    }
}

fn given(d: &Decision) -> Vec<&str> {
    d.inserts.iter().map(|i| i.insert_id.as_str()).collect()
}

fn skipped<'a>(d: &'a Decision, rule: &str) -> Vec<(Option<&'a str>, SkipReason)> {
    d.skipped
        .iter()
        .filter(|s| s.rule_id == rule)
        .map(|s| (s.insert_id.as_deref(), s.reason))
        .collect()
}

const INSERTS: &str = r#"
[[insert]]
id = "note"
kind = "note"
template = "n"
[[insert]]
id = "coupon"
kind = "coupon"
amount = { EUR = "10.00" }
min_order = { EUR = "30.00" }
valid_days = 60
code_prefix = "THX"
[[insert]]
id = "tea"
kind = "gift"
unit_cost = "0.40"
stock = { WH-BER = 1 }
[[insert]]
id = "box"
kind = "packaging"
unit_cost = "2.00"
"#;

#[test]
fn an_out_of_stock_gift_never_holds_back_the_note_beside_it() {
    let rs = ruleset(&format!(
        "{INSERTS}\n[[rule]]\nid = \"r\"\nwhen = \"true\"\ngive = [\"tea\", \"note\"]\n"
    ));
    let mut rp = Replay::new(&rs, &KEY, &SHOP);
    let d1 = decide(
        &mut rp,
        &placed("A", "1", "2026-11-20T10:00:00Z", "WH-BER", &["books"]),
    );
    assert_eq!(given(&d1), ["tea", "note"]);
    let d2 = decide(
        &mut rp,
        &placed("B", "2", "2026-11-20T11:00:00Z", "WH-BER", &["books"]),
    );
    assert_eq!(given(&d2), ["note"]);
    assert_eq!(skipped(&d2, "r"), [(Some("tea"), SkipReason::Stock)]);
    // A warehouse not named in the stock has none.
    let d3 = decide(
        &mut rp,
        &placed("C", "3", "2026-11-20T12:00:00Z", "WH-NYC", &["books"]),
    );
    assert_eq!(skipped(&d3, "r"), [(Some("tea"), SkipReason::Stock)]);
    // A cancellation returns the gift to stock.
    rp.apply(
        &event_from_value(&json!({"event_id": "c1", "type": "order.cancelled", "occurred_at": "2026-11-20T13:00:00Z",
            "order_id": "1", "customer_id": "A"}))
        .unwrap(),
        true,
        false,
    );
    let d4 = decide(
        &mut rp,
        &placed("D", "4", "2026-11-20T14:00:00Z", "WH-BER", &["books"]),
    );
    assert_eq!(given(&d4), ["tea", "note"]);
}

#[test]
fn inactive_group_cooldown_budget_and_max_inserts() {
    let rs = ruleset(&format!(
        r#"{INSERTS}
[package]
max_inserts = 2
[[rule]]
id = "xmas"
when = "true"
give = ["box"]
priority = 100
active = {{ from = "2026-12-01", until = "2026-12-31" }}
[[rule]]
id = "welcome"
when = "customer.orders_count == 1"
give = ["coupon", "note"]
priority = 90
group = "coupon"
[[rule]]
id = "everyone-coupon"
when = "true"
give = ["coupon"]
priority = 80
group = "coupon"
cooldown = "30d"
[[rule]]
id = "boxes"
when = "true"
give = ["box"]
priority = 70
budget = {{ EUR = "2.00", per = "month" }}
"#
    ));
    let mut rp = Replay::new(&rs, &KEY, &SHOP);
    let d = decide(
        &mut rp,
        &placed("A", "1", "2026-11-20T10:00:00Z", "WH-BER", &["books"]),
    );
    assert_eq!(skipped(&d, "xmas"), [(None, SkipReason::Inactive)]);
    assert_eq!(given(&d), ["coupon", "note"]);
    assert_eq!(skipped(&d, "everyone-coupon"), [(None, SkipReason::Group)]);
    assert_eq!(
        skipped(&d, "boxes"),
        [(Some("box"), SkipReason::MaxInserts)]
    );
    let c = d.inserts[0].coupon.as_ref().unwrap();
    assert_eq!(
        (
            c.amount.as_str(),
            c.min_order.as_deref(),
            c.expires_on.as_str()
        ),
        ("10.00", Some("30.00"), "2027-01-19")
    );
    assert!(
        d.inserts[1].note.as_ref().unwrap().text.contains(&c.code),
        "the note prints its rule's coupon"
    );

    // Second order: welcome no longer matches; everyone-coupon gives; boxes fits and spends its budget.
    let d = decide(
        &mut rp,
        &placed("A", "2", "2026-11-21T10:00:00Z", "WH-BER", &["books"]),
    );
    assert_eq!(given(&d), ["coupon", "box"]);
    // Third: cooldown (30 × 24 h from the last decision that gave) and an exhausted budget.
    let d = decide(
        &mut rp,
        &placed("A", "3", "2026-11-25T10:00:00Z", "WH-BER", &["books"]),
    );
    assert_eq!(
        skipped(&d, "everyone-coupon"),
        [(None, SkipReason::Cooldown)]
    );
    assert_eq!(skipped(&d, "boxes"), [(Some("box"), SkipReason::Budget)]);
    // December: a new budget period, and the seasonal rule is active (it wins the place).
    let d = decide(
        &mut rp,
        &placed("A", "4", "2026-12-01T00:00:00Z", "WH-BER", &["books"]),
    );
    assert!(given(&d).contains(&"box"));
    assert_eq!(
        d.inserts
            .iter()
            .find(|i| i.insert_id == "box")
            .unwrap()
            .rule_id,
        "xmas"
    );
    // 30 days after the 21st, the cooldown is over.
    let d = decide(
        &mut rp,
        &placed("A", "5", "2026-12-21T10:00:00Z", "WH-BER", &["books"]),
    );
    assert!(
        d.inserts.iter().any(|i| i.rule_id == "everyone-coupon"),
        "{:?}",
        d.skipped
    );
}

#[test]
fn shadow_and_holdout_keep_the_parcel_comparable() {
    let toml = format!(
        r#"{INSERTS}
[package]
max_inserts = 1
[[rule]]
id = "held"
when = "true"
give = ["box"]
priority = 100
group = "g"
holdout = "100%"
[[rule]]
id = "same-group"
when = "true"
give = ["note"]
priority = 90
group = "g"
[[rule]]
id = "needs-a-place"
when = "true"
give = ["coupon"]
priority = 80
"#
    );
    let rs = ruleset(&toml);
    let mut rp = Replay::new(&rs, &KEY, &SHOP);
    let d = decide(
        &mut rp,
        &placed("A", "1", "2026-11-20T10:00:00Z", "WH-BER", &["books"]),
    );
    assert_eq!(given(&d), Vec::<&str>::new());
    assert_eq!(skipped(&d, "held"), [(None, SkipReason::Holdout)]);
    assert_eq!(skipped(&d, "same-group"), [(None, SkipReason::Group)]);
    assert_eq!(
        skipped(&d, "needs-a-place"),
        [(Some("coupon"), SkipReason::MaxInserts)]
    );

    let shadow = ruleset(&toml.replace("holdout = \"100%\"", "mode = \"shadow\""));
    let mut rp = Replay::new(&shadow, &KEY, &SHOP);
    let d = decide(
        &mut rp,
        &placed("A", "1", "2026-11-20T10:00:00Z", "WH-BER", &["books"]),
    );
    assert_eq!(skipped(&d, "held"), [(None, SkipReason::Shadow)]);
    // A shadow rule takes no place and settles no group.
    assert_eq!(given(&d), ["note"]);
}

#[test]
fn an_evaluation_error_counts_as_false_with_reason_error() {
    let rs = ruleset(&format!(
        "{INSERTS}\n[[rule]]\nid = \"r\"\nwhen = \"customer.days_since_previous_order > 3\"\ngive = [\"box\"]\n"
    ));
    let mut rp = Replay::new(&rs, &KEY, &SHOP);
    let d = decide(
        &mut rp,
        &placed("A", "1", "2026-11-20T10:00:00Z", "WH-BER", &["books"]),
    );
    assert!(d.inserts.is_empty());
    let s = d.skipped.iter().find(|s| s.rule_id == "r").unwrap();
    assert_eq!(s.reason, SkipReason::Error);
    assert!(s.message.as_deref().is_some_and(|m| !m.is_empty()));
    // The engine logs nothing itself: the problem comes out as data, for the store to log.
    assert!(
        rp.effects
            .problems
            .iter()
            .any(|p| p.starts_with("order 1: rule r: its condition could not be evaluated: ")),
        "{:?}",
        rp.effects.problems
    );
}

#[test]
fn a_replayed_order_is_not_decided_again() {
    let rs = ruleset(&format!(
        "{INSERTS}\n[[rule]]\nid = \"r\"\nwhen = \"true\"\ngive = [\"coupon\"]\n"
    ));
    let mut rp = Replay::new(&rs, &KEY, &SHOP);
    let e = placed("A", "1", "2026-11-20T10:00:00Z", "WH-BER", &["books"]);
    decide(&mut rp, &e);
    assert!(matches!(rp.apply(&e, true, false), Applied::Unchanged));
    let mut other_id = e.clone();
    other_id.event_id = "another".into();
    assert!(matches!(
        rp.apply(&other_id, true, false),
        Applied::Unchanged
    ));
    let mut conflict = placed("B", "1", "2026-11-20T10:00:00Z", "WH-BER", &["books"]);
    conflict.event_id = "from-another-customer".into();
    assert!(matches!(
        rp.apply(&conflict, true, false),
        Applied::Conflict
    ));
}

#[test]
fn segments_see_the_segments_matched_before_them() {
    let rs = ruleset(&format!(
        r#"{INSERTS}
[[segment]]
id = "first"
when = "customer.orders_count == 1"
[[segment]]
id = "first-books"
when = "'first' in segments and 'books' in order.categories"
[[rule]]
id = "r"
when = "'first-books' in segments"
give = ["box"]
"#
    ));
    let mut rp = Replay::new(&rs, &KEY, &SHOP);
    let d = decide(
        &mut rp,
        &placed("A", "1", "2026-11-20T10:00:00Z", "WH-BER", &["books"]),
    );
    assert_eq!(d.segments, ["first", "first-books"]);
    assert_eq!(given(&d), ["box"]);
    let d = decide(
        &mut rp,
        &placed("B", "2", "2026-11-20T10:00:00Z", "WH-BER", &["tea"]),
    );
    assert_eq!(d.segments, ["first"]);
    let e = d.explain.unwrap();
    assert_eq!(e.rules[0].outcome, "condition");
}
