//! From parsed files to a [`RuleSet`]: the package, segments, inserts, rules and follow-ups
//! of every file, checked against each other.

use super::followup::{build_email, build_followup};
use super::inserts::build_insert;
use super::names::{Ids, TemplateNames};
use super::rule::build_rule;
use super::values::{condition, currency_at, eur};
use super::*;

pub(super) fn build(
    files: &[Source],
    parsed: Vec<(usize, RuleFile)>,
    templates: Templates,
    template_names: &TemplateNames,
    version: String,
    c: &mut Collector,
) -> Option<RuleSet> {
    let mut package: Option<Package> = None;
    let mut email: Option<EmailPolicy> = None;
    let mut package_seen: Option<(&Source, usize)> = None;
    let mut email_seen: Option<(&Source, usize)> = None;

    // First pass: package and insert catalogue, so rules in earlier files may name inserts of later ones.
    let mut insert_ids = Ids::new("insert");
    let mut inserts: Vec<Insert> = Vec::new();
    for (i, file) in &parsed {
        let src = &files[*i];
        if let Some(p) = &file.package {
            if let Some((first, at)) = package_seen {
                let (line, col) = first.position(at);
                c.error(
                    src,
                    &p.span(),
                    format!(
                        "a second [package] (the first is at {}:{line}:{col})",
                        first.path.display()
                    ),
                );
            }
            package_seen = Some((src, p.span().start));
            let spec = p.get_ref();
            let currency = match &spec.currency {
                None => Some(eur()),
                Some(cur) => currency_at(src, cur, c),
            };
            if spec.max_inserts == Some(0) {
                c.error(src, &p.span(), "max_inserts must be at least 1");
            }
            package = currency.map(|currency| Package {
                max_inserts: spec.max_inserts.unwrap_or(3).max(1),
                currency,
            });
        }
    }
    let package = package.unwrap_or(Package {
        max_inserts: 3,
        currency: eur(),
    });

    for (i, file) in &parsed {
        let src = &files[*i];
        for spec in &file.insert {
            insert_ids.add(src, &spec.id, c);
            if let Some(insert) = build_insert(src, spec, template_names, c) {
                inserts.push(insert);
            }
        }
    }
    let insert_index: HashMap<String, usize> = inserts
        .iter()
        .enumerate()
        .map(|(i, x)| (x.id.clone(), i))
        .collect();

    let ty_order = expr::context_type(false);
    let ty_delivery = expr::context_type(true);
    let mut segment_ids = Ids::new("segment");
    let mut segments: Vec<Segment> = Vec::new();
    let mut all_segment_ids: HashSet<String> = HashSet::new();
    for (_, file) in &parsed {
        for s in &file.segment {
            all_segment_ids.insert(s.id.get_ref().clone());
        }
    }
    // Names count as defined even when their condition is broken: that error is reported once,
    // not again at every rule that reads the segment.
    let mut segment_names: Vec<&str> = Vec::new();
    for (i, file) in &parsed {
        let src = &files[*i];
        for spec in &file.segment {
            segment_ids.add(src, &spec.id, c);
            let cond = condition(
                src,
                &spec.when,
                &ty_order,
                Some((&segment_names, &all_segment_ids)),
                c,
            );
            segment_names.push(spec.id.get_ref());
            if let Some(when) = cond {
                segments.push(Segment {
                    id: spec.id.get_ref().clone(),
                    when,
                });
            }
        }
    }

    let mut rule_ids = Ids::new("rule or follow-up");
    let mut rules: Vec<Rule> = Vec::new();
    let mut followups: Vec<Followup> = Vec::new();
    for (i, file) in &parsed {
        let src = &files[*i];
        for spec in &file.rule {
            rule_ids.add(src, &spec.id, c);
            if let Some(rule) = build_rule(
                src,
                spec,
                &insert_index,
                &inserts,
                &ty_order,
                &segment_names,
                &all_segment_ids,
                c,
            ) {
                rules.push(rule);
            }
        }
    }
    for (i, file) in &parsed {
        let src = &files[*i];
        for spec in &file.followup {
            rule_ids.add(src, &spec.id, c);
            if let Some(f) = build_followup(
                src,
                spec,
                &insert_index,
                &inserts,
                template_names,
                (&ty_order, &ty_delivery),
                &segment_names,
                &all_segment_ids,
                c,
            ) {
                followups.push(f);
            }
        }
        if let Some(e) = &file.email {
            if let Some((first, at)) = email_seen {
                let (line, col) = first.position(at);
                c.error(
                    src,
                    &e.span(),
                    format!(
                        "a second [email] (the first is at {}:{line}:{col})",
                        first.path.display()
                    ),
                );
            }
            email_seen = Some((src, e.span().start));
            email = build_email(src, e.get_ref(), c);
        }
    }
    // Stable sort: ties keep file order.
    rules.sort_by_key(|r| std::cmp::Reverse(r.priority));

    let followup_variants = followups
        .iter()
        .flat_map(|f| f.variants.iter().map(move |v| (f, v)))
        .map(|(f, v)| ((f.id.clone(), v.id.clone()), f.as_variant(v)))
        .collect();
    Some(RuleSet {
        version,
        package,
        segments,
        inserts,
        rules,
        followups,
        followup_variants,
        email: email.unwrap_or_default(),
        templates,
        needs: c.needs,
        insert_index,
    })
}
