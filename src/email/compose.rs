//! An e-mail as it leaves Packwell: the follow-up's templates rendered for one customer and
//! order (docs/REFERENCE.md §6) with its coupons and unsubscribe link, the `List-Unsubscribe`
//! headers of RFC 8058, and the idempotency key that names it at the provider. Pure.

use crate::coupon::CouponKey;
use crate::engine::{Shop, format_time, template_context_for};
use crate::profile::{OrderSummary, Profile, late_days};
use crate::render::{RenderError, TemplateData};
use crate::rules::{Followup, InsertBody, RuleSet, Trigger};
pub use crate::store::emails::idempotency_key;
use crate::store::emails::{EmailJob, PlannedCoupon};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// What is handed to a provider; also the body the HTTP provider receives (docs/REFERENCE.md §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingEmail {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// Extra headers: `List-Unsubscribe`, `List-Unsubscribe-Post`.
    pub headers: BTreeMap<String, String>,
    /// The follow-up id.
    pub tags: Vec<String>,
}

/// The coupons a follow-up gives with an order, as they would be issued on `today` (UTC):
/// the insert's amount in the order's currency (none in it: not given, as in parcels), codes
/// from the key with each insert's attempt (0 unless a code collided).
pub fn plan_coupons(
    rules: &RuleSet,
    followup: &Followup,
    order: &OrderSummary,
    key: &CouponKey,
    attempts: &HashMap<String, u32>,
    today: NaiveDate,
) -> Vec<PlannedCoupon> {
    followup
        .give
        .iter()
        .filter_map(|&idx| {
            let insert = rules.inserts.get(idx)?;
            let InsertBody::Coupon(c) = &insert.body else {
                return None;
            };
            let amount = c.amount.get(&order.currency)?;
            let attempt = attempts.get(&insert.id).copied().unwrap_or(0);
            Some(PlannedCoupon {
                insert_id: insert.id.clone(),
                code: key.code(&c.code_prefix, &order.id, &followup.id, &insert.id, attempt),
                amount: crate::money::format_amount(*amount),
                currency: order.currency.to_string(),
                min_order: c
                    .min_order
                    .get(&order.currency)
                    .map(|m| crate::money::format_amount(*m)),
                expires_on: (today + Duration::days(i64::from(c.valid_days)))
                    .format("%Y-%m-%d")
                    .to_string(),
            })
        })
        .collect()
}

/// Coupons found issued before, completed from the rules (the store keeps no minimum order).
pub fn complete_coupons(
    rules: &RuleSet,
    order: &OrderSummary,
    mut found: Vec<PlannedCoupon>,
) -> Vec<PlannedCoupon> {
    for c in &mut found {
        if let Some(InsertBody::Coupon(spec)) = rules.insert(&c.insert_id).map(|i| &i.body) {
            c.min_order = spec
                .min_order
                .get(&order.currency)
                .map(|m| crate::money::format_amount(*m));
        }
    }
    found
}

/// The follow-up an e-mail job is sent as: the variant it was scheduled with while the rules
/// still have it; else, for a follow-up with variants (the job was scheduled before it had
/// them, or its variant was removed since), the customer's variant now (the kept one, or a
/// fresh draw); else the follow-up as written.
pub fn followup_as_sent<'r>(
    rules: &'r RuleSet,
    job: &EmailJob,
    profile: Option<&Profile>,
) -> Option<&'r Followup> {
    let followup = rules.followup(&job.followup_id)?;
    let scheduled = job
        .variant
        .as_deref()
        .and_then(|v| rules.followup_variant(&followup.id, v));
    let now = || {
        let v = crate::engine::assigned_variant(profile?, &followup.id, &followup.variants)?;
        rules.followup_variant(&followup.id, &v.id)
    };
    scheduled.or_else(now).or(Some(followup))
}

/// Everything one e-mail is rendered from.
pub struct ComposeInput<'a> {
    pub rules: &'a RuleSet,
    pub followup: &'a Followup,
    pub profile: &'a Profile,
    pub order: &'a OrderSummary,
    pub coupons: &'a [PlannedCoupon],
    pub shop: &'a Shop,
    /// `[email] from`.
    pub from: &'a str,
    pub unsubscribe_url: &'a str,
}

/// The template data of docs/REFERENCE.md §6 for an e-mail: the customer and order as known now,
/// the follow-up's coupons, the delivery where known, the shop and the unsubscribe link.
pub fn email_context(input: &ComposeInput<'_>) -> Value {
    let order = input.order.to_order(input.profile);
    let coupons: Vec<Value> = input
        .coupons
        .iter()
        .map(|c| {
            let title = input
                .rules
                .insert(&c.insert_id)
                .and_then(|i| i.title.clone());
            json!({"code": c.code, "title": title, "amount": c.amount, "currency": c.currency,
                   "min_order": c.min_order, "expires_on": c.expires_on})
        })
        .collect();
    let delivery = input.order.delivered_at.map(|at| {
        json!({
            "delivered_at": format_time(at),
            "late_days": late_days(input.order.promised_delivery, at, input.profile.time_zone),
        })
    });
    // Only what the e-mail's templates read (all of it for a template handlebars renders).
    let mut ctx = template_context_for(
        input.profile,
        &order,
        coupons,
        input.order.placed_at,
        delivery,
        input.shop,
        input.rules.templates.email_needs(&input.followup.template),
    );
    if let Value::Object(map) = &mut ctx {
        map.insert(
            "unsubscribe_url".to_string(),
            Value::String(input.unsubscribe_url.to_string()),
        );
    }
    ctx
}

