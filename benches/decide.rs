//! Throughput of the decision path: `engine::decide`, the bare condition evaluations it is built
//! on, `Context::build`, and folding events into profiles.
//!
//! At the end, the figures of issue 17 are printed from a run of their own, the cases taking
//! turns round by round so that the machine's other load falls on each alike: `decide` per
//! second with the note rendered (goal >= 200 000), without a note, and the bare condition
//! evaluation of the same rules and customer (goal: `decide` without a note <= 2x its time).
//!
//! Run: `cargo bench --bench decide -- --warm-up-time 1 --measurement-time 3`
//! (`PW_FIGURE_ROUNDS`, default 15, sets the rounds of the figures; 0 skips them).

use chrono::{DateTime, Duration, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use packwell::coupon::CouponKey;
use packwell::engine::{self, Context, DecideInput, Fresh, Shop};
use packwell::event::{Event, EventBody, Order, event_from_value, parse_event};
use packwell::profile::{History, Profile};
use packwell::replay::Replay;
use packwell::rules::{RuleSet, load_rules};
use serde_json::{Value, json};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;
use zen_expression::vm::VM;

/// The same allocator as the `packwell` binary: a decision allocates many small strings.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/turns.rs"]
mod turns;
use turns::{median, take_turns, time_ratio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(rules_dir: &Path, templates_dir: &Path) -> RuleSet {
    let out = load_rules(rules_dir, templates_dir);
    for f in &out.findings {
        eprintln!(
            "{} {}:{}:{}: {}",
            if f.warning { "warning" } else { "error" },
            f.file.display(),
            f.line,
            f.col,
            f.message
        );
    }
    out.rules.unwrap_or_else(|| {
        panic!(
            "rules in {} did not load (findings above)",
            rules_dir.display()
        )
    })
}

fn example_rules() -> RuleSet {
    let r = root();
    load(&r.join("rules"), &r.join("templates"))
}

/// 30 rules of varied conditions over `customer.*` and `order.*`, giving existing inserts.
/// Some match the first-book order (and then fall to `max_inserts` or the coupon group), most
/// do not.
const GENERATED: &[(&str, &str, &str)] = &[
    // (condition, give, extra keys)
    (
        "order.total >= 100 and order.currency == 'EUR'",
        "gift-box",
        "priority = 65\ngroup = \"packaging\"",
    ),
    (
        "order.item_count >= 3 and 'books' in order.categories",
        "tea-sachet",
        "priority = 45\ncooldown = \"30d\"",
    ),
    (
        "some(order.items, #.category == 'fragrance' and #.unit_price > 30)",
        "fragrance-sample",
        "priority = 48",
    ),
    (
        "order.shipping.country in ['AT', 'CH']",
        "winter-note",
        "priority = 25",
    ),
    (
        "customer.orders_count >= 5 and customer.lifetime_spend > 250",
        "gift-box",
        "priority = 68\ngroup = \"packaging\"",
    ),
    (
        "customer.nps != null and customer.nps >= 9",
        "birthday-gift",
        "priority = 40",
    ),
    (
        "order.channel == 'app' and order.total > 30",
        "welcome-back-coupon",
        "priority = 85\ngroup = \"coupon\"",
    ),
    (
        "'tea' in customer.categories_bought and not ('tea' in order.categories)",
        "tea-sachet",
        "priority = 35",
    ),
    (
        "customer.returns_count > 2 or customer.cancelled_count > 1",
        "apology-note",
        "priority = 92\ncooldown = \"90d\"",
    ),
    (
        "order.warehouse == 'WH-NYC' and order.currency == 'USD'",
        "fragrance-sample",
        "priority = 47",
    ),
    (
        "some(order.items, #.quantity >= 2)",
        "tea-sachet",
        "priority = 33",
    ),
    (
        "customer.days_since_previous_order != null and customer.days_since_previous_order < 7",
        "passive-coupon",
        "priority = 75\ngroup = \"coupon\"",
    ),
    (
        "customer.coupons_redeemed >= 3 and customer.coupons_received > customer.coupons_redeemed",
        "sorry-coupon",
        "priority = 72\ngroup = \"coupon\"",
    ),
    (
        "order.shipping.city in ['Berlin', 'Hamburg', 'Munich'] and 'books' in order.categories",
        "winter-note",
        "priority = 28\nactive = { from = \"2026-12-01\", until = \"2026-12-31\" }",
    ),
    (
        "customer.late_deliveries_count >= 1",
        "apology-note",
        "priority = 94\ncooldown = \"60d\"",
    ),
    (
        "order.total > 200 or customer.average_order_value > 150",
        "gift-box",
        "priority = 66\ngroup = \"packaging\"",
    ),
    (
        "len(order.items) > 5",
        "linen-spray-sample",
        "priority = 15\nmode = \"shadow\"",
    ),
    (
        "customer.birthday_month != null and customer.birthday_month == decision.month + 1",
        "birthday-gift",
        "priority = 58",
    ),
    (
        "'home' in order.categories and customer.orders_count > 1",
        "linen-spray-sample",
        "priority = 18\nmode = \"shadow\"",
    ),
    (
        "decision.weekday >= 6 and order.total >= 50",
        "tea-sachet",
        "priority = 31",
    ),
    (
        "customer.orders_count == 1 and order.total > 40",
        "gift-box",
        "priority = 20\nbudget = { EUR = \"50.00\", per = \"week\" }",
    ),
    (
        "some(order.items, #.category == 'books' and #.unit_price >= 15)",
        "tea-sachet",
        "priority = 44",
    ),
    (
        "len(order.coupon_codes) > 0",
        "passive-coupon",
        "priority = 70\ngroup = \"coupon\"",
    ),
    (
        "customer.subscribed and customer.orders_count in [2, 3]",
        "welcome-back-coupon",
        "priority = 78\ngroup = \"coupon\"",
    ),
    ("order.item_count > 10", "gift-box", "priority = 69"),
    (
        "customer.median_days_between_orders != null and customer.median_days_between_orders < 14",
        "tea-sachet",
        "priority = 34",
    ),
    (
        "order.shipping.postcode in ['10435', '10115', '20095']",
        "winter-note",
        "priority = 26\ncooldown = \"30d\"",
    ),
    (
        "customer.nps_group in ['passive', 'detractor'] and order.total > 20",
        "passive-coupon",
        "priority = 74\ngroup = \"coupon\"\nholdout = \"5%\"",
    ),
    (
        "not ('fragrance' in order.categories) and 'fragrance' in customer.categories_bought",
        "fragrance-sample",
        "priority = 46\ncooldown = \"60d\"",
    ),
    (
        "order.total >= 40 and order.total < 60 and order.currency == 'EUR'",
        "tea-sachet",
        "priority = 32\nholdout = \"20%\"",
    ),
];

/// The example rules plus [`GENERATED`], written to a temporary folder and loaded from there.
fn example_plus_30_rules() -> RuleSet {
    let r = root();
    let dir = tempfile::tempdir().expect("temp dir");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rules_dir).expect("create rules dir");
    for entry in std::fs::read_dir(r.join("rules")).expect("read rules/") {
        let path = entry.expect("dir entry").path();
        if path.is_file() && path.extension().is_some_and(|e| e == "toml") {
            let name = path.file_name().expect("file name");
            std::fs::copy(&path, rules_dir.join(name)).expect("copy rule file");
        }
    }
    let mut text = String::from("# 30 generated rules for benchmarking\n");
    assert_eq!(GENERATED.len(), 30);
    for (i, (when, give, extra)) in GENERATED.iter().enumerate() {
        text.push_str(&format!(
            "\n[[rule]]\nid = \"gen-{i:02}\"\nwhen = \"{when}\"\ngive = [\"{give}\"]\n{extra}\n"
        ));
    }
    std::fs::write(rules_dir.join("99-generated.toml"), text).expect("write generated rules");
    let templates_dir = dir.path().join("templates");
    copy_dir(&r.join("templates"), &templates_dir);
    let rules = load(&rules_dir, &templates_dir);
    assert_eq!(rules.rules.len(), 10 + 30, "expected 40 rules");
    rules
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("dir entry").path();
        let target = to.join(path.file_name().expect("file name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy file");
        }
    }
}

