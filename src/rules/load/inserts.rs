//! Inserts (coupons, notes, gifts, samples, packaging) and the `give` lists of rules and
//! follow-ups that name them.

use super::names::{TemplateNames, names_a_language_version};
use super::values::{money_map, rule_amount};
use super::*;

pub(super) fn build_insert(
    src: &Source,
    spec: &model::InsertSpec,
    templates: &TemplateNames,
    c: &mut Collector,
) -> Option<Insert> {
    let id = spec.id.get_ref().clone();
    let span = spec.id.span();
    let not_for = |c: &mut Collector, key: &str, kinds: &str| {
        c.error(
            src,
            &span,
            format!("insert {id:?}: `{key}` applies to {kinds} only"),
        );
    };
    let coupon_keys = spec.amount.is_some()
        || spec.min_order.is_some()
        || spec.valid_days.is_some()
        || spec.code_prefix.is_some();
    let item_keys = spec.sku.is_some() || spec.unit_cost.is_some() || spec.stock.is_some();
    let body = match spec.kind {
        InsertKind::Coupon => {
            if item_keys {
                not_for(c, "sku/unit_cost/stock", "gifts, samples and packaging");
            }
            if spec.template.is_some() {
                not_for(c, "template", "notes");
            }
            let Some(amount_spec) = &spec.amount else {
                c.error(
                    src,
                    &span,
                    format!("coupon {id:?} has no `amount` (e.g. amount = {{ EUR = \"10.00\" }})"),
                );
                return None;
            };
            let amount = money_map(src, amount_spec, "amount", c);
            if amount_spec.get_ref().is_empty() {
                c.error(
                    src,
                    &amount_spec.span(),
                    format!("coupon {id:?}: `amount` names no currency"),
                );
            }
            let min_order = spec
                .min_order
                .as_ref()
                .map(|m| money_map(src, m, "min_order", c))
                .unwrap_or_default();
            let code_prefix = match &spec.code_prefix {
                None => "PW".to_string(),
                Some(p) => {
                    let ok = !p.get_ref().is_empty()
                        && p.get_ref().len() <= 16
                        && p.get_ref()
                            .chars()
                            .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit());
                    if !ok {
                        c.error(
                            src,
                            &p.span(),
                            "code_prefix: use 1 to 16 upper-case letters or digits",
                        );
                    }
                    p.get_ref().clone()
                }
            };
            if spec.valid_days == Some(0) {
                c.error(
                    src,
                    &span,
                    format!("coupon {id:?}: valid_days must be at least 1"),
                );
            }
            InsertBody::Coupon(CouponSpec {
                amount,
                min_order,
                valid_days: spec.valid_days.unwrap_or(30),
                code_prefix,
            })
        }
        InsertKind::Note => {
            if coupon_keys {
                not_for(c, "amount/min_order/valid_days/code_prefix", "coupons");
            }
            if item_keys {
                not_for(c, "sku/unit_cost/stock", "gifts, samples and packaging");
            }
            let Some(t) = &spec.template else {
                c.error(
                    src,
                    &span,
                    format!("note {id:?} has no `template` (templates/notes/NAME.hbs)"),
                );
                return None;
            };
            if let Some(version) = templates.note_language(t.get_ref()) {
                c.error(
                    src,
                    &t.span(),
                    names_a_language_version("note", t.get_ref(), version),
                );
            } else if !templates.has_note(t.get_ref()) {
                let hint = closest(
                    t.get_ref(),
                    templates.notes.iter().map(String::as_str),
                    SharedStart,
                )
                .map(|s| format!(", did you mean {s:?}?"))
                .unwrap_or_default();
                c.error(
                    src,
                    &t.span(),
                    format!(
                        "unknown note template {:?} (no templates/notes/{}.hbs){hint}",
                        t.get_ref(),
                        t.get_ref()
                    ),
                );
            }
            InsertBody::Note {
                template: t.get_ref().clone(),
            }
        }
        InsertKind::Gift | InsertKind::Sample | InsertKind::Packaging => {
            if coupon_keys {
                not_for(c, "amount/min_order/valid_days/code_prefix", "coupons");
            }
            if spec.template.is_some() {
                not_for(c, "template", "notes");
            }
            let unit_cost = match &spec.unit_cost {
                None => Decimal::ZERO,
                Some(u) => match rule_amount(u.get_ref()) {
                    Ok(d) if d >= Decimal::ZERO => d,
                    Ok(_) => {
                        c.error(src, &u.span(), "unit_cost must not be negative");
                        Decimal::ZERO
                    }
                    Err(e) => {
                        c.error(src, &u.span(), format!("unit_cost: {e}"));
                        Decimal::ZERO
                    }
                },
            };
            let stock = spec.stock.as_ref().map(|s| match s.get_ref() {
                StockSpec::Pool(n) => Stock::Pool(*n),
                StockSpec::PerWarehouse(m) => Stock::PerWarehouse(m.clone()),
            });
            InsertBody::Item {
                sku: spec.sku.clone(),
                unit_cost,
                stock,
            }
        }
    };
    Some(Insert {
        id,
        kind: spec.kind,
        title: spec.title.clone(),
        body,
    })
}

pub(super) fn give_list(
    src: &Source,
    owner: &str,
    give: &[Spanned<String>],
    insert_index: &HashMap<String, usize>,
    inserts: &[Insert],
    coupons_only: bool,
    c: &mut Collector,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(give.len());
    for g in give {
        match insert_index.get(g.get_ref()) {
            Some(i) => {
                if coupons_only && inserts[*i].kind != InsertKind::Coupon {
                    c.error(
                        src,
                        &g.span(),
                        format!(
                            "{owner}: a follow-up can only give coupons, {:?} is a {}",
                            g.get_ref(),
                            inserts[*i].kind.as_str()
                        ),
                    );
                } else if out.contains(i) {
                    c.error(
                        src,
                        &g.span(),
                        format!("{owner}: insert {:?} is given twice", g.get_ref()),
                    );
                } else {
                    out.push(*i);
                }
            }
            None => {
                let hint = closest(
                    g.get_ref(),
                    insert_index.keys().map(String::as_str),
                    SharedStart,
                )
                .map(|s| format!(", did you mean {s:?}?"))
                .unwrap_or_default();
                c.error(
                    src,
                    &g.span(),
                    format!("{owner}: unknown insert {:?}{hint}", g.get_ref()),
                );
            }
        }
    }
    out
}
