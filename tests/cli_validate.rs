//! `packwell validate` through the binary (docs/REFERENCE.md §2, §4): every class of error is
//! reported as `file:line:col: message` at the offending token, with exit code 1; a nullable
//! comparison without a null check is a warning (exit 0).
//!
//! Each test starts from the valid base project of `cli_support` (one `[package]`, one segment,
//! a coupon, a note with `templates/notes/hello.hbs`, one rule giving both), breaks one thing and
//! computes the expected line and column from the text it wrote.

mod cli_support;

use cli_support::*;

/// Writes `rules` as the base rule file, validates, and expects exit 1 with an error at the
/// start of `needle` (which must occur once in `rules`) saying every fragment.
fn expect_rules_error(rules: &str, needle: &str, fragments: &[&str]) -> Run {
    let p = Project::with_rules(rules);
    let run = p.validate();
    run.assert_code(1)
        .assert_error_at(&p.path(RULES_FILE), position(rules, needle), fragments)
        .assert_no_panic();
    run
}

/// Writes `note` as the base note template, validates, and expects exit 1 with an error at the
/// start of `needle` (which must occur once in `note`) saying every fragment.
fn expect_note_error(note: &str, needle: &str, fragments: &[&str]) -> Run {
    let p = Project::with_note(note);
    let run = p.validate();
    run.assert_code(1)
        .assert_error_at(&p.path(NOTE_FILE), position(note, needle), fragments)
        .assert_no_panic();
    run
}

/// The base rules with the `when` of the segment replaced.
fn segment_when(when: &str) -> String {
    edit(
        BASE_RULES,
        r#"when = "customer.orders_count == 1""#,
        &format!("when = \"{when}\""),
    )
}

/// The base rules with a line added to the `[[rule]]` (at its end).
fn rule_with(line: &str) -> String {
    edit(
        BASE_RULES,
        "give = [\"hello-note\", \"coupon-10\"]\n",
        &format!("give = [\"hello-note\", \"coupon-10\"]\n{line}\n"),
    )
}

// ---------------------------------------------------------------------------------------------
// The base

#[test]
fn the_valid_base_passes() {
    let p = Project::base();
    let run = p.validate();
    run.assert_code(0)
        .assert_contains("ok:")
        .assert_not_contains("warning:")
        .assert_no_panic();
    assert_eq!(run.findings_in(&p.path(RULES_FILE)), 0, "{}", run.output());
    assert_eq!(run.findings_in(&p.path(NOTE_FILE)), 0, "{}", run.output());
}

// ---------------------------------------------------------------------------------------------
// TOML and keys

