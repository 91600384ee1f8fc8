//! The depth and size limits of conditions and templates, through the library:
//! - the worst shapes the limits allow run through every recursive pass (parse, type check,
//!   compile, evaluate; parse, check, render) on a thread of 2 MiB, the stack Rust gives a
//!   spawned thread, so the limits are what keeps each thread's stack from overflowing;
//! - the scanners never panic, agree with a plain definition of bracket depth, and never count
//!   less nesting than the handlebars parser builds;
//! - the example rules and templates are far within the limits.

use handlebars::template::{Parameter, Template, TemplateElement};
use packwell::render::limits::{MAX_TEMPLATE_DEPTH, template_depth};
use packwell::render::{TemplateKind, check_template};
use packwell::rules::expr;
use packwell::rules::limits::{MAX_EXPR_DEPTH, Violation, measure_expression};
use proptest::prelude::*;
use std::path::Path;

const SMALL_STACK: usize = 2 * 1024 * 1024;

/// Runs `f` on a thread with `stack` bytes of stack; a stack overflow aborts the test binary,
/// which fails the test run.
fn on_stack<T: Send + 'static>(stack: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(f)
        .expect("thread")
        .join()
        .expect("no panic")
}

fn chain(term: &str, op: &str, n: usize) -> String {
    vec![term; n].join(op)
}

/// Conditions at the limits, each the deepest of its kind: unary chains, left- and
/// right-leaning operator chains, member and index chains, brackets, closures.
fn worst_conditions() -> Vec<String> {
    let parens = |inner: &str| format!("{}{inner}{}", "(".repeat(64), ")".repeat(64));
    vec![
        format!("{}true", "!".repeat(1023)),
        format!("{}1 > 0", "-".repeat(1022)),
        format!("{} > 0", chain("1", "+", 1024)),
        chain("true", " and ", 1024),
        format!("{} > 0", chain("1", "^", 1024)),
        format!("{}true", "true?true:".repeat(511)),
        format!("customer{} == 1", ".a".repeat(1022)),
        format!("order.items{} == 1", "[0]".repeat(1022)),
        format!("{}true{}", "some(order.items,".repeat(63), ")".repeat(63)),
        format!("len({}1{}) > 0", "[".repeat(63), "]".repeat(63)),
        parens(&format!("{} > 0", chain("1", "+", 900))),
        parens(&format!("{}true", "!".repeat(950))),
        format!(
            "order.shipping.postcode in [{}]",
            chain("'10115'", ",", 2000)
        ),
    ]
}

#[test]
fn the_worst_conditions_within_the_limits_run_on_a_2_mib_stack() {
    for condition in worst_conditions() {
        let m = measure_expression(&condition).expect("within the limits");
        assert!(m.depth <= MAX_EXPR_DEPTH);
        let text = condition.clone();
        let compiled = on_stack(SMALL_STACK, move || {
            let check = expr::check(&text, &expr::context_type(true), None);
            drop(check);
            let compiled = expr::compile(&text);
            if let Ok(e) = &compiled {
                let _ = e.evaluate(zen_expression::Variable::Null);
            }
            compiled.is_ok()
        });
        assert!(compiled, "{}...", &condition[..condition.len().min(60)]);
    }
}

#[test]
fn one_step_past_a_limit_is_refused_before_the_parser() {
    let past = [
        format!("{}true{}", "(".repeat(65), ")".repeat(65)),
        format!("{}true", "!".repeat(1025)),
        chain("true", " and ", 1026),
        format!("order.id in [{}]", chain("'a'", ",", 2100)),
    ];
    for condition in past {
        let check = expr::check(&condition, &expr::context_type(false), None);
        assert_eq!(check.findings.len(), 1);
        assert!(check.findings[0].message.contains("(limit "));
        let err = expr::compile(&condition).expect_err("refused");
        assert!(err.contains("(limit "), "{err}");
    }
}

