//! The effect report as text, for a terminal: one block per rule or follow-up.

use super::{Amounts, Report, RuleEffect, Uplift};
use std::fmt::Write as _;

fn pct(r: Option<f64>) -> String {
    match r {
        Some(r) if r.is_finite() => format!("{:.1}%", r * 100.0),
        _ => "-".into(),
    }
}

/// Percentage points, signed.
fn points(r: f64) -> String {
    format!("{:+.1}", r * 100.0)
}

fn amounts(m: &Amounts) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(c, a)| format!("{a} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn days(d: Option<f64>) -> String {
    d.filter(|d| d.is_finite())
        .map_or("-".into(), |d| format!("{d:.0} days"))
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Effect report: repeat purchases within {} days of a rule's first treatment of a customer, \
         treated against its held-out customers",
        r.window_days
    );
    match (&r.as_of, &r.cohort_until) {
        (Some(as_of), Some(until)) => {
            let _ = writeln!(
                out,
                "Compared: customers first exposed {} to {until}; as of {as_of} (the newest decision)",
                r.since
                    .as_deref()
                    .map_or("from the start".to_string(), |s| format!("from {s}")),
            );
        }
        _ => {
            let _ = writeln!(out, "Nothing to report yet: the store holds no decisions.");
            return out;
        }
    }
    let method = r
        .rules
        .iter()
        .find_map(|e| e.uplift.as_ref().map(|u| u.method.clone()))
        .unwrap_or_else(|| super::stats::NEWCOMBE_METHOD.to_string());
    let _ = writeln!(
        out,
        "Uplift: treated rate less held-out rate in points, 95% interval by the {method} method; \
         relative uplift by the {} method.",
        super::stats::KATZ_METHOD
    );
    for e in &r.rules {
        out.push('\n');
        effect(&mut out, e, r.target_uplift);
    }
    out
}

fn effect(out: &mut String, e: &RuleEffect, target_uplift: f64) {
    let kind = if e.kind == "followup" {
        "follow-up"
    } else {
        "rule"
    };
    let _ = writeln!(out, "{kind} {} ({})", e.id, e.mode);
    let _ = writeln!(
        out,
        "  customers          treated {:<10} held out {:<10} shadow {:<6} still in window {}{}",
        e.treated,
        e.held_out,
        e.shadow,
        e.in_window,
        if e.mixed > 0 {
            format!(", in both groups {}", e.mixed)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "  repeat rate        treated {:<10} held out {}",
        pct(e.repeat_rate.treated),
        pct(e.repeat_rate.held_out)
    );
    if let Some(u) = &e.uplift {
        let relative = e.relative_uplift.as_ref().map_or(String::new(), |r| {
            format!(
                "   relative {:+.0}% [{:+.0}%, {:+.0}%]",
                r.value * 100.0,
                r.low * 100.0,
                r.high * 100.0
            )
        });
        let verdict = verdict(u);
        let _ = writeln!(
            out,
            "  uplift             {}{relative}: {verdict}",
            interval(u)
        );
    }
    let _ = writeln!(
        out,
        "  later orders       treated {:<10} held out {:<10} extra orders {}",
        e.later_orders.treated,
        e.later_orders.held_out,
        e.extra_orders
            .filter(|x| x.is_finite())
            .map_or("-".into(), |x| format!("{x:.1}"))
    );
    let _ = writeln!(
        out,
        "  revenue/customer   treated {:<10} held out {:<10} extra revenue {}",
        amounts(&e.revenue_per_customer.treated),
        amounts(&e.revenue_per_customer.held_out),
        amounts(&e.extra_revenue)
    );
    let cost_line = if e.mode == "shadow" {
        format!("would have cost {}", amounts(&e.would_have_cost))
    } else {
        format!(
            "{}   held out would have cost {}",
            amounts(&e.cost),
            amounts(&e.would_have_cost)
        )
    };
    let _ = writeln!(out, "  cost               {cost_line}");
    let _ = writeln!(
        out,
        "  cost/extra order   {}",
        e.cost_per_extra_order.as_ref().map_or("-".into(), amounts)
    );
    variants(out, e);
    if e.coupons_issued > 0 {
        let _ = writeln!(
            out,
            "  coupons            {} issued, {} redeemed ({}), face value redeemed {}",
            e.coupons_issued,
            e.redeemed,
            pct(e.redemption_rate),
            amounts(&e.redeemed_face_value)
        );
    }
    let nps = |n: &Option<super::Nps>| {
        n.as_ref().map_or("-".to_string(), |n| {
            format!(
                "{:.1} (score {:+.0}, {} answers)",
                n.mean, n.score, n.answers
            )
        })
    };
    if e.nps.treated.is_some() || e.nps.held_out.is_some() {
        let _ = writeln!(
            out,
            "  NPS after          treated {}   held out {}",
            nps(&e.nps.treated),
            nps(&e.nps.held_out)
        );
    }
    let _ = writeln!(
        out,
        "  customer for       treated {:<10} held out {}",
        days(e.relationship_days.treated),
        days(e.relationship_days.held_out)
    );
    if let Some(line) = power_line(e, target_uplift) {
        let _ = writeln!(out, "  power              {line}");
    }
    if let Some(w) = &e.warning {
        let _ = writeln!(out, "  warning: {w}");
    }
    if let Some(w) = &e.sample_ratio.warning {
        let _ = writeln!(out, "  warning: {w}");
    }
}

/// What an interval says of the treated against the held out.
fn verdict(u: &Uplift) -> &'static str {
    if u.low > 0.0 {
        "brings customers back"
    } else if u.high < 0.0 {
        "keeps customers away"
    } else {
        "no clear effect"
    }
}

