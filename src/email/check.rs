//! A due job checked again at send time (docs/REFERENCE.md §5): whether it may go now, must wait
//! for the end of quiet hours, or ends skipped with a reason. The frequency cap is the one check
//! not made here: it is counted in the store, under the customer's lock. Pure.

use super::compose::{late_days_of, trigger_time};
use crate::profile::OrderStatus;
use crate::rules::{Mode, RuleSet};
use crate::store::emails::{EmailFacts, EmailJob, EmailSkip};
use chrono::{DateTime, Utc};

/// What to do with a due job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Quiet hours: wait until then.
    Wait(DateTime<Utc>),
    Skip(EmailSkip, String),
}

fn skip(reason: EmailSkip, detail: impl Into<String>) -> Verdict {
    Verdict::Skip(reason, detail.into())
}

/// Whether the e-mail is no longer wanted whatever its time: the order is unknown,
/// cancelled or returned; the customer unsubscribed; the address is unknown or suppressed.
/// Also checked before a retry.
pub fn unwanted(facts: &EmailFacts) -> Option<Verdict> {
    let (Some(profile), Some(order)) = (&facts.profile, &facts.order) else {
        return Some(skip(EmailSkip::Cancelled, "the order is no longer known"));
    };
    if order.status == OrderStatus::Cancelled {
        return Some(skip(EmailSkip::Cancelled, "the order was cancelled"));
    }
    if order.items.iter().any(|i| i.kept < i.quantity) {
        return Some(skip(EmailSkip::Cancelled, "the order was returned"));
    }
    if facts.unsubscribed_by_link || !profile.subscribed {
        return Some(skip(EmailSkip::Unsubscribed, "the customer unsubscribed"));
    }
    if profile.email.as_deref().is_none_or(|e| e.trim().is_empty()) {
        return Some(skip(EmailSkip::Suppressed, "no e-mail address is known"));
    }
    if let Some(reason) = &facts.suppressed {
        return Some(skip(
            EmailSkip::Suppressed,
            format!("the address is suppressed ({reason})"),
        ));
    }
    None
}

/// Checks, in this order: the follow-up still exists and is live; the order is neither
/// cancelled nor returned; the customer has not unsubscribed; the address is known and not
/// suppressed; the e-mail has not expired; the follow-up's condition still holds on the
/// history as it is now; and it is not quiet hours where the customer lives (else it waits,
/// unless their end is past the expiry).
pub fn check(rules: &RuleSet, job: &EmailJob, facts: &EmailFacts, now: DateTime<Utc>) -> Verdict {
    let Some(followup) = rules.followup(&job.followup_id) else {
        return skip(
            EmailSkip::Condition,
            format!(
                "the follow-up {:?} is no longer in the rules",
                job.followup_id
            ),
        );
    };
    if followup.mode != Mode::Live {
        return skip(EmailSkip::Condition, "the follow-up is switched off");
    }
    if let Some(not_wanted) = unwanted(facts) {
        return not_wanted;
    }
    let (Some(profile), Some(order)) = (&facts.profile, &facts.order) else {
        return skip(EmailSkip::Cancelled, "the order is no longer known");
    };
    let Some(scheduled_for) = DateTime::from_timestamp(job.scheduled_for, 0) else {
        return skip(EmailSkip::Expired, "the schedule is not a valid time");
    };
    let expire_after = rules.email.expire_after;
    if super::timing::expired(scheduled_for, expire_after, now) {
        return skip(
            EmailSkip::Expired,
            format!(
                "not sendable within {} h of its time",
                expire_after.num_hours()
            ),
        );
    }
    let event_at = trigger_time(followup, scheduled_for);
    let order_now = order.to_order(profile);
    let late = late_days_of(followup, order, profile);
    match crate::engine::followup_holds(rules, followup, profile, &order_now, event_at, late) {
        Ok(true) => {}
        Ok(false) => return skip(EmailSkip::Condition, "the condition no longer holds"),
        Err(message) => {
            return skip(
                EmailSkip::Condition,
                format!("the condition could not be evaluated: {message}"),
            );
        }
    }
    if let Some((from, until)) = rules.email.quiet_hours {
        let tz = profile.time_zone.unwrap_or(rules.email.default_time_zone);
        if let Some(end) = super::timing::quiet_hours_end(now, tz, from, until) {
            if super::timing::expired(scheduled_for, expire_after, end) {
                return skip(
                    EmailSkip::Expired,
                    "quiet hours end after the e-mail expires",
                );
            }
            return Verdict::Wait(end);
        }
    }
    Verdict::Send
}
