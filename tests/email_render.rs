//! The example e-mails as a customer receives them, pinned as snapshots (subject, HTML, text,
//! headers): rendered through the sender's own path from the example rules and templates, for
//! a customer whose name is hostile (`<script>` in the first name, quotes and an ampersand in
//! the last). HTML parts escape it; the subject and text parts show it as written, on one line.
//! A name of control and bidirectional characters (NUL, CR, LF, U+202E, ...) leaves no trace
//! in the subject or the headers, and the message still parses.

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
    let mut profile = Profile::new("C-2006");
    let (_, order) = fold(&mut profile, None, &placed).expect("the order folds");
    let mut order = order.expect("a new order");
    let delivered = event_from_value(&serde_json::json!({
        "event_id": "d", "type": "order.delivered", "occurred_at": "2026-11-26T15:00:00Z",
        "order_id": "O-2101", "customer_id": "C-2006", "delivered_at": "2026-11-26T15:00:00Z"
    }))
    .expect("an order.delivered event");
    fold(&mut profile, Some(&mut order), &delivered).expect("the delivery folds");
    (profile, order)
}

fn render(followup_id: &str) -> OutgoingEmail {
    let (profile, order) = customer_and_order();
    render_for(followup_id, profile, order)
}

fn render_for(followup_id: &str, profile: Profile, order: OrderSummary) -> OutgoingEmail {
    let rules = rules();
    let followup = rules.followup(followup_id).expect("the example follow-up");
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
    let unsubscribe = unsubscribe_url("https://packwell.shop.example", &key, "C-2006");
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

/// The example's German version (`templates/emails/order_thanks.de/`) for a customer whose
/// locale is German: subject, text and amounts speak German, and the name is escaped as in
/// the default.
#[test]
fn order_thanks_for_a_german_customer_is_the_german_version() {
    let (mut profile, order) = customer_and_order();
    profile.locale = Some("de-DE".into());
    let email = render_for("order-confirmation-thanks", profile, order);
    check_escaping(&email);
    assert_eq!(
        email.subject,
        format!("Vielen Dank für Ihre Bestellung, {HOSTILE_FIRST}")
    );
    assert!(email.html.contains("<html lang=\"de\">"), "{}", email.html);
    assert!(email.text.contains("Summe: "), "{}", email.text);
    assert!(
        email
            .text
            .contains("Abmelden: https://packwell.shop.example/u/"),
        "{}",
        email.text
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

/// Every control character a name may bring: NUL, CR LF (a header of its own), tabs, C1
/// controls, and the bidirectional overrides and isolates that make a subject read backwards.
const CONTROL_FIRST: &str = "Ana\u{0}\r\nBcc: evil@example.com\t\u{202E}moc.evil\u{202C}";
const CONTROL_LAST: &str =
    "\u{2066}Lima\u{2069}\u{85}\u{9B}\u{7F}\u{202A}\u{202B}\u{202D}\u{2067}\u{2068}\u{1B}[31m";

fn is_control_or_bidi(c: char) -> bool {
    c.is_control()
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

#[test]
fn control_and_bidi_characters_in_a_name_never_reach_the_headers() {
    let rules = rules();
    for followup in &rules.followups {
        let (mut profile, order) = customer_and_order();
        profile.first_name = Some(CONTROL_FIRST.into());
        profile.last_name = Some(CONTROL_LAST.into());
        let email = render_for(&followup.id, profile, order);
        let headers = [&email.subject, &email.from, &email.to]
            .into_iter()
            .chain(email.headers.values());
        for value in headers {
            assert!(
                !value.chars().any(is_control_or_bidi),
                "{}: {value:?}",
                followup.id
            );
        }
        assert!(
            email.subject.contains("Ana Bcc: evil@example.com moc.evil"),
            "the name's text is kept, on one line: {:?}",
            email.subject
        );
        // The message as handed over parses, with the same subject and one recipient.
        let raw = packwell::email::provider::rfc5322("pw-test", &email).expect("a message");
        let message = mail_parser::MessageParser::default()
            .parse(&raw)
            .expect("a parsable e-mail");
        assert_eq!(message.subject(), Some(email.subject.as_str()));
        let to: Vec<_> = message
            .to()
            .expect("To")
            .iter()
            .filter_map(|a| a.address())
            .collect();
        assert_eq!(to, ["ethan.miller@example.com"], "{}", email.to);
        assert!(message.bcc().is_none(), "{}", String::from_utf8_lossy(&raw));
        if followup.id == "order-confirmation-thanks" {
            insta::assert_snapshot!("control_name_subject", email.subject);
            insta::assert_snapshot!("control_name_to", email.to);
        }
    }
}
