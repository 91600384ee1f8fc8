//! One `[[rule]]`: its condition, what it gives, when it is active, its group, cooldown,
//! holdout and budget.

use super::inserts::give_list;
use super::values::{condition, duration_at, mode_at, money_map, percent_at};
use super::variants::{Owner, VariantView, build_variants};
use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) fn build_rule(
    src: &Source,
    spec: &model::RuleSpec,
    insert_index: &HashMap<String, usize>,
    inserts: &[Insert],
    ty: &zen_expression::variable::VariableType,
    segments: &[&str],
    all_segments: &HashSet<String>,
    c: &mut Collector,
) -> Option<Rule> {
    let id = spec.id.get_ref().clone();
    let owner = format!("rule {id:?}");
    let when = condition(src, &spec.when, ty, Some((segments, all_segments)), c);
    if spec.give.is_empty() && spec.variants.is_empty() {
        c.error(
            src,
            &spec.id.span(),
            format!("{owner} gives nothing: `give` lists no insert"),
        );
    }
    let give = give_list(src, &owner, &spec.give, insert_index, inserts, false, c);
    let views: Vec<VariantView<'_>> = spec.variants.iter().map(VariantView::from).collect();
    let experiment = Owner {
        name: &owner,
        span: spec.id.span(),
        give: &spec.give,
        followup: false,
    };
    let variants = build_variants(src, &experiment, &views, insert_index, inserts, c);
    let cooldown = spec
        .cooldown
        .as_ref()
        .and_then(|d| duration_at(src, d, "cooldown", c));
    let holdout_bp = percent_at(src, &spec.holdout, c);
    let (mut active_from, mut active_until) = (None, None);
    if let Some(a) = &spec.active {
        let parse = |s: &Option<Spanned<String>>, c: &mut Collector| {
            s.as_ref().and_then(|s| match parse_date(s.get_ref()) {
                Ok(d) => Some(d),
                Err(e) => {
                    c.error(src, &s.span(), format!("active: {e}"));
                    None
                }
            })
        };
        active_from = parse(&a.get_ref().from, c);
        active_until = parse(&a.get_ref().until, c);
        if let (Some(f), Some(u)) = (active_from, active_until)
            && f > u
        {
            c.error(
                src,
                &a.span(),
                format!("active: `from` ({f}) is after `until` ({u})"),
            );
        }
    }
    let budget = spec.budget.as_ref().and_then(|b| build_budget(src, b, c));
    let mode = mode_at(src, &spec.mode, true, c);
    Some(Rule {
        id,
        when: when?,
        give,
        variants,
        priority: spec.priority.unwrap_or(0),
        group: spec.group.clone(),
        cooldown,
        holdout_bp,
        active_from,
        active_until,
        budget,
        mode,
    })
}

fn build_budget(
    src: &Source,
    b: &Spanned<std::collections::BTreeMap<String, Spanned<String>>>,
    c: &mut Collector,
) -> Option<Budget> {
    let mut map = b.get_ref().clone();
    let per = match map.remove("per") {
        None => {
            c.error(
                src,
                &b.span(),
                "budget: `per` is missing (\"month\", \"week\" or \"day\")",
            );
            return None;
        }
        Some(p) => match p.get_ref().as_str() {
            "month" => Period::Month,
            "week" => Period::Week,
            "day" => Period::Day,
            other => {
                c.error(
                    src,
                    &p.span(),
                    format!(
                        "budget: bad period {other:?}: expected \"month\", \"week\" or \"day\""
                    ),
                );
                return None;
            }
        },
    };
    if map.is_empty() {
        c.error(
            src,
            &b.span(),
            "budget: name at least one currency, e.g. { EUR = \"2000.00\", per = \"month\" }",
        );
        return None;
    }
    let spanned = Spanned::new(b.span(), map);
    let limits = money_map(src, &spanned, "budget", c);
    Some(Budget { per, limits })
}
