//! Loading and checking: the issues `packwell validate` reports for a templates folder.

use super::*;

#[test]
fn issue_display_is_file_line_col_message() {
    let issue = TemplateIssue {
        file: PathBuf::from("templates/notes/welcome.hbs"),
        line: 3,
        col: 7,
        message: "unknown helper \"monee\"".to_owned(),
    };
    assert_eq!(
        issue.to_string(),
        "templates/notes/welcome.hbs:3:7: unknown helper \"monee\""
    );
}

#[test]
fn a_template_that_does_not_parse_is_reported_where_handlebars_says() {
    assert_eq!(
        issues(&[("notes/bad.hbs", "Hi\n  {{#if coupon}}x{{/each}}")]),
        [
            "notes/bad.hbs:2:18: template does not parse: helper \"if\" was opened, but \
          \"each\" is closing"
        ]
    );
    assert_eq!(
        issues(&[("notes/open.hbs", "Hi {{#if coupon}}x")]),
        ["notes/open.hbs:1:4: template does not parse: {{#if}} is not closed: add {{/if}}"]
    );
    assert_eq!(
        issues(&[("notes/tag.hbs", "Hi\n{{customer.first_name")]),
        ["notes/tag.hbs:2:22: template does not parse: the tag is not closed: expected }}"]
    );
}

#[test]
fn an_unknown_variable_is_reported_with_a_suggestion() {
    assert_eq!(
        issues(&[(
            "notes/welcome.hbs",
            "Dear {{customer.frist_name}},\nthanks!"
        )]),
        [
            "notes/welcome.hbs:1:8: unknown variable customer.frist_name, did you mean \
          customer.first_name?"
        ]
    );
    assert_eq!(
        issues(&[("notes/n.hbs", "{{custmer.first_name}} {{basket}}")]),
        [
            "notes/n.hbs:1:3: unknown variable custmer.first_name, did you mean \
             customer.first_name?",
            "notes/n.hbs:1:26: unknown variable basket",
        ]
    );
}

