//! A follow-up with variants (docs/REFERENCE.md §2 Variants) on both stores: each customer's
//! e-mail is rendered from their variant's template with their variant's coupons, the held out
//! get none, a customer keeps their variant when the weights change, and the effect report
//! counts each variant apart.

#[macro_use]
mod store_support;

use chrono::{DateTime, Utc};
use packwell::email::provider::OutboxDir;
use packwell::email::{ManualClock, Worker, WorkerSettings};
use packwell::engine::{draw_variant, in_holdout};
use packwell::metrics::Metrics;
use packwell::report::{self, ReportOptions};
use packwell::store::DecideEnv;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use store_support::*;

/// `thanks`: 20% held out; the rest split between a plain note and one with a 5.00 coupon.
fn rules(plain: u32, coupon: u32) -> String {
    format!(
        r#"
[[insert]]
id = "back-5"
kind = "coupon"
title = "5 off"
amount = {{ EUR = "5.00" }}
valid_days = 30
code_prefix = "BACK"

[[followup]]
id = "thanks"
on = "order.placed"
when = "true"
template = "plain"
after = "2h"
holdout = "20%"
variants = [{{ id = "plain", weight = {plain} }}, {{ id = "coupon", template = "with-coupon", give = ["back-5"], weight = {coupon} }}]
"#
    )
}

const TEMPLATES: &[(&str, &str)] = &[
    (
        "emails/plain/subject.hbs",
        "Thank you, {{customer.first_name}}",
    ),
    (
        "emails/plain/html.hbs",
        "<p>Thank you.</p><p>{{unsubscribe_url}}</p>",
    ),
    (
        "emails/with-coupon/subject.hbs",
        "A gift for you, {{customer.first_name}}",
    ),
    (
        "emails/with-coupon/html.hbs",
        "<p>Code {{coupon.code}}: {{money coupon.amount coupon.currency}}</p><p>{{unsubscribe_url}}</p>",
    ),
];

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn placed(customer: &str, order: &str, at: &str) -> Value {
    json!({"event_id": format!("p-{order}"), "type": "order.placed", "occurred_at": at,
        "order": {"id": order, "customer": {"id": customer, "email": format!("{customer}@mail.example"), "first_name": "Greta"},
            "currency": "EUR", "total": "30.00",
            "items": [{"sku": "S", "name": "Book", "category": "books", "quantity": 1, "unit_price": "30.00"}],
            "shipping": {"country": "DE"}, "warehouse": "WH-BER"}})
}

/// Sends every due e-mail at `at` to a fresh outbox folder; returns the `.eml` texts by
/// recipient.
async fn send_due(b: &Backend, env: &DecideEnv, at: &str) -> Vec<(String, String)> {
    let outbox = tempfile::tempdir().unwrap();
    let worker = Arc::new(Worker::new(
        b.store.clone(),
        Arc::new(arc_swap::ArcSwap::from_pointee(env.clone())),
        Arc::new(OutboxDir::new(outbox.path().to_path_buf())),
        WorkerSettings {
            concurrency: 4,
            max_tries: 4,
            timeout: Duration::from_millis(400),
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            poll: Duration::from_millis(50),
            from: "Shop <hello@shop.example>".into(),
            public_url: "https://shop.example".into(),
        },
        Metrics::new().email,
        Arc::new(ManualClock::new(t(at))),
    ));
    worker.drain().await.unwrap();
    let mut out = Vec::new();
    for e in std::fs::read_dir(outbox.path()).unwrap().flatten() {
        let raw = std::fs::read(e.path()).unwrap();
        let message = mail_parser::MessageParser::default()
            .parse(&raw[..])
            .unwrap();
        let to = message
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap()
            .to_string();
        let text = format!(
            "{}\n{}",
            message.subject().unwrap_or_default(),
            message.body_html(0).unwrap_or_default()
        );
        out.push((to, text));
    }
    out
}

/// The variant `customer` is drawn into under `weights` (plain, coupon), or None when held out.
fn expected(customer: &str, weights: [u32; 2]) -> Option<&'static str> {
    (!in_holdout(customer, "thanks", 2000))
        .then(|| ["plain", "coupon"][draw_variant(customer, "thanks", &weights).unwrap()])
}

