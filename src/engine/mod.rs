//! The decision: which inserts go into a parcel and which follow-ups an order schedules.
//!
//! Pure: the rules, the customer's profile (with this order already folded in), the order, the
//! decision time, a view of stock and budget counters and the coupon key go in; a [`Decision`]
//! and the counter claims it makes come out. `simulate`, `backtest` and the service all call
//! [`decide`], so they cannot disagree.
//!
//! Here: the input and the helpers shared by the steps. Next to it: `decision` (what comes
//! out), `decide` (the steps of a decision), `followups`, `holdout`, `counters` (what the
//! engine reads of stock and budgets) and `context` (what conditions and templates see).

mod context;
mod counters;
mod decide;
mod decision;
mod followups;
mod holdout;

pub use context::Context;
pub use context::{Shop, coupons_json as context_coupons, template_context, template_context_for};
pub use counters::{Counters, Fresh, IssuedCodes};
pub use decide::decide;
pub use decision::{
    Arm, Claim, Cost, CouponGiven, Decision, Explain, ExplainRule, ExplainSegment, Exposure,
    GivenInsert, NoteGiven, Outcome, RULES_VERSION_PATTERN, SCHEMA_VERSION, ScheduledFollowup,
    Skip, SkipReason,
};
pub use decision::{arm_label, split_arm_label};
pub use followups::{
    followup_holds, followups_for_event, held_out_followups, problems_of, schedule_followups,
};
pub use holdout::{assigned_variant, draw_variant, holdout_bucket, in_holdout};

use crate::coupon::CouponKey;
use crate::event::Order;
use crate::profile::Profile;
use crate::rules::{Condition, RuleSet};
use chrono::{DateTime, SecondsFormat, Utc};
use zen_expression::Variable;
use zen_expression::vm::VM;

pub struct DecideInput<'a> {
    pub rules: &'a RuleSet,
    pub profile: &'a Profile,
    pub order: &'a Order,
    pub at: DateTime<Utc>,
    pub counters: &'a dyn Counters,
    pub issued: &'a dyn IssuedCodes,
    pub key: &'a CouponKey,
    pub shop: &'a Shop,
    pub explain: bool,
}

pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Evaluates a condition: Ok(bool) or the evaluation error's message (counted as false).
pub fn evaluate(cond: &Condition, ctx: &Variable, vm: &mut VM) -> Result<bool, String> {
    match cond.expr.evaluate_with(ctx.clone(), vm) {
        Ok(Variable::Bool(b)) => Ok(b),
        Ok(Variable::Null) => Ok(false),
        Ok(other) => Err(format!(
            "the condition gave {} instead of true or false",
            other.type_name()
        )),
        Err(e) => Err(e.to_string()),
    }
}
