//! Shopify's webhooks (`X-Shopify-Topic`, REST-shaped JSON bodies) as Packwell's events
//! (docs/REFERENCE.md §8). Event ids come from Shopify's ids, so a re-delivery, or a second
//! fulfillment of the same order, is the same event and is de-duplicated downstream:
//!
//! | topic | event | event_id |
//! |---|---|---|
//! | `orders/create` | `order.placed` | `shopify:order:{id}:placed` |
//! | `orders/cancelled` | `order.cancelled` | `shopify:order:{id}:cancelled` |
//! | `fulfillments/create` | `order.shipped` | `shopify:order:{order_id}:shipped` |
//! | `fulfillments/update`, delivered | `order.delivered` | `shopify:order:{order_id}:delivered` |
//! | `refunds/create` with line items | `order.returned` | `shopify:refund:{id}:returned` |
//! | `customers/update`, consent changed | `customer.subscribed` / `.unsubscribed` | `shopify:consent:{id}:{state}:{consent_updated_at}` |

use super::category::ItemKeys;
use super::mapper::{Mapper, Outcome, Step, finish, locale};
use super::mapping::{LookupError, Mapped, MappedEvent, OrderLookup};
use super::payload::{Node, Why, amount_text, parse_body};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

/// The topics that map to something; any other answers `Nothing("topic_unmapped")`.
const TOPICS: [&str; 6] = [
    "orders/create",
    "orders/cancelled",
    "fulfillments/create",
    "fulfillments/update",
    "refunds/create",
    "customers/update",
];

pub(super) async fn map(
    m: &Mapper,
    topic: &str,
    body: &[u8],
    orders: &dyn OrderLookup,
) -> Result<Mapped, LookupError> {
    if !TOPICS.contains(&topic) {
        return Ok(Mapped::Nothing("topic_unmapped"));
    }
    let value = match parse_body(body) {
        Ok(v) => v,
        Err(why) => return Ok(Mapped::Unmappable(why)),
    };
    let root = Node::root(&value);
    let result = match topic {
        "orders/create" => placed(m, root).await?,
        "orders/cancelled" => cancelled(root),
        "fulfillments/create" => {
            for_stored_order(shipped(root), "fulfillment_failed", orders).await?
        }
        "fulfillments/update" => for_stored_order(delivered(root), "not_delivered", orders).await?,
        "refunds/create" => for_stored_order(returned(root), "money_only_refund", orders).await?,
        _ => consent(root),
    };
    Ok(finish(result))
}

/// A line item as read, before its category is looked up.
struct Line {
    sku: String,
    name: String,
    quantity: u64,
    unit_price: Decimal,
    vendor: Option<String>,
    product_id: Option<String>,
}

/// The SKU of a line item; an item without one (a custom item, a product with no SKU) goes by
/// its variant id, else its product id, so that returns and rules can still name it.
fn sku_of(item: Node<'_>) -> Result<String, Why> {
    if let Some(sku) = item.text("sku")? {
        return Ok(sku.to_string());
    }
    if let Some(id) = item.id("variant_id")? {
        return Ok(id);
    }
    item.id("product_id")?
        .ok_or_else(|| format!("{}: no sku, variant_id or product_id", item.path("sku")))
}

/// The order's part of `order.placed`, everything but the categories.
struct Draft {
    order_id: String,
    occurred_at: String,
    customer: Map<String, Value>,
    customer_id: String,
    currency: String,
    total: Decimal,
    lines: Vec<Line>,
    shipping: Map<String, Value>,
    country: String,
    coupon_codes: Vec<String>,
}

/// The order's customer id and e-mail address: Shopify's customer, or for a guest checkout
/// (no customer) a hash of the order's address, as WooCommerce guests are known
/// ([`super::woocommerce::guest_id`]), so that the guest's fulfillments and refunds find the
/// order.
fn customer_of(o: Node<'_>) -> Result<(String, String), Why> {
    let c = o.object("customer")?;
    let c = c.as_ref().map(|c| c.node());
    let email = match c.map(|c| c.text("email")).transpose()?.flatten() {
        Some(e) => e.to_string(),
        None => o
            .text("email")?
            .or(o.text("contact_email")?)
            .ok_or_else(|| {
                "customer.email: neither the customer nor the order names an e-mail address"
                    .to_string()
            })?
            .to_string(),
    };
    let id = match c.map(|c| c.id("id")).transpose()?.flatten() {
        Some(id) => id,
        None => super::woocommerce::guest_id(&email),
    };
    Ok((id, email))
}

