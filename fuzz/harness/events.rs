//! `event_path`: events parsed, folded into the customers' history and decided with the
//! example rules, as `simulate` and `backtest` replay them.

use super::{apply_checked, example_rules, key};
use packwell::engine::Shop;
use packwell::event::parse_event;
use packwell::replay::Replay;
use serde_json::{Value, json};

/// At most this many events per input: enough for a history, a new order and what follows it.
const MAX_EVENTS: usize = 32;

/// An input that starts with this byte describes its events in [`DESCRIPTION`]-byte records
/// (see [`described_events`]); any other input is events as JSON, one per line (the wire
/// format of Kafka `orders`).
pub const DESCRIBED: u8 = 0;

/// The bytes of one described event.
pub const DESCRIPTION: usize = 8;

pub fn event_path(data: &[u8]) {
    let lines: Vec<Vec<u8>> = match data.split_first() {
        Some((&DESCRIBED, rest)) => described_events(rest),
        _ => data
            .split(|b| *b == b'\n')
            .take(MAX_EVENTS)
            .map(<[u8]>::to_vec)
            .collect(),
    };
    let shop = Shop::default();
    let mut replay = Replay::new(example_rules(), key(), &shop);
    for (i, line) in lines.iter().enumerate() {
        let Ok(event) = parse_event(line) else {
            continue;
        };
        apply_checked(&mut replay, &event, i % 2 == 1);
    }
}

/// Amounts at and around the edges: zero, the smallest cents, the largest amount an event may
/// carry (`event::bounds::MAX_AMOUNT`, 10^12) and just past it, more places than accepted,
/// `Decimal::MAX`, a negative one.
const AMOUNTS: &[&str] = &[
    "0",
    "0.01",
    "1",
    "9.99",
    "43.98",
    "1000000",
    "999999999999.9999",
    "1000000000000",
    "1000000000000.0001",
    "79228162514264337593543950335",
    "-1",
    "0.00001",
];

/// Quantities at and around `event::bounds::MAX_QUANTITY` (10^6) and the integer types' ends.
const QUANTITIES: &[u64] = &[
    0,
    1,
    2,
    3,
    1_000,
    999_999,
    1_000_000,
    1_000_001,
    u32::MAX as u64,
    u64::MAX,
];

/// Currencies with 2, 0, 3 and 4 minor digits.
const CURRENCIES: &[&str] = &["EUR", "USD", "JPY", "BHD", "CLF"];

const CATEGORIES: &[&str] = &["books", "tea", "fragrance", "gifts"];

/// Events built from records of [`DESCRIPTION`] bytes, so that the fuzzer spends its inputs on
/// sequences and edge values rather than on JSON syntax. A record `[kind, customer, order,
/// amount, quantity, lines, time, extra]` picks the type (placed, shipped, delivered,
/// cancelled, returned with or without items, feedback, unsubscribed or subscribed), one of
/// three customers and six orders, an amount and a quantity from the tables above, the number
/// of lines (1 to 6, 1 000, or none), the time in steps of seven hours, and with `extra` the
/// currency, the second price, an NPS and whether the event id is reused.
pub fn described_events(data: &[u8]) -> Vec<Vec<u8>> {
    data.chunks_exact(DESCRIPTION)
        .take(MAX_EVENTS)
        .enumerate()
        .map(|(i, r)| described_event(i, [r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]]))
        .map(|v| serde_json::to_vec(&v).expect("JSON"))
        .collect()
}

fn described_event(i: usize, r: [u8; DESCRIPTION]) -> Value {
    let [kind, customer, order, amount, quantity, lines, time, extra] = r;
    let pick = |table: &[&'static str], b: u8| table[usize::from(b) % table.len()];
    let customer_no = customer % 3;
    let customer_id = format!("C-{customer_no}");
    let order_id = format!("O-{}", order % 6);
    let kind = kind % 8;
    // A reused id makes a redelivery, or a conflict when the content differs.
    let event_id = if extra & 0x80 != 0 {
        format!("ev-{order_id}-{kind}")
    } else {
        format!("ev-{i}")
    };
    let hours = i64::from(time) * 7;
    let at = |h: i64| {
        (chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(20_454) + chrono::Duration::hours(h))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let quantity = QUANTITIES[usize::from(quantity) % QUANTITIES.len()];
    let line_count = match lines % 8 {
        6 => 1_000,
        7 => 0,
        n => usize::from(n) + 1,
    };
    let mut event = json!({"event_id": event_id, "occurred_at": at(hours),
        "order_id": order_id, "customer_id": customer_id});
    match kind {
        0 => {
            let items: Vec<Value> = (0..line_count)
                .map(|j| {
                    let price = if j % 2 == 0 {
                        pick(AMOUNTS, amount)
                    } else {
                        pick(AMOUNTS, extra)
                    };
                    json!({"sku": format!("S-{}", j % 7), "name": "Item", "category": CATEGORIES[j % 4],
                        "quantity": quantity, "unit_price": price})
                })
                .collect();
            let (zone, warehouse, locale) = match customer_no {
                0 => ("Europe/Berlin", "WH-BER", "de-DE"),
                1 => ("America/New_York", "WH-NYC", "en-US"),
                _ => ("Pacific/Kiritimati", "WH-BER", "ar-EG"),
            };
            event = json!({"event_id": event["event_id"], "type": "order.placed",
                "occurred_at": at(hours),
                "order": {"id": order_id, "customer": {"id": customer_id, "email": format!("{customer_id}@example.com"),
                    "first_name": "Ana", "locale": locale, "time_zone": zone, "birthday": "1990-02-28"},
                "currency": pick(CURRENCIES, extra), "total": pick(AMOUNTS, amount), "items": items,
                "shipping": {"country": "DE"}, "warehouse": warehouse,
                "promised_delivery": at(hours + 48).get(..10)}});
        }
        1 => event["type"] = json!("order.shipped"),
        2 => {
            event["type"] = json!("order.delivered");
            event["delivered_at"] = json!(at(hours + i64::from(extra)));
        }
        3 => event["type"] = json!("order.cancelled"),
        4 | 5 => {
            event["type"] = json!("order.returned");
            if kind == 4 {
                let items: Vec<Value> = (0..line_count.min(8))
                    .map(|j| json!({"sku": format!("S-{}", j % 7), "quantity": quantity}))
                    .collect();
                event["items"] = Value::Array(items);
            }
        }
        6 => {
            event["type"] = json!("customer.feedback");
            event["nps"] = json!(extra % 12);
        }
        _ => {
            event["type"] = json!(if extra % 2 == 0 {
                "customer.unsubscribed"
            } else {
                "customer.subscribed"
            });
        }
    }
    event
}
