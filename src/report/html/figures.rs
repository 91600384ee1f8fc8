//! Figures as text: percentages, points, amounts, intervals and NPS as the page writes them
//! ("–" for one that is missing or not finite), and the verdict an interval gives.

use super::{DASH, escape};
use crate::report::{Amounts, Nps, RuleEffect, Uplift};

/// The value when it is a usable number.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// A signed number, with no "-0.0" for what rounds to zero.
pub(super) fn signed(v: f64, decimals: usize) -> String {
    let s = format!("{v:+.decimals$}");
    if s.chars().skip(1).all(|c| c == '0' || c == '.') {
        format!("{:.decimals$}", 0.0)
    } else {
        s
    }
}

/// A share (0..1) in percent.
pub(super) fn percent(v: Option<f64>) -> String {
    match v.and_then(finite) {
        Some(v) => format!("{:.1}%", v * 100.0),
        None => DASH.into(),
    }
}

/// A difference of shares in percentage points.
pub(super) fn points(v: f64) -> String {
    finite(v)
        .map(|v| format!("{} pts", signed(v * 100.0, 1)))
        .unwrap_or_else(|| DASH.into())
}

pub(super) fn decimal(v: Option<f64>, decimals: usize) -> String {
    match v.and_then(finite) {
        Some(v) => format!("{v:.decimals$}"),
        None => DASH.into(),
    }
}

/// Money per currency: "12.50 EUR, 3.00 USD", or "–" when there is none.
pub(super) fn money(amounts: &Amounts) -> String {
    if amounts.is_empty() {
        return DASH.into();
    }
    amounts
        .iter()
        .map(|(currency, amount)| {
            format!(
                "<span class=\"amount\">{} {}</span>",
                escape(amount),
                escape(currency)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn uplift_text(u: Option<&Uplift>) -> String {
    let Some(u) = u else {
        return DASH.into();
    };
    match (finite(u.absolute), finite(u.low), finite(u.high)) {
        (Some(a), Some(l), Some(h)) => format!(
            "<span class=\"nowrap\">{}</span> <span class=\"interval-text\">(95%: {} to {})</span>",
            points(a),
            signed(l * 100.0, 1),
            signed(h * 100.0, 1)
        ),
        (Some(a), _, _) => points(a),
        _ => DASH.into(),
    }
}

pub(super) fn relative_text(rule: &RuleEffect) -> String {
    let Some(r) = &rule.relative_uplift else {
        return DASH.into();
    };
    let pct = |v: f64| format!("{}%", signed(v * 100.0, 1));
    match (finite(r.value), finite(r.low), finite(r.high)) {
        (Some(v), Some(l), Some(h)) => format!(
            "<span class=\"nowrap\">{}</span> <span class=\"interval-text\">(95%: {} to {})</span>",
            pct(v),
            pct(l),
            pct(h)
        ),
        (Some(v), _, _) => pct(v),
        _ => DASH.into(),
    }
}

pub(super) fn nps_text(nps: &Option<Nps>) -> String {
    let Some(n) = nps else {
        return DASH.into();
    };
    format!(
        "mean {}, score {} ({} answers)",
        decimal(Some(n.mean), 1),
        finite(n.score)
            .map(|s| signed(s, 0))
            .unwrap_or_else(|| DASH.into()),
        n.answers
    )
}

/// What the uplift says, for the verdict and the colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The whole interval above zero.
    Up,
    /// The whole interval below zero.
    Down,
    /// The interval holds zero.
    Unclear,
    /// No uplift (a group is missing) or no usable interval.
    Unknown,
}

impl Verdict {
    pub(super) fn of(u: Option<&Uplift>) -> Verdict {
        match u.map(|u| (finite(u.low), finite(u.high))) {
            Some((Some(low), Some(_))) if low > 0.0 => Verdict::Up,
            Some((Some(_), Some(high))) if high < 0.0 => Verdict::Down,
            Some((Some(_), Some(_))) => Verdict::Unclear,
            _ => Verdict::Unknown,
        }
    }

    pub(super) fn class(self) -> &'static str {
        match self {
            Verdict::Up => "green",
            Verdict::Down => "red",
            Verdict::Unclear => "grey",
            Verdict::Unknown => "none",
        }
    }

    pub(super) fn text(self) -> &'static str {
        match self {
            Verdict::Up => "brings customers back",
            Verdict::Down => "fewer customers come back",
            Verdict::Unclear => "no clear effect yet",
            Verdict::Unknown => "cannot tell",
        }
    }
}

/// The rule's name with what it is, as HTML.
pub(super) fn name(rule: &RuleEffect) -> String {
    let kind = if rule.kind == "followup" {
        "<span class=\"badge\">follow-up</span>".to_string()
    } else {
        String::new()
    };
    let mode = if rule.mode == "live" {
        String::new()
    } else {
        format!("<span class=\"badge\">{}</span>", escape(&rule.mode))
    };
    format!("{}{kind}{mode}", escape(&rule.id))
}
