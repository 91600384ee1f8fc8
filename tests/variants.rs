//! Experiments between inserts (docs/REFERENCE.md §2 Variants, §4 `report`): the draw follows
//! the weights and is independent of the holdout; a customer's variant survives edits of other
//! rules and a change of weights; decisions name it; and the report compares the variants with
//! the holdout and with each other, on planted effects, as numbers and through `packwell report`.

use assert_cmd::Command;
use packwell::engine::{draw_variant, in_holdout};
use packwell::report::{self, Report, ReportOptions, RuleEffect, VariantEffect};
use packwell::store::{DecideEnv, SqliteStore, Store};
use serde_json::{Value, json};

#[macro_use]
mod store_support;
use store_support::*;

const INSERTS: &str = r#"
[package]
max_inserts = 3
currency = "EUR"

[[insert]]
id = "coupon-5"
kind = "coupon"
title = "5 off"
amount = { EUR = "5.00" }
valid_days = 90
code_prefix = "BACK"

[[insert]]
id = "sticker"
kind = "gift"
title = "A sticker"
sku = "GIFT-STICKER"
unit_cost = "0.10"

[[insert]]
id = "tea"
kind = "gift"
title = "A sachet of tea"
sku = "GIFT-TEA"
unit_cost = "0.40"
"#;

/// The experiment `exp` with a holdout and the weights of `coupon` and `sticker`, beside a rule
/// `other` written as `other`.
fn rules(holdout: &str, coupon: u32, sticker: u32, other: &str) -> String {
    format!(
        "{INSERTS}\n{other}\n[[rule]]\nid = \"exp\"\nwhen = \"true\"\nholdout = \"{holdout}\"\n\
         variants = [{{ id = \"coupon\", give = [\"coupon-5\"], weight = {coupon} }}, \
         {{ id = \"sticker\", give = [\"sticker\"], weight = {sticker} }}]\n"
    )
}

const OTHER: &str =
    "[[rule]]\nid = \"other\"\nwhen = \"customer.orders_count == 1\"\ngive = [\"tea\"]\n";

