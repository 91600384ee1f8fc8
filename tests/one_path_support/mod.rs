//! Random histories on a small universe (4 customers, 8 orders), so that events collide: orders
//! placed (some with a code an earlier order was given), sent again with other content or for
//! someone else, cancelled, returned, shipped, delivered; feedback and subscriptions; exact
//! redeliveries and event ids reused for other events. Each event is valid JSON as the shop
//! sends it.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use packwell::coupon::CouponKey;
use packwell::event::event_from_value;
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Value, json};

pub const CUSTOMERS: u8 = 4;
pub const ORDERS: u8 = 8;

pub fn customer(c: u8) -> String {
    format!("c{}", c % CUSTOMERS)
}

pub fn order_id(o: u8) -> String {
    format!("o{}", o % ORDERS)
}

/// The customer an order is placed for; `other` takes the next one (someone else's order).
fn owner(o: u8, other: bool) -> String {
    customer(o % ORDERS + u8::from(other))
}

/// Lines an order may hold: (sku, category, unit price).
const LINES: [(&str, &str, &str); 4] = [
    ("B1", "books", "12.50"),
    ("T1", "tea", "7.50"),
    ("H1", "home", "30.00"),
    ("B2", "books", "45.00"),
];

/// Which coupon of an earlier order a new order redeems.
#[derive(Debug, Clone, Copy)]
pub enum Code {
    Thanks,
    Big,
    Unknown,
}

/// What an event about an order says.
#[derive(Debug, Clone, Copy)]
pub enum Fact {
    Cancelled,
    Returned,
    /// One book returned.
    PartlyReturned,
    Delivered,
    Shipped,
}

/// What an event about a customer says.
#[derive(Debug, Clone, Copy)]
pub enum Said {
    Feedback(u8),
    Subscribed,
    Unsubscribed,
}

/// What happens next. `other`: sent as the next customer (someone else's order).
#[derive(Debug, Clone)]
pub enum Op {
    /// `lines`: a mask over [`LINES`] (none: the first); `double`: two of each.
    Placed {
        order: u8,
        other: bool,
        lines: u8,
        double: bool,
        redeem: Option<(u8, Code)>,
    },
    About {
        fact: Fact,
        order: u8,
        other: bool,
    },
    Customer {
        said: Said,
        customer: u8,
    },
    /// An earlier event again, exactly.
    Redelivered {
        back: u8,
    },
    /// Another event under an earlier event's id.
    ReusedId {
        back: u8,
        op: Box<Op>,
    },
}

