//! From JSON bytes to a validated [`Event`]: every field read by hand, so that a rejection
//! names the exact field and money is read exactly.

use super::fields::Fields;
use super::json::Json;
use super::*;

/// Parses an event no larger than `max_bytes` (`[kafka] max_event_bytes`); a larger one is
/// not parsed at all (`too_large`). The JSON parser's own nesting limit (128) keeps a deep
/// document from exhausting the stack.
pub fn parse_event_within(bytes: &[u8], max_bytes: usize) -> Result<Event, Rejected> {
    if bytes.len() > max_bytes {
        return Err(Rejected {
            reason: RejectReason::TooLarge,
            message: format!(
                "value: {} bytes, over [kafka] max_event_bytes = {max_bytes}",
                bytes.len()
            ),
        });
    }
    parse_event(bytes)
}

/// Parses and validates one event from its JSON bytes.
pub fn parse_event(bytes: &[u8]) -> Result<Event, Rejected> {
    let json = Json::parse(bytes).map_err(|e| Rejected {
        reason: RejectReason::InvalidJson,
        message: format!("not valid JSON: {e}"),
    })?;
    event_from_json(&json)
}

/// Validates an already parsed JSON value as an event.
pub fn event_from_value(value: &Value) -> Result<Event, Rejected> {
    event_from_json(&Json::from_value(value))
}

fn event_from_json(json: &Json) -> Result<Event, Rejected> {
    let root = Fields::root(json, "event")?;
    let event_id = root.plain_string("event_id")?;
    let kind = root.string("type")?;
    let occurred_at = root.timestamp("occurred_at")?;
    let body = match kind.as_str() {
        "order.placed" => EventBody::OrderPlaced(Box::new(parse_order(&root.object("order")?)?)),
        "order.shipped" => EventBody::OrderShipped {
            order_id: root.plain_string("order_id")?,
            customer_id: root.plain_string("customer_id")?,
            carrier: root.opt_string("carrier")?,
            tracking: root.opt_string("tracking")?,
        },
        "order.delivered" => EventBody::OrderDelivered {
            order_id: root.plain_string("order_id")?,
            customer_id: root.plain_string("customer_id")?,
            delivered_at: root.timestamp("delivered_at")?,
        },
        "order.cancelled" => EventBody::OrderCancelled {
            order_id: root.plain_string("order_id")?,
            customer_id: root.plain_string("customer_id")?,
        },
        "order.returned" => {
            let items = match root.opt_array("items")? {
                None => None,
                Some(list) => {
                    let mut out = Vec::with_capacity(list.len());
                    for (i, v) in list.iter().enumerate() {
                        let item = root.child(v, &format!("items[{i}]"))?;
                        out.push(ReturnedItem {
                            sku: item.string("sku")?,
                            quantity: item.quantity("quantity")?,
                        });
                    }
                    Some(out)
                }
            };
            EventBody::OrderReturned {
                order_id: root.plain_string("order_id")?,
                customer_id: root.plain_string("customer_id")?,
                items,
                reason: root.opt_string("reason")?,
            }
        }
        "customer.feedback" => {
            let nps = root.integer("nps")?;
            if !(0..=10).contains(&nps) {
                return Err(Rejected::invalid(
                    "nps",
                    format!("must be between 0 and 10, found {nps}"),
                ));
            }
            EventBody::Feedback {
                customer_id: root.plain_string("customer_id")?,
                nps: nps as u8,
                comment: root.opt_string("comment")?,
            }
        }
        "customer.unsubscribed" => EventBody::Unsubscribed {
            customer_id: root.plain_string("customer_id")?,
        },
        "customer.subscribed" => EventBody::Subscribed {
            customer_id: root.plain_string("customer_id")?,
        },
        other => {
            return Err(Rejected {
                reason: RejectReason::UnknownType,
                message: format!("type: unknown event type {other:?}"),
            });
        }
    };
    let digest = digest::of(&event_id, occurred_at, &body);
    Ok(Event {
        event_id,
        occurred_at,
        body,
        digest,
    })
}

fn parse_order(o: &Fields<'_>) -> Result<Order, Rejected> {
    let c = o.object("customer")?;
    let customer = Customer {
        id: c.plain_string("id")?,
        email: c.email("email")?,
        first_name: c.string("first_name")?,
        last_name: c.opt_string("last_name")?,
        locale: c.opt_string("locale")?,
        time_zone: match c.opt_string("time_zone")? {
            None => None,
            Some(tz) => Some(tz.parse::<Tz>().map_err(|_| {
                Rejected::invalid(
                    &c.path("time_zone"),
                    format!("unknown IANA time zone {tz:?}"),
                )
            })?),
        },
        birthday: c.opt_date("birthday")?,
    };
    let currency_text = o.string("currency")?;
    let currency: Currency = currency_text
        .parse()
        .map_err(|e| Rejected::invalid(&o.path("currency"), e))?;
    let total = o.amount("total")?;
    let list = o.array("items")?;
    if list.is_empty() {
        return Err(Rejected::invalid(
            &o.path("items"),
            "an order needs at least one item",
        ));
    }
    let mut items = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let it = o.child(v, &format!("items[{i}]"))?;
        items.push(Item {
            sku: it.string("sku")?,
            name: it.string("name")?,
            category: it.string("category")?,
            quantity: it.quantity("quantity")?,
            unit_price: it.amount("unit_price")?,
        });
    }
    let s = o.object("shipping")?;
    let shipping = Shipping {
        country: s.string("country")?,
        city: s.opt_string("city")?,
        postcode: s.opt_string("postcode")?,
    };
    let coupon_codes = match o.opt_array("coupon_codes")? {
        None => Vec::new(),
        Some(list) if list.len() > bounds::MAX_COUPON_CODES => {
            return Err(Rejected::out_of_range(
                &o.path("coupon_codes"),
                format!(
                    "{} codes; at most {} are accepted",
                    list.len(),
                    bounds::MAX_COUPON_CODES
                ),
            ));
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Json::String(s) if !s.is_empty() => o.text(&format!("coupon_codes[{i}]"), s),
                other => Err(Rejected::invalid(
                    &o.path(&format!("coupon_codes[{i}]")),
                    format!("expected a coupon code string, found {}", other.kind()),
                )),
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Order {
        id: o.plain_string("id")?,
        customer,
        currency,
        total,
        items,
        shipping,
        warehouse: o.string("warehouse")?,
        channel: o.opt_string("channel")?,
        coupon_codes,
        promised_delivery: o.opt_date("promised_delivery")?,
    })
}