fn hours(h: i64) -> String {
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    (start + chrono::Duration::hours(h))
        .to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Order `n` of customer `c`, `at` hours into 2026.
fn order(c: &str, n: u32, at: i64, total: &str) -> Value {
    json!({"event_id": format!("p-{c}-{n}"), "type": "order.placed", "occurred_at": hours(at),
        "order": {"id": format!("{c}-{n}"), "customer": {"id": c, "email": format!("{c}@example.com"), "first_name": "Sam"},
            "currency": "EUR", "total": total,
            "items": [{"sku": "TEA-1", "name": "Tea", "category": "tea", "quantity": 1, "unit_price": total}],
            "shipping": {"country": "DE"}, "warehouse": "WH-BER"}})
}

async fn apply(store: &dyn Store, events: &[Value], env: &DecideEnv) {
    for chunk in events.chunks(500) {
        store.apply_batch(&batch(chunk), env).await.unwrap();
    }
}

/// The variant the decision of an order names for `exp` (None: held out, or not decided).
async fn variant_of(store: &dyn Store, order_id: &str) -> Option<String> {
    let d = store.decision(order_id).await.unwrap()?.decision;
    let given: Vec<_> = d.inserts.iter().filter(|i| i.rule_id == "exp").collect();
    assert!(given.len() <= 1, "one insert per variant: {given:?}");
    given.first().map(|g| {
        let v = g
            .variant
            .clone()
            .expect("an experiment's insert names its variant");
        let expected = if v == "coupon" { "coupon-5" } else { "sticker" };
        assert_eq!(g.insert_id, expected, "the variant's own insert");
        v
    })
}

/// Pearson's chi-square test of independence on an r × c table (r, c ≥ 2): the statistic and
/// its degrees of freedom.
fn independence(table: &[Vec<u64>]) -> (f64, usize) {
    let total: u64 = table.iter().flatten().sum();
    let rows: Vec<u64> = table.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<u64> = (0..table[0].len())
        .map(|j| table.iter().map(|r| r[j]).sum())
        .collect();
    let mut x = 0.0;
    for (i, row) in table.iter().enumerate() {
        for (j, seen) in row.iter().enumerate() {
            let expected = rows[i] as f64 * cols[j] as f64 / total as f64;
            x += (*seen as f64 - expected).powi(2) / expected;
        }
    }
    (x, (table.len() - 1) * (table[0].len() - 1))
}

#[test]
fn the_draw_follows_the_weights_and_is_independent_of_the_holdout() {
    let weights = [50, 30, 20];
    let n = 100_000u64;
    // Rows: held out (10%) or not; columns: the variant drawn.
    let mut table = vec![vec![0u64; 3]; 2];
    for i in 0..n {
        let c = format!("C-{i}");
        let v = draw_variant(&c, "exp", &weights).expect("a variant");
        table[usize::from(in_holdout(&c, "exp", 1000))][v] += 1;
    }
    for (j, w) in weights.iter().enumerate() {
        let share = (table[0][j] + table[1][j]) as f64 / n as f64;
        let want = f64::from(*w) / 100.0;
        assert!(
            (share - want).abs() < 0.01,
            "variant {j}: {share} against {want}"
        );
    }
    let held_out: u64 = table[1].iter().sum();
    assert!((held_out as f64 / n as f64 - 0.10).abs() < 0.01);
    // With 2 degrees of freedom the chi-square tail is exp(-x/2).
    let (x, df) = independence(&table);
    assert_eq!(df, 2);
    let p = (-x / 2.0).exp();
    assert!(
        p >= 0.001,
        "holdout and variant are related: x = {x}, p = {p}"
    );
    // The draw of one rule says nothing of another's: the same customers, another rule id.
    let mut other = vec![vec![0u64; 2]; 2];
    for i in 0..n {
        let c = format!("C-{i}");
        let a = draw_variant(&c, "exp", &[1, 1]).unwrap();
        let b = draw_variant(&c, "exp-2", &[1, 1]).unwrap();
        other[a][b] += 1;
    }
    let (x, df) = independence(&other);
    assert_eq!(df, 1);
    // 10.83: the chi-square(1) value with tail 0.001.
    assert!(x < 10.83, "two rules' draws are related: x = {x}");
}

/// The same customers' first orders decided under two rule folders that differ only in other
/// rules (edited, and one added ahead of the experiment) get the same variants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_of_other_rules_leave_every_variant_where_it_was() {
    let before = env_from(&rules("0%", 50, 50, OTHER), &[]);
    let edited_other = "[[rule]]\nid = \"first\"\nwhen = \"true\"\ngive = [\"tea\"]\npriority = 9\n\
        [[rule]]\nid = \"other\"\nwhen = \"customer.orders_count >= 1\"\ngive = [\"sticker\"]\ngroup = \"g\"\n";
    let after = env_from(&rules("0%", 50, 50, edited_other), &[]);
    assert_ne!(before.rules.version, after.rules.version);
    let events: Vec<Value> = (0..300)
        .map(|i| order(&format!("E-{i}"), 1, i, "20.00"))
        .collect();
    let (one, two) = (
        SqliteStore::open(":memory:").await.unwrap(),
        SqliteStore::open(":memory:").await.unwrap(),
    );
    apply(&one, &events, &before).await;
    apply(&two, &events, &after).await;
    let mut drawn = [0usize; 2];
    for i in 0..300 {
        let id = format!("E-{i}-1");
        let v = variant_of(&one, &id)
            .await
            .expect("no holdout: every order is treated");
        assert_eq!(Some(v.clone()), variant_of(&two, &id).await, "{id}");
        // And the variant is the draw, as in any other process (see cli_validate_variants).
        let want = draw_variant(&format!("E-{i}"), "exp", &[50, 50]).unwrap();
        assert_eq!(v, ["coupon", "sticker"][want]);
        drawn[want] += 1;
    }
    assert!(drawn[0] > 100 && drawn[1] > 100, "{drawn:?}");
}

