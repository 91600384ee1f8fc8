//! WooCommerce's order webhooks (`X-WC-Webhook-Topic` `order.created` / `order.updated`, the
//! order as the REST API v3 returns it) as Packwell's events (docs/REFERENCE.md §8). The
//! order's status says what happened:
//!
//! | status | events | event_id |
//! |---|---|---|
//! | `processing` | `order.placed` | `woocommerce:order:{id}:placed` |
//! | `completed` | `order.placed`, `order.shipped` | `…:placed`, `…:shipped` |
//! | `cancelled` | `order.cancelled` | `woocommerce:order:{id}:cancelled` |
//! | `refunded` | `order.returned` (the whole order) | `woocommerce:order:{id}:returned` |
//!
//! Any other status maps to nothing. WooCommerce sends `order.updated` for every edit; the
//! same status gives the same event id, de-duplicated downstream. A completed order also
//! yields its `order.placed` (the same event as at `processing`), so a shop that goes straight
//! to `completed` (virtual goods, a status set by hand) still has the order in its history.
//!
//! A guest (`customer_id` 0) is known by a hash of the billing e-mail ([`guest_id`]).

use super::category::ItemKeys;
use super::mapper::{Mapper, Outcome, Step, finish};
use super::mapping::{LookupError, Mapped, MappedEvent};
use super::payload::{Node, Why, amount_text, parse_body};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

pub(super) async fn map(m: &Mapper, topic: &str, body: &[u8]) -> Result<Mapped, LookupError> {
    if topic != "order.created" && topic != "order.updated" {
        return Ok(Mapped::Nothing("topic_unmapped"));
    }
    let value = match parse_body(body) {
        Ok(v) => v,
        Err(why) => return Ok(Mapped::Unmappable(why)),
    };
    Ok(finish(by_status(m, Node::root(&value)).await?))
}

/// What every event of an order needs.
struct Head {
    order_id: String,
    customer_id: String,
    /// When the status last changed (`date_modified_gmt`).
    modified_at: String,
}

/// A guest's customer id: `guest:` and the first 32 hex digits of the SHA-256 of the trimmed,
/// lower-cased address (as suppressions name addresses), so that the address itself is not a
/// key on Kafka, in logs and in the store's anonymous counts, which `forget` keeps.
pub fn guest_id(email: &str) -> String {
    let hash = crate::store::emails::address_hash(email);
    format!("guest:{}", &hash[..32])
}

fn read_head(o: Node<'_>) -> Result<Head, Why> {
    let order_id = o.required_id("id")?;
    let billing = o.object("billing")?;
    let email = billing
        .as_ref()
        .map(|b| b.node().text("email"))
        .transpose()?
        .flatten();
    let customer_id = match o.id("customer_id")? {
        Some(id) => id,
        None => match email {
            Some(e) => guest_id(e),
            None => {
                return Err(
                    "billing.email: a guest order (customer_id 0) is known by its billing e-mail, and it has none"
                        .into(),
                );
            }
        },
    };
    Ok(Head {
        order_id,
        customer_id,
        modified_at: o.required_timestamp("date_modified_gmt", true)?,
    })
}

async fn by_status(m: &Mapper, o: Node<'_>) -> Step<Outcome> {
    let status = match o.required_text("status") {
        Ok(s) => s.to_ascii_lowercase(),
        Err(why) => return Ok(Err(why)),
    };
    if !matches!(
        status.as_str(),
        "processing" | "completed" | "cancelled" | "refunded"
    ) {
        return Ok(Ok(Outcome::Nothing("status_unmapped")));
    }
    let head = match read_head(o) {
        Ok(h) => h,
        Err(why) => return Ok(Err(why)),
    };
    let short = |kind: &str, suffix: &str, at: &str| {
        let value = json!({
            "event_id": format!("woocommerce:order:{}:{suffix}", head.order_id),
            "type": kind,
            "occurred_at": at,
            "order_id": head.order_id,
            "customer_id": head.customer_id,
        });
        event(value, &head.customer_id)
    };
    let events = match status.as_str() {
        "processing" => match placed(m, o, &head).await? {
            Ok(e) => vec![e],
            Err(why) => return Ok(Err(why)),
        },
        "completed" => {
            let placed = match placed(m, o, &head).await? {
                Ok(e) => e,
                Err(why) => return Ok(Err(why)),
            };
            let at = match o.timestamp("date_completed_gmt", true) {
                Ok(at) => at.unwrap_or_else(|| head.modified_at.clone()),
                Err(why) => return Ok(Err(why)),
            };
            vec![placed, short("order.shipped", "shipped", &at)]
        }
        "cancelled" => vec![short("order.cancelled", "cancelled", &head.modified_at)],
        _ => vec![short("order.returned", "returned", &head.modified_at)],
    };
    Ok(Ok(Outcome::Events(events)))
}

fn event(value: Value, customer_id: &str) -> MappedEvent {
    MappedEvent {
        event_id: value["event_id"].as_str().unwrap_or_default().to_string(),
        customer_id: customer_id.to_string(),
        value,
    }
}

/// A line item as read, before its category is looked up.
struct Line {
    sku: String,
    name: String,
    quantity: u64,
    unit_price: Decimal,
    product_id: Option<String>,
}

