//! The one event path: applying one event to the state it touches, with every effect returned
//! as data. The service's store, `import`, `backtest`, `simulate`, `test` and `preview` all call
//! [`apply`]; what differs between them is only where the [`State`] comes from (loaded from the
//! store per batch, or kept in memory) and what becomes of the [`Effects`] (written in the
//! batch's transaction, or shown).
//!
//! The step is pure: no I/O, no clock, no randomness of its own. Time is the event's, and
//! coupon codes come from the keyed hash in [`crate::coupon`].

pub mod effects;
pub mod state;

pub use effects::*;
pub use state::{
    CounterState, CouponState, CouponStatus, GivenState, GivenStatus, Snapshot, State, stock_slot,
};

use crate::coupon::CouponKey;
use crate::engine::{self, DecideInput, Outcome, ScheduledFollowup, Shop, Skip};
use crate::event::{Event, EventBody, RejectReason, Rejected};
use crate::message;
use crate::money::to_units;
use crate::profile::{self, Folded, Profile};
use crate::rules::{RuleSet, Trigger};
use chrono::{DateTime, Utc};

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

/// Codes used on a new order are redeemed, if they are issued and still valid to redeem.
fn redeem(state: &mut State, effects: &mut Effects, order_id: &str, codes: &[String]) {
    for code in codes {
        if let Some(c) = state.coupons.get_mut(code)
            && c.status == CouponStatus::Issued
        {
            c.status = CouponStatus::Redeemed;
            effects.coupon_changes.push(CouponChange {
                code: code.clone(),
                from: CouponStatus::Issued,
                to: CouponStatus::Redeemed,
                version: c.version,
                redeemed_order_id: Some(order_id.to_string()),
            });
        }
    }
}

/// Decides a new order on the state's counters, unless it was decided before (imported history
/// replayed: the stored decision stands).
fn decide(
    state: &mut State,
    effects: &mut Effects,
    event: &Event,
    order: &crate::event::Order,
    env: &Env,
    explain: bool,
) -> Applied {
    if state.decided.contains(&order.id) {
        return Applied::Unchanged;
    }
    let Some(profile) = state.profiles.get(&order.customer.id) else {
        return Applied::Unchanged;
    };
    let outcome = engine::decide(&DecideInput {
        rules: env.rules,
        profile,
        order,
        at: event.occurred_at,
        counters: &state.counters,
        issued: &state.counters,
        key: env.key,
        shop: env.shop,
        explain,
    });
    let customer_since = profile.first_order_at;
    record_decision(
        state,
        effects,
        &outcome,
        env,
        event.occurred_at,
        customer_since,
    );
    if let Some(p) = state.profiles.get_mut(&order.customer.id) {
        for rule in &outcome.rules_given {
            p.record_given(rule, event.occurred_at);
        }
        let coupons = outcome
            .decision
            .inserts
            .iter()
            .filter(|i| i.coupon.is_some())
            .count();
        p.coupons_received = p
            .coupons_received
            .saturating_add(u32::try_from(coupons).unwrap_or(u32::MAX));
    }
    Applied::Decided(Box::new(outcome))
}

/// A decision's effects: its claims, coupons (and their `coupon.issued` messages), given
/// inserts, exposures, the decision and its packing instruction, its e-mails; and the state it
/// changes (counters, codes in use, given inserts).
fn record_decision(
    state: &mut State,
    effects: &mut Effects,
    outcome: &Outcome,
    env: &Env,
    at: DateTime<Utc>,
    customer_since: Option<i64>,
) {
    let d = &outcome.decision;
    effects.claim(&outcome.claims);
    state.counters.take(&outcome.claims);
    let mut given = Vec::with_capacity(d.inserts.len());
    for (seq, g) in d.inserts.iter().enumerate() {
        let stock_slot = stock_slot(env.rules, &g.insert_id, &d.warehouse);
        if let Some(c) = &g.coupon {
            effects.coupons.push(CouponInsert {
                code: c.code.clone(),
                order_id: d.order_id.clone(),
                source_id: g.rule_id.clone(),
                insert_id: g.insert_id.clone(),
                customer_id: d.customer_id.clone(),
                amount: c.amount.to_string(),
                currency: c.currency.to_string(),
                expires_on: c.expires_on.to_string(),
                issued_at: at.timestamp(),
            });
            effects
                .messages
                .push(Message::CouponIssued(message::CouponIssued::in_parcel(
                    d, g, c,
                )));
            state.add_coupon(
                &c.code,
                CouponState {
                    order_id: d.order_id.clone(),
                    customer_id: d.customer_id.clone(),
                    status: CouponStatus::Issued,
                    version: 1,
                },
            );
        }
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        effects.given.push(GivenInsert {
            order_id: d.order_id.clone(),
            seq,
            insert_id: g.insert_id.clone(),
            rule_id: g.rule_id.clone(),
            kind: g.kind.to_string(),
            stock_slot: stock_slot.clone(),
        });
        given.push(GivenState {
            seq,
            insert_id: g.insert_id.clone(),
            kind: g.kind.to_string(),
            stock_slot,
            status: GivenStatus::Given,
        });
    }
    state.record_given(&d.order_id, given);
    for e in &outcome.exposures {
        let mut costs: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
        for (currency, amount) in &e.costs {
            let units = costs.entry(currency.to_string()).or_default();
            *units = units.saturating_add(to_units(*amount));
        }
        effects.expose(
            (
                "rule",
                e.rule_id.clone(),
                d.customer_id.clone(),
                e.arm == engine::Arm::Shadow,
            ),
            FirstExposure {
                at: at.timestamp(),
                arm: e.arm.as_str(),
                customer_since,
            },
        );
        effects.exposures.push(ExposureInsert {
            source_id: e.rule_id.clone(),
            order_id: d.order_id.clone(),
            customer_id: d.customer_id.clone(),
            arm: e.arm.as_str(),
            at: at.timestamp(),
            costs: costs.into_iter().collect(),
        });
    }
    effects.decisions.push(DecisionInsert {
        order_id: d.order_id.clone(),
        customer_id: d.customer_id.clone(),
        warehouse: d.warehouse.clone(),
        rules_version: d.rules_version.clone(),
        decided_at: at.timestamp(),
    });
    effects.messages.push(Message::Packing(Box::new(d.clone())));
    schedule_emails(
        effects,
        &d.order_id,
        &d.customer_id,
        customer_since,
        &d.followups,
        &outcome.followup_holdouts,
    );
}

