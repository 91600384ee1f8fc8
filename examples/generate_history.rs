//! Writes a realistic order history as NDJSON (docs/REFERENCE.md §1), in time order, to try
//! `packwell backtest` and `packwell import` on something bigger than a handful of orders:
//!
//!     cargo run --release --example generate_history -- --customers 3000 --months 4 --seed 42 --out examples/history.ndjson
//!
//! Customers have a personal buying rhythm and a favourite category; orders are mostly in EUR
//! (warehouse WH-BER), some in USD (WH-NYC); parcels are shipped and delivered, some late against
//! `promised_delivery`; some orders are cancelled or returned; some customers answer the NPS
//! survey, a few unsubscribe, and coupon codes are redeemed now and then. The output depends on
//! the arguments only: a small inline PRNG (SplitMix64), money in integer cents.

use chrono::{DateTime, Duration, Months, SecondsFormat, TimeZone, Utc};
use serde_json::{Value, json};
use std::io::{BufWriter, Write};

/// SplitMix64: tiny, fast and good enough for test data (not for anything secret).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform integer in [lo, hi].
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.next() as usize % xs.len()]
    }
}

const CATEGORIES: [&str; 4] = ["books", "tea", "fragrance", "home"];
/// (sku, name, category index, EUR cents, USD cents)
const PRODUCTS: &[(&str, &str, usize, i64, i64)] = &[
    ("BK-0001", "The Overstory (paperback)", 0, 1800, 1999),
    ("BK-0002", "Piranesi (hardcover)", 0, 1299, 1499),
    ("BK-0003", "The Remains of the Day", 0, 1150, 1299),
    ("BK-0004", "A Gentleman in Moscow", 0, 1690, 1800),
    ("BK-0005", "Braiding Sweetgrass", 0, 1980, 2000),
    ("BK-0006", "The Book of Tea (gift edition)", 0, 2400, 2600),
    ("TE-0101", "Darjeeling First Flush, 100 g", 1, 1450, 1600),
    ("TE-0102", "Earl Grey Imperial, 100 g", 1, 990, 1100),
    ("TE-0103", "Sencha Uji, 50 g", 1, 1200, 1350),
    ("TE-0104", "Rooibos Vanilla, 100 g", 1, 750, 850),
    ("TE-0105", "Assam Breakfast, 250 g", 1, 1390, 1550),
    ("FR-0201", "Cedar & Fig Eau de Parfum, 50 ml", 2, 6800, 7400),
    ("FR-0202", "Neroli Bloom Eau de Toilette", 2, 5400, 5900),
    ("FR-0203", "Amber Library Eau de Parfum", 2, 4500, 4900),
    ("FR-0204", "Black Tea Room Spray, 100 ml", 2, 2900, 3200),
    ("HM-0301", "Linen Tea Towel, Oat", 3, 1400, 1500),
    ("HM-0302", "Stoneware Mug, Moss", 3, 2200, 2400),
    ("HM-0303", "Beeswax Candle, Tall", 3, 1250, 1400),
    ("HM-0304", "Merino Wool Throw, Charcoal", 3, 8900, 9800),
    ("HM-0305", "Cast Iron Teapot, 0.8 l", 3, 4900, 5400),
];
/// First and last names, separated by spaces.
const FIRST: &str = "Lena Jonas Mia Paul Anna Felix Clara Noah Emma Leon Sophie Lukas Marie Ben Hannah \
                     Elias Olivia Ethan Grace Liam Ava Mason Chloe Lucas Julia David Sara Tom Nora Max";
const LAST: &str = "Hoffmann Becker Schulz Weber Neumann Wagner Fischer Schneider Meyer Koch Wolf Braun \
                    Huber Lang Richter Carter Miller Brown Johnson Davis Garcia Wilson Moore Taylor \
                    Anderson Visser Janssen Martin";
/// (country, city, postcode, time zone, UTC offset in hours, locale; a simplification: no DST)
const EU: &[(&str, &str, &str, &str, i64, &str)] = &[
    ("DE", "Berlin", "10115", "Europe/Berlin", 1, "de-DE"),
    ("DE", "Hamburg", "20095", "Europe/Berlin", 1, "de-DE"),
    ("DE", "Munich", "80331", "Europe/Berlin", 1, "de-DE"),
    ("DE", "Cologne", "50667", "Europe/Berlin", 1, "de-DE"),
    ("DE", "Leipzig", "04109", "Europe/Berlin", 1, "de-DE"),
    ("AT", "Vienna", "1010", "Europe/Vienna", 1, "de-AT"),
    ("NL", "Amsterdam", "1012", "Europe/Amsterdam", 1, "nl-NL"),
    ("FR", "Paris", "75001", "Europe/Paris", 1, "fr-FR"),
];
const US: &[(&str, &str, &str, &str, i64, &str)] = &[
    ("US", "New York", "10001", "America/New_York", -5, "en-US"),
    ("US", "Brooklyn", "11201", "America/New_York", -5, "en-US"),
    ("US", "Boston", "02108", "America/New_York", -5, "en-US"),
    ("US", "Chicago", "60601", "America/Chicago", -6, "en-US"),
    (
        "US",
        "San Francisco",
        "94103",
        "America/Los_Angeles",
        -8,
        "en-US",
    ),
];
const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn code(rng: &mut Rng, prefix: &str) -> String {
    let tail: String = (0..12).map(|_| *rng.pick(CROCKFORD) as char).collect();
    format!("{prefix}-{tail}")
}

