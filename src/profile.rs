//! Purchase history: events folded into a bounded per-customer [`Profile`] in O(1) per event,
//! plus an [`OrderSummary`] per order so a cancellation or return months later knows its value.
//!
//! Pure: no I/O and no clock. The service keeps these in the store; `simulate` and `backtest`
//! keep them in memory ([`History`]).

use crate::event::{Event, EventBody, Order, Rejected, ReturnedItem};
use crate::money::{Currency, exact_add, exact_sub};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// How many recent order times are kept for the median interval between orders.
pub const RECENT_ORDERS: usize = 8;
/// At most this many distinct categories are remembered per customer.
pub const MAX_CATEGORIES: usize = 32;

/// Net spend in one currency: placed orders less cancellations and returned items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    pub currency: Currency,
    pub net: Decimal,
    pub orders: u32,
}

/// One customer's folded history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub customer_id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub locale: Option<String>,
    pub time_zone: Option<Tz>,
    pub birthday_month: Option<u32>,
    /// Orders not cancelled.
    pub orders_count: u32,
    pub cancelled_count: u32,
    pub returns_count: u32,
    pub late_deliveries_count: u32,
    pub coupons_received: u32,
    pub coupons_redeemed: u32,
    /// Times are kept as Unix seconds: a stored profile stays small (see `benches/decide.rs`).
    pub first_order_at: Option<i64>,
    /// Times of the most recent orders, oldest first, at most [`RECENT_ORDERS`].
    pub recent_orders: Vec<i64>,
    pub spend: Vec<Spend>,
    pub categories_bought: Vec<String>,
    pub nps: Option<u8>,
    pub subscribed: bool,
    /// When each rule last gave this customer at least one insert (for cooldowns).
    pub rule_last_given: Vec<(String, i64)>,
    /// The variant of each experiment (rule or follow-up id, variant id) this customer was
    /// first given: theirs for good, whatever the weights become.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<(String, String)>,
}

impl Profile {
    pub fn new(customer_id: &str) -> Self {
        Profile {
            customer_id: customer_id.to_string(),
            first_name: None,
            last_name: None,
            email: None,
            locale: None,
            time_zone: None,
            birthday_month: None,
            orders_count: 0,
            cancelled_count: 0,
            returns_count: 0,
            late_deliveries_count: 0,
            coupons_received: 0,
            coupons_redeemed: 0,
            first_order_at: None,
            recent_orders: Vec::new(),
            spend: Vec::new(),
            categories_bought: Vec::new(),
            nps: None,
            subscribed: true,
            rule_last_given: Vec::new(),
            variants: Vec::new(),
        }
    }

    pub fn spend_in(&self, currency: Currency) -> Option<&Spend> {
        self.spend.iter().find(|s| s.currency == currency)
    }

    fn spend_mut(&mut self, currency: Currency) -> &mut Spend {
        if let Some(i) = self.spend.iter().position(|s| s.currency == currency) {
            &mut self.spend[i]
        } else {
            self.spend.push(Spend {
                currency,
                net: Decimal::ZERO,
                orders: 0,
            });
            let last = self.spend.len() - 1;
            &mut self.spend[last]
        }
    }

    /// Net spend in a currency, never below zero.
    pub fn lifetime_spend(&self, currency: Currency) -> Decimal {
        self.spend_in(currency)
            .map(|s| s.net.max(Decimal::ZERO))
            .unwrap_or(Decimal::ZERO)
    }

    pub fn average_order_value(&self, currency: Currency) -> Decimal {
        match self.spend_in(currency) {
            Some(s) if s.orders > 0 => {
                (s.net.max(Decimal::ZERO) / Decimal::from(s.orders)).round_dp(2)
            }
            _ => Decimal::ZERO,
        }
    }

    /// Whole days between the latest order and the one before it.
    pub fn days_since_previous_order(&self) -> Option<i64> {
        let n = self.recent_orders.len();
        (n >= 2).then(|| {
            self.recent_orders[n - 1]
                .saturating_sub(self.recent_orders[n - 2])
                .div_euclid(86_400)
        })
    }

