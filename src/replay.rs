//! Replaying events in memory through the one event path ([`crate::step`]), as the service
//! would: what `simulate`, `test` and `preview` run. The whole state is kept here (profiles,
//! orders, counters, codes in use), so a history changes what later orders get exactly as in
//! the service, and every effect is kept to be shown or compared.

use crate::coupon::CouponKey;
use crate::engine::{self, Shop};
use crate::event::{Event, RejectReason, Rejected};
use crate::rules::RuleSet;
use crate::step::{self, Effects, Env, Input, State};
use std::collections::HashMap;

pub use crate::step::Applied;

pub struct Replay<'a> {
    pub rules: &'a RuleSet,
    pub key: &'a CouponKey,
    pub shop: &'a Shop,
    pub state: State,
    /// Every effect so far, in event order.
    pub effects: Effects,
    /// Decisions by order id.
    pub decisions: HashMap<String, engine::Decision>,
    /// Events applied so far: each one's place, as the DLQ headers give it.
    applied: i64,
}

impl<'a> Replay<'a> {
    pub fn new(rules: &'a RuleSet, key: &'a CouponKey, shop: &'a Shop) -> Self {
        Replay {
            rules,
            key,
            shop,
            state: State::default(),
            effects: Effects::default(),
            decisions: HashMap::new(),
            applied: 0,
        }
    }

    /// Applies an event and decides it when it is a new order. `decide` false folds only
    /// (history built before the time of interest).
    ///
    /// Guarded as the service's batch is: a step that panics is undone (what it changed is put
    /// back, as the service's transaction rolls back) and tried once more, and an event that
    /// makes it panic twice is set aside (`internal_error`) instead of stopping the replay.
    pub fn apply(&mut self, event: &Event, decide: bool, explain: bool) -> Applied {
        let offset = self.applied;
        self.applied += 1;
        let env = Env {
            rules: self.rules,
            key: self.key,
            shop: self.shop,
        };
        let input = Input {
            event: Ok(event),
            key: None,
            value: &[],
            offset,
            decide,
            explain,
        };
        let mut message = String::new();
        for _ in 0..2 {
            let before = self.state.snapshot(event);
            let mut effects = Effects::default();
            let state = &mut self.state;
            let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                step::apply(state, &mut effects, &input, &env)
            }));
            match stepped {
                Ok(stepped) => {
                    if let Applied::Decided(outcome) = &stepped.applied {
                        let d = &outcome.decision;
                        self.decisions.insert(d.order_id.clone(), d.clone());
                    }
                    self.effects.append(effects);
                    return stepped.applied;
                }
                Err(panic) => {
                    self.state.restore(before);
                    message = crate::panic_message(&*panic);
                }
            }
        }
        tracing::error!(event_id = %event.event_id, %message, "the decision path failed twice on an event; it is set aside");
        let rejected = Rejected {
            reason: RejectReason::InternalError,
            message: format!("the decision path failed on this event twice: {message}"),
        };
        let input = Input {
            event: Err(&rejected),
            ..input
        };
        step::apply(&mut self.state, &mut self.effects, &input, &env);
        Applied::Rejected(rejected)
    }

    /// Replays `history` (in time order; ties keep the order given), deciding it as the
    /// service would have, then decides `order`: what `simulate` shows and the workbench
    /// tries. An order that cannot be decided after that history is an error saying why.
    pub fn decide_after(
        &mut self,
        history: &[Event],
        order: &Event,
        explain: bool,
    ) -> Result<engine::Outcome, String> {
        if !matches!(order.body, crate::event::EventBody::OrderPlaced(_)) {
            return Err(format!(
                "the order holds a {} event, not order.placed",
                order.type_name()
            ));
        }
        let mut sorted: Vec<&Event> = history.iter().collect();
        sorted.sort_by_key(|e| e.occurred_at);
        for e in sorted {
            self.apply(e, true, false);
        }
        match self.apply(order, true, explain) {
            Applied::Decided(outcome) => Ok(*outcome),
            Applied::Conflict => Err(
                "the history has this order id under another customer, or with other content"
                    .into(),
            ),
            Applied::Rejected(r) => Err(format!(
                "the order is set aside ({}): {}",
                r.reason.as_str(),
                r.message
            )),
            _ => Err(
                "the history already holds this order (same event_id or order id): it would not be decided again"
                    .into(),
            ),
        }
    }
}