/// Customers exposed under weights 50/50 keep their variant when the weights become 1/99;
/// customers first seen after the change follow the new weights; a variant removed from the
/// rules gives its customers a fresh draw, which they keep from then on. On both stores: the
/// assignment is kept in the stored profile.
async fn keeps_variants(b: Backend) {
    let store = &*b.store;
    let first = env_from(&rules("20%", 50, 50, ""), &[]);
    let customers: Vec<String> = (0..400).map(|i| format!("K-{i}")).collect();
    let firsts: Vec<Value> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| order(c, 1, i as i64, "20.00"))
        .collect();
    apply(store, &firsts, &first).await;

    let reweighted = env_from(&rules("20%", 1, 99, ""), &[]);
    let seconds: Vec<Value> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| order(c, 2, 1000 + i as i64, "20.00"))
        .collect();
    apply(store, &seconds, &reweighted).await;
    let mut would_move = 0;
    for c in &customers {
        let held_out = in_holdout(c, "exp", 2000);
        let kept = variant_of(store, &format!("{c}-1")).await;
        assert_eq!(kept.is_none(), held_out, "{c}");
        assert_eq!(
            variant_of(store, &format!("{c}-2")).await,
            kept,
            "{c} kept its variant"
        );
        // Stored at the first exposure, held out or not: the draw under the first weights.
        let first_draw = ["coupon", "sticker"][draw_variant(c, "exp", &[50, 50]).unwrap()];
        let profile = store.profile(c).await.unwrap().unwrap();
        assert_eq!(profile.variant("exp"), Some(first_draw), "{c}: stored");
        assert!(kept.as_deref().is_none_or(|k| k == first_draw), "{c}");
        let fresh = ["coupon", "sticker"][draw_variant(c, "exp", &[1, 99]).unwrap()];
        if kept.as_deref().is_some_and(|k| k != fresh) {
            would_move += 1;
        }
    }
    // Without the stored assignment, about half the treated would have moved.
    assert!(
        would_move > 100,
        "{would_move} customers' fresh draw differs"
    );

    // New customers follow the new weights.
    let newcomers: Vec<Value> = (0..200)
        .map(|i| order(&format!("N-{i}"), 1, 2000 + i, "20.00"))
        .collect();
    apply(store, &newcomers, &reweighted).await;
    for i in 0..200 {
        let c = format!("N-{i}");
        if let Some(v) = variant_of(store, &format!("{c}-1")).await {
            assert_eq!(
                v,
                ["coupon", "sticker"][draw_variant(&c, "exp", &[1, 99]).unwrap()]
            );
        }
    }

    // `coupon` is removed: its customers are drawn again among what is left, and keep that.
    let removed = env_from(
        &format!(
            "{INSERTS}\n[[rule]]\nid = \"exp\"\nwhen = \"true\"\nholdout = \"20%\"\n\
             variants = [{{ id = \"sticker\", give = [\"sticker\"], weight = 1 }}, \
             {{ id = \"tea\", give = [\"tea\"], weight = 1 }}]\n"
        ),
        &[],
    );
    let thirds: Vec<Value> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| order(c, 3, 3000 + i as i64, "20.00"))
        .collect();
    apply(store, &thirds, &removed).await;
    let mut redrawn = 0;
    for c in &customers {
        let Some(before) = variant_of(store, &format!("{c}-2")).await else {
            continue;
        };
        let profile = store.profile(c).await.unwrap().unwrap();
        let now = profile.variant("exp").unwrap().to_string();
        if before == "sticker" {
            assert_eq!(now, "sticker", "{c}");
        } else {
            redrawn += 1;
            assert_eq!(
                now,
                ["sticker", "tea"][draw_variant(c, "exp", &[1, 1]).unwrap()],
                "{c}"
            );
        }
    }
    assert!(redrawn > 50, "{redrawn}");
}

