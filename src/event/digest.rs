//! The digest of an event as parsed: the same `event_id` arriving with another digest is
//! another event under a reused id (a conflict), not a redelivery. It is taken over the
//! validated event, not its bytes, so key order, spacing, fields Packwell does not read, an
//! absent optional field written as `null`, and amounts written another way (`27.45`,
//! `"27.450"`) do not change it; any value Packwell reads does.

use super::{Customer, EventBody, Order};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

/// SHA-256 of the event's fields in a fixed order, each tagged and length-prefixed.
pub(super) fn of(event_id: &str, occurred_at: DateTime<Utc>, body: &EventBody) -> [u8; 32] {
    let mut c = Canon(Sha256::new());
    c.text(event_id);
    c.time(occurred_at);
    match body {
        EventBody::OrderPlaced(order) => {
            c.tag(b'P');
            c.order(order);
        }
        EventBody::OrderShipped {
            order_id,
            customer_id,
            carrier,
            tracking,
        } => {
            c.tag(b'S');
            c.text(order_id);
            c.text(customer_id);
            c.opt_text(carrier.as_deref());
            c.opt_text(tracking.as_deref());
        }
        EventBody::OrderDelivered {
            order_id,
            customer_id,
            delivered_at,
        } => {
            c.tag(b'D');
            c.text(order_id);
            c.text(customer_id);
            c.time(*delivered_at);
        }
        EventBody::OrderCancelled {
            order_id,
            customer_id,
        } => {
            c.tag(b'C');
            c.text(order_id);
            c.text(customer_id);
        }
        EventBody::OrderReturned {
            order_id,
            customer_id,
            items,
            reason,
        } => {
            c.tag(b'R');
            c.text(order_id);
            c.text(customer_id);
            match items {
                None => c.tag(b'-'),
                Some(list) => {
                    c.len(list.len());
                    for i in list {
                        c.text(&i.sku);
                        c.len(i.quantity as usize);
                    }
                }
            }
            c.opt_text(reason.as_deref());
        }
        EventBody::Feedback {
            customer_id,
            nps,
            comment,
        } => {
            c.tag(b'F');
            c.text(customer_id);
            c.len(usize::from(*nps));
            c.opt_text(comment.as_deref());
        }
        EventBody::Unsubscribed { customer_id } => {
            c.tag(b'U');
            c.text(customer_id);
        }
        EventBody::Subscribed { customer_id } => {
            c.tag(b'B');
            c.text(customer_id);
        }
    }
    c.0.finalize().into()
}

struct Canon(Sha256);

impl Canon {
    fn tag(&mut self, t: u8) {
        self.0.update([t]);
    }

    fn len(&mut self, n: usize) {
        self.0.update((n as u64).to_le_bytes());
    }

    fn text(&mut self, s: &str) {
        self.tag(b's');
        self.len(s.len());
        self.0.update(s.as_bytes());
    }

    fn opt_text(&mut self, s: Option<&str>) {
        match s {
            None => self.tag(b'-'),
            Some(s) => self.text(s),
        }
    }

    /// An amount by its value: `27.45` and `27.450` are the same.
    fn amount(&mut self, d: Decimal) {
        self.text(&d.normalize().to_string());
    }

    fn time(&mut self, t: DateTime<Utc>) {
        self.tag(b't');
        self.0.update(t.timestamp().to_le_bytes());
        self.0.update(t.timestamp_subsec_nanos().to_le_bytes());
    }

    fn date(&mut self, d: Option<NaiveDate>) {
        self.opt_text(d.map(|d| d.format("%Y-%m-%d").to_string()).as_deref());
    }

    fn customer(&mut self, c: &Customer) {
        self.text(&c.id);
        self.text(&c.email);
        self.text(&c.first_name);
        self.opt_text(c.last_name.as_deref());
        self.opt_text(c.locale.as_deref());
        self.opt_text(c.time_zone.map(|tz| tz.name()));
        self.date(c.birthday);
    }

    fn order(&mut self, o: &Order) {
        self.text(&o.id);
        self.customer(&o.customer);
        self.text(&o.currency.to_string());
        self.amount(o.total);
        self.len(o.items.len());
        for i in &o.items {
            self.text(&i.sku);
            self.text(&i.name);
            self.text(&i.category);
            self.len(i.quantity as usize);
            self.amount(i.unit_price);
        }
        self.text(&o.shipping.country);
        self.opt_text(o.shipping.city.as_deref());
        self.opt_text(o.shipping.postcode.as_deref());
        self.text(&o.warehouse);
        self.opt_text(o.channel.as_deref());
        self.len(o.coupon_codes.len());
        for code in &o.coupon_codes {
            self.text(code);
        }
        self.date(o.promised_delivery);
    }
}
