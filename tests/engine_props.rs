//! Property tests of the pure decision core: invariants that must hold for every order.

use packwell::coupon::CouponKey;
use packwell::engine::{self, DecideInput, Fresh, Shop, SkipReason};
use packwell::event::{Event, event_from_value};
use packwell::profile::History;
use packwell::rules::{RuleSet, load_rules};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::HashMap;
use std::sync::OnceLock;

const RULES: &str = r#"
[package]
max_inserts = 2

[[segment]]
id = "returning"
when = "customer.orders_count > 1"

[[insert]]
id = "c5"
kind = "coupon"
amount = { EUR = "5.00" }
code_prefix = "FIVE"

[[insert]]
id = "c10"
kind = "coupon"
amount = { EUR = "10.00", USD = "10.00" }
code_prefix = "TEN"

[[insert]]
id = "note"
kind = "note"
template = "hello"

[[insert]]
id = "tea"
kind = "gift"
unit_cost = "0.40"

[[insert]]
id = "box"
kind = "packaging"
unit_cost = "1.20"

[[rule]]
id = "big"
when = "order.total >= 50"
give = ["c10", "note"]
priority = 90
group = "coupon"
holdout = "30%"

[[rule]]
id = "returning"
when = "'returning' in segments"
give = ["c5"]
priority = 80
group = "coupon"
holdout = "50%"

[[rule]]
id = "books"
when = "'books' in order.categories"
give = ["tea"]
priority = 70
holdout = "20%"

[[rule]]
id = "any"
when = "order.item_count >= 1"
give = ["box", "note"]
priority = 60

[[rule]]
id = "also-coupon"
when = "true"
give = ["c5"]
priority = 10
group = "coupon"
"#;

fn rules() -> &'static RuleSet {
    static RULES_SET: OnceLock<(tempfile::TempDir, RuleSet)> = OnceLock::new();
    &RULES_SET
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("rules")).unwrap();
            std::fs::create_dir_all(dir.path().join("templates/notes")).unwrap();
            std::fs::write(dir.path().join("rules/r.toml"), RULES).unwrap();
            std::fs::write(
                dir.path().join("templates/notes/hello.hbs"),
                "Hi {{customer.first_name}}{{#if coupon}}, {{coupon.code}}{{/if}}",
            )
            .unwrap();
            let out = load_rules(&dir.path().join("rules"), &dir.path().join("templates"));
            let errors: Vec<String> = out.findings.iter().map(|f| f.to_string()).collect();
            let rules = out.rules.unwrap_or_else(|| panic!("{errors:?}"));
            (dir, rules)
        })
        .1
}

fn order_event(
    customer: &str,
    order: &str,
    day: u32,
    total: Decimal,
    currency: &str,
    categories: &[&str],
) -> Event {
    let items: Vec<_> = categories
        .iter()
        .map(|c| json!({"sku": format!("S-{c}"), "name": c, "category": c, "quantity": 1, "unit_price": total.to_string()}))
        .collect();
    event_from_value(&json!({
        "event_id": format!("ev-{order}"), "type": "order.placed",
        "occurred_at": format!("2026-{:02}-{:02}T10:00:00Z", 1 + day / 28, 1 + day % 28),
        "order": {"id": order, "customer": {"id": customer, "email": "x@y.z", "first_name": "Kim"},
                  "currency": currency, "total": total.to_string(), "items": items,
                  "shipping": {"country": "DE"}, "warehouse": "WH-BER"}}))
    .unwrap()
}

fn decide_after(
    history: usize,
    customer: &str,
    total: Decimal,
    currency: &str,
    cats: &[&str],
) -> engine::Outcome {
    let mut h = History::default();
    for i in 0..history {
        h.fold(&order_event(
            customer,
            &format!("H{i}"),
            i as u32 * 3,
            Decimal::from(20),
            "EUR",
            &["home"],
        ))
        .expect("the event folds");
    }
    let ev = order_event(customer, "O-NEW", 300, total, currency, cats);
    h.fold(&ev).expect("the event folds");
    let packwell::event::EventBody::OrderPlaced(order) = &ev.body else {
        unreachable!()
    };
    let key = CouponKey::from_bytes(vec![42; 32]);
    engine::decide(&DecideInput {
        rules: rules(),
        profile: h.profile(customer).unwrap(),
        order,
        at: ev.occurred_at,
        counters: &Fresh,
        issued: &Fresh,
        key: &key,
        shop: &Shop::default(),
        explain: false,
    })
}

fn categories() -> impl Strategy<Value = Vec<&'static str>> {
    prop::sample::subsequence(vec!["books", "tea", "home", "fragrance"], 1..=3)
}

