//! Templates per language through the binary (docs/REFERENCE.md §6): a customer's `locale`
//! chooses the note's and the e-mail's language version (`de`, `fr-CA` → `fr` → the default),
//! so that the text and its amounts speak one language; `validate` checks every version in its
//! own file and refuses a version without its default, a locale id for a tag and a rule naming
//! a version instead of its template.
//!
//! Each test starts from the valid base project of `cli_support` (note `hello`, a 10 EUR coupon,
//! one rule giving both) and adds language versions.

mod cli_support;

use cli_support::*;
use serde_json::Value;

const NOTE_DE: &str =
    "Hallo {{customer.first_name}}!\nIhr Gutschein: {{money coupon.amount coupon.currency}}\n";
const NOTE_FR: &str =
    "Bonjour {{customer.first_name}} !\nVotre bon : {{money coupon.amount coupon.currency}}\n";

/// The base project with German and French versions of its note.
fn project() -> Project {
    let p = Project::base();
    p.write(
        NOTE_FILE,
        "Hello {{customer.first_name}}!\nYour coupon: {{money coupon.amount coupon.currency}}\n",
    );
    p.write("templates/notes/hello.de.hbs", NOTE_DE);
    p.write("templates/notes/hello.fr.hbs", NOTE_FR);
    p
}

/// The base order, its customer's locale set (or not), written into the project.
fn order_file(p: &Project, locale: Option<&str>) -> String {
    let mut order: Value = serde_json::from_str(BASE_ORDER).expect("the base order is JSON");
    if let Some(locale) = locale {
        order["order"]["customer"]["locale"] = locale.into();
    }
    let path = p.write("order.json", &serde_json::to_string_pretty(&order).unwrap());
    path.to_str().expect("UTF-8 temp path").to_owned()
}

/// The text of the `hello-note` that `simulate --format json` gives the base order.
fn note_for(p: &Project, locale: Option<&str>) -> String {
    let order = order_file(p, locale);
    let run = p.simulate(&["--order", &order, "--format", "json"]);
    run.assert_code(0).assert_no_panic();
    let decision: Value = serde_json::from_str(&run.stdout).expect("a JSON decision");
    decision["inserts"]
        .as_array()
        .expect("inserts")
        .iter()
        .find(|i| i["insert_id"] == "hello-note")
        .and_then(|i| i["note"]["text"].as_str())
        .unwrap_or_else(|| panic!("no hello-note text in {decision:#}"))
        .to_owned()
}

#[test]
fn a_german_customer_gets_the_german_note_with_german_money() {
    let p = project();
    let note = note_for(&p, Some("de"));
    assert_eq!(note, "Hallo Ann!\nIhr Gutschein: 10,00\u{a0}€\n");
    // A region the folder has no version for gets its language's.
    assert!(note_for(&p, Some("de-DE")).starts_with("Hallo Ann!"));
}

#[test]
fn a_canadian_french_customer_falls_back_to_french() {
    let p = project();
    let note = note_for(&p, Some("fr-CA"));
    assert!(
        note.starts_with("Bonjour Ann !\nVotre bon : 10,00"),
        "{note:?}"
    );
    // With a version of its own, fr-CA gets it, whatever the case of the file name.
    p.write(
        "templates/notes/hello.fr-ca.hbs",
        "Allô {{customer.first_name}}!\n",
    );
    assert_eq!(note_for(&p, Some("fr-CA")), "Allô Ann!\n");
    assert!(note_for(&p, Some("fr-FR")).starts_with("Bonjour"));
}

#[test]
fn without_a_locale_or_with_an_unknown_one_the_default_is_printed() {
    let p = project();
    assert_eq!(note_for(&p, None), "Hello Ann!\nYour coupon: €10.00\n");
    assert!(note_for(&p, Some("it-IT")).starts_with("Hello Ann!"));
}

#[test]
fn validate_counts_the_language_versions() {
    project()
        .validate()
        .assert_code(0)
        .assert_contains("1 note and 0 e-mail templates (2 more versions in other languages)")
        .assert_no_panic();
}

#[test]
fn validate_reports_an_error_inside_a_language_version_at_its_line_and_column() {
    let p = project();
    let note =
        "Hallo {{customer.first_name}}!\nIhr Gutschein: {{money coupon.amout coupon.currency}}\n";
    let file = p.write("templates/notes/hello.de.hbs", note);
    p.validate()
        .assert_code(1)
        .assert_error_at(
            &file,
            position(note, "coupon.amout"),
            &["unknown variable coupon.amout", "coupon.amount"],
        )
        .assert_no_panic();
}

#[test]
fn a_language_version_without_its_default_is_an_error_at_that_file() {
    let p = project();
    let file = p.write("templates/notes/bye.de.hbs", "Tschüss!\n");
    let run = p.validate();
    run.assert_code(1)
        .assert_error_at(&file, (1, 1), &["needs the default bye.hbs beside it"])
        .assert_no_panic();
    assert_eq!(run.findings_in(&file), 1, "{}", run.output());
}

