//! E-mails rendered per second for the example follow-ups (`templates/emails/`), through the
//! product's path next to bare handlebars with the same templates and the same data.
//!
//! For each of `order_thanks`, `fragrance_check_in` and `late_delivery_sorry`, with the
//! repository's rules and a customer and order folded from the example events:
//! - `product`: `packwell::email::compose::compose`, what the sender calls per e-mail: the
//!   template data built from the profile and order, the three parts rendered (the text part
//!   derived from the HTML where the folder has no `text.hbs`), the headers;
//! - `handlebars`: a plain `handlebars::Handlebars` (two of them: HTML-escaping for `html.hbs`,
//!   no escaping for the rest, strict mode, as the product registers them) rendering
//!   `subject.hbs`, `html.hbs` and `text.hbs` where present with `render_with_context` from one
//!   `handlebars::Context` built once from `email_context`'s data: the template engine alone.
//!   Its `money` and `date` helpers are the product's own (`packwell::render::MoneyHelper`,
//!   `DateHelper`), so the output is byte for byte the product's: checked before anything is
//!   measured;
//! - `handlebars_trivial_helpers`: the same with `money` and `date` giving back their first
//!   argument unformatted, to show what the formatting costs.
//!
//! Also, to show where the product's time goes: `email_context` alone, and `html_to_text` of
//! `fragrance_check_in` (the only example without a `text.hbs`).
//!
//! The goal (issue): ≥ 100 000 e-mails per second per core; criterion runs on one thread.
//! At the end, the figures are printed from a run of their own in which `product` and
//! `handlebars` take turns round by round (`PW_FIGURE_ROUNDS`, default 15; 0 skips them).
//! Run: `cargo bench --bench email_render`.

use chrono::{DateTime, NaiveDate, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use handlebars::{Context, Handlebars, Helper, HelperDef, RenderContext, ScopedJson};
use packwell::coupon::CouponKey;
use packwell::email::compose::{ComposeInput, compose, email_context, plan_coupons};
use packwell::email::token::unsubscribe_url;
use packwell::engine::Shop;
use packwell::event::event_from_value;
use packwell::profile::{OrderSummary, Profile, fold};
use packwell::render::{DateHelper, MoneyHelper, html_to_text};
use packwell::rules::{RuleSet, load_rules};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "support/turns.rs"]
mod turns;
use turns::{median, take_turns, time_ratio};

/// The same allocator as the `packwell` binary: rendering is mostly allocation.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TEMPLATES: &[&str] = &["order_thanks", "fragrance_check_in", "late_delivery_sorry"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example_rules() -> RuleSet {
    let out = load_rules(Path::new("rules"), Path::new("templates"));
    let errors: Vec<String> = out.errors().map(|f| f.to_string()).collect();
    out.rules
        .unwrap_or_else(|| panic!("the example rules did not load: {errors:?}"))
}

fn example_event(name: &str) -> Value {
    let path = root().join("examples/orders").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the example order is JSON")
}

fn delivered(placed: &Value, at: &str) -> Value {
    json!({"event_id": format!("{}-delivered", placed["event_id"].as_str().unwrap_or("ev")),
           "type": "order.delivered", "occurred_at": at, "delivered_at": at,
           "customer_id": placed["order"]["customer"]["id"],
           "order_id": placed["order"]["id"]})
}

/// The customer and order as the store knows them after `events` (the first one placed).
fn folded(events: &[Value]) -> (Profile, OrderSummary) {
    let events: Vec<_> = events
        .iter()
        .map(|v| event_from_value(v).expect("a valid example event"))
        .collect();
    let mut profile = Profile::new(events[0].customer_id());
    let mut order = None;
    for event in &events {
        let (_, new) = fold(&mut profile, order.as_mut(), event).expect("the event folds");
        if new.is_some() {
            order = new;
        }
    }
    (profile, order.expect("the first event places the order"))
}

/// Everything `ComposeInput` borrows, for one example e-mail.
struct Example {
    template: &'static str,
    followup_id: &'static str,
    profile: Profile,
    order: OrderSummary,
    coupons: Vec<packwell::store::emails::PlannedCoupon>,
    unsubscribe_url: String,
}

