//! `packwell validate` on rules and templates nested too deep or too large: an error at the
//! `file:line:col` where the limit is first passed, naming the limit, exit code 1 as for any
//! rule error, never an abort. Before these limits, 30 000 nested parentheses, a 50 000-term
//! `and` chain and 20 000 nested `{{#if}}` each overflowed the stack (exit 134).

mod cli_support;

use cli_support::*;

/// The base rules with the segment's condition replaced by `when`.
fn segment_when(when: &str) -> String {
    edit(
        BASE_RULES,
        r#"when = "customer.orders_count == 1""#,
        &format!("when = \"{when}\""),
    )
}

/// Validates `rules` and expects exit 1 with one error at the position `offset` bytes into the
/// segment's condition, saying every fragment.
fn expect_when_error(when: &str, offset: usize, fragments: &[&str]) {
    let rules = segment_when(when);
    let p = Project::with_rules(&rules);
    let run = p.validate();
    // The condition is on the line after the segment's id, after `when = "`.
    let (id_line, _) = position(&rules, "id = \"first_order\"");
    run.assert_code(1)
        .assert_error_at(&p.path(RULES_FILE), (id_line + 1, 9 + offset), fragments)
        .assert_no_panic();
    assert_eq!(run.findings_in(&p.path(RULES_FILE)), 1, "{}", run.output());
}

fn nested_ifs(n: usize) -> String {
    format!(
        "{}{{{{customer.first_name}}}}{}",
        "{{#if customer.first_name}}".repeat(n),
        "{{/if}}".repeat(n)
    )
}

#[test]
fn thirty_thousand_nested_parentheses_are_an_error_at_the_65th() {
    let when = format!(
        "{}customer.orders_count == 1{}",
        "(".repeat(30_000),
        ")".repeat(30_000)
    );
    expect_when_error(
        &when,
        64,
        &["when: nested more than 64 levels deep (limit 64)"],
    );
}

#[test]
fn sixty_four_levels_of_parentheses_are_fine() {
    let when = format!(
        "{}customer.orders_count == 1{}",
        "(".repeat(64),
        ")".repeat(64)
    );
    let p = Project::with_rules(&segment_when(&when));
    p.validate().assert_code(0).assert_no_panic();
}

#[test]
fn a_fifty_thousand_term_and_chain_is_an_error_at_the_operator_past_the_limit() {
    let when = vec!["true"; 50_000].join(" and ");
    // The 1 025th operator is the 1 025th `and`.
    let offset = when
        .match_indices("and")
        .nth(1024)
        .map(|(i, _)| i)
        .expect("and");
    expect_when_error(
        &when,
        offset,
        &["when: more than 1024 operators (limit 1024)"],
    );
}

#[test]
fn a_condition_longer_than_16_kib_is_an_error() {
    let when = format!("order.id == '{}'", "x".repeat(20_000));
    expect_when_error(&when, 16 * 1024, &["when: longer than", "(limit 16 KiB)"]);
}

#[test]
fn twenty_thousand_nested_ifs_in_a_note_are_an_error_at_the_33rd() {
    let note = nested_ifs(20_000);
    let p = Project::with_note(&note);
    let run = p.validate();
    let at = 32 * "{{#if customer.first_name}}".len();
    run.assert_code(1)
        .assert_error_at(
            &p.path(NOTE_FILE),
            (1, at + 1),
            &["nested more than 32 levels deep (limit 32)"],
        )
        .assert_no_panic();
}

#[test]
fn thirty_two_nested_ifs_in_a_note_are_fine() {
    let p = Project::with_note(&nested_ifs(32));
    p.validate().assert_code(0).assert_no_panic();
}

#[test]
fn twenty_thousand_nested_ifs_in_an_email_are_an_error_at_the_33rd() {
    let p = Project::base();
    p.write("templates/emails/thank_you/subject.hbs", "Thank you\n");
    let html = format!("<p>\n{}</p>\n", nested_ifs(20_000));
    let file = p.write("templates/emails/thank_you/html.hbs", &html);
    let run = p.validate();
    let at = 32 * "{{#if customer.first_name}}".len();
    run.assert_code(1)
        .assert_error_at(
            &file,
            (2, at + 1),
            &["nested more than 32 levels deep (limit 32)"],
        )
        .assert_no_panic();
}

#[test]
fn deep_subexpressions_in_a_template_are_an_error() {
    let note = format!(
        "{{{{#if {}customer.first_name{}}}}}x{{{{/if}}}}",
        "(eq ".repeat(20_000),
        ")".repeat(20_000)
    );
    let p = Project::with_note(&note);
    let run = p.validate();
    // The block is level 1, so the 32nd parenthesis is the first one too deep.
    let at = "{{#if ".len() + 31 * "(eq ".len();
    run.assert_code(1)
        .assert_error_at(&p.path(NOTE_FILE), (1, at + 1), &["(limit 32)"])
        .assert_no_panic();
}

#[test]
fn a_template_larger_than_256_kib_is_an_error() {
    let note = format!("Hello {{{{customer.first_name}}}}\n{}", "x".repeat(300_000));
    let p = Project::with_note(&note);
    let run = p.validate();
    run.assert_code(1)
        .assert_error_at(&p.path(NOTE_FILE), (1, 1), &["larger than 256 KiB"])
        .assert_no_panic();
}

#[test]
fn a_rule_file_larger_than_1_mib_is_an_error() {
    let rules = format!("{BASE_RULES}\n{}", "# padding\n".repeat(110_000));
    let p = Project::with_rules(&rules);
    let run = p.validate();
    run.assert_code(1)
        .assert_error_at(&p.path(RULES_FILE), (1, 1), &["larger than 1 MiB"])
        .assert_no_panic();
}

#[test]
fn toml_nested_100_000_deep_is_an_error_of_the_toml_parser() {
    // The TOML parsers stop at 80 levels themselves.
    let rules = edit(
        BASE_RULES,
        "give = [\"hello-note\", \"coupon-10\"]\n",
        &format!(
            "give = [\"hello-note\", \"coupon-10\"]\ndescription = {}1{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    );
    let p = Project::with_rules(&rules);
    let run = p.validate();
    run.assert_code(1)
        .assert_contains("max recursion depth")
        .assert_no_panic();
    assert_eq!(run.findings_in(&p.path(RULES_FILE)), 1, "{}", run.output());
    let inline = edit(
        BASE_RULES,
        "give = [\"hello-note\", \"coupon-10\"]\n",
        &format!(
            "give = [\"hello-note\", \"coupon-10\"]\nactive = {}{}\n",
            "{ a = ".repeat(100_000),
            "}".repeat(100_000)
        ),
    );
    let p = Project::with_rules(&inline);
    let run = p.validate();
    run.assert_code(1).assert_no_panic();
    assert_eq!(run.findings_in(&p.path(RULES_FILE)), 1, "{}", run.output());
}
