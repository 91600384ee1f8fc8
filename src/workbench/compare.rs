//! "What it would have done": the same history backtested with the rules in force and with the
//! edited ones ([`crate::backtest`]), and the two put side by side: per rule and insert, given
//! before and after; coupons and cost per currency; the orders whose parcels change, with a
//! sample; the day each insert's stock would have run out; the daily cost.

use crate::backtest::{BacktestReport, money};
use crate::money::format_amount;
use crate::step::Applied;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Orders whose parcels change, shown at most.
pub const SAMPLE: usize = 50;

/// What one side's decisions gave, order by order and day by day, beyond the backtest report.
#[derive(Debug, Default)]
pub struct SideLog {
    /// Order id to (customer, placed day, what the parcel held: `insert` or `insert ×n`).
    orders: HashMap<String, (String, String, Vec<String>)>,
    /// Day to cost per currency.
    daily: BTreeMap<String, BTreeMap<String, Decimal>>,
    coupons: u64,
    /// Insert to the first day an order could not have it for want of stock.
    run_out: BTreeMap<String, String>,
    out_of_stock: BTreeMap<String, u64>,
    /// A daily total too large to hold exactly.
    overflow: Option<String>,
}

impl SideLog {
    /// Counts one applied event (a backtest's observer).
    pub fn observe(&mut self, applied: &Applied) {
        let Applied::Decided(outcome) = applied else {
            return;
        };
        let d = &outcome.decision;
        let day = d.decided_at.get(..10).unwrap_or(&d.decided_at).to_string();
        let mut parcel: Vec<String> = d
            .inserts
            .iter()
            .map(|i| match i.quantity {
                1 => i.insert_id.clone(),
                n => format!("{} ×{n}", i.insert_id),
            })
            .collect();
        parcel.sort();
        self.coupons += d
            .inserts
            .iter()
            .filter(|i| i.coupon.is_some())
            .map(|i| u64::from(i.quantity))
            .sum::<u64>();
        for s in &d.skipped {
            if s.reason == crate::engine::SkipReason::Stock
                && let Some(insert) = &s.insert_id
            {
                *self.out_of_stock.entry(insert.clone()).or_default() += 1;
                self.run_out
                    .entry(insert.clone())
                    .or_insert_with(|| day.clone());
            }
        }
        let costs = self.daily.entry(day.clone()).or_default();
        for c in &outcome.costs {
            let total = costs.entry(c.currency.to_string()).or_default();
            match total.checked_add(c.amount) {
                Some(sum) => *total = sum,
                None => {
                    self.overflow = Some(format!(
                        "the cost in {} on {day} is too large to hold exactly",
                        c.currency
                    ))
                }
            }
        }
        self.orders
            .insert(d.order_id.clone(), (d.customer_id.clone(), day, parcel));
    }
}

