//! The simulation: customers and a queue of what happens next, in time order, each event
//! applied through Packwell's event path as it happens, and the planted effects (see the
//! example's first comment) started from what the rules did.

use super::catalogue::*;
use super::{CHECK_IN, DRIFT, History, LAPSING, ONE_TIME, PULL, PUT_OFF, WELCOME, WELCOME_BACK};
use super::{COUPON_VARIANT, WELCOME_VARIANTS, WELCOME_WEIGHTS};
use chrono::{DateTime, SecondsFormat, Utc};
use packwell::coupon::CouponKey;
use packwell::engine::{Shop, draw_variant};
use packwell::rules::RuleSet;
use packwell::step::{self, Effects, Env, Input, State};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};

const DAY: i64 = 86_400;

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

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn time(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn code(rng: &mut Rng, prefix: &str) -> String {
    let tail: String = (0..12).map(|_| *rng.pick(CROCKFORD) as char).collect();
    format!("{prefix}-{tail}")
}

struct Customer {
    id: String,
    json: Value,
    us: bool,
    place: Place,
    favourite: usize,
    /// The usual days between two orders.
    interval: f64,
    /// Buys once, and again only when something brings them back.
    one_time: bool,
    /// Orders placed so far.
    orders: u32,
    /// After this many orders, a long silence.
    lapse_after: Option<u32>,
    /// In that silence: the next order is the return of a lapsed customer.
    silent: bool,
    asked_to_unsubscribe: bool,
    /// The next order planned: its place in the queue.
    next: Option<(i64, u64)>,
    /// Put off at this time: orders no more after it.
    gone_after: Option<i64>,
}

enum Item {
    /// A customer places an order (on `day` of the period, at a time already drawn).
    Order { customer: usize, day: f64 },
    /// An event made earlier, due now.
    Event(Value),
}

/// The simulation: customers, the queue of what happens next, and Packwell's state as the
/// events so far left it.
struct World<'a> {
    rng: Rng,
    start: i64,
    end: i64,
    customers: Vec<Customer>,
    /// Customers by id.
    index: HashMap<String, usize>,
    queue: BTreeMap<(i64, u64), Item>,
    seq: u64,
    order_no: u64,
    state: State,
    env: Env<'a>,
    /// (kind, source, customer) met so far: only a first meeting starts a planted effect.
    met: HashSet<(&'static str, String, String)>,
    history: History,
}

/// A rule or follow-up meeting a customer for the first time.
struct Met {
    kind: &'static str,
    source: String,
    customer: String,
    /// `treated`, `held_out`, `shadow` (or `mixed`): a variant's `treated:<id>` is `treated`.
    arm: String,
    /// The variant of an experiment the customer was treated with, as the engine named it.
    variant: Option<String>,
    at: i64,
}

impl World<'_> {
    fn push(&mut self, at: i64, item: Item) -> (i64, u64) {
        self.seq += 1;
        self.queue.insert((at, self.seq), item);
        (at, self.seq)
    }

    /// Plans `c`'s order on `day` of the period, at a local hour between 7:00 and 23:00.
    fn plan_order(&mut self, c: usize, day: f64) -> Option<(i64, u64)> {
        let local = self.rng.int(7 * 3600, 23 * 3600 - 1);
        let at = self.start + (day as i64) * DAY + local - self.customers[c].place.4 * 3600;
        (at < self.end).then(|| self.push(at, Item::Order { customer: c, day }))
    }

    /// Applies one event through Packwell's event path, writes it, and returns the rules and
    /// follow-ups that met a customer for the first time.
    fn apply(&mut self, event: Value) -> Result<Vec<Met>, String> {
        // Numbered in file order, the id first.
        let n = self.history.lines.len() + 1;
        let mut numbered = serde_json::Map::new();
        numbered.insert("event_id".into(), json!(format!("ev-{n:08}")));
        if let Value::Object(fields) = event {
            numbered.extend(fields);
        }
        let event = Value::Object(numbered);
        let line = event.to_string();
        let parsed = packwell::event::parse_event(line.as_bytes())
            .map_err(|e| format!("event {n} does not parse: {}", e.message))?;
        let mut effects = Effects::default();
        let input = Input {
            event: Ok(&parsed),
            key: None,
            value: line.as_bytes(),
            offset: n as i64,
            decide: true,
            explain: false,
        };
        let stepped = step::apply(&mut self.state, &mut effects, &input, &self.env);
        if let Some(reason) = stepped.rejected {
            return Err(format!("event {n} was set aside: {}", reason.as_str()));
        }
        self.history.orders += (event["type"] == "order.placed") as usize;
        self.history.lines.push(line);
        let mut met = Vec::new();
        for ((kind, source, customer, _shadow), first) in effects.first_exposures {
            if self.met.insert((kind, source.clone(), customer.clone())) {
                let (arm, variant) = match first.arm.split_once(':') {
                    Some((arm, variant)) => (arm.to_string(), Some(variant.to_string())),
                    None => (first.arm, None),
                };
                *self
                    .history
                    .exposed
                    .entry((source.clone(), arm.clone()))
                    .or_default() += 1;
                met.push(Met {
                    kind,
                    source,
                    customer,
                    arm,
                    variant,
                    at: first.at,
                });
            }
        }
        Ok(met)
    }

    fn run(&mut self) -> Result<(), String> {
        while let Some(((at, _), item)) = self.queue.pop_first() {
            if at >= self.end {
                break;
            }
            let met = match item {
                Item::Order { customer, day } => {
                    self.customers[customer].next = None;
                    if self.customers[customer].gone_after.is_some_and(|g| at > g) {
                        continue;
                    }
                    self.order(customer, day, at)?
                }
                Item::Event(event) => self.apply(event)?,
            };
            for m in met {
                self.plant(&m);
            }
        }
        Ok(())
    }

    /// What a rule's first meeting with a customer does to them (see the module's comment).
    fn plant(&mut self, m: &Met) {
        let Some(&c) = self.index.get(&m.customer) else {
            return;
        };
        let coupon = match (m.kind, m.source.as_str()) {
            ("rule", WELCOME) => {
                // The variant the engine named; while the rules give `welcome` none yet, the
                // draw the engine will make once they do.
                let variant = m.variant.clone().unwrap_or_else(|| {
                    let drawn = draw_variant(&m.customer, WELCOME, &WELCOME_WEIGHTS);
                    WELCOME_VARIANTS[drawn.unwrap_or(0)].to_string()
                });
                if m.arm == "treated" {
                    let name = format!("{WELCOME}/{variant}");
                    *self
                        .history
                        .exposed
                        .entry((name, m.arm.clone()))
                        .or_default() += 1;
                }
                variant == COUPON_VARIANT
            }
            ("rule", WELCOME_BACK) => true,
            ("followup", CHECK_IN) => {
                if m.arm == "treated" && self.rng.chance(PUT_OFF) {
                    self.put_off(c, m.at);
                }
                return;
            }
            _ => false,
        };
        if coupon && m.arm == "treated" && self.rng.chance(PULL) {
            let day = ((m.at - self.start) as f64 / DAY as f64) + 5.0 + 20.0 * self.rng.unit();
            let planned = self.customers[c].next;
            let Some(key) = self.plan_order(c, day) else {
                return;
            };
            // The earlier of the two: a customer who was coming back sooner comes then.
            match planned {
                Some(p) if p < key => {
                    self.queue.remove(&key);
                }
                _ => {
                    if let Some(p) = planned {
                        self.queue.remove(&p);
                    }
                    self.customers[c].next = Some(key);
                }
            }
        }
    }

    /// The customer unsubscribes within two days of `at` and orders nothing after `at` (an
    /// order planned before it still comes).
    fn put_off(&mut self, c: usize, at: i64) {
        let customer = &mut self.customers[c];
        customer.gone_after = Some(at);
        customer.asked_to_unsubscribe = true;
        let id = customer.id.clone();
        let when = at + self.rng.int(2 * 3600, 2 * DAY);
        let event = json!({ "type": "customer.unsubscribed", "occurred_at": time(when), "customer_id": id });
        self.push(when, Item::Event(event));
    }

    /// Customer `c` places an order at `at`; what follows it (shipping, delivery, returns,
    /// feedback, the next order) is queued.
    fn order(&mut self, c: usize, day: f64, placed: i64) -> Result<Vec<Met>, String> {
        let rng = &mut self.rng;
        let cu = &self.customers[c];
        let us = cu.us;
        let (country, city, postcode, _, _, _) = cu.place;
        self.order_no += 1;
        let order_id = format!("O-{}", self.order_no);
        // The basket: 1-4 lines, mostly from the favourite category.
        let lines = *rng.pick(&[1, 1, 1, 1, 2, 2, 2, 3, 3, 4]);
        let mut items: Vec<Value> = Vec::new();
        let mut skus: Vec<&str> = Vec::new();
        let mut total = 0i64;
        for _ in 0..lines {
            let cat = if rng.chance(0.6) {
                cu.favourite
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
            items.push(
                json!({ "sku": sku, "name": name, "category": CATEGORIES[cat],
                               "quantity": quantity, "unit_price": money(price) }),
            );
        }
        let promised = (placed + if us { 4 } else { 3 } * DAY) / DAY * DAY;
        let mut order = json!({
            "id": order_id, "customer": cu.json.clone(),
            "currency": if us { "USD" } else { "EUR" }, "total": money(total), "items": items,
            "shipping": { "country": country, "city": city, "postcode": postcode },
            "warehouse": if us { "WH-NYC" } else { "WH-BER" },
            "channel": *rng.pick(&["web", "web", "web", "app"]),
            "promised_delivery": time(promised)[..10].to_string(),
        });
        if rng.chance(0.06) {
            let prefix = *rng.pick(&["THANKS", "THANKS", "WELCOME", "BACK"]);
            order["coupon_codes"] = json!([code(rng, prefix)]);
        }
        let id = cu.id.clone();
        let met = self.apply(
            json!({ "type": "order.placed", "occurred_at": time(placed), "order": order }),
        )?;
        self.aftermath(c, &id, &order_id, placed, skus.len() > 1, skus[0]);

        // The next order: around the usual interval; sometimes a long silence, sometimes never.
        let rng = &mut self.rng;
        let cu = &mut self.customers[c];
        cu.orders += 1;
        let back_from_silence = std::mem::take(&mut cu.silent);
        let stays = if cu.orders == 1 {
            !cu.one_time
        } else if back_from_silence {
            // A regular who went quiet once is likely to drift away for good.
            !rng.chance(DRIFT)
        } else {
            !rng.chance(0.06)
        };
        if stays {
            let mut gap = cu.interval * (0.6 + 0.8 * rng.unit());
            if cu.lapse_after == Some(cu.orders) {
                // Back after more than twice their interval, they are "lapsed"
                // (rules/10-segments.toml).
                gap = cu.interval * (2.5 + 1.5 * rng.unit());
                cu.silent = true;
            }
            self.customers[c].next = self.plan_order(c, day + gap.max(1.0));
        }
        Ok(met)
    }

    /// Queues what happens to an order after it is placed.
    fn aftermath(
        &mut self,
        c: usize,
        id: &str,
        order_id: &str,
        placed: i64,
        several: bool,
        first_sku: &str,
    ) {
        let who = json!({ "order_id": order_id, "customer_id": id });
        let with = |extra: Value| {
            let mut body = who.clone();
            if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
                b.extend(e);
            }
            body
        };
        let event = |kind: &str, at: i64, body: Value| {
            let mut ev = json!({ "type": kind, "occurred_at": time(at) });
            if let (Value::Object(ev), Value::Object(body)) = (&mut ev, body) {
                ev.extend(body);
            }
            (at, ev)
        };
        let rng = &mut self.rng;
        let us = self.customers[c].us;
        let mut later = Vec::new();
        if rng.chance(0.03) {
            // Cancelled before it was packed.
            let at = placed + rng.int(10, 600) * 60;
            later.push(event("order.cancelled", at, who.clone()));
        } else {
            let carriers: &[&str] = if us {
                &["UPS", "USPS"]
            } else {
                &["DHL", "DPD", "Hermes"]
            };
            let shipped = placed + rng.int(6 * 60, 40 * 60) * 60;
            let carrier = *rng.pick(carriers);
            let tracking = format!("{:012}", rng.next() % 1_000_000_000_000);
            later.push(event(
                "order.shipped",
                shipped,
                with(json!({ "carrier": carrier, "tracking": tracking })),
            ));
            let late = rng.chance(0.1);
            let mut delivered = shipped + rng.int(18 * 60, 56 * 60) * 60;
            if late {
                delivered += rng.int(2 * 24, 7 * 24) * 3600;
            }
            later.push(event(
                "order.delivered",
                delivered,
                with(json!({ "delivered_at": time(delivered) })),
            ));
            if rng.chance(0.04) {
                let reason = *rng.pick(&["damaged", "not as described", "changed my mind"]);
                let mut body = with(json!({ "reason": reason }));
                if several && rng.chance(0.5) {
                    body["items"] = json!([{ "sku": first_sku, "quantity": 1 }]);
                }
                later.push(event(
                    "order.returned",
                    delivered + rng.int(48, 14 * 24) * 3600,
                    body,
                ));
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
                later.push(event(
                    "customer.feedback",
                    delivered + rng.int(20, 6 * 24) * 3600,
                    feedback,
                ));
            }
        }
        // A few unsubscribe from our e-mails; some of them come back.
        if !self.customers[c].asked_to_unsubscribe && rng.chance(0.015) {
            self.customers[c].asked_to_unsubscribe = true;
            let at = placed + rng.int(24, 20 * 24) * 3600;
            later.push(event(
                "customer.unsubscribed",
                at,
                json!({ "customer_id": id }),
            ));
            if rng.chance(0.2) {
                let back = at + rng.int(10, 60) * DAY;
                later.push(event(
                    "customer.subscribed",
                    back,
                    json!({ "customer_id": id }),
                ));
            }
        }
        for (at, ev) in later {
            self.push(at, Item::Event(ev));
        }
    }
}