    /// Median of the intervals between the recent orders, in days; null under 3 orders.
    pub fn median_days_between_orders(&self) -> Option<Decimal> {
        if self.orders_count < 3 || self.recent_orders.len() < 3 {
            return None;
        }
        let mut gaps: Vec<i64> = self
            .recent_orders
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .collect();
        gaps.sort_unstable();
        let n = gaps.len();
        let seconds = if n % 2 == 1 {
            Decimal::from(gaps[n / 2])
        } else {
            (Decimal::from(gaps[n / 2 - 1]) + Decimal::from(gaps[n / 2])) / Decimal::TWO
        };
        Some((seconds / Decimal::from(86_400)).round_dp(1))
    }

    pub fn first_order_at(&self) -> Option<DateTime<Utc>> {
        self.first_order_at
            .and_then(|t| DateTime::from_timestamp(t, 0))
    }

    pub fn nps_group(&self) -> Option<&'static str> {
        self.nps.map(|n| match n {
            9..=10 => "promoter",
            7..=8 => "passive",
            _ => "detractor",
        })
    }

    pub fn last_given(&self, rule_id: &str) -> Option<DateTime<Utc>> {
        self.rule_last_given
            .iter()
            .find(|(r, _)| r == rule_id)
            .and_then(|(_, t)| DateTime::from_timestamp(*t, 0))
    }

    /// Remembers that a rule gave this customer something at `at` (cooldowns count from here).
    pub fn record_given(&mut self, rule_id: &str, at: DateTime<Utc>) {
        let at = at.timestamp();
        match self.rule_last_given.iter_mut().find(|(r, _)| r == rule_id) {
            Some(entry) => entry.1 = entry.1.max(at),
            None => self.rule_last_given.push((rule_id.to_string(), at)),
        }
    }

    /// The variant of a rule's or follow-up's experiment this customer keeps, if any.
    pub fn variant(&self, rule_id: &str) -> Option<&str> {
        self.variants
            .iter()
            .find(|(r, _)| r == rule_id)
            .map(|(_, v)| v.as_str())
    }

    /// Keeps the variant a customer was given; a variant removed from the rules since is
    /// replaced by the one drawn instead.
    pub fn record_variant(&mut self, rule_id: &str, variant_id: &str) {
        match self.variants.iter_mut().find(|(r, _)| r == rule_id) {
            Some(entry) if entry.1 != variant_id => entry.1 = variant_id.to_string(),
            Some(_) => {}
            None => self
                .variants
                .push((rule_id.to_string(), variant_id.to_string())),
        }
    }

    /// Folds a new order in (its summary is built by [`OrderSummary::from_order`]). Every sum
    /// is checked before anything changes: an order whose effect cannot be held exactly is
    /// refused (`out_of_range`) and leaves the profile as it was.
    pub fn apply_placed(&mut self, order: &Order, at: DateTime<Utc>) -> Result<(), Rejected> {
        let orders_count = self
            .orders_count
            .checked_add(1)
            .ok_or_else(|| too_many("order.id", "orders"))?;
        let (net, spend_orders) = match self.spend_in(order.currency) {
            Some(s) => (exact_add(s.net, order.total), s.orders.checked_add(1)),
            None => (Some(order.total), Some(1)),
        };
        let net = net.ok_or_else(|| {
            Rejected::out_of_range(
                "order.total",
                format!(
                    "the customer's spend in {} would exceed what can be held exactly",
                    order.currency
                ),
            )
        })?;
        let spend_orders = spend_orders.ok_or_else(|| too_many("order.id", "orders"))?;
        let redeemed = u32::try_from(order.coupon_codes.len())
            .ok()
            .and_then(|n| self.coupons_redeemed.checked_add(n))
            .ok_or_else(|| too_many("order.coupon_codes", "redeemed coupons"))?;
        let c = &order.customer;
        self.first_name = Some(c.first_name.clone());
        self.last_name = c.last_name.clone().or(self.last_name.take());
        self.email = Some(c.email.clone());
        if c.locale.is_some() {
            self.locale = c.locale.clone();
        }
        if c.time_zone.is_some() {
            self.time_zone = c.time_zone;
        }
        if let Some(b) = c.birthday {
            self.birthday_month = Some(b.month());
        }
        self.orders_count = orders_count;
        let spend = self.spend_mut(order.currency);
        spend.net = net;
        spend.orders = spend_orders;
        let at = at.timestamp();
        self.first_order_at = Some(self.first_order_at.map_or(at, |f| f.min(at)));
        // Keep the window in time order even when events arrive slightly out of order.
        let pos = self.recent_orders.partition_point(|t| *t <= at);
        self.recent_orders.insert(pos, at);
        if self.recent_orders.len() > RECENT_ORDERS {
            self.recent_orders.remove(0);
        }
        for item in &order.items {
            if self.categories_bought.len() >= MAX_CATEGORIES {
                break;
            }
            if !self.categories_bought.contains(&item.category) {
                self.categories_bought.push(item.category.clone());
            }
        }
        self.coupons_redeemed = redeemed;
        Ok(())
    }

    /// Folds a cancellation; returns false when the order was already cancelled. Checked
    /// before anything changes, like [`Profile::apply_placed`].
    pub fn apply_cancelled(&mut self, order: &mut OrderSummary) -> Result<bool, Rejected> {
        if order.status == OrderStatus::Cancelled {
            return Ok(false);
        }
        let value = order.net_value().ok_or_else(|| {
            Rejected::out_of_range("order_id", "the order's value cannot be held exactly")
        })?;
        let cancelled = self
            .cancelled_count
            .checked_add(1)
            .ok_or_else(|| too_many("order_id", "cancellations"))?;
        let net = self.spent_less(order.currency, value)?;
        order.status = OrderStatus::Cancelled;
        self.orders_count = self.orders_count.saturating_sub(1);
        self.cancelled_count = cancelled;
        let spend = self.spend_mut(order.currency);
        spend.net = net;
        spend.orders = spend.orders.saturating_sub(1);
        Ok(true)
    }

    /// Folds a return of some items (or, with `None`, all that is left of the order). Checked
    /// before anything changes, like [`Profile::apply_placed`].
    pub fn apply_returned(
        &mut self,
        order: &mut OrderSummary,
        items: Option<&[ReturnedItem]>,
    ) -> Result<(), Rejected> {
        let returns = self
            .returns_count
            .checked_add(1)
            .ok_or_else(|| too_many("order_id", "returns"))?;
        if order.status == OrderStatus::Cancelled {
            self.returns_count = returns;
            return Ok(());
        }
        let plan = order.plan_return(items)?;
        let net = self.spent_less(order.currency, plan.value)?;
        order.apply_return(plan);
        self.returns_count = returns;
        self.spend_mut(order.currency).net = net;
        Ok(())
    }

    /// The net spend in a currency less `value`, or why it cannot be held.
    fn spent_less(&self, currency: Currency, value: Decimal) -> Result<Decimal, Rejected> {
        exact_sub(
            self.spend_in(currency).map_or(Decimal::ZERO, |s| s.net),
            value,
        )
        .ok_or_else(|| {
            Rejected::out_of_range(
                "order_id",
                format!(
                    "the customer's spend in {currency} would go below what can be held exactly"
                ),
            )
        })
    }

    /// Folds a delivery; returns the days it was late (0 when on time or nothing was promised).
    pub fn apply_delivered(
        &mut self,
        order: &mut OrderSummary,
        delivered_at: DateTime<Utc>,
    ) -> i64 {
        let late = late_days(order.promised_delivery, delivered_at, self.time_zone);
        if order.delivered_at.is_none() && late > 0 {
            self.late_deliveries_count += 1;
        }
        order.delivered_at.get_or_insert(delivered_at);
        late
    }
}