on_both!(
    a_customer_keeps_their_variant_when_the_weights_change,
    keeps_variants
);

/// `exp` on first orders only: 20% held out, the rest split 50/50 between a 5.00 coupon and a
/// 0.10 sticker.
fn planted_rules() -> String {
    rules("20%", 50, 50, "").replace("when = \"true\"", "when = \"customer.orders_count == 1\"")
}

/// Customers' first orders over 60 days. Those given the coupon reorder within 90 days with
/// probability 0.45; those given the sticker, and the held out, with 0.30. The true uplifts:
/// coupon +0.15 and sticker 0 against the holdout, coupon +0.15 against sticker.
fn planted_history(seed: u64, customers: u64) -> Vec<Value> {
    history(seed, customers, |c| {
        let coupon = !in_holdout(c, "exp", 2000) && draw_variant(c, "exp", &[50, 50]) == Some(0);
        if coupon { 0.45 } else { 0.30 }
    })
}

/// Customers' first orders over 60 days, each followed within 90 days by a second order with
/// the probability `rate` gives the customer; then a decision 200 days in, so that every
/// first order's window is over.
fn history(seed: u64, customers: u64, rate: impl Fn(&str) -> f64) -> Vec<Value> {
    let mut rng = SplitMix(seed);
    let mut events = Vec::new();
    for i in 0..customers {
        let c = format!("S{seed}-{i}");
        let first = rng.below(60 * 24) as i64;
        events.push(order(&c, 1, first, "24.00"));
        if rng.unit() < rate(&c) {
            // Within the window: 2 to 85 days later.
            let later = first + 48 + rng.below(83 * 24) as i64;
            events.push(order(&c, 2, later, "31.00"));
        }
    }
    events.push(order("END", 1, 200 * 24, "1.00"));
    events.sort_by(|a, b| a["occurred_at"].as_str().cmp(&b["occurred_at"].as_str()));
    events
}

fn effect<'a>(r: &'a Report, id: &str) -> &'a RuleEffect {
    r.rules
        .iter()
        .find(|e| e.id == id)
        .expect("the rule is reported")
}

fn variant<'a>(e: &'a RuleEffect, id: &str) -> &'a VariantEffect {
    e.variants
        .iter()
        .find(|v| v.id == id)
        .expect("the variant is reported")
}