#[test]
fn toml_syntax_error_points_at_the_token() {
    let rules = edit(
        BASE_RULES,
        r#"give = ["hello-note", "coupon-10"]"#,
        r#"give = ["hello-note" "coupon-10"]"#,
    );
    expect_rules_error(&rules, r#""coupon-10"]"#, &["TOML", "comma"]);
}

#[test]
fn toml_extra_equals_sign_points_at_it() {
    let rules = edit(BASE_RULES, "max_inserts = 3", "max_inserts = = 3");
    expect_rules_error(&rules, "= 3", &["TOML"]);
}

#[test]
fn unknown_key_points_at_the_key_and_suggests_the_right_one() {
    let rules = edit(
        BASE_RULES,
        "when = \"'first_order' in segments\"",
        "whn = \"'first_order' in segments\"",
    );
    expect_rules_error(&rules, "whn", &["unknown key `whn`", "did you mean `when`"]);
}

#[test]
fn unknown_keys_in_two_files_are_reported_together() {
    let rules = edit(
        BASE_RULES,
        "when = \"'first_order' in segments\"",
        "whn = \"'first_order' in segments\"",
    );
    let extra = r#"[[segment]]
id = "big_order"
when = "order.total >= 100"
descripton = "orders of 100 or more"
"#;
    let p = Project::with_rules(&rules);
    let extra_file = p.write("rules/20-more.toml", extra);
    let run = p.validate();
    run.assert_code(1)
        .assert_error_at(
            &p.path(RULES_FILE),
            position(&rules, "whn"),
            &["unknown key `whn`", "did you mean `when`"],
        )
        .assert_error_at(
            &extra_file,
            position(extra, "descripton"),
            &["unknown key `descripton`", "did you mean `description`"],
        )
        .assert_contains("2 errors")
        .assert_no_panic();
}

#[test]
fn errors_in_rules_and_templates_are_reported_together() {
    let rules = rule_with(r#"cooldown = "90 days""#);
    let note = "Hello {{customer.frist_name}}!\n";
    let p = Project::with_rules(&rules);
    p.write(NOTE_FILE, note);
    let run = p.validate();
    run.assert_code(1)
        .assert_error_at(
            &p.path(RULES_FILE),
            position(&rules, "\"90 days\""),
            &["cooldown", "90 days"],
        )
        .assert_error_at(
            &p.path(NOTE_FILE),
            position(note, "customer.frist_name"),
            &["unknown variable customer.frist_name"],
        )
        .assert_no_panic();
}

#[test]
fn duplicate_id_points_at_the_second_one_and_names_the_first() {
    let rules = format!(
        "{BASE_RULES}\n[[insert]]\nid = \"coupon-10\"\nkind = \"gift\"\ntitle = \"A tea sachet\"\n"
    );
    let p = Project::with_rules(&rules);
    let file = p.path(RULES_FILE);
    let (first_line, first_col) = position_plus(&rules, "id = \"coupon-10\"\nkind = \"coupon\"", 5);
    let first = format!(
        "first defined at {}:{first_line}:{first_col}",
        file.display()
    );
    let run = p.validate();
    run.assert_code(1)
        .assert_error_at(
            &file,
            position_plus(&rules, "id = \"coupon-10\"\nkind = \"gift\"", 5),
            &["duplicate", "\"coupon-10\"", &first],
        )
        .assert_no_panic();
}

#[test]
fn duplicate_rule_id_across_files_is_an_error() {
    let extra =
        "[[rule]]\nid = \"welcome\"\nwhen = \"order.total > 100\"\ngive = [\"coupon-10\"]\n";
    let p = Project::base();
    let extra_file = p.write("rules/20-more.toml", extra);
    let run = p.validate();
    run.assert_code(1)
        .assert_error_at(
            &extra_file,
            position(extra, "\"welcome\""),
            &["duplicate", "\"welcome\""],
        )
        .assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// Expressions

#[test]
fn expression_that_does_not_parse_points_at_the_bad_token() {
    let rules = segment_when("customer.orders_count == 1 and and order.total > 5");
    // The second `and` is where the expression goes wrong.
    expect_rules_error(&rules, "and order.total", &["expression"]);
}

#[test]
fn expression_that_ends_too_early_points_at_its_end() {
    let rules = segment_when("customer.orders_count ==");
    let (line, col) = position(&rules, "customer.orders_count ==\"");
    let p = Project::with_rules(&rules);
    p.validate()
        .assert_code(1)
        .assert_error_at(
            &p.path(RULES_FILE),
            (line, col + "customer.orders_count ==".len()),
            &["expression"],
        )
        .assert_no_panic();
}

#[test]
fn expression_with_a_stray_parenthesis_points_at_it() {
    let rules = segment_when("customer.orders_count == 1 )");
    expect_rules_error(&rules, ")\"", &["expression"]);
}

#[test]
fn a_broken_segment_is_not_reported_as_defined_later() {
    // The segment exists and comes first; only its condition is broken. The rule that names it
    // must not get a second, false error ("defined later").
    let rules = segment_when("customer.orders_count == 1 and and order.total > 5");
    let p = Project::with_rules(&rules);
    p.validate()
        .assert_code(1)
        .assert_error_at(
            &p.path(RULES_FILE),
            position(&rules, "and order.total"),
            &["expression"],
        )
        .assert_not_contains("defined later")
        .assert_no_panic();
}

#[test]
fn assignment_is_rejected_as_not_a_comparison() {
    let rules = segment_when("customer.orders_count = 1");
    expect_rules_error(&rules, "customer.orders_count = 1", &["assignment", "=="]);
}

#[test]
fn non_boolean_expression_is_rejected() {
    let rules = segment_when("customer.orders_count + 1");
    expect_rules_error(&rules, "customer.orders_count + 1", &["true or false"]);
}

#[test]
fn unknown_variable_is_named_with_a_suggestion() {
    let rules = segment_when("customer.ordrs_count == 1");
    expect_rules_error(
        &rules,
        "customer.ordrs_count",
        &[
            "unknown variable customer.ordrs_count",
            "did you mean customer.orders_count",
        ],
    );
}

#[test]
fn unknown_variable_later_in_the_expression_points_at_it() {
    let rules = segment_when("order.total > 10 and customer.ordrs_count == 1");
    expect_rules_error(
        &rules,
        "customer.ordrs_count",
        &["did you mean customer.orders_count"],
    );
}

#[test]
fn unknown_root_is_rejected() {
    let rules = segment_when("foo.bar == 1");
    expect_rules_error(&rules, "foo.bar", &["unknown variable foo.bar"]);
}

#[test]
fn wall_clock_function_is_rejected() {
    let rules = segment_when("d() > d('2026-01-01')");
    expect_rules_error(&rules, "d() >", &["wall clock"]);
}

#[test]
fn random_function_is_rejected() {
    let rules = segment_when("rand(10) > 5");
    expect_rules_error(&rules, "rand(10)", &["random"]);
}

#[test]
fn unknown_segment_in_segments_is_rejected_with_a_suggestion() {
    let rules = edit(
        BASE_RULES,
        "when = \"'first_order' in segments\"",
        "when = \"'frist_order' in segments\"",
    );
    expect_rules_error(
        &rules,
        "frist_order",
        &[
            "unknown segment \"frist_order\"",
            "did you mean \"first_order\"",
        ],
    );
}

#[test]
fn segment_defined_later_is_rejected() {
    let rules = edit(
        BASE_RULES,
        r#"when = "customer.orders_count == 1""#,
        r#"when = "customer.orders_count == 1 and 'vip' in segments""#,
    );
    let rules = edit(
        &rules,
        "[[insert]]\nid = \"coupon-10\"",
        "[[segment]]\nid = \"vip\"\nwhen = \"order.total > 500\"\n\n[[insert]]\nid = \"coupon-10\"",
    );
    expect_rules_error(&rules, "vip' in", &["\"vip\"", "defined later"]);
}

#[test]
fn nullable_comparison_without_null_check_is_a_warning() {
    let segment =
        "[[segment]]\nid = \"lapsed\"\nwhen = \"customer.days_since_previous_order > 30\"\n";
    let rules = format!("{BASE_RULES}\n{segment}");
    let p = Project::with_rules(&rules);
    let run = p.validate();
    run.assert_code(0)
        .assert_warning_at(
            &p.path(RULES_FILE),
            position(&rules, "customer.days_since_previous_order > 30"),
            &["customer.days_since_previous_order", "null"],
        )
        .assert_contains("ok:")
        .assert_contains("1 warning")
        .assert_no_panic();
}

#[test]
fn nullable_comparison_with_null_check_is_clean() {
    let segment = "[[segment]]\nid = \"lapsed\"\nwhen = \"customer.days_since_previous_order != null and customer.days_since_previous_order > 30\"\n";
    let p = Project::with_rules(&format!("{BASE_RULES}\n{segment}"));
    p.validate()
        .assert_code(0)
        .assert_not_contains("warning:")
        .assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// Ids and references

#[test]
fn unknown_insert_in_give_is_rejected_with_a_suggestion() {
    let rules = edit(
        BASE_RULES,
        r#""hello-note", "coupon-10"]"#,
        r#""hello-note", "coupon-11"]"#,
    );
    expect_rules_error(
        &rules,
        "\"coupon-11\"",
        &["unknown insert \"coupon-11\"", "did you mean \"coupon-10\""],
    );
}

#[test]
fn unknown_note_template_is_rejected_with_a_suggestion() {
    let rules = edit(BASE_RULES, r#"template = "hello""#, r#"template = "helo""#);
    expect_rules_error(
        &rules,
        "\"helo\"",
        &["unknown note template \"helo\"", "did you mean \"hello\""],
    );
}

const FOLLOWUP: &str = r#"
[[followup]]
id = "thanks-mail"
on = "order.placed"
template = "thank_you"
after = "2h"
"#;

fn with_thank_you_email(p: &Project) {
    p.write(
        "templates/emails/thank_you/subject.hbs",
        "Thank you, {{customer.first_name}}\n",
    );
    p.write(
        "templates/emails/thank_you/html.hbs",
        "<p>Hello {{customer.first_name}}, thank you for order {{order.id}}.</p>\n",
    );
}

#[test]
fn followup_with_a_known_email_template_is_valid() {
    // The control for the next test: the same follow-up, naming a template that exists.
    let p = Project::with_rules(&format!("{BASE_RULES}{FOLLOWUP}"));
    with_thank_you_email(&p);
    p.validate().assert_code(0).assert_no_panic();
}

#[test]
fn unknown_email_template_in_followup_is_rejected() {
    let rules = format!("{BASE_RULES}{FOLLOWUP}").replace("\"thank_you\"", "\"thank-you\"");
    let p = Project::with_rules(&rules);
    with_thank_you_email(&p);
    p.validate()
        .assert_code(1)
        .assert_error_at(
            &p.path(RULES_FILE),
            position(&rules, "\"thank-you\""),
            &[
                "unknown e-mail template \"thank-you\"",
                "did you mean \"thank_you\"",
            ],
        )
        .assert_no_panic();
}

#[test]
fn coupon_without_amount_is_rejected_at_its_id() {
    let rules = edit(BASE_RULES, "amount = { EUR = \"10.00\" }\n", "");
    expect_rules_error(
        &rules,
        "\"coupon-10\"\nkind",
        &["coupon \"coupon-10\"", "amount"],
    );
}

// ---------------------------------------------------------------------------------------------
// Values

#[test]
fn bad_duration_is_rejected() {
    let rules = rule_with(r#"cooldown = "90 days""#);
    expect_rules_error(
        &rules,
        "\"90 days\"",
        &["cooldown", "bad duration \"90 days\""],
    );
}

#[test]
fn bad_percentage_is_rejected() {
    let rules = rule_with(r#"holdout = "110%""#);
    expect_rules_error(&rules, "\"110%\"", &["holdout", "bad percentage \"110%\""]);
}

#[test]
fn bad_date_points_at_the_date() {
    let rules = rule_with(r#"active = { from = "2026-13-01" }"#);
    expect_rules_error(
        &rules,
        "\"2026-13-01\"",
        &["active", "bad date \"2026-13-01\""],
    );
}

#[test]
fn bad_until_date_points_at_that_date() {
    let rules = rule_with(r#"active = { from = "2026-12-01", until = "2026-12-32" }"#);
    expect_rules_error(
        &rules,
        "\"2026-12-32\"",
        &["active", "bad date \"2026-12-32\""],
    );
}

#[test]
fn bad_budget_amount_is_rejected() {
    let rules = rule_with(r#"budget = { EUR = "abc", per = "month" }"#);
    expect_rules_error(&rules, "\"abc\"", &["budget", "abc"]);
}

#[test]
fn bad_budget_period_is_rejected() {
    let rules = rule_with(r#"budget = { EUR = "100.00", per = "year" }"#);
    expect_rules_error(&rules, "\"year\"", &["budget", "\"year\"", "month"]);
}

// ---------------------------------------------------------------------------------------------
// Templates

#[test]
fn template_that_does_not_parse_points_at_the_unclosed_block() {
    let note = "Hello {{customer.first_name}}!\n{{#if coupon.code}}Your code: {{coupon.code}}\nSee you soon.\n";
    expect_note_error(note, "{{#if", &["does not parse", "not closed"]);
}

#[test]
fn a_broken_template_is_not_reported_as_missing() {
    // hello.hbs exists; that it does not parse must not also make the rules say that there is
    // no templates/notes/hello.hbs.
    let note = "Hello {{customer.first_name}}!\n{{#if coupon.code}}Your code: {{coupon.code}}\n";
    let p = Project::with_note(note);
    p.validate()
        .assert_code(1)
        .assert_contains("does not parse")
        .assert_not_contains("unknown note template")
        .assert_no_panic();
}

#[test]
fn template_with_an_unknown_variable_is_rejected_with_a_suggestion() {
    let note = "Dear reader,\nhello {{customer.frist_name}}!\n";
    expect_note_error(
        note,
        "customer.frist_name",
        &[
            "unknown variable customer.frist_name",
            "did you mean customer.first_name",
        ],
    );
}

#[test]
fn template_with_an_unknown_helper_is_rejected_with_a_suggestion() {
    let note =
        "Hello {{customer.first_name}}!\nYour coupon: {{monee coupon.amount coupon.currency}}\n";
    expect_note_error(
        note,
        "monee",
        &["unknown helper \"monee\"", "did you mean \"money\""],
    );
}

#[test]
fn unknown_variable_inside_each_is_rejected() {
    let note = "Hello {{customer.first_name}}!\n{{#each order.items}}\n- {{quantity}} x {{nmae}}\n{{/each}}\n";
    expect_note_error(
        note,
        "nmae",
        &["unknown variable nmae", "did you mean name"],
    );
}

#[test]
fn unknown_variable_inside_if_is_rejected() {
    let note =
        "Hello {{customer.first_name}}!\n{{#if coupon}}\nYour code: {{coupon.cod}}\n{{/if}}\n";
    expect_note_error(
        note,
        "coupon.cod}}",
        &["unknown variable coupon.cod", "did you mean coupon.code"],
    );
}

#[test]
fn unknown_variable_as_helper_argument_is_rejected() {
    let note = "Hello {{customer.first_name}}!\nWorth {{money coupon.amout coupon.currency}}\n";
    expect_note_error(
        note,
        "coupon.amout",
        &[
            "unknown variable coupon.amout",
            "did you mean coupon.amount",
        ],
    );
}

#[test]
fn valid_template_with_blocks_and_helpers_passes() {
    // The control for the template tests: the same constructs, spelt right.
    let note = "Hello {{customer.first_name}}!\n{{#each order.items}}\n- {{quantity}} x {{name}}\n{{/each}}\n{{#if coupon}}\nYour code: {{coupon.code}}, worth {{money coupon.amount coupon.currency}}\n{{/if}}\n";
    Project::with_note(note)
        .validate()
        .assert_code(0)
        .assert_no_panic();
}
