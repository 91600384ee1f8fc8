//! The page's tables: the summary at a glance (one line per rule) and every figure of one rule
//! or follow-up.

use super::figures::{
    Verdict, decimal, money, name, nps_text, percent, relative_text, uplift_text,
};
use super::{DASH, escape};
use crate::report::RuleEffect;

/// One line per rule: the figures that say whether it pays.
pub(super) fn summary(rules: &[RuleEffect]) -> String {
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
pub(super) fn table(rule: &RuleEffect) -> String {
    let verdict = Verdict::of(rule.uplift.as_ref());
    let warning: String = [
        rule.warning.as_deref(),
        rule.sample_ratio.warning.as_deref(),
    ]
    .into_iter()
    .flatten()
    .map(|w| {
        format!(
            "<div class=\"warning\" role=\"note\"><strong>Warning:</strong> {}</div>\n",
            escape(w)
        )
    })
    .collect();
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
    let variants = variant_rows(rule, &whole);
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
         {groups}{effect_title}{effect}{variants}{coupon_title}{coupons}{other_title}{others}</tbody>\n</table>\n</article>\n",
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

/// An experiment's rows: each variant against the held out, each pair, and the better one.
fn variant_rows(rule: &RuleEffect, whole: &dyn Fn(&str, String) -> String) -> String {
    if rule.variants.is_empty() {
        return String::new();
    }
    let mut rows = String::from(
        "<tr><th class=\"part\" colspan=\"3\">Variants (each against the held out who would have had it)</th></tr>\n",
    );
    for v in &rule.variants {
        let verdict = Verdict::of(v.uplift.as_ref());
        let cost = v
            .cost_per_extra_order
            .as_ref()
            .map(|c| format!("; cost per extra order {}", money(c)))
            .unwrap_or_default();
        rows.push_str(&whole(
            &format!("{} (weight {})", escape(&v.id), v.weight),
            format!(
                "{} treated, {} held out; repeat rate {} against {}; uplift <span class=\"{}\">{}</span>{cost}",
                v.treated,
                v.held_out,
                percent(v.repeat_rate.treated),
                percent(v.repeat_rate.held_out),
                verdict.class(),
                uplift_text(v.uplift.as_ref()),
            ),
        ));
    }
    for (i, v) in rule.variants.iter().enumerate() {
        for other in &rule.variants[i + 1..] {
            let u = v
                .versus
                .iter()
                .find(|c| c.variant == other.id)
                .and_then(|c| c.uplift.as_ref());
            let class = Verdict::of(u).class();
            rows.push_str(&whole(
                &format!("{} vs {}", escape(&v.id), escape(&other.id)),
                format!("<span class=\"{class}\">{}</span>", uplift_text(u)),
            ));
        }
    }
    let best = rule.best_variant.as_deref().map_or_else(
        || "none yet".to_string(),
        |b| format!("<strong class=\"green\">{}</strong>", escape(b)),
    );
    rows.push_str(&whole("Best variant", best));
    rows
}
