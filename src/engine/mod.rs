//! The decision: which inserts go into a parcel and which follow-ups an order schedules.
//!
//! Pure: the rules, the customer's profile (with this order already folded in), the order, the
//! decision time, a view of stock and budget counters and the coupon key go in; a [`Decision`]
//! and the counter claims it makes come out. `simulate`, `backtest` and the service all call
//! [`decide`], so they cannot disagree.

mod context;

pub use context::Context;

pub use context::{Shop, coupons_json as context_coupons, template_context, template_context_for};

use crate::coupon::CouponKey;
use crate::event::Order;
use crate::money::{Currency, format_amount};
use crate::profile::Profile;
use crate::rules::{Condition, InsertBody, Mode, RuleSet, StockSlot, Trigger};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use zen_expression::Variable;
use zen_expression::vm::VM;

/// The `schema_version` of the decision as stored and emitted (CONTRACT §3, §5).
pub const SCHEMA_VERSION: u32 = 1;

/// Why a rule (or one of its inserts) gave nothing.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    Condition,
    Error,
    Inactive,
    Group,
    Cooldown,
    Currency,
    Stock,
    Budget,
    MaxInserts,
    Holdout,
    Shadow,
}

impl SkipReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::Condition => "condition",
            SkipReason::Error => "error",
            SkipReason::Inactive => "inactive",
            SkipReason::Group => "group",
            SkipReason::Cooldown => "cooldown",
            SkipReason::Currency => "currency",
            SkipReason::Stock => "stock",
            SkipReason::Budget => "budget",
            SkipReason::MaxInserts => "max_inserts",
            SkipReason::Holdout => "holdout",
            SkipReason::Shadow => "shadow",
        }
    }
}

// The types below are also the JSON Schema of the decision (`schemas/packing-instruction.
// schema.json`, generated in `crate::message::schema`): the `schemars` attributes only shape that
// schema, never what is serialized.

/// A decision as `simulate --format json` prints it, as stored, and as emitted on Kafka
/// `packing-instructions` (key: the order id; consumers may upsert by `order_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, title = "Packwell packing instruction")]
pub struct Decision {
    /// The version of this message's shape.
    #[schemars(extend("const" = SCHEMA_VERSION))]
    pub schema_version: u32,
    #[schemars(length(min = 1))]
    pub order_id: String,
    #[schemars(length(min = 1))]
    pub customer_id: String,
    /// The warehouse that packs the parcel.
    #[schemars(length(min = 1))]
    pub warehouse: String,
    /// A hash of every rule file and template the decision was made with.
    #[schemars(pattern(RULES_VERSION_PATTERN))]
    pub rules_version: String,
    /// The decision time: the `order.placed` event's `occurred_at` (or `simulate --at`), UTC.
    #[schemars(extend("format" = "date-time"))]
    pub decided_at: String,
    /// Ids of the segments the customer is in for this order, in file order.
    pub segments: Vec<String>,
    /// What goes in the parcel; empty when nothing does (the order is decided all the same).
    pub inserts: Vec<GivenInsert>,
    /// The e-mails this order's `order.placed` schedules.
    pub followups: Vec<ScheduledFollowup>,
    /// Rules, inserts and follow-ups that gave nothing, and why.
    pub skipped: Vec<Skip>,
    /// Only with `simulate --explain`; never stored or emitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Explain>,
}