fn read_order(o: Node<'_>) -> Result<Draft, Why> {
    let order_id = o.required_id("id")?;
    let occurred_at = o.required_timestamp("created_at", false)?;
    let customer_object = o.object("customer")?;
    let c = customer_object.as_ref().map(|c| c.node());
    let (customer_id, email) = customer_of(o)?;
    let billing = o.object("billing_address")?;
    let shipping_address = o.object("shipping_address")?;
    // The customer's name, else the name on the addresses (a customer created at checkout
    // may carry none of its own; a guest has no customer at all).
    let mut first_name = c.map(|c| c.text("first_name")).transpose()?.flatten();
    let mut last_name = c.map(|c| c.text("last_name")).transpose()?.flatten();
    for address in [&billing, &shipping_address].into_iter().flatten() {
        if first_name.is_none() {
            first_name = address.node().text("first_name")?;
            last_name = last_name.or(address.node().text("last_name")?);
        }
    }
    let first_name = first_name.ok_or_else(|| {
        "customer.first_name: neither the customer nor an address names a first name".to_string()
    })?;
    let mut customer = Map::new();
    customer.insert("id".into(), json!(customer_id));
    customer.insert("email".into(), json!(email));
    customer.insert("first_name".into(), json!(first_name));
    if let Some(last) = last_name {
        customer.insert("last_name".into(), json!(last));
    }
    let customer_locale = c.map(|c| c.text("locale")).transpose()?.flatten();
    let locale = locale(customer_locale.or(o.text("customer_locale")?));
    if let Some(l) = locale {
        customer.insert("locale".into(), json!(l));
    }

    let mut lines = Vec::new();
    for item in o.array("line_items")? {
        let item = item.node();
        item.expect_object()?;
        let quantity = item.quantity("quantity")?;
        if quantity == 0 {
            continue; // removed by an order edit
        }
        lines.push(Line {
            sku: sku_of(item)?,
            name: item
                .text("title")?
                .or(item.text("name")?)
                .ok_or_else(|| format!("{}: required field is missing", item.path("title")))?
                .to_string(),
            quantity,
            unit_price: item.required_money("price")?,
            vendor: item.text("vendor")?.map(str::to_string),
            product_id: item.id("product_id")?,
        });
    }
    if lines.is_empty() {
        return Err("line_items: the order has no item with a quantity".into());
    }

    // Digital goods have no shipping address: the billing address says where the customer is.
    let address = shipping_address.or(billing).ok_or_else(|| {
        "shipping_address: the order has neither a shipping nor a billing address".to_string()
    })?;
    let a = address.node();
    let country = a.required_text("country_code")?.to_ascii_uppercase();
    let mut shipping = Map::new();
    shipping.insert("country".into(), json!(country));
    if let Some(city) = a.text("city")? {
        shipping.insert("city".into(), json!(city));
    }
    if let Some(zip) = a.text("zip")? {
        shipping.insert("postcode".into(), json!(zip));
    }
    let coupon_codes = o.texts_of("discount_codes", "code")?;
    Ok(Draft {
        order_id,
        occurred_at,
        customer,
        customer_id,
        currency: o.required_text("currency")?.to_string(),
        total: o.required_money("total_price")?,
        lines,
        shipping,
        country,
        coupon_codes,
    })
}

