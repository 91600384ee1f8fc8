//! Deciding a new order and scheduling follow-ups: the engine's outcome turned into effects
//! (claims, coupons, given inserts, exposures, the decision and its packing instruction, e-mail
//! jobs) and into the state later events see (counters, codes in use, cooldowns).

use super::*;
use crate::engine::{self, DecideInput, Outcome, ScheduledFollowup};
use crate::message;
use crate::money::to_units;
use crate::profile;
use crate::rules::Trigger;
use chrono::{DateTime, Utc};

/// Decides a new order on the state's counters, unless it was decided before (imported history
/// replayed: the stored decision stands).
pub(super) fn decide(
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
    effects.problems.extend(
        outcome
            .problems
            .iter()
            .map(|p| format!("order {}: {p}", order.id)),
    );
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
        // A variant is the customer's once they met it, given or held out (a shadow rule
        // gives nothing: its customers are drawn again when it goes live).
        for e in &outcome.exposures {
            if let (engine::Arm::Treated | engine::Arm::HeldOut, Some(variant)) =
                (e.arm, &e.variant)
            {
                p.record_variant(&e.rule_id, variant);
            }
        }
        record_followup_variants(p, &outcome.decision.followups);
        record_followup_variants(p, &outcome.followup_holdouts);
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
                arm: e.arm_label(),
                customer_since,
            },
        );
        effects.exposures.push(ExposureInsert {
            source_id: e.rule_id.clone(),
            order_id: d.order_id.clone(),
            customer_id: d.customer_id.clone(),
            arm: e.arm_label(),
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
                arm: engine::arm_label(
                    if held_out { "held_out" } else { "treated" },
                    f.variant.as_deref(),
                ),
                customer_since,
            },
        );
        effects.emails.push(EmailInsert {
            order_id: order_id.to_string(),
            followup_id: f.followup_id.clone(),
            variant: f.variant.clone(),
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

/// A follow-up's variant is the customer's once an e-mail of it is scheduled for them (or
/// recorded as held out).
fn record_followup_variants(profile: &mut profile::Profile, scheduled: &[ScheduledFollowup]) {
    for f in scheduled {
        if let Some(variant) = &f.variant {
            profile.record_variant(&f.followup_id, variant);
        }
    }
}

/// The follow-ups a shipped or delivered order schedules, unless it was cancelled.
#[allow(clippy::too_many_arguments)]
pub(super) fn followups(
    state: &mut State,
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
    let held_out = engine::held_out_followups(env.rules, profile, &skipped, at);
    effects
        .problems
        .extend(engine::problems_of(&skipped).map(|p| format!("order {order_id}: {p}")));
    schedule_emails(
        effects,
        order_id,
        customer,
        profile.first_order_at,
        &scheduled,
        &held_out,
    );
    if let Some(p) = state.profiles.get_mut(customer) {
        record_followup_variants(p, &scheduled);
        record_followup_variants(p, &held_out);
    }
    Applied::Folded {
        followups: scheduled,
        skipped,
    }
}
