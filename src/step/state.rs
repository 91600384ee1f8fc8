//! What the step reads and changes: the part of the shop's state one event may touch. The
//! in-memory replay keeps all of it; the store loads, per batch and in bulk, the part its events
//! touch (their profiles, orders, coupons, given inserts and the counters) and writes back what
//! the step changed.

use crate::engine::{Claim, Counters, IssuedCodes};
use crate::event::Event;
use crate::money::Currency;
use crate::profile::{OrderSummary, Profile};
use crate::rules::StockSlot;
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};

/// Where a coupon is in its life (docs/REFERENCE.md §5's `coupon.*` messages follow it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponStatus {
    Issued,
    Redeemed,
    Voided,
}

impl CouponStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CouponStatus::Issued => "issued",
            CouponStatus::Redeemed => "redeemed",
            CouponStatus::Voided => "voided",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "issued" => Some(CouponStatus::Issued),
            "redeemed" => Some(CouponStatus::Redeemed),
            "voided" => Some(CouponStatus::Voided),
            _ => None,
        }
    }
}

/// A coupon code in use: issued with an order's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponState {
    pub order_id: String,
    pub customer_id: String,
    pub status: CouponStatus,
    /// Moves on with every change, so that an upserting consumer never revives a voided code.
    pub version: i64,
}

/// the insert state machine (docs/ARCHITECTURE.md): `given → packed | not_packed | voided |
/// returned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GivenStatus {
    Given,
    Packed,
    NotPacked,
    Voided,
    Returned,
}

impl GivenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GivenStatus::Given => "given",
            GivenStatus::Packed => "packed",
            GivenStatus::NotPacked => "not_packed",
            GivenStatus::Voided => "voided",
            GivenStatus::Returned => "returned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "given" => Some(GivenStatus::Given),
            "packed" => Some(GivenStatus::Packed),
            "not_packed" => Some(GivenStatus::NotPacked),
            "voided" => Some(GivenStatus::Voided),
            "returned" => Some(GivenStatus::Returned),
            _ => None,
        }
    }
}

/// One insert given with an order, by its place in the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenState {
    pub seq: i64,
    pub insert_id: String,
    pub kind: String,
    /// The stock slot it was taken from, if it is counted.
    pub stock_slot: Option<String>,
    pub status: GivenStatus,
}

/// Stock used and budgets spent, as the engine decides on them, and codes known to be taken.
#[derive(Debug, Default, Clone)]
pub struct CounterState {
    /// Units used per (insert, slot).
    pub stock: HashMap<(String, String), u32>,
    /// Spent per (rule, period, currency).
    pub budget: HashMap<(String, String, String), Decimal>,
    /// Codes issued (all of them in memory; in the store, those found taken while writing).
    pub codes: HashSet<String>,
}

impl CounterState {
    /// Counts a decision's claims.
    pub fn take(&mut self, claims: &[Claim]) {
        for claim in claims {
            match claim {
                Claim::Stock {
                    insert_id,
                    slot,
                    quantity,
                    ..
                } => {
                    let used = self
                        .stock
                        .entry((insert_id.clone(), slot.as_str().to_string()))
                        .or_default();
                    *used = used.saturating_add(*quantity);
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
                        .entry((rule_id.clone(), period.clone(), currency.to_string()))
                        .or_default();
                    *spent = spent.checked_add(*amount).unwrap_or(Decimal::MAX);
                }
            }
        }
    }

    /// One unit back in stock.
    pub fn give_back(&mut self, insert_id: &str, slot: &str) {
        if let Some(n) = self
            .stock
            .get_mut(&(insert_id.to_string(), slot.to_string()))
        {
            *n = n.saturating_sub(1);
        }
    }
}

impl Counters for CounterState {
    fn stock_used(&self, insert_id: &str, slot: &StockSlot) -> u32 {
        self.stock
            .get(&(insert_id.to_string(), slot.as_str().to_string()))
            .copied()
            .unwrap_or(0)
    }
    fn budget_spent(&self, rule_id: &str, period: &str, currency: Currency) -> Decimal {
        self.budget
            .get(&(
                rule_id.to_string(),
                period.to_string(),
                currency.to_string(),
            ))
            .copied()
            .unwrap_or(Decimal::ZERO)
    }
}

impl IssuedCodes for CounterState {
    fn is_issued(&self, code: &str) -> bool {
        self.codes.contains(code)
    }
}

/// The state the step works on. Every map is keyed by id; the store fills it for a batch, the
/// replay keeps it whole.
#[derive(Debug, Default, Clone)]
pub struct State {
    /// Event ids processed, with the digest of the event first processed under each (None:
    /// processed before digests were kept).
    pub seen: HashMap<String, Option<[u8; 32]>>,
    pub profiles: HashMap<String, Profile>,
    pub orders: HashMap<String, OrderSummary>,
    /// Orders with a decision, and each decision's inserts.
    pub decided: HashSet<String>,
    pub given: HashMap<String, Vec<GivenState>>,
    /// Orders a packing station confirmed.
    pub packed: HashSet<String>,
    /// Coupon codes in use, and each order's codes (in the order they were issued).
    pub coupons: HashMap<String, CouponState>,
    pub order_coupons: HashMap<String, Vec<String>>,
    pub counters: CounterState,
}

