//! [`decide`]: one order decided, rule by rule, in file order. Each rule passes its gates
//! (mode, dates, condition, group, cooldown), then each of its inserts its checks (currency,
//! stock, budget, places left), and what passes is given (coupon codes, counter claims) or,
//! for shadow and held-out rules, only recorded.

use super::context::{self, Context};
use super::{
    Arm, Claim, Cost, CouponGiven, DecideInput, Decision, Explain, ExplainRule, ExplainSegment,
    Exposure, GivenInsert, NoteGiven, Outcome, SCHEMA_VERSION, Skip, SkipReason, assigned_variant,
    evaluate, format_time, held_out_followups, in_holdout, schedule_followups,
};
use crate::money::{Currency, format_amount};
use crate::render::TemplateData;
use crate::rules::{InsertBody, Mode, Rule, StockSlot, Trigger, Variant};
use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use zen_expression::Variable;
use zen_expression::vm::VM;

/// An insert that passed its checks: its index, the stock slot and allocation it draws on,
/// and its cost.
type Passing = (usize, Option<(StockSlot, u32)>, Option<(Currency, Decimal)>);

impl Exposure {
    fn new(rule_id: &str, arm: Arm, variant: Option<&Variant>, passing: &[Passing]) -> Self {
        Exposure {
            rule_id: rule_id.to_string(),
            arm,
            variant: variant.map(|v| v.id.clone()),
            costs: passing.iter().filter_map(|(_, _, cost)| *cost).collect(),
        }
    }
}

/// Decides one order.
pub fn decide(input: &DecideInput<'_>) -> Outcome {
    let DecideInput {
        rules,
        profile,
        order,
        at,
        ..
    } = *input;
    let ctx = Context::build(profile, order, at, None, &rules.needs);
    let mut vm = VM::new();
    let mut parcel = Parcel::new(input);
    let segments = parcel.match_segments(&ctx, &mut vm);
    for rule in &rules.rules {
        parcel.apply_rule(rule, &ctx.root, &mut vm);
    }

    let (followups, followup_skips) =
        schedule_followups(rules, profile, &ctx, Trigger::OrderPlaced, at, &mut vm);
    let followup_holdouts = held_out_followups(rules, profile, &followup_skips, at);
    let Parcel {
        explain,
        mut skipped,
        inserts,
        claims,
        costs,
        rules_given,
        exposures,
        mut problems,
        ..
    } = parcel;
    problems.extend(super::followups::problems_of(&followup_skips));
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
        problems,
    }
}

/// A decision being made: what the rules so far gave, skipped and took from the counters.
struct Parcel<'i, 'a> {
    input: &'i DecideInput<'a>,
    date: NaiveDate,
    explain: Option<Explain>,
    skipped: Vec<Skip>,
    /// Places of `max_inserts` taken, by inserts given or by held-out rules.
    places_taken: usize,
    /// Groups in which a rule has given (or been held out): the group's other rules skip.
    settled_groups: Vec<&'a str>,
    inserts: Vec<GivenInsert>,
    claims: Vec<Claim>,
    costs: Vec<Cost>,
    rules_given: Vec<String>,
    exposures: Vec<Exposure>,
    /// What could not be evaluated or rendered, for the log ([`Outcome::problems`]).
    problems: Vec<String>,
    // Counter use within this decision, on top of the view.
    stock_taken: BTreeMap<(String, StockSlot), u32>,
    budget_taken: BTreeMap<(String, Currency), Decimal>,
    codes_used: Vec<String>,
    /// The notes' template data, built at the first note (see [`Parcel::write_notes`]).
    template_data: Option<TemplateData>,
}

