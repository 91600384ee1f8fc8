//! Deciding an order within a batch, and staging the rows a decision or an event's follow-ups
//! make (claims, coupons, given inserts, the decision, outbox messages, e-mail jobs) in the
//! batch's [`Pending`]: written at the batch's end or, when careful, under a savepoint at once.

use super::{Db, This};
use crate::engine::{self, DecideInput, Outcome};
use crate::event::{Event, EventBody};
use crate::replay::Applied;
use crate::rules::InsertBody;
use crate::store::apply::to_units;
use crate::store::backend::{BatchCache, Mode, Retry, corrupt};
use crate::store::pending::*;
use crate::store::types::*;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::Connection;

impl This {
    pub(super) async fn decide_and_stage(
        tx: &mut sqlx::Transaction<'_, Db>,
        cache: &mut BatchCache,
        event: &Event,
        env: &DecideEnv,
        mode: Mode,
    ) -> Result<Applied, StoreError> {
        let EventBody::OrderPlaced(order) = &event.body else {
            return Ok(Applied::Unchanged);
        };
        if cache.decided.contains(&order.id) {
            // Decided before (e.g. imported history replayed): the stored decision stands.
            return Ok(Applied::Unchanged);
        }
        if mode == Mode::Careful {
            // The savepoint below must hold this decision's rows only.
            Self::flush_or_contended(tx, cache).await?;
        }
        // Bounded: each retry follows a claim that another instance won or a code collision.
        for _ in 0..16 {
            // The counters are read once per batch and kept up to date here; a failed
            // claim means another instance moved them, and they are read again.
            if cache.view.is_none() {
                cache.view = Some(Self::counter_view(tx).await?);
            }
            let (Some(view), Some(profile)) =
                (cache.view.as_ref(), cache.profiles.get(&order.customer.id))
            else {
                return Err(corrupt("profile not loaded"));
            };
            let outcome = engine::decide(&DecideInput {
                rules: &env.rules,
                profile,
                order,
                at: event.occurred_at,
                counters: view,
                issued: view,
                key: &env.key,
                shop: &env.shop,
                explain: false,
            });
            let customer_since = profile.first_order_at;
            Self::stage_decision(
                &mut cache.pending,
                &outcome,
                env,
                event.occurred_at,
                customer_since,
            )?;
            if mode == Mode::Careful {
                let mut sp = (**tx).begin().await?;
                match Self::write_pending(&mut sp, std::mem::take(&mut cache.pending)).await? {
                    Ok(()) => sp.commit().await?,
                    Err(Retry::Code(code)) => {
                        sp.rollback().await?;
                        if let Some(view) = cache.view.as_mut() {
                            view.taken_codes.insert(code);
                        }
                        continue;
                    }
                    Err(Retry::Claim) => {
                        sp.rollback().await?;
                        cache.view = None;
                        continue;
                    }
                }
            }
            if let Some(view) = cache.view.as_mut() {
                view.take(&outcome.claims);
            }
            if let Some(p) = cache.profiles.get_mut(&order.customer.id) {
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
            cache.decided.insert(order.id.clone());
            return Ok(Applied::Decided(Box::new(outcome)));
        }
        Err(StoreError::Other(format!(
            "order {}: could not take counters after 16 tries",
            order.id
        )))
    }

    /// Stages a decision's rows: its claims, coupons (and their `coupon.issued`
    /// messages), given inserts, the decision and its packing instruction, its e-mails.
    fn stage_decision(
        pending: &mut Pending,
        outcome: &Outcome,
        env: &DecideEnv,
        at: DateTime<Utc>,
        customer_since: Option<i64>,
    ) -> Result<(), StoreError> {
        let d = &outcome.decision;
        pending.claim(&outcome.claims);
        for (seq, g) in d.inserts.iter().enumerate() {
            let stock_slot = env.rules.insert(&g.insert_id).and_then(|i| match &i.body {
                InsertBody::Item { stock: Some(s), .. } => s
                    .slot(&d.warehouse)
                    .map(|(slot, _)| slot.as_str().to_string()),
                _ => None,
            });
            if let Some(c) = &g.coupon {
                pending.coupons.push(CouponInsert {
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
                let msg = json!({"schema_version": 1, "type": "coupon.issued", "code": c.code, "version": 1,
                    "order_id": d.order_id, "customer_id": d.customer_id, "rule_id": g.rule_id, "insert_id": g.insert_id,
                    "amount": c.amount, "currency": c.currency, "min_order": c.min_order, "expires_on": c.expires_on,
                    "occurred_at": d.decided_at});
                pending.outbox.push(OutboxInsert {
                    topic: TOPIC_COUPONS,
                    key: Some(c.code.as_bytes().to_vec()),
                    payload: msg.to_string().into_bytes(),
                    headers: None,
                });
            }
            pending.given.push(GivenInsert {
                order_id: d.order_id.clone(),
                seq: seq as i64,
                insert_id: g.insert_id.clone(),
                rule_id: g.rule_id.clone(),
                kind: g.kind.to_string(),
                stock_slot,
            });
        }
        for e in &outcome.exposures {
            let mut costs: std::collections::BTreeMap<String, i64> =
                std::collections::BTreeMap::new();
            for (currency, amount) in &e.costs {
                *costs.entry(currency.to_string()).or_default() += to_units(*amount);
            }
            pending.expose(
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
            pending.exposures.push(ExposureInsert {
                source_id: e.rule_id.clone(),
                order_id: d.order_id.clone(),
                customer_id: d.customer_id.clone(),
                arm: e.arm.as_str(),
                at: at.timestamp(),
                costs: costs.into_iter().collect(),
            });
        }
        let json = serde_json::to_string(d).map_err(corrupt)?;
        pending.outbox.push(OutboxInsert {
            topic: TOPIC_PACKING,
            key: Some(d.order_id.as_bytes().to_vec()),
            payload: json.as_bytes().to_vec(),
            headers: None,
        });
        pending.decisions.push(DecisionInsert {
            order_id: d.order_id.clone(),
            customer_id: d.customer_id.clone(),
            warehouse: d.warehouse.clone(),
            rules_version: d.rules_version.clone(),
            decided_at: at.timestamp(),
            json,
        });
        Self::stage_emails(
            pending,
            &d.order_id,
            &d.customer_id,
            customer_since,
            &d.followups,
            &outcome.followup_holdouts,
        )
    }

    /// Stages an order's e-mail jobs: the scheduled ones pending, the held-out ones
    /// skipped with reason `holdout` (the control group is recorded, keyed alike).
    pub(super) fn stage_emails(
        pending: &mut Pending,
        order_id: &str,
        customer_id: &str,
        customer_since: Option<i64>,
        followups: &[engine::ScheduledFollowup],
        held_out: &[engine::ScheduledFollowup],
    ) -> Result<(), StoreError> {
        let all = followups
            .iter()
            .map(|f| (f, false))
            .chain(held_out.iter().map(|f| (f, true)));
        for (f, held_out) in all {
            let due = DateTime::parse_from_rfc3339(&f.due_at)
                .map(|t| t.timestamp())
                .map_err(corrupt)?;
            pending.expose(
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
            pending.emails.push(EmailInsert {
                order_id: order_id.to_string(),
                followup_id: f.followup_id.clone(),
                customer_id: customer_id.to_string(),
                due_at: due,
                held_out,
            });
        }
        Ok(())
    }
}