/// Collects events; written sorted by time (ties keep the order they were made in).
struct Out {
    events: Vec<(DateTime<Utc>, usize, Value)>,
}

impl Out {
    /// `event_id` is set when written, numbered in file order.
    fn push(&mut self, at: DateTime<Utc>, kind: &str, body: Value) {
        let n = self.events.len();
        let mut ev = json!({ "event_id": "", "type": kind, "occurred_at": time(at) });
        if let (Value::Object(ev), Value::Object(body)) = (&mut ev, body) {
            ev.extend(body);
        }
        self.events.push((at, n, ev));
    }
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!(
            "usage: generate_history [--customers N] [--months M] [--seed S] [--start YYYY-MM-DD] [--out FILE]"
        );
        return Ok(());
    }
    let customers: usize = arg(&args, "--customers", "3000").parse()?;
    let months: u32 = arg(&args, "--months", "4").parse()?;
    let seed: u64 = arg(&args, "--seed", "42").parse()?;
    let start_date =
        chrono::NaiveDate::parse_from_str(&arg(&args, "--start", "2026-07-01"), "%Y-%m-%d")?;
    let out_path = arg(&args, "--out", "examples/history.ndjson");
    let start = Utc.from_utc_datetime(&start_date.and_hms_opt(0, 0, 0).unwrap());
    let end = start
        .checked_add_months(Months::new(months))
        .ok_or("--months is too large")?;
    let span_days = (end - start).num_days();

    let first_names: Vec<&str> = FIRST.split_whitespace().collect();
    let last_names: Vec<&str> = LAST.split_whitespace().collect();
    let mut rng = Rng(seed);
    let mut out = Out { events: Vec::new() };
    let mut order_no = 100_000;

    for c in 0..customers {
        // Who they are.
        let us = rng.chance(0.2);
        let (country, city, postcode, tz, offset, locale) = *rng.pick(if us { US } else { EU });
        let (first, last) = (*rng.pick(&first_names), *rng.pick(&last_names));
        let id = format!("C-{:06}", c + 1);
        let email = format!("{first}.{last}{}@example.com", c + 1).to_lowercase();
        let mut customer = json!({ "id": id, "email": email, "first_name": first, "last_name": last,
                                   "locale": locale, "time_zone": tz });
        if rng.chance(0.7) {
            let birthday = format!(
                "{}-{:02}-{:02}",
                rng.int(1950, 2004),
                rng.int(1, 12),
                rng.int(1, 28)
            );
            customer["birthday"] = json!(birthday);
        }
        let (currency, warehouse) = if us {
            ("USD", "WH-NYC")
        } else {
            ("EUR", "WH-BER")
        };
        let carriers: &[&str] = if us {
            &["UPS", "USPS"]
        } else {
            &["DHL", "DPD", "Hermes"]
        };
        let favourite = rng.int(0, 3) as usize;
        // Their rhythm: a usual interval between 14 and 120 days (log-uniform).
        let interval = 14.0 * (120.0f64 / 14.0).powf(rng.unit());
        let first_day = if rng.chance(0.5) {
            rng.unit() * interval.min(span_days as f64) // an existing customer
        } else {
            rng.unit() * span_days as f64 // a new one, some time in the period
        };
        let mut day = first_day;
        let mut asked_to_unsubscribe = false;

        while (day as i64) < span_days {
            // Order at a local hour between 7:00 and 23:00.
            let local_secs = rng.int(7 * 3600, 23 * 3600 - 1);
            let placed =
                start + Duration::days(day as i64) + Duration::seconds(local_secs - offset * 3600);
            if placed >= end {
                break;
            }
            order_no += 1;
            let order_id = format!("O-{order_no}");

            // The basket: 1-4 lines, mostly from the favourite category.
            let lines = *rng.pick(&[1, 1, 1, 1, 2, 2, 2, 3, 3, 4]);
            let mut items: Vec<Value> = Vec::new();
            let mut skus: Vec<&str> = Vec::new();
            let mut total = 0i64;
            for _ in 0..lines {
                let cat = if rng.chance(0.6) {
                    favourite
                } else {
                    rng.int(0, 3) as usize
                };
                let choices: Vec<_> = PRODUCTS.iter().filter(|p| p.2 == cat).collect();
                let (sku, name, cat, eur, usd) = **rng.pick(&choices);
                if skus.contains(&sku) {
                    continue;
                }
                skus.push(sku);
                let quantity = *rng.pick(&[1, 1, 1, 1, 1, 1, 1, 2, 2, 3]);
                let price = if us { usd } else { eur };
                total += price * quantity;
                let category = CATEGORIES[cat];
                items.push(json!({ "sku": sku, "name": name, "category": category,
                                   "quantity": quantity, "unit_price": money(price) }));
            }
            let promised = (placed + Duration::days(if us { 4 } else { 3 })).date_naive();
            let mut order = json!({
                "id": order_id, "customer": customer.clone(), "currency": currency, "total": money(total),
                "items": items,
                "shipping": { "country": country, "city": city, "postcode": postcode },
                "warehouse": warehouse, "channel": *rng.pick(&["web", "web", "web", "app"]),
                "promised_delivery": promised.format("%Y-%m-%d").to_string(),
            });
            if rng.chance(0.06) {
                let prefix = *rng.pick(&["THANKS", "THANKS", "WELCOME", "BACK"]);
                order["coupon_codes"] = json!([code(&mut rng, prefix)]);
            }
            out.push(placed, "order.placed", json!({ "order": order }));
            let who = json!({ "order_id": order_id, "customer_id": id });

            if rng.chance(0.03) {
                // Cancelled before it was packed.
                out.push(
                    placed + Duration::minutes(rng.int(10, 600)),
                    "order.cancelled",
                    who.clone(),
                );
            } else {
                let shipped = placed + Duration::minutes(rng.int(6 * 60, 40 * 60));
                let mut shipped_body = who.clone();
                shipped_body["carrier"] = json!(*rng.pick(carriers));
                shipped_body["tracking"] = json!(format!("{:012}", rng.next() % 1_000_000_000_000));
                out.push(shipped, "order.shipped", shipped_body);
                let late = rng.chance(0.1);
                let mut delivered = shipped + Duration::minutes(rng.int(18 * 60, 56 * 60));
                if late {
                    delivered += Duration::hours(rng.int(2 * 24, 7 * 24));
                }
                let mut delivered_body = who.clone();
                delivered_body["delivered_at"] = json!(time(delivered));
                out.push(delivered, "order.delivered", delivered_body);

                if rng.chance(0.04) {
                    let mut returned = who.clone();
                    returned["reason"] =
                        json!(*rng.pick(&["damaged", "not as described", "changed my mind"]));
                    if skus.len() > 1 && rng.chance(0.5) {
                        returned["items"] = json!([{ "sku": skus[0], "quantity": 1 }]);
                    }
                    out.push(
                        delivered + Duration::hours(rng.int(48, 14 * 24)),
                        "order.returned",
                        returned,
                    );
                }
                if rng.chance(0.22) {
                    // NPS: a late parcel makes detractors more likely.
                    let u = rng.unit();
                    let nps = if u < (if late { 0.25 } else { 0.5 }) {
                        rng.int(9, 10)
                    } else if u < (if late { 0.5 } else { 0.8 }) {
                        rng.int(7, 8)
                    } else {
                        rng.int(0, 6)
                    };
                    let mut feedback = json!({ "customer_id": id, "nps": nps });
                    if nps <= 6 && late {
                        feedback["comment"] = json!("The parcel took far too long.");
                    }
                    out.push(
                        delivered + Duration::hours(rng.int(20, 6 * 24)),
                        "customer.feedback",
                        feedback,
                    );
                }
            }

            // A few unsubscribe from our e-mails; some of them come back.
            if !asked_to_unsubscribe && rng.chance(0.015) {
                asked_to_unsubscribe = true;
                let at = placed + Duration::hours(rng.int(24, 20 * 24));
                out.push(at, "customer.unsubscribed", json!({ "customer_id": id }));
                if rng.chance(0.2) {
                    let back = at + Duration::days(rng.int(10, 60));
                    out.push(back, "customer.subscribed", json!({ "customer_id": id }));
                }
            }

            // The next order: around the usual interval; sometimes a long silence, sometimes never.
            if rng.chance(0.08) {
                break;
            }
            let mut gap = interval * (0.6 + 0.8 * rng.unit());
            if rng.chance(0.07) {
                gap *= 3.0;
            }
            day += gap.max(1.0);
        }
    }

    // In time order, only what happened inside the period.
    out.events.retain(|(at, _, _)| *at < end);
    out.events.sort_by_key(|(at, n, _)| (*at, *n));
    let file = std::fs::File::create(&out_path).map_err(|e| format!("{out_path}: {e}"))?;
    let mut w = BufWriter::new(file);
    let mut orders = 0;
    for (i, (_, _, ev)) in out.events.iter_mut().enumerate() {
        ev["event_id"] = json!(format!("ev-{:08}", i + 1));
        orders += (ev["type"] == "order.placed") as usize;
        serde_json::to_writer(&mut w, ev)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    eprintln!(
        "{out_path}: {} events, {orders} orders, {customers} customers, {} to {}",
        out.events.len(),
        start.format("%Y-%m-%d"),
        end.format("%Y-%m-%d")
    );
    Ok(())
}
