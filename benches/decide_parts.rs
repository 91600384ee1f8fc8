//! Where the time of one `engine::decide` goes: the pieces it is made of, each measured alone
//! for the first-book example order (first order: welcome note with a coupon, welcome coupon,
//! tea sachet).
//!
//! Run: `cargo bench --bench decide_parts -- --warm-up-time 1 --measurement-time 3`

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use packwell::coupon::CouponKey;
use packwell::engine::{self, Context, DecideInput, Fresh, Shop};
use packwell::event::{Event, EventBody, Order, parse_event};
use packwell::profile::{History, Profile};
use packwell::render;
use packwell::rules::{RuleSet, load_rules};
use rust_decimal::Decimal;
use std::hint::black_box;
use std::path::PathBuf;
use zen_expression::vm::VM;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn setup() -> (RuleSet, Profile, Order, DateTime<Utc>) {
    let r = root();
    let rules = load_rules(&r.join("rules"), &r.join("templates"))
        .rules
        .expect("example rules load");
    let bytes = std::fs::read(r.join("examples/orders/first-book-order.json")).expect("order");
    let event: Event = parse_event(&bytes).expect("valid event");
    let mut history = History::default();
    history.fold(&event).expect("the event folds");
    let profile = history
        .profile(event.customer_id())
        .expect("profile")
        .clone();
    let EventBody::OrderPlaced(order) = event.body else {
        panic!("not an order.placed event")
    };
    (rules, profile, *order, event.occurred_at)
}

fn benches(c: &mut Criterion) {
    let (rules, profile, order, at) = setup();
    let key = CouponKey::preview();
    let shop = Shop::default();
    let decision = engine::decide(&DecideInput {
        rules: &rules,
        profile: &profile,
        order: &order,
        at,
        counters: &Fresh,
        issued: &Fresh,
        key: &key,
        shop: &shop,
        explain: false,
    })
    .decision;
    let coupon_insert = decision
        .inserts
        .iter()
        .find(|i| i.coupon.is_some())
        .expect("the first-book order gets a coupon")
        .clone();
    let coupon = coupon_insert.coupon.clone().expect("coupon");
    let coupons = engine::context_coupons(&[(&coupon_insert, &coupon)]);
    let tctx = engine::template_context(&profile, &order, &coupons, at, None, &shop);
    let locale = tctx["locale"].as_str().unwrap_or("en").to_string();
    eprintln!("template locale: {locale}");

    let mut g = c.benchmark_group("parts");
    g.throughput(Throughput::Elements(1));
    g.bench_function("vm_new", |b| b.iter(VM::new));
    g.bench_function("context_build", |b| {
        b.iter(|| {
            Context::build(
                black_box(&profile),
                black_box(&order),
                at,
                None,
                &rules.needs,
            )
        })
    });
    g.bench_function("coupon_code", |b| {
        b.iter(|| {
            key.code(
                black_box("WELCOME"),
                &order.id,
                "welcome",
                "welcome-coupon",
                0,
            )
        })
    });
    g.bench_function("coupons_json", |b| {
        b.iter(|| engine::context_coupons(&[(black_box(&coupon_insert), black_box(&coupon))]))
    });
    g.bench_function("template_context", |b| {
        b.iter(|| engine::template_context(black_box(&profile), &order, &coupons, at, None, &shop))
    });
    g.bench_function("render_note/welcome", |b| {
        b.iter(|| rules.templates.render_note("welcome", black_box(&tctx)))
    });
    g.bench_function("render_note/apology_no_helpers", |b| {
        b.iter(|| rules.templates.render_note("apology", black_box(&tctx)))
    });
    let amount = Decimal::new(1000, 2);
    g.bench_function("format_money", |b| {
        b.iter(|| render::format_money(black_box(&amount), "EUR", black_box(&locale)))
    });
    let date = at.date_naive();
    g.bench_function("format_date", |b| {
        b.iter(|| render::format_date(black_box(date), black_box(&locale)))
    });
    g.bench_function("format_date/en", |b| {
        b.iter(|| render::format_date(black_box(date), black_box("en")))
    });
    g.finish();

    // What the suggested changes would give, measured with the same libraries outside src/.
    let mut w = c.benchmark_group("what_if");
    w.throughput(Throughput::Elements(1));
    let mut hb = handlebars::Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    let apology = std::fs::read_to_string(root().join("templates/notes/apology.hbs"))
        .expect("apology template");
    hb.register_template_string("apology", apology)
        .expect("template parses");
    // Today: `Handlebars::render(name, &Value)` serializes the whole context into a new Value.
    w.bench_function("hbs_render/by_value", |b| {
        b.iter(|| hb.render("apology", black_box(&tctx)).expect("renders"))
    });
    // Suggested: build a handlebars::Context once per decision and render with it.
    let hctx = handlebars::Context::from(tctx.clone());
    w.bench_function("hbs_render/with_context", |b| {
        b.iter(|| {
            hb.render_with_context("apology", black_box(&hctx))
                .expect("renders")
        })
    });
    w.bench_function("serde_json_to_value/template_context", |b| {
        b.iter(|| serde_json::to_value(black_box(&tctx)).expect("to_value"))
    });

    // format_money with the CurrencyFormatter built once (per locale and currency).
    let icu_locale: icu_locale_core::Locale = locale.parse().expect("locale");
    let currency =
        icu_experimental::dimension::currency::CurrencyType::try_from_str("EUR").expect("currency");
    let money_fmt =
        icu_experimental::dimension::currency::formatter::CurrencyFormatter::try_new_symbol(
            (&icu_locale).into(),
            currency,
            Default::default(),
        )
        .expect("currency formatter");
    w.bench_function("format_money/cached_formatter", |b| {
        b.iter(|| {
            let v = fixed_decimal::Decimal::try_from_str(&black_box(amount).to_string())
                .expect("decimal");
            money_fmt.format_fixed_decimal(&v).to_string()
        })
    });
    // format_date with the DateTimeFormatter built once (per locale).
    let date_fmt = icu_datetime::DateTimeFormatter::try_new(
        (&icu_locale).into(),
        icu_datetime::fieldsets::YMD::medium(),
    )
    .expect("date formatter");
    w.bench_function("format_date/cached_formatter", |b| {
        b.iter(|| {
            use chrono::Datelike;
            let d = black_box(date);
            let iso =
                icu_datetime::input::Date::try_new_iso(d.year(), d.month() as u8, d.day() as u8)
                    .expect("date");
            date_fmt.format(&iso).to_string()
        })
    });
    w.bench_function("date_formatter_new", |b| {
        b.iter(|| {
            icu_datetime::DateTimeFormatter::try_new(
                (&icu_locale).into(),
                icu_datetime::fieldsets::YMD::medium(),
            )
        })
    });
    w.finish();
}

criterion_group!(parts, benches);
criterion_main!(parts);
