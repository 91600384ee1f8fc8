//! The rows a batch will write, gathered in event order while the batch is applied in memory
//! and written at its end in a handful of multi-row statements: a batch of 500 events costs
//! about fifteen statements instead of several per event.

use crate::engine::Claim;
use std::collections::BTreeMap;

use super::apply::to_units;

/// Most rows in one statement: 1 000 rows of at most 11 columns stay well inside both
/// databases' limits on parameters (SQLite 32 766, PostgreSQL 65 535).
pub const ROWS_PER_STATEMENT: usize = 1000;

#[derive(Debug, Default)]
pub struct Pending {
    /// Stock claims per (insert, slot): quantity taken and the allocation it must stay within.
    /// A BTreeMap, so keys are always taken in the same order and two instances never wait on
    /// each other in a cycle.
    pub stock: BTreeMap<(String, String), (i64, i64)>,
    /// Budget claims per (rule, period, currency) in 1/10000 units: amount and limit.
    pub budget: BTreeMap<(String, String, String), (i64, i64)>,
    pub coupons: Vec<CouponInsert>,
    pub given: Vec<GivenInsert>,
    pub decisions: Vec<DecisionInsert>,
    pub outbox: Vec<OutboxInsert>,
    pub emails: Vec<EmailInsert>,
    pub exposures: Vec<ExposureInsert>,
    /// Customers' first exposures, one per key, merged within the batch (a multi-row upsert
    /// may touch a row only once), in key order.
    pub first_exposures: BTreeMap<FirstExposureKey, FirstExposure>,
    pub feedback: Vec<FeedbackInsert>,
    /// The events applied, kept in application order (`store/events.rs`).
    pub events: Vec<super::events::EventRow>,
}

/// (kind, source id, customer id, shadow).
pub type FirstExposureKey = (&'static str, String, String, bool);

/// The earliest exposure seen for a key, and its arm (`mixed` once two arms were seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstExposure {
    pub at: i64,
    pub arm: &'static str,
    pub customer_since: Option<i64>,
}

/// How a rule met a customer in a decision, and what it gave or would have given (the
/// effect report's attribution data).
#[derive(Debug)]
pub struct ExposureInsert {
    pub source_id: String,
    pub order_id: String,
    pub customer_id: String,
    pub arm: &'static str,
    pub at: i64,
    /// Per currency, in 1/10000 units, currencies sorted.
    pub costs: Vec<(String, i64)>,
}

/// An NPS answer, with its time.
#[derive(Debug)]
pub struct FeedbackInsert {
    pub customer_id: String,
    pub at: i64,
    pub nps: i64,
}

#[derive(Debug)]
pub struct CouponInsert {
    pub code: String,
    pub order_id: String,
    pub source_id: String,
    pub insert_id: String,
    pub customer_id: String,
    pub amount: String,
    pub currency: String,
    pub expires_on: String,
    pub issued_at: i64,
}

#[derive(Debug)]
pub struct GivenInsert {
    pub order_id: String,
    pub seq: i64,
    pub insert_id: String,
    pub rule_id: String,
    pub kind: String,
    pub stock_slot: Option<String>,
}

#[derive(Debug)]
pub struct DecisionInsert {
    pub order_id: String,
    pub customer_id: String,
    pub warehouse: String,
    pub rules_version: String,
    pub decided_at: i64,
    pub json: String,
}

#[derive(Debug)]
pub struct OutboxInsert {
    pub topic: &'static str,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Option<String>,
}