/// Renders the follow-up's e-mail for the customer.
pub fn compose(input: &ComposeInput<'_>) -> Result<OutgoingEmail, RenderError> {
    // The data is built for this e-mail only: moved into the templates' context, not copied.
    let data = TemplateData::from(email_context(input));
    let rendered = input
        .rules
        .templates
        .render_email_with(&input.followup.template, &data)?;
    let to = input.profile.email.clone().unwrap_or_default();
    let mut headers = BTreeMap::new();
    headers.insert(
        "List-Unsubscribe".to_string(),
        header_text(&format!("<{}>", input.unsubscribe_url)),
    );
    headers.insert(
        "List-Unsubscribe-Post".to_string(),
        "List-Unsubscribe=One-Click".to_string(),
    );
    Ok(OutgoingEmail {
        from: header_text(input.from),
        to: display_address(input.profile, &to),
        subject: header_text(&rendered.subject),
        html: rendered.html,
        text: rendered.text,
        headers,
        tags: vec![input.followup.id.clone()],
    })
}

/// `First Last <address>` when the name can be shown as a display name, else the address.
fn display_address(profile: &Profile, address: &str) -> String {
    let name = [profile.first_name.as_deref(), profile.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let quotable: String = name
        .chars()
        .filter(|c| !matches!(c, '"' | '\\' | '<' | '>'))
        .collect();
    let clean = header_text(&quotable);
    if clean.trim().is_empty() || address.is_empty() {
        address.to_string()
    } else {
        format!("\"{}\" <{address}>", clean.trim())
    }
}

/// Text for one header line, whatever the customer's data or a template put in it: line
/// breaks, tabs and other spaces become one space, and control characters (C0 and C1, NUL
/// included) and the bidirectional formatting characters are removed, so a name can neither
/// add a header nor make the subject read backwards (U+202E) in the customer's mail client.
pub fn header_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
        } else if !is_hidden_control(c) {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    out
}

/// Characters with no place in a header: C0 and C1 controls, and the bidirectional
/// embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) and marks.
pub fn is_hidden_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
}

/// When the event a job was scheduled from happened: its schedule less the follow-up's delay.
pub fn trigger_time(followup: &Followup, scheduled_for: DateTime<Utc>) -> DateTime<Utc> {
    scheduled_for - followup.after
}

/// The lateness a delivered order's follow-up condition sees (None for other triggers).
pub fn late_days_of(followup: &Followup, order: &OrderSummary, profile: &Profile) -> Option<i64> {
    match (followup.on, order.delivered_at) {
        (Trigger::OrderDelivered, Some(at)) => {
            Some(late_days(order.promised_delivery, at, profile.time_zone))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_stable_and_change_with_a_resend() {
        let a = idempotency_key("O-1", "thanks", 0);
        assert_eq!(a, idempotency_key("O-1", "thanks", 0));
        assert_ne!(a, idempotency_key("O-1", "thanks", 1));
        assert_ne!(a, idempotency_key("O-1t", "hanks", 0));
        assert_eq!(a.len(), 35);
    }

    #[test]
    fn display_names_cannot_break_the_header() {
        let mut p = Profile::new("C");
        p.first_name = Some("Ana \"<evil>\"\r\nBcc: x@y".into());
        p.last_name = Some("Lima".into());
        assert_eq!(
            display_address(&p, "ana@example.com"),
            "\"Ana evil Bcc: x@y Lima\" <ana@example.com>"
        );
        assert_eq!(display_address(&Profile::new("C"), "a@b.c"), "a@b.c");
    }

    #[test]
    fn header_text_is_one_line_without_controls_or_bidi_characters() {
        assert_eq!(
            header_text("  Hi\tAna\r\nBcc: x@y\u{0}\u{85}Lima\u{2028}!  "),
            "Hi Ana Bcc: x@y Lima !"
        );
        assert_eq!(
            header_text("\u{202E}gnp.exe\u{202C} \u{2066}a\u{2069}\u{200F}\u{9B}\u{7F}b"),
            "gnp.exe ab"
        );
        // Letters of every script, emoji sequences (joined by U+200D) and accents stay.
        assert_eq!(
            header_text("Zoë 李 שלום 👩\u{200D}🔬"),
            "Zoë 李 שלום 👩\u{200D}🔬"
        );
        assert_eq!(header_text("\u{0}\r\n"), "");
        for c in [
            '\u{0}', '\u{1F}', '\u{7F}', '\u{80}', '\u{9F}', '\u{202A}', '\u{202E}', '\u{2066}',
            '\u{2069}',
        ] {
            assert!(is_hidden_control(c), "{c:?}");
        }
    }

    #[test]
    fn display_names_lose_bidi_overrides() {
        let mut p = Profile::new("C");
        p.first_name = Some("\u{202E}anA\u{0}".into());
        p.last_name = Some("\u{2067}Lima\u{2069}".into());
        assert_eq!(display_address(&p, "a@b.c"), "\"anA Lima\" <a@b.c>");
    }
}