#[test]
fn variables_are_checked_inside_blocks_arguments_subexpressions_and_hashes() {
    let source = "\
{{#if customer.frist_name}}x{{/if}}
{{#each order.items}}{{nme}} {{../shop.name}} {{@index}}{{/each}}
{{#with shop}}{{ulr}}{{/with}}
{{#unless (eq coupon.cod \"X\")}}y{{/unless}}
{{money order.totl order.currency}}
{{lookup order \"id\" fallback=custmer}}
{{#each coupons}}{{../coupon.code}}{{@root.shop.nam}}{{/each}}
{{#each customer.categories_bought as |cat i|}}{{cat.x}}{{i}}{{/each}}
{{#if coupon}}{{else if delivery.late_dys}}z{{/if}}
";
    assert_eq!(
        issues(&[("notes/n.hbs", source)]),
        [
            "notes/n.hbs:1:7: unknown variable customer.frist_name, did you mean \
             customer.first_name?",
            "notes/n.hbs:2:24: unknown variable nme, did you mean name?",
            "notes/n.hbs:3:17: unknown variable ulr, did you mean url?",
            "notes/n.hbs:4:15: unknown variable coupon.cod, did you mean coupon.code?",
            "notes/n.hbs:5:9: unknown variable order.totl, did you mean order.total?",
            "notes/n.hbs:6:30: unknown variable custmer, did you mean customer?",
            "notes/n.hbs:7:38: unknown variable @root.shop.nam, did you mean \
             @root.shop.name?",
            "notes/n.hbs:8:50: unknown variable cat.x: cat has no fields",
            "notes/n.hbs:9:25: unknown variable delivery.late_dys, did you mean \
             delivery.late_days?",
        ]
    );
}

#[test]
fn else_if_chains_are_positioned_at_their_own_else_tags() {
    let source = "{{#if coupon}}{{#if shop}}{{else if shop.nme}}{{/if}}{{else if delivery}}\
                  {{else if order.totl}}{{else}}{{custmer}}{{/if}}";
    assert_eq!(
        issues(&[("notes/e.hbs", source)]),
        [
            "notes/e.hbs:1:37: unknown variable shop.nme, did you mean shop.name?",
            "notes/e.hbs:1:84: unknown variable order.totl, did you mean order.total?",
            "notes/e.hbs:1:106: unknown variable custmer, did you mean customer?",
        ]
    );
}

#[test]
fn item_fields_parent_scope_root_and_data_variables_resolve() {
    let source = "\
{{#each order.items}}{{@index}} {{sku}} {{this.name}} {{quantity}} {{../order.id}} {{@root.shop.name}}{{#if @first}}first{{/if}}{{/each}}
{{#each coupons as |c|}}{{c.code}} {{money c.amount c.currency}} {{date c.expires_on}}{{else}}none{{/each}}
{{#each customer.categories_bought}}{{this}}{{#unless @last}}, {{/unless}}{{/each}}
{{#with customer as |who|}}{{who.first_name}} {{first_name}}{{/with}}
{{#if (gt (len coupons) 1)}}many{{/if}} {{order.items.0.sku}} {{lookup order.items 0}}
{{#each coupon}}{{@key}}{{/each}} {{coupon.title}}
";
    let templates = load(&[("notes/ok.hbs", source)]);
    let text = templates
        .render_note("ok", &ctx("Ana", "en"))
        .expect("renders");
    assert!(
        text.starts_with("0 B-1 A Book 1 O-1001 Shopfirst\n"),
        "{text}"
    );
    assert!(
        text.contains("THANKS-7KQ2M9XW4PJR €10.00 Jan 19, 2027"),
        "{text}"
    );
    assert!(text.contains("books, tea\nAna Ana\n"), "{text}");
}

#[test]
fn members_of_lists_and_plain_values_are_reported() {
    let source = "{{order.items.name}}\n{{#with coupons}}{{code}}{{/with}}\n\
                  {{#each customer.categories_bought}}{{name}}{{/each}} {{shop.name.first}}";
    assert_eq!(
        issues(&[("notes/l.hbs", source)]),
        [
            "notes/l.hbs:1:3: unknown variable order.items.name: order.items is a list; go \
             through it with {{#each order.items}}",
            "notes/l.hbs:2:20: unknown variable code: this is a list; go through it with \
             {{#each this}}",
            "notes/l.hbs:3:39: unknown variable name: this has no fields",
            "notes/l.hbs:3:57: unknown variable shop.name.first: shop.name has no fields",
        ]
    );
}

#[test]
fn an_unknown_helper_is_reported_in_expressions_blocks_and_subexpressions() {
    let source = "Hello\n  {{monee order.total order.currency}}\n{{#iff coupon}}x{{/iff}}\n{{#if (eqq 1 2)}}y{{/if}} {{shout customer.first_name}}";
    assert_eq!(
        issues(&[("notes/h.hbs", source)]),
        [
            "notes/h.hbs:2:5: unknown helper \"monee\", did you mean \"money\"?",
            "notes/h.hbs:3:4: unknown helper \"iff\", did you mean \"if\"?",
            "notes/h.hbs:4:8: unknown helper \"eqq\", did you mean \"eq\"?",
            "notes/h.hbs:4:29: unknown helper \"shout\"",
        ]
    );
}

#[test]
fn money_and_date_need_their_arguments() {
    assert_eq!(
        issues(&[("notes/a.hbs", "{{money order.total}}\n{{date}}")]),
        [
            "notes/a.hbs:1:3: helper \"money\" takes 2 arguments (amount currency), found \
             1 argument(s)",
            "notes/a.hbs:2:3: helper \"date\" takes 1 argument (a date), found 0 \
             argument(s)",
        ]
    );
}

#[test]
fn unsubscribe_url_belongs_to_e_mails_only() {
    assert_eq!(
        issues(&[("notes/n.hbs", "Bye: {{unsubscribe_url}}")]),
        [
            "notes/n.hbs:1:8: unknown variable unsubscribe_url: it is only given to e-mails, \
          not notes"
        ]
    );
    let files = email(
        "bye",
        "Bye {{customer.first_name}}",
        "<a href=\"{{unsubscribe_url}}\">Unsubscribe</a>",
    );
    assert!(issues(&refs(&files)).is_empty());
}

#[test]
fn an_e_mail_without_subject_or_html_is_reported() {
    assert_eq!(
        issues(&[
            ("emails/a/html.hbs", "<p>Hi</p>"),
            ("emails/b/subject.hbs", "Hi"),
            ("emails/b/text.hbs", "Hi"),
            ("emails/c/subject.hbs", "Hi"),
            ("emails/c/html.hbs", "Hi"),
            ("emails/c/body.hbs", "Hi"),
            ("emails/stray.hbs", "Hi"),
        ]),
        [
            "emails/a/subject.hbs:1:1: missing: the e-mail \"a\" needs subject.hbs and \
             html.hbs",
            "emails/b/html.hbs:1:1: missing: the e-mail \"b\" needs subject.hbs and \
             html.hbs",
            "emails/c/body.hbs:1:1: unknown e-mail part: an e-mail folder holds \
             subject.hbs, html.hbs and optionally text.hbs",
            "emails/stray.hbs:1:1: an e-mail is a folder: emails/NAME/ with subject.hbs, \
             html.hbs and optionally text.hbs",
        ]
    );
}

#[test]
fn html_parts_may_not_turn_escaping_off() {
    let mut files = email(
        "e",
        "{{{customer.first_name}}}",
        "<p>{{{customer.first_name}}}</p>",
    )
    .to_vec();
    files.push((
        "emails/e/text.hbs".into(),
        "{{{customer.first_name}}}".into(),
    ));
    assert_eq!(
        issues(&refs(&files)),
        [
            "emails/e/html.hbs:1:4: {{{ }}} turns HTML escaping off; write {{ }} so every \
          value is escaped"
        ]
    );
}

#[test]
fn data_variables_outside_each_and_climbing_above_the_top_are_reported() {
    assert_eq!(
        issues(&[(
            "notes/n.hbs",
            "{{@index}}\n{{#with shop}}{{@first}}{{../../order.id}}{{/with}}\n{{#each customer.first_name}}x{{/each}}\n{{> footer}}"
        )]),
        [
            "notes/n.hbs:1:3: @index is only defined inside {{#each}}",
            "notes/n.hbs:2:17: @first is only defined inside {{#each}}",
            "notes/n.hbs:2:27: ../../order.id climbs above the top of the template with ../",
            "notes/n.hbs:3:9: #each needs a list, but customer.first_name is not one",
            "notes/n.hbs:4:1: partials ({{> ...}}) are not supported: each template stands \
             alone",
        ]
    );
}