/// As in the report's own planted-effect test: over eight seeds a correct 95% interval misses
/// the true value at most twice but for a 0.6% chance; the planted difference must be found
/// every time, and every rate is exactly the generated data's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_finds_the_planted_difference_between_variants() {
    let env = env_from(&planted_rules(), &[]);
    let (mut coupon_missed, mut sticker_missed, mut pair_missed) = (vec![], vec![], vec![]);
    for seed in 1..=8 {
        let store = SqliteStore::open(":memory:").await.unwrap();
        let events = planted_history(seed, 4000);
        apply(&store, &events, &env).await;
        let r = report::build(&store, Some(&env.rules), ReportOptions::default())
            .await
            .unwrap();
        let e = effect(&r, "exp");
        let (coupon, sticker) = (variant(e, "coupon"), variant(e, "sticker"));
        assert_eq!(e.variants.len(), 2);
        assert_eq!((coupon.weight, sticker.weight), (50, 50));
        assert_eq!(coupon.treated + sticker.treated, e.treated, "seed {seed}");
        assert_eq!(e.treated + e.held_out, 4000, "seed {seed}");
        assert_eq!(
            coupon.held_out + sticker.held_out,
            e.held_out,
            "seed {seed}"
        );
        // Exactly the generated data's rates: (held out, variant drawn) of each who reordered.
        let reordered = |held_out: bool, drawn: usize| {
            events
                .iter()
                .filter_map(|e| e["order"]["id"].as_str())
                .filter_map(|id| id.strip_suffix("-2"))
                .filter(|c| {
                    in_holdout(c, "exp", 2000) == held_out
                        && draw_variant(c, "exp", &[50, 50]) == Some(drawn)
                })
                .count() as f64
        };
        for (i, v) in [coupon, sticker].into_iter().enumerate() {
            assert_eq!(
                v.repeat_rate.treated,
                Some(reordered(false, i) / v.treated as f64)
            );
            assert_eq!(
                v.repeat_rate.held_out,
                Some(reordered(true, i) / v.held_out as f64)
            );
        }
        assert_eq!(
            e.repeat_rate.held_out,
            Some((reordered(true, 0) + reordered(true, 1)) / e.held_out as f64)
        );
        // What each variant gave its customers, exactly.
        assert_eq!(
            coupon.cost.get("EUR").map(String::as_str),
            Some(format!("{}.00", coupon.treated * 5).as_str())
        );
        let stickers = rust_decimal::Decimal::new(i64::try_from(sticker.treated).unwrap() * 10, 2);
        assert_eq!(sticker.cost.get("EUR"), Some(&stickers.to_string()));
        assert!(coupon.cost_per_extra_order.is_some());

        let u = coupon.uplift.as_ref().unwrap();
        let none = sticker.uplift.as_ref().unwrap();
        let pair = coupon.versus[0].uplift.as_ref().unwrap();
        assert_eq!(coupon.versus[0].variant, "sticker");
        let back = sticker.versus[0].uplift.as_ref().unwrap();
        assert!(
            (pair.absolute + back.absolute).abs() < 1e-12,
            "one difference, two signs"
        );
        eprintln!(
            "seed {seed}: coupon {:+.3} [{:+.3}, {:+.3}], sticker {:+.3} [{:+.3}, {:+.3}], coupon - sticker {:+.3} [{:+.3}, {:+.3}], split p = {:?}",
            u.absolute,
            u.low,
            u.high,
            none.absolute,
            none.low,
            none.high,
            pair.absolute,
            pair.low,
            pair.high,
            e.sample_ratio.p_value
        );
        assert!(
            u.low > 0.0 && pair.low > 0.0,
            "seed {seed}: the planted effect is found"
        );
        assert_eq!(e.best_variant.as_deref(), Some("coupon"), "seed {seed}");
        for (missed, interval, truth) in [
            (&mut coupon_missed, u, 0.15),
            (&mut sticker_missed, none, 0.0),
            (&mut pair_missed, pair, 0.15),
        ] {
            if !(interval.low <= truth && truth <= interval.high) {
                missed.push(seed);
            }
        }
        // The honest three-way split (20 / 40 / 40) is quiet.
        let p = e
            .sample_ratio
            .p_value
            .expect("a holdout and variants to test");
        assert!(p >= 0.001, "seed {seed}: p = {p}");
        assert!(e.sample_ratio.warning.is_none());
    }
    for (name, missed) in [
        ("coupon", coupon_missed),
        ("sticker", sticker_missed),
        ("pair", pair_missed),
    ] {
        assert!(
            missed.len() <= 2,
            "{name}'s interval missed the truth for seeds {missed:?}"
        );
    }
}

