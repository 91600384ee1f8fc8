//! The page's two inline SVG charts: the uplift of each rule with its interval, and coupon
//! redemptions per week; with their axes of round ticks.

use super::figures::{Verdict, signed};
use super::{COLOURS, DASHES, escape};
use crate::report::{RuleEffect, Uplift};
use chrono::NaiveDate;
use std::collections::BTreeSet;

/// A linear axis over "nice" round ticks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Axis {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) step: f64,
}

impl Axis {
    /// Round ticks covering `lo..=hi`, about `target` of them, at least `min_span` wide (so
    /// that a single value still gets a scale) and `min_step` apart (counts tick by whole
    /// numbers).
    pub(super) fn new(lo: f64, hi: f64, target: u32, min_span: f64, min_step: f64) -> Axis {
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

    pub(super) fn ticks(&self) -> Vec<f64> {
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
    pub(super) fn place(&self, v: f64, from: f64, to: f64) -> f64 {
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

/// Chart 1: the uplift of each rule with its 95% interval, one row per rule (and under a rule
/// with variants, one per variant against the same holdout), around zero.
pub(super) fn uplift_chart(rules: &[RuleEffect]) -> String {
    // (full name, row label, uplift)
    let mut rows: Vec<(String, String, &Uplift)> = Vec::new();
    for r in rules {
        if let Some(u) = &r.uplift {
            rows.push((r.id.clone(), short(&r.id, 30), u));
        }
        for v in &r.variants {
            if let Some(u) = &v.uplift {
                let name = format!("{} \u{203a} {}", r.id, v.id);
                rows.push((name, format!("\u{203a} {}", short(&v.id, 26)), u));
            }
        }
    }
    rows.retain(|(_, _, u)| [u.absolute, u.low, u.high].iter().all(|v| v.is_finite()));
    let shown_rules = rules
        .iter()
        .filter(|r| rows.iter().any(|(name, _, _)| *name == r.id))
        .count();
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
        .map(|(_, _, u)| u.low.min(u.absolute))
        .fold(0.0, f64::min);
    let hi = rows
        .iter()
        .map(|(_, _, u)| u.high.max(u.absolute))
        .fold(0.0, f64::max);
    let axis = Axis::new(lo, hi, 6, 0.01, 0.0);
    let x = |v: f64| axis.place(v, PLOT_LEFT, PLOT_RIGHT);
    let bottom = TOP + ROW_HEIGHT * rows.len() as f64;
    let height = bottom + 52.0;

    let mut svg = format!(
        "<svg id=\"uplift-chart\" role=\"img\" aria-labelledby=\"uplift-title uplift-desc\" \
         viewBox=\"0 0 {FOREST_WIDTH} {height:.0}\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <title id=\"uplift-title\">Uplift in repeat-purchase rate per rule and follow-up, with 95% intervals</title>\n\
         <desc id=\"uplift-desc\">One row per rule, and per variant of an experiment under its rule: \
         the dot is the treated rate less the held-out rate, in percentage points; the line is its \
         95% interval. Green rows lie wholly above zero, red rows wholly below, grey rows hold zero.</desc>\n"
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
    for (i, (name, label, u)) in rows.iter().enumerate() {
        let y = TOP + ROW_HEIGHT * (i as f64 + 0.5);
        let class = Verdict::of(Some(u)).class();
        let label = escape(label);
        let id = escape(name);
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
    let missing = match rules.len().saturating_sub(shown_rules) {
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
pub(super) fn redemptions_chart(rules: &[RuleEffect]) -> String {
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
