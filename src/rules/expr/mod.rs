//! Conditions: ZEN expressions checked against the variables of docs/REFERENCE.md §2 and compiled
//! once.

use zen_expression::Expression;
use zen_expression::expression::Standard;
use zen_expression::intellisense::IntelliSense;
use zen_expression::intellisense::diagnostic::Severity;
use zen_expression::variable::VariableType as T;

use crate::suggest::{Likeness::SharedStart, closest};

mod variables;

pub use variables::context_type;
use variables::known_paths;

/// Every variable a condition may read, as dotted paths (`order.total`), for completion.
pub fn variable_paths() -> Vec<String> {
    known_paths(&context_type(true))
}

/// Where in a condition's text a finding is, as a byte range of that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprFinding {
    pub span: (usize, usize),
    pub message: String,
    pub warning: bool,
}

fn push_err(findings: &mut Vec<ExprFinding>, span: (usize, usize), message: String) {
    findings.push(ExprFinding {
        span,
        message,
        warning: false,
    });
}

/// The result of checking one condition.
pub struct ExprCheck {
    pub findings: Vec<ExprFinding>,
    /// The variable paths the condition reads (`customer.orders_count`, `order.items`).
    pub reads: Vec<String>,
}

const NULLABLE: &[&str] = &[
    "customer.days_since_previous_order",
    "customer.median_days_between_orders",
    "customer.nps_group",
    "customer.nps",
    "customer.birthday_month",
    "order.channel",
    "order.shipping.city",
    "order.shipping.postcode",
];

fn regex(pattern: &str) -> Option<regex::Regex> {
    regex::Regex::new(pattern).ok()
}

/// Replaces the contents of string literals with spaces, keeping offsets, so that searches for
/// names and calls do not look inside strings.
fn blank_strings(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut quote: Option<char> = None;
    for ch in source.chars() {
        match quote {
            Some(q) if ch == q => {
                quote = None;
                out.push(ch);
            }
            Some(_) => out.extend(std::iter::repeat_n(' ', ch.len_utf8())),
            None => {
                if ch == '\'' || ch == '"' || ch == '`' {
                    quote = Some(ch);
                }
                out.push(ch);
            }
        }
    }
    out
}

fn path_text(path: &[std::rc::Rc<str>]) -> String {
    path.iter()
        .map(|p| p.as_ref())
        .collect::<Vec<_>>()
        .join(".")
}