/// Templates at the limit, each the deepest of its kind, with what rendering gives.
fn worst_templates() -> Vec<(String, &'static str)> {
    let n = MAX_TEMPLATE_DEPTH;
    vec![
        (
            format!(
                "{}{{{{locale}}}}{}",
                "{{#if locale}}".repeat(n),
                "{{/if}}".repeat(n)
            ),
            "en",
        ),
        (
            format!(
                "{{{{#unless {}locale{}}}}}yes{{{{/unless}}}}",
                "(not ".repeat(n - 1),
                ")".repeat(n - 1)
            ),
            "yes",
        ),
        (
            format!(
                "{{{{#if locale}}}}a{}b{{{{/if}}}}",
                "{{else if locale}}x".repeat(n - 1)
            ),
            "a",
        ),
        (
            format!(
                "{{{{#each {}1{}}}}}z{{{{/each}}}}",
                "[".repeat(n - 1),
                "]".repeat(n - 1)
            ),
            "z",
        ),
    ]
}

#[test]
fn the_worst_templates_within_the_limits_check_and_render_on_a_2_mib_stack() {
    for (template, rendered) in worst_templates() {
        assert!(template_depth(&template).expect("within the limits") <= MAX_TEMPLATE_DEPTH);
        let text = template.clone();
        let out = on_stack(SMALL_STACK, move || {
            let issues = check_template(Path::new("n.hbs"), &text, TemplateKind::Note);
            assert!(issues.is_empty(), "{issues:?}");
            let templates = packwell::render::limits::note_from_text("n", &text).expect("valid");
            templates
                .render_note("n", &serde_json::json!({"locale": "en"}))
                .expect("renders")
        });
        assert_eq!(out, rendered, "{template}");
    }
}

#[test]
fn a_template_past_the_limit_is_refused_before_the_parser() {
    let n = MAX_TEMPLATE_DEPTH + 1;
    let deep = format!("{}x{}", "{{#if locale}}".repeat(n), "{{/if}}".repeat(n));
    let issues = check_template(Path::new("n.hbs"), &deep, TemplateKind::Html);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!((issues[0].line, issues[0].col), (1, 32 * 14 + 1));
    assert!(issues[0].message.contains("(limit 32)"));
}

/// Text the scan cannot follow (a string that does not end; a partial's name quoted in a way
/// it may read otherwise than handlebars) must not hide the nesting after it: the template is
/// refused, on a small stack, without the parser seeing it.
#[test]
fn nesting_after_a_tag_the_scan_cannot_read_is_refused() {
    let deep = "{{#if a}}".repeat(25_000);
    for head in ["{{name \"no end}}", "{{> 'x\\\\'}}{{'}}"] {
        let text = format!("{head}{deep}");
        let issues = on_stack(2 * 1024 * 1024, move || {
            check_template(Path::new("n.hbs"), &text, TemplateKind::Note)
        });
        assert_eq!(issues.len(), 1, "{head}: {issues:?}");
        let m = &issues[0].message;
        assert!(
            m.contains("cannot be read") || m.contains("(limit 32)"),
            "{head}: {m}"
        );
    }
    let text = format!("{{{{name \"no end}}}}{deep}");
    let issues = check_template(Path::new("n.hbs"), &text, TemplateKind::Note);
    assert!(issues[0].message.contains("cannot be read"), "{issues:?}");
    // A short broken tag is still left to handlebars, which says where it fails.
    let issues = check_template(Path::new("n.hbs"), "Hi {{name", TemplateKind::Note);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert!(!issues[0].message.contains("cannot be read"), "{issues:?}");
}