impl<'i, 'a> Parcel<'i, 'a> {
    fn new(input: &'i DecideInput<'a>) -> Self {
        Parcel {
            input,
            date: input.at.date_naive(),
            explain: input.explain.then(|| Explain {
                segments: Vec::new(),
                rules: Vec::new(),
            }),
            skipped: Vec::new(),
            places_taken: 0,
            settled_groups: Vec::new(),
            inserts: Vec::new(),
            claims: Vec::new(),
            costs: Vec::new(),
            rules_given: Vec::new(),
            exposures: Vec::new(),
            problems: Vec::new(),
            stock_taken: BTreeMap::new(),
            budget_taken: BTreeMap::new(),
            codes_used: Vec::new(),
            template_data: None,
        }
    }

    /// The segments the customer is in, in file order; each is added to the context as it
    /// matches, so later segments and the rules can test it.
    fn match_segments(&mut self, ctx: &Context, vm: &mut VM) -> Vec<String> {
        let mut segments: Vec<String> = Vec::new();
        for seg in &self.input.rules.segments {
            let matched = match evaluate(&seg.when, &ctx.root, vm) {
                Ok(m) => m,
                Err(message) => {
                    self.problems.push(format!(
                        "segment {}: its condition could not be evaluated: {message}",
                        seg.id
                    ));
                    false
                }
            };
            if matched {
                ctx.push_segment(&seg.id);
                segments.push(seg.id.clone());
            }
            if let Some(e) = self.explain.as_mut() {
                e.segments.push(ExplainSegment {
                    id: seg.id.clone(),
                    matched,
                });
            }
        }
        segments
    }

    /// Records, for `--explain`, how a rule ended: its skip reason, else `label`.
    fn outcome(&mut self, rule: &Rule, reason: Option<SkipReason>, label: &str) {
        if let Some(e) = self.explain.as_mut() {
            e.rules.push(ExplainRule {
                id: rule.id.clone(),
                outcome: reason
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_else(|| label.to_string()),
            });
        }
    }

    fn skip(
        &mut self,
        rule: &Rule,
        reason: SkipReason,
        insert_id: Option<&str>,
        message: Option<String>,
    ) {
        self.skipped.push(Skip {
            rule_id: rule.id.clone(),
            insert_id: insert_id.map(str::to_string),
            reason,
            message,
        });
    }

    /// One rule: its gates, its inserts' checks, then given, or recorded as shadow or
    /// held out.
    fn apply_rule(&mut self, rule: &'a Rule, ctx: &Variable, vm: &mut VM) {
        if !self.passes_gates(rule, ctx, vm) {
            return;
        }
        // An experiment's variant is known before the holdout is: the held-out parcel keeps
        // the places the customer's variant would have taken.
        let variant = assigned_variant(self.input.profile, &rule.id, &rule.variants);
        let give = variant.map_or(rule.give.as_slice(), |v| v.give.as_slice());
        let passing = self.passing_inserts(rule, give);
        if passing.is_empty() {
            // Every insert was skipped; the rule gives nothing and settles nothing.
            let reason = self.skipped.last().map(|s| s.reason);
            self.outcome(rule, reason, "nothing");
            return;
        }
        if rule.mode == Mode::Shadow {
            self.exposures
                .push(Exposure::new(&rule.id, Arm::Shadow, variant, &passing));
            self.skip(rule, SkipReason::Shadow, None, None);
            self.outcome(rule, Some(SkipReason::Shadow), "");
            return;
        }
        if in_holdout(&self.input.profile.customer_id, &rule.id, rule.holdout_bp) {
            // The held-out parcel keeps this rule's places and group, so it differs from the
            // treated parcel by this rule alone.
            self.places_taken += passing.len();
            if let Some(g) = &rule.group {
                self.settled_groups.push(g);
            }
            // Recorded with the variant the customer would have had: each variant is compared
            // with the held-out customers who would have had it, chosen by the same checks.
            self.exposures
                .push(Exposure::new(&rule.id, Arm::HeldOut, variant, &passing));
            self.skip(rule, SkipReason::Holdout, None, None);
            self.outcome(rule, Some(SkipReason::Holdout), "");
            return;
        }

        let mut given = self.give(rule, variant, &passing);
        self.write_notes(rule, &passing, &mut given);
        self.places_taken += given.len();
        if let Some(g) = &rule.group {
            self.settled_groups.push(g);
        }
        self.rules_given.push(rule.id.clone());
        self.exposures
            .push(Exposure::new(&rule.id, Arm::Treated, variant, &passing));
        self.inserts.extend(given);
        self.outcome(rule, None, "given");
    }

