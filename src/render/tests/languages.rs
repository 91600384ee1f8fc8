//! Language versions: loaded beside their default, chosen by the data's `locale`, checked
//! file by file.

use super::*;

/// A note in four versions (the default, `de`, `fr`, `fr-CA`), each saying which it is and
/// printing an amount and a date by the helpers.
fn welcome_in_languages() -> Templates {
    load(&[
        (
            "notes/welcome.hbs",
            "default {{money coupon.amount coupon.currency}}",
        ),
        (
            "notes/welcome.de.hbs",
            "de {{money coupon.amount coupon.currency}}",
        ),
        ("notes/welcome.fr.hbs", "fr {{date coupon.expires_on}}"),
        ("notes/welcome.fr-CA.hbs", "fr-CA {{customer.first_name}}"),
    ])
}

#[test]
fn a_note_is_rendered_in_the_best_version_for_the_locale() {
    let t = welcome_in_languages();
    let note = |locale: &str| {
        t.render_note("welcome", &ctx("Ana", locale))
            .expect("renders")
    };
    assert_eq!(note("fr-CA"), "fr-CA Ana");
    assert_eq!(note("fr-ca"), "fr-CA Ana");
    assert_eq!(note("FR_CA"), "fr-CA Ana");
    assert_eq!(note("fr-BE"), "fr 19 janv. 2027");
    assert_eq!(note("fr"), "fr 19 janv. 2027");
    assert_eq!(note("de-AT"), "de €\u{a0}10,00");
    assert_eq!(note("DE"), "de 10,00\u{a0}€");
    assert!(note("it-IT").starts_with("default "));
    assert_eq!(note("en-US"), "default €10.00");
    assert_eq!(note("nonsense!"), "default €10.00");
    // The same through data built beforehand, as the engine renders.
    let data = TemplateData::from(ctx("Ana", "de-DE"));
    assert_eq!(
        t.render_note_with("welcome", &data).expect("renders"),
        "de 10,00\u{a0}€"
    );
    // Rules and the command line see one note.
    assert_eq!(t.note_names(), ["welcome"]);
    assert!(t.has_note("welcome") && !t.has_note("welcome.de"));
    assert_eq!(t.language_versions(), 3);
    assert_eq!(
        t.note_file("welcome", &ctx("Ana", "fr-CA")),
        Some("notes/welcome.fr-CA.hbs")
    );
}

#[test]
fn data_without_a_locale_gets_the_english_version_else_the_default() {
    let mut data = ctx("Ana", "en");
    if let Value::Object(map) = &mut data {
        map.remove("locale");
    }
    let t = welcome_in_languages();
    assert_eq!(t.render_note("welcome", &data).unwrap(), "default €10.00");
    let t = load(&[
        ("notes/welcome.hbs", "default"),
        ("notes/welcome.en.hbs", "en"),
        ("notes/welcome.de.hbs", "de"),
    ]);
    assert_eq!(t.render_note("welcome", &data).unwrap(), "en");
}

#[test]
fn an_email_is_rendered_in_the_best_version_and_its_needs_cover_every_version() {
    let mut files = email("thanks", "Thanks {{customer.first_name}}", "<p>Hi</p>").to_vec();
    files.extend(email(
        "thanks.de",
        "Danke {{customer.first_name}}",
        "<p>{{#each order.items}}{{name}}{{/each}}</p>",
    ));
    files.push((
        "emails/thanks.de/text.hbs".into(),
        "Danke, {{shop.name}}".into(),
    ));
    let t = load(&refs(&files));
    assert_eq!(t.email_names(), ["thanks"]);
    assert!(!t.has_email("thanks.de"));
    let german = t.render_email("thanks", &ctx("Ana", "de-CH")).unwrap();
    assert_eq!(german.subject, "Danke Ana");
    assert_eq!(german.html, "<p>A Book</p>");
    assert_eq!(german.text, "Danke, Shop");
    let english = t.render_email("thanks", &ctx("Ana", "en-GB")).unwrap();
    assert_eq!(english.subject, "Thanks Ana");
    assert_eq!(english.text.trim_end(), "Hi");
    // Built once for whichever version is chosen: the German one reads the order and shop.
    let needs = t.email_needs("thanks");
    assert!(needs.wants_member("customer", "first_name"));
    assert!(needs.wants_member("order", "items"));
    assert!(needs.wants_member("shop", "name"));
}

#[test]
fn a_language_version_needs_its_default_and_a_real_tag() {
    assert_eq!(
        issues(&[("notes/welcome.de.hbs", "Hallo")]),
        [
            "notes/welcome.de.hbs:1:1: a language version (de) needs the default welcome.hbs \
          beside it: a customer whose locale has no version of its own gets that one (a name \
          whose part after its last dot reads as a language is a language version; write \
          \"welcome-de\" for a template of its own)"
        ]
    );
    let mut files = email("thanks.fr", "Merci", "<p>Merci</p>").to_vec();
    files.push(("notes/welcome.hbs".into(), "Hi".into()));
    files.push(("notes/welcome.fr_CA.hbs".into(), "Salut".into()));
    files.push(("notes/welcome.DE.hbs".into(), "Hallo".into()));
    files.push(("notes/welcome.de.hbs".into(), "Hallo".into()));
    let found = issues(&refs(&files));
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].starts_with(
            "emails/thanks.fr:1:1: a language version (fr) needs the default emails/thanks/"
        ),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("notes/welcome.de.hbs:1:1: the same language as \"welcome.DE\""),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with(
            "notes/welcome.fr_CA.hbs:1:1: \"fr_CA\" is not a language tag in a file name: \
             write \"fr-CA\" (welcome.fr-CA)"
        ),
        "{found:#?}"
    );
}

#[test]
fn every_language_version_is_checked_in_its_own_file() {
    let found = issues(&[
        ("notes/welcome.hbs", "Hi {{customer.first_name}}"),
        ("notes/welcome.de.hbs", "Hallo\n  {{customer.frist_name}}"),
    ]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("notes/welcome.de.hbs:2:5: ") && found[0].contains("first_name"),
        "{found:#?}"
    );
}

#[test]
fn names_with_dots_that_are_no_language_are_templates_of_their_own() {
    let t = load(&[
        ("notes/winter.v2.hbs", "v2"),
        ("notes/winter.v2.de.hbs", "v2 de"),
        ("notes/thank-you.hbs", "thanks"),
    ]);
    assert_eq!(t.note_names(), ["thank-you", "winter.v2"]);
    assert_eq!(
        t.render_note("winter.v2", &ctx("Ana", "de")).unwrap(),
        "v2 de"
    );
    assert_eq!(
        t.render_note("thank-you", &ctx("Ana", "de")).unwrap(),
        "thanks"
    );
}