fn first_book_event() -> Event {
    let bytes = std::fs::read(root().join("examples/orders/first-book-order.json"))
        .expect("read examples/orders/first-book-order.json");
    parse_event(&bytes).expect("first-book-order.json is a valid event")
}

fn order_of(event: &Event) -> &Order {
    match &event.body {
        EventBody::OrderPlaced(o) => o,
        _ => panic!("not an order.placed event"),
    }
}

/// The profile of the order's customer with the order folded in (what `decide` expects).
fn profile_after(history: &mut History, event: &Event) -> Profile {
    history.fold(event).expect("the event folds");
    history
        .profile(event.customer_id())
        .expect("profile after folding")
        .clone()
}

const CATEGORIES: &[&str] = &[
    "books",
    "tea",
    "fragrance",
    "home",
    "stationery",
    "kitchen",
    "candles",
    "games",
];

/// `n` past orders of `customer` (JSON as in the order examples), one every 3 days, ending the
/// day before `before`, with varied categories and totals.
fn past_orders(
    customer: &Value,
    n: usize,
    before: DateTime<Utc>,
    categories: &[String],
) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let at = before - Duration::days(3 * (n - i) as i64) + Duration::minutes(i as i64);
            let cat_a = &categories[i % categories.len()];
            let cat_b = &categories[(i * 3 + 1) % categories.len()];
            let cents = 1500 + (i * 737) % 9000;
            let total = format!("{}.{:02}", cents / 100 + 5, cents % 100);
            let v = json!({
                "event_id": format!("ev-past-{i}"),
                "type": "order.placed",
                "occurred_at": at.to_rfc3339(),
                "order": {
                    "id": format!("O-PAST-{i:05}"),
                    "customer": customer,
                    "currency": "EUR",
                    "total": total,
                    "items": [
                        {"sku": format!("SKU-{}", i % 97), "name": "Something", "category": cat_a,
                         "quantity": 1, "unit_price": format!("{}.{:02}", cents / 100, cents % 100)},
                        {"sku": "SKU-X", "name": "Something else", "category": cat_b,
                         "quantity": 1, "unit_price": "5.00"}
                    ],
                    "shipping": {"country": "DE", "city": "Berlin", "postcode": "10435"},
                    "warehouse": "WH-BER",
                    "channel": "web",
                    "promised_delivery": (at + Duration::days(3)).date_naive().to_string()
                }
            });
            event_from_value(&v).expect("generated past order is a valid event")
        })
        .collect()
}