#[test]
fn the_examples_are_far_within_the_limits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut conditions = 0;
    for entry in std::fs::read_dir(root.join("rules")).expect("rules") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let value: toml::Value = toml::from_str(&text).expect("toml");
        for table in ["segment", "rule", "followup"] {
            for item in value
                .get(table)
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(when) = item.get("when").and_then(|w| w.as_str()) {
                    let m = measure_expression(when).expect("within");
                    assert!(
                        m.depth <= 3 && m.tokens <= 40 && m.operators <= 15,
                        "{when}: {m:?}"
                    );
                    conditions += 1;
                }
            }
        }
    }
    assert!(conditions > 5);
    let mut templates = 0;
    let mut dirs = vec![root.join("templates")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("templates") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "hbs") {
                let text = std::fs::read_to_string(&path).expect("read");
                assert!(
                    template_depth(&text).expect("within") <= 3,
                    "{}",
                    path.display()
                );
                templates += 1;
            }
        }
    }
    assert!(templates > 5);
}

// ---------------------------------------------------------------------------------------------
// The scanners against plain definitions

/// Bracket depth as a plain definition: `(`, `[`, `{` open, `)`, `]`, `}` close (never below
/// zero); where the depth first passes the limit.
fn plain_depth(text: &str) -> Result<usize, usize> {
    let (mut depth, mut max) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_EXPR_DEPTH {
                    return Err(i);
                }
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_condition_scanner_agrees_on_bracket_strings(
        text in proptest::string::string_regex("[()\\[\\]{} ab1+.]{0,300}").expect("regex")
            .prop_map(|s| if s.len() % 3 == 0 { format!("{}{s}", "(".repeat(60)) } else { s })
    ) {
        match (measure_expression(&text), plain_depth(&text)) {
            (Ok(m), Ok(max)) => prop_assert_eq!(m.depth, max),
            (Err(Violation { offset, message }), Err(at)) => {
                prop_assert_eq!(offset, at);
                prop_assert!(message.contains("levels deep"));
            }
            (Err(v), Ok(_)) => prop_assert!(!v.message.contains("levels deep"), "{:?}", v),
            (Ok(m), Err(at)) => prop_assert!(false, "missed depth at {}: {:?}", at, m),
        }
    }

    #[test]
    fn the_condition_scanner_never_panics_and_points_at_characters(text in any::<String>()) {
        if let Err(v) = measure_expression(&text) {
            prop_assert!(text.is_char_boundary(v.offset));
        }
        let _ = expr::check(&text, &expr::context_type(false), None);
    }

    #[test]
    fn the_template_scanner_never_panics_and_points_at_characters(text in any::<String>()) {
        if let Err(v) = template_depth(&text) {
            prop_assert!(text.is_char_boundary(v.offset) || v.offset == 0);
        }
    }
}

/// Tags that parse on their own, some with what hides tags from the parser: strings, path keys,
/// literals, comments, raw blocks, escapes.
const WHOLE: &[&str] = &[
    "x",
    " ",
    "\n",
    "{{x}}",
    "{{f (g x)}}",
    "{{f \"}}{{/if}}\"}}",
    "{{f '{{#if a}}'}}",
    "{{x.[a\"b]}}",
    "{{lookup this \"]\"}}",
    "{{f [\"]\", 1]}}",
    "{{f {\"k\": \"}}\"}}}",
    "{{!-- {{/if}} --}}",
    "{{! {{#if a}} }}",
    "{{{{raw}}}}{{/if}}{{#if a}}{{{{/raw}}}}",
    "\\{{/if}}",
    "\\\\",
    "{{{x}}}",
    "{{~x~}}",
    "{{> p}}",
    "{{f x=[[1]]}}",
    "{{f [x\"]}}",
    "{{lookup x [\"]\"]}}",
    "{{f (g [1, [2]])}}",
];

/// Pieces that break tags apart.
const NOISE: &[&str] = &[
    "{{#if a}}",
    "{{/if}}",
    "{{else}}",
    "{{else if b}}",
    "{{^}}",
    "}}",
    "{{",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    "(",
    ")",
    "\\",
    "{{!--",
    "--}}",
    "{{{{raw}}}}",
    "{{{{/raw}}}}",
    "~",
    ",",
    "this.[",
    "{{f [",
    "{{f {",
    "{{lookup x [",
    "{{#if (f ",
];

