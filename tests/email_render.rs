//! The example e-mails as a customer receives them, pinned as snapshots (subject, HTML, text,
//! headers): rendered through the sender's own path from the example rules and templates, for
//! a customer whose name is hostile (`<script>` in the first name, quotes and an ampersand in
//! the last). HTML parts escape it; the subject and text parts show it as written, on one line.

use chrono::{DateTime, Utc};
use packwell::coupon::CouponKey;
use packwell::email::compose::{ComposeInput, OutgoingEmail, compose, plan_coupons};
use packwell::email::token::unsubscribe_url;
use packwell::engine::Shop;
use packwell::event::event_from_value;
use packwell::profile::{OrderSummary, Profile, fold};
use std::path::Path;

const HOSTILE_FIRST: &str = "<script>alert('hi')</script>";
const HOSTILE_LAST: &str = "O\"Brien & <b>Sons</b>";

fn rules() -> packwell::rules::RuleSet {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = packwell::rules::load_rules(&root.join("rules"), &root.join("templates"));
    let msgs: Vec<String> = out.findings.iter().map(|f| f.to_string()).collect();
    out.rules.unwrap_or_else(|| panic!("{msgs:?}"))
}

/// The example fragrance order from New York, placed by the hostile customer and delivered
/// three days after the promised date.
fn customer_and_order() -> (Profile, OrderSummary) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/orders/fragrance-new-york.json"))
        .expect("example order");
    let mut value: serde_json::Value = serde_json::from_str(&text).expect("json");
    value["order"]["customer"]["first_name"] = HOSTILE_FIRST.into();
    value["order"]["customer"]["last_name"] = HOSTILE_LAST.into();
    let placed = event_from_value(&value).expect("an order.placed event");
    let mut profile = Profile::new("C-2002");
    let (_, order) = fold(&mut profile, None, &placed);
    let mut order = order.expect("a new order");
    let delivered = event_from_value(&serde_json::json!({
        "event_id": "d", "type": "order.delivered", "occurred_at": "2026-11-26T15:00:00Z",
        "order_id": "O-2101", "customer_id": "C-2002", "delivered_at": "2026-11-26T15:00:00Z"
    }))
    .expect("an order.delivered event");
    fold(&mut profile, Some(&mut order), &delivered);
    (profile, order)
}

fn render(followup_id: &str) -> OutgoingEmail {
    let rules = rules();
    let followup = rules.followup(followup_id).expect("the example follow-up");
    let (profile, order) = customer_and_order();
    let key = CouponKey::from_bytes(vec![42; 32]);
    let today = DateTime::parse_from_rfc3339("2026-11-26T17:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
        .date_naive();
    let coupons = plan_coupons(&rules, followup, &order, &key, &Default::default(), today);
    let shop = Shop {
        name: "Tea & Tomes".into(),
        url: "https://shop.example".into(),
    };
    let unsubscribe = unsubscribe_url("https://packwell.shop.example", &key, "C-2002");
    compose(&ComposeInput {
        rules: &rules,
        followup,
        profile: &profile,
        order: &order,
        coupons: &coupons,
        shop: &shop,
        from: "Tea & Tomes <hello@shop.example>",
        unsubscribe_url: &unsubscribe,
    })
    .expect("renders")
}

fn check_escaping(email: &OutgoingEmail) {
    assert!(
        !email.html.contains("<script>"),
        "the HTML part escapes the name:\n{}",
        email.html
    );
    assert!(email.html.contains("&lt;script&gt;"), "{}", email.html);
    assert!(!email.subject.contains('\n'));
    assert!(
        !email.to.contains('<') || email.to.ends_with("<ethan.miller@example.com>"),
        "the display name cannot open an address: {}",
        email.to
    );
}

#[test]
fn order_thanks() {
    let email = render("order-confirmation-thanks");
    check_escaping(&email);
    insta::assert_snapshot!("order_thanks_subject", email.subject);
    insta::assert_snapshot!("order_thanks_html", email.html);
    insta::assert_snapshot!("order_thanks_text", email.text);
    insta::assert_json_snapshot!(
        "order_thanks_envelope",
        (&email.from, &email.to, &email.headers, &email.tags)
    );
}

#[test]
fn fragrance_check_in_without_a_text_part_derives_one_from_the_html() {
    let email = render("fragrance-check-in");
    check_escaping(&email);
    insta::assert_snapshot!("fragrance_check_in_subject", email.subject);
    insta::assert_snapshot!("fragrance_check_in_html", email.html);
    insta::assert_snapshot!("fragrance_check_in_text", email.text);
    assert!(
        email.text.contains(HOSTILE_FIRST),
        "the derived text shows the name as written:\n{}",
        email.text
    );
}

#[test]
fn late_delivery_sorry_with_its_coupon() {
    let email = render("late-delivery-sorry");
    check_escaping(&email);
    insta::assert_snapshot!("late_delivery_sorry_subject", email.subject);
    insta::assert_snapshot!("late_delivery_sorry_html", email.html);
    insta::assert_snapshot!("late_delivery_sorry_text", email.text);
    // The apology names how late the parcel was and the coupon it gives.
    assert!(
        email.text.contains("3 days later than we promised"),
        "{}",
        email.text
    );
    assert!(email.html.contains("SORRY-"), "{}", email.html);
}