/// The customer of the first-book order after `n` past orders and then the order itself.
fn profile_with_history(order_event: &Event, n: usize, categories: &[String]) -> Profile {
    let raw: Value = serde_json::from_slice(
        &std::fs::read(root().join("examples/orders/first-book-order.json")).expect("read order"),
    )
    .expect("order JSON");
    let mut history = History::default();
    for e in past_orders(
        &raw["order"]["customer"],
        n,
        order_event.occurred_at,
        categories,
    ) {
        history.fold(&e).expect("the event folds");
    }
    profile_after(&mut history, order_event)
}

/// A realistic event stream: examples/history.ndjson when it is there and non-empty, else
/// 10k generated events.
fn event_stream() -> Vec<Event> {
    let path = root().join("examples/history.ndjson");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let events: Vec<Event> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| parse_event(l.as_bytes()).ok())
            .collect();
        if !events.is_empty() {
            eprintln!(
                "profile/fold: {} events from {}",
                events.len(),
                path.display()
            );
            return events;
        }
    }
    eprintln!("profile/fold: 10000 generated events");
    let start = DateTime::parse_from_rfc3339("2026-01-01T08:00:00Z")
        .expect("date")
        .with_timezone(&Utc);
    (0..10_000usize)
        .map(|i| {
            let c = i % 1500;
            let customer = json!({"id": format!("C-{c:06}"), "email": format!("c{c}@example.com"),
                "first_name": "Alex", "locale": "de-DE", "time_zone": "Europe/Berlin",
                "birthday": "1980-03-04"});
            let cats = [CATEGORIES[i % CATEGORIES.len()].to_string()];
            let mut e = past_orders(
                &customer,
                1,
                start + Duration::minutes(37 * i as i64),
                &cats,
            )
            .pop()
            .expect("one event");
            e.event_id = format!("ev-gen-{i}");
            if let EventBody::OrderPlaced(o) = &mut e.body {
                o.id = format!("O-GEN-{i:06}");
            }
            e
        })
        .collect()
}