/// A figure before and after the edit.
pub type BeforeAfter<T> = [T; 2];

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RuleChange {
    pub id: String,
    #[schema(value_type = [u64])]
    pub given: BeforeAfter<u64>,
    #[schema(value_type = [u64])]
    pub held_out: BeforeAfter<u64>,
    /// Currency to [before, after].
    #[schema(value_type = Object)]
    pub cost: BTreeMap<String, BeforeAfter<String>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InsertChange {
    pub id: String,
    #[schema(value_type = [u64])]
    pub given: BeforeAfter<u64>,
    #[schema(value_type = Object)]
    pub cost: BTreeMap<String, BeforeAfter<String>>,
    /// Orders that could not have it for want of stock.
    #[schema(value_type = [u64])]
    pub out_of_stock: BeforeAfter<u64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChangedOrder {
    pub order_id: String,
    pub customer_id: String,
    /// The day it was placed (UTC).
    pub placed_on: String,
    pub before: Vec<String>,
    pub after: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DailyCost {
    pub day: String,
    #[schema(value_type = Object)]
    pub before: BTreeMap<String, String>,
    #[schema(value_type = Object)]
    pub after: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunOut {
    pub insert_id: String,
    /// The first day it would have run out with the rules in force, if it would.
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The two backtests side by side.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Comparison {
    pub days: u32,
    /// The first and last time decided (RFC 3339); empty without events.
    pub from: String,
    pub to: String,
    /// Events replayed, the history before the window included.
    pub events: u64,
    /// Orders decided (in the window).
    pub orders: u64,
    pub rules: Vec<RuleChange>,
    pub inserts: Vec<InsertChange>,
    #[schema(value_type = [u64])]
    pub coupons: BeforeAfter<u64>,
    /// Currency to [before, after], every rule together.
    #[schema(value_type = Object)]
    pub cost: BTreeMap<String, BeforeAfter<String>>,
    pub changed_orders: u64,
    pub changed_customers: u64,
    /// Up to 50 changed orders, oldest first.
    pub sample: Vec<ChangedOrder>,
    pub daily: Vec<DailyCost>,
    pub stock_run_outs: Vec<RunOut>,
}

/// Puts the two sides together; an error when a total is too large to hold exactly.
pub fn compare(
    days: u32,
    before: (&BacktestReport, &SideLog),
    after: (&BacktestReport, &SideLog),
) -> Result<Comparison, String> {
    let ((report_b, log_b), (report_a, log_a)) = (before, after);
    if let Some(e) = log_b.overflow.as_ref().or(log_a.overflow.as_ref()) {
        return Err(e.clone());
    }
    let ids = |b: Vec<String>, a: Vec<String>| {
        let mut seen = BTreeSet::new();
        b.into_iter()
            .chain(a)
            .filter(|id| seen.insert(id.clone()))
            .collect::<Vec<_>>()
    };
    let rule_ids = ids(
        report_b.rules.iter().map(|r| r.id.clone()).collect(),
        report_a.rules.iter().map(|r| r.id.clone()).collect(),
    );
    let rules = rule_ids
        .into_iter()
        .map(|id| {
            let b = report_b.rules.iter().find(|r| r.id == id);
            let a = report_a.rules.iter().find(|r| r.id == id);
            RuleChange {
                given: [b.map_or(0, |r| r.given), a.map_or(0, |r| r.given)],
                held_out: [b.map_or(0, |r| r.held_out), a.map_or(0, |r| r.held_out)],
                cost: pair(b.map(|r| &r.cost), a.map(|r| &r.cost)),
                id,
            }
        })
        .collect();
    let insert_ids = ids(
        report_b.inserts.iter().map(|r| r.id.clone()).collect(),
        report_a.inserts.iter().map(|r| r.id.clone()).collect(),
    );
    let inserts = insert_ids
        .into_iter()
        .map(|id| {
            let b = report_b.inserts.iter().find(|r| r.id == id);
            let a = report_a.inserts.iter().find(|r| r.id == id);
            let stock = |log: &SideLog| log.out_of_stock.get(&id).copied().unwrap_or(0);
            InsertChange {
                given: [b.map_or(0, |r| r.given), a.map_or(0, |r| r.given)],
                cost: pair(b.map(|r| &r.cost), a.map(|r| &r.cost)),
                out_of_stock: [stock(log_b), stock(log_a)],
                id,
            }
        })
        .collect();
    let (changed, changed_customers) = changed_orders(log_b, log_a);
    let total = |log: &SideLog| -> Result<BTreeMap<String, String>, String> {
        let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
        for day in log.daily.values() {
            for (currency, amount) in day {
                let sum = sums.entry(currency.clone()).or_default();
                *sum = sum.checked_add(*amount).ok_or_else(|| {
                    format!("the cost in {currency} is too large to hold exactly")
                })?;
            }
        }
        Ok(money(&sums))
    };
    let days_seen: BTreeSet<&String> = log_b.daily.keys().chain(log_a.daily.keys()).collect();
    let daily = days_seen
        .into_iter()
        .map(|day| DailyCost {
            day: day.clone(),
            before: log_b.daily.get(day).map(money).unwrap_or_default(),
            after: log_a.daily.get(day).map(money).unwrap_or_default(),
        })
        .collect();
    let run_out_ids: BTreeSet<&String> = log_b.run_out.keys().chain(log_a.run_out.keys()).collect();
    let stock_run_outs = run_out_ids
        .into_iter()
        .map(|id| RunOut {
            insert_id: id.clone(),
            before: log_b.run_out.get(id).cloned(),
            after: log_a.run_out.get(id).cloned(),
        })
        .collect();
    let window = report_a.window.as_ref();
    Ok(Comparison {
        days,
        from: window.map(|w| w.from.clone()).unwrap_or_default(),
        to: window.map(|w| w.to.clone()).unwrap_or_default(),
        events: report_a.events,
        orders: report_a.orders,
        rules,
        inserts,
        coupons: [log_b.coupons, log_a.coupons],
        cost: pair(Some(&total(log_b)?), Some(&total(log_a)?)),
        changed_orders: changed.len() as u64,
        changed_customers,
        sample: changed.into_iter().take(SAMPLE).collect(),
        daily,
        stock_run_outs,
    })
}

/// The orders whose parcels differ, oldest first, and how many customers they belong to.
fn changed_orders(before: &SideLog, after: &SideLog) -> (Vec<ChangedOrder>, u64) {
    let order_ids: BTreeSet<&String> = before.orders.keys().chain(after.orders.keys()).collect();
    let empty = Vec::new();
    let mut changed: Vec<ChangedOrder> = order_ids
        .into_iter()
        .filter_map(|id| {
            let b = before.orders.get(id);
            let a = after.orders.get(id);
            let parcel_b = b.map_or(&empty, |o| &o.2);
            let parcel_a = a.map_or(&empty, |o| &o.2);
            let (customer, day, _) = b.or(a)?;
            (parcel_b != parcel_a).then(|| ChangedOrder {
                order_id: id.clone(),
                customer_id: customer.clone(),
                placed_on: day.clone(),
                before: parcel_b.clone(),
                after: parcel_a.clone(),
            })
        })
        .collect();
    changed.sort_by(|x, y| (&x.placed_on, &x.order_id).cmp(&(&y.placed_on, &y.order_id)));
    let customers: BTreeSet<&String> = changed.iter().map(|c| &c.customer_id).collect();
    let customers = customers.len() as u64;
    (changed, customers)
}

/// Per-currency amounts of both sides, a currency one side lacks at zero.
fn pair(
    before: Option<&BTreeMap<String, String>>,
    after: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, BeforeAfter<String>> {
    let zero = || format_amount(Decimal::ZERO);
    let currencies: BTreeSet<&String> = before
        .into_iter()
        .flat_map(|m| m.keys())
        .chain(after.into_iter().flat_map(|m| m.keys()))
        .collect();
    currencies
        .into_iter()
        .map(|c| {
            let get = |m: Option<&BTreeMap<String, String>>| {
                m.and_then(|m| m.get(c)).cloned().unwrap_or_else(zero)
            };
            (c.clone(), [get(before), get(after)])
        })
        .collect()
}