    /// The checks of a rule as a whole: mode, active dates, condition, group, cooldown. A
    /// rule that fails one is recorded and goes no further.
    fn passes_gates(&mut self, rule: &Rule, ctx: &Variable, vm: &mut VM) -> bool {
        let date = self.date;
        if rule.mode == Mode::Off {
            self.outcome(rule, None, "off");
            return false;
        }
        if rule.active_from.is_some_and(|f| date < f) || rule.active_until.is_some_and(|u| date > u)
        {
            self.skip(rule, SkipReason::Inactive, None, None);
            self.outcome(rule, Some(SkipReason::Inactive), "");
            return false;
        }
        match evaluate(&rule.when, ctx, vm) {
            Ok(true) => {}
            Ok(false) => {
                if self.input.explain {
                    self.skip(rule, SkipReason::Condition, None, None);
                }
                self.outcome(rule, Some(SkipReason::Condition), "");
                return false;
            }
            Err(message) => {
                self.problems.push(format!(
                    "rule {}: its condition could not be evaluated: {message}",
                    rule.id
                ));
                self.skip(rule, SkipReason::Error, None, Some(message));
                self.outcome(rule, Some(SkipReason::Error), "");
                return false;
            }
        }
        if let Some(g) = &rule.group
            && self.settled_groups.contains(&g.as_str())
        {
            self.skip(rule, SkipReason::Group, None, None);
            self.outcome(rule, Some(SkipReason::Group), "");
            return false;
        }
        // A cooldown that reaches past the calendar's end lasts for ever.
        if let (Some(cd), Some(last)) = (rule.cooldown, self.input.profile.last_given(&rule.id))
            && last
                .checked_add_signed(cd)
                .is_none_or(|until| self.input.at < until)
        {
            self.skip(rule, SkipReason::Cooldown, None, None);
            self.outcome(rule, Some(SkipReason::Cooldown), "");
            return false;
        }
        true
    }