fn fresh_op() -> impl Strategy<Value = Op> {
    let code = prop_oneof![4 => Just(Code::Thanks), 2 => Just(Code::Big), 1 => Just(Code::Unknown)];
    let fact = prop_oneof![
        4 => Just(Fact::Cancelled),
        1 => Just(Fact::Returned),
        1 => Just(Fact::PartlyReturned),
        4 => Just(Fact::Delivered),
        2 => Just(Fact::Shipped),
    ];
    let said = prop_oneof![
        (0u8..=10).prop_map(Said::Feedback),
        Just(Said::Subscribed),
        Just(Said::Unsubscribed),
    ];
    let other = prop::bool::weighted(0.1);
    prop_oneof![
        6 => (0..ORDERS, other, 0u8..16, any::<bool>(), prop::option::weighted(0.4, (0..ORDERS, code)))
            .prop_map(|(order, other, lines, double, redeem)| Op::Placed { order, other, lines, double, redeem }),
        6 => (fact, 0..ORDERS, other).prop_map(|(fact, order, other)| Op::About { fact, order, other }),
        2 => (said, 0..CUSTOMERS).prop_map(|(said, customer)| Op::Customer { said, customer }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => fresh_op(),
        1 => any::<u8>().prop_map(|back| Op::Redelivered { back }),
        1 => (any::<u8>(), fresh_op()).prop_map(|(back, op)| Op::ReusedId { back, op: Box::new(op) }),
    ]
}

fn time(n: usize) -> String {
    // Every 7 hours from late November: a history of 40 events reaches into December, so the
    // budget has two periods.
    let start = DateTime::parse_from_rfc3339("2026-11-26T08:00:00Z")
        .expect("a time")
        .with_timezone(&Utc);
    (start + Duration::hours(7 * n as i64)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The code an order's decision gives for a rule's coupon (first attempt: no collisions in a
/// universe this small).
pub fn issued_code(key: &CouponKey, o: u8, code: Code) -> String {
    match code {
        Code::Thanks => key.code("TY", &order_id(o), "thanks", "thanks", 0),
        Code::Big => key.code("BIG", &order_id(o), "big", "big", 0),
        Code::Unknown => "TY-NOSUCHCODE".to_string(),
    }
}

/// The JSON of a fresh op's event, `n`-th of the history.
fn event(n: usize, op: &Op, key: &CouponKey) -> Value {
    let head =
        |kind: &str| json!({"event_id": format!("e{n}"), "type": kind, "occurred_at": time(n)});
    match op {
        Op::Placed {
            order,
            other,
            lines,
            double,
            redeem,
        } => {
            let quantity = if *double { 2 } else { 1 };
            let mut items = Vec::new();
            let mut total = Decimal::ZERO;
            for (i, (sku, category, price)) in LINES.iter().enumerate() {
                if lines & (1 << i) != 0 || (*lines == 0 && i == 0) {
                    items.push(json!({"sku": sku, "name": sku, "category": category,
                        "quantity": quantity, "unit_price": price}));
                    total += price.parse::<Decimal>().expect("a price") * Decimal::from(quantity);
                }
            }
            let c = owner(*order, *other);
            let mut v = head("order.placed");
            v["order"] = json!({"id": order_id(*order),
                "customer": {"id": c, "email": format!("{c}@mail.example"), "first_name": "Kim"},
                "currency": "EUR", "total": total.to_string(), "items": items,
                "shipping": {"country": "DE"}, "warehouse": "WH-BER"});
            if let Some((from, code)) = redeem {
                v["order"]["coupon_codes"] = json!([issued_code(key, *from, *code)]);
            }
            v
        }
        Op::About { fact, order, other } => {
            let kind = match fact {
                Fact::Cancelled => "order.cancelled",
                Fact::Returned | Fact::PartlyReturned => "order.returned",
                Fact::Delivered => "order.delivered",
                Fact::Shipped => "order.shipped",
            };
            let mut v = head(kind);
            v["order_id"] = json!(order_id(*order));
            v["customer_id"] = json!(owner(*order, *other));
            match fact {
                Fact::PartlyReturned => v["items"] = json!([{"sku": "B1", "quantity": 1}]),
                Fact::Delivered => v["delivered_at"] = json!(time(n)),
                _ => {}
            }
            v
        }
        Op::Customer { said, customer: c } => {
            let kind = match said {
                Said::Feedback(_) => "customer.feedback",
                Said::Subscribed => "customer.subscribed",
                Said::Unsubscribed => "customer.unsubscribed",
            };
            let mut v = head(kind);
            v["customer_id"] = json!(customer(*c));
            if let Said::Feedback(nps) = said {
                v["nps"] = json!(nps);
            }
            v
        }
        // At the start of a history, where there is nothing to repeat: a first event.
        Op::Redelivered { .. } => {
            let first = Op::Customer {
                said: Said::Subscribed,
                customer: 0,
            };
            event(n, &first, key)
        }
        Op::ReusedId { op, .. } => event(n, op, key),
    }
}

/// The events of a history, each valid; codes redeemed are those `key` makes.
pub fn history(ops: &[Op], key: &CouponKey) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(ops.len());
    for (n, op) in ops.iter().enumerate() {
        let v = match op {
            Op::Redelivered { back } if !out.is_empty() => out[*back as usize % out.len()].clone(),
            Op::ReusedId { back, op } if !out.is_empty() => {
                let mut v = event(n, op, key);
                v["event_id"] = out[*back as usize % out.len()]["event_id"].clone();
                v
            }
            op => event(n, op, key),
        };
        assert!(event_from_value(&v).is_ok(), "{v}");
        out.push(v);
    }
    out
}

/// A history of 1 to 39 events.
pub fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..40)
}
