//! Follow-up e-mails: which an event schedules and when they are due, which are held out,
//! and whether a follow-up's condition still holds when it is sent.

use super::{
    Context, ScheduledFollowup, Skip, SkipReason, assigned_variant, evaluate, format_time,
    in_holdout,
};
use crate::event::Order;
use crate::profile::Profile;
use crate::rules::{Mode, RuleSet, Trigger};
use chrono::{DateTime, Duration, Utc};
use zen_expression::vm::VM;

/// `at` plus a rule's delay; a delay past the calendar's end is due at its end.
fn after(at: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    at.checked_add_signed(delay)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The follow-ups held out in a list of follow-up skips, each due when it would have been, with
/// the variant the customer would have had (each variant is compared with its own held out).
pub fn held_out_followups(
    rules: &RuleSet,
    profile: &Profile,
    followup_skips: &[Skip],
    at: DateTime<Utc>,
) -> Vec<ScheduledFollowup> {
    followup_skips
        .iter()
        .filter(|s| s.reason == SkipReason::Holdout)
        .filter_map(|s| rules.followup(&s.rule_id))
        .map(|f| ScheduledFollowup {
            followup_id: f.id.clone(),
            variant: assigned_variant(profile, &f.id, &f.variants).map(|v| v.id.clone()),
            due_at: format_time(after(at, f.after)),
        })
        .collect()
}

/// Whether a follow-up's condition holds for an order now, on the history as it is: the
/// e-mail sender checks it again before sending (docs/REFERENCE.md §5, reason `condition`).
/// `late_days` is the order's lateness for follow-ups on `order.delivered`.
pub fn followup_holds(
    rules: &RuleSet,
    followup: &crate::rules::Followup,
    profile: &Profile,
    order: &Order,
    at: DateTime<Utc>,
    late_days: Option<i64>,
) -> Result<bool, String> {
    let Some(when) = &followup.when else {
        return Ok(true);
    };
    let ctx = followup_context(rules, profile, order, followup.on, at, late_days);
    let mut vm = VM::new();
    evaluate(when, &ctx.root, &mut vm)
}

/// What a follow-up's condition sees: `delivery.late_days` only for `order.delivered`.
fn followup_context(
    rules: &RuleSet,
    profile: &Profile,
    order: &Order,
    trigger: Trigger,
    at: DateTime<Utc>,
    late_days: Option<i64>,
) -> Context {
    let late = late_days
        .or(Some(0))
        .filter(|_| trigger == Trigger::OrderDelivered);
    Context::build(profile, order, at, late, &rules.needs)
}

/// The follow-ups an event schedules: those `on` its trigger whose condition holds, less the
/// held-out customers (recorded as skipped with reason `holdout`), each with the customer's
/// variant when the follow-up is an experiment.
pub fn schedule_followups(
    rules: &RuleSet,
    profile: &Profile,
    ctx: &Context,
    trigger: Trigger,
    at: DateTime<Utc>,
    vm: &mut VM,
) -> (Vec<ScheduledFollowup>, Vec<Skip>) {
    let mut scheduled = Vec::new();
    let mut skipped = Vec::new();
    for f in rules
        .followups
        .iter()
        .filter(|f| f.on == trigger && f.mode == Mode::Live)
    {
        let holds = match &f.when {
            None => Ok(true),
            Some(w) => evaluate(w, &ctx.root, vm),
        };
        match holds {
            Ok(true) if in_holdout(&profile.customer_id, &f.id, f.holdout_bp) => {
                skipped.push(Skip {
                    rule_id: f.id.clone(),
                    insert_id: None,
                    reason: SkipReason::Holdout,
                    message: None,
                });
            }
            Ok(true) => scheduled.push(ScheduledFollowup {
                followup_id: f.id.clone(),
                variant: assigned_variant(profile, &f.id, &f.variants).map(|v| v.id.clone()),
                due_at: format_time(after(at, f.after)),
            }),
            Ok(false) => {}
            Err(message) => skipped.push(Skip {
                rule_id: f.id.clone(),
                insert_id: None,
                reason: SkipReason::Error,
                message: Some(message),
            }),
        }
    }
    (scheduled, skipped)
}

/// The follow-ups whose condition could not be evaluated, as sentences for the log (the
/// skips say so too, with reason `error`).
pub fn problems_of(skipped: &[Skip]) -> impl Iterator<Item = String> + '_ {
    skipped
        .iter()
        .filter(|s| s.reason == SkipReason::Error)
        .map(|s| {
            format!(
                "follow-up {}: its condition could not be evaluated: {}",
                s.rule_id,
                s.message.as_deref().unwrap_or("")
            )
        })
}

/// Follow-ups scheduled by a later event about an order (shipped, delivered).
pub fn followups_for_event(
    rules: &RuleSet,
    profile: &Profile,
    order: &Order,
    trigger: Trigger,
    at: DateTime<Utc>,
    late_days: Option<i64>,
) -> (Vec<ScheduledFollowup>, Vec<Skip>) {
    let ctx = followup_context(rules, profile, order, trigger, at, late_days);
    let mut vm = VM::new();
    schedule_followups(rules, profile, &ctx, trigger, at, &mut vm)
}