/// An order's e-mail jobs: the scheduled ones pending, the held-out ones skipped with reason
/// `holdout` (the control group is recorded, keyed alike).
fn schedule_emails(
    effects: &mut Effects,
    order_id: &str,
    customer_id: &str,
    customer_since: Option<i64>,
    scheduled: &[ScheduledFollowup],
    held_out: &[ScheduledFollowup],
) {
    let all = scheduled
        .iter()
        .map(|f| (f, false))
        .chain(held_out.iter().map(|f| (f, true)));
    for (f, held_out) in all {
        // The engine writes due times itself (RFC 3339), so they always read back.
        let Ok(due) = DateTime::parse_from_rfc3339(&f.due_at).map(|t| t.timestamp()) else {
            continue;
        };
        effects.expose(
            (
                "followup",
                f.followup_id.clone(),
                customer_id.to_string(),
                false,
            ),
            FirstExposure {
                at: due,
                arm: if held_out { "held_out" } else { "treated" },
                customer_since,
            },
        );
        effects.emails.push(EmailInsert {
            order_id: order_id.to_string(),
            followup_id: f.followup_id.clone(),
            customer_id: customer_id.to_string(),
            due_at: due,
            state: if held_out {
                EmailStart::HeldOut
            } else {
                EmailStart::Pending
            },
        });
    }
}

/// The follow-ups a shipped or delivered order schedules, unless it was cancelled.
#[allow(clippy::too_many_arguments)]
fn followups(
    state: &State,
    effects: &mut Effects,
    customer: &str,
    order_id: &str,
    trigger: Trigger,
    at: DateTime<Utc>,
    late_days: Option<i64>,
    env: &Env,
) -> Applied {
    let Some((profile, summary)) = state.profile_and_order(customer, order_id) else {
        return only_folded();
    };
    if summary.status == profile::OrderStatus::Cancelled {
        return only_folded();
    }
    let order = summary.to_order(profile);
    let (scheduled, skipped) =
        engine::followups_for_event(env.rules, profile, &order, trigger, at, late_days);
    let held_out = engine::held_out_followups(env.rules, &skipped, at);
    schedule_emails(
        effects,
        order_id,
        customer,
        profile.first_order_at,
        &scheduled,
        &held_out,
    );
    Applied::Folded {
        followups: scheduled,
        skipped,
    }
}

/// An order cancelled before packing: its coupons are voided (`coupon.voided`), its inserts go
/// back to stock once (DESIGN's insert state machine: only those still `given`), its e-mails are
/// cancelled. A parcel a station confirmed keeps what it holds.
fn cancel(state: &mut State, effects: &mut Effects, order_id: &str, at: &str) {
    let given = state.given.get_mut(order_id);
    let packed = state.packed.contains(order_id)
        || given
            .as_ref()
            .is_some_and(|g| g.iter().any(|g| g.status == GivenStatus::Packed));
    if !packed {
        // In code order: the same whether the codes were issued in this batch or read from the
        // store, so the `coupon.voided` messages do not depend on where a batch was cut.
        let mut codes: Vec<&String> = state
            .order_coupons
            .get(order_id)
            .into_iter()
            .flatten()
            .collect();
        codes.sort_unstable();
        for code in codes {
            let Some(c) = state.coupons.get_mut(code) else {
                continue;
            };
            if c.status != CouponStatus::Issued {
                continue;
            }
            c.status = CouponStatus::Voided;
            c.version = c.version.saturating_add(1);
            effects.coupon_changes.push(CouponChange {
                code: code.clone(),
                from: CouponStatus::Issued,
                to: CouponStatus::Voided,
                version: c.version,
                redeemed_order_id: None,
            });
            effects
                .messages
                .push(Message::CouponVoided(message::CouponVoided::new(
                    code,
                    c.version,
                    order_id,
                    &c.customer_id,
                    message::CouponVoidReason::OrderCancelled,
                    at,
                )));
        }
        for g in given.into_iter().flatten() {
            if g.status != GivenStatus::Given {
                continue;
            }
            let to = if g.kind == "coupon" {
                GivenStatus::Voided
            } else if let Some(slot) = &g.stock_slot {
                effects
                    .stock_returns
                    .push((g.insert_id.clone(), slot.clone()));
                state.counters.give_back(&g.insert_id, slot);
                GivenStatus::Returned
            } else {
                continue;
            };
            effects.given_changes.push(GivenChange {
                order_id: order_id.to_string(),
                seq: g.seq,
                from: GivenStatus::Given,
                to,
            });
            g.status = to;
        }
    }
    cancel_emails(effects, order_id);
}

/// A cancelled or returned order's e-mails are not sent: those scheduled before are cancelled
/// where they are kept, those scheduled in the same batch are written cancelled.
fn cancel_emails(effects: &mut Effects, order_id: &str) {
    for e in effects.emails.iter_mut().filter(|e| e.order_id == order_id) {
        if e.state == EmailStart::Pending {
            e.state = EmailStart::Cancelled;
        }
    }
    effects.email_cancellations.push(order_id.to_string());
}