/// `+12.1 points [+6.0, +18.0]`
fn interval(u: &Uplift) -> String {
    format!(
        "{} points [{}, {}]",
        points(u.absolute),
        points(u.low),
        points(u.high)
    )
}

/// An experiment's variants: each against the holdout, each pair, and the better one when an
/// interval says so.
fn variants(out: &mut String, e: &RuleEffect) {
    if e.variants.is_empty() {
        return;
    }
    let width = e.variants.iter().map(|v| v.id.len()).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "  variants           each against the held out who would have had it:"
    );
    for v in &e.variants {
        let against = v.uplift.as_ref().map_or("-".to_string(), |u| {
            format!("{}: {}", interval(u), verdict(u))
        });
        let cost = v.cost_per_extra_order.as_ref().map_or(String::new(), |c| {
            format!(", cost/extra order {}", amounts(c))
        });
        let _ = writeln!(
            out,
            "    {:<width$}  weight {:<4} treated {:<7} held out {:<6} repeat rate {:<6} vs {:<6} uplift {against}{cost}",
            v.id,
            v.weight,
            v.treated,
            v.held_out,
            pct(v.repeat_rate.treated),
            pct(v.repeat_rate.held_out)
        );
    }
    // Each pair once, in the order the rules list the variants.
    for (i, v) in e.variants.iter().enumerate() {
        for other in &e.variants[i + 1..] {
            let Some(u) = v
                .versus
                .iter()
                .find(|c| c.variant == other.id)
                .and_then(|c| c.uplift.as_ref())
            else {
                continue;
            };
            let which = if u.low > 0.0 {
                format!("{} is better", v.id)
            } else if u.high < 0.0 {
                format!("{} is better", other.id)
            } else {
                "cannot tell them apart yet".to_string()
            };
            let _ = writeln!(
                out,
                "    {} vs {}: {}: {which}",
                v.id,
                other.id,
                interval(u)
            );
        }
    }
    let best = e.best_variant.as_deref().map_or(
        "none yet (no variant's interval against every other lies above zero)".to_string(),
        |b| format!("{b} (its interval against every other variant lies above zero)"),
    );
    let _ = writeln!(out, "  best variant       {best}");
}

/// What the counts can tell: the smallest uplift they detect now, and the customers per group
/// the target uplift needs.
fn power_line(e: &RuleEffect, target_uplift: f64) -> Option<String> {
    let detects = e
        .detectable_uplift
        .map(|d| format!("detects {} points or more now", points(d)));
    let needs = e.needed_per_group.map(|n| {
        format!(
            "{} points needs about {} customers per group",
            points(target_uplift),
            thousands(n)
        )
    });
    match (detects, needs) {
        (Some(d), Some(n)) => Some(format!("{d}; {n}")),
        (d, n) => d.or(n),
    }
}

/// 2900 as "2 900".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}