/// An insert that goes in the parcel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[schemars(
    deny_unknown_fields,
    extend("allOf" = [
        {"if": {"properties": {"kind": {"const": "coupon"}}}, "then": {"required": ["coupon"]}},
        {"if": {"properties": {"kind": {"const": "note"}}}, "then": {"required": ["note"]}}
    ])
)]
pub struct GivenInsert {
    pub insert_id: String,
    #[schemars(with = "crate::rules::model::InsertKind")]
    #[schema(value_type = crate::rules::model::InsertKind)]
    pub kind: String,
    /// The rule that gave it.
    pub rule_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[schemars(range(min = 1))]
    #[schema(minimum = 1)]
    pub quantity: u32,
    /// Gifts, samples and packaging: the stock-keeping unit to pick, if the rules name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// Coupons (always present for kind `coupon`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<CouponGiven>,
    /// Notes (always present for kind `note`): the card's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<NoteGiven>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[schemars(deny_unknown_fields)]
pub struct CouponGiven {
    /// The prefix, a dash and 12 characters of Crockford's base32.
    #[schemars(pattern(crate::coupon::CODE_PATTERN))]
    pub code: String,
    /// Face value in `currency`, a decimal string.
    #[schemars(pattern(crate::money::AMOUNT_PATTERN))]
    pub amount: String,
    /// The order's currency (ISO 4217).
    #[schemars(pattern(crate::money::CURRENCY_PATTERN))]
    pub currency: String,
    /// The least order total the coupon is valid for, a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::money::AMOUNT_PATTERN))]
    pub min_order: Option<String>,
    /// The last day the coupon is valid (YYYY-MM-DD).
    #[schemars(extend("format" = "date"))]
    #[schema(format = Date)]
    pub expires_on: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[schemars(deny_unknown_fields)]
pub struct NoteGiven {
    /// The card's text, rendered from its template.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[schemars(deny_unknown_fields)]
pub struct ScheduledFollowup {
    pub followup_id: String,
    /// When the e-mail is due, UTC (quiet hours may hold it back further).
    #[schemars(extend("format" = "date-time"))]
    #[schema(format = DateTime)]
    pub due_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Skip {
    /// The rule or follow-up.
    pub rule_id: String,
    /// Set when one insert of the rule was skipped (`currency`, `stock`, `budget`,
    /// `max_inserts`); absent when the whole rule was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert_id: Option<String>,
    pub reason: SkipReason,
    /// With reason `error`: why the condition could not be evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Explain {
    pub segments: Vec<ExplainSegment>,
    pub rules: Vec<ExplainRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ExplainSegment {
    pub id: String,
    pub matched: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ExplainRule {
    pub id: String,
    /// "given", "off", or the skip reason that stopped the rule.
    pub outcome: String,
}

/// `rules_version`: "sha256:" and the hex digest.
pub const RULES_VERSION_PATTERN: &str = "^sha256:[0-9a-f]{64}$";

/// Counters as the engine sees them when it decides.
pub trait Counters {
    /// Net units of an insert taken from a stock slot (given less returned).
    fn stock_used(&self, insert_id: &str, slot: &StockSlot) -> u32;
    /// What a rule has spent in a period and currency.
    fn budget_spent(&self, rule_id: &str, period: &str, currency: Currency) -> Decimal;
}

/// Codes already issued (for collisions, which move the attempt counter on).
pub trait IssuedCodes {
    fn is_issued(&self, code: &str) -> bool;
}

/// No counters used and no codes issued: a fresh shop.
pub struct Fresh;

impl Counters for Fresh {
    fn stock_used(&self, _: &str, _: &StockSlot) -> u32 {
        0
    }
    fn budget_spent(&self, _: &str, _: &str, _: Currency) -> Decimal {
        Decimal::ZERO
    }
}

impl IssuedCodes for Fresh {
    fn is_issued(&self, _: &str) -> bool {
        false
    }
}

/// A claim on a counter that the caller must take when it stores the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Stock {
        insert_id: String,
        slot: StockSlot,
        allocation: u32,
        quantity: u32,
    },
    Budget {
        rule_id: String,
        period: String,
        currency: Currency,
        limit: Decimal,
        amount: Decimal,
    },
}

/// What an insert given costs, for budgets, backtests and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    pub rule_id: String,
    pub insert_id: String,
    pub currency: Currency,
    pub amount: Decimal,
}

/// A decision and what it takes from counters.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub decision: Decision,
    pub claims: Vec<Claim>,
    pub costs: Vec<Cost>,
    /// Rules that gave at least one insert (their cooldowns start now).
    pub rules_given: Vec<String>,
    /// Follow-ups this order would have scheduled but for the customer's holdout: recorded
    /// as e-mail jobs skipped with reason `holdout`, the control group of the effect report.
    pub followup_holdouts: Vec<ScheduledFollowup>,
    /// Each rule that gave, was held out or ran in shadow, with what it gave or would have
    /// given: the effect report's attribution data.
    pub exposures: Vec<Exposure>,
}

/// How a rule met a customer in a decision, for the effect report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// The rule gave at least one insert.
    Treated,
    /// The rule would have given, but the customer is in its holdout.
    HeldOut,
    /// A shadow rule would have given.
    Shadow,
}

impl Arm {
    pub fn as_str(&self) -> &'static str {
        match self {
            Arm::Treated => "treated",
            Arm::HeldOut => "held_out",
            Arm::Shadow => "shadow",
        }
    }
}

