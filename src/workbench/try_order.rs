//! "Try it": one order decided by the rules in force and by the edited ones, each after the
//! customer's history as the store keeps it, through the same replay `packwell simulate` runs
//! ([`crate::replay::Replay::decide_after`]), with the explain trace, the notes as printed and
//! the follow-up e-mails as they would be sent. Nothing is written.

use crate::coupon::CouponKey;
use crate::email::compose::{ComposeInput, compose, plan_coupons};
use crate::engine::{Decision, Shop};
use crate::event::{Event, EventBody};
use crate::replay::Replay;
use crate::rules::RuleSet;
use crate::store::StoreError;
use crate::store::events::KeptEvent;
use serde::Serialize;

/// A customer's kept events read at most, to try one of their orders.
pub const MAX_HISTORY: i64 = 10_000;

/// One side of a try: the decision and the e-mails its follow-ups would send.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TriedSide {
    /// The decision (CONTRACT §3), with its explain trace.
    #[schema(value_type = Object)]
    pub decision: Decision,
    pub emails: Vec<TriedEmail>,
}

/// A follow-up e-mail as it would be sent when due.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TriedEmail {
    pub followup_id: String,
    pub variant: Option<String>,
    pub due_at: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Why the e-mail could not be rendered, when it could not (the rest is empty then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Both sides of a try.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Tried {
    pub order_id: String,
    pub customer_id: String,
    /// The customer's earlier events replayed first.
    pub history_events: usize,
    pub current: TriedSide,
    pub edited: TriedSide,
    /// Whether the parcel or the e-mails differ (inserts, coupons, notes, follow-ups).
    pub changed: bool,
}

/// What the sides are decided with besides the rules.
pub struct TryEnv<'a> {
    pub key: &'a CouponKey,
    pub shop: &'a Shop,
    /// `[email] from`.
    pub from: &'a str,
    /// Base of the unsubscribe link shown in e-mails.
    pub public_url: &'a str,
}

/// The order event with the given id among a customer's kept events (in application order),
/// and the events kept before it.
pub fn find_order(kept: Vec<KeptEvent>, order_id: &str) -> Option<(Vec<Event>, Event)> {
    let mut history = Vec::new();
    for k in kept {
        let Ok(event) = k.event else { continue };
        if matches!(&event.body, EventBody::OrderPlaced(o) if o.id == order_id) {
            return Some((history, event));
        }
        history.push(event);
    }
    None
}

/// The events of a customer's history that come before a pasted order: those that happened
/// before it, the same order itself left out.
pub fn history_before(kept: Vec<KeptEvent>, order: &Event) -> Result<Vec<Event>, StoreError> {
    let order_id = match &order.body {
        EventBody::OrderPlaced(o) => o.id.clone(),
        _ => String::new(),
    };
    Ok(kept
        .into_iter()
        .filter_map(|k| k.event.ok())
        .filter(|e| e.occurred_at <= order.occurred_at && e.event_id != order.event_id)
        .filter(|e| !matches!(&e.body, EventBody::OrderPlaced(o) if o.id == order_id))
        .collect())
}

/// Decides `order` after `history` with the current and the edited rules.
pub fn try_order(
    current: &RuleSet,
    edited: &RuleSet,
    env: &TryEnv<'_>,
    history: &[Event],
    order: &Event,
) -> Result<Tried, String> {
    let current = side(current, env, history, order)?;
    let edited = side(edited, env, history, order)?;
    let changed = parcel(&current) != parcel(&edited);
    Ok(Tried {
        order_id: current.decision.order_id.clone(),
        customer_id: current.decision.customer_id.clone(),
        history_events: history.len(),
        current,
        edited,
        changed,
    })
}

/// What the customer gets from a side: the inserts (with coupons and notes) and the e-mails.
fn parcel(side: &TriedSide) -> (String, Vec<(String, String, String)>) {
    let inserts = serde_json::to_string(&side.decision.inserts).unwrap_or_default();
    let emails = side
        .emails
        .iter()
        .map(|e| (e.followup_id.clone(), e.subject.clone(), e.text.clone()))
        .collect();
    (inserts, emails)
}

fn side(
    rules: &RuleSet,
    env: &TryEnv<'_>,
    history: &[Event],
    order: &Event,
) -> Result<TriedSide, String> {
    let mut replay = Replay::new(rules, env.key, env.shop);
    let outcome = replay.decide_after(history, order, true)?;
    let emails = outcome
        .decision
        .followups
        .iter()
        .map(|f| email(rules, env, &replay, &outcome.decision, f))
        .collect();
    Ok(TriedSide {
        decision: outcome.decision,
        emails,
    })
}

/// A scheduled follow-up's e-mail, rendered as the sender would when it is due: its variant's
/// template and coupons, the customer as known after the order.
fn email(
    rules: &RuleSet,
    env: &TryEnv<'_>,
    replay: &Replay<'_>,
    decision: &Decision,
    scheduled: &crate::engine::ScheduledFollowup,
) -> TriedEmail {
    let mut tried = TriedEmail {
        followup_id: scheduled.followup_id.clone(),
        variant: scheduled.variant.clone(),
        due_at: scheduled.due_at.clone(),
        subject: String::new(),
        text: String::new(),
        html: String::new(),
        error: None,
    };
    let followup = scheduled
        .variant
        .as_deref()
        .and_then(|v| rules.followup_variant(&scheduled.followup_id, v))
        .or_else(|| rules.followup(&scheduled.followup_id));
    let profile = replay.state.profiles.get(&decision.customer_id);
    let order = replay.state.orders.get(&decision.order_id);
    let (Some(followup), Some(profile), Some(order)) = (followup, profile, order) else {
        tried.error = Some("the follow-up, customer or order is not in the replay".into());
        return tried;
    };
    let due = chrono::DateTime::parse_from_rfc3339(&scheduled.due_at)
        .map(|d| d.date_naive())
        .unwrap_or_else(|_| order.placed_at.date_naive());
    let coupons = plan_coupons(rules, followup, order, env.key, &Default::default(), due);
    let unsubscribe =
        crate::email::token::unsubscribe_url(env.public_url, env.key, &profile.customer_id);
    match compose(&ComposeInput {
        rules,
        followup,
        profile,
        order,
        coupons: &coupons,
        shop: env.shop,
        from: env.from,
        unsubscribe_url: &unsubscribe,
    }) {
        Ok(sent) => {
            tried.subject = sent.subject;
            tried.text = sent.text;
            tried.html = sent.html;
        }
        Err(e) => tried.error = Some(e.to_string()),
    }
    tried
}
