//! The variables a rule condition may read (docs/REFERENCE.md §2), as the type zen-expression
//! checks a condition against, and their dotted paths for "did you mean" hints.

use std::cell::RefCell;
use std::rc::Rc;
use zen_expression::variable::VariableType as T;

fn obj(fields: &[(&str, T)]) -> T {
    T::Object(Rc::new(RefCell::new(
        fields
            .iter()
            .map(|(k, v)| (Rc::from(*k), v.clone()))
            .collect(),
    )))
}

fn nullable(t: T) -> T {
    T::Nullable(Rc::new(t))
}

/// The variables a rule condition may read (docs/REFERENCE.md §2), with nullable members marked.
pub fn context_type(with_delivery: bool) -> T {
    let item = obj(&[
        ("sku", T::String),
        ("name", T::String),
        ("category", T::String),
        ("quantity", T::Number),
        ("unit_price", T::Number),
    ]);
    let order = obj(&[
        ("id", T::String),
        ("total", T::Number),
        ("currency", T::String),
        ("items", item.array()),
        ("categories", T::String.array()),
        ("item_count", T::Number),
        (
            "shipping",
            obj(&[
                ("country", T::String),
                ("city", nullable(T::String)),
                ("postcode", nullable(T::String)),
            ]),
        ),
        ("warehouse", T::String),
        ("channel", nullable(T::String)),
        ("coupon_codes", T::String.array()),
        ("placed_at", T::String),
    ]);
    let customer = obj(&[
        ("id", T::String),
        ("first_name", T::String),
        ("orders_count", T::Number),
        ("lifetime_spend", T::Number),
        ("average_order_value", T::Number),
        ("first_order_at", T::String),
        ("days_since_previous_order", nullable(T::Number)),
        ("median_days_between_orders", nullable(T::Number)),
        ("categories_bought", T::String.array()),
        ("returns_count", T::Number),
        ("cancelled_count", T::Number),
        ("nps", nullable(T::Number)),
        ("nps_group", nullable(T::String)),
        ("late_deliveries_count", T::Number),
        ("coupons_received", T::Number),
        ("coupons_redeemed", T::Number),
        ("birthday_month", nullable(T::Number)),
        ("subscribed", T::Bool),
    ]);
    let decision = obj(&[
        ("date", T::String),
        ("month", T::Number),
        ("weekday", T::Number),
    ]);
    let mut fields = vec![
        ("order", order),
        ("customer", customer),
        ("decision", decision),
        ("segments", T::String.array()),
    ];
    if with_delivery {
        fields.push(("delivery", obj(&[("late_days", T::Number)])));
    }
    obj(&fields)
}

/// Every dotted variable path of a context type, for "did you mean" hints.
pub(super) fn known_paths(ty: &T) -> Vec<String> {
    fn go(prefix: &str, ty: &T, out: &mut Vec<String>) {
        match ty {
            T::Object(fields) => {
                for (k, v) in fields.borrow().iter() {
                    let p = if prefix.is_empty() {
                        k.to_string()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    out.push(p.clone());
                    go(&p, v, out);
                }
            }
            T::Nullable(inner) => go(prefix, inner, out),
            T::Array(inner) => go(prefix, inner, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    go("", ty, &mut out);
    out.sort();
    out
}
