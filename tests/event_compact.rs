//! The compact encoding of kept events (`event/compact.rs`): every valid event comes back
//! exactly, digest included, in fewer bytes than its JSON; stored bytes are input, so every
//! bound the parser checks is checked again, and no bytes at all make `decode` panic, while
//! any bytes it accepts are exactly what `encode` makes of the event.

use chrono::{DateTime, NaiveDate, Utc};
use packwell::event::compact::{VERSION, decode, encode};
use packwell::event::{
    Customer, Event, EventBody, Item, Order, ReturnedItem, Shipping, bounds, parse_event,
};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::path::Path;

/// The first `n` events of the example history, with their JSON lines.
fn example_events(n: usize) -> Vec<(String, Event)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/history.ndjson");
    let text = std::fs::read_to_string(path).expect("examples/history.ndjson");
    text.lines()
        .take(n)
        .map(|l| {
            (
                l.to_string(),
                parse_event(l.as_bytes()).expect("a valid event"),
            )
        })
        .collect()
}

#[test]
fn the_example_history_comes_back_exactly_and_smaller_than_its_json() {
    let events = example_events(3000);
    let (mut json, mut compact) = (0, 0);
    for (line, e) in &events {
        let bytes = encode(e);
        let back = decode(&bytes).unwrap_or_else(|err| panic!("{}: {err}", e.event_id));
        assert_eq!(&back, e);
        assert_eq!(back.digest, e.digest, "{}", e.event_id);
        assert!(bytes.len() < line.len(), "{}", e.event_id);
        json += line.len();
        compact += bytes.len();
    }
    // About a third of the JSON (106 against 330 bytes an event on average).
    assert!(compact * 2 < json, "{compact} bytes against {json} as JSON");
}

fn placed_order() -> Event {
    parse_event(
        br#"{"event_id":"e1","type":"order.placed","occurred_at":"2026-11-20T10:00:00Z",
        "order":{"id":"O-1","customer":{"id":"C-1","email":"ana@example.com","first_name":"Ana"},
        "currency":"EUR","total":"54.90",
        "items":[{"sku":"B1","name":"Book","category":"books","quantity":2,"unit_price":"27.45"}],
        "shipping":{"country":"DE"},"warehouse":"WH-BER"}}"#,
    )
    .unwrap()
}

/// An order event changed by `f`, past what the parser accepts, encoded (the encoder writes
/// what it is given) and decoded: the error's field and reason.
fn decode_changed(f: impl FnOnce(&mut Order)) -> String {
    let mut e = placed_order();
    let EventBody::OrderPlaced(o) = &mut e.body else {
        unreachable!()
    };
    f(o);
    decode(&encode(&e)).unwrap_err().to_string()
}

#[test]
fn bytes_that_are_not_an_event_are_an_error() {
    let bytes = encode(&placed_order());
    assert_eq!(decode(&[]).unwrap_err().field, "version");
    assert!(decode(&[2]).unwrap_err().why.contains("version 2"));
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(decode(&longer).unwrap_err().why, "1 bytes after its end");
    let cut = decode(&bytes[..bytes.len() - 1]).unwrap_err();
    assert_eq!(cut.field, "order.promised_delivery");
    // A length that promises more than there is, and one past the text bound.
    assert!(decode(&[VERSION, 0x05, b'e']).is_err());
    let long = decode(&[VERSION, 0xff, 0xff, 0xff, 0x0f]).unwrap_err();
    assert!(long.why.contains("bytes long"), "{long}");
    // Not the shortest form of 1.
    let padded = decode(&[VERSION, 0x81, 0x00, b'e']).unwrap_err();
    assert!(padded.why.contains("shortest form"), "{padded}");
}