fn examples(rules: &RuleSet, key: &CouponKey) -> Vec<Example> {
    let book = example_event("first-book-order.json");
    let fragrance = example_event("fragrance-new-york.json");
    let cases = [
        // Two hours after the order: the first-book order, de-DE, EUR.
        (
            "order_thanks",
            "order-confirmation-thanks",
            vec![book.clone()],
            "2026-11-20T11:30:00Z",
        ),
        // Four days after an on-time delivery: the New York fragrance order, en-US, USD.
        (
            "fragrance_check_in",
            "fragrance-check-in",
            vec![
                fragrance.clone(),
                delivered(&fragrance, "2026-11-22T15:00:00Z"),
            ],
            "2026-11-26T15:00:00Z",
        ),
        // Three days late (promised 2026-11-23): the apology with its 5 € coupon.
        (
            "late_delivery_sorry",
            "late-delivery-sorry",
            vec![book.clone(), delivered(&book, "2026-11-26T10:00:00Z")],
            "2026-11-26T12:00:00Z",
        ),
    ];
    cases
        .into_iter()
        .map(|(template, followup_id, events, send_at)| {
            let (profile, order) = folded(&events);
            let followup = rules
                .followup(followup_id)
                .unwrap_or_else(|| panic!("no follow-up {followup_id} in rules/"));
            assert_eq!(followup.template, template, "{followup_id}'s template");
            let today: NaiveDate = DateTime::parse_from_rfc3339(send_at)
                .expect("a timestamp")
                .with_timezone(&Utc)
                .date_naive();
            let coupons = plan_coupons(rules, followup, &order, key, &HashMap::new(), today);
            let unsubscribe_url =
                unsubscribe_url("https://shop.example", key, &profile.customer_id);
            Example {
                template,
                followup_id,
                profile,
                order,
                coupons,
                unsubscribe_url,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Bare handlebars

/// `{{money a c}}` and `{{date d}}` as trivial helpers: the first argument as it is, to show
/// what the formatting costs.
struct FirstArgument;

impl HelperDef for FirstArgument {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let value = h.param(0).map(|p| p.value().clone()).unwrap_or(Value::Null);
        Ok(ScopedJson::Derived(value))
    }
}

/// The example e-mail templates in a plain registry pair, registered from their files.
struct Bare {
    html: Handlebars<'static>,
    plain: Handlebars<'static>,
}

impl Bare {
    /// With the product's formatting in `money` and `date`, or (`trivial`) without.
    fn load(templates: &[&str], trivial: bool) -> Bare {
        let registry = |escape: bool| {
            let mut hb = Handlebars::new();
            hb.set_strict_mode(true);
            if !escape {
                hb.register_escape_fn(handlebars::no_escape);
            }
            if trivial {
                hb.register_helper("money", Box::new(FirstArgument));
                hb.register_helper("date", Box::new(FirstArgument));
            } else {
                hb.register_helper("money", Box::new(MoneyHelper));
                hb.register_helper("date", Box::new(DateHelper));
            }
            hb
        };
        let (mut html, mut plain) = (registry(true), registry(false));
        for name in templates {
            let dir = root().join("templates/emails").join(name);
            for part in ["subject", "html", "text"] {
                let file = dir.join(format!("{part}.hbs"));
                if !file.exists() {
                    continue;
                }
                let hb = if part == "html" {
                    &mut html
                } else {
                    &mut plain
                };
                hb.register_template_file(&key(name, part), &file)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            }
        }
        Bare { html, plain }
    }

    fn has_text(&self, name: &str) -> bool {
        self.plain.has_template(&key(name, "text"))
    }

    /// Subject, HTML and (where present) text, each `render_with_context` from `ctx`.
    fn render(&self, name: &str, ctx: &Context) -> (String, String, Option<String>) {
        let part = |hb: &Handlebars<'static>, part: &str| {
            hb.render_with_context(&key(name, part), ctx)
                .unwrap_or_else(|e| panic!("{name}/{part}: {e}"))
        };
        let subject = part(&self.plain, "subject");
        let html = part(&self.html, "html");
        let text = self.has_text(name).then(|| part(&self.plain, "text"));
        (subject, html, text)
    }
}

fn key(name: &str, part: &str) -> String {
    format!("emails/{name}/{part}.hbs")
}

// ---------------------------------------------------------------------------------------------

fn benches(c: &mut Criterion) {
    // The rules loader reads paths relative to the working directory: the crate root.
    std::env::set_current_dir(root()).expect("the crate root");
    let rules = example_rules();
    let key = CouponKey::from_bytes(vec![7; 32]);
    let shop = Shop::default();
    let from = "Shop <hello@shop.example>";
    let bare = Bare::load(TEMPLATES, false);
    let trivial = Bare::load(TEMPLATES, true);
    let examples = examples(&rules, &key);

    for ex in &examples {
        let followup = rules.followup(ex.followup_id).expect("checked above");
        let input = ComposeInput {
            rules: &rules,
            followup,
            profile: &ex.profile,
            order: &ex.order,
            coupons: &ex.coupons,
            shop: &shop,
            from,
            unsubscribe_url: &ex.unsubscribe_url,
        };
        let data = email_context(&input);
        let ctx = Context::from(data.clone());

        // Both variants render the same e-mail, or the comparison means nothing.
        let email = compose(&input).expect("the product renders the example");
        let (subject, html, text) = bare.render(ex.template, &ctx);
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(email.subject, subject, "{}: subject", ex.template);
        assert_eq!(email.html, html, "{}: html", ex.template);
        if let Some(text) = &text {
            assert_eq!(&email.text, text, "{}: text", ex.template);
        }
        if ex.template == "late_delivery_sorry" {
            assert!(
                email.html.contains("SORRY-"),
                "the apology carries its coupon"
            );
        }
        eprintln!(
            "{}: {} coupon(s), locale {}, subject {:?}, {} + {} bytes of HTML and text{}",
            ex.template,
            ex.coupons.len(),
            data["locale"].as_str().unwrap_or("?"),
            email.subject,
            email.html.len(),
            email.text.len(),
            if text.is_none() {
                " (text derived from the HTML)"
            } else {
                ""
            }
        );

        let mut group = c.benchmark_group(format!("email_render/{}", ex.template));
        group.throughput(Throughput::Elements(1));
        group.bench_function("product", |b| b.iter(|| compose(black_box(&input))));
        group.bench_function("handlebars", |b| {
            b.iter(|| bare.render(ex.template, black_box(&ctx)))
        });
        group.bench_function("handlebars_trivial_helpers", |b| {
            b.iter(|| trivial.render(ex.template, black_box(&ctx)))
        });
        group.finish();
    }

    // Parts of the product's path, to see where its time goes.
    let mut group = c.benchmark_group("email_render_parts");
    group.throughput(Throughput::Elements(1));
    for ex in &examples {
        let followup = rules.followup(ex.followup_id).expect("checked above");
        let input = ComposeInput {
            rules: &rules,
            followup,
            profile: &ex.profile,
            order: &ex.order,
            coupons: &ex.coupons,
            shop: &shop,
            from,
            unsubscribe_url: &ex.unsubscribe_url,
        };
        group.bench_function(format!("email_context/{}", ex.template), |b| {
            b.iter(|| email_context(black_box(&input)))
        });
        if !bare.has_text(ex.template) {
            let ctx = Context::from(email_context(&input));
            let (_, html, _) = bare.render(ex.template, &ctx);
            group.bench_function(format!("html_to_text/{}", ex.template), |b| {
                b.iter(|| html_to_text(black_box(&html)))
            });
        }
    }
    group.finish();
}

/// The issue's figure for each example e-mail, with bare handlebars from the same rounds.
fn issue_figures(_: &mut Criterion) {
    let rounds = turns::rounds();
    if rounds == 0 {
        return;
    }
    std::env::set_current_dir(root()).expect("the crate root");
    let rules = example_rules();
    let key = CouponKey::from_bytes(vec![7; 32]);
    let shop = Shop::default();
    let bare = Bare::load(TEMPLATES, false);
    let examples = examples(&rules, &key);
    eprintln!();
    eprintln!(
        "issue 17 figures: e-mails rendered per second, one core ({rounds} rounds taking turns, medians; goal >= 100000/s)"
    );
    for ex in &examples {
        let followup = rules.followup(ex.followup_id).expect("checked above");
        let input = ComposeInput {
            rules: &rules,
            followup,
            profile: &ex.profile,
            order: &ex.order,
            coupons: &ex.coupons,
            shop: &shop,
            from: "Shop <hello@shop.example>",
            unsubscribe_url: &ex.unsubscribe_url,
        };
        let ctx = Context::from(email_context(&input));
        let rates = take_turns(
            rounds,
            Duration::from_millis(100),
            &mut [
                &mut || {
                    black_box(compose(black_box(&input)).expect("renders"));
                },
                &mut || {
                    black_box(bare.render(ex.template, black_box(&ctx)));
                },
            ],
        );
        eprintln!(
            "  {:<20} product {:>7.0}/s   bare handlebars {:>7.0}/s   product/handlebars {:.2}x the time",
            ex.template,
            median(rates[0].clone()),
            median(rates[1].clone()),
            time_ratio(&rates, 0, 1)
        );
    }
}

criterion_group!(email_render_benches, benches, issue_figures);
criterion_main!(email_render_benches);
