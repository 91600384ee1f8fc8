//! Replaying events in memory through the profile fold and the engine, as the service would:
//! what `simulate`, `test`, `preview` and `backtest` run. Counters (stock, budgets) and issued
//! codes are kept here so a history changes what later orders get, exactly as in the service.

use crate::coupon::CouponKey;
use crate::engine::{
    self, Claim, Counters, DecideInput, IssuedCodes, Outcome, ScheduledFollowup, Shop, Skip,
};
use crate::event::{Event, EventBody, RejectReason, Rejected};
use crate::money::Currency;
use crate::profile::{Folded, History};
use crate::rules::{RuleSet, StockSlot, Trigger};
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};

/// Counters and issued codes held in memory.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    stock: HashMap<(String, StockSlot), u32>,
    budget: HashMap<(String, String, Currency), Decimal>,
    codes: HashSet<String>,
    /// Given inserts per order, to return them to stock on a cancellation.
    given_stock: HashMap<String, Vec<(String, StockSlot)>>,
}

impl Counters for MemoryCounters {
    fn stock_used(&self, insert_id: &str, slot: &StockSlot) -> u32 {
        self.stock
            .get(&(insert_id.to_string(), slot.clone()))
            .copied()
            .unwrap_or(0)
    }
    fn budget_spent(&self, rule_id: &str, period: &str, currency: Currency) -> Decimal {
        self.budget
            .get(&(rule_id.to_string(), period.to_string(), currency))
            .copied()
            .unwrap_or(Decimal::ZERO)
    }
}

impl IssuedCodes for MemoryCounters {
    fn is_issued(&self, code: &str) -> bool {
        self.codes.contains(code)
    }
}

impl MemoryCounters {
    fn take(&mut self, order_id: &str, outcome: &Outcome) {
        for claim in &outcome.claims {
            match claim {
                Claim::Stock {
                    insert_id,
                    slot,
                    quantity,
                    ..
                } => {
                    let used = self
                        .stock
                        .entry((insert_id.clone(), slot.clone()))
                        .or_default();
                    *used = used.saturating_add(*quantity);
                    self.given_stock
                        .entry(order_id.to_string())
                        .or_default()
                        .push((insert_id.clone(), slot.clone()));
                }
                Claim::Budget {
                    rule_id,
                    period,
                    currency,
                    amount,
                    ..
                } => {
                    // A budget's claims never pass its limit, so this sum is far from overflow.
                    let spent = self
                        .budget
                        .entry((rule_id.clone(), period.clone(), *currency))
                        .or_default();
                    *spent = spent.checked_add(*amount).unwrap_or(Decimal::MAX);
                }
            }
        }
        for insert in &outcome.decision.inserts {
            if let Some(c) = &insert.coupon {
                self.codes.insert(c.code.clone());
            }
        }
    }

    /// A cancellation before packing returns the order's inserts to stock, once.
    fn restock(&mut self, order_id: &str) {
        for (insert_id, slot) in self.given_stock.remove(order_id).unwrap_or_default() {
            if let Some(n) = self.stock.get_mut(&(insert_id, slot)) {
                *n = n.saturating_sub(1);
            }
        }
    }
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

pub struct Replay<'a> {
    pub rules: &'a RuleSet,
    pub key: &'a CouponKey,
    pub shop: &'a Shop,
    pub history: History,
    pub counters: MemoryCounters,
    /// Decisions by order id (a replayed order returns the stored decision).
    pub decisions: HashMap<String, engine::Decision>,
}

impl<'a> Replay<'a> {
    pub fn new(rules: &'a RuleSet, key: &'a CouponKey, shop: &'a Shop) -> Self {
        Replay {
            rules,
            key,
            shop,
            history: History::default(),
            counters: MemoryCounters::default(),
            decisions: HashMap::new(),
        }
    }

