//! An experiment's variants in the effect report: each against the holdout (its uplift and
//! cost per extra order, as the rule's own), against each other variant, and the one shown
//! better than all the others, if any.

use super::effect::{ExtraOrders, Group};
use super::*;

/// The variants of a rule: those the rules configure, in their order, then any the store has
/// that the rules no longer do (weight 0). Empty for a rule without variants.
pub(super) fn variant_effects(
    source: &Source,
    groups: &BTreeMap<&str, Group>,
    costs: &BTreeMap<&str, BTreeMap<String, Decimal>>,
    held_out: Group,
) -> (Vec<VariantEffect>, Option<String>) {
    let mut ids: Vec<(String, u32)> = source.variants.clone();
    for id in groups.keys().chain(costs.keys()) {
        if !ids.iter().any(|(known, _)| known == id) {
            ids.push((id.to_string(), 0));
        }
    }
    let group = |id: &str| groups.get(id).copied().unwrap_or_default();
    let mut out: Vec<VariantEffect> = Vec::with_capacity(ids.len());
    for (id, weight) in &ids {
        let g = group(id);
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
            repeat_rate: g.rate(),
            uplift: difference(g, held_out),
            cost_per_extra_order: ExtraOrders::of(g, held_out).cost_per_order(&cost),
            cost: money(cost),
            versus,
        });
    }
    let best = out
        .iter()
        .find(|v| {
            !v.versus.is_empty()
                && v.versus
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
