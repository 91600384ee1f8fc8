//! What conditions and templates see: built straight from the profile and the order, once per
//! order, never through JSON numbers (money stays `Decimal`).

use crate::engine::{CouponGiven, GivenInsert, format_time};
use crate::event::Order;
use crate::money::format_amount;
use crate::profile::Profile;
use crate::render::DataNeeds;
use crate::rules::ContextNeeds;
use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
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
    /// Every variable is present (null where unknown) except the costly ones no condition
    /// reads (`needs`): those are left out rather than built for nothing.
    pub fn build(
        profile: &Profile,
        order: &Order,
        at: DateTime<Utc>,
        late_days: Option<i64>,
        needs: &ContextNeeds,
    ) -> Context {
        let mut order_v = VariableMap::with_capacity(12);
        let put = |m: &mut VariableMap, k: &str, v: Variable| {
            m.insert(Variable::key(k), v);
        };
        put(&mut order_v, "id", s(&order.id));
        put(&mut order_v, "total", n(order.total));
        put(&mut order_v, "currency", s(order.currency.as_str()));
        put(&mut order_v, "item_count", int(order.item_count()));
        put(&mut order_v, "warehouse", s(&order.warehouse));
        put(&mut order_v, "channel", opt_s(order.channel.as_deref()));
        if needs.order_items {
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
            put(&mut order_v, "items", arr(items));
        }
        if needs.order_categories {
            put(
                &mut order_v,
                "categories",
                arr(order.categories().into_iter().map(s).collect()),
            );
        }
        if needs.order_shipping {
            let shipping = obj([
                ("country", s(&order.shipping.country)),
                ("city", opt_s(order.shipping.city.as_deref())),
                ("postcode", opt_s(order.shipping.postcode.as_deref())),
            ]);
            put(&mut order_v, "shipping", shipping);
        }
        if needs.order_coupon_codes {
            put(
                &mut order_v,
                "coupon_codes",
                arr(order.coupon_codes.iter().map(|c| s(c)).collect()),
            );
        }
        if needs.order_placed_at {
            put(&mut order_v, "placed_at", s(&format_time(at)));
        }

        let mut customer = VariableMap::with_capacity(18);
        put(&mut customer, "id", s(&profile.customer_id));
        put(
            &mut customer,
            "first_name",
            opt_s(profile.first_name.as_deref()),
        );
        put(&mut customer, "orders_count", int(profile.orders_count));
        put(
            &mut customer,
            "lifetime_spend",
            n(profile.lifetime_spend(order.currency)),
        );
        put(
            &mut customer,
            "average_order_value",
            n(profile.average_order_value(order.currency)),
        );
        put(
            &mut customer,
            "days_since_previous_order",
            profile
                .days_since_previous_order()
                .map(int)
                .unwrap_or(Variable::Null),
        );
        put(&mut customer, "returns_count", int(profile.returns_count));
        put(
            &mut customer,
            "cancelled_count",
            int(profile.cancelled_count),
        );
        put(
            &mut customer,
            "nps",
            profile.nps.map(int).unwrap_or(Variable::Null),
        );
        put(&mut customer, "nps_group", opt_s(profile.nps_group()));
        put(
            &mut customer,
            "late_deliveries_count",
            int(profile.late_deliveries_count),
        );
        put(
            &mut customer,
            "coupons_received",
            int(profile.coupons_received),
        );
        put(
            &mut customer,
            "coupons_redeemed",
            int(profile.coupons_redeemed),
        );
        put(
            &mut customer,
            "birthday_month",
            profile.birthday_month.map(int).unwrap_or(Variable::Null),
        );
        put(
            &mut customer,
            "subscribed",
            Variable::Bool(profile.subscribed),
        );
        if needs.customer_median_days {
            let median = profile
                .median_days_between_orders()
                .map(n)
                .unwrap_or(Variable::Null);
            put(&mut customer, "median_days_between_orders", median);
        }
        if needs.customer_first_order_at {
            let first = profile
                .first_order_at()
                .map(|t| s(&format_time(t)))
                .unwrap_or(Variable::Null);
            put(&mut customer, "first_order_at", first);
        }
        if needs.customer_categories_bought {
            put(
                &mut customer,
                "categories_bought",
                arr(profile.categories_bought.iter().map(|c| s(c)).collect()),
            );
        }

        let date = at.date_naive();
        let mut decision = VariableMap::with_capacity(3);
        if needs.decision_date {
            put(
                &mut decision,
                "date",
                s(&date.format("%Y-%m-%d").to_string()),
            );
        }
        put(&mut decision, "month", int(date.month()));
        put(
            &mut decision,
            "weekday",
            int(date.weekday().number_from_monday()),
        );

        let segments = arr(Vec::new());
        let wrap = |m: VariableMap| Variable::Object(Rc::new(RefCell::new(m)));
        let mut root = VariableMap::with_capacity(5);
        put(&mut root, "order", wrap(order_v));
        put(&mut root, "customer", wrap(customer));
        put(&mut root, "decision", wrap(decision));
        put(&mut root, "segments", segments.clone());
        if let Some(late) = late_days {
            put(&mut root, "delivery", obj([("late_days", int(late))]));
        }
        Context {
            root: wrap(root),
            segments,
        }
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

/// The template context of docs/REFERENCE.md §6 (`unsubscribe_url` is added for e-mails by the
/// sender).
pub fn template_context(
    profile: &Profile,
    order: &Order,
    coupons: &[Value],
    placed_at: DateTime<Utc>,
    delivery: Option<Value>,
    shop: &Shop,
) -> Value {
    template_context_for(
        profile,
        order,
        coupons.to_vec(),
        placed_at,
        delivery,
        shop,
        &DataNeeds::everything(),
    )
}

/// The template context with only what `needs` names (every top-level key is there, the
/// members of `customer` and `order` only when read): templates that read a name and a shop
/// do not pay for the order's items. Built map by map rather than with `json!`, which
/// re-allocates on every nested object; the coupons are moved in, not copied.
pub fn template_context_for(
    profile: &Profile,
    order: &Order,
    coupons: Vec<Value>,
    placed_at: DateTime<Utc>,
    delivery: Option<Value>,
    shop: &Shop,
    needs: &DataNeeds,
) -> Value {
    fn text(s: &str) -> Value {
        Value::String(s.to_string())
    }
    fn opt(s: Option<&str>) -> Value {
        s.map(text).unwrap_or(Value::Null)
    }
    /// An object of the members that `needs` names, each built only then.
    fn members<const N: usize>(
        needs: &DataNeeds,
        key: &str,
        fields: [(&str, &dyn Fn() -> Value); N],
    ) -> Value {
        let mut m = Map::with_capacity(N);
        for (field, build) in fields {
            if needs.wants_member(key, field) {
                m.insert(field.to_string(), build());
            }
        }
        Value::Object(m)
    }
    let locale = profile
        .locale
        .as_deref()
        .or(order.customer.locale.as_deref())
        .unwrap_or("en");
    let first_name = profile
        .first_name
        .as_deref()
        .unwrap_or(&order.customer.first_name);
    let items = || {
        Value::Array(
            order
                .items
                .iter()
                .map(|i| {
                    let mut m = Map::with_capacity(5);
                    m.insert("sku".into(), text(&i.sku));
                    m.insert("name".into(), text(&i.name));
                    m.insert("category".into(), text(&i.category));
                    m.insert("quantity".into(), Value::from(i.quantity));
                    m.insert(
                        "unit_price".into(),
                        Value::String(format_amount(i.unit_price)),
                    );
                    Value::Object(m)
                })
                .collect(),
        )
    };
    let mut root = Map::with_capacity(9);
    root.insert("locale".into(), text(locale));
    let customer = members(
        needs,
        "customer",
        [
            ("first_name", &|| text(first_name)),
            ("last_name", &|| opt(profile.last_name.as_deref())),
            ("email", &|| opt(profile.email.as_deref())),
            ("orders_count", &|| Value::from(profile.orders_count)),
            ("lifetime_spend", &|| {
                Value::String(format_amount(profile.lifetime_spend(order.currency)))
            }),
            ("categories_bought", &|| {
                Value::Array(profile.categories_bought.iter().map(|c| text(c)).collect())
            }),
            ("nps_group", &|| opt(profile.nps_group())),
        ],
    );
    root.insert("customer".into(), customer);
    let order_v = members(
        needs,
        "order",
        [
            ("id", &|| text(&order.id)),
            ("total", &|| Value::String(format_amount(order.total))),
            ("currency", &|| text(order.currency.as_str())),
            ("items", &items),
            ("categories", &|| {
                Value::Array(order.categories().into_iter().map(text).collect())
            }),
            ("placed_at", &|| Value::String(format_time(placed_at))),
        ],
    );
    root.insert("order".into(), order_v);
    let first = coupons.first().cloned().unwrap_or(Value::Null);
    root.insert("coupons".into(), Value::Array(coupons));
    root.insert("coupon".into(), first);
    root.insert("delivery".into(), delivery.unwrap_or(Value::Null));
    let mut shop_v = Map::with_capacity(2);
    shop_v.insert("name".into(), text(&shop.name));
    shop_v.insert("url".into(), text(&shop.url));
    root.insert("shop".into(), Value::Object(shop_v));
    Value::Object(root)
}
