//! The one event path: applying one event to the state it touches, with every effect returned
//! as data. The service's store, `import`, `backtest`, `simulate`, `test` and `preview` all call
//! [`apply`]; what differs between them is only where the [`State`] comes from (loaded from the
//! store per batch, or kept in memory) and what becomes of the [`Effects`] (written in the
//! batch's transaction, or shown).
//!
//! The step is pure: no I/O, no clock, no randomness of its own. Time is the event's, and
//! coupon codes come from the keyed hash in [`crate::coupon`].

mod decide;
pub mod effects;
mod settle;
pub mod state;

pub use effects::*;
pub use state::{
    CounterState, CouponState, CouponStatus, GivenState, GivenStatus, Snapshot, State, stock_slot,
};

use crate::coupon::CouponKey;
use crate::engine::{self, Outcome, ScheduledFollowup, Shop, Skip};
use crate::event::{Event, EventBody, RejectReason, Rejected};
use crate::profile::{self, Folded, Profile};
use crate::rules::{RuleSet, Trigger};
use decide::{decide, followups};
use settle::{cancel, cancel_emails, redeem};

/// What deciding needs besides the state.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub rules: &'a RuleSet,
    pub key: &'a CouponKey,
    pub shop: &'a Shop,
}

/// One event as it arrived: parsed (or why not), with its message key and bytes for the DLQ.
pub struct Input<'a> {
    pub event: Result<&'a Event, &'a Rejected>,
    /// The Kafka message key, when there is one: it must be the event's customer id.
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    /// Its place in its source (offset or line), for the DLQ headers.
    pub offset: i64,
    /// False folds only (history before the time of interest, or too old to act on).
    pub decide: bool,
    /// Whether decisions carry their explanation (`simulate --explain`).
    pub explain: bool,
}

/// What applying one event did.
#[derive(Debug)]
pub enum Applied {
    /// A new order, decided.
    Decided(Box<Outcome>),
    /// A replayed event id, or an order id already decided: nothing changed.
    Unchanged,
    /// An order id known under another customer, or known with other content.
    Conflict,
    /// Set aside (the DLQ in the service): its effect cannot be held exactly
    /// (`out_of_range`), or the decision path failed on it twice (`internal_error`).
    Rejected(Rejected),
    /// Folded into the history; follow-ups it scheduled, if any.
    Folded {
        followups: Vec<ScheduledFollowup>,
        skipped: Vec<Skip>,
    },
}

/// One step's result: what it did, and how the batch report counts it.
#[derive(Debug)]
pub struct Stepped {
    pub applied: Applied,
    /// Why it was set aside in the DLQ, if it was.
    pub rejected: Option<RejectReason>,
    /// Its event id was processed before (a redelivery).
    pub seen_before: bool,
}

impl Stepped {
    fn done(applied: Applied) -> Self {
        Stepped {
            applied,
            rejected: None,
            seen_before: false,
        }
    }
}

fn only_folded() -> Applied {
    Applied::Folded {
        followups: Vec::new(),
        skipped: Vec::new(),
    }
}

/// Sets the event aside: a DLQ message in its place among the outbox messages.
fn dlq(
    effects: &mut Effects,
    input: &Input,
    reason: RejectReason,
    error: String,
    applied: Applied,
) -> Stepped {
    effects.messages.push(Message::Dlq(DlqEntry {
        offset: input.offset,
        key: input.key.map(<[u8]>::to_vec),
        value: input.value.to_vec(),
        reason,
        error,
    }));
    Stepped {
        applied,
        rejected: Some(reason),
        seen_before: false,
    }
}

