//! What a step produced, as data: the rows the store writes and the messages it sends.
//! Effects of many events gather in one value, in event order, so that the store writes a
//! batch's in a handful of multi-row statements (about fifteen for 500 events) instead of
//! several per event; the replay keeps them to show or compare.

use crate::engine::{Claim, Decision};
use crate::event::RejectReason;
use crate::message::{DeadLetter, DlqSource, OutboxMessage};
use crate::money::to_units;
use std::collections::{BTreeMap, BTreeSet};

use super::state::{CouponStatus, GivenStatus};

#[derive(Debug, Default)]
pub struct Effects {
    /// Stock claims per (insert, slot): quantity taken and the allocation it must stay within.
    /// A BTreeMap, so keys are always taken in the same order and two instances never wait on
    /// each other in a cycle.
    pub stock: BTreeMap<(String, String), (i64, i64)>,
    /// Budget claims per (rule, period, currency) in 1/10000 units: amount and limit.
    pub budget: BTreeMap<(String, String, String), (i64, i64)>,
    pub coupons: Vec<CouponInsert>,
    /// Coupons that changed state (redeemed, voided), in event order, after `coupons`.
    pub coupon_changes: Vec<CouponChange>,
    pub given: Vec<GivenInsert>,
    /// Given inserts that moved on (voided, returned), after `given`.
    pub given_changes: Vec<GivenChange>,
    /// Units that go back to stock, (insert, slot), one per unit, after the claims.
    pub stock_returns: Vec<(String, String)>,
    pub decisions: Vec<DecisionInsert>,
    /// Outbox messages in event order, so the relay sends them in it.
    pub messages: Vec<Message>,
    /// Orders whose e-mails are cancelled (cancelled or returned orders): the e-mail jobs
    /// written before this batch. Jobs of this batch are written cancelled already.
    pub email_cancellations: Vec<String>,
    pub emails: Vec<EmailInsert>,
    pub exposures: Vec<ExposureInsert>,
    /// Customers' first exposures, one per key, merged within the batch (a multi-row upsert
    /// may touch a row only once), in key order.
    pub first_exposures: BTreeMap<FirstExposureKey, FirstExposure>,
    pub feedback: Vec<FeedbackInsert>,
    /// What a decision could not evaluate or render, as sentences: the step is pure, so the
    /// store logs them when it applies the batch. They are not written.
    pub problems: Vec<String>,
    /// Customers subscribed again through the shop, with the time: an unsubscribe by link
    /// from before then no longer holds.
    pub resubscribed: Vec<(String, i64)>,
    /// Profiles and orders the step changed, to be written back.
    pub profiles: BTreeSet<String>,
    pub orders: BTreeSet<String>,
    /// The events applied, kept in application order so the shop's history can be replayed.
    pub events: Vec<EventRow>,
}

/// An applied event as it is kept: its ids, its own time and its compact encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub event_id: String,
    pub customer_id: String,
    /// The event's own time, Unix seconds.
    pub occurred_at: i64,
    /// [`crate::event::compact::encode`] of the event.
    pub body: Vec<u8>,
}

impl EventRow {
    pub fn of(event: &crate::event::Event) -> Self {
        EventRow {
            event_id: event.event_id.clone(),
            customer_id: event.customer_id().to_string(),
            occurred_at: event.occurred_at.timestamp(),
            body: crate::event::compact::encode(event),
        }
    }
}

/// An outbox message, typed: the store gives each its topic, key and bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The decision of an order, for the packing stations.
    Packing(Box<Decision>),
    CouponIssued(crate::message::CouponIssued),
    CouponVoided(crate::message::CouponVoided),
    /// An event set aside.
    Dlq(DlqEntry),
}

impl Message {
    /// The outbox row this message is: the one conversion, for the store to write and for a
    /// replay to compare with what a store wrote. A DLQ message's headers name `source`.
    pub fn to_outbox(&self, source: DlqSource<'_>) -> Result<OutboxMessage, serde_json::Error> {
        Ok(match self {
            Message::Packing(d) => OutboxMessage::try_from(&**d)?,
            Message::CouponIssued(c) => c.clone().into_outbox(),
            Message::CouponVoided(c) => c.clone().into_outbox(),
            Message::Dlq(d) => DeadLetter::new(
                source,
                d.offset,
                d.key.clone(),
                &d.value,
                d.reason,
                &d.error,
            )
            .into_outbox(),
        })
    }
}

/// An event set aside, with where it came from (the store adds its topic and partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqEntry {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub reason: RejectReason,
    pub error: String,
}

/// A coupon's move from the state it was read in (the store writes it as a compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponChange {
    pub code: String,
    pub from: CouponStatus,
    pub to: CouponStatus,
    pub version: i64,
    pub redeemed_order_id: Option<String>,
}

/// A given insert's move from the state it was read in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenChange {
    pub order_id: String,
    pub seq: i64,
    pub from: GivenStatus,
    pub to: GivenStatus,
}

/// (kind, source id, customer id, shadow).
pub type FirstExposureKey = (&'static str, String, String, bool);

/// The earliest exposure seen for a key, and its arm (`mixed` once two arms were seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstExposure {
    pub at: i64,
    /// `treated`, `held_out`, `shadow`, a variant's `treated:<id>`, or `mixed`.
    pub arm: String,
    pub customer_since: Option<i64>,
}