/// The part of a [`State`] one event may change, kept to undo a step that failed midway or
/// must be taken again (a claim another instance won).
#[derive(Debug, Clone)]
pub struct Snapshot {
    event_id: String,
    seen: Option<Option<[u8; 32]>>,
    customer_id: String,
    profile: Option<Profile>,
    order_id: Option<String>,
    order: Option<OrderSummary>,
    decided: bool,
    given: Option<Vec<GivenState>>,
    order_coupons: Option<Vec<String>>,
    coupons: Vec<(String, Option<CouponState>)>,
    /// Stock and budgets as they were (the codes in use are put back with the coupons).
    stock: HashMap<(String, String), u32>,
    budget: HashMap<(String, String, String), Decimal>,
}

impl State {
    /// A coupon issued with `order_id`'s decision.
    pub fn add_coupon(&mut self, code: &str, coupon: CouponState) {
        self.order_coupons
            .entry(coupon.order_id.clone())
            .or_default()
            .push(code.to_string());
        self.counters.codes.insert(code.to_string());
        self.coupons.insert(code.to_string(), coupon);
    }

    /// What `event` may change.
    pub fn snapshot(&self, event: &Event) -> Snapshot {
        let order_id = event.order_id().map(str::to_string);
        let mut codes: Vec<String> = order_id
            .as_ref()
            .and_then(|id| self.order_coupons.get(id))
            .cloned()
            .unwrap_or_default();
        if let crate::event::EventBody::OrderPlaced(o) = &event.body {
            codes.extend(o.coupon_codes.iter().cloned());
        }
        Snapshot {
            event_id: event.event_id.clone(),
            seen: self.seen.get(&event.event_id).copied(),
            customer_id: event.customer_id().to_string(),
            profile: self.profiles.get(event.customer_id()).cloned(),
            order: order_id
                .as_ref()
                .and_then(|id| self.orders.get(id))
                .cloned(),
            decided: order_id
                .as_ref()
                .is_some_and(|id| self.decided.contains(id)),
            given: order_id.as_ref().and_then(|id| self.given.get(id)).cloned(),
            order_coupons: order_id
                .as_ref()
                .and_then(|id| self.order_coupons.get(id))
                .cloned(),
            coupons: codes
                .into_iter()
                .map(|c| {
                    let state = self.coupons.get(&c).cloned();
                    (c, state)
                })
                .collect(),
            stock: self.counters.stock.clone(),
            budget: self.counters.budget.clone(),
            order_id,
        }
    }

    /// Puts back what [`State::snapshot`] saw.
    pub fn restore(&mut self, s: Snapshot) {
        put(&mut self.seen, s.event_id, s.seen);
        put(&mut self.profiles, s.customer_id, s.profile);
        if let Some(id) = s.order_id {
            put(&mut self.orders, id.clone(), s.order);
            put(&mut self.given, id.clone(), s.given);
            // Codes issued by the undone step are forgotten with it.
            if let Some(codes) = self.order_coupons.get(&id) {
                let kept: HashSet<&String> = s.order_coupons.iter().flatten().collect();
                for code in codes.iter().filter(|c| !kept.contains(c)) {
                    self.coupons.remove(code);
                    self.counters.codes.remove(code);
                }
            }
            put(&mut self.order_coupons, id.clone(), s.order_coupons);
            if s.decided {
                self.decided.insert(id);
            } else {
                self.decided.remove(&id);
            }
        }
        for (code, state) in s.coupons {
            put(&mut self.coupons, code, state);
        }
        self.counters.stock = s.stock;
        self.counters.budget = s.budget;
    }

    /// The profile and order summary an event needs to decide on, if both are known.
    pub fn profile_and_order(
        &self,
        customer_id: &str,
        order_id: &str,
    ) -> Option<(&Profile, &OrderSummary)> {
        Some((self.profiles.get(customer_id)?, self.orders.get(order_id)?))
    }

    /// Marks a decision made: its given inserts, from the rules' stock slots.
    pub fn record_given(&mut self, order_id: &str, given: Vec<GivenState>) {
        self.decided.insert(order_id.to_string());
        self.given.insert(order_id.to_string(), given);
    }
}

fn put<V>(map: &mut HashMap<String, V>, key: String, value: Option<V>) {
    match value {
        Some(v) => map.insert(key, v),
        None => map.remove(&key),
    };
}

/// The stock slot an insert of a decision is counted in, if the rules count it.
pub fn stock_slot(
    rules: &crate::rules::RuleSet,
    insert_id: &str,
    warehouse: &str,
) -> Option<String> {
    rules.insert(insert_id).and_then(|i| match &i.body {
        crate::rules::InsertBody::Item { stock: Some(s), .. } => {
            s.slot(warehouse).map(|(slot, _)| slot.as_str().to_string())
        }
        _ => None,
    })
}