fn decide_once(rules: &RuleSet, profile: &Profile, order: &Order, at: DateTime<Utc>) -> usize {
    let key = CouponKey::preview();
    let shop = Shop::default();
    let outcome = engine::decide(&DecideInput {
        rules,
        profile,
        order,
        at,
        counters: &Fresh,
        issued: &Fresh,
        key: &key,
        shop: &shop,
        explain: false,
    });
    outcome.decision.inserts.len()
}

/// Prints what `decide` gives; returns the number of notes rendered.
fn describe(
    label: &str,
    rules: &RuleSet,
    profile: &Profile,
    order: &Order,
    at: DateTime<Utc>,
) -> usize {
    let key = CouponKey::preview();
    let shop = Shop::default();
    let d = engine::decide(&DecideInput {
        rules,
        profile,
        order,
        at,
        counters: &Fresh,
        issued: &Fresh,
        key: &key,
        shop: &shop,
        explain: false,
    })
    .decision;
    let given: Vec<&str> = d.inserts.iter().map(|i| i.insert_id.as_str()).collect();
    let notes = d.inserts.iter().filter(|i| i.note.is_some()).count();
    let skipped: Vec<String> = d
        .skipped
        .iter()
        .map(|s| format!("{}:{}", s.rule_id, s.reason.as_str()))
        .collect();
    eprintln!(
        "{label}: {} rules, segments {:?}, inserts {given:?} ({notes} note(s) rendered), skipped {skipped:?}",
        rules.rules.len(),
        d.segments
    );
    notes
}

/// Every segment's and rule's condition evaluated once over a context built beforehand, as
/// `decide` evaluates them: the bare condition evaluation.
fn eval_all(rules: &RuleSet, ctx: &Context, vm: &mut VM) -> usize {
    let mut hits = 0usize;
    for seg in &rules.segments {
        hits += usize::from(engine::evaluate(&seg.when, black_box(&ctx.root), vm) == Ok(true));
    }
    for rule in &rules.rules {
        hits += usize::from(engine::evaluate(&rule.when, black_box(&ctx.root), vm) == Ok(true));
    }
    hits
}

/// The context `decide` evaluates in, with the matching segments pushed (as `decide` does).
fn eval_context(rules: &RuleSet, profile: &Profile, order: &Order, at: DateTime<Utc>) -> Context {
    let ctx = Context::build(profile, order, at, None, &rules.needs);
    let mut vm = VM::new();
    for seg in &rules.segments {
        if engine::evaluate(&seg.when, &ctx.root, &mut vm) == Ok(true) {
            ctx.push_segment(&seg.id);
        }
    }
    ctx
}

/// Every segment's and rule's condition, as `decide` evaluates them (segments that match are
/// pushed once, outside the timing, so rules see them).
fn bare_eval(c: &mut Criterion, name: &str, rules: &RuleSet, profile: &Profile, order: &Order) {
    let at = first_book_event().occurred_at;
    let ctx = eval_context(rules, profile, order, at);
    let mut vm = VM::new();
    let mut group = c.benchmark_group("bare_eval");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| b.iter(|| eval_all(rules, &ctx, &mut vm)));
    group.finish();
}

