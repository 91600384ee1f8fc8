//! The small typed values every part of a rule file is built from: currencies, amounts,
//! percentages, durations, modes and conditions, each checked where it is written.

use super::*;

pub(super) fn eur() -> Currency {
    Currency::try_from("EUR".to_string()).unwrap_or_else(|_| unreachable_currency())
}

#[cold]
fn unreachable_currency() -> Currency {
    // "EUR" is in every ISO 4217 table; this path only exists to avoid a panic on input.
    Currency::try_from("XXX".to_string()).unwrap_or_else(|_| std::process::abort())
}

pub(super) fn currency_at(
    src: &Source,
    s: &Spanned<String>,
    c: &mut Collector,
) -> Option<Currency> {
    match s.get_ref().parse::<Currency>() {
        Ok(cur) => Some(cur),
        Err(e) => {
            c.error(src, &s.span(), e);
            None
        }
    }
}

pub(super) fn money_map(
    src: &Source,
    map: &Spanned<std::collections::BTreeMap<String, Spanned<String>>>,
    what: &str,
    c: &mut Collector,
) -> std::collections::BTreeMap<Currency, Decimal> {
    let mut out = std::collections::BTreeMap::new();
    for (code, amount) in map.get_ref() {
        let cur = match code.parse::<Currency>() {
            Ok(cur) => cur,
            Err(e) => {
                c.error(src, &amount.span(), format!("{what}: {e}"));
                continue;
            }
        };
        match rule_amount(amount.get_ref()) {
            Ok(d) if d >= Decimal::ZERO => {
                out.insert(cur, d);
            }
            Ok(_) => c.error(
                src,
                &amount.span(),
                format!("{what}: an amount must not be negative"),
            ),
            Err(e) => c.error(src, &amount.span(), format!("{what}: {e}")),
        }
    }
    out
}

pub(super) fn mode_at(
    src: &Source,
    m: &Option<Spanned<String>>,
    allow_shadow: bool,
    c: &mut Collector,
) -> Mode {
    match m.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("live", _)) => Mode::Live,
        Some(("shadow", _)) if allow_shadow => Mode::Shadow,
        Some(("off", _)) => Mode::Off,
        Some((other, span)) => {
            let expected = if allow_shadow {
                "live, shadow or off"
            } else {
                "live or off"
            };
            c.error(
                src,
                &span,
                format!("bad mode {other:?}: expected {expected}"),
            );
            Mode::Live
        }
    }
}

pub(super) fn percent_at(src: &Source, p: &Option<Spanned<String>>, c: &mut Collector) -> u16 {
    match p {
        None => 0,
        Some(p) => parse_percent(p.get_ref()).unwrap_or_else(|e| {
            c.error(src, &p.span(), format!("holdout: {e}"));
            0
        }),
    }
}

pub(super) fn duration_at(
    src: &Source,
    d: &Spanned<String>,
    what: &str,
    c: &mut Collector,
) -> Option<Duration> {
    match parse_duration(d.get_ref()) {
        Ok(d) => Some(d),
        Err(e) => {
            c.error(src, &d.span(), format!("{what}: {e}"));
            None
        }
    }
}

/// Checks and compiles one condition, positioning every finding inside the file.
pub(super) fn condition(
    src: &Source,
    when: &Spanned<String>,
    ty: &zen_expression::variable::VariableType,
    segments: Option<(&[&str], &HashSet<String>)>,
    c: &mut Collector,
) -> Option<Condition> {
    let text = when.get_ref();
    let base = src.string_content_start(&when.span());
    if let Some(v) = super::limits::check_expression(text) {
        c.at(src, base + v.offset, false, format!("when: {}", v.message));
        return None;
    }
    // zen-expression is third-party code fed the marketer's text: a panic in it must be a
    // finding, not a crashed `validate` (the reload thread has its own guard as well).
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        expr::check(text, ty, segments)
    }));
    let Ok(check): Result<ExprCheck, _> = checked else {
        c.at(
            src,
            base,
            false,
            "when: the expression parser failed on this condition",
        );
        return None;
    };
    for path in &check.reads {
        c.needs.add(path);
    }
    let mut failed = false;
    for f in &check.findings {
        failed |= !f.warning;
        c.at(src, base + f.span.0, f.warning, f.message.clone());
    }
    if failed {
        return None;
    }
    let compiled = std::panic::catch_unwind(|| expr::compile(text))
        .unwrap_or_else(|_| Err("the expression compiler failed on it".to_string()));
    match compiled {
        Ok(expr) => Some(Condition {
            source: text.clone(),
            expr,
        }),
        Err(e) => {
            c.at(
                src,
                base,
                false,
                format!("expression does not compile: {e}"),
            );
            None
        }
    }
}

/// An amount in a rule file: exact, with at most 4 decimals (counters of money are kept in
/// 1/10000 units so that both databases compare them exactly).
pub(super) fn rule_amount(s: &str) -> Result<Decimal, String> {
    let d = parse_amount(s)?;
    if d.normalize().scale() > 4 {
        return Err(format!("{s:?} has more than 4 decimals"));
    }
    Ok(d)
}