/// Applies one event: checks it, folds it into its customer's profile and order, decides a new
/// order or schedules follow-ups, and settles a cancellation, changing `state` and adding what
/// must be written or sent to `effects`.
pub fn apply(state: &mut State, effects: &mut Effects, input: &Input, env: &Env) -> Stepped {
    let event = match input.event {
        Ok(e) => e,
        Err(r) => {
            return dlq(
                effects,
                input,
                r.reason,
                r.message.clone(),
                Applied::Unchanged,
            );
        }
    };
    let customer = event.customer_id();
    if let Some(key) = input.key
        && key != customer.as_bytes()
    {
        let msg = format!(
            "key: the message key {:?} is not the event's customer id {customer:?}",
            String::from_utf8_lossy(key)
        );
        return dlq(
            effects,
            input,
            RejectReason::KeyMismatch,
            msg,
            Applied::Unchanged,
        );
    }
    // The first occurrence of an event id takes it; later ones are seen before, unless they
    // carry another event under the same id.
    if let Some(digest) = state.seen.get(&event.event_id) {
        if digest.is_some_and(|d| d != event.digest) {
            let msg = format!(
                "event_id: {:?} was processed before with a different event",
                event.event_id
            );
            return dlq(
                effects,
                input,
                RejectReason::Conflict,
                msg,
                Applied::Conflict,
            );
        }
        return Stepped {
            applied: Applied::Unchanged,
            rejected: None,
            seen_before: true,
        };
    }
    state
        .seen
        .insert(event.event_id.clone(), Some(event.digest));
    crate::fault::check(crate::fault::Point::Decide, &event.event_id);
    if let Some(oid) = event.order_id()
        && let Some(o) = state.orders.get(oid)
        && o.customer_id != customer
    {
        // An event about someone else's order must not touch it (nor schedule an e-mail
        // about it to the wrong person).
        let msg = format!("order_id: order {oid:?} belongs to another customer, not {customer:?}");
        return dlq(
            effects,
            input,
            RejectReason::Conflict,
            msg,
            Applied::Conflict,
        );
    }
    let folded = match fold(state, effects, event) {
        Ok(f) => f,
        // Nothing was folded: the history stays as it was.
        Err(r) => {
            return dlq(
                effects,
                input,
                r.reason,
                r.message.clone(),
                Applied::Rejected(r),
            );
        }
    };
    if !matches!(folded, Folded::Conflict | Folded::ChangedOrder) {
        effects.events.push(EventRow::of(event));
    }
    let oid = event.order_id().unwrap_or("");
    match (folded, &event.body) {
        (Folded::Conflict, _) => {
            let msg = format!("order.id: order {oid:?} is known under another customer");
            dlq(
                effects,
                input,
                RejectReason::Conflict,
                msg,
                Applied::Conflict,
            )
        }
        (Folded::ChangedOrder, _) => {
            let msg = format!(
                "order.id: order {oid:?} is known with other content (items, amounts, warehouse or shipping differ)"
            );
            dlq(
                effects,
                input,
                RejectReason::Conflict,
                msg,
                Applied::Conflict,
            )
        }
        (Folded::DuplicateOrder, _) => Stepped::done(Applied::Unchanged),
        (Folded::NewOrder, EventBody::OrderPlaced(order)) => {
            redeem(state, effects, &order.id, &order.coupon_codes);
            if input.decide {
                Stepped::done(decide(state, effects, event, order, env, input.explain))
            } else {
                Stepped::done(only_folded())
            }
        }
        (Folded::Cancelled, EventBody::OrderCancelled { order_id, .. }) => {
            cancel(
                state,
                effects,
                order_id,
                &engine::format_time(event.occurred_at),
            );
            Stepped::done(only_folded())
        }
        (_, EventBody::Subscribed { customer_id }) => {
            // Subscribed again through the shop: an unsubscribe by link from before this
            // event no longer holds (a late, older event does not undo a newer click).
            effects
                .resubscribed
                .push((customer_id.clone(), event.occurred_at.timestamp()));
            Stepped::done(only_folded())
        }
        (
            _,
            EventBody::Feedback {
                customer_id, nps, ..
            },
        ) => {
            effects.feedback.push(FeedbackInsert {
                customer_id: customer_id.clone(),
                at: event.occurred_at.timestamp(),
                nps: i64::from(*nps),
            });
            Stepped::done(only_folded())
        }
        (Folded::Returned, EventBody::OrderReturned { order_id, .. }) => {
            cancel_emails(effects, order_id);
            Stepped::done(only_folded())
        }
        (how, body) if input.decide => {
            let late = match how {
                Folded::Delivered { late_days } => Some(late_days),
                _ => None,
            };
            let (trigger, at) = match body {
                EventBody::OrderDelivered { delivered_at, .. } => {
                    (Trigger::OrderDelivered, *delivered_at)
                }
                EventBody::OrderShipped { .. } => (Trigger::OrderShipped, event.occurred_at),
                _ => return Stepped::done(only_folded()),
            };
            Stepped::done(followups(
                state, effects, customer, oid, trigger, at, late, env,
            ))
        }
        _ => Stepped::done(only_folded()),
    }
}

/// Folds the event into its customer's profile (made on their first event) and its order.
fn fold(state: &mut State, effects: &mut Effects, event: &Event) -> Result<Folded, Rejected> {
    let customer = event.customer_id();
    let order = event.order_id().and_then(|id| state.orders.get_mut(id));
    let (folded, new_order) = match state.profiles.get_mut(customer) {
        Some(profile) => profile::fold(profile, order, event)?,
        None => {
            // The profile exists only once an event folded into it.
            let mut profile = Profile::new(customer);
            let folded = profile::fold(&mut profile, order, event)?;
            state.profiles.insert(customer.to_string(), profile);
            folded
        }
    };
    effects.profiles.insert(customer.to_string());
    if let Some(o) = new_order {
        effects.orders.insert(o.id.clone());
        state.orders.insert(o.id.clone(), o);
    } else if let Some(id) = event.order_id()
        && state.orders.contains_key(id)
    {
        effects.orders.insert(id.to_string());
    }
    Ok(folded)
}
