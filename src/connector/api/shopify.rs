//! Shopify's Admin GraphQL API: `POST` to `admin_url` with `X-Shopify-Access-Token`. The
//! coupon calls are `codeDiscountNodeByCode`, `discountCodeBasicCreate` and
//! `discountCodeDeactivate`; a product's type and tags come from `product(id:)`.
//!
//! Shopify limits GraphQL by query cost, not by calls: every answer tells the budget left
//! (`extensions.cost.throttleStatus`), and a query that costs more than is left is answered
//! `THROTTLED`. Both push the pacer back until enough budget is restored.

use super::{ApiError, CouponApi, NewCoupon, Pacer, RetryPolicy, ShopCode, excerpt};
use crate::config::{Platform, ShopApi};
use crate::connector::{LookupError, ProductDirectory, ProductInfo};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::time::Duration;

const FIND_CODE: &str = "query codeDiscountNodeByCode($code: String!) { codeDiscountNodeByCode(code: $code) { id codeDiscount { ... on DiscountCodeBasic { status } } } }";

const CREATE_CODE: &str = "mutation discountCodeBasicCreate($basicCodeDiscount: DiscountCodeBasicInput!) { discountCodeBasicCreate(basicCodeDiscount: $basicCodeDiscount) { codeDiscountNode { id } userErrors { field code message } } }";

const DEACTIVATE: &str = "mutation discountCodeDeactivate($id: ID!) { discountCodeDeactivate(id: $id) { codeDiscountNode { id } userErrors { field code message } } }";

const PRODUCT: &str = "query product($id: ID!) { product(id: $id) { productType tags } }";

/// The client of one shop's Admin API.
pub struct Shopify {
    client: reqwest::Client,
    url: String,
    token: String,
    pacer: Pacer,
}

impl Shopify {
    pub fn new(api: &ShopApi, pacer: Pacer) -> Result<Shopify, String> {
        let ShopApi::Shopify {
            admin_url,
            access_token,
        } = api
        else {
            return Err("a Shopify client needs [connectors.shopify] admin_url".into());
        };
        Ok(Shopify {
            client: super::http_client()?,
            url: admin_url.clone(),
            token: access_token.0.clone(),
            pacer,
        })
    }