async fn placed(m: &Mapper, o: Node<'_>) -> Step<Outcome> {
    let d = match read_order(o) {
        Ok(d) => d,
        Err(why) => return Ok(Err(why)),
    };
    let mut items = Vec::with_capacity(d.lines.len());
    for l in &d.lines {
        let keys = ItemKeys {
            sku: &l.sku,
            vendor: l.vendor.as_deref(),
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
    let value = json!({
        "event_id": format!("shopify:order:{}:placed", d.order_id),
        "type": "order.placed",
        "occurred_at": d.occurred_at,
        "order": {
            "id": d.order_id,
            "customer": d.customer,
            "currency": d.currency,
            "total": amount_text(d.total),
            "items": items,
            "shipping": d.shipping,
            "warehouse": m.connector.warehouse_for(Some(&d.country)),
            "channel": "shopify",
            "coupon_codes": d.coupon_codes,
        },
    });
    Ok(Ok(Outcome::Events(vec![event(value, d.customer_id)])))
}

fn event(value: Value, customer_id: String) -> MappedEvent {
    MappedEvent {
        event_id: value["event_id"].as_str().unwrap_or_default().to_string(),
        customer_id,
        value,
    }
}

fn cancelled(o: Node<'_>) -> Result<Outcome, Why> {
    let order_id = o.required_id("id")?;
    let (customer_id, _) = customer_of(o)?;
    let occurred_at = o.required_timestamp("cancelled_at", false)?;
    let value = json!({
        "event_id": format!("shopify:order:{order_id}:cancelled"),
        "type": "order.cancelled",
        "occurred_at": occurred_at,
        "order_id": order_id,
        "customer_id": customer_id,
    });
    Ok(Outcome::Events(vec![event(value, customer_id)]))
}

/// What a fulfillment or refund says of its order, before the order's customer is known.
struct OrderNews {
    event_id: String,
    kind: &'static str,
    order_id: String,
    occurred_at: String,
    /// The event's own fields beyond the ids.
    fields: Map<String, Value>,
}

/// The event of a webhook that names an order but not its customer (fulfillments, refunds):
/// the customer is the stored order's; while the order is not stored (webhooks arrive out of
/// order) the platform is asked to retry. `Ok(None)` from `read` maps to nothing, for `why`.
async fn for_stored_order(
    read: Result<Option<OrderNews>, Why>,
    why: &'static str,
    orders: &dyn OrderLookup,
) -> Step<Outcome> {
    let news = match read {
        Ok(Some(n)) => n,
        Ok(None) => return Ok(Ok(Outcome::Nothing(why))),
        Err(why) => return Ok(Err(why)),
    };
    let Some(customer_id) = orders.customer_of_order(&news.order_id).await? else {
        return Ok(Ok(Outcome::OrderNotStored(news.order_id)));
    };
    let mut value = Map::new();
    value.insert("event_id".into(), json!(news.event_id));
    value.insert("type".into(), json!(news.kind));
    value.insert("occurred_at".into(), json!(news.occurred_at));
    value.insert("order_id".into(), json!(news.order_id));
    value.insert("customer_id".into(), json!(customer_id));
    value.extend(news.fields);
    Ok(Ok(Outcome::Events(vec![event(
        Value::Object(value),
        customer_id,
    )])))
}

/// `fulfillments/create`: the first fulfillment ships the order; later ones map to the same
/// event. A fulfillment that failed or was cancelled ships nothing.
fn shipped(f: Node<'_>) -> Result<Option<OrderNews>, Why> {
    if matches!(f.text("status")?, Some("cancelled" | "error" | "failure")) {
        return Ok(None);
    }
    let order_id = f.required_id("order_id")?;
    let mut fields = Map::new();
    if let Some(carrier) = f.text("tracking_company")? {
        fields.insert("carrier".into(), json!(carrier));
    }
    if let Some(tracking) = f.text("tracking_number")? {
        fields.insert("tracking".into(), json!(tracking));
    }
    Ok(Some(OrderNews {
        event_id: format!("shopify:order:{order_id}:shipped"),
        kind: "order.shipped",
        occurred_at: f.required_timestamp("created_at", false)?,
        order_id,
        fields,
    }))
}

/// `fulfillments/update`: only a fulfillment reported delivered (by a carrier that sends
/// tracking events) maps; every delivered fulfillment of the order is the same event.
fn delivered(f: Node<'_>) -> Result<Option<OrderNews>, Why> {
    if f.text("shipment_status")? != Some("delivered") {
        return Ok(None);
    }
    let order_id = f.required_id("order_id")?;
    let at = f.required_timestamp("updated_at", false)?;
    let mut fields = Map::new();
    fields.insert("delivered_at".into(), json!(at));
    Ok(Some(OrderNews {
        event_id: format!("shopify:order:{order_id}:delivered"),
        kind: "order.delivered",
        occurred_at: at,
        order_id,
        fields,
    }))
}

/// `refunds/create`: the refunded line items come back; a refund of money only is no return.
fn returned(r: Node<'_>) -> Result<Option<OrderNews>, Why> {
    let mut items = Vec::new();
    for rl in r.array("refund_line_items")? {
        let rl = rl.node();
        rl.expect_object()?;
        let quantity = rl.quantity("quantity")?;
        if quantity == 0 {
            continue;
        }
        let line = rl
            .object("line_item")?
            .ok_or_else(|| format!("{}: required field is missing", rl.path("line_item")))?;
        items.push(json!({ "sku": sku_of(line.node())?, "quantity": quantity }));
    }
    if items.is_empty() {
        return Ok(None);
    }
    let refund_id = r.required_id("id")?;
    let mut fields = Map::new();
    fields.insert("items".into(), Value::Array(items));
    Ok(Some(OrderNews {
        event_id: format!("shopify:refund:{refund_id}:returned"),
        kind: "order.returned",
        order_id: r.required_id("order_id")?,
        occurred_at: r.required_timestamp("created_at", false)?,
        fields,
    }))
}

/// `customers/update`: fires for any edit of the customer. Only the e-mail marketing consent
/// is read, and it maps only with its `consent_updated_at` (which Shopify moves only when the
/// state changes): the event id carries it, so an address edit re-sends the same event.
/// `subscribed` subscribes; `unsubscribed` and `not_subscribed` (consent withdrawn by the
/// shop) unsubscribe; `pending`, `invalid` and `redacted` map to nothing.
fn consent(c: Node<'_>) -> Result<Outcome, Why> {
    let customer_id = c.required_id("id")?;
    let Some(consent) = c.object("email_marketing_consent")? else {
        return Ok(Outcome::Nothing("consent_unchanged"));
    };
    let consent = consent.node();
    let state = consent
        .text("state")?
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let kind = match state.as_str() {
        "subscribed" => "customer.subscribed",
        "unsubscribed" | "not_subscribed" => "customer.unsubscribed",
        _ => return Ok(Outcome::Nothing("consent_unmapped")),
    };
    let Some(at) = consent.timestamp("consent_updated_at", false)? else {
        return Ok(Outcome::Nothing("consent_unchanged"));
    };
    let value = json!({
        "event_id": format!("shopify:consent:{customer_id}:{state}:{at}"),
        "type": kind,
        "occurred_at": at,
        "customer_id": customer_id,
    });
    Ok(Outcome::Events(vec![event(value, customer_id)]))
}

#[cfg(test)]
#[path = "shopify_tests.rs"]
mod tests;