/// Makes the customers, then lets them live through the period into `history`.
pub fn run(o: &super::Options, rules: &RuleSet, history: History) -> Result<History, String> {
    let (start, end) = (history.start, history.end);
    let span_days = (end - start).num_days() as f64;
    // Any key: codes are made but never compared with the service's, which has its own.
    let key = CouponKey::from_bytes(b"generate_history: codes made here are never sent".to_vec());
    let shop = Shop::default();
    let mut world = World {
        rng: Rng(o.seed),
        start: start.timestamp(),
        end: end.timestamp(),
        customers: Vec::new(),
        index: HashMap::new(),
        queue: BTreeMap::new(),
        seq: 0,
        order_no: 100_000,
        state: State::default(),
        env: Env {
            rules,
            key: &key,
            shop: &shop,
        },
        met: HashSet::new(),
        history,
    };
    let first_names: Vec<&str> = FIRST.split_whitespace().collect();
    let last_names: Vec<&str> = LAST.split_whitespace().collect();
    for c in 0..o.customers {
        let rng = &mut world.rng;
        // Who they are.
        let us = rng.chance(0.2);
        let place = *rng.pick(if us { US } else { EU });
        let (first, last) = (*rng.pick(&first_names), *rng.pick(&last_names));
        let id = format!("C-{:06}", c + 1);
        let email = format!("{first}.{last}{}@example.com", c + 1).to_lowercase();
        let mut json = json!({ "id": id, "email": email, "first_name": first, "last_name": last,
                               "locale": place.5, "time_zone": place.3 });
        if rng.chance(0.7) {
            let birthday = format!(
                "{}-{:02}-{:02}",
                rng.int(1950, 2004),
                rng.int(1, 12),
                rng.int(1, 28)
            );
            json["birthday"] = json!(birthday);
        }
        let favourite = rng.int(0, 3) as usize;
        // Half buy once and never again, unless something brings them back. The others have
        // a rhythm: a usual interval between 10 and 60 days (log-uniform); most of them go
        // quiet once, after their third or fourth order, for long enough to come back lapsed.
        let one_time = rng.chance(ONE_TIME);
        let interval = 10.0 * (60.0f64 / 10.0).powf(rng.unit());
        let lapse_after = rng.chance(LAPSING).then(|| rng.int(3, 4) as u32);
        let first_day = if rng.chance(0.5) {
            rng.unit() * interval.min(span_days) // an existing customer
        } else {
            rng.unit() * span_days // a new one, some time in the period
        };
        world.index.insert(id.clone(), c);
        world.customers.push(Customer {
            id,
            json,
            us,
            place,
            favourite,
            interval,
            one_time,
            orders: 0,
            lapse_after,
            silent: false,
            asked_to_unsubscribe: false,
            next: None,
            gone_after: None,
        });
        world.customers[c].next = world.plan_order(c, first_day);
    }
    world.run()?;
    Ok(world.history)
}
