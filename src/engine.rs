//! The decision: which inserts go into a parcel and which follow-ups an order schedules.
//!
//! Pure: the rules, the customer's profile (with this order already folded in), the order, the
//! decision time, a view of stock and budget counters and the coupon key go in; a [`Decision`]
//! and the counter claims it makes come out. `simulate`, `backtest` and the service all call
//! [`decide`], so they cannot disagree.

mod context;

pub use context::Context;

pub use context::{Shop, coupons_json as context_coupons, template_context};

use crate::coupon::CouponKey;
use crate::event::Order;
use crate::money::{Currency, format_amount};
use crate::profile::Profile;
use crate::rules::{Condition, InsertBody, Mode, RuleSet, StockSlot, Trigger};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use zen_expression::Variable;
use zen_expression::vm::VM;

pub const SCHEMA_VERSION: u32 = 1;

/// Why a rule (or one of its inserts) gave nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub schema_version: u32,
    pub order_id: String,
    pub customer_id: String,
    pub warehouse: String,
    pub rules_version: String,
    pub decided_at: String,
    pub segments: Vec<String>,
    pub inserts: Vec<GivenInsert>,
    pub followups: Vec<ScheduledFollowup>,
    pub skipped: Vec<Skip>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Explain>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GivenInsert {
    pub insert_id: String,
    pub kind: String,
    pub rule_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<CouponGiven>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<NoteGiven>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponGiven {
    pub code: String,
    pub amount: String,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_order: Option<String>,
    pub expires_on: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteGiven {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledFollowup {
    pub followup_id: String,
    pub due_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    pub rule_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert_id: Option<String>,
    pub reason: SkipReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explain {
    pub segments: Vec<ExplainSegment>,
    pub rules: Vec<ExplainRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainSegment {
    pub id: String,
    pub matched: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainRule {
    pub id: String,
    /// "given", "off", or a skip reason.
    pub outcome: String,
}

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
        if let (Some(cd), Some(last)) = (rule.cooldown, profile.last_given(&rule.id))
            && at < last + cd
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
                let used = input.counters.stock_used(&insert.id, &slot)
                    + stock_taken
                        .get(&(insert.id.clone(), slot.clone()))
                        .copied()
                        .unwrap_or(0)
                    + rule_stock_extra
                        .get(&(idx, slot.clone()))
                        .copied()
                        .unwrap_or(0);
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
                let spent = input.counters.budget_spent(&rule.id, &period, currency)
                    + budget_taken
                        .get(&(rule.id.clone(), currency))
                        .copied()
                        .unwrap_or(Decimal::ZERO)
                    + rule_budget_extra
                        .get(&currency)
                        .copied()
                        .unwrap_or(Decimal::ZERO);
                if spent + amount > *limit {
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
                *rule_budget_extra.entry(currency).or_default() += amount;
            }
            if let Some((slot, _)) = &stock_slot {
                *rule_stock_extra.entry((idx, slot.clone())).or_default() += 1;
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
                        expires_on: (date + Duration::days(i64::from(c.valid_days)))
                            .format("%Y-%m-%d")
                            .to_string(),
                    });
                }
                InsertBody::Item { sku, .. } => g.sku = sku.clone(),
                InsertBody::Note { .. } => {}
            }
            if let Some((slot, allocation)) = stock_slot {
                *stock_taken
                    .entry((insert.id.clone(), slot.clone()))
                    .or_default() += 1;
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
                    *budget_taken
                        .entry((rule.id.clone(), *currency))
                        .or_default() += *amount;
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
            let data = template_data.get_or_insert_with(|| {
                crate::render::TemplateData::from(template_context(
                    profile,
                    order,
                    &[],
                    at,
                    None,
                    input.shop,
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
        inserts.extend(given);
        outcome(None, "given", &mut explain);
    }

    let (followups, followup_skips) =
        schedule_followups(rules, profile, &ctx, Trigger::OrderPlaced, at, &mut vm);
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
    }
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
                due_at: format_time(at + f.after),
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
    let ctx = Context::build(
        profile,
        order,
        at,
        late_days
            .or(Some(0))
            .filter(|_| trigger == Trigger::OrderDelivered),
        &rules.needs,
    );
    let mut vm = VM::new();
    schedule_followups(rules, profile, &ctx, trigger, at, &mut vm)
}