    /// One GraphQL call; its `data`, or why not.
    async fn graphql(&self, query: &str, variables: Value) -> Result<Value, ApiError> {
        self.pacer.slot().await;
        let response = self
            .client
            .post(&self.url)
            .header("X-Shopify-Access-Token", &self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .map_err(|e| super::transport_error("Shopify", e))?;
        let status = response.status().as_u16();
        let asked = super::retry_after(response.headers());
        let body = response
            .text()
            .await
            .map_err(|e| super::transport_error("Shopify", e))?;
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        // A 429 may carry the throttle's body too; its wait is the longer of the two.
        let throttled = parsed.as_ref().and_then(throttled_wait);
        if let Some(e) = super::classify_status(status, &body, asked.max(throttled)) {
            if let ApiError::Transient { wait: Some(w), .. } = &e {
                self.pacer.hold_off(*w).await;
            }
            return Err(e);
        }
        let Some(reply) = parsed else {
            return Err(ApiError::transient(format!(
                "Shopify answered HTTP {status} with no JSON: {}",
                excerpt(&body)
            )));
        };
        if let Some(wait) = throttled {
            self.pacer.hold_off(wait).await;
            return Err(ApiError::Transient {
                detail: "Shopify: THROTTLED".into(),
                wait: Some(wait),
            });
        }
        if let Some(errors) = reply["errors"].as_array().filter(|e| !e.is_empty()) {
            let internal = errors
                .iter()
                .any(|e| e["extensions"]["code"] == "INTERNAL_SERVER_ERROR");
            let detail = format!("Shopify: {}", messages(errors));
            return Err(if internal {
                ApiError::transient(detail)
            } else {
                ApiError::refused(detail)
            });
        }
        // Spend the budget evenly: when the next call of this cost would be throttled, wait
        // for it before making it.
        if let Some(wait) = budget_wait(&reply["extensions"]["cost"]) {
            self.pacer.hold_off(wait).await;
        }
        Ok(reply["data"].clone())
    }

    /// `userErrors` of a mutation's payload, as a refusal.
    fn user_errors(payload: &Value) -> Result<(), ApiError> {
        match payload["userErrors"].as_array().filter(|e| !e.is_empty()) {
            Some(errors) => Err(ApiError::refused(format!(
                "Shopify refused it: {}",
                messages(errors)
            ))),
            None => Ok(()),
        }
    }
}

/// The `message`s of GraphQL errors or `userErrors`, with their field when named.
fn messages(errors: &[Value]) -> String {
    errors
        .iter()
        .map(|e| {
            let message = e["message"].as_str().unwrap_or("(no message)");
            match e["field"].as_array() {
                Some(f) if !f.is_empty() => {
                    let path: Vec<&str> = f.iter().filter_map(Value::as_str).collect();
                    format!("{}: {message}", path.join("."))
                }
                _ => message.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// When the answer is Shopify's `THROTTLED`: how long until the query's cost is restored.
pub fn throttled_wait(reply: &Value) -> Option<Duration> {
    let throttled = reply["errors"]
        .as_array()?
        .iter()
        .any(|e| e["extensions"]["code"] == "THROTTLED");
    if !throttled {
        return None;
    }
    let cost = &reply["extensions"]["cost"];
    Some(restore_wait(cost).unwrap_or(Duration::from_secs(1)))
}

/// How long until `requestedQueryCost` is available again, from `throttleStatus`
/// (`currentlyAvailable` points, restored at `restoreRate` a second); None when the answer
/// does not say.
pub fn restore_wait(cost: &Value) -> Option<Duration> {
    let requested = cost["requestedQueryCost"].as_f64()?;
    let status = &cost["throttleStatus"];
    let available = status["currentlyAvailable"].as_f64()?;
    let rate = status["restoreRate"].as_f64().filter(|r| *r > 0.0)?;
    let missing = (requested - available).max(0.0);
    // A tenth of a second more than the arithmetic says: the budget is counted in whole
    // points on Shopify's side.
    Some(Duration::from_secs_f64((missing / rate).min(60.0) + 0.1))
}

/// After a successful call: a wait when the next call of the same cost would be throttled.
fn budget_wait(cost: &Value) -> Option<Duration> {
    let requested = cost["requestedQueryCost"].as_f64()?;
    let actual = cost["actualQueryCost"].as_f64().unwrap_or(requested);
    let available = cost["throttleStatus"]["currentlyAvailable"].as_f64()?;
    (available < requested.max(actual)).then(|| restore_wait(cost))?
}

/// The variables of `discountCodeBasicCreate` for a coupon: a fixed amount off the whole
/// order, once, for its customer when Shopify knows them (an all-digit id is Shopify's own
/// customer id), from the time it was issued to the end of its last day (UTC).
pub fn create_variables(coupon: &NewCoupon) -> Value {
    let customer_selection = if !coupon.customer_id.is_empty()
        && coupon.customer_id.bytes().all(|b| b.is_ascii_digit())
    {
        json!({ "customers": { "add": [format!("gid://shopify/Customer/{}", coupon.customer_id)] } })
    } else {
        json!({ "all": true })
    };
    let mut input = json!({
        "title": format!("Packwell {} {}", coupon.rule_id, coupon.code),
        "code": coupon.code,
        "startsAt": coupon.starts_at,
        "endsAt": format!("{}T23:59:59Z", coupon.expires_on.format("%Y-%m-%d")),
        "customerSelection": customer_selection,
        "customerGets": {
            "value": { "discountAmount": { "amount": coupon.amount.to_string(), "appliesOnEachItem": false } },
            "items": { "all": true }
        },
        "usageLimit": 1,
        "appliesOncePerCustomer": true
    });
    if let Some(min) = coupon.min_order {
        input["minimumRequirement"] =
            json!({ "subtotal": { "greaterThanOrEqualToSubtotal": min.to_string() } });
    }
    json!({ "basicCodeDiscount": input })
}

#[async_trait]
impl CouponApi for Shopify {
    fn platform(&self) -> Platform {
        Platform::Shopify
    }

    async fn find_code(&self, code: &str) -> Result<Option<ShopCode>, ApiError> {
        let data = self.graphql(FIND_CODE, json!({ "code": code })).await?;
        let node = &data["codeDiscountNodeByCode"];
        let Some(id) = node["id"].as_str() else {
            return Ok(None);
        };
        // Another kind of discount under the code has no `status` here: taken as usable.
        let active = match node["codeDiscount"]["status"].as_str() {
            Some(s) => s == "ACTIVE" || s == "SCHEDULED",
            None => true,
        };
        Ok(Some(ShopCode {
            id: id.to_string(),
            active,
        }))
    }

    async fn create_code(&self, coupon: &NewCoupon) -> Result<String, ApiError> {
        let data = self.graphql(CREATE_CODE, create_variables(coupon)).await?;
        let payload = &data["discountCodeBasicCreate"];
        Self::user_errors(payload)?;
        payload["codeDiscountNode"]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ApiError::transient("Shopify: the created discount has no id"))
    }

    async fn disable_code(&self, found: &ShopCode) -> Result<(), ApiError> {
        let data = self.graphql(DEACTIVATE, json!({ "id": found.id })).await?;
        Self::user_errors(&data["discountCodeDeactivate"])
    }
}

#[async_trait]
impl ProductDirectory for Shopify {
    async fn product(&self, product_id: &str) -> Result<Option<ProductInfo>, LookupError> {
        let id = format!("gid://shopify/Product/{}", product_id.trim());
        let data = super::with_retries(
            RetryPolicy::LOOKUP,
            Some(&self.pacer),
            |_| {},
            || self.graphql(PRODUCT, json!({ "id": id })),
        )
        .await
        .map_err(|(e, _)| LookupError(e.to_string()))?;
        let product = &data["product"];
        if product.is_null() {
            return Ok(None);
        }
        Ok(Some(ProductInfo {
            product_type: product["productType"]
                .as_str()
                .filter(|t| !t.trim().is_empty())
                .map(str::to_string),
            tags: product["tags"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            categories: Vec::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn coupon(customer: &str, min: Option<&str>) -> NewCoupon {
        NewCoupon {
            code: "WELCOME-7K2M".into(),
            rule_id: "first-order".into(),
            customer_id: customer.into(),
            amount: Decimal::from_str("5.00").unwrap(),
            min_order: min.map(|m| Decimal::from_str(m).unwrap()),
            expires_on: chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap(),
            starts_at: "2026-01-05T10:00:00Z".into(),
            email: None,
        }
    }

    #[test]
    fn a_coupon_becomes_a_fixed_amount_once_for_its_customer() {
        let v = create_variables(&coupon("7012345", Some("30.00")));
        assert_eq!(
            v,
            json!({ "basicCodeDiscount": {
                "title": "Packwell first-order WELCOME-7K2M",
                "code": "WELCOME-7K2M",
                "startsAt": "2026-01-05T10:00:00Z",
                "endsAt": "2026-03-31T23:59:59Z",
                "customerSelection": { "customers": { "add": ["gid://shopify/Customer/7012345"] } },
                "customerGets": {
                    "value": { "discountAmount": { "amount": "5.00", "appliesOnEachItem": false } },
                    "items": { "all": true }
                },
                "usageLimit": 1,
                "appliesOncePerCustomer": true,
                "minimumRequirement": { "subtotal": { "greaterThanOrEqualToSubtotal": "30.00" } }
            }})
        );
    }

    #[test]
    fn a_customer_from_elsewhere_and_no_minimum() {
        let v = create_variables(&coupon("C-42", None));
        let input = &v["basicCodeDiscount"];
        assert_eq!(input["customerSelection"], json!({ "all": true }));
        assert!(input.get("minimumRequirement").is_none());
    }

    #[test]
    fn the_throttle_wait_is_the_missing_budget_over_the_restore_rate() {
        let reply = json!({
            "errors": [{ "message": "Throttled", "extensions": { "code": "THROTTLED" } }],
            "extensions": { "cost": {
                "requestedQueryCost": 110,
                "actualQueryCost": null,
                "throttleStatus": { "maximumAvailable": 2000.0, "currentlyAvailable": 10, "restoreRate": 100.0 }
            }}
        });
        assert_eq!(throttled_wait(&reply), Some(Duration::from_millis(1100)));
        // Throttled without the cost: a second.
        let bare = json!({ "errors": [{ "extensions": { "code": "THROTTLED" } }] });
        assert_eq!(throttled_wait(&bare), Some(Duration::from_secs(1)));
        let fine = json!({ "data": {}, "extensions": { "cost": { "requestedQueryCost": 10,
            "throttleStatus": { "currentlyAvailable": 1990, "restoreRate": 100.0 } } } });
        assert_eq!(throttled_wait(&fine), None);
        assert_eq!(budget_wait(&fine["extensions"]["cost"]), None);
        let low = json!({ "requestedQueryCost": 10, "actualQueryCost": 10,
            "throttleStatus": { "currentlyAvailable": 5, "restoreRate": 50.0 } });
        assert_eq!(budget_wait(&low), Some(Duration::from_millis(200)));
    }

    #[test]
    fn user_errors_are_refusals_naming_the_field() {
        let payload = json!({ "codeDiscountNode": null, "userErrors": [
            { "field": ["basicCodeDiscount", "code"], "code": "TAKEN", "message": "Code must be unique." }
        ]});
        assert_eq!(
            Shopify::user_errors(&payload),
            Err(ApiError::refused(
                "Shopify refused it: basicCodeDiscount.code: Code must be unique."
            ))
        );
        assert_eq!(Shopify::user_errors(&json!({ "userErrors": [] })), Ok(()));
    }
}