/// Whole calendar days from the promised date to the delivery date, in the customer's time
/// zone (else UTC); 0 when on time or when no date was promised.
pub fn late_days(promised: Option<NaiveDate>, delivered_at: DateTime<Utc>, tz: Option<Tz>) -> i64 {
    let Some(promised) = promised else { return 0 };
    let delivered_on = delivered_at
        .with_timezone(&tz.unwrap_or(Tz::UTC))
        .date_naive();
    (delivered_on - promised).num_days().max(0)
}

/// A count that would pass `u32::MAX`.
fn too_many(path: &str, what: &str) -> Rejected {
    Rejected::out_of_range(
        path,
        format!("the customer's count of {what} is at its limit"),
    )
}

mod history;
mod order;

pub use history::{History, HistorySnapshot};
pub use order::{OrderStatus, OrderSummary, SummaryItem};

/// What folding an event did, for the caller to decide or schedule on.
#[derive(Debug, Clone, PartialEq)]
pub enum Folded {
    /// A new order: decide it.
    NewOrder,
    /// An order id seen before under a new event id: nothing changes.
    DuplicateOrder,
    /// An order id seen before under another customer.
    Conflict,
    /// An order id seen before with other content (items, amounts, warehouse): nothing
    /// changes, and the event is set aside as a conflict.
    ChangedOrder,
    Delivered {
        late_days: i64,
    },
    Cancelled,
    Returned,
    /// Changed the profile only, or refers to an order not known (folded where it can be).
    Other,
}

