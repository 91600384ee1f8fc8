//! What is remembered of an order for the events about it later (a cancellation, a return
//! months after): its value, lines and status, and how a return takes value off it, exactly.

use super::Profile;
use crate::event::{Order, Rejected, ReturnedItem};
use crate::money::{Currency, exact_add, exact_mul, exact_sub};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Placed,
    Cancelled,
}

/// What is remembered of an order for later events about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub id: String,
    pub customer_id: String,
    pub currency: Currency,
    pub total: Decimal,
    pub items: Vec<SummaryItem>,
    pub returned_value: Decimal,
    pub status: OrderStatus,
    pub placed_at: DateTime<Utc>,
    pub warehouse: String,
    pub shipping_country: String,
    pub channel: Option<String>,
    pub promised_delivery: Option<NaiveDate>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryItem {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub quantity: u32,
    /// Units not returned.
    pub kept: u32,
    pub unit_price: Decimal,
}

impl OrderSummary {
    pub fn from_order(order: &Order, at: DateTime<Utc>) -> Self {
        OrderSummary {
            id: order.id.clone(),
            customer_id: order.customer.id.clone(),
            currency: order.currency,
            total: order.total,
            items: order
                .items
                .iter()
                .map(|i| SummaryItem {
                    sku: i.sku.clone(),
                    name: i.name.clone(),
                    category: i.category.clone(),
                    quantity: i.quantity,
                    kept: i.quantity,
                    unit_price: i.unit_price,
                })
                .collect(),
            shipping_country: order.shipping.country.clone(),
            channel: order.channel.clone(),
            returned_value: Decimal::ZERO,
            status: OrderStatus::Placed,
            placed_at: at,
            warehouse: order.warehouse.clone(),
            promised_delivery: order.promised_delivery,
            delivered_at: None,
        }
    }

    /// Whether `order` is this order sent again: the same customer, currency, amounts, lines,
    /// warehouse, shipping country, channel and promised date. What later events change
    /// (returns, delivery, cancellation) and the time it was placed are not compared.
    pub fn same_content(&self, order: &Order) -> bool {
        self.customer_id == order.customer.id
            && self.currency == order.currency
            && self.total == order.total
            && self.warehouse == order.warehouse
            && self.shipping_country == order.shipping.country
            && self.channel == order.channel
            && self.promised_delivery == order.promised_delivery
            && self.items.len() == order.items.len()
            && self.items.iter().zip(&order.items).all(|(a, b)| {
                a.sku == b.sku
                    && a.name == b.name
                    && a.category == b.category
                    && a.quantity == b.quantity
                    && a.unit_price == b.unit_price
            })
    }

    /// The order as conditions and templates of later follow-ups see it.
    pub fn to_order(&self, profile: &Profile) -> Order {
        Order {
            id: self.id.clone(),
            customer: crate::event::Customer {
                id: self.customer_id.clone(),
                email: profile.email.clone().unwrap_or_default(),
                first_name: profile.first_name.clone().unwrap_or_default(),
                last_name: profile.last_name.clone(),
                locale: profile.locale.clone(),
                time_zone: profile.time_zone,
                birthday: None,
            },
            currency: self.currency,
            total: self.total,
            items: self
                .items
                .iter()
                .map(|i| crate::event::Item {
                    sku: i.sku.clone(),
                    name: i.name.clone(),
                    category: i.category.clone(),
                    quantity: i.quantity,
                    unit_price: i.unit_price,
                })
                .collect(),
            shipping: crate::event::Shipping {
                country: self.shipping_country.clone(),
                city: None,
                postcode: None,
            },
            warehouse: self.warehouse.clone(),
            channel: self.channel.clone(),
            coupon_codes: Vec::new(),
            promised_delivery: self.promised_delivery,
        }
    }

    /// What the order still counts for in the customer's spend; `None` when that cannot be
    /// held exactly (only for amounts far past the bounds events are checked against).
    pub fn net_value(&self) -> Option<Decimal> {
        exact_sub(self.total, self.returned_value).map(|v| v.max(Decimal::ZERO))
    }

    /// What a return would take off the order: the units kept afterwards per line, and the
    /// value (never more than is left of the order, so a return repeated by mistake cannot make
    /// spend negative). Nothing changes until [`OrderSummary::apply_return`].
    pub(super) fn plan_return(
        &self,
        items: Option<&[ReturnedItem]>,
    ) -> Result<ReturnPlan, Rejected> {
        let left = self.net_value().ok_or_else(|| {
            Rejected::out_of_range("order_id", "the order's value cannot be held exactly")
        })?;
        let Some(list) = items else {
            return self.return_plan(vec![0; self.items.len()], left);
        };
        let mut kept: Vec<u32> = self.items.iter().map(|i| i.kept).collect();
        let mut value = Decimal::ZERO;
        for (n, r) in list.iter().enumerate() {
            let Some(line) = self.items.iter().position(|i| i.sku == r.sku) else {
                continue;
            };
            let q = r.quantity.min(kept[line]);
            kept[line] -= q;
            value = exact_mul(self.items[line].unit_price, Decimal::from(q))
                .and_then(|v| exact_add(value, v))
                .ok_or_else(|| {
                    Rejected::out_of_range(
                        &format!("items[{n}].quantity"),
                        "the value returned cannot be held exactly",
                    )
                })?;
        }
        self.return_plan(kept, value.min(left))
    }

    fn return_plan(&self, kept: Vec<u32>, value: Decimal) -> Result<ReturnPlan, Rejected> {
        let returned_value = exact_add(self.returned_value, value).ok_or_else(|| {
            Rejected::out_of_range(
                "order_id",
                "the order's returned value cannot be held exactly",
            )
        })?;
        Ok(ReturnPlan {
            kept,
            value,
            returned_value,
        })
    }

    pub(super) fn apply_return(&mut self, plan: ReturnPlan) {
        for (item, kept) in self.items.iter_mut().zip(plan.kept) {
            item.kept = kept;
        }
        self.returned_value = plan.returned_value;
    }
}

/// A return worked out before it is applied (see [`OrderSummary::plan_return`]).
pub(super) struct ReturnPlan {
    /// Units kept per line afterwards.
    kept: Vec<u32>,
    /// What the return takes off the customer's spend.
    pub(super) value: Decimal,
    /// The order's returned value afterwards.
    returned_value: Decimal,
}