/// Checks a condition against the variables it may read (see [`context_type`]).
/// `segments` gives the segment ids defined before this condition and all segment ids.
pub fn check(
    source: &str,
    ty: &T,
    segments: Option<(&[&str], &std::collections::HashSet<String>)>,
) -> ExprCheck {
    let mut findings = Vec::new();
    if source.trim().is_empty() {
        push_err(
            &mut findings,
            (0, 0),
            "empty condition: write an expression such as customer.orders_count == 1".into(),
        );
        return ExprCheck {
            findings,
            reads: Vec::new(),
        };
    }
    // Before the parser and the type checker, which recurse once per nesting level.
    if let Some(v) = super::limits::check_expression(source) {
        push_err(&mut findings, (v.offset, v.offset + 1), v.message);
        return ExprCheck {
            findings,
            reads: Vec::new(),
        };
    }
    let blank = blank_strings(source);

    // Wall-clock and random functions would make a decision depend on more than its inputs.
    let forbidden = [
        (r"\brand\s*\(", "rand() reads randomness"),
        (
            r"\bd\s*\(\s*\)",
            "d() without an argument reads the wall clock",
        ),
        (
            r"\b(date|time)\s*\(\s*(\)|'now'|\x22now\x22)",
            "date()/time() of 'now' reads the wall clock",
        ),
        (r"\bnow\s*\(", "now() reads the wall clock"),
        (
            r"\.\s*(isToday|isYesterday|isTomorrow)\s*\(",
            "this method compares with the wall clock",
        ),
    ];
    for (pattern, why) in forbidden {
        // The 'now' argument lives inside a string literal, so that one pattern reads the source.
        let haystack = if pattern.contains("now'") {
            source
        } else {
            blank.as_str()
        };
        if let Some(m) = regex(pattern).and_then(|r| r.find(haystack)) {
            push_err(
                &mut findings,
                (m.start(), m.end()),
                format!(
                    "{why}: a decision must depend on its inputs only (use decision.date, decision.month or decision.weekday)"
                ),
            );
        }
    }

    // Unbalanced brackets, found here because the parser reports them as "incomplete" at 0.
    let mut open: Vec<(char, usize)> = Vec::new();
    let mut bracket_error = false;
    for (i, ch) in blank.char_indices() {
        match ch {
            '(' | '[' => open.push((ch, i)),
            ')' | ']' => {
                let want = if ch == ')' { '(' } else { '[' };
                if open.pop().map(|(o, _)| o) != Some(want) {
                    push_err(
                        &mut findings,
                        (i, i + 1),
                        format!("`{ch}` has no matching `{want}` in this expression"),
                    );
                    bracket_error = true;
                    break;
                }
            }
            _ => {}
        }
    }
    if !bracket_error && let Some((ch, at)) = open.last() {
        push_err(
            &mut findings,
            (*at, at + 1),
            format!("`{ch}` is never closed in this expression"),
        );
        bracket_error = true;
    }
    if bracket_error {
        return ExprCheck {
            findings,
            reads: Vec::new(),
        };
    }

    let mut is = IntelliSense::new().with_strict(true);
    let analysis = is.analyze(source, ty);

    // Every path read, for naming variables in messages and checking roots ourselves.
    let mut reads: Vec<(String, (usize, usize), bool)> = Vec::new();
    fn walk(
        r: &zen_expression::intellisense::ReadDependency,
        out: &mut Vec<(String, (usize, usize), bool)>,
    ) {
        use zen_expression::intellisense::ReadDependency as R;
        match r {
            R::Direct {
                path,
                span,
                via_index,
            } => out.push((
                path_text(path),
                (span.0 as usize, span.1 as usize),
                *via_index,
            )),
            R::Unresolved { path, span } => {
                out.push((path_text(path), (span.0 as usize, span.1 as usize), false))
            }
            R::Iteration {
                collection,
                span,
                reads,
                ..
            } => {
                out.push((
                    path_text(collection),
                    (span.0 as usize, span.1 as usize),
                    false,
                ));
                for inner in reads {
                    walk(inner, out);
                }
            }
        }
    }
    for r in &analysis.reads {
        walk(r, &mut reads);
    }
    let roots: Vec<String> = match ty {
        T::Object(fields) => {
            let mut names: Vec<String> = fields.borrow().keys().map(|k| k.to_string()).collect();
            names.sort();
            names
        }
        _ => Vec::new(),
    };
    let all_paths = known_paths(ty);
    let mut reported_unknown = false;
    for (path, span, _) in &reads {
        let root = path.split('.').next().unwrap_or("");
        if !roots.iter().any(|r| r == root) {
            let msg = if root == "delivery" {
                "delivery is only known in follow-ups on order.delivered".to_string()
            } else {
                format!(
                    "unknown variable {path} (a condition reads {})",
                    roots.join(", ")
                )
            };
            push_err(&mut findings, *span, msg);
            reported_unknown = true;
        }
    }

    let mut nullable_warned = std::collections::HashSet::new();
    for d in &analysis.diagnostics {
        let span = (d.span.0 as usize, d.span.1 as usize);
        if d.severity != Severity::Error {
            continue;
        }
        if d.code == Some("type.unknown-member") {
            // Name the whole path the marketer wrote, and the closest valid one.
            let read = reads
                .iter()
                .find(|(_, s, _)| s.0 <= span.0 && span.0 < s.1.max(s.0 + 1));
            let (path, at) = match read {
                Some((p, s, _)) => (p.clone(), *s),
                None => (d.args.get("name").cloned().unwrap_or_default(), span),
            };
            let hint = closest(&path, all_paths.iter().map(String::as_str), SharedStart)
                .map(|s| format!(", did you mean {s}?"))
                .unwrap_or_default();
            push_err(&mut findings, at, format!("unknown variable {path}{hint}"));
            reported_unknown = true;
            continue;
        }
        if d.message.contains("cannot be applied to types") && d.message.contains('?') {
            let text = source.get(span.0..span.1).unwrap_or(source);
            for path in NULLABLE.iter().filter(|p| text.contains(*p)) {
                let checked = regex(&format!(
                    r"{}\s*(!=|==)\s*null|null\s*(!=|==)\s*{}",
                    regex::escape(path),
                    regex::escape(path)
                ))
                .is_some_and(|r| r.is_match(source));
                if !checked && nullable_warned.insert(*path) {
                    findings.push(ExprFinding {
                        span,
                        message: format!(
                            "{path} can be null and is compared without a null check; a null here is an evaluation error that counts as false (write `{path} != null and ...`)"
                        ),
                        warning: true,
                    });
                }
            }
            continue;
        }
        if reported_unknown
            && d.source == zen_expression::intellisense::diagnostic::DiagnosticSource::TypeCheck
        {
            continue;
        }
        findings.push(ExprFinding {
            span,
            message: plain_message(source, d),
            warning: false,
        });
    }

    let returns_bool = matches!(&analysis.return_type, T::Bool | T::Any)
        || matches!(&analysis.return_type, T::Nullable(inner) if matches!(inner.as_ref(), T::Bool | T::Any));
    if !returns_bool && !findings.iter().any(|f| !f.warning) {
        let assignment = regex(r"[^=!<>]=[^=]").is_some_and(|r| r.is_match(&blank));
        let message = if assignment {
            "`=` is an assignment in ZEN, not a comparison: write `==`".to_string()
        } else {
            format!(
                "a condition must be true or false, this one gives {}",
                analysis.return_type
            )
        };
        findings.push(ExprFinding {
            span: (0, source.len()),
            message,
            warning: false,
        });
    }

    if let Some((before, all)) = segments
        && let Some(r) = regex(
            r#"'([^']*)'\s+in\s+segments\b|"([^"]*)"\s+in\s+segments\b|contains\(\s*segments\s*,\s*'([^']*)'"#,
        )
    {
        for cap in r.captures_iter(source) {
            let Some(m) = cap.get(1).or_else(|| cap.get(2)).or_else(|| cap.get(3)) else {
                continue;
            };
            let name = m.as_str();
            if before.contains(&name) {
                continue;
            }
            let message = if all.contains(name) {
                format!(
                    "segment {name:?} is defined later: segments are evaluated in file order, so it is not known yet here"
                )
            } else {
                let hint = closest(name, all.iter().map(String::as_str), SharedStart)
                    .map(|s| format!(", did you mean {s:?}?"))
                    .unwrap_or_default();
                format!("unknown segment {name:?}{hint}")
            };
            findings.push(ExprFinding {
                span: (m.start(), m.end()),
                message,
                warning: false,
            });
        }
    }
    ExprCheck {
        findings,
        reads: reads.into_iter().map(|(p, _, _)| p).collect(),
    }
}

