//! An experiment's variants in the effect report: each against the held-out customers who
//! would have had it (its uplift and cost per extra order, as the rule's own), against each
//! other variant, and the one shown better than all the others, if any.

use super::effect::{Arms, ExtraOrders, Group};
use super::*;

/// The variants of a rule: those the rules configure, in their order, then any the store has
/// that the rules no longer do (weight 0). Empty for a rule without variants. Each variant is
/// compared with the held-out customers who would have had it: the same draw and the same
/// checks (stock, budget, places) chose both, so a variant skipped more often than another is
/// still compared like with like.
pub(super) fn variant_effects(
    source: &Source,
    groups: &Arms<'_>,
    costs: &BTreeMap<&str, BTreeMap<String, Decimal>>,
) -> (Vec<VariantEffect>, Option<String>) {
    let mut ids: Vec<(String, u32)> = source.variants.clone();
    for id in groups.variants.keys().chain(costs.keys()) {
        if !ids.iter().any(|(known, _)| known == id) {
            ids.push((id.to_string(), 0));
        }
    }
    let group = |id: &str| groups.variants.get(id).copied().unwrap_or_default();
    let held_out = |id: &str| {
        groups
            .held_out_variants
            .get(id)
            .copied()
            .unwrap_or_default()
    };
    let mut out: Vec<VariantEffect> = Vec::with_capacity(ids.len());
    for (id, weight) in &ids {
        let (g, h) = (group(id), held_out(id));
        let cost = costs.get(id.as_str()).cloned().unwrap_or_default();
        let versus = ids
            .iter()
            .filter(|(other, _)| other != id)
            .map(|(other, _)| VariantComparison {
                variant: other.clone(),
                uplift: difference(g, group(other)),
            })
            .collect();
        out.push(VariantEffect {
            id: id.clone(),
            weight: *weight,
            treated: g.matured,
            held_out: h.matured,
            repeat_rate: PerGroup {
                treated: g.rate(),
                held_out: h.rate(),
            },
            uplift: difference(g, h),
            cost_per_extra_order: ExtraOrders::of(g, h).cost_per_order(&cost),
            cost: money(cost),
            versus,
        });
    }
    // Only a configured variant can be the best, against the other configured ones: a removed
    // variant is history, and its customers still in their window would hold the answer back.
    let live: Vec<&str> = source.variants.iter().map(|(id, _)| id.as_str()).collect();
    let best = out
        .iter()
        .filter(|v| live.contains(&v.id.as_str()))
        .find(|v| {
            let others: Vec<_> = v
                .versus
                .iter()
                .filter(|c| live.contains(&c.variant.as_str()))
                .collect();
            !others.is_empty()
                && others
                    .iter()
                    .all(|c| c.uplift.as_ref().is_some_and(|u| u.low > 0.0))
        })
        .map(|v| v.id.clone());
    (out, best)
}

/// The repeat rate of `a` less that of `b`, with its 95% interval; null until both have a
/// cohort.
pub(super) fn difference(a: Group, b: Group) -> Option<Uplift> {
    stats::newcombe_difference(a.repeaters, a.matured, b.repeaters, b.matured, stats::Z95).map(
        |d| Uplift {
            absolute: d.absolute,
            low: d.low,
            high: d.high,
            method: stats::NEWCOMBE_METHOD.to_string(),
        },
    )
}