/// Equal variants: no best variant. A third of the sticker's customers lost: the split check
/// fires and names the groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_variants_name_no_winner_and_a_broken_split_is_flagged() {
    let env = env_from(&planted_rules(), &[]);
    // The sticker's rate for everyone: no difference planted.
    let store = SqliteStore::open(":memory:").await.unwrap();
    let events = history(77, 3000, |_| 0.30);
    apply(&store, &events, &env).await;
    let r = report::build(&store, Some(&env.rules), ReportOptions::default())
        .await
        .unwrap();
    let e = effect(&r, "exp");
    let pair = variant(e, "coupon").versus[0].uplift.clone().unwrap();
    assert!(pair.low <= 0.0 && 0.0 <= pair.high, "{pair:?}");
    assert_eq!(e.best_variant, None);

    let lost = |c: &str| {
        !in_holdout(c, "exp", 2000)
            && draw_variant(c, "exp", &[50, 50]) == Some(1)
            && c.bytes().map(u32::from).sum::<u32>() % 3 == 0
    };
    let kept: Vec<Value> = events
        .into_iter()
        .filter(|e| !lost(e["order"]["customer"]["id"].as_str().unwrap_or_default()))
        .collect();
    let broken = SqliteStore::open(":memory:").await.unwrap();
    apply(&broken, &kept, &env).await;
    let r = report::build(&broken, Some(&env.rules), ReportOptions::default())
        .await
        .unwrap();
    let e = effect(&r, "exp");
    let p = e.sample_ratio.p_value.unwrap();
    assert!(p < 0.001, "p = {p}");
    let w = e.sample_ratio.warning.as_deref().unwrap();
    assert!(
        w.contains("not the configured 50.0% coupon, 50.0% sticker"),
        "{w}"
    );
}

/// A shadow experiment gives nothing: its customers are counted as shadow, in no variant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_experiment_puts_nobody_in_a_variant() {
    let rules = planted_rules().replace("holdout = \"20%\"", "mode = \"shadow\"");
    let env = env_from(&rules, &[]);
    let store = SqliteStore::open(":memory:").await.unwrap();
    apply(&store, &planted_history(5, 1000), &env).await;
    let r = report::build(&store, Some(&env.rules), ReportOptions::default())
        .await
        .unwrap();
    let e = effect(&r, "exp");
    assert_eq!((e.mode.as_str(), e.shadow, e.treated), ("shadow", 1000, 0));
    for v in &e.variants {
        assert_eq!((v.treated, v.held_out), (0, 0), "{}", v.id);
        assert!(v.cost.is_empty(), "{}", v.id);
    }
    assert_eq!(e.best_variant, None);
    assert_eq!(e.sample_ratio.p_value, None);
}

/// `packwell report` on the store: the JSON carries the variants and the best one (and
/// validates against the schema), the text compares them, the HTML plots each variant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_command_shows_the_variants() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir
        .path()
        .join("packwell.db")
        .to_string_lossy()
        .into_owned();
    let store = SqliteStore::open(&db).await.unwrap();
    let env = env_from(&planted_rules(), &[]);
    apply(&store, &planted_history(3, 4000), &env).await;
    drop(store);
    std::fs::write(
        dir.path().join("packwell.toml"),
        format!("[store]\nurl = {db:?}\n"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/r.toml"), planted_rules()).unwrap();
    let report = |args: &[&str]| {
        let out = Command::cargo_bin("packwell")
            .unwrap()
            .current_dir(dir.path())
            .args(["report", "--config", "packwell.toml"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let raw: Value = serde_json::from_str(&report(&["--format", "json"])).unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/report.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&raw).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "schemas/report.schema.json: {errors:?}");
    let exp = raw["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "exp")
        .unwrap();
    assert_eq!(exp["best_variant"], "coupon");
    assert_eq!(exp["variants"][0]["id"], "coupon");
    assert!(exp["variants"][0]["uplift"]["low"].as_f64().unwrap() > 0.0);
    assert!(exp["variants"][1]["cost"]["EUR"].is_string());

    let text = report(&[]);
    assert!(text.contains("best variant       coupon"), "{text}");
    assert!(text.contains("coupon vs sticker: +"), "{text}");
    assert!(text.contains(": coupon is better"), "{text}");

    report(&["--format", "html", "--out", "r.html"]);
    let html = std::fs::read_to_string(dir.path().join("r.html")).unwrap();
    assert!(
        html.contains("exp \u{203a} coupon"),
        "the forest plot has a row per variant"
    );
    assert!(html.contains("Best variant"));
}
