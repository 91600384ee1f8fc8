//! Property tests of the history fold and the decision on hostile values: events built
//! directly (past the bounds the event parser enforces) with amounts up to `Decimal::MAX`,
//! quantities up to `u32::MAX`, in any order. Nothing panics, and each event either changes
//! the history exactly (the spend of every currency equals what an exact oracle sums over the
//! orders) or changes nothing at all.

use chrono::{DateTime, Utc};
use packwell::coupon::CouponKey;
use packwell::engine::Shop;
use packwell::event::{
    Customer, Event, EventBody, Item, Order, RejectReason, ReturnedItem, Shipping,
};
use packwell::money::Currency;
use packwell::profile::{History, OrderStatus};
use packwell::replay::{Applied, Replay};
use packwell::rules::{RuleSet, load_rules};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

/// The oracle's unit: amounts have at most 4 decimals here, so i128 of 1/10000 hold every
/// sum exactly (2^96 * 10^4 * a few dozen orders is far below 2^127).
const SCALE: u32 = 4;

fn units(d: Decimal) -> i128 {
    let d = d.normalize();
    assert!(d.scale() <= SCALE, "{d}: more than {SCALE} decimals");
    d.mantissa() * 10i128.pow(SCALE - d.scale())
}

/// Any amount from 0 to `Decimal::MAX`, with 0 to 4 decimals; large ones often.
fn amount() -> impl Strategy<Value = Decimal> {
    let max = Decimal::MAX.mantissa();
    prop_oneof![
        (0i128..100_000, 0u32..=SCALE).prop_map(|(m, s)| Decimal::from_i128_with_scale(m, s)),
        (0i128..=max, 0u32..=0).prop_map(|(m, s)| Decimal::from_i128_with_scale(m, s)),
        (0i128..=max / 10_000, 1u32..=SCALE).prop_map(|(m, s)| Decimal::from_i128_with_scale(m, s)),
        Just(Decimal::MAX),
    ]
}

fn quantity() -> impl Strategy<Value = u32> {
    prop_oneof![1u32..5, Just(u32::MAX), 1u32..=u32::MAX]
}

/// What happens, on a few orders of two customers.
#[derive(Debug, Clone)]
enum Step {
    Placed {
        order: u8,
        customer: u8,
        currency: u8,
        total: Decimal,
        items: Vec<(u8, u32, Decimal)>,
        codes: u8,
    },
    Cancelled {
        order: u8,
    },
    Returned {
        order: u8,
        items: Option<Vec<(u8, u32)>>,
    },
    Delivered {
        order: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..4, 0u8..2, 0u8..2, amount(), prop::collection::vec((0u8..3, quantity(), amount()), 1..4), 0u8..3)
            .prop_map(|(order, customer, currency, total, items, codes)| Step::Placed { order, customer, currency, total, items, codes }),
        1 => (0u8..4).prop_map(|order| Step::Cancelled { order }),
        2 => (0u8..4, prop::option::of(prop::collection::vec((0u8..3, quantity()), 1..4)))
            .prop_map(|(order, items)| Step::Returned { order, items }),
        1 => (0u8..4).prop_map(|order| Step::Delivered { order }),
    ]
}

const CURRENCIES: [&str; 2] = ["EUR", "USD"];

fn at(n: usize) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600 + n as i64 * 86_400, 0).expect("time")
}

