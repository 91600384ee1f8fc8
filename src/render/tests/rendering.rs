//! Rendering: notes and e-mails from loaded templates, and the money and date helpers.

use super::*;

#[test]
fn a_missing_folder_is_no_templates_and_names_are_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = Templates::load(&dir.path().join("nope")).expect("no folder is fine");
    assert!(templates.note_names().is_empty() && templates.email_names().is_empty());

    let mut files = email("thanks", "Thanks", "<p>Thanks</p>").to_vec();
    files.push(("notes/welcome.hbs".into(), "Welcome".into()));
    files.push(("notes/README.md".into(), "not a template".into()));
    let templates = load(&refs(&files));
    assert_eq!(templates.note_names(), ["welcome"]);
    assert_eq!(templates.email_names(), ["thanks"]);
    assert!(templates.has_note("welcome") && !templates.has_note("thanks"));
    assert!(templates.has_email("thanks") && !templates.has_email("welcome"));
    assert!(matches!(
        templates.render_note("nope", &ctx("Ana", "en")),
        Err(RenderError::UnknownNote(n)) if n == "nope"
    ));
    assert!(matches!(
        templates.render_email("welcome", &ctx("Ana", "en")),
        Err(RenderError::UnknownEmail(n)) if n == "welcome"
    ));
}

#[test]
fn html_escapes_values_and_notes_do_not() {
    let mut files = email(
        "hi",
        "Hi {{customer.first_name}}",
        "<p>Hi {{customer.first_name}}</p>",
    )
    .to_vec();
    files.push(("notes/hi.hbs".into(), "Hi {{customer.first_name}}".into()));
    let templates = load(&refs(&files));
    let evil = "<script>alert(1)</script>";
    let data = ctx(evil, "en");

    let mail = templates.render_email("hi", &data).expect("renders");
    assert_eq!(mail.html, "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p>");
    assert_eq!(mail.subject, format!("Hi {evil}"));
    assert_eq!(
        templates.render_note("hi", &data).expect("renders"),
        format!("Hi {evil}")
    );
}

#[test]
fn money_is_formatted_for_the_locale_without_floats() {
    let amount = |s: &str| Decimal::from_str_exact(s).expect("decimal");
    let money = |a: &str, c: &str, l: &str| format_money(&amount(a), c, l).expect("formats");
    assert_eq!(money("10.00", "EUR", "en"), "€10.00");
    assert_eq!(money("10.00", "EUR", "de"), "10,00\u{a0}€");
    assert_eq!(money("1234.5", "EUR", "de-AT"), "€\u{a0}1\u{a0}234,50");
    assert_eq!(money("10", "USD", "en-US"), "$10.00");
    assert_eq!(money("1234.56", "USD", "en-US"), "$1,234.56");
    // Beyond f64's 15-16 significant digits: exact only without a float in between.
    assert_eq!(
        money("12345678901234567.89", "EUR", "en"),
        "€12,345,678,901,234,567.89"
    );
    // No data for the language, or no locale at all: English.
    assert_eq!(money("10.00", "EUR", "xx"), "€10.00");
    assert_eq!(money("10.00", "EUR", "not a locale!"), "€10.00");
    assert_eq!(money("10.00", "EUR", "de_DE"), "10,00\u{a0}€");
    assert!(format_money(&amount("1"), "EURO", "en").is_err());
}

#[test]
fn the_money_helper_reads_strings_and_numbers_and_rejects_bad_amounts() {
    let templates = load(&[("notes/m.hbs", "{{money coupon.amount coupon.currency}}")]);
    let mut data = ctx("Ana", "de-AT");
    assert_eq!(
        templates.render_note("m", &data).expect("renders"),
        "€\u{a0}10,00"
    );
    data["coupon"]["amount"] = serde_json::from_str("2.50").expect("number");
    data["locale"] = json!("en-US");
    assert_eq!(templates.render_note("m", &data).expect("renders"), "€2.50");
    data["coupon"]["amount"] = json!("ten");
    let err = templates.render_note("m", &data).expect_err("bad amount");
    assert_eq!(
        err.to_string(),
        "notes/m.hbs:1:1: money: the amount must be a decimal like \"10.00\", found \"ten\""
    );
    data["coupon"]["amount"] = Value::Null;
    let err = templates.render_note("m", &data).expect_err("null amount");
    assert!(err.to_string().contains("coupon.amount is null"), "{err}");
}

