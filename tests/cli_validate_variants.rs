//! `packwell validate` and `packwell simulate` on rules with `variants` (docs/REFERENCE.md §2
//! Variants): every mistake reported at its token with exit code 1, and a valid experiment
//! gives the customer's variant, named in the decision.

mod cli_support;

use cli_support::*;

/// The base rule with its `give` replaced by `variants` written as `variants`.
fn rule_variants(variants: &str) -> String {
    edit(
        BASE_RULES,
        "give = [\"hello-note\", \"coupon-10\"]\n",
        &format!("variants = {variants}\n"),
    )
}

const TWO: &str = r#"[{ id = "note", give = ["hello-note"], weight = 50 }, { id = "coupon", give = ["coupon-10"], weight = 50 }]"#;

fn expect_rules_error(rules: &str, needle: &str, fragments: &[&str]) {
    let p = Project::with_rules(rules);
    p.validate()
        .assert_code(1)
        .assert_error_at(&p.path(RULES_FILE), position(rules, needle), fragments)
        .assert_no_panic();
}

#[test]
fn a_valid_experiment_passes_and_decides_a_variant() {
    let p = Project::with_rules(&rule_variants(TWO));
    p.validate().assert_code(0).assert_no_panic();
    let order = p.write("order.json", BASE_ORDER);
    let run = p.simulate(&["--order", order.to_str().unwrap(), "--format", "json"]);
    run.assert_code(0);
    let d: serde_json::Value = serde_json::from_str(&run.stdout).expect("the decision as JSON");
    let inserts = d["inserts"].as_array().expect("inserts");
    assert_eq!(inserts.len(), 1, "one variant's insert: {d}");
    let variant = inserts[0]["variant"].as_str().expect("the variant named");
    let expected = match packwell::engine::draw_variant("C-1", "welcome", &[50, 50]) {
        Some(0) => ("note", "hello-note"),
        Some(1) => ("coupon", "coupon-10"),
        other => panic!("no draw: {other:?}"),
    };
    assert_eq!(
        (variant, inserts[0]["insert_id"].as_str().unwrap()),
        expected
    );
    // The text names it too.
    p.simulate(&["--order", order.to_str().unwrap()])
        .assert_code(0)
        .assert_contains(&format!("from welcome (variant {})", expected.0));
}

#[test]
fn give_and_variants_together_are_rejected() {
    let rules = edit(
        BASE_RULES,
        "give = [\"hello-note\", \"coupon-10\"]\n",
        &format!("give = [\"hello-note\", \"coupon-10\"]\nvariants = {TWO}\n"),
    );
    expect_rules_error(
        &rules,
        "\"hello-note\", \"coupon-10\"",
        &["both `give` and `variants`"],
    );
}