/// A rule's part in one decision: its arm and the cost (CONTRACT §2) of what it gave, or of
/// what it would have given when held out or in shadow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    pub rule_id: String,
    pub arm: Arm,
    pub costs: Vec<(Currency, Decimal)>,
}

impl Exposure {
    fn new(rule_id: &str, arm: Arm, passing: &[Passing]) -> Self {
        Exposure {
            rule_id: rule_id.to_string(),
            arm,
            costs: passing.iter().filter_map(|(_, _, cost)| *cost).collect(),
        }
    }
}

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

/// `at` plus a rule's delay; a delay past the calendar's end is due at its end.
fn after(at: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    at.checked_add_signed(delay)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The deterministic holdout bucket 0..10000 of a customer for a rule or follow-up.
pub fn holdout_bucket(customer_id: &str, rule_id: &str) -> u16 {
    let mut h = Sha256::new();
    for field in [customer_id.as_bytes(), rule_id.as_bytes()] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field);
    }
    let d = h.finalize();
    (u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) % 10_000) as u16
}

pub fn in_holdout(customer_id: &str, rule_id: &str, holdout_bp: u16) -> bool {
    holdout_bp > 0 && holdout_bucket(customer_id, rule_id) < holdout_bp
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

/// An insert that passed its checks: its index, the stock slot and allocation it draws on,
/// and its cost.
type Passing = (usize, Option<(StockSlot, u32)>, Option<(Currency, Decimal)>);

/// Decides one order.
pub fn decide(input: &DecideInput<'_>) -> Outcome {
    let DecideInput {
        rules,
        profile,
        order,
        at,
        ..
    } = *input;
    let ctx = context::Context::build(profile, order, at, None, &rules.needs);
    let mut vm = VM::new();
    let mut explain = input.explain.then(|| Explain {
        segments: Vec::new(),
        rules: Vec::new(),
    });
    let mut skipped: Vec<Skip> = Vec::new();

    let mut segments: Vec<String> = Vec::new();
    for seg in &rules.segments {
        let matched = match evaluate(&seg.when, &ctx.root, &mut vm) {
            Ok(m) => m,
            Err(message) => {
                tracing::warn!(segment = %seg.id, order_id = %order.id, %message, "segment condition could not be evaluated");
                false
            }
        };
        if matched {
            ctx.push_segment(&seg.id);
            segments.push(seg.id.clone());
        }
        if let Some(e) = explain.as_mut() {
            e.segments.push(ExplainSegment {
                id: seg.id.clone(),
                matched,
            });
        }
    }

    let date = at.date_naive();
    let max = rules.package.max_inserts as usize;
    let mut places_taken = 0usize;
    let mut settled_groups: Vec<&str> = Vec::new();
    let mut inserts: Vec<GivenInsert> = Vec::new();
    let mut claims: Vec<Claim> = Vec::new();
    let mut costs: Vec<Cost> = Vec::new();
    let mut rules_given: Vec<String> = Vec::new();
    let mut exposures: Vec<Exposure> = Vec::new();
    // Counter use within this decision, on top of the view.
    let mut stock_taken: BTreeMap<(String, StockSlot), u32> = BTreeMap::new();
    let mut budget_taken: BTreeMap<(String, Currency), Decimal> = BTreeMap::new();
    let mut codes_used: Vec<String> = Vec::new();
    let mut template_data: Option<crate::render::TemplateData> = None;

    for rule in &rules.rules {
        let outcome = |reason: Option<SkipReason>, label: &str, explain: &mut Option<Explain>| {
            if let Some(e) = explain.as_mut() {
                e.rules.push(ExplainRule {
                    id: rule.id.clone(),
                    outcome: reason
                        .map(|r| r.as_str().to_string())
                        .unwrap_or_else(|| label.to_string()),
                });
            }
        };
        let skip = |skipped: &mut Vec<Skip>,
                    reason: SkipReason,
                    insert_id: Option<&str>,
                    message: Option<String>| {
            skipped.push(Skip {
                rule_id: rule.id.clone(),
                insert_id: insert_id.map(str::to_string),
                reason,
                message,
            });
        };

        if rule.mode == Mode::Off {
            outcome(None, "off", &mut explain);
            continue;
        }
        if rule.active_from.is_some_and(|f| date < f) || rule.active_until.is_some_and(|u| date > u)
        {
            skip(&mut skipped, SkipReason::Inactive, None, None);
            outcome(Some(SkipReason::Inactive), "", &mut explain);
            continue;
        }
        match evaluate(&rule.when, &ctx.root, &mut vm) {
            Ok(true) => {}
            Ok(false) => {
                if input.explain {
                    skip(&mut skipped, SkipReason::Condition, None, None);
                }
                outcome(Some(SkipReason::Condition), "", &mut explain);
                continue;
            }
            Err(message) => {
                tracing::warn!(rule = %rule.id, order_id = %order.id, %message, "rule condition could not be evaluated");
                skip(&mut skipped, SkipReason::Error, None, Some(message));
                outcome(Some(SkipReason::Error), "", &mut explain);
                continue;
            }
        }
        if let Some(g) = &rule.group
            && settled_groups.contains(&g.as_str())
        {
            skip(&mut skipped, SkipReason::Group, None, None);
            outcome(Some(SkipReason::Group), "", &mut explain);
            continue;
        }
        // A cooldown that reaches past the calendar's end lasts for ever.
        if let (Some(cd), Some(last)) = (rule.cooldown, profile.last_given(&rule.id))
            && last.checked_add_signed(cd).is_none_or(|until| at < until)
        {
            skip(&mut skipped, SkipReason::Cooldown, None, None);
            outcome(Some(SkipReason::Cooldown), "", &mut explain);
            continue;
        }

        // Per insert, in `give` order: currency, stock, budget, max_inserts.
        let mut passing: Vec<Passing> = Vec::new();
        let mut rule_budget_extra: BTreeMap<Currency, Decimal> = BTreeMap::new();
        let mut rule_stock_extra: BTreeMap<(usize, StockSlot), u32> = BTreeMap::new();
        for &idx in &rule.give {
            let insert = &rules.inserts[idx];
            let cost: Option<(Currency, Decimal)> = match &insert.body {
                InsertBody::Coupon(c) => match c.amount.get(&order.currency) {
                    Some(a) => Some((order.currency, *a)),
                    None => {
                        skip(&mut skipped, SkipReason::Currency, Some(&insert.id), None);
                        continue;
                    }
                },
                InsertBody::Note { .. } => None,
                InsertBody::Item { unit_cost, .. } => Some((rules.package.currency, *unit_cost)),
            };
            let mut stock_slot = None;
            if let InsertBody::Item {
                stock: Some(stock), ..
            } = &insert.body
            {
                let Some((slot, allocation)) = stock.slot(&order.warehouse) else {
                    skip(&mut skipped, SkipReason::Stock, Some(&insert.id), None);
                    continue;
                };
                // Saturating: a counter at its limit is simply out of stock.
                let used = input
                    .counters
                    .stock_used(&insert.id, &slot)
                    .saturating_add(
                        stock_taken
                            .get(&(insert.id.clone(), slot.clone()))
                            .copied()
                            .unwrap_or(0),
                    )
                    .saturating_add(
                        rule_stock_extra
                            .get(&(idx, slot.clone()))
                            .copied()
                            .unwrap_or(0),
                    );
                if used >= allocation {
                    skip(&mut skipped, SkipReason::Stock, Some(&insert.id), None);
                    continue;
                }
                stock_slot = Some((slot, allocation));
            }
            if let (Some(budget), Some((currency, amount))) = (&rule.budget, cost)
                && let Some(limit) = budget.limits.get(&currency)
            {
                let period = budget.per.key(date);
                // Checked: a sum too large to hold is over any limit.
                let spent = input
                    .counters
                    .budget_spent(&rule.id, &period, currency)
                    .checked_add(
                        budget_taken
                            .get(&(rule.id.clone(), currency))
                            .copied()
                            .unwrap_or(Decimal::ZERO),
                    )
                    .and_then(|s| {
                        s.checked_add(
                            rule_budget_extra
                                .get(&currency)
                                .copied()
                                .unwrap_or(Decimal::ZERO),
                        )
                    })
                    .and_then(|s| s.checked_add(amount));
                if spent.is_none_or(|total| total > *limit) {
                    skip(&mut skipped, SkipReason::Budget, Some(&insert.id), None);
                    continue;
                }
            }
            let shadow = rule.mode == Mode::Shadow;
            if !shadow && places_taken + passing.len() >= max {
                skip(&mut skipped, SkipReason::MaxInserts, Some(&insert.id), None);
                continue;
            }
            if let Some((currency, amount)) = cost {
                let extra = rule_budget_extra.entry(currency).or_default();
                *extra = extra.checked_add(amount).unwrap_or(Decimal::MAX);
            }
            if let Some((slot, _)) = &stock_slot {
                let extra = rule_stock_extra.entry((idx, slot.clone())).or_default();
                *extra = extra.saturating_add(1);
            }
            passing.push((idx, stock_slot, cost));
        }

        if passing.is_empty() {
            // Every insert was skipped above; the rule gives nothing and settles nothing.
            let reason = skipped.last().map(|s| s.reason);
            outcome(reason, "nothing", &mut explain);
            continue;
        }
        if rule.mode == Mode::Shadow {
            exposures.push(Exposure::new(&rule.id, Arm::Shadow, &passing));
            skip(&mut skipped, SkipReason::Shadow, None, None);
            outcome(Some(SkipReason::Shadow), "", &mut explain);
            continue;
        }
        if in_holdout(&profile.customer_id, &rule.id, rule.holdout_bp) {
            // The held-out parcel keeps this rule's places and group, so it differs from the
            // treated parcel by this rule alone.
            places_taken += passing.len();
            if let Some(g) = &rule.group {
                settled_groups.push(g);
            }
            exposures.push(Exposure::new(&rule.id, Arm::HeldOut, &passing));
            skip(&mut skipped, SkipReason::Holdout, None, None);
            outcome(Some(SkipReason::Holdout), "", &mut explain);
            continue;
        }

        // Give: coupons first get their codes so the rule's notes can print them.
        let mut given: Vec<GivenInsert> = Vec::new();
        for (idx, stock_slot, cost) in &passing {
            let insert = &rules.inserts[*idx];
            let mut g = GivenInsert {
                insert_id: insert.id.clone(),
                kind: insert.kind.as_str().to_string(),
                rule_id: rule.id.clone(),
                title: insert.title.clone(),
                quantity: 1,
                sku: None,
                coupon: None,
                note: None,
            };
            match &insert.body {
                InsertBody::Coupon(c) => {
                    let mut attempt = 0;
                    let code = loop {
                        let code = input.key.code(
                            &c.code_prefix,
                            &order.id,
                            &rule.id,
                            &insert.id,
                            attempt,
                        );
                        if !input.issued.is_issued(&code) && !codes_used.contains(&code) {
                            break code;
                        }
                        attempt += 1;
                    };
                    codes_used.push(code.clone());
                    let (_, amount) = cost.unwrap_or((order.currency, Decimal::ZERO));
                    g.coupon = Some(CouponGiven {
                        code,
                        amount: format_amount(amount),
                        currency: order.currency.to_string(),
                        min_order: c.min_order.get(&order.currency).map(|m| format_amount(*m)),
                        expires_on: date
                            .checked_add_signed(Duration::days(i64::from(c.valid_days)))
                            .unwrap_or(chrono::NaiveDate::MAX)
                            .format("%Y-%m-%d")
                            .to_string(),
                    });
                }
                InsertBody::Item { sku, .. } => g.sku = sku.clone(),
                InsertBody::Note { .. } => {}
            }
            if let Some((slot, allocation)) = stock_slot {
                let taken = stock_taken
                    .entry((insert.id.clone(), slot.clone()))
                    .or_default();
                *taken = taken.saturating_add(1);
                claims.push(Claim::Stock {
                    insert_id: insert.id.clone(),
                    slot: slot.clone(),
                    allocation: *allocation,
                    quantity: 1,
                });
            }
            if let Some((currency, amount)) = cost {
                costs.push(Cost {
                    rule_id: rule.id.clone(),
                    insert_id: insert.id.clone(),
                    currency: *currency,
                    amount: *amount,
                });
                if let Some(budget) = &rule.budget
                    && let Some(limit) = budget.limits.get(currency)
                {
                    let taken = budget_taken
                        .entry((rule.id.clone(), *currency))
                        .or_default();
                    *taken = taken.checked_add(*amount).unwrap_or(Decimal::MAX);
                    claims.push(Claim::Budget {
                        rule_id: rule.id.clone(),
                        period: budget.per.key(date),
                        currency: *currency,
                        limit: *limit,
                        amount: *amount,
                    });
                }
            }
            given.push(g);
        }
        // Notes see the coupons their own rule gives. The template data is built once per
        // decision, at the first note, and only the coupons change between rules.
        let mut notes: Vec<(usize, String)> = Vec::new();
        for (i, &(idx, _, _)) in passing.iter().enumerate() {
            let InsertBody::Note { template } = &rules.inserts[idx].body else {
                continue;
            };
            // Only what the notes read: most print a name and a coupon, not the items.
            let data = template_data.get_or_insert_with(|| {
                crate::render::TemplateData::from(context::template_context_for(
                    profile,
                    order,
                    Vec::new(),
                    at,
                    None,
                    input.shop,
                    rules.templates.note_needs(),
                ))
            });
            let coupons: Vec<(&GivenInsert, &CouponGiven)> = given
                .iter()
                .filter_map(|g| g.coupon.as_ref().map(|c| (g, c)))
                .collect();
            set_coupons(data, context::coupons_json(&coupons));
            let text = match rules.templates.render_note_with(template, data) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(rule = %rule.id, insert = %rules.inserts[idx].id, error = %e, "note could not be rendered");
                    String::new()
                }
            };
            notes.push((i, text));
        }
        for (i, text) in notes {
            given[i].note = Some(NoteGiven { text });
        }
        places_taken += given.len();
        if let Some(g) = &rule.group {
            settled_groups.push(g);
        }
        rules_given.push(rule.id.clone());
        exposures.push(Exposure::new(&rule.id, Arm::Treated, &passing));
        inserts.extend(given);
        outcome(None, "given", &mut explain);
    }

    let (followups, followup_skips) =
        schedule_followups(rules, profile, &ctx, Trigger::OrderPlaced, at, &mut vm);
    let followup_holdouts = held_out_followups(rules, &followup_skips, at);
    skipped.extend(followup_skips);

    Outcome {
        decision: Decision {
            schema_version: SCHEMA_VERSION,
            order_id: order.id.clone(),
            customer_id: order.customer.id.clone(),
            warehouse: order.warehouse.clone(),
            rules_version: rules.version.clone(),
            decided_at: format_time(at),
            segments,
            inserts,
            followups,
            skipped,
            explain,
        },
        claims,
        costs,
        rules_given,
        followup_holdouts,
        exposures,
    }
}