/// Block openers and the name that closes them.
const BLOCKS: &[(&str, &str)] = &[
    ("if a", "if"),
    ("each xs as |y|", "each"),
    ("with x", "with"),
    ("*inline \"p\"", "inline"),
    ("> p", "p"),
    ("if (f (g [1, {\"k\": [2]}]))", "if"),
    ("unless \"{{/unless}}\"", "unless"),
];

/// Templates with nested blocks and `{{else if}}` chains, and now and then a piece of noise.
fn templates() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        8 => proptest::sample::select(WHOLE),
        1 => proptest::sample::select(NOISE),
    ]
    .prop_map(str::to_owned);
    leaf.prop_recursive(10, 200, 6, |inner| {
        let body = proptest::collection::vec(inner, 0..4).prop_map(|v| v.concat());
        prop_oneof![
            body.clone(),
            (
                proptest::sample::select(BLOCKS),
                body.clone(),
                proptest::collection::vec(body.clone(), 0..3),
                proptest::option::of(body),
            )
                .prop_map(|((open, close), first, chains, otherwise)| {
                    let mut t = format!("{{{{#{open}}}}}{first}");
                    for c in chains {
                        t.push_str(&format!("{{{{else if c}}}}{c}"));
                    }
                    if let Some(o) = otherwise {
                        t.push_str(&format!("{{{{else}}}}{o}"));
                    }
                    t.push_str(&format!("{{{{/{close}}}}}"));
                    t
                }),
        ]
    })
}

fn tree_depth(t: &Template) -> usize {
    t.elements.iter().map(element_depth).max().unwrap_or(0)
}

fn element_depth(e: &TemplateElement) -> usize {
    use TemplateElement as E;
    match e {
        E::HtmlExpression(h) | E::Expression(h) => params_depth(&h.name, &h.params, &h.hash),
        E::HelperBlock(h) => {
            let inner = [&h.template, &h.inverse]
                .into_iter()
                .flatten()
                .map(tree_depth)
                .max()
                .unwrap_or(0);
            1 + inner.max(params_depth(&h.name, &h.params, &h.hash))
        }
        E::DecoratorExpression(d) | E::PartialExpression(d) => {
            params_depth(&d.name, &d.params, &d.hash)
        }
        E::DecoratorBlock(d) | E::PartialBlock(d) => {
            let inner = d.template.as_ref().map(tree_depth).unwrap_or(0);
            1 + inner.max(params_depth(&d.name, &d.params, &d.hash))
        }
        _ => 0,
    }
}

fn params_depth(
    name: &Parameter,
    params: &[Parameter],
    hash: &std::collections::HashMap<String, Parameter>,
) -> usize {
    std::iter::once(name)
        .chain(params)
        .chain(hash.values())
        .map(param_depth)
        .max()
        .unwrap_or(0)
}

fn param_depth(p: &Parameter) -> usize {
    match p {
        Parameter::Subexpression(s) => 1 + element_depth(s.as_element()),
        Parameter::Literal(v) => json_depth(v),
        _ => 0,
    }
}

fn json_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn the_template_scanner_never_counts_less_nesting_than_the_parser_builds() {
    // The parser and the walk above recurse; a big stack keeps a wrong scanner a failed
    // assertion rather than an abort.
    on_stack(256 * 1024 * 1024, || {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(4000));
        let parsed = std::sync::atomic::AtomicUsize::new(0);
        runner
            .run(&templates(), |text| {
                let Ok(scanned) = template_depth(&text) else {
                    return Ok(());
                };
                let compiled = std::panic::catch_unwind(|| Template::compile(&text));
                if let Ok(Ok(template)) = compiled {
                    parsed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let built = tree_depth(&template);
                    prop_assert!(
                        built <= scanned,
                        "{text:?}: built {built}, scanned {scanned}"
                    );
                }
                Ok(())
            })
            .expect("the scanner is sound");
        let parsed = parsed.into_inner();
        assert!(parsed > 1000, "only {parsed} generated templates parsed");
    });
}