/// The event of a step; the order's customer is the one it was placed for, when known.
fn event(n: usize, step: &Step, owners: &BTreeMap<u8, u8>) -> Event {
    let order_id = |o: u8| format!("O-{o}");
    let customer_of = |o: u8| format!("C-{}", owners.get(&o).copied().unwrap_or(0));
    let body = match step {
        Step::Placed {
            order,
            customer,
            currency,
            total,
            items,
            codes,
        } => EventBody::OrderPlaced(Box::new(Order {
            id: order_id(*order),
            customer: Customer {
                id: format!("C-{customer}"),
                email: "kim@example.com".into(),
                first_name: "Kim".into(),
                last_name: None,
                locale: None,
                time_zone: None,
                birthday: None,
            },
            currency: CURRENCIES[*currency as usize]
                .parse::<Currency>()
                .expect("currency"),
            total: *total,
            items: items
                .iter()
                .map(|(sku, q, price)| Item {
                    sku: format!("S-{sku}"),
                    name: "thing".into(),
                    category: "books".into(),
                    quantity: *q,
                    unit_price: *price,
                })
                .collect(),
            shipping: Shipping {
                country: "DE".into(),
                city: None,
                postcode: None,
            },
            warehouse: "WH-BER".into(),
            channel: None,
            coupon_codes: (0..*codes).map(|i| format!("CODE-{i}")).collect(),
            promised_delivery: None,
        })),
        Step::Cancelled { order } => EventBody::OrderCancelled {
            order_id: order_id(*order),
            customer_id: customer_of(*order),
        },
        Step::Returned { order, items } => EventBody::OrderReturned {
            order_id: order_id(*order),
            customer_id: customer_of(*order),
            items: items.as_ref().map(|list| {
                list.iter()
                    .map(|(sku, q)| ReturnedItem {
                        sku: format!("S-{sku}"),
                        quantity: *q,
                    })
                    .collect()
            }),
            reason: None,
        },
        Step::Delivered { order } => EventBody::OrderDelivered {
            order_id: order_id(*order),
            customer_id: customer_of(*order),
            delivered_at: at(n + 3),
        },
    };
    Event {
        event_id: format!("ev-{n}"),
        occurred_at: at(n),
        body,
        digest: [0; 32],
    }
}

/// The exact spend per (customer, currency) the orders imply: placed and not cancelled,
/// less what was returned of them.
fn oracle(h: &History) -> BTreeMap<(String, String), i128> {
    let mut spend = BTreeMap::new();
    for o in h.orders.values() {
        if o.status == OrderStatus::Placed {
            *spend
                .entry((o.customer_id.clone(), o.currency.to_string()))
                .or_insert(0) += units(o.total) - units(o.returned_value);
        }
    }
    spend
}

fn folded_spend(h: &History) -> BTreeMap<(String, String), i128> {
    let mut spend = BTreeMap::new();
    for p in h.profiles.values() {
        for s in &p.spend {
            if s.orders > 0 || !s.net.is_zero() {
                spend.insert(
                    (p.customer_id.clone(), s.currency.to_string()),
                    units(s.net),
                );
            }
        }
    }
    spend
}

fn example_rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        load_rules(&root.join("rules"), &root.join("templates"))
            .rules
            .expect("the example rules load")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_fold_changes_the_history_exactly_or_not_at_all(steps in prop::collection::vec(step(), 1..24)) {
        let mut h = History::default();
        let mut owners: BTreeMap<u8, u8> = BTreeMap::new();
        for (n, s) in steps.iter().enumerate() {
            let e = event(n, s, &owners);
            let (profiles, orders) = (h.profiles.clone(), h.orders.clone());
            match h.fold(&e) {
                Ok(_) => {
                    if let Step::Placed { order, customer, .. } = s {
                        owners.entry(*order).or_insert(*customer);
                    }
                }
                Err(r) => {
                    prop_assert_eq!(r.reason, RejectReason::OutOfRange, "{}", r.message);
                    prop_assert!(h.profiles == profiles, "a rejected event changed a profile: {}", r.message);
                    prop_assert!(h.orders == orders, "a rejected event changed an order: {}", r.message);
                }
            }
            prop_assert_eq!(folded_spend(&h), oracle(&h), "after step {} {:?}", n, s);
            for o in h.orders.values() {
                prop_assert!(o.returned_value <= o.total, "{:?}", o);
            }
        }
    }

    #[test]
    fn deciding_on_hostile_histories_never_fails(steps in prop::collection::vec(step(), 1..12)) {
        let rules = example_rules();
        let key = CouponKey::from_bytes(vec![7u8; 32]);
        let shop = Shop::default();
        let mut replay = Replay::new(rules, &key, &shop);
        let mut owners: BTreeMap<u8, u8> = BTreeMap::new();
        for (n, s) in steps.iter().enumerate() {
            let e = event(n, s, &owners);
            if let Step::Placed { order, customer, .. } = s {
                owners.entry(*order).or_insert(*customer);
            }
            // `apply` sets aside an event whose step panicked: here none may.
            if let Applied::Rejected(r) = replay.apply(&e, true, true) {
                prop_assert_eq!(r.reason, RejectReason::OutOfRange, "{}", r.message);
            }
        }
    }
}