/// The issue's figures for `decide`, with their baselines from the same rounds.
fn figures(
    rules: &RuleSet,
    with_note: &Profile,
    without_note: &Profile,
    order: &Order,
    at: DateTime<Utc>,
) {
    let rounds = turns::rounds();
    if rounds == 0 {
        return;
    }
    let ctx_note = eval_context(rules, with_note, order, at);
    let ctx_plain = eval_context(rules, without_note, order, at);
    let mut vm = VM::new();
    let mut vm2 = VM::new();
    let rates = take_turns(
        rounds,
        StdDuration::from_millis(100),
        &mut [
            &mut || {
                black_box(decide_once(
                    black_box(rules),
                    black_box(with_note),
                    order,
                    at,
                ));
            },
            &mut || {
                black_box(decide_once(
                    black_box(rules),
                    black_box(without_note),
                    order,
                    at,
                ));
            },
            &mut || {
                black_box(eval_all(rules, &ctx_note, &mut vm));
            },
            &mut || {
                black_box(eval_all(rules, &ctx_plain, &mut vm2));
            },
        ],
    );
    let rate = |i: usize| median(rates[i].clone());
    eprintln!();
    eprintln!(
        "issue 17 figures: decide, example rules, one core ({rounds} rounds taking turns, medians)"
    );
    eprintln!(
        "  decide with the note rendered (first-book order): {:>9.0}/s   goal >= 200000/s",
        rate(0)
    );
    eprintln!(
        "  decide without a note (a VIP's order):            {:>9.0}/s",
        rate(1)
    );
    eprintln!(
        "  bare condition evaluation, first-book customer:   {:>9.0}/s",
        rate(2)
    );
    eprintln!(
        "  bare condition evaluation, VIP customer:          {:>9.0}/s",
        rate(3)
    );
    eprintln!(
        "  decide with the note / bare evaluation:   {:.2}x the time",
        time_ratio(&rates, 0, 2)
    );
    eprintln!(
        "  decide without a note / bare evaluation:  {:.2}x the time   goal <= 2x",
        time_ratio(&rates, 1, 3)
    );
}