/// The follow-ups held out in a list of follow-up skips, each due when it would have been.
pub fn held_out_followups(
    rules: &RuleSet,
    followup_skips: &[Skip],
    at: DateTime<Utc>,
) -> Vec<ScheduledFollowup> {
    followup_skips
        .iter()
        .filter(|s| s.reason == SkipReason::Holdout)
        .filter_map(|s| rules.followup(&s.rule_id))
        .map(|f| ScheduledFollowup {
            followup_id: f.id.clone(),
            due_at: format_time(after(at, f.after)),
        })
        .collect()
}

/// Whether a follow-up's condition holds for an order now, on the history as it is: the
/// e-mail sender checks it again before sending (CONTRACT §5, reason `condition`).
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

fn set_coupons(data: &mut crate::render::TemplateData, coupons: Vec<serde_json::Value>) {
    if let serde_json::Value::Object(map) = data.data_mut() {
        map.insert(
            "coupon".into(),
            coupons.first().cloned().unwrap_or(serde_json::Value::Null),
        );
        map.insert("coupons".into(), serde_json::Value::Array(coupons));
    }
}

/// The follow-ups an event schedules: those `on` its trigger whose condition holds, less the
/// held-out customers (recorded as skipped with reason `holdout`).
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
                due_at: format_time(after(at, f.after)),
            }),
            Ok(false) => {}
            Err(message) => {
                tracing::warn!(followup = %f.id, %message, "follow-up condition could not be evaluated");
                skipped.push(Skip {
                    rule_id: f.id.clone(),
                    insert_id: None,
                    reason: SkipReason::Error,
                    message: Some(message),
                })
            }
        }
    }
    (scheduled, skipped)
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