#[test]
fn one_variant_alone_is_rejected_at_the_rule_id() {
    let rules = rule_variants(r#"[{ id = "note", give = ["hello-note"], weight = 1 }]"#);
    expect_rules_error(&rules, "\"welcome\"", &["at least two variants"]);
}

#[test]
fn duplicate_variant_ids_are_rejected_at_the_second() {
    let rules = rule_variants(
        r#"[{ id = "same", give = ["hello-note"], weight = 1 }, { id = "same", give = ["coupon-10"], weight = 1 }]"#,
    );
    let p = Project::with_rules(&rules);
    p.validate()
        .assert_code(1)
        .assert_error_at(
            &p.path(RULES_FILE),
            last_position(&rules, "\"same\""),
            &["variant id \"same\" is used twice"],
        )
        .assert_no_panic();
}

#[test]
fn weights_must_be_positive_whole_numbers() {
    for (weight, needle) in [("0", "weight = 0"), ("-5", "weight = -5")] {
        let rules = rule_variants(&format!(
            r#"[{{ id = "a", give = ["hello-note"], weight = 3 }}, {{ id = "b", give = ["coupon-10"], {needle} }}]"#
        ));
        let (line, col) = position(&rules, needle);
        let p = Project::with_rules(&rules);
        p.validate()
            .assert_code(1)
            .assert_error_at(
                &p.path(RULES_FILE),
                (line, col + "weight = ".len()),
                &[&format!("weight {weight} must be a whole number from 1")],
            )
            .assert_no_panic();
    }
    // A fraction is not a whole number: the TOML type check says so where it is written.
    let rules = rule_variants(
        r#"[{ id = "a", give = ["hello-note"], weight = 0.5 }, { id = "b", give = ["coupon-10"], weight = 1 }]"#,
    );
    let p = Project::with_rules(&rules);
    p.validate().assert_code(1).assert_no_panic();
}

#[test]
fn variant_ids_are_plain_words() {
    let rules = rule_variants(
        r#"[{ id = "with:colon", give = ["hello-note"], weight = 1 }, { id = "b", give = ["coupon-10"], weight = 1 }]"#,
    );
    expect_rules_error(
        &rules,
        "\"with:colon\"",
        &["may hold only letters, digits, '-' and '_'"],
    );
}

#[test]
fn a_variant_that_gives_nothing_or_an_unknown_insert_is_rejected() {
    let rules = rule_variants(
        r#"[{ id = "empty", give = [], weight = 1 }, { id = "b", give = ["coupon-11"], weight = 1 }]"#,
    );
    let p = Project::with_rules(&rules);
    p.validate()
        .assert_code(1)
        .assert_error_at(
            &p.path(RULES_FILE),
            position(&rules, "\"empty\""),
            &["variant \"empty\" gives nothing"],
        )
        .assert_error_at(
            &p.path(RULES_FILE),
            position(&rules, "\"coupon-11\""),
            &["unknown insert \"coupon-11\"", "did you mean \"coupon-10\""],
        )
        .assert_no_panic();
}

#[test]
fn an_unknown_key_in_a_variant_is_named_with_the_right_one() {
    let rules = rule_variants(
        r#"[{ id = "a", give = ["hello-note"], wieght = 1 }, { id = "b", give = ["coupon-10"], weight = 1 }]"#,
    );
    expect_rules_error(&rules, "wieght", &["unknown key `wieght`", "`weight`"]);
}

#[test]
fn a_follow_up_variant_names_a_template_that_exists() {
    let rules = format!(
        "{BASE_RULES}\n[[followup]]\nid = \"thanks\"\non = \"order.placed\"\ntemplate = \"thanks\"\nafter = \"1d\"\nvariants = [{{ id = \"plain\", weight = 1 }}, {{ id = \"warm\", template = \"thanks-warn\", weight = 1 }}]\n"
    );
    let p = Project::with_rules(&rules);
    p.write("templates/emails/thanks/subject.hbs", "Thanks");
    p.write("templates/emails/thanks/html.hbs", "<p>Thanks</p>");
    p.write("templates/emails/thanks-warm/subject.hbs", "Thanks!");
    p.write(
        "templates/emails/thanks-warm/html.hbs",
        "<p>Thank you so much</p>",
    );
    p.validate()
        .assert_code(1)
        .assert_error_at(
            &p.path(RULES_FILE),
            position(&rules, "\"thanks-warn\""),
            &[
                "unknown e-mail template \"thanks-warn\"",
                "did you mean \"thanks-warm\"",
            ],
        )
        .assert_no_panic();
}

#[test]
fn more_than_ten_variants_or_a_weight_over_a_million_are_rejected() {
    let many: Vec<String> = (0..11)
        .map(|i| format!(r#"{{ id = "v{i}", give = ["hello-note"], weight = 1 }}"#))
        .collect();
    let rules = rule_variants(&format!("[{}]", many.join(", ")));
    expect_rules_error(&rules, "\"v10\"", &["at most 10 variants"]);
    let rules = rule_variants(
        r#"[{ id = "a", give = ["hello-note"], weight = 1000001 }, { id = "b", give = ["coupon-10"], weight = 1 }]"#,
    );
    let (line, col) = position(&rules, "1000001");
    let p = Project::with_rules(&rules);
    p.validate()
        .assert_code(1)
        .assert_error_at(&p.path(RULES_FILE), (line, col), &["weight 1000001"])
        .assert_no_panic();
}

#[test]
fn variants_may_be_written_as_tables() {
    let rules = rule_variants("[]").replace(
        "variants = []\n",
        "\n[[rule.variants]]\nid = \"note\"\ngive = [\"hello-note\"]\nweight = 1\n\n[[rule.variants]]\nid = \"coupon\"\ngive = [\"coupon-10\"]\nweight = 3\n",
    );
    let p = Project::with_rules(&rules);
    p.validate().assert_code(0).assert_no_panic();
}

#[test]
fn a_follow_up_with_give_and_variants_or_a_variant_giving_a_note_is_rejected() {
    let followup = |body: &str| {
        format!(
            "{BASE_RULES}\n[[followup]]\nid = \"thanks\"\non = \"order.placed\"\ntemplate = \"thanks\"\nafter = \"1d\"\n{body}\n"
        )
    };
    let project = |rules: &str| {
        let p = Project::with_rules(rules);
        p.write("templates/emails/thanks/subject.hbs", "Thanks");
        p.write("templates/emails/thanks/html.hbs", "<p>Thanks</p>");
        p
    };
    let both = followup(
        "give = [\"coupon-10\"]\nvariants = [{ id = \"a\", weight = 1 }, { id = \"b\", give = [\"coupon-10\"], weight = 1 }]",
    );
    let p = project(&both);
    p.validate()
        .assert_code(1)
        .assert_error_at(
            &p.path(RULES_FILE),
            position(&both, "\"coupon-10\"]\nvariants"),
            &["both `give` and `variants`"],
        )
        .assert_no_panic();
    let note = followup(
        "variants = [{ id = \"a\", weight = 1 }, { id = \"b\", give = [\"hello-note\"], weight = 1 }]",
    );
    let p = project(&note);
    p.validate()
        .assert_code(1)
        .assert_error_at(
            &p.path(RULES_FILE),
            last_position(&note, "\"hello-note\""),
            &["can only give coupons"],
        )
        .assert_no_panic();
}
