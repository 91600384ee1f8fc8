//! What conditions and templates see: built straight from the profile and the order, once per
//! order, never through JSON numbers (money stays `Decimal`).

use crate::engine::{CouponGiven, GivenInsert, format_time};
use crate::event::Order;
use crate::money::format_amount;
use crate::profile::Profile;
use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::rc::Rc;
use zen_expression::Variable;
use zen_expression::variable::VariableMap;

/// The shop, as templates show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shop {
    pub name: String,
    pub url: String,
}

impl Default for Shop {
    fn default() -> Self {
        Shop {
            name: "Shop".into(),
            url: "https://shop.example".into(),
        }
    }
}

fn s(text: &str) -> Variable {
    Variable::String(Variable::key(text))
}

fn opt_s(text: Option<&str>) -> Variable {
    text.map(s).unwrap_or(Variable::Null)
}

fn n(d: Decimal) -> Variable {
    Variable::Number(d)
}

fn int(i: impl Into<i64>) -> Variable {
    Variable::Number(Decimal::from(i.into()))
}

fn obj<const N: usize>(fields: [(&str, Variable); N]) -> Variable {
    let mut map = VariableMap::with_capacity(N);
    for (k, v) in fields {
        map.insert(Variable::key(k), v);
    }
    Variable::Object(Rc::new(RefCell::new(map)))
}

fn arr(items: Vec<Variable>) -> Variable {
    Variable::Array(Rc::new(RefCell::new(items)))
}

/// The expression context of one order; `segments` grows as segments match.
pub struct Context {
    pub root: Variable,
    segments: Variable,
}

impl Context {
    /// `late_days` is given for follow-ups on `order.delivered` (the `delivery` variable).
    pub fn build(
        profile: &Profile,
        order: &Order,
        at: DateTime<Utc>,
        late_days: Option<i64>,
    ) -> Context {
        let items: Vec<Variable> = order
            .items
            .iter()
            .map(|i| {
                obj([
                    ("sku", s(&i.sku)),
                    ("name", s(&i.name)),
                    ("category", s(&i.category)),
                    ("quantity", int(i.quantity)),
                    ("unit_price", n(i.unit_price)),
                ])
            })
            .collect();
        let order_v = obj([
            ("id", s(&order.id)),
            ("total", n(order.total)),
            ("currency", s(order.currency.as_str())),
            ("items", arr(items)),
            (
                "categories",
                arr(order.categories().into_iter().map(s).collect()),
            ),
            ("item_count", int(order.item_count())),
            (
                "shipping",
                obj([
                    ("country", s(&order.shipping.country)),
                    ("city", opt_s(order.shipping.city.as_deref())),
                    ("postcode", opt_s(order.shipping.postcode.as_deref())),
                ]),
            ),
            ("warehouse", s(&order.warehouse)),
            ("channel", opt_s(order.channel.as_deref())),
            (
                "coupon_codes",
                arr(order.coupon_codes.iter().map(|c| s(c)).collect()),
            ),
            ("placed_at", s(&format_time(at))),
        ]);
        let customer = obj([
            ("id", s(&profile.customer_id)),
            ("first_name", opt_s(profile.first_name.as_deref())),
            ("orders_count", int(profile.orders_count)),
            ("lifetime_spend", n(profile.lifetime_spend(order.currency))),
            (
                "average_order_value",
                n(profile.average_order_value(order.currency)),
            ),
            (
                "first_order_at",
                profile
                    .first_order_at
                    .map(|t| s(&format_time(t)))
                    .unwrap_or(Variable::Null),
            ),
            (
                "days_since_previous_order",
                profile
                    .days_since_previous_order()
                    .map(int)
                    .unwrap_or(Variable::Null),
            ),
            (
                "median_days_between_orders",
                profile
                    .median_days_between_orders()
                    .map(n)
                    .unwrap_or(Variable::Null),
            ),
            (
                "categories_bought",
                arr(profile.categories_bought.iter().map(|c| s(c)).collect()),
            ),
            ("returns_count", int(profile.returns_count)),
            ("cancelled_count", int(profile.cancelled_count)),
            ("nps", profile.nps.map(int).unwrap_or(Variable::Null)),
            ("nps_group", opt_s(profile.nps_group())),
            ("late_deliveries_count", int(profile.late_deliveries_count)),
            ("coupons_received", int(profile.coupons_received)),
            ("coupons_redeemed", int(profile.coupons_redeemed)),
            (
                "birthday_month",
                profile.birthday_month.map(int).unwrap_or(Variable::Null),
            ),
            ("subscribed", Variable::Bool(profile.subscribed)),
        ]);
        let date = at.date_naive();
        let decision = obj([
            ("date", s(&date.format("%Y-%m-%d").to_string())),
            ("month", int(date.month())),
            ("weekday", int(date.weekday().number_from_monday())),
        ]);
        let segments = arr(Vec::new());
        let root = match late_days {
            None => obj([
                ("order", order_v),
                ("customer", customer),
                ("decision", decision),
                ("segments", segments.clone()),
            ]),
            Some(late) => obj([
                ("order", order_v),
                ("customer", customer),
                ("decision", decision),
                ("segments", segments.clone()),
                ("delivery", obj([("late_days", int(late))])),
            ]),
        };
        Context { root, segments }
    }

    /// Adds a matched segment; later conditions see it in `segments`.
    pub fn push_segment(&self, id: &str) {
        if let Variable::Array(a) = &self.segments {
            a.borrow_mut().push(s(id));
        }
    }
}

/// The coupons of a rule or follow-up, as templates see them.
pub fn coupons_json(coupons: &[(&GivenInsert, &CouponGiven)]) -> Vec<Value> {
    coupons
        .iter()
        .map(|(g, c)| {
            json!({"code": c.code, "title": g.title, "amount": c.amount, "currency": c.currency,
                   "min_order": c.min_order, "expires_on": c.expires_on})
        })
        .collect()
}

/// The template context of CONTRACT §6 (`unsubscribe_url` is added for e-mails by the sender).
pub fn template_context(
    profile: &Profile,
    order: &Order,
    coupons: &[Value],
    placed_at: DateTime<Utc>,
    delivery: Option<Value>,
    shop: &Shop,
) -> Value {
    let items: Vec<Value> = order
        .items
        .iter()
        .map(|i| {
            json!({"sku": i.sku, "name": i.name, "category": i.category, "quantity": i.quantity,
                   "unit_price": format_amount(i.unit_price)})
        })
        .collect();
    json!({
        "locale": profile.locale.clone().or_else(|| order.customer.locale.clone()).unwrap_or_else(|| "en".into()),
        "customer": {
            "first_name": profile.first_name.clone().unwrap_or_else(|| order.customer.first_name.clone()),
            "last_name": profile.last_name,
            "email": profile.email,
            "orders_count": profile.orders_count,
            "lifetime_spend": format_amount(profile.lifetime_spend(order.currency)),
            "categories_bought": profile.categories_bought,
            "nps_group": profile.nps_group(),
        },
        "order": {
            "id": order.id,
            "total": format_amount(order.total),
            "currency": order.currency.as_str(),
            "items": items,
            "categories": order.categories(),
            "placed_at": format_time(placed_at),
        },
        "coupons": coupons,
        "coupon": coupons.first().cloned().unwrap_or(Value::Null),
        "delivery": delivery.unwrap_or(Value::Null),
        "shop": {"name": shop.name, "url": shop.url},
    })
}
