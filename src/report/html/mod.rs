//! The effect report as one self-contained HTML page, for a marketer to open and to forward by
//! e-mail: no scripts, fonts, images or style sheets from elsewhere, so it reads the same in a
//! mail client, offline, and printed.
//!
//! The page has a header (the period and the method in plain words), a table at a glance, two
//! inline SVG charts (the uplift of each rule with its interval, and coupon redemptions per
//! week) and a table of every figure per rule or follow-up.
//!
//! Everything from the data (rule ids, currencies, amounts, warnings, method names, dates) goes
//! through [`escape`]: rule ids are written by people and the page is opened by others.
//! Figures that are missing or not finite show as "–" and are left out of the charts; nothing
//! here panics, whatever the report holds.

use super::{Amounts, Nps, Report, RuleEffect, Uplift};
use chrono::NaiveDate;
use std::collections::BTreeSet;

/// What a missing or unusable figure shows as.
const DASH: &str = "–";

/// The page's title, also its `<h1>`.
const TITLE: &str = "Packwell effect report";

/// Series colours of the redemptions chart (Okabe–Ito: told apart with colour blindness too).
const COLOURS: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];
/// Dash patterns taken after the colours run out, so that two series never look the same
/// (and so that a black-and-white print still tells them apart).
const DASHES: [&str; 3] = ["none", "7 4", "2 3"];

/// The whole page for a report.
pub fn render(report: &Report) -> String {
    let mut page = String::with_capacity(64 * 1024);
    page.push_str(&head());
    page.push_str("<body>\n<main>\n");
    page.push_str(&header(report));
    if report.rules.is_empty() {
        page.push_str(&nothing_yet(report));
    } else {
        page.push_str(&summary(&report.rules));
        page.push_str(&uplift_chart(&report.rules));
        page.push_str(&redemptions_chart(&report.rules));
        page.push_str(
            "<section>\n<h2>Every figure, per rule and follow-up</h2>\n<div class=\"rules\">\n",
        );
        for rule in &report.rules {
            page.push_str(&table(rule));
        }
        page.push_str("</div>\n</section>\n");
    }
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

/// Text made safe for HTML text and for attribute values in either kind of quotes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The page's frame

fn head() -> String {
    // The content security policy makes the page inert even if something slipped past the
    // escaping: no script runs and nothing is fetched from elsewhere.
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <title>{TITLE}</title>\n<style>\n{STYLE}</style>\n</head>\n"
    )
}

