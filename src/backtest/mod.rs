//! A history replayed in time order through the service's own code path (fold, decide,
//! counters, coupons, e-mail jobs) in a scratch store, and counted: per rule, insert and
//! segment, what was given, held out, skipped and what it cost. `packwell backtest` prints it;
//! the workbench compares two of them (`crate::workbench`). With `days`, only the last days,
//! counted back from the newest event, are decided; the events before them are folded into the
//! history first, deciding nothing, as `import` folds a history.

use crate::engine::{SkipReason, format_time};
use crate::event::Event;
use crate::money::format_amount;
use crate::step::Applied;
use crate::store::{Batch, BatchItem, DecideEnv, Fence, SqliteStore, StoreError};
use indicatif::ProgressBar;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// Days decided of the store's history when none are given (`backtest --from-store`, the
/// workbench).
pub const DEFAULT_STORE_DAYS: u32 = 30;

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct RuleStats {
    pub id: String,
    /// Orders a rule gave to; e-mails a follow-up scheduled.
    pub given: u64,
    pub held_out: u64,
    pub shadow: u64,
    pub skipped: BTreeMap<String, u64>,
    pub cost: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct InsertStats {
    pub id: String,
    pub given: u64,
    pub cost: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct SegmentStats {
    pub id: String,
    pub orders: u64,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct EmailStats {
    pub scheduled: u64,
}

/// What was decided with `--days`: the events from `from` to `to` (the newest event's time).
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct WindowStats {
    pub days: u32,
    pub from: String,
    pub to: String,
    /// Events before `from`, folded into the history without deciding.
    pub history: u64,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct BacktestReport {
    /// Every event replayed, the history before the window included.
    pub events: u64,
    pub orders: u64,
    pub rejected: u64,
    /// Null when the whole history was decided (no `--days`).
    pub window: Option<WindowStats>,
    pub rules: Vec<RuleStats>,
    pub inserts: Vec<InsertStats>,
    pub segments: Vec<SegmentStats>,
    pub emails: EmailStats,
}

/// Per rule while counting: given, held out, shadow, skipped by reason, cost by currency.
type Tally = (
    u64,
    u64,
    u64,
    BTreeMap<String, u64>,
    BTreeMap<String, Decimal>,
);

/// Adds a cost to a per-currency total, checked: rule amounts are the marketer's, and no
/// total may wrap or panic.
fn add_cost(
    totals: &mut BTreeMap<String, Decimal>,
    currency: &str,
    amount: Decimal,
    id: &str,
) -> Result<(), StoreError> {
    let total = totals.entry(currency.to_string()).or_default();
    *total = total.checked_add(amount).ok_or_else(|| {
        StoreError::Other(format!(
            "the cost in {currency} of {id} over the history is too large to hold exactly"
        ))
    })?;
    Ok(())
}

/// Replays `events` (in time order; ties keep the order given) through a scratch store, the
/// service's own code path (fold, decide, counters, coupons, e-mail jobs), and counts. With
/// `days`, only the events of the last `days` days before the newest one (at or after its
/// `occurred_at` less `days`) are decided; those before are folded without deciding.
pub async fn backtest(
    env: &DecideEnv,
    events: &[Event],
    days: Option<u32>,
    progress: &ProgressBar,
) -> Result<BacktestReport, StoreError> {
    backtest_observed(env, events, days, progress, &mut |_| {}).await
}

/// [`backtest`], showing `observe` what each event did (before it is counted), for those that
/// count more than the report does.
pub async fn backtest_observed(
    env: &DecideEnv,
    events: &[Event],
    days: Option<u32>,
    progress: &ProgressBar,
    observe: &mut (dyn FnMut(&Applied) + Send),
) -> Result<BacktestReport, StoreError> {
    // Borrowed, not copied: the workbench replays the same events twice at once.
    let mut events: Vec<&Event> = events.iter().collect();
    events.sort_by_key(|e| e.occurred_at);
    let window = days.zip(events.last()).map(|(days, newest)| {
        let to = newest.occurred_at;
        let from = to
            .checked_sub_signed(chrono::Duration::days(i64::from(days)))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        (days, from, to)
    });
    let mut history = 0u64;
    let rules = &env.rules;
    let store = SqliteStore::open(":memory:").await?;
    let mut by_rule: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_insert: BTreeMap<String, (u64, BTreeMap<String, Decimal>)> = BTreeMap::new();
    let mut by_segment: BTreeMap<String, u64> = BTreeMap::new();
    let mut report = BacktestReport::default();
    let mut offset = 0i64;
    for chunk in events.chunks(500) {
        let items = chunk
            .iter()
            .map(|e| {
                offset += 1;
                let decide = window.is_none_or(|(_, from, _)| e.occurred_at >= from);
                history += u64::from(!decide);
                BatchItem {
                    offset,
                    key: None,
                    value: Vec::new(),
                    event: Ok(Event::clone(e)),
                    decide,
                }
            })
            .collect();
        let mut batch = Batch {
            fence: Fence::None,
            items,
        };
        let applied_batch = crate::store::apply_guarded(&store, &mut batch, env).await?;
        progress.inc(chunk.len() as u64);
        report.events += chunk.len() as u64;
        for applied in applied_batch.applied {
            observe(&applied);
            match applied {
                Applied::Decided(outcome) => {
                    report.orders += 1;
                    let d = &outcome.decision;
                    for s in &d.segments {
                        *by_segment.entry(s.clone()).or_default() += 1;
                    }
                    // A rule counts once per order it gave to; an insert once per unit given.
                    for rule in &outcome.rules_given {
                        by_rule.entry(rule.clone()).or_default().0 += 1;
                    }
                    for i in &d.inserts {
                        by_insert.entry(i.insert_id.clone()).or_default().0 +=
                            u64::from(i.quantity);
                    }
                    for f in &d.followups {
                        by_rule.entry(f.followup_id.clone()).or_default().0 += 1;
                    }
                    for c in &outcome.costs {
                        let currency = c.currency.to_string();
                        let rule = by_rule.entry(c.rule_id.clone()).or_default();
                        add_cost(&mut rule.4, &currency, c.amount, &c.rule_id)?;
                        let insert = by_insert.entry(c.insert_id.clone()).or_default();
                        add_cost(&mut insert.1, &currency, c.amount, &c.insert_id)?;
                    }
                    for s in &d.skipped {
                        let stats = by_rule.entry(s.rule_id.clone()).or_default();
                        match s.reason {
                            SkipReason::Holdout => stats.1 += 1,
                            SkipReason::Shadow => stats.2 += 1,
                            _ => {}
                        }
                        *stats.3.entry(s.reason.as_str().to_string()).or_default() += 1;
                    }
                    report.emails.scheduled += d.followups.len() as u64;
                }
                Applied::Folded { followups, skipped } => {
                    report.emails.scheduled += followups.len() as u64;
                    for f in &followups {
                        by_rule.entry(f.followup_id.clone()).or_default().0 += 1;
                    }
                    for s in skipped {
                        let stats = by_rule.entry(s.rule_id.clone()).or_default();
                        if s.reason == SkipReason::Holdout {
                            stats.1 += 1;
                        }
                        *stats.3.entry(s.reason.as_str().to_string()).or_default() += 1;
                    }
                }
                Applied::Unchanged | Applied::Conflict | Applied::Rejected(_) => {}
            }
        }
    }
    // Every rule, follow-up, insert and segment is listed, also those that never applied.
    for id in rules
        .rules
        .iter()
        .map(|r| &r.id)
        .chain(rules.followups.iter().map(|f| &f.id))
    {
        let (given, held_out, shadow, skipped, cost) = by_rule.remove(id).unwrap_or_default();
        report.rules.push(RuleStats {
            id: id.clone(),
            given,
            held_out,
            shadow,
            skipped,
            cost: money(&cost),
        });
    }
    for insert in &rules.inserts {
        let (given, cost) = by_insert.remove(&insert.id).unwrap_or_default();
        report.inserts.push(InsertStats {
            id: insert.id.clone(),
            given,
            cost: money(&cost),
        });
    }
    for seg in &rules.segments {
        report.segments.push(SegmentStats {
            id: seg.id.clone(),
            orders: by_segment.remove(&seg.id).unwrap_or(0),
        });
    }
    report.window = window.map(|(days, from, to)| WindowStats {
        days,
        from: format_time(from),
        to: format_time(to),
        history,
    });
    Ok(report)
}

/// Per-currency totals as the report writes them (`"12.50"`).
pub fn money(totals: &BTreeMap<String, Decimal>) -> BTreeMap<String, String> {
    totals
        .iter()
        .map(|(c, a)| (c.clone(), format_amount(*a)))
        .collect()
}