/// The parser's message in a marketer's words, without its internal offsets.
fn plain_message(source: &str, d: &zen_expression::intellisense::diagnostic::Diagnostic) -> String {
    let text = source
        .get(d.span.0 as usize..d.span.1 as usize)
        .unwrap_or("")
        .trim();
    if d.code == Some("expr.missing-value") {
        return match d.args.get("operator") {
            Some(op) => format!("the expression ends too early: a value is missing after `{op}`"),
            None => "the expression ends too early: a value is missing".to_string(),
        };
    }
    if d.message.starts_with("Unexpected token") && !text.is_empty() {
        return format!("unexpected `{text}` here");
    }
    if d.message == "Incomplete expression" {
        return "incomplete expression: something is missing or left over".to_string();
    }
    // Drop the parser's own "at (a, b)" offsets: the finding is positioned already.
    let cleaned = regex(r"\s*at \(\d+, \d+\)")
        .map(|r| r.replace_all(&d.message, "").into_owned())
        .unwrap_or_default();
    format!("expression: {}", cleaned.trim_end_matches('.'))
}

/// Compiles a condition. Any text is safe to pass: one beyond the limits of
/// [`super::limits`] is refused before the recursive parser sees it.
pub fn compile(source: &str) -> Result<Expression<Standard>, String> {
    if let Some(v) = super::limits::check_expression(source) {
        return Err(v.message);
    }
    zen_expression::compile_expression(source).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(s: &str) -> Vec<String> {
        check(s, &context_type(false), None)
            .findings
            .into_iter()
            .filter(|f| !f.warning)
            .map(|f| f.message)
            .collect()
    }
    fn warnings(s: &str) -> Vec<String> {
        check(s, &context_type(false), None)
            .findings
            .into_iter()
            .filter(|f| f.warning)
            .map(|f| f.message)
            .collect()
    }

    #[test]
    fn valid_conditions_pass() {
        for s in [
            "customer.orders_count == 1",
            "'books' in order.categories",
            "some(order.items, #.category == 'fragrance' and #.unit_price > 30)",
            "customer.nps_group == 'passive'",
            "'vip' in segments and customer.birthday_month == decision.month",
            "customer.days_since_previous_order != null and customer.days_since_previous_order > 3",
            "order.total >= 50",
        ] {
            assert_eq!(errors(s), Vec::<String>::new(), "{s}");
            assert_eq!(warnings(s), Vec::<String>::new(), "{s}");
        }
    }

    #[test]
    fn misspelt_member_is_named_with_a_suggestion() {
        let e = errors("customer.ordrs_count == 1");
        assert_eq!(
            e,
            vec!["unknown variable customer.ordrs_count, did you mean customer.orders_count?"]
        );
    }

    #[test]
    fn unknown_root_is_an_error() {
        let f = check("foo.bar == 1", &context_type(false), None).findings;
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message.starts_with("unknown variable foo.bar"),
            "{}",
            f[0].message
        );
        assert_eq!(f[0].span.0, 0);
    }

    #[test]
    fn assignment_is_not_a_comparison() {
        let e = errors("customer.orders_count = 1");
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("assignment"), "{e:?}");
        assert!(errors("customer.orders_count + 1")[0].contains("must be true or false"));
    }

    #[test]
    fn clock_and_randomness_are_rejected() {
        assert!(errors("rand(10) > 3")[0].contains("randomness"));
        assert!(errors("d() > d('2026-01-01')")[0].contains("wall clock"));
        assert!(errors("d('2026-01-01') < d('2026-02-01')").is_empty());
        assert!(errors("'rand(' in order.categories").is_empty());
    }

    #[test]
    fn nullable_comparisons_warn() {
        let w = warnings("customer.days_since_previous_order > 3");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(errors("customer.days_since_previous_order > 3").is_empty());
    }

    #[test]
    fn parse_errors_are_positioned() {
        let f = check("customer.orders_count ==", &context_type(false), None).findings;
        assert!(!f.is_empty() && !f[0].warning);
        assert_eq!(f[0].span.0, 24);
    }

    #[test]
    fn segments_must_be_defined_before() {
        let all: std::collections::HashSet<String> = ["a".to_string(), "b".to_string()].into();
        let f = check(
            "'b' in segments",
            &context_type(false),
            Some((&["a"], &all)),
        )
        .findings;
        assert!(f[0].message.contains("defined later"), "{:?}", f);
        let f = check(
            "'c' in segments",
            &context_type(false),
            Some((&["a"], &all)),
        )
        .findings;
        assert!(f[0].message.contains("unknown segment"), "{:?}", f);
    }

    #[test]
    fn delivery_only_on_delivered() {
        assert!(errors("delivery.late_days > 2")[0].contains("order.delivered"));
        assert!(
            check("delivery.late_days > 2", &context_type(true), None)
                .findings
                .is_empty()
        );
    }
}