const STYLE: &str = r#"
:root {
  --fg: #1b1b1b; --muted: #555; --line: #d0d0d0; --stripe: #f5f5f5;
  --green: #1a7f37; --red: #c62828; --grey: #6b6b6b;
  --warn-bg: #fff4c2; --warn-line: #c99a00;
}
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body {
  margin: 0; color: var(--fg); background: #fff; line-height: 1.45;
  font-family: system-ui, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; font-size: 15px;
}
main { max-width: 1180px; margin: 0 auto; padding: 1.2rem 1.5rem 3rem; }
h1 { font-size: 1.7rem; margin: 0 0 0.3rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 0.6rem; border-bottom: 2px solid var(--fg); padding-bottom: 0.2rem; }
h3 { font-size: 1.05rem; margin: 0 0 0.4rem; overflow-wrap: anywhere; }
header { border-bottom: 1px solid var(--line); padding-bottom: 0.6rem; }
.meta { display: flex; flex-wrap: wrap; gap: 0.2rem 1.6rem; margin: 0.2rem 0 0.6rem; color: var(--muted); }
.meta b { color: var(--fg); }
.method { max-width: 62rem; margin: 0.4rem 0; }
.empty { font-size: 1.1rem; padding: 1rem 1.2rem; background: var(--stripe); border-left: 6px solid var(--grey); }
.note { color: var(--muted); font-style: italic; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 0.3rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { text-align: left; border-bottom: 2px solid var(--fg); font-size: 0.85rem; color: var(--muted); }
td { text-align: right; }
thead th.num { text-align: right; }
th[scope=row] { text-align: left; font-weight: 600; overflow-wrap: anywhere; }
.amount, .verdict, .nowrap { white-space: nowrap; }
.interval-text { white-space: nowrap; color: var(--muted); }
.scroll { overflow-x: auto; }
.summary td.verdict { text-align: left; }
.summary th[scope=row] { min-width: 11rem; }
.summary .interval-text { display: block; font-size: 0.85em; }
.summary tbody tr:nth-child(even) { background: var(--stripe); }
.verdict.green { color: var(--green); font-weight: 700; }
.verdict.red { color: var(--red); font-weight: 700; }
.verdict.grey, .verdict.none { color: var(--grey); font-weight: 600; }
.badge {
  display: inline-block; font-size: 0.75rem; font-weight: 600; padding: 0.05rem 0.45rem; margin-left: 0.3rem;
  border: 1px solid var(--line); border-radius: 999px; color: var(--muted); vertical-align: middle;
}
.warning {
  background: var(--warn-bg); border: 1px solid var(--warn-line); border-left: 6px solid var(--warn-line);
  padding: 0.45rem 0.7rem; margin: 0.4rem 0 0.6rem; overflow-wrap: anywhere;
}
figure { margin: 0; }
figcaption { color: var(--muted); font-size: 0.9rem; margin-top: 0.3rem; }
svg { display: block; width: 100%; height: auto; font-family: inherit; }
svg text { font-size: 13px; fill: var(--fg); }
svg .tick { font-size: 12px; fill: var(--muted); }
svg .axis-title { font-size: 12px; fill: var(--muted); }
svg .grid { stroke: #e4e4e4; stroke-width: 1; }
svg .axis { stroke: #888; stroke-width: 1; }
svg .zero { stroke: #222; stroke-width: 1.5; }
svg .stripe { fill: var(--stripe); }
svg .interval line { stroke-width: 3; stroke-linecap: round; }
svg .interval circle { stroke: #fff; stroke-width: 1.5; }
svg .green line { stroke: var(--green); } svg .green circle { fill: var(--green); }
svg .red line { stroke: var(--red); } svg .red circle { fill: var(--red); }
svg .grey line { stroke: var(--grey); } svg .grey circle { fill: var(--grey); }
svg text.green { fill: var(--green); } svg text.red { fill: var(--red); }
svg .series polyline { fill: none; stroke-width: 2.5; stroke-linejoin: round; }
.rules { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(30rem, 100%), 1fr)); gap: 1.2rem 1.6rem; }
.rule { border: 1px solid var(--line); border-radius: 6px; padding: 0.8rem 1rem; }
.rule p.verdict { margin: 0 0 0.4rem; }
.figures { table-layout: fixed; }
.figures col.figure { width: 40%; }
.figures th[scope=row] { font-weight: normal; }
.figures th.part { text-align: left; font-size: 0.85rem; color: var(--muted); border-bottom: 2px solid var(--fg); padding-top: 0.8rem; }
@media print {
  body { font-size: 10pt; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  figure, .rule, .summary, header { break-inside: avoid; }
  .rules { display: block; }
  .rule { margin-bottom: 0.8rem; }
}
@page { margin: 1.4cm; }
"#;

fn header(report: &Report) -> String {
    let window = report.window_days;
    let or_dash = |s: &Option<String>| s.as_deref().map(escape).unwrap_or_else(|| DASH.into());
    let since = report
        .since
        .as_deref()
        .map(escape)
        .unwrap_or_else(|| "all".into());
    format!(
        "<header>\n<h1>{TITLE}</h1>\n<p class=\"meta\">\
         <span>Window: <b>{window} days</b></span>\
         <span>Since: <b>{since}</b></span>\
         <span>As of: <b>{as_of}</b></span>\
         <span>Cohort until: <b>{until}</b></span></p>\n\
         <p class=\"method\">{method}</p>\n</header>\n",
        as_of = or_dash(&report.as_of),
        until = or_dash(&report.cohort_until),
        method = method_text(report),
    )
}

/// The method in plain words, naming the interval methods the data names.
fn method_text(report: &Report) -> String {
    let window = report.window_days;
    let absolute = distinct(
        report
            .rules
            .iter()
            .filter_map(|r| r.uplift.as_ref())
            .map(|u| &u.method),
    );
    let relative = distinct(
        report
            .rules
            .iter()
            .filter_map(|r| r.relative_uplift.as_ref())
            .map(|u| &u.method),
    );
    let by = |methods: &str| {
        if methods.is_empty() {
            String::new()
        } else {
            format!(" by the {methods} method")
        }
    };
    let relative = if relative.is_empty() {
        String::new()
    } else {
        format!(" (the relative uplift's{})", by(&relative))
    };
    format!(
        "How it is measured: each rule and follow-up is compared with its holdout, customers chosen \
         alike by a fixed (deterministic) draw who got nothing from it. For both groups the report \
         counts the share of customers who ordered again within {window} days of their first \
         exposure: the repeat-purchase rate. The uplift is the treated rate less the held-out rate, \
         in percentage points (pts), with a 95% confidence interval{absolute}{relative}. When the whole \
         interval is above zero the rule brings customers back (green); when it is all below zero it \
         keeps them away (red); otherwise the data cannot tell yet (grey). Customers whose {window} \
         days are not over yet are not counted yet (&ldquo;still in window&rdquo;).",
        absolute = by(&absolute),
    )
}

/// The distinct strings, escaped, in first-seen order, joined for a sentence.
fn distinct<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for s in items {
        if !seen.contains(&s.as_str()) {
            seen.push(s);
        }
    }
    seen.into_iter()
        .map(escape)
        .collect::<Vec<_>>()
        .join(" and ")
}

fn nothing_yet(report: &Report) -> String {
    let why = if report.as_of.is_none() {
        "The store holds no decisions yet: no order has met a rule or a follow-up, so there is \
         no one to compare."
            .to_string()
    } else {
        let since = report
            .since
            .as_deref()
            .map(|s| format!(" since {}", escape(s)))
            .unwrap_or_default();
        format!(
            "The store holds no decisions of any rule or follow-up{since}: no customer was treated \
             or held out in this period."
        )
    };
    format!(
        "<section>\n<p class=\"empty\" id=\"nothing-to-report\"><strong>Nothing to report yet.</strong> \
         {why} Come back once orders have been decided and their {} days have passed.</p>\n</section>\n",
        report.window_days
    )
}

// ---------------------------------------------------------------------------------------------
// Figures as text

/// The value when it is a usable number.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// A signed number, with no "-0.0" for what rounds to zero.
fn signed(v: f64, decimals: usize) -> String {
    let s = format!("{v:+.decimals$}");
    if s.chars().skip(1).all(|c| c == '0' || c == '.') {
        format!("{:.decimals$}", 0.0)
    } else {
        s
    }
}

/// A share (0..1) in percent.
fn percent(v: Option<f64>) -> String {
    match v.and_then(finite) {
        Some(v) => format!("{:.1}%", v * 100.0),
        None => DASH.into(),
    }
}

/// A difference of shares in percentage points.
fn points(v: f64) -> String {
    finite(v)
        .map(|v| format!("{} pts", signed(v * 100.0, 1)))
        .unwrap_or_else(|| DASH.into())
}

fn decimal(v: Option<f64>, decimals: usize) -> String {
    match v.and_then(finite) {
        Some(v) => format!("{v:.decimals$}"),
        None => DASH.into(),
    }
}

/// Money per currency: "12.50 EUR, 3.00 USD", or "–" when there is none.
fn money(amounts: &Amounts) -> String {
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

fn uplift_text(u: Option<&Uplift>) -> String {
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

fn relative_text(rule: &RuleEffect) -> String {
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

fn nps_text(nps: &Option<Nps>) -> String {
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
enum Verdict {
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
    fn of(u: Option<&Uplift>) -> Verdict {
        match u.map(|u| (finite(u.low), finite(u.high))) {
            Some((Some(low), Some(_))) if low > 0.0 => Verdict::Up,
            Some((Some(_), Some(high))) if high < 0.0 => Verdict::Down,
            Some((Some(_), Some(_))) => Verdict::Unclear,
            _ => Verdict::Unknown,
        }
    }

    fn class(self) -> &'static str {
        match self {
            Verdict::Up => "green",
            Verdict::Down => "red",
            Verdict::Unclear => "grey",
            Verdict::Unknown => "none",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Verdict::Up => "brings customers back",
            Verdict::Down => "fewer customers come back",
            Verdict::Unclear => "no clear effect yet",
            Verdict::Unknown => "cannot tell",
        }
    }
}

/// The rule's name with what it is, as HTML.
fn name(rule: &RuleEffect) -> String {
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

// ---------------------------------------------------------------------------------------------
// Tables

/// One line per rule: the figures that say whether it pays.
fn summary(rules: &[RuleEffect]) -> String {
    let mut out = String::from(
        "<section>\n<h2>At a glance</h2>\n<div class=\"scroll\">\n<table class=\"summary\">\n<thead><tr>\
         <th scope=\"col\">Rule or follow-up</th><th scope=\"col\" class=\"num\">Treated</th>\
         <th scope=\"col\" class=\"num\">Held out</th><th scope=\"col\" class=\"num\">Repeat rate treated</th>\
         <th scope=\"col\" class=\"num\">Repeat rate held out</th><th scope=\"col\" class=\"num\">Uplift</th>\
         <th scope=\"col\" class=\"num\">Extra revenue</th><th scope=\"col\" class=\"num\">Cost</th>\
         <th scope=\"col\">Verdict</th></tr></thead>\n<tbody>\n",
    );
    for rule in rules {
        let verdict = Verdict::of(rule.uplift.as_ref());
        out.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"verdict {}\">{}</td></tr>\n",
            name(rule),
            rule.treated,
            rule.held_out,
            percent(rule.repeat_rate.treated),
            percent(rule.repeat_rate.held_out),
            uplift_text(rule.uplift.as_ref()),
            money(&rule.extra_revenue),
            money(&rule.cost),
            verdict.class(),
            verdict.text(),
        ));
    }
    out.push_str("</tbody>\n</table>\n</div>\n</section>\n");
    out
}

/// Every figure of one rule or follow-up: the two groups side by side, then the effect.
fn table(rule: &RuleEffect) -> String {
    let verdict = Verdict::of(rule.uplift.as_ref());
    let warning = rule
        .warning
        .as_deref()
        .map(|w| {
            format!(
                "<div class=\"warning\" role=\"note\"><strong>Warning:</strong> {}</div>\n",
                escape(w)
            )
        })
        .unwrap_or_default();
    let pair = |label: &str, treated: String, held_out: String| {
        format!("<tr><th scope=\"row\">{label}</th><td>{treated}</td><td>{held_out}</td></tr>\n")
    };
    let whole = |label: &str, value: String| {
        format!("<tr><th scope=\"row\">{label}</th><td colspan=\"2\">{value}</td></tr>\n")
    };
    let part = |title: &str| format!("<tr><th class=\"part\" colspan=\"3\">{title}</th></tr>\n");

    let groups = [
        pair(
            "Customers compared",
            rule.treated.to_string(),
            rule.held_out.to_string(),
        ),
        pair(
            "Repeat-purchase rate",
            percent(rule.repeat_rate.treated),
            percent(rule.repeat_rate.held_out),
        ),
        pair(
            "Later orders",
            rule.later_orders.treated.to_string(),
            rule.later_orders.held_out.to_string(),
        ),
        pair(
            "Revenue per customer",
            money(&rule.revenue_per_customer.treated),
            money(&rule.revenue_per_customer.held_out),
        ),
        pair(
            "NPS",
            nps_text(&rule.nps.treated),
            nps_text(&rule.nps.held_out),
        ),
        pair(
            "Days since first order (mean)",
            decimal(rule.relationship_days.treated, 1),
            decimal(rule.relationship_days.held_out, 1),
        ),
    ];
    let effect = [
        whole("Uplift", uplift_text(rule.uplift.as_ref())),
        whole("Relative uplift", relative_text(rule)),
        whole("Extra orders", decimal(rule.extra_orders, 1)),
        whole("Extra revenue", money(&rule.extra_revenue)),
        whole("Cost", money(&rule.cost)),
        whole(
            "Would have cost (held out, shadow)",
            money(&rule.would_have_cost),
        ),
        whole(
            "Cost per extra order",
            rule.cost_per_extra_order
                .as_ref()
                .map(money)
                .unwrap_or_else(|| DASH.into()),
        ),
    ];
    let coupons = [
        whole("Coupons issued", rule.coupons_issued.to_string()),
        whole("Coupons redeemed", rule.redeemed.to_string()),
        whole("Redemption rate", percent(rule.redemption_rate)),
        whole("Face value redeemed", money(&rule.redeemed_face_value)),
    ];
    let others = [
        whole("Shadow (would have been given)", rule.shadow.to_string()),
        whole(
            "Still in window (not counted yet)",
            rule.in_window.to_string(),
        ),
        whole("In both groups (left out)", rule.mixed.to_string()),
    ];
    format!(
        "<article class=\"rule\">\n<h3>{name}</h3>\n\
         <p class=\"verdict {class}\">{verdict}</p>\n{warning}\
         <table class=\"figures\">\n<colgroup><col class=\"figure\"><col><col></colgroup>\n\
         <thead><tr><th scope=\"col\">Figure</th>\
         <th scope=\"col\" class=\"num\">Treated</th><th scope=\"col\" class=\"num\">Held out</th></tr></thead>\n<tbody>\n\
         {groups}{effect_title}{effect}{coupon_title}{coupons}{other_title}{others}</tbody>\n</table>\n</article>\n",
        name = name(rule),
        class = verdict.class(),
        verdict = verdict.text(),
        groups = groups.concat(),
        effect_title = part("Effect"),
        effect = effect.concat(),
        coupon_title = part("Coupons"),
        coupons = coupons.concat(),
        other_title = part("Other customers"),
        others = others.concat(),
    )
}

// ---------------------------------------------------------------------------------------------
// Charts

/// A linear axis over "nice" round ticks.
#[derive(Debug, Clone, Copy)]
struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
}

impl Axis {
    /// Round ticks covering `lo..=hi`, about `target` of them, at least `min_span` wide (so
    /// that a single value still gets a scale) and `min_step` apart (counts tick by whole
    /// numbers).
    fn new(lo: f64, hi: f64, target: u32, min_span: f64, min_step: f64) -> Axis {
        let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() && lo <= hi {
            (lo, hi)
        } else {
            (0.0, min_span)
        };
        if hi - lo < min_span {
            let middle = (lo + hi) / 2.0;
            lo = middle - min_span / 2.0;
            hi = middle + min_span / 2.0;
        }
        let step = nice_step((hi - lo) / f64::from(target.max(1))).max(min_step);
        let lo = (lo / step).floor() * step;
        let mut hi = (hi / step).ceil() * step;
        // Rounding can leave a zero width only for degenerate inputs; the scale must not
        // divide by zero.
        if hi - lo <= 0.0 || !(hi - lo).is_finite() {
            hi = lo + step;
        }
        Axis { lo, hi, step }
    }

    fn ticks(&self) -> Vec<f64> {
        let n = ((self.hi - self.lo) / self.step).round();
        // At most a hundred ticks, whatever the arithmetic did.
        let n = if n.is_finite() {
            n.clamp(0.0, 100.0) as u32
        } else {
            0
        };
        (0..=n)
            .map(|i| self.lo + f64::from(i) * self.step)
            .collect()
    }

    /// Where `v` lies between `from` and `to`.
    fn place(&self, v: f64, from: f64, to: f64) -> f64 {
        from + (v - self.lo) / (self.hi - self.lo) * (to - from)
    }
}

/// A round step near `raw`: 1, 2 or 5 times a power of ten.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let factor = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    factor * magnitude
}

/// At most `max` characters, with "…" when cut: SVG text does not wrap.
fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

// The forest plot's geometry, in SVG units (it scales with the page).
const FOREST_WIDTH: f64 = 1000.0;
const LABEL_RIGHT: f64 = 250.0;
const PLOT_LEFT: f64 = 265.0;
const PLOT_RIGHT: f64 = 745.0;
const VALUES_LEFT: f64 = 765.0;
const ROW_HEIGHT: f64 = 32.0;
const TOP: f64 = 10.0;

/// Chart 1: the uplift of each rule with its 95% interval, one row per rule, around zero.
fn uplift_chart(rules: &[RuleEffect]) -> String {
    let rows: Vec<(&RuleEffect, &Uplift)> = rules
        .iter()
        .filter_map(|r| r.uplift.as_ref().map(|u| (r, u)))
        .filter(|(_, u)| [u.absolute, u.low, u.high].iter().all(|v| v.is_finite()))
        .collect();
    let mut out = String::from("<section>\n<h2>Uplift in repeat purchases</h2>\n");
    if rows.is_empty() {
        out.push_str(
            "<p class=\"note\">No rule or follow-up has both a treated and a held-out group \
             with their window over yet: there is no uplift to show.</p>\n</section>\n",
        );
        return out;
    }
    // Zero is always on the scale: it is what each interval is judged against.
    let lo = rows
        .iter()
        .map(|(_, u)| u.low.min(u.absolute))
        .fold(0.0, f64::min);
    let hi = rows
        .iter()
        .map(|(_, u)| u.high.max(u.absolute))
        .fold(0.0, f64::max);
    let axis = Axis::new(lo, hi, 6, 0.01, 0.0);
    let x = |v: f64| axis.place(v, PLOT_LEFT, PLOT_RIGHT);
    let bottom = TOP + ROW_HEIGHT * rows.len() as f64;
    let height = bottom + 52.0;

    let mut svg = format!(
        "<svg id=\"uplift-chart\" role=\"img\" aria-labelledby=\"uplift-title uplift-desc\" \
         viewBox=\"0 0 {FOREST_WIDTH} {height:.0}\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <title id=\"uplift-title\">Uplift in repeat-purchase rate per rule and follow-up, with 95% intervals</title>\n\
         <desc id=\"uplift-desc\">One row per rule: the dot is the treated rate less the held-out rate, \
         in percentage points; the line is its 95% interval. Green rows lie wholly above zero, \
         red rows wholly below, grey rows hold zero.</desc>\n"
    );
    // Stripes first, then the grid, so the rows read across the page.
    for i in (0..rows.len()).filter(|i| i % 2 == 1) {
        svg.push_str(&format!(
            "<rect class=\"stripe\" x=\"0\" y=\"{:.1}\" width=\"{FOREST_WIDTH}\" height=\"{ROW_HEIGHT}\"/>\n",
            TOP + ROW_HEIGHT * i as f64
        ));
    }
    let decimals = if axis.step * 100.0 >= 0.999 {
        0
    } else if axis.step * 100.0 >= 0.0999 {
        1
    } else {
        2
    };
    for t in axis.ticks() {
        let tx = x(t);
        svg.push_str(&format!(
            "<line class=\"grid\" x1=\"{tx:.1}\" y1=\"{TOP}\" x2=\"{tx:.1}\" y2=\"{bottom:.1}\"/>\n\
             <line class=\"axis\" x1=\"{tx:.1}\" y1=\"{bottom:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\"/>\n\
             <text class=\"tick\" x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            bottom + 5.0,
            bottom + 19.0,
            signed(t * 100.0, decimals)
        ));
    }
    svg.push_str(&format!(
        "<line class=\"axis\" x1=\"{PLOT_LEFT}\" y1=\"{bottom:.1}\" x2=\"{PLOT_RIGHT}\" y2=\"{bottom:.1}\"/>\n\
         <line class=\"zero\" x1=\"{zero:.1}\" y1=\"{:.1}\" x2=\"{zero:.1}\" y2=\"{bottom:.1}\"/>\n\
         <text class=\"axis-title\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">Uplift, percentage points (dot: estimate, line: 95% interval)</text>\n\
         <text class=\"axis-title\" x=\"{VALUES_LEFT}\" y=\"{:.1}\">Uplift (95% interval)</text>\n",
        TOP - 4.0,
        (PLOT_LEFT + PLOT_RIGHT) / 2.0,
        bottom + 40.0,
        bottom + 19.0,
        zero = x(0.0),
    ));
    for (i, (rule, u)) in rows.iter().enumerate() {
        let y = TOP + ROW_HEIGHT * (i as f64 + 0.5);
        let class = Verdict::of(Some(u)).class();
        let label = escape(&short(&rule.id, 30));
        let id = escape(&rule.id);
        let (a, l, h) = (
            signed(u.absolute * 100.0, 1),
            signed(u.low * 100.0, 1),
            signed(u.high * 100.0, 1),
        );
        svg.push_str(&format!(
            "<text class=\"label {class}\" x=\"{LABEL_RIGHT}\" y=\"{y:.1}\" dy=\"0.35em\" text-anchor=\"end\"><title>{id}</title>{label}</text>\n\
             <g class=\"interval {class}\"><title>{id}: {a} pts (95%: {l} to {h})</title>\
             <line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/>\
             <circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"6\"/></g>\n\
             <text class=\"{class}\" x=\"{VALUES_LEFT}\" y=\"{y:.1}\" dy=\"0.35em\">{a} pts ({l} to {h})</text>\n",
            x(u.low),
            x(u.high),
            x(u.absolute),
        ));
    }
    svg.push_str("</svg>\n");
    out.push_str("<figure>\n");
    out.push_str(&svg);
    let missing = match rules.len().saturating_sub(rows.len()) {
        0 => String::new(),
        1 => " One rule or follow-up without both groups compared is not shown.".into(),
        n => format!(" {n} rules or follow-ups without both groups compared are not shown."),
    };
    out.push_str(&format!(
        "<figcaption>Treated repeat-purchase rate less held-out rate. An interval wholly right of \
         the zero line means the rule brings customers back.{missing}</figcaption>\n</figure>\n</section>\n"
    ));
    out
}

// The redemptions chart's geometry.
const LINE_WIDTH: f64 = 1000.0;
const LINE_LEFT: f64 = 70.0;
const LINE_RIGHT: f64 = 975.0;
const LINE_TOP: f64 = 14.0;
const LINE_BOTTOM: f64 = 254.0;
const LEGEND_ROW: f64 = 22.0;

/// Chart 2: coupon redemptions per week, one line per rule, on the weeks of all of them.
fn redemptions_chart(rules: &[RuleEffect]) -> String {
    // Weeks that do not parse cannot be placed: left out (the report writes them itself).
    let series: Vec<(&RuleEffect, Vec<(NaiveDate, u64)>)> = rules
        .iter()
        .map(|r| {
            let points = r
                .redemptions_by_week
                .iter()
                .filter_map(|w| {
                    NaiveDate::parse_from_str(&w.week, "%Y-%m-%d")
                        .ok()
                        .map(|d| (d, w.redeemed))
                })
                .collect::<Vec<_>>();
            (r, points)
        })
        .filter(|(_, points)| !points.is_empty())
        .collect();
    let mut out = String::from("<section>\n<h2>Coupon redemptions per week</h2>\n");
    if series.is_empty() {
        out.push_str("<p class=\"note\">No coupon of these rules and follow-ups has been redeemed yet.</p>\n</section>\n");
        return out;
    }
    let weeks: BTreeSet<NaiveDate> = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(d, _)| *d))
        .collect();
    let (Some(first), Some(last)) = (weeks.first().copied(), weeks.last().copied()) else {
        return out + "</section>\n";
    };
    // A week's place on a shared time axis; a single week sits in the middle.
    let span = (last - first).num_days() as f64;
    let (inner_left, inner_right) = (LINE_LEFT + 14.0, LINE_RIGHT - 14.0);
    let x = |d: NaiveDate| {
        if span > 0.0 {
            inner_left + (d - first).num_days() as f64 / span * (inner_right - inner_left)
        } else {
            (inner_left + inner_right) / 2.0
        }
    };
    let most = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(_, n)| *n))
        .max()
        .unwrap_or(0);
    let axis = Axis::new(0.0, (most as f64).max(1.0), 5, 1.0, 1.0);
    let y = |n: f64| axis.place(n, LINE_BOTTOM, LINE_TOP);
    let legend_top = LINE_BOTTOM + 62.0;
    let height = legend_top + LEGEND_ROW * series.len() as f64 + 6.0;

    let mut svg = format!(
        "<svg id=\"redemptions-chart\" role=\"img\" aria-labelledby=\"redemptions-title redemptions-desc\" \
         viewBox=\"0 0 {LINE_WIDTH} {height:.0}\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <title id=\"redemptions-title\">Coupons redeemed per week, per rule and follow-up</title>\n\
         <desc id=\"redemptions-desc\">One line per rule or follow-up whose coupons were redeemed; \
         weeks start on Monday (UTC).</desc>\n"
    );
    for t in axis.ticks() {
        let ty = y(t);
        svg.push_str(&format!(
            "<line class=\"grid\" x1=\"{LINE_LEFT}\" y1=\"{ty:.1}\" x2=\"{LINE_RIGHT}\" y2=\"{ty:.1}\"/>\n\
             <text class=\"tick\" x=\"{:.1}\" y=\"{ty:.1}\" dy=\"0.35em\" text-anchor=\"end\">{t:.0}</text>\n",
            LINE_LEFT - 8.0
        ));
    }
    // Every k-th week is labelled, so that the dates never overlap.
    let every = weeks.len().div_ceil(9).max(1);
    for week in weeks.iter().step_by(every) {
        let wx = x(*week);
        svg.push_str(&format!(
            "<line class=\"axis\" x1=\"{wx:.1}\" y1=\"{LINE_BOTTOM}\" x2=\"{wx:.1}\" y2=\"{:.1}\"/>\n\
             <text class=\"tick\" x=\"{wx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            LINE_BOTTOM + 5.0,
            LINE_BOTTOM + 19.0,
            week.format("%Y-%m-%d")
        ));
    }
    svg.push_str(&format!(
        "<line class=\"axis\" x1=\"{LINE_LEFT}\" y1=\"{LINE_BOTTOM}\" x2=\"{LINE_RIGHT}\" y2=\"{LINE_BOTTOM}\"/>\n\
         <line class=\"axis\" x1=\"{LINE_LEFT}\" y1=\"{LINE_TOP}\" x2=\"{LINE_LEFT}\" y2=\"{LINE_BOTTOM}\"/>\n\
         <text class=\"axis-title\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">Week starting (Monday)</text>\n\
         <text class=\"axis-title\" transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">Coupons redeemed</text>\n",
        (LINE_LEFT + LINE_RIGHT) / 2.0,
        LINE_BOTTOM + 40.0,
        (LINE_TOP + LINE_BOTTOM) / 2.0,
    ));
    for (i, (rule, points)) in series.iter().enumerate() {
        let colour = COLOURS.get(i % COLOURS.len()).copied().unwrap_or("#000");
        let dash = DASHES
            .get(i / COLOURS.len() % DASHES.len())
            .copied()
            .unwrap_or("none");
        let id = escape(&rule.id);
        let line = points
            .iter()
            .map(|(d, n)| format!("{:.1},{:.1}", x(*d), y(*n as f64)))
            .collect::<Vec<_>>()
            .join(" ");
        svg.push_str(&format!(
            "<g class=\"series\" stroke=\"{colour}\" fill=\"{colour}\"><title>{id}</title>\
             <polyline points=\"{line}\" stroke-dasharray=\"{dash}\"/>\n"
        ));
        // Dots too: a rule with a single week has a line of no length.
        for (d, n) in points {
            svg.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\"><title>{id}, week of {}: {n} redeemed</title></circle>\n",
                x(*d),
                y(*n as f64),
                d.format("%Y-%m-%d")
            ));
        }
        svg.push_str("</g>\n");
        let total: u64 = points.iter().map(|(_, n)| *n).sum();
        let ly = legend_top + LEGEND_ROW * i as f64;
        svg.push_str(&format!(
            "<g class=\"legend\"><line x1=\"{LINE_LEFT}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" \
             stroke=\"{colour}\" stroke-width=\"3\" stroke-dasharray=\"{dash}\"/>\
             <circle cx=\"{:.1}\" cy=\"{ly:.1}\" r=\"3.5\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{ly:.1}\" dy=\"0.35em\">{} ({total} redeemed)</text></g>\n",
            LINE_LEFT + 30.0,
            LINE_LEFT + 15.0,
            LINE_LEFT + 40.0,
            escape(&short(&rule.id, 60)),
        ));
    }
    svg.push_str("</svg>\n");
    out.push_str("<figure>\n");
    out.push_str(&svg);
    out.push_str(
        "<figcaption>Coupons of each rule and follow-up redeemed per week, since the start of \
         the report.</figcaption>\n</figure>\n</section>\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Nps, PerGroup, RelativeUplift, WeekCount};

    fn rule(id: &str) -> RuleEffect {
        RuleEffect {
            id: id.into(),
            kind: "rule".into(),
            mode: "live".into(),
            treated: 0,
            held_out: 0,
            shadow: 0,
            in_window: 0,
            mixed: 0,
            repeat_rate: PerGroup::default(),
            uplift: None,
            relative_uplift: None,
            later_orders: PerGroup::default(),
            revenue_per_customer: PerGroup::default(),
            extra_revenue: Amounts::new(),
            extra_orders: None,
            cost: Amounts::new(),
            would_have_cost: Amounts::new(),
            cost_per_extra_order: None,
            coupons_issued: 0,
            redeemed: 0,
            redemption_rate: None,
            redeemed_face_value: Amounts::new(),
            nps: PerGroup::default(),
            relationship_days: PerGroup::default(),
            redemptions_by_week: Vec::new(),
            warning: None,
        }
    }

    fn uplift(absolute: f64, low: f64, high: f64) -> Option<Uplift> {
        Some(Uplift {
            absolute,
            low,
            high,
            method: "Newcombe hybrid score".into(),
        })
    }

    fn report(rules: Vec<RuleEffect>) -> Report {
        Report {
            schema_version: 1,
            window_days: 90,
            since: None,
            as_of: Some("2026-06-01T00:00:00Z".into()),
            cohort_until: Some("2026-03-03T00:00:00Z".into()),
            rules,
        }
    }

    fn week(week: &str, redeemed: u64) -> WeekCount {
        WeekCount {
            week: week.into(),
            redeemed,
        }
    }

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(
            escape(r#"<a href="x">Tom & Jerry's</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
        );
    }

    #[test]
    fn a_hostile_rule_id_warning_currency_and_method_are_escaped() {
        let mut r = rule("<script>alert(1)</script>");
        r.uplift = Some(Uplift {
            method: "<i>method</i>".into(),
            ..uplift(0.02, 0.01, 0.03).unwrap_or_else(|| unreachable!())
        });
        r.warning = Some(r#"beware "&' of this"#.into());
        r.cost.insert("<b>EUR</b>".into(), "1.00".into());
        r.redemptions_by_week = vec![week("2026-01-05", 3)];
        let page = render(&report(vec![r]));
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("beware &quot;&amp;&#39; of this"), "{page}");
        assert!(!page.contains(r#""&'"#));
        assert!(!page.contains("<b>EUR</b>") && page.contains(">1.00 &lt;b&gt;EUR&lt;/b&gt;<"));
        assert!(!page.contains("<i>method</i>") && page.contains("&lt;i&gt;method&lt;/i&gt;"));
        assert!(page.contains("class=\"warning\""));
    }

    #[test]
    fn intervals_are_coloured_by_where_they_lie_against_zero() {
        let mut up = rule("up");
        up.uplift = uplift(0.05, 0.02, 0.08);
        let mut down = rule("down");
        down.uplift = uplift(-0.05, -0.08, -0.01);
        let mut unclear = rule("unclear");
        unclear.uplift = uplift(0.01, -0.02, 0.04);
        let page = render(&report(vec![up, down, unclear]));
        assert_eq!(
            page.matches("class=\"interval green\"").count(),
            1,
            "{page}"
        );
        assert_eq!(page.matches("class=\"interval red\"").count(), 1);
        assert_eq!(page.matches("class=\"interval grey\"").count(), 1);
        assert!(page.contains("id=\"uplift-chart\""));
        assert!(page.contains("<title>Packwell effect report</title>"));
        assert!(page.contains("Newcombe hybrid score"));
    }

    #[test]
    fn an_empty_report_says_there_is_nothing_to_report() {
        let page = render(&report(Vec::new()));
        assert!(page.contains("Nothing to report yet"), "{page}");
        assert!(page.contains("no decisions"), "{page}");
        assert!(!page.contains("<svg"));

        let mut empty_store = report(Vec::new());
        empty_store.as_of = None;
        empty_store.cohort_until = None;
        let page = render(&empty_store);
        assert!(page.contains("Nothing to report yet") && page.contains("no decisions yet"));
    }

    #[test]
    fn nan_and_infinite_figures_show_a_dash_and_stay_out_of_the_charts() {
        let mut r = rule("odd");
        r.uplift = uplift(f64::NAN, f64::NEG_INFINITY, f64::NAN);
        r.relative_uplift = Some(RelativeUplift {
            value: f64::INFINITY,
            low: f64::NAN,
            high: 1.0,
            method: "Katz log risk ratio".into(),
        });
        r.repeat_rate = PerGroup {
            treated: Some(f64::NAN),
            held_out: Some(f64::INFINITY),
        };
        r.extra_orders = Some(f64::NAN);
        r.redemption_rate = Some(f64::NEG_INFINITY);
        r.nps.treated = Some(Nps {
            answers: 3,
            mean: f64::NAN,
            score: f64::INFINITY,
        });
        r.relationship_days.held_out = Some(f64::NAN);
        let mut half = rule("half");
        half.uplift = uplift(0.01, f64::NAN, 0.02);
        let page = render(&report(vec![r, half]));
        for bad in ["NaN", "inf"] {
            assert!(!page.contains(bad), "{bad} in {page}");
        }
        assert!(!page.contains("class=\"interval"), "{page}");
        assert!(page.contains("cannot tell"));
    }

    #[test]
    fn a_single_point_scale_does_not_divide_by_zero() {
        let mut r = rule("flat");
        r.uplift = uplift(0.0, 0.0, 0.0);
        r.redemptions_by_week = vec![week("2026-01-05", 0)];
        let mut other = rule("other");
        other.uplift = uplift(0.0, 0.0, 0.0);
        other.redemptions_by_week = vec![week("2026-01-05", 0), week("not a week", 4)];
        let page = render(&report(vec![r, other]));
        assert!(!page.contains("NaN") && !page.contains("inf"), "{page}");
        assert_eq!(page.matches("class=\"interval grey\"").count(), 2);
        assert_eq!(page.matches("<polyline").count(), 2);
    }

    #[test]
    fn redemptions_share_the_weeks_of_all_rules() {
        let mut a = rule("a");
        a.redemptions_by_week = vec![week("2026-01-05", 4), week("2026-01-12", 9)];
        let mut b = rule("b");
        b.redemptions_by_week = vec![week("2026-02-02", 2)];
        let c = rule("c");
        let page = render(&report(vec![a, b, c]));
        assert!(page.contains("id=\"redemptions-chart\""));
        assert_eq!(page.matches("<polyline").count(), 2);
        for label in ["2026-01-05", "2026-01-12", "2026-02-02"] {
            assert!(page.contains(&format!(">{label}</text>")), "{label}");
        }
        assert!(page.contains("a (13 redeemed)") && page.contains("b (2 redeemed)"));
    }

    #[test]
    fn money_and_missing_figures_read_plainly() {
        let mut m = Amounts::new();
        assert_eq!(money(&m), "–");
        m.insert("EUR".into(), "12.50".into());
        m.insert("USD".into(), "3.00".into());
        assert_eq!(
            money(&m),
            "<span class=\"amount\">12.50 EUR</span>, <span class=\"amount\">3.00 USD</span>"
        );
        assert_eq!(percent(None), "–");
        assert_eq!(percent(Some(0.2345)), "23.4%");
        assert_eq!(points(-0.00001), "0.0 pts");
        assert_eq!(points(0.061), "+6.1 pts");
    }

    #[test]
    fn axis_ticks_are_round_and_cover_the_values() {
        let axis = Axis::new(-0.013, 0.087, 6, 0.01, 0.0);
        let ticks = axis.ticks();
        assert!(ticks.first().is_some_and(|t| *t <= -0.013));
        assert!(ticks.last().is_some_and(|t| *t >= 0.087));
        assert!(ticks.len() >= 3 && ticks.len() <= 12, "{ticks:?}");
        let counts = Axis::new(0.0, 1.0, 5, 1.0, 1.0);
        assert_eq!(counts.ticks(), vec![0.0, 1.0]);
        let broken = Axis::new(f64::NAN, 1.0, 5, 1.0, 1.0);
        assert!(broken.hi > broken.lo);
    }
}