fn benches(c: &mut Criterion) {
    let event = first_book_event();
    let order = order_of(&event).clone();
    let at = event.occurred_at;

    let profile_0 = profile_after(&mut History::default(), &event);
    let eight: Vec<String> = CATEGORIES.iter().map(|c| c.to_string()).collect();
    let profile_1000 = profile_with_history(&event, 1000, &eight);
    // Ten past orders already make the customer a VIP: the same decision as after 1000, so
    // history_10 vs history_1000 isolates the size of the history from what the rules give.
    let profile_10 = profile_with_history(&event, 10, &eight);
    let json_size = |p: &Profile| serde_json::to_vec(p).expect("profile serializes").len();
    eprintln!(
        "profile size (JSON): {} bytes (after 1000 orders over {} categories; {} categories kept, {} recent order times)",
        json_size(&profile_1000),
        eight.len(),
        profile_1000.categories_bought.len(),
        profile_1000.recent_orders.len()
    );
    // Worst case of the category cap: more distinct categories than are kept.
    let many: Vec<String> = (0..40).map(|i| format!("category-{i:02}")).collect();
    let profile_many = profile_with_history(&event, 1000, &many);
    eprintln!(
        "profile size (JSON): {} bytes (after 1000 orders over {} categories; {} categories kept, the cap)",
        json_size(&profile_many),
        many.len(),
        profile_many.categories_bought.len()
    );

    let example = example_rules();
    let plus30 = example_plus_30_rules();

    // As the service would hold it: the same 1000 orders and this one replayed with decisions,
    // so cooldowns (`rule_last_given`) and coupons received are recorded too.
    {
        let key = CouponKey::preview();
        let shop = Shop::default();
        let mut replay = Replay::new(&example, &key, &shop);
        let raw: Value = serde_json::from_slice(
            &std::fs::read(root().join("examples/orders/first-book-order.json")).expect("order"),
        )
        .expect("order JSON");
        for e in past_orders(&raw["order"]["customer"], 1000, at, &eight) {
            replay.apply(&e, true, false);
        }
        replay.apply(&event, true, false);
        let p = replay
            .state
            .profiles
            .get(event.customer_id())
            .expect("replayed profile");
        eprintln!(
            "profile size (JSON): {} bytes (1000 orders replayed with decisions over {} categories; {} rule cooldowns recorded)",
            json_size(p),
            eight.len(),
            p.rule_last_given.len()
        );
    }
    assert_eq!(
        describe("example_rules", &example, &profile_0, &order, at),
        1,
        "the first-book order gets its welcome note"
    );
    describe("example_plus_30_rules", &plus30, &profile_0, &order, at);
    assert_eq!(
        describe("history_10", &example, &profile_10, &order, at),
        0,
        "a VIP's order gets no note: the case without one"
    );
    describe("history_1000", &example, &profile_1000, &order, at);

    {
        let mut group = c.benchmark_group("decide");
        group.throughput(Throughput::Elements(1));
        group.bench_function("example_rules", |b| {
            b.iter(|| decide_once(black_box(&example), black_box(&profile_0), &order, at))
        });
        group.bench_function("example_rules_no_note", |b| {
            b.iter(|| decide_once(black_box(&example), black_box(&profile_10), &order, at))
        });
        group.bench_function("example_plus_30_rules", |b| {
            b.iter(|| decide_once(black_box(&plus30), black_box(&profile_0), &order, at))
        });
        group.bench_function("history_0", |b| {
            b.iter(|| decide_once(black_box(&example), black_box(&profile_0), &order, at))
        });
        group.bench_function("history_10", |b| {
            b.iter(|| decide_once(black_box(&example), black_box(&profile_10), &order, at))
        });
        group.bench_function("history_1000", |b| {
            b.iter(|| decide_once(black_box(&example), black_box(&profile_1000), &order, at))
        });
        group.finish();
    }

    bare_eval(c, "example_rules", &example, &profile_0, &order);
    bare_eval(c, "example_rules_no_note", &example, &profile_10, &order);
    bare_eval(c, "example_plus_30_rules", &plus30, &profile_0, &order);

    {
        let mut group = c.benchmark_group("context");
        group.throughput(Throughput::Elements(1));
        group.bench_function("build", |b| {
            b.iter(|| {
                Context::build(
                    black_box(&profile_0),
                    black_box(&order),
                    at,
                    None,
                    &example.needs,
                )
            })
        });
        group.bench_function("build_history_1000", |b| {
            b.iter(|| {
                Context::build(
                    black_box(&profile_1000),
                    black_box(&order),
                    at,
                    None,
                    &example.needs,
                )
            })
        });
        group.finish();
    }

    {
        let events = event_stream();
        let mut group = c.benchmark_group("profile");
        group.throughput(Throughput::Elements(events.len() as u64));
        group.bench_function("fold", |b| {
            b.iter_batched(
                History::default,
                |mut history| {
                    for e in &events {
                        history.fold(black_box(e)).expect("the event folds");
                    }
                    history
                },
                BatchSize::LargeInput,
            )
        });
        group.finish();
    }
}

fn issue_figures(_: &mut Criterion) {
    let event = first_book_event();
    let order = order_of(&event).clone();
    let eight: Vec<String> = CATEGORIES.iter().map(|c| c.to_string()).collect();
    let with_note = profile_after(&mut History::default(), &event);
    let without_note = profile_with_history(&event, 10, &eight);
    figures(
        &example_rules(),
        &with_note,
        &without_note,
        &order,
        event.occurred_at,
    );
}

criterion_group!(decide_benches, benches, issue_figures);
criterion_main!(decide_benches);
