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

use super::Report;

mod charts;
mod figures;
mod tables;

use charts::{redemptions_chart, uplift_chart};
use tables::{summary, table};

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

/// The page's style sheet, inline: a page sent by e-mail may fetch nothing from elsewhere.
const STYLE: &str = concat!("\n", include_str!("report.css"));

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

#[cfg(test)]
mod tests {
    use super::charts::Axis;
    use super::figures::{money, percent, points};
    use super::*;
    use crate::report::{Amounts, Nps, PerGroup, RelativeUplift, RuleEffect, Uplift, WeekCount};

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
            sample_ratio: crate::report::SampleRatio::default(),
            detectable_uplift: None,
            needed_per_group: None,
            variants: Vec::new(),
            best_variant: None,
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
            target_uplift: 0.03,
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