#[test]
fn a_locale_id_is_not_a_tag_in_a_file_name() {
    let p = project();
    let file = p.write("templates/notes/hello.fr_CA.hbs", "Allô!\n");
    p.validate()
        .assert_code(1)
        .assert_error_at(
            &file,
            (1, 1),
            &["\"fr_CA\" is not a language tag", "hello.fr-CA"],
        )
        .assert_no_panic();
}

#[test]
fn a_rule_that_names_a_language_version_is_told_to_name_the_template() {
    let rules = edit(
        BASE_RULES,
        "template = \"hello\"",
        "template = \"hello.de\"",
    );
    let p = project();
    p.write(RULES_FILE, &rules);
    p.validate()
        .assert_code(1)
        .assert_error_at(
            &p.path(RULES_FILE),
            position(&rules, "\"hello.de\""),
            &["\"hello.de\" is the de version of \"hello\"", "locale"],
        )
        .assert_no_panic();
}

/// The base project with an e-mail `thanks` in English and German.
fn project_with_email() -> Project {
    let p = project();
    p.write(
        "templates/emails/thanks/subject.hbs",
        "Thank you, {{customer.first_name}}",
    );
    p.write(
        "templates/emails/thanks/html.hbs",
        "<p>Total: {{money order.total order.currency}}</p>",
    );
    p.write(
        "templates/emails/thanks.de/subject.hbs",
        "Danke, {{customer.first_name}}",
    );
    p.write(
        "templates/emails/thanks.de/html.hbs",
        "<p>Summe: {{money order.total order.currency}}</p>",
    );
    p
}

#[test]
fn a_follow_up_that_names_an_email_version_is_told_to_name_the_email() {
    let p = project_with_email();
    let rules = format!(
        "{BASE_RULES}\n[[followup]]\nid = \"thanks\"\non = \"order.placed\"\nwhen = \"true\"\n\
         template = \"thanks.de\"\nafter = \"2h\"\n"
    );
    p.write(RULES_FILE, &rules);
    p.validate()
        .assert_code(1)
        .assert_error_at(
            &p.path(RULES_FILE),
            position(&rules, "\"thanks.de\""),
            &["e-mail template \"thanks.de\" is the de version of \"thanks\""],
        )
        .assert_no_panic();
    // Named by the template, the follow-up is valid.
    p.write(RULES_FILE, &rules.replace("\"thanks.de\"", "\"thanks\""));
    p.validate().assert_code(0).assert_no_panic();
}

fn preview(p: &Project, order: &str, extra: &[&str]) -> Run {
    let rules = p.path("rules");
    let templates = p.path("templates");
    let mut args = vec![
        "preview",
        "--rules",
        rules.to_str().expect("UTF-8 temp path"),
        "--templates",
        templates.to_str().expect("UTF-8 temp path"),
        "--order",
        order,
    ];
    args.extend_from_slice(extra);
    p.packwell(&args)
}

#[test]
fn a_german_customer_gets_the_german_email() {
    let p = project_with_email();
    let german = order_file(&p, Some("de-DE"));
    preview(&p, &german, &["--template", "thanks"])
        .assert_code(0)
        .assert_contains("<b>Subject:</b> Danke, Ann")
        .assert_contains("Summe: 54,90\u{a0}€")
        .assert_no_panic();
    let english = order_file(&p, Some("en-GB"));
    preview(&p, &english, &["--template", "thanks"])
        .assert_code(0)
        .assert_contains("<b>Subject:</b> Thank you, Ann")
        .assert_contains("Total: €54.90")
        .assert_no_panic();
    // The locale of the preview may be chosen on the command line.
    preview(&p, &english, &["--template", "thanks", "--locale", "de"])
        .assert_code(0)
        .assert_contains("<b>Subject:</b> Danke, Ann")
        .assert_no_panic();
}

#[test]
fn preview_shows_the_note_version_of_the_locale_and_names_its_file() {
    let p = project_with_email();
    let order = order_file(&p, Some("fr-CA"));
    preview(&p, &order, &["--template", "hello"])
        .assert_code(0)
        .assert_contains("Bonjour Ann !")
        .assert_contains("(notes/hello.fr.hbs)")
        .assert_no_panic();
    preview(&p, &order, &["--template", "hello.de"])
        .assert_code(2)
        .assert_contains("\"hello.de\" is the de version of \"hello\"")
        .assert_contains("--template hello --locale de")
        .assert_no_panic();
    preview(&p, &order, &["--template", "hello", "--locale", "de_DE!"])
        .assert_code(2)
        .assert_contains("not a BCP 47 language tag")
        .assert_no_panic();
}

#[test]
fn the_rules_version_covers_every_language_version() {
    let p = project_with_email();
    let order = order_file(&p, None);
    let version = || {
        let run = p.simulate(&["--order", &order, "--format", "json"]);
        run.assert_code(0);
        let decision: Value = serde_json::from_str(&run.stdout).expect("a JSON decision");
        decision["rules_version"].clone()
    };
    let before = version();
    p.write(
        "templates/emails/thanks.de/html.hbs",
        "<p>Gesamt: {{money order.total order.currency}}</p>",
    );
    let after_email = version();
    assert_ne!(before, after_email);
    p.write(
        "templates/notes/hello.de.hbs",
        "Servus {{customer.first_name}}!\n",
    );
    assert_ne!(after_email, version());
}