    /// The rule's inserts that pass their checks, in `give` order: currency, stock, budget,
    /// max_inserts, of `give` (the rule's, or its variant's). The rule's own earlier inserts
    /// count against stock and budget.
    fn passing_inserts(&mut self, rule: &Rule, give: &[usize]) -> Vec<Passing> {
        let input = self.input;
        let rules = input.rules;
        let order = input.order;
        let max = rules.package.max_inserts as usize;
        let mut passing: Vec<Passing> = Vec::new();
        let mut rule_budget_extra: BTreeMap<Currency, Decimal> = BTreeMap::new();
        let mut rule_stock_extra: BTreeMap<(usize, StockSlot), u32> = BTreeMap::new();
        for &idx in give {
            let insert = &rules.inserts[idx];
            let cost: Option<(Currency, Decimal)> = match &insert.body {
                InsertBody::Coupon(c) => match c.amount.get(&order.currency) {
                    Some(a) => Some((order.currency, *a)),
                    None => {
                        self.skip(rule, SkipReason::Currency, Some(&insert.id), None);
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
                    self.skip(rule, SkipReason::Stock, Some(&insert.id), None);
                    continue;
                };
                // Saturating: a counter at its limit is simply out of stock.
                let used = input
                    .counters
                    .stock_used(&insert.id, &slot)
                    .saturating_add(
                        self.stock_taken
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
                    self.skip(rule, SkipReason::Stock, Some(&insert.id), None);
                    continue;
                }
                stock_slot = Some((slot, allocation));
            }
            if let (Some(budget), Some((currency, amount))) = (&rule.budget, cost)
                && let Some(limit) = budget.limits.get(&currency)
            {
                let period = budget.per.key(self.date);
                // Checked: a sum too large to hold is over any limit.
                let spent = input
                    .counters
                    .budget_spent(&rule.id, &period, currency)
                    .checked_add(
                        self.budget_taken
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
                    self.skip(rule, SkipReason::Budget, Some(&insert.id), None);
                    continue;
                }
            }
            let shadow = rule.mode == Mode::Shadow;
            if !shadow && self.places_taken + passing.len() >= max {
                self.skip(rule, SkipReason::MaxInserts, Some(&insert.id), None);
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
        passing
    }

    /// The passing inserts given: coupons get their codes (first, so that the rule's notes
    /// can print them), and every stock unit and budget amount becomes a claim.
    fn give(
        &mut self,
        rule: &Rule,
        variant: Option<&Variant>,
        passing: &[Passing],
    ) -> Vec<GivenInsert> {
        let input = self.input;
        let order = input.order;
        let date = self.date;
        let mut given: Vec<GivenInsert> = Vec::new();
        for (idx, stock_slot, cost) in passing {
            let insert = &input.rules.inserts[*idx];
            let mut g = GivenInsert {
                insert_id: insert.id.clone(),
                kind: insert.kind.as_str().to_string(),
                rule_id: rule.id.clone(),
                variant: variant.map(|v| v.id.clone()),
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
                        if !input.issued.is_issued(&code) && !self.codes_used.contains(&code) {
                            break code;
                        }
                        attempt += 1;
                    };
                    self.codes_used.push(code.clone());
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
                let taken = self
                    .stock_taken
                    .entry((insert.id.clone(), slot.clone()))
                    .or_default();
                *taken = taken.saturating_add(1);
                self.claims.push(Claim::Stock {
                    insert_id: insert.id.clone(),
                    slot: slot.clone(),
                    allocation: *allocation,
                    quantity: 1,
                });
            }
            if let Some((currency, amount)) = cost {
                self.costs.push(Cost {
                    rule_id: rule.id.clone(),
                    insert_id: insert.id.clone(),
                    currency: *currency,
                    amount: *amount,
                });
                if let Some(budget) = &rule.budget
                    && let Some(limit) = budget.limits.get(currency)
                {
                    let taken = self
                        .budget_taken
                        .entry((rule.id.clone(), *currency))
                        .or_default();
                    *taken = taken.checked_add(*amount).unwrap_or(Decimal::MAX);
                    self.claims.push(Claim::Budget {
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
        given
    }

    /// The text of the rule's notes. Notes see the coupons their own rule gives. The template
    /// data is built once per decision, at the first note, and only the coupons change
    /// between rules.
    fn write_notes(&mut self, rule: &Rule, passing: &[Passing], given: &mut [GivenInsert]) {
        let input = self.input;
        let rules = input.rules;
        let mut notes: Vec<(usize, String)> = Vec::new();
        for (i, &(idx, _, _)) in passing.iter().enumerate() {
            let InsertBody::Note { template } = &rules.inserts[idx].body else {
                continue;
            };
            // Only what the notes read: most print a name and a coupon, not the items.
            let data = self.template_data.get_or_insert_with(|| {
                TemplateData::from(context::template_context_for(
                    input.profile,
                    input.order,
                    Vec::new(),
                    input.at,
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
                    self.problems.push(format!(
                        "rule {}, insert {}: the note could not be rendered: {e}",
                        rule.id, rules.inserts[idx].id
                    ));
                    String::new()
                }
            };
            notes.push((i, text));
        }
        for (i, text) in notes {
            given[i].note = Some(NoteGiven { text });
        }
    }
}

fn set_coupons(data: &mut TemplateData, coupons: Vec<serde_json::Value>) {
    if let serde_json::Value::Object(map) = data.data_mut() {
        map.insert(
            "coupon".into(),
            coupons.first().cloned().unwrap_or(serde_json::Value::Null),
        );
        map.insert("coupons".into(), serde_json::Value::Array(coupons));
    }
}