#[test]
fn what_the_parser_rejects_is_rejected_when_read_back() {
    let long = "x".repeat(bounds::MAX_TEXT_BYTES + 1);
    let cases: Vec<(String, &str)> = vec![
        (
            decode_changed(|o| o.items[0].quantity = 0),
            "order.items.quantity: 0: between 1",
        ),
        (
            decode_changed(|o| o.items[0].quantity = bounds::MAX_QUANTITY + 1),
            "order.items.quantity: 1000001",
        ),
        (
            decode_changed(|o| o.items[0].name = long.clone()),
            "order.items.name: 4097 bytes long",
        ),
        (
            decode_changed(|o| o.customer.email = "no-at.example.com".into()),
            "order.customer.email: expected an e-mail address",
        ),
        (
            decode_changed(|o| o.customer.id = "C\n1".into()),
            "order.customer.id: must not contain control characters",
        ),
        (
            decode_changed(|o| o.customer.first_name = "  ".into()),
            "order.customer.first_name: must not be empty",
        ),
        (
            decode_changed(|o| o.total = bounds::MAX_AMOUNT + Decimal::ONE),
            "order.total: 1000000000001 is over the largest amount",
        ),
        (
            decode_changed(|o| o.total = Decimal::new(1, 5)),
            "order.total: 5 decimal places",
        ),
        (
            decode_changed(|o| o.total = Decimal::new(-1, 0)),
            "order.total: must not be negative",
        ),
        (
            decode_changed(|o| o.items.clear()),
            "order.items: 0 entries",
        ),
        (
            decode_changed(|o| o.coupon_codes = vec![String::new()]),
            "order.coupon_codes: an empty code",
        ),
        (
            decode_changed(|o| o.coupon_codes = vec!["C".into(); bounds::MAX_COUPON_CODES + 1]),
            "order.coupon_codes: 101 entries",
        ),
    ];
    for (got, want) in cases {
        assert!(
            got.starts_with(want),
            "{got:?} does not start with {want:?}"
        );
    }
    let mut feedback = parse_event(
        br#"{"event_id":"f","type":"customer.feedback","occurred_at":"2026-11-20T10:00:00Z","customer_id":"C","nps":9}"#,
    )
    .unwrap();
    if let EventBody::Feedback { nps, .. } = &mut feedback.body {
        *nps = 11;
    }
    assert_eq!(
        decode(&encode(&feedback)).unwrap_err().to_string(),
        "nps: must be between 0 and 10, found 11"
    );
}

#[test]
fn every_change_of_one_byte_and_every_cut_is_an_error_or_the_same_bytes() {
    // Exhaustive over a small order and a return: each prefix, and each byte set to each value.
    let returned = parse_event(
        br#"{"event_id":"r","type":"order.returned","occurred_at":"2026-11-20T10:00:00.5Z","order_id":"O-1",
            "customer_id":"C-1","items":[{"sku":"B1","quantity":1}],"reason":"too big"}"#,
    )
    .unwrap();
    for e in [placed_order(), returned] {
        let bytes = encode(&e);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            for v in 0..=255u8 {
                let mut changed = bytes.clone();
                changed[i] = v;
                if let Ok(other) = decode(&changed) {
                    assert_eq!(encode(&other), changed, "byte {i} set to {v}");
                }
            }
        }
    }
}

fn text(min: usize) -> impl Strategy<Value = String> {
    // Any characters, control characters included, and at times text near the length bound.
    prop_oneof![
        4 => proptest::string::string_regex(&format!("[\\PC\\t\\n]{{{min},12}}")).unwrap(),
        1 => (min.max(1)..=bounds::MAX_TEXT_BYTES).prop_map(|n| "é".repeat(n / 2)),
    ]
    .prop_filter("not blank", move |s| min == 0 || !s.trim().is_empty())
}

fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,16}"
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text(0))
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..=253_402_300_799, 0u32..1_000_000_000)
        .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap())
}

fn date() -> impl Strategy<Value = Option<NaiveDate>> {
    proptest::option::of(
        (1i32..=3_652_059).prop_map(|d| NaiveDate::from_num_days_from_ce_opt(d).unwrap()),
    )
}

fn amount() -> impl Strategy<Value = Decimal> {
    (0u64..=1_000_000_000_000, 0u32..=bounds::MAX_AMOUNT_SCALE)
        .prop_map(|(m, scale)| Decimal::from_i128_with_scale(i128::from(m), scale))
        .prop_filter("within the bounds", |d| *d <= bounds::MAX_AMOUNT)
}