/// Folds one event into a profile and the order table (pure; shared by every caller).
///
/// An event whose effect cannot be held exactly is an error (`out_of_range`, naming the field)
/// and changes neither the profile nor the order.
pub fn fold(
    profile: &mut Profile,
    order: Option<&mut OrderSummary>,
    event: &Event,
) -> Result<(Folded, Option<OrderSummary>), Rejected> {
    Ok(match &event.body {
        EventBody::OrderPlaced(o) => match order {
            Some(existing) if existing.customer_id != o.customer.id => (Folded::Conflict, None),
            Some(existing) if !existing.same_content(o) => (Folded::ChangedOrder, None),
            Some(_) => (Folded::DuplicateOrder, None),
            None => {
                profile.apply_placed(o, event.occurred_at)?;
                (
                    Folded::NewOrder,
                    Some(OrderSummary::from_order(o, event.occurred_at)),
                )
            }
        },
        EventBody::OrderCancelled { .. } => match order {
            Some(o) => {
                let folded = if profile.apply_cancelled(o)? {
                    Folded::Cancelled
                } else {
                    Folded::Other
                };
                (folded, None)
            }
            None => (Folded::Other, None),
        },
        EventBody::OrderReturned { items, .. } => match order {
            Some(o) => {
                profile.apply_returned(o, items.as_deref())?;
                (Folded::Returned, None)
            }
            None => {
                profile.returns_count = profile
                    .returns_count
                    .checked_add(1)
                    .ok_or_else(|| too_many("order_id", "returns"))?;
                (Folded::Other, None)
            }
        },
        EventBody::OrderDelivered { delivered_at, .. } => match order {
            Some(o) => (
                Folded::Delivered {
                    late_days: profile.apply_delivered(o, *delivered_at),
                },
                None,
            ),
            None => (Folded::Delivered { late_days: 0 }, None),
        },
        EventBody::OrderShipped { .. } => (Folded::Other, None),
        EventBody::Feedback { nps, .. } => {
            profile.nps = Some(*nps);
            (Folded::Other, None)
        }
        EventBody::Unsubscribed { .. } => {
            profile.subscribed = false;
            (Folded::Other, None)
        }
        EventBody::Subscribed { .. } => {
            profile.subscribed = true;
            (Folded::Other, None)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::event_from_value;
    use serde_json::json;

    fn placed(id: &str, at: &str, total: &str, cat: &str) -> Event {
        event_from_value(&json!({"event_id": format!("ev-{id}"), "type": "order.placed", "occurred_at": at,
            "order": {"id": id, "customer": {"id": "C", "email": "c@x.y", "first_name": "Cy", "birthday": "1990-05-02"},
                "currency": "EUR", "total": total, "promised_delivery": "2026-01-10",
                "items": [{"sku": "S", "name": "n", "category": cat, "quantity": 2, "unit_price": "10.00"},
                          {"sku": "T", "name": "m", "category": "tea", "quantity": 1, "unit_price": "5.00"}],
                "shipping": {"country": "DE"}, "warehouse": "W"}}))
        .unwrap()
    }

    fn other(kind: &str, id: &str, extra: serde_json::Value) -> Event {
        let mut v = json!({"event_id": format!("ev-{kind}-{id}"), "type": kind, "occurred_at": "2026-02-01T00:00:00Z",
            "order_id": id, "customer_id": "C"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        event_from_value(&v).unwrap()
    }

    #[test]
    fn counts_spend_and_intervals() {
        let mut h = History::default();
        h.fold(&placed("1", "2026-01-01T00:00:00Z", "25.00", "books"))
            .unwrap();
        h.fold(&placed("2", "2026-01-11T00:00:00Z", "25.00", "books"))
            .unwrap();
        h.fold(&placed("3", "2026-01-31T00:00:00Z", "25.00", "home"))
            .unwrap();
        let p = h.profile("C").unwrap();
        assert_eq!(p.orders_count, 3);
        assert_eq!(
            p.lifetime_spend("EUR".parse().unwrap()).to_string(),
            "75.00"
        );
        assert_eq!(p.days_since_previous_order(), Some(20));
        assert_eq!(p.median_days_between_orders(), Some(Decimal::from(15)));
        assert_eq!(p.categories_bought, vec!["books", "tea", "home"]);
        assert_eq!(p.birthday_month, Some(5));
    }

    #[test]
    fn cancellation_and_return_reduce_spend_once() {
        let mut h = History::default();
        h.fold(&placed("1", "2026-01-01T00:00:00Z", "25.00", "books"))
            .unwrap();
        h.fold(&placed("2", "2026-01-02T00:00:00Z", "25.00", "books"))
            .unwrap();
        h.fold(&other(
            "order.returned",
            "1",
            json!({"items": [{"sku": "S", "quantity": 1}]}),
        ))
        .unwrap();
        let eur = "EUR".parse().unwrap();
        assert_eq!(
            h.profile("C").unwrap().lifetime_spend(eur).to_string(),
            "40.00"
        );
        h.fold(&other("order.cancelled", "1", json!({}))).unwrap();
        let mut again = other("order.cancelled", "1", json!({}));
        again.event_id = "another".into();
        h.fold(&again).unwrap();
        let p = h.profile("C").unwrap();
        assert_eq!(p.orders_count, 1);
        assert_eq!(p.cancelled_count, 1);
        assert_eq!(p.returns_count, 1);
        assert_eq!(p.lifetime_spend(eur).to_string(), "25.00");
        assert_eq!(p.average_order_value(eur).to_string(), "25.00");
    }

    #[test]
    fn replayed_events_change_nothing() {
        let mut h = History::default();
        let e = placed("1", "2026-01-01T00:00:00Z", "25.00", "books");
        assert_eq!(h.fold(&e), Ok(Some(Folded::NewOrder)));
        assert_eq!(h.fold(&e), Ok(None));
        let mut dup = e.clone();
        dup.event_id = "new-id".into();
        assert_eq!(h.fold(&dup), Ok(Some(Folded::DuplicateOrder)));
        assert_eq!(h.profile("C").unwrap().orders_count, 1);
    }

    #[test]
    fn late_delivery_counts_in_the_customer_time_zone() {
        let d = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let promised = NaiveDate::from_ymd_opt(2026, 1, 10);
        assert_eq!(late_days(promised, d("2026-01-10T22:30:00Z"), None), 0);
        // 23:30 UTC on the 10th is already the 11th in Berlin.
        assert_eq!(
            late_days(
                promised,
                d("2026-01-10T23:30:00Z"),
                Some(chrono_tz::Europe::Berlin)
            ),
            1
        );
        assert_eq!(late_days(promised, d("2026-01-13T10:00:00Z"), None), 3);
        assert_eq!(late_days(None, d("2026-03-13T10:00:00Z"), None), 0);
        let mut h = History::default();
        h.fold(&placed("1", "2026-01-01T00:00:00Z", "25.00", "books"))
            .unwrap();
        let f = h.fold(&other(
            "order.delivered",
            "1",
            json!({"delivered_at": "2026-01-12T10:00:00Z"}),
        ));
        assert_eq!(f, Ok(Some(Folded::Delivered { late_days: 2 })));
        assert_eq!(h.profile("C").unwrap().late_deliveries_count, 1);
    }

    #[test]
    fn memory_stays_bounded() {
        let mut h = History::default();
        for i in 0..1000 {
            let at = DateTime::from_timestamp(1_700_000_000 + i * 86_400, 0)
                .unwrap()
                .to_rfc3339();
            h.fold(&placed(
                &format!("O{i}"),
                &at,
                "25.00",
                &format!("cat{}", i % 50),
            ))
            .unwrap();
        }
        let p = h.profile("C").unwrap();
        assert_eq!(p.recent_orders.len(), RECENT_ORDERS);
        assert!(p.categories_bought.len() <= MAX_CATEGORIES);
        assert_eq!(p.orders_count, 1000);
    }
}