fn amount() -> impl Strategy<Value = Decimal> {
    (0i64..20_000, 0u32..3).prop_map(|(m, s)| Decimal::new(m, s))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn never_more_than_max_inserts(c in "[A-Z]{1,8}", h in 0usize..4, t in amount(), cats in categories(), usd in any::<bool>()) {
        let o = decide_after(h, &c, t, if usd { "USD" } else { "EUR" }, &cats);
        prop_assert!(o.decision.inserts.len() <= 2, "{:?}", o.decision.inserts);
    }

    #[test]
    fn at_most_one_rule_of_a_group_gives(c in "[A-Z]{1,8}", h in 0usize..4, t in amount(), cats in categories()) {
        let o = decide_after(h, &c, t, "EUR", &cats);
        let coupon_rules: std::collections::BTreeSet<&str> = o.decision.inserts.iter()
            .map(|i| i.rule_id.as_str())
            .filter(|r| ["big", "returning", "also-coupon"].contains(r))
            .collect();
        prop_assert!(coupon_rules.len() <= 1, "{coupon_rules:?}");
        let held_in_group = o.decision.skipped.iter()
            .filter(|s| s.reason == SkipReason::Holdout && ["big", "returning", "also-coupon"].contains(&s.rule_id.as_str()))
            .count();
        prop_assert!(coupon_rules.len() + held_in_group <= 1, "a held-out rule settles its group too");
    }

    #[test]
    fn a_held_out_customer_gets_nothing_from_that_rule(c in "[A-Z]{1,8}", h in 0usize..4, t in amount(), cats in categories()) {
        let o = decide_after(h, &c, t, "EUR", &cats);
        for rule in &rules().rules {
            if engine::in_holdout(&c, &rule.id, rule.holdout_bp) {
                prop_assert!(o.decision.inserts.iter().all(|i| i.rule_id != rule.id), "{} gave to a held-out customer", rule.id);
            }
        }
        for s in o.decision.skipped.iter().filter(|s| s.reason == SkipReason::Holdout) {
            let rule = rules().rule(&s.rule_id).unwrap();
            prop_assert!(engine::in_holdout(&c, &rule.id, rule.holdout_bp));
        }
    }

    #[test]
    fn the_same_input_gives_the_same_decision(c in "[A-Z]{1,8}", h in 0usize..4, t in amount(), cats in categories()) {
        let a = decide_after(h, &c, t, "EUR", &cats);
        let b = decide_after(h, &c, t, "EUR", &cats);
        prop_assert_eq!(&a.decision, &b.decision);
        prop_assert_eq!(serde_json::to_string(&a.decision).unwrap(), serde_json::to_string(&b.decision).unwrap());
    }

    /// Totals with more digits than an f64 holds (over 2^53 in 1/10000, the finest unit the
    /// event bounds accept, up to their largest amount 10^12) still compare exactly in
    /// conditions.
    #[test]
    fn money_never_goes_through_a_float(mantissa in 9_007_199_254_740_993i64..=10_000_000_000_000_000, scale in 4u32..=4) {
        let total = Decimal::new(mantissa, scale);
        let just_below = total - Decimal::new(1, scale);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        std::fs::write(dir.path().join("rules/r.toml"), format!(
            "[[insert]]\nid = \"n\"\nkind = \"gift\"\n[[rule]]\nid = \"exact\"\nwhen = \"order.total == {total} and order.total > {just_below}\"\ngive = [\"n\"]\n")).unwrap();
        let out = load_rules(&dir.path().join("rules"), &dir.path().join("templates"));
        let rs = out.rules.expect("rules load");
        let ev = order_event("C", "O", 1, total, "EUR", &["books"]);
        let mut h = History::default();
        h.fold(&ev).unwrap();
        let packwell::event::EventBody::OrderPlaced(order) = &ev.body else { unreachable!() };
        prop_assert_eq!(order.total, total);
        let o = engine::decide(&DecideInput { rules: &rs, profile: h.profile("C").unwrap(), order, at: ev.occurred_at,
            counters: &Fresh, issued: &Fresh, key: &CouponKey::preview(), shop: &Shop::default(), explain: false });
        prop_assert_eq!(o.decision.inserts.len(), 1, "{:?}", o.decision.skipped);
    }
}

#[test]
fn coupon_amounts_are_exact_strings_in_the_order_currency() {
    let o = decide_after(0, "ZED", Decimal::new(6000, 2), "USD", &["books"]);
    let coupons: HashMap<&str, &engine::CouponGiven> = o
        .decision
        .inserts
        .iter()
        .filter_map(|i| i.coupon.as_ref().map(|c| (i.insert_id.as_str(), c)))
        .collect();
    // c5 has no USD amount: "also-coupon" may not give it; c10 is in USD.
    assert!(!coupons.contains_key("c5"));
    if let Some(c) = coupons.get("c10") {
        assert_eq!((c.amount.as_str(), c.currency.as_str()), ("10.00", "USD"));
        assert!(c.code.starts_with("TEN-"));
    }
    assert!(
        o.decision
            .skipped
            .iter()
            .any(|s| s.reason == SkipReason::Currency && s.insert_id.as_deref() == Some("c5"))
            || o.decision
                .skipped
                .iter()
                .any(|s| s.rule_id == "also-coupon" && s.reason == SkipReason::Group)
    );
}