/// The order's part of `order.placed`, everything but the categories.
struct Draft {
    occurred_at: String,
    customer: Map<String, Value>,
    currency: String,
    total: Decimal,
    lines: Vec<Line>,
    shipping: Map<String, Value>,
    country: String,
    coupon_codes: Vec<String>,
}

fn read_order(o: Node<'_>) -> Result<Draft, Why> {
    let billing = o.object("billing")?;
    let shipping = o.object("shipping")?;
    let b = billing.as_ref().map(|b| b.node());
    let s = shipping.as_ref().map(|s| s.node());
    let from_billing = |key: &str| -> Result<Option<&str>, Why> {
        Ok(match b {
            Some(b) => b.text(key)?,
            None => None,
        })
    };
    let from_shipping = |key: &str| -> Result<Option<&str>, Why> {
        Ok(match s {
            Some(s) => s.text(key)?,
            None => None,
        })
    };
    let email = from_billing("email")?
        .ok_or_else(|| "billing.email: required field is missing".to_string())?;
    let first_name = from_billing("first_name")?
        .or(from_shipping("first_name")?)
        .ok_or_else(|| {
            "billing.first_name: neither billing nor shipping names a first name".to_string()
        })?;
    let mut customer = Map::new();
    customer.insert("email".into(), json!(email));
    customer.insert("first_name".into(), json!(first_name));
    if let Some(last) = from_billing("last_name")?.or(from_shipping("last_name")?) {
        customer.insert("last_name".into(), json!(last));
    }

    let mut lines = Vec::new();
    for item in o.array("line_items")? {
        let item = item.node();
        item.expect_object()?;
        let quantity = item.quantity("quantity")?;
        if quantity == 0 {
            continue;
        }
        // Without a SKU the item goes by its variation id, else its product id.
        let sku = match item.text("sku")? {
            Some(s) => s.to_string(),
            None => item
                .id("variation_id")?
                .or(item.id("product_id")?)
                .ok_or_else(|| {
                    format!("{}: no sku, variation_id or product_id", item.path("sku"))
                })?,
        };
        let unit_price = match item.money("price")? {
            Some(p) => p,
            // No price: the line's total over its quantity.
            None => item
                .required_money("total")?
                .checked_div(Decimal::from(quantity))
                .ok_or_else(|| format!("{}: cannot be divided", item.path("total")))?,
        };
        lines.push(Line {
            sku,
            name: item.required_text("name")?.to_string(),
            quantity,
            unit_price,
            product_id: item.id("product_id")?,
        });
    }
    if lines.is_empty() {
        return Err("line_items: the order has no item with a quantity".into());
    }

    // Virtual goods have an empty shipping address: the billing one says where the customer is.
    let (country, address) = match from_shipping("country")? {
        Some(c) => (c, s),
        None => match from_billing("country")? {
            Some(c) => (c, b),
            None => {
                return Err(
                    "shipping.country: neither the shipping nor the billing address names a country"
                        .into(),
                );
            }
        },
    };
    let country = country.to_ascii_uppercase();
    let mut ship = Map::new();
    ship.insert("country".into(), json!(country));
    if let Some(a) = address {
        if let Some(city) = a.text("city")? {
            ship.insert("city".into(), json!(city));
        }
        if let Some(postcode) = a.text("postcode")? {
            ship.insert("postcode".into(), json!(postcode));
        }
    }
    let coupon_codes = o.texts_of("coupon_lines", "code")?;
    Ok(Draft {
        occurred_at: o.required_timestamp("date_created_gmt", true)?,
        customer,
        currency: o.required_text("currency")?.to_string(),
        total: o.required_money("total")?,
        lines,
        shipping: ship,
        country,
        coupon_codes,
    })
}

async fn placed(m: &Mapper, o: Node<'_>, head: &Head) -> Step<MappedEvent> {
    let mut d = match read_order(o) {
        Ok(d) => d,
        Err(why) => return Ok(Err(why)),
    };
    let mut items = Vec::with_capacity(d.lines.len());
    for l in &d.lines {
        let keys = ItemKeys {
            sku: &l.sku,
            vendor: None,
            product_id: l.product_id.as_deref(),
        };
        let category = m.categories.of(keys).await?;
        items.push(json!({
            "sku": l.sku,
            "name": l.name,
            "category": category,
            "quantity": l.quantity,
            "unit_price": amount_text(l.unit_price),
        }));
    }
    let mut customer = Map::new();
    customer.insert("id".into(), json!(head.customer_id));
    customer.append(&mut d.customer);
    let value = json!({
        "event_id": format!("woocommerce:order:{}:placed", head.order_id),
        "type": "order.placed",
        "occurred_at": d.occurred_at,
        "order": {
            "id": head.order_id,
            "customer": customer,
            "currency": d.currency,
            "total": amount_text(d.total),
            "items": items,
            "shipping": d.shipping,
            "warehouse": m.connector.warehouse_for(Some(&d.country)),
            "channel": "woocommerce",
            "coupon_codes": d.coupon_codes,
        },
    });
    Ok(Ok(event(value, &head.customer_id)))
}

#[cfg(test)]
#[path = "woocommerce_tests.rs"]
mod tests;