/// How a rule met a customer in a decision, and what it gave or would have given (the
/// effect report's attribution data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposureInsert {
    pub source_id: String,
    pub order_id: String,
    pub customer_id: String,
    /// As in [`FirstExposure::arm`].
    pub arm: String,
    pub at: i64,
    /// Per currency, in 1/10000 units, currencies sorted.
    pub costs: Vec<(String, i64)>,
}

/// An NPS answer, with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackInsert {
    pub customer_id: String,
    pub at: i64,
    pub nps: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenInsert {
    pub order_id: String,
    pub seq: i64,
    pub insert_id: String,
    pub rule_id: String,
    pub kind: String,
    pub stock_slot: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionInsert {
    pub order_id: String,
    pub customer_id: String,
    pub warehouse: String,
    pub rules_version: String,
    pub decided_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailInsert {
    pub order_id: String,
    pub followup_id: String,
    /// The follow-up's variant, when it is an experiment (never for the held out).
    pub variant: Option<String>,
    pub customer_id: String,
    pub due_at: i64,
    pub state: EmailStart,
}

/// How an e-mail job starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailStart {
    Pending,
    /// In the follow-up's holdout: recorded as skipped (`holdout`), never sent.
    HeldOut,
    /// Its order was cancelled or returned later in the same batch.
    Cancelled,
}

impl Effects {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.stock.is_empty()
            && self.budget.is_empty()
            && self.coupons.is_empty()
            && self.coupon_changes.is_empty()
            && self.given.is_empty()
            && self.given_changes.is_empty()
            && self.stock_returns.is_empty()
            && self.decisions.is_empty()
            && self.messages.is_empty()
            && self.email_cancellations.is_empty()
            && self.emails.is_empty()
            && self.exposures.is_empty()
            && self.first_exposures.is_empty()
            && self.feedback.is_empty()
            && self.resubscribed.is_empty()
            && self.profiles.is_empty()
            && self.orders.is_empty()
            && self.events.is_empty()
    }

    /// Adds `later`'s effects after these, as if one step had made both.
    pub fn append(&mut self, later: Effects) {
        for (key, (quantity, allocation)) in later.stock {
            let e = self.stock.entry(key).or_insert((0, allocation));
            e.0 = e.0.saturating_add(quantity);
            e.1 = e.1.min(allocation);
        }
        for (key, (amount, limit)) in later.budget {
            let e = self.budget.entry(key).or_insert((0, limit));
            e.0 = e.0.saturating_add(amount);
            e.1 = e.1.min(limit);
        }
        self.coupons.extend(later.coupons);
        self.coupon_changes.extend(later.coupon_changes);
        self.given.extend(later.given);
        self.given_changes.extend(later.given_changes);
        self.stock_returns.extend(later.stock_returns);
        self.decisions.extend(later.decisions);
        self.messages.extend(later.messages);
        for order_id in &later.email_cancellations {
            for e in self.emails.iter_mut().filter(|e| &e.order_id == order_id) {
                if e.state == EmailStart::Pending {
                    e.state = EmailStart::Cancelled;
                }
            }
        }
        self.email_cancellations.extend(later.email_cancellations);
        self.emails.extend(later.emails);
        self.exposures.extend(later.exposures);
        for (key, first) in later.first_exposures {
            self.expose(key, first);
        }
        self.feedback.extend(later.feedback);
        self.problems.extend(later.problems);
        self.resubscribed.extend(later.resubscribed);
        self.profiles.extend(later.profiles);
        self.orders.extend(later.orders);
        self.events.extend(later.events);
    }

    /// Records an exposure for the first-exposure table: the earliest time, `mixed` when the
    /// customer met the rule in two arms.
    pub fn expose(&mut self, key: FirstExposureKey, exposure: FirstExposure) {
        self.first_exposures
            .entry(key)
            .and_modify(|first| {
                if first.arm != exposure.arm {
                    first.arm = "mixed".to_string();
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
                    e.0 = e.0.saturating_add(i64::from(*quantity));
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
                    e.0 = e.0.saturating_add(to_units(*amount));
                    e.1 = e.1.min(to_units(*limit));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::rules::StockSlot;

    #[test]
    fn claims_add_up_per_key_in_sorted_order() {
        let mut p = Effects::default();
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
    fn first_exposures_keep_the_earliest_and_mix_arms() {
        let mut p = Effects::default();
        p.emails.push(EmailInsert {
            order_id: "o1".into(),
            followup_id: "f".into(),
            variant: None,
            customer_id: "c".into(),
            due_at: 0,
            state: EmailStart::Pending,
        });
        assert!(!p.is_empty());
        let key = ("rule", "r".to_string(), "c".to_string(), false);
        let at = |at, arm: &str| FirstExposure {
            at,
            arm: arm.to_string(),
            customer_since: Some(1),
        };
        p.expose(key.clone(), at(20, "treated"));
        p.expose(key.clone(), at(10, "treated"));
        assert_eq!(p.first_exposures[&key], at(10, "treated"));
        p.expose(key.clone(), at(30, "held_out"));
        assert_eq!(p.first_exposures[&key], at(10, "mixed"));
        // Two variants of one experiment are two arms.
        let other = ("rule", "x".to_string(), "c".to_string(), false);
        p.expose(other.clone(), at(5, "treated:note"));
        p.expose(other.clone(), at(6, "treated:note"));
        assert_eq!(p.first_exposures[&other], at(5, "treated:note"));
        p.expose(other.clone(), at(7, "treated:coupon"));
        assert_eq!(p.first_exposures[&other], at(5, "mixed"));
    }
}