async fn followup_variants(b: Backend) {
    let env = env_from(&rules(50, 50), TEMPLATES);
    let customers: Vec<String> = (0..60).map(|i| format!("V{i}")).collect();
    let firsts: Vec<Value> = customers
        .iter()
        .map(|c| placed(c, &format!("{c}-1"), "2026-03-02T10:00:00Z"))
        .collect();
    b.store.apply_batch(&batch(&firsts), &env).await.unwrap();
    let sent = send_due(&b, &env, "2026-03-02T12:00:00Z").await;
    let mut seen = [0; 2];
    for c in &customers {
        let mine: Vec<&String> = sent
            .iter()
            .filter(|(to, _)| *to == format!("{c}@mail.example"))
            .map(|(_, text)| text)
            .collect();
        match expected(c, [50, 50]) {
            None => assert!(mine.is_empty(), "{c} is held out: {mine:?}"),
            Some("plain") => {
                assert_eq!(mine.len(), 1, "{c}");
                assert!(mine[0].starts_with("Thank you, Greta"), "{}", mine[0]);
                assert!(
                    b.store
                        .coupons_of_order(&format!("{c}-1"))
                        .await
                        .unwrap()
                        .is_empty()
                );
                seen[0] += 1;
            }
            Some(_) => {
                assert_eq!(mine.len(), 1, "{c}");
                assert!(mine[0].starts_with("A gift for you, Greta"), "{}", mine[0]);
                let coupons = b.store.coupons_of_order(&format!("{c}-1")).await.unwrap();
                assert_eq!(
                    coupons.len(),
                    1,
                    "{c}: the variant's coupon, issued as it went"
                );
                assert!(mine[0].contains(&coupons[0].code), "{}", mine[0]);
                seen[1] += 1;
            }
        }
    }
    assert!(
        seen[0] > 5 && seen[1] > 5,
        "{}: both variants sent: {seen:?}",
        b.name
    );

    // The weights change: customers who had an e-mail (or were held out from one) keep their
    // variant.
    let env = env_from(&rules(1, 99), TEMPLATES);
    let seconds: Vec<Value> = customers
        .iter()
        .map(|c| placed(c, &format!("{c}-2"), "2026-03-09T10:00:00Z"))
        .collect();
    b.store.apply_batch(&batch(&seconds), &env).await.unwrap();
    let sent = send_due(&b, &env, "2026-03-09T12:00:00Z").await;
    let mut kept_apart = 0;
    for c in &customers {
        let Some(first) = expected(c, [50, 50]) else {
            continue;
        };
        let (_, text) = sent
            .iter()
            .find(|(to, _)| *to == format!("{c}@mail.example"))
            .unwrap_or_else(|| panic!("{c} has a second e-mail"));
        let subject = if first == "plain" {
            "Thank you"
        } else {
            "A gift for you"
        };
        assert!(text.starts_with(subject), "{c} kept {first}: {text}");
        if expected(c, [1, 99]) != Some(first) {
            kept_apart += 1;
        }
    }
    assert!(
        kept_apart > 5,
        "{}: customers whose new draw differs: {kept_apart}",
        b.name
    );

    // The report counts each variant apart (a later decision closes the 90-day windows).
    b.store
        .apply_batch(
            &batch(&[placed("late", "late-1", "2026-09-01T10:00:00Z")]),
            &env,
        )
        .await
        .unwrap();
    let r = report::build(&*b.store, Some(&env.rules), ReportOptions::default())
        .await
        .unwrap();
    let thanks = r.rules.iter().find(|e| e.id == "thanks").unwrap();
    let count = |v: &str| {
        thanks
            .variants
            .iter()
            .find(|x| x.id == v)
            .map(|x| x.treated)
    };
    assert_eq!(count("plain"), Some(seen[0]), "{}", b.name);
    assert_eq!(count("coupon"), Some(seen[1]), "{}", b.name);
    assert_eq!(thanks.treated, seen[0] + seen[1]);
    assert_eq!(thanks.mixed, 0, "nobody moved between variants");
    let coupon = thanks.variants.iter().find(|x| x.id == "coupon").unwrap();
    assert_eq!(
        coupon.cost.get("EUR").map(String::as_str),
        Some(format!("{}.00", seen[1] * 2 * 5).as_str()),
        "{}: both e-mails' coupons, each within its customer's window",
        b.name
    );
}
on_both!(each_customer_gets_their_variants_email, followup_variants);

/// An e-mail scheduled before its follow-up had variants goes out as the customer's variant
/// once the rules have them, never as a third, unmeasured version.
async fn scheduled_before(b: Backend) {
    let plain = rules(1, 1).replace(
        "variants = [{ id = \"plain\", weight = 1 }, { id = \"coupon\", template = \"with-coupon\", give = [\"back-5\"], weight = 1 }]",
        "",
    );
    let before = env_from(&plain, TEMPLATES);
    assert!(before.rules.followup("thanks").unwrap().variants.is_empty());
    let customers: Vec<String> = (0..30)
        .map(|i| format!("W{i}"))
        .filter(|c| !in_holdout(c, "thanks", 2000))
        .collect();
    let orders: Vec<Value> = customers
        .iter()
        .map(|c| placed(c, &format!("{c}-1"), "2026-03-02T10:00:00Z"))
        .collect();
    b.store.apply_batch(&batch(&orders), &before).await.unwrap();
    let after = env_from(&rules(50, 50), TEMPLATES);
    let sent = send_due(&b, &after, "2026-03-02T12:00:00Z").await;
    assert_eq!(sent.len(), customers.len(), "{}", b.name);
    for c in &customers {
        let (_, text) = sent
            .iter()
            .find(|(to, _)| *to == format!("{c}@mail.example"))
            .unwrap();
        let subject = match expected(c, [50, 50]) {
            Some("plain") => "Thank you",
            _ => "A gift for you",
        };
        assert!(text.starts_with(subject), "{}: {c}: {text}", b.name);
    }
}
on_both!(
    an_email_scheduled_before_the_variants_goes_as_the_customers_variant,
    scheduled_before
);
