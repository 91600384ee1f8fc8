//! One `[[followup]]` e-mail and the `[email]` policy (frequency, quiet hours, time zone,
//! expiry) every follow-up is sent under.

use super::inserts::give_list;
use super::names::{TemplateNames, names_a_language_version};
use super::values::{condition, duration_at, mode_at, percent_at};
use super::variants::{Owner, VariantView, build_variants};
use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) fn build_followup(
    src: &Source,
    spec: &model::FollowupSpec,
    insert_index: &HashMap<String, usize>,
    inserts: &[Insert],
    templates: &TemplateNames,
    types: (
        &zen_expression::variable::VariableType,
        &zen_expression::variable::VariableType,
    ),
    segments: &[&str],
    all_segments: &HashSet<String>,
    c: &mut Collector,
) -> Option<Followup> {
    let id = spec.id.get_ref().clone();
    let owner = format!("follow-up {id:?}");
    let on = match spec.on.get_ref().as_str() {
        "order.placed" => Some(Trigger::OrderPlaced),
        "order.shipped" => Some(Trigger::OrderShipped),
        "order.delivered" => Some(Trigger::OrderDelivered),
        other => {
            c.error(
                src,
                &spec.on.span(),
                format!(
                    "bad `on` {other:?}: expected order.placed, order.shipped or order.delivered"
                ),
            );
            None
        }
    };
    let ty = if on == Some(Trigger::OrderDelivered) {
        types.1
    } else {
        types.0
    };
    let when = match &spec.when {
        None => Some(None),
        Some(w) => condition(src, w, ty, Some((segments, all_segments)), c).map(Some),
    };
    check_email_template(src, &spec.template, templates, c);
    let after = duration_at(src, &spec.after, "after", c);
    let give = give_list(src, &owner, &spec.give, insert_index, inserts, true, c);
    for template in spec.variants.iter().filter_map(|v| v.template.as_ref()) {
        check_email_template(src, template, templates, c);
    }
    let views: Vec<VariantView<'_>> = spec.variants.iter().map(VariantView::from).collect();
    let experiment = Owner {
        name: &owner,
        span: spec.id.span(),
        give: &spec.give,
        followup: true,
    };
    let variants = build_variants(src, &experiment, &views, insert_index, inserts, c);
    let holdout_bp = percent_at(src, &spec.holdout, c);
    let mode = mode_at(src, &spec.mode, false, c);
    Some(Followup {
        id,
        on: on?,
        when: when?,
        template: spec.template.get_ref().clone(),
        after: after?,
        give,
        variants,
        holdout_bp,
        mode,
    })
}

/// A template that names `templates/emails/NAME/`, with the closest name when it does not.
fn check_email_template(
    src: &Source,
    template: &Spanned<String>,
    templates: &TemplateNames,
    c: &mut Collector,
) {
    let name = template.get_ref();
    if templates.has_email(name) {
        return;
    }
    if let Some(version) = templates.email_language(name) {
        c.error(
            src,
            &template.span(),
            names_a_language_version("e-mail", name, version),
        );
        return;
    }
    let hint = closest(
        name,
        templates.emails.iter().map(String::as_str),
        SharedStart,
    )
    .map(|s| format!(", did you mean {s:?}?"))
    .unwrap_or_default();
    c.error(
        src,
        &template.span(),
        format!("unknown e-mail template {name:?} (no templates/emails/{name}/){hint}"),
    );
}

pub(super) fn build_email(
    src: &Source,
    spec: &model::EmailSpec,
    c: &mut Collector,
) -> Option<EmailPolicy> {
    let mut policy = EmailPolicy::default();
    if let Some(f) = &spec.max_per_customer {
        if f.count == 0 {
            c.error(
                src,
                &f.per.span(),
                "max_per_customer: count must be at least 1",
            );
        }
        if let Some(per) = duration_at(src, &f.per, "max_per_customer.per", c) {
            policy.max_per_customer = Some((f.count, per));
        }
    }
    if let Some(q) = &spec.quiet_hours {
        let from = parse_time_of_day(q.from.get_ref())
            .map_err(|e| c.error(src, &q.from.span(), format!("quiet_hours.from: {e}")));
        let until = parse_time_of_day(q.until.get_ref())
            .map_err(|e| c.error(src, &q.until.span(), format!("quiet_hours.until: {e}")));
        if let (Ok(f), Ok(u)) = (from, until) {
            policy.quiet_hours = Some((f, u));
        }
    }
    if let Some(tz) = &spec.default_time_zone {
        match tz.get_ref().parse::<Tz>() {
            Ok(t) => policy.default_time_zone = t,
            Err(_) => c.error(
                src,
                &tz.span(),
                format!("unknown IANA time zone {:?}", tz.get_ref()),
            ),
        }
    }
    if let Some(e) = &spec.expire_after
        && let Some(d) = duration_at(src, e, "expire_after", c)
    {
        policy.expire_after = d;
    }
    Some(policy)
}