fn order() -> impl Strategy<Value = Order> {
    let customer = (
        id(),
        "[a-z0-9.]{1,10}@[a-z]{1,10}\\.[a-z]{2,3}",
        text(1),
        opt_text(),
        opt_text(),
        proptest::option::of(proptest::sample::select(chrono_tz::TZ_VARIANTS.to_vec())),
        date(),
    )
        .prop_map(
            |(id, email, first_name, last_name, locale, time_zone, birthday)| Customer {
                id,
                email,
                first_name,
                last_name,
                locale,
                time_zone,
                birthday,
            },
        );
    let item = (
        text(1),
        text(1),
        text(1),
        1..=bounds::MAX_QUANTITY,
        amount(),
    )
        .prop_map(|(sku, name, category, quantity, unit_price)| Item {
            sku,
            name,
            category,
            quantity,
            unit_price,
        });
    let currency = proptest::sample::select(vec!["EUR", "USD", "JPY", "CLF", "VND"])
        .prop_map(|c| c.parse().unwrap());
    (
        (id(), customer, currency, amount()),
        proptest::collection::vec(item, 1..4),
        (text(1), opt_text(), opt_text(), text(1), opt_text()),
        proptest::collection::vec(text(0).prop_filter("a code", |c| !c.is_empty()), 0..3),
        date(),
    )
        .prop_map(
            |(
                (id, customer, currency, total),
                items,
                (country, city, postcode, warehouse, channel),
                coupon_codes,
                promised_delivery,
            )| Order {
                id,
                customer,
                currency,
                total,
                items,
                shipping: Shipping {
                    country,
                    city,
                    postcode,
                },
                warehouse,
                channel,
                coupon_codes,
                promised_delivery,
            },
        )
}

fn body() -> impl Strategy<Value = EventBody> {
    let returned = proptest::option::of(proptest::collection::vec(
        (text(1), 1..=bounds::MAX_QUANTITY)
            .prop_map(|(sku, quantity)| ReturnedItem { sku, quantity }),
        0..3,
    ));
    prop_oneof![
        order().prop_map(|o| EventBody::OrderPlaced(Box::new(o))),
        (id(), id(), opt_text(), opt_text()).prop_map(
            |(order_id, customer_id, carrier, tracking)| {
                EventBody::OrderShipped {
                    order_id,
                    customer_id,
                    carrier,
                    tracking,
                }
            }
        ),
        (id(), id(), time()).prop_map(|(order_id, customer_id, delivered_at)| {
            EventBody::OrderDelivered {
                order_id,
                customer_id,
                delivered_at,
            }
        }),
        (id(), id()).prop_map(|(order_id, customer_id)| EventBody::OrderCancelled {
            order_id,
            customer_id
        }),
        (id(), id(), returned, opt_text()).prop_map(|(order_id, customer_id, items, reason)| {
            EventBody::OrderReturned {
                order_id,
                customer_id,
                items,
                reason,
            }
        }),
        (id(), 0u8..=10, opt_text()).prop_map(|(customer_id, nps, comment)| EventBody::Feedback {
            customer_id,
            nps,
            comment
        }),
        id().prop_map(|customer_id| EventBody::Unsubscribed { customer_id }),
        id().prop_map(|customer_id| EventBody::Subscribed { customer_id }),
    ]
}

fn event() -> impl Strategy<Value = (String, DateTime<Utc>, EventBody)> {
    (id(), time(), body())
}

/// The event with the digest the parser would give it: that of its JSON form parsed.
fn built(event_id: String, occurred_at: DateTime<Utc>, body: EventBody) -> Event {
    let mut e = Event {
        event_id,
        occurred_at,
        body,
        digest: [0; 32],
    };
    e.digest = decode(&encode(&e)).expect("a valid event").digest;
    e
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_valid_event_comes_back_exactly((id, at, body) in event()) {
        let e = built(id, at, body);
        let bytes = encode(&e);
        prop_assert_eq!(bytes[0], VERSION);
        let back = decode(&bytes).unwrap();
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(back.digest, e.digest);
        // Exactly: amounts keep their places, so the bytes are the same again.
        prop_assert_eq!(encode(&back), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(e) = decode(&bytes) {
            prop_assert_eq!(encode(&e), bytes);
        }
    }

    #[test]
    fn changed_encodings_never_panic(
        (id, at, body) in event(),
        changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode(&built(id, at, body));
        for (at, v) in changes {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        let n = cut.index(bytes.len() + 1);
        for candidate in [&bytes[..], &bytes[..n]] {
            if let Ok(e) = decode(candidate) {
                prop_assert_eq!(encode(&e), candidate.to_vec());
            }
        }
    }
}
