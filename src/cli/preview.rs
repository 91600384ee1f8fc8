//! `packwell preview`: a note or an e-mail rendered for an order, with the coupon codes of a
//! simulated decision, written as one HTML file.

use super::simulate::simulate_order;
use super::{CliResult, Common, Failure, RulesArgs};
use crate::engine::{CouponGiven, GivenInsert, template_context};
use crate::event::EventBody;
use std::path::PathBuf;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(Debug, clap::Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub rules: RulesArgs,
    /// A note (templates/notes/NAME.hbs) or e-mail (templates/emails/NAME/) template.
    #[arg(long, value_name = "NAME")]
    pub template: String,
    #[arg(long, value_name = "FILE")]
    pub order: PathBuf,
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// The customer's locale for this preview (BCP 47, e.g. `de`, `fr-CA`) instead of the one
    /// of the order and history: it chooses the template's language version and formats
    /// amounts and dates.
    #[arg(long, value_name = "TAG")]
    pub locale: Option<String>,
    /// Where to write the HTML (default: standard output).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(args: &PreviewArgs) -> CliResult {
    let template = args.template.as_str();
    let out = args.out.as_deref();
    let config = super::load_config(&args.common)?;
    let event = super::read_event_file(&args.order)?;
    let history = super::read_history(args.history.as_deref())?;
    let rules = super::load_valid_rules(&args.rules)?;
    let key = super::read_only_key(&config)?;
    let shop = config.shop();
    let outcome = simulate_order(&rules, &key, &shop, &history, &event, None, false)?;
    let EventBody::OrderPlaced(order) = &event.body else {
        return Err(Failure::usage(
            "error: the order file is not an order.placed event",
        ));
    };
    // The customer's profile as it stands with this order, for the template's variables.
    let mut replay = crate::replay::Replay::new(&rules, &key, &shop);
    for e in &history {
        replay.apply(e, false, false);
    }
    replay.apply(&event, false, false);
    let mut profile = replay
        .state
        .profiles
        .get(&order.customer.id)
        .cloned()
        .unwrap_or_else(|| crate::profile::Profile::new(&order.customer.id));
    let mut order = order.clone();
    if let Some(tag) = &args.locale {
        let tag = icu_locale_core::Locale::try_from_str(&tag.trim().replace('_', "-"))
            .map_err(|_| {
                Failure::usage(format!(
                    "error: --locale {tag:?} is not a BCP 47 language tag (like de, fr-CA)"
                ))
            })?
            .to_string();
        profile.locale = Some(tag.clone());
        order.customer.locale = Some(tag);
    }
    let order = &order;

    let html = if rules.templates.has_note(template) {
        // The coupons of the rule that gives this note; else every coupon of the decision.
        let note_rule = outcome.decision.inserts.iter().find(|i| {
            matches!(rules.insert(&i.insert_id).map(|x| &x.body), Some(crate::rules::InsertBody::Note { template: t }) if t == template)
        });
        let coupons: Vec<(&GivenInsert, &CouponGiven)> = outcome
            .decision
            .inserts
            .iter()
            .filter(|i| note_rule.is_none_or(|n| n.rule_id == i.rule_id))
            .filter_map(|i| i.coupon.as_ref().map(|c| (i, c)))
            .collect();
        let ctx = template_context(
            &profile,
            order,
            &crate::engine::context_coupons(&coupons),
            event.occurred_at,
            None,
            &shop,
        );
        let text = rules
            .templates
            .render_note(template, &ctx)
            .map_err(|e| Failure::finding(format!("error: {e}")))?;
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Note {t} ({file}) for order {o}</title>\n<style>body{{font-family:sans-serif;background:#eee}}.card{{background:#fffdf6;width:105mm;min-height:74mm;margin:2em auto;padding:10mm;box-shadow:0 1px 4px #999;font-family:'Segoe Script','Bradley Hand',cursive;font-size:14pt;white-space:pre-wrap}}</style></head>\n<body><div class=\"card\">{body}</div></body></html>\n",
            t = escape(template),
            file = escape(
                rules
                    .templates
                    .note_file(template, &ctx)
                    .unwrap_or_default()
            ),
            o = escape(&order.id),
            body = escape(&text)
        )
    } else if rules.templates.has_email(template) {
        // The e-mail as the sender would compose it for this order: the follow-up (or the
        // follow-up's variant) that uses the template, with its coupons as they would be
        // issued today, the order as delivered now for a follow-up on order.delivered, the
        // customer's signed unsubscribe link.
        let as_variant = rules.followups.iter().find_map(|f| {
            f.variants
                .iter()
                .filter_map(|v| rules.followup_variant(&f.id, &v.id))
                .find(|sent| sent.template == template)
        });
        let followup = rules
            .followups
            .iter()
            .find(|f| f.template == template && f.variants.is_empty())
            .or(as_variant)
            .cloned()
            .unwrap_or_else(|| crate::rules::Followup {
                id: template.to_string(),
                on: crate::rules::Trigger::OrderPlaced,
                when: None,
                template: template.to_string(),
                after: chrono::Duration::zero(),
                give: Vec::new(),
                variants: Vec::new(),
                holdout_bp: 0,
                mode: crate::rules::Mode::Live,
            });
        let mut summary = crate::profile::OrderSummary::from_order(order, event.occurred_at);
        if followup.on == crate::rules::Trigger::OrderDelivered {
            summary.delivered_at = Some(event.occurred_at);
        }
        let coupons = crate::email::compose::plan_coupons(
            &rules,
            &followup,
            &summary,
            &key,
            &Default::default(),
            event.occurred_at.date_naive(),
        );
        let unsubscribe =
            crate::email::token::unsubscribe_url(&config.public_url(), &key, &order.customer.id);
        let email = crate::email::compose::compose(&crate::email::compose::ComposeInput {
            rules: &rules,
            followup: &followup,
            profile: &profile,
            order: &summary,
            coupons: &coupons,
            shop: &shop,
            from: &config.email.from,
            unsubscribe_url: &unsubscribe,
        })
        .map_err(|e| Failure::finding(format!("error: {e}")))?;
        // The e-mail's own document, with the envelope shown above its body.
        let envelope = format!(
            "<div style=\"font-family:sans-serif;border-bottom:1px solid #ccc;padding:.5em;margin-bottom:1em\"><b>From:</b> {}<br><b>To:</b> {}<br><b>Subject:</b> {}<br><b>List-Unsubscribe:</b> {}</div>",
            escape(&email.from),
            escape(&email.to),
            escape(&email.subject),
            escape(
                email
                    .headers
                    .get("List-Unsubscribe")
                    .map(String::as_str)
                    .unwrap_or("")
            )
        );
        let text_part = format!(
            "<hr><pre style=\"white-space:pre-wrap\">{}</pre>",
            escape(&email.text)
        );
        insert_into_body(&email.html, &envelope, &text_part)
    } else if let Ok(crate::render::TemplateName {
        base,
        language: Some(language),
    }) = crate::render::split_language(template)
        && (rules.templates.has_note(base) || rules.templates.has_email(base))
    {
        return Err(Failure::usage(format!(
            "error: {template:?} is the {language} version of {base:?}: preview \
             --template {base} --locale {language}"
        )));
    } else {
        let mut names = rules.templates.note_names();
        names.extend(rules.templates.email_names());
        return Err(Failure::usage(format!(
            "error: no note or e-mail template {template:?} (known: {})",
            names.join(", ")
        )));
    };
    match out {
        Some(path) => {
            std::fs::write(path, html).map_err(|e| {
                Failure::usage(format!("error: cannot write {}: {e}", path.display()))
            })?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{html}"),
    }
    Ok(())
}

/// Puts `before` right after the `<body>` tag and `after` before `</body>`; wraps a fragment.
fn insert_into_body(html: &str, before: &str, after: &str) -> String {
    let lower = html.to_ascii_lowercase();
    match (lower.find("<body"), lower.rfind("</body>")) {
        (Some(open), Some(close)) if open < close => {
            let body_start = lower[open..]
                .find('>')
                .map(|i| open + i + 1)
                .unwrap_or(open);
            format!(
                "{}{before}{}{after}{}",
                &html[..body_start],
                &html[body_start..close],
                &html[close..]
            )
        }
        _ => format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"></head><body>{before}{html}{after}</body></html>\n"
        ),
    }
}