#[test]
fn dates_are_formatted_for_the_locale() {
    let day = NaiveDate::from_ymd_opt(2026, 11, 20).expect("date");
    assert_eq!(format_date(day, "en").expect("formats"), "Nov 20, 2026");
    assert_eq!(format_date(day, "de").expect("formats"), "20.11.2026");
    assert_eq!(format_date(day, "en-GB").expect("formats"), "20 Nov 2026");
    assert_eq!(format_date(day, "zz-ZZ").expect("formats"), "Nov 20, 2026");

    let templates = load(&[(
        "notes/d.hbs",
        "{{date coupon.expires_on}} / {{date order.placed_at}}",
    )]);
    assert_eq!(
        templates
            .render_note("d", &ctx("Ana", "de-AT"))
            .expect("renders"),
        "19.01.2027 / 20.11.2026"
    );
    let mut data = ctx("Ana", "en");
    data["order"]["placed_at"] = json!("last Tuesday");
    let err = templates.render_note("d", &data).expect_err("bad date");
    assert!(err.to_string().contains("found \"last Tuesday\""), "{err}");
}

#[test]
fn strict_mode_fails_on_a_missing_variable_and_allows_null() {
    let templates = load(&[(
        "notes/s.hbs",
        "Hi {{customer.first_name}}{{customer.last_name}} from {{shop.name}}",
    )]);
    assert_eq!(
        templates
            .render_note("s", &ctx("Ana", "en"))
            .expect("null renders as nothing"),
        "Hi Ana from Shop"
    );
    let mut data = ctx("Ana", "en");
    if let Some(map) = data.as_object_mut() {
        map.remove("shop");
    }
    let err = templates
        .render_note("s", &data)
        .expect_err("shop is missing");
    assert_eq!(
        err.to_string(),
        "notes/s.hbs:1:55: variable shop.name is missing from the data"
    );
}

#[test]
fn the_text_part_is_derived_from_the_html_when_there_is_no_text_hbs() {
    let html = "<html><head><title>T</title><style>p { color: red }</style></head><body>\n\
        <h1>Hello   {{customer.first_name}}</h1>\n\
        <p>Your coupon <b>{{coupon.code}}</b> is worth {{money coupon.amount coupon.currency}}&nbsp;&amp; more.</p>\n\
        <p>Visit <a href=\"{{shop.url}}/books?a=1&amp;b=2\">our   shop</a>.</p>\n\
        <p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p></body></html>";
    let templates = load(&refs(&email("t", "Your coupon", html)));
    let mail = templates
        .render_email("t", &ctx("Ana & Bo", "en"))
        .expect("renders");
    assert_eq!(
        mail.text,
        "Hello Ana & Bo\n\n\
         Your coupon THANKS-7KQ2M9XW4PJR is worth €10.00\u{a0}& more.\n\n\
         Visit our shop (https://shop.example/books?a=1&b=2).\n\n\
         Unsubscribe (https://packwell.shop.example/u/tok)\n"
    );
}

#[test]
fn a_text_hbs_is_used_as_written_and_the_subject_stays_on_one_line() {
    let mut files = email("t", "Hello\n  {{customer.first_name}}\n", "<p>x</p>").to_vec();
    files.push((
        "emails/t/text.hbs".into(),
        "Hi {{customer.first_name}} & co\n".into(),
    ));
    let templates = load(&refs(&files));
    let mail = templates
        .render_email("t", &ctx("Ana\r\nBcc: x@example.com", "en"))
        .expect("renders");
    assert_eq!(mail.subject, "Hello Ana Bcc: x@example.com");
    assert_eq!(mail.text, "Hi Ana\r\nBcc: x@example.com & co\n");
}

#[test]
fn the_builtin_helper_list_matches_handlebars() {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    let is_missing_variable = |name: &str| {
        matches!(
            hb.render_template(&format!("{{{{{name}}}}}"), &json!({})),
            Err(e) if matches!(e.reason(), RenderErrorReason::MissingVariable(_))
        )
    };
    for name in BUILTIN_HELPERS {
        assert!(
            !is_missing_variable(name),
            "{name} is not a handlebars helper"
        );
    }
    assert!(is_missing_variable("uppercase"));
}

#[test]
fn templates_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Templates>();
}