#[derive(Debug)]
pub struct EmailInsert {
    pub order_id: String,
    pub followup_id: String,
    pub customer_id: String,
    pub due_at: i64,
    /// In the follow-up's holdout: recorded as skipped (`holdout`), never sent.
    pub held_out: bool,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.stock.is_empty()
            && self.budget.is_empty()
            && self.coupons.is_empty()
            && self.given.is_empty()
            && self.decisions.is_empty()
            && self.outbox.is_empty()
            && self.emails.is_empty()
            && self.exposures.is_empty()
            && self.first_exposures.is_empty()
            && self.feedback.is_empty()
            && self.events.is_empty()
    }

    /// Records an exposure for the first-exposure table: the earliest time, `mixed` when the
    /// customer met the rule in two arms.
    pub fn expose(&mut self, key: FirstExposureKey, exposure: FirstExposure) {
        self.first_exposures
            .entry(key)
            .and_modify(|first| {
                if first.arm != exposure.arm {
                    first.arm = "mixed";
                }
                if exposure.at < first.at {
                    first.at = exposure.at;
                    first.customer_since = exposure.customer_since;
                }
            })
            .or_insert(exposure);
    }

    /// Adds a decision's claims to the totals taken at the end of the batch.
    pub fn claim(&mut self, claims: &[Claim]) {
        for claim in claims {
            match claim {
                Claim::Stock {
                    insert_id,
                    slot,
                    allocation,
                    quantity,
                } => {
                    let e = self
                        .stock
                        .entry((insert_id.clone(), slot.as_str().to_string()))
                        .or_insert((0, i64::from(*allocation)));
                    e.0 += i64::from(*quantity);
                    e.1 = e.1.min(i64::from(*allocation));
                }
                Claim::Budget {
                    rule_id,
                    period,
                    currency,
                    limit,
                    amount,
                } => {
                    let e = self
                        .budget
                        .entry((rule_id.clone(), period.clone(), currency.to_string()))
                        .or_insert((0, to_units(*limit)));
                    e.0 += to_units(*amount);
                    e.1 = e.1.min(to_units(*limit));
                }
            }
        }
    }

    /// Whether a coupon staged here is one of `codes`: a statement that reads or changes
    /// them must wait for the staged rows to be written.
    pub fn touches_coupons(&self, codes: &[String]) -> bool {
        self.coupons.iter().any(|c| codes.contains(&c.code))
    }

    /// Whether rows of `order_id` (its decision, coupons, inserts, e-mail jobs) are staged here.
    pub fn touches_order(&self, order_id: &str) -> bool {
        self.decisions.iter().any(|d| d.order_id == order_id)
            || self.emails.iter().any(|e| e.order_id == order_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::rules::StockSlot;

    #[test]
    fn claims_add_up_per_key_in_sorted_order() {
        let mut p = Pending::default();
        let stock = |id: &str, q| Claim::Stock {
            insert_id: id.into(),
            slot: StockSlot::Pool,
            allocation: 100,
            quantity: q,
        };
        p.claim(&[stock("tea", 1), stock("box", 2)]);
        p.claim(&[stock("tea", 3)]);
        let keys: Vec<_> = p.stock.iter().map(|(k, v)| (k.0.as_str(), v.0)).collect();
        assert_eq!(keys, vec![("box", 2), ("tea", 4)]);
        let eur: Currency = "EUR".parse().unwrap();
        p.claim(&[Claim::Budget {
            rule_id: "r".into(),
            period: "2026-11".into(),
            currency: eur,
            limit: "100".parse().unwrap(),
            amount: "5.5".parse().unwrap(),
        }]);
        assert_eq!(p.budget.values().next(), Some(&(55_000, 1_000_000)));
        assert!(!p.is_empty());
    }

    #[test]
    fn staged_rows_are_found_by_order_and_code() {
        let mut p = Pending::default();
        p.emails.push(EmailInsert {
            order_id: "o1".into(),
            followup_id: "f".into(),
            customer_id: "c".into(),
            due_at: 0,
            held_out: false,
        });
        assert!(p.touches_order("o1"));
        let key = ("rule", "r".to_string(), "c".to_string(), false);
        let at = |at, arm| FirstExposure {
            at,
            arm,
            customer_since: Some(1),
        };
        p.expose(key.clone(), at(20, "treated"));
        p.expose(key.clone(), at(10, "treated"));
        assert_eq!(p.first_exposures[&key], at(10, "treated"));
        p.expose(key.clone(), at(30, "held_out"));
        assert_eq!(p.first_exposures[&key], at(10, "mixed"));
        assert!(!p.touches_order("o2"));
        assert!(!p.touches_coupons(&["C1".to_string()]));
    }
}