    /// Folds an event and decides it when it is a new order. `decide` false folds only
    /// (history built before the time of interest).
    ///
    /// Guarded as the service's batch is: a step that panics is undone (what the fold changed
    /// is put back, as the service's transaction rolls back) and tried once more, and an event
    /// that makes it panic twice is set aside (`internal_error`) instead of stopping the replay.
    /// Counters and decisions change only after `decide` has returned.
    pub fn apply(&mut self, event: &Event, decide: bool, explain: bool) -> Applied {
        let mut message = String::new();
        for _ in 0..2 {
            let before = self.history.snapshot(event);
            let step =
                std::panic::AssertUnwindSafe(|| self.apply_unguarded(event, decide, explain));
            match std::panic::catch_unwind(step) {
                Ok(applied) => return applied,
                Err(panic) => {
                    self.history.restore(before);
                    message = crate::panic_message(&*panic);
                }
            }
        }
        tracing::error!(event_id = %event.event_id, %message, "the decision path failed twice on an event; it is set aside");
        Applied::Rejected(Rejected {
            reason: RejectReason::InternalError,
            message: format!("the decision path failed on this event twice: {message}"),
        })
    }

    fn apply_unguarded(&mut self, event: &Event, decide: bool, explain: bool) -> Applied {
        crate::fault::check(crate::fault::Point::Decide, &event.event_id);
        let folded = match self.history.fold(event) {
            Ok(Some(folded)) => folded,
            Ok(None) => return Applied::Unchanged,
            Err(rejected) => return Applied::Rejected(rejected),
        };
        let customer = event.customer_id().to_string();
        match (folded, &event.body) {
            (Folded::NewOrder, EventBody::OrderPlaced(order)) => {
                if !decide {
                    return Applied::Folded {
                        followups: Vec::new(),
                        skipped: Vec::new(),
                    };
                }
                let Some(profile) = self.history.profile(&customer) else {
                    return Applied::Unchanged;
                };
                let outcome = engine::decide(&DecideInput {
                    rules: self.rules,
                    profile,
                    order,
                    at: event.occurred_at,
                    counters: &self.counters,
                    issued: &self.counters,
                    key: self.key,
                    shop: self.shop,
                    explain,
                });
                self.counters.take(&order.id, &outcome);
                if let Some(p) = self.history.profile_mut(&customer) {
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
                self.decisions
                    .insert(order.id.clone(), outcome.decision.clone());
                Applied::Decided(Box::new(outcome))
            }
            (Folded::DuplicateOrder, _) => Applied::Unchanged,
            (Folded::Conflict | Folded::ChangedOrder, _) => Applied::Conflict,
            (Folded::Cancelled, EventBody::OrderCancelled { order_id, .. }) => {
                self.counters.restock(order_id);
                Applied::Folded {
                    followups: Vec::new(),
                    skipped: Vec::new(),
                }
            }
            (Folded::Delivered { late_days }, EventBody::OrderDelivered { order_id, .. }) => self
                .followups(
                    decide,
                    &customer,
                    order_id,
                    Trigger::OrderDelivered,
                    event,
                    Some(late_days),
                ),
            (_, EventBody::OrderShipped { order_id, .. }) => self.followups(
                decide,
                &customer,
                order_id,
                Trigger::OrderShipped,
                event,
                None,
            ),
            _ => Applied::Folded {
                followups: Vec::new(),
                skipped: Vec::new(),
            },
        }
    }

    fn followups(
        &self,
        decide: bool,
        customer: &str,
        order_id: &str,
        trigger: Trigger,
        event: &Event,
        late_days: Option<i64>,
    ) -> Applied {
        let (Some(profile), Some(summary)) = (
            self.history.profile(customer),
            self.history.orders.get(order_id),
        ) else {
            return Applied::Folded {
                followups: Vec::new(),
                skipped: Vec::new(),
            };
        };
        if !decide || summary.status == crate::profile::OrderStatus::Cancelled {
            return Applied::Folded {
                followups: Vec::new(),
                skipped: Vec::new(),
            };
        }
        let order = summary.to_order(profile);
        let at = match &event.body {
            EventBody::OrderDelivered { delivered_at, .. } => *delivered_at,
            _ => event.occurred_at,
        };
        let (followups, skipped) =
            engine::followups_for_event(self.rules, profile, &order, trigger, at, late_days);
        Applied::Folded { followups, skipped }
    }
}
