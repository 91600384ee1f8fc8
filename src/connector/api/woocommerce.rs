//! WooCommerce's REST API (`{url}/wp-json/wc/v3/`, HTTP Basic auth with the consumer key and
//! secret): coupons by code (`GET coupons?code=`), created with `POST coupons`, and removed
//! with `DELETE coupons/{id}?force=true` when voided (WooCommerce has no "disabled" state a
//! checkout respects other than expiry; a deleted coupon is found no more, so voiding twice is
//! harmless). A product's categories come from `GET products/{id}`.

use super::{ApiError, CouponApi, NewCoupon, Pacer, RetryPolicy, ShopCode, excerpt};
use crate::config::{Platform, ShopApi};
use crate::connector::{LookupError, ProductDirectory, ProductInfo};
use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

/// The client of one shop's REST API.
pub struct WooCommerce {
    client: reqwest::Client,
    base: String,
    key: String,
    secret: String,
    pacer: Pacer,
}

impl WooCommerce {
    pub fn new(api: &ShopApi, pacer: Pacer) -> Result<WooCommerce, String> {
        let ShopApi::WooCommerce {
            url,
            consumer_key,
            consumer_secret,
        } = api
        else {
            return Err("a WooCommerce client needs [connectors.woocommerce] url".into());
        };
        Ok(WooCommerce {
            client: super::http_client()?,
            base: format!("{}/wp-json/wc/v3/", url.trim_end_matches('/')),
            key: consumer_key.0.clone(),
            secret: consumer_secret.0.clone(),
            pacer,
        })
    }

    /// One call; the status and the JSON body (Null when there is none), or why not. A 404 is
    /// returned as such, for the caller to read as "no such thing".
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, Value), ApiError> {
        self.pacer.slot().await;
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.base), query)
            .map_err(|e| ApiError::refused(format!("WooCommerce: the URL of {path}: {e}")))?;
        let mut request = self
            .client
            .request(method, url)
            .basic_auth(&self.key, Some(&self.secret));
        if let Some(b) = body {
            request = request.json(b);
        }
        let response = request
            .send()
            .await
            .map_err(|e| super::transport_error("WooCommerce", e))?;
        let status = response.status().as_u16();
        let asked = super::retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| super::transport_error("WooCommerce", e))?;
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status == 404 {
            return Ok((status, parsed));
        }
        if let Some(e) = super::classify_status(status, &text, asked) {
            if let ApiError::Transient { wait: Some(w), .. } = &e {
                self.pacer.hold_off(*w).await;
            }
            // WooCommerce's errors are `{code, message, data: {status}}`: the message says it.
            return Err(match (e, parsed["message"].as_str()) {
                (ApiError::Refused { .. }, Some(message)) => ApiError::refused(format!(
                    "WooCommerce refused it (HTTP {status}, {}): {message}",
                    parsed["code"].as_str().unwrap_or("no code")
                )),
                (e, _) => e,
            });
        }
        if parsed.is_null() && !text.trim().is_empty() {
            return Err(ApiError::transient(format!(
                "WooCommerce answered HTTP {status} with no JSON: {}",
                excerpt(&text)
            )));
        }
        Ok((status, parsed))
    }
}

/// The body of `POST coupons` for a coupon: a fixed amount off the cart, once, for the
/// customer's address when known, until the end of its last day (in the shop's time zone).
pub fn create_body(coupon: &NewCoupon) -> Value {
    let mut body = json!({
        "code": coupon.code,
        "discount_type": "fixed_cart",
        "amount": coupon.amount.to_string(),
        "description": format!("Packwell {}", coupon.rule_id),
        "usage_limit": 1,
        "usage_limit_per_user": 1,
        "individual_use": false,
        "date_expires": format!("{}T23:59:59", coupon.expires_on.format("%Y-%m-%d")),
    });
    if let Some(email) = &coupon.email {
        body["email_restrictions"] = json!([email]);
    }
    if let Some(min) = coupon.min_order {
        body["minimum_amount"] = json!(min.to_string());
    }
    body
}

/// A coupon's id as the API gives it (a number), as text.
fn id_of(coupon: &Value) -> Option<String> {
    match &coupon["id"] {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

#[async_trait]
impl CouponApi for WooCommerce {
    fn platform(&self) -> Platform {
        Platform::WooCommerce
    }

    async fn find_code(&self, code: &str) -> Result<Option<ShopCode>, ApiError> {
        let (status, found) = self
            .call(Method::GET, "coupons", &[("code", code)], None)
            .await?;
        if status == 404 {
            return Err(ApiError::refused(
                "WooCommerce: GET coupons answered 404 (is the REST API on, and url the shop's base URL?)",
            ));
        }
        // The search is by code, case-insensitive and exact in WooCommerce; compare again.
        let coupon = found.as_array().and_then(|list| {
            list.iter().find(|c| {
                c["code"]
                    .as_str()
                    .is_some_and(|c| c.eq_ignore_ascii_case(code))
            })
        });
        Ok(coupon
            .and_then(id_of)
            .map(|id| ShopCode { id, active: true }))
    }

    async fn create_code(&self, coupon: &NewCoupon) -> Result<String, ApiError> {
        let (status, created) = self
            .call(Method::POST, "coupons", &[], Some(&create_body(coupon)))
            .await?;
        if status == 404 {
            return Err(ApiError::refused("WooCommerce: POST coupons answered 404"));
        }
        id_of(&created)
            .ok_or_else(|| ApiError::transient("WooCommerce: the created coupon has no id"))
    }

    async fn disable_code(&self, found: &ShopCode) -> Result<(), ApiError> {
        // Gone already (404) is what was asked for.
        self.call(
            Method::DELETE,
            &format!("coupons/{}", found.id),
            &[("force", "true")],
            None,
        )
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl ProductDirectory for WooCommerce {
    async fn product(&self, product_id: &str) -> Result<Option<ProductInfo>, LookupError> {
        let id = product_id.trim();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(None);
        }
        let path = format!("products/{id}");
        let (status, product) = super::with_retries(
            RetryPolicy::LOOKUP,
            Some(&self.pacer),
            |_| {},
            || self.call(Method::GET, &path, &[], None),
        )
        .await
        .map_err(|(e, _)| LookupError(e.to_string()))?;
        if status == 404 {
            return Ok(None);
        }
        Ok(Some(ProductInfo {
            product_type: None,
            tags: Vec::new(),
            categories: product["categories"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .filter_map(|c| c["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    #[test]
    fn a_coupon_becomes_a_fixed_cart_coupon_for_one_address() {
        let coupon = NewCoupon {
            code: "WELCOME-7K2M".into(),
            rule_id: "first-order".into(),
            customer_id: "C-1".into(),
            amount: Decimal::from_str("5.00").unwrap(),
            min_order: Some(Decimal::from_str("30").unwrap()),
            expires_on: chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap(),
            starts_at: "2026-01-05T10:00:00Z".into(),
            email: Some("ada@example.com".into()),
        };
        assert_eq!(
            create_body(&coupon),
            json!({
                "code": "WELCOME-7K2M",
                "discount_type": "fixed_cart",
                "amount": "5.00",
                "description": "Packwell first-order",
                "usage_limit": 1,
                "usage_limit_per_user": 1,
                "individual_use": false,
                "date_expires": "2026-03-31T23:59:59",
                "email_restrictions": ["ada@example.com"],
                "minimum_amount": "30"
            })
        );
        let anyone = create_body(&NewCoupon {
            email: None,
            min_order: None,
            ..coupon
        });
        assert!(anyone.get("email_restrictions").is_none());
        assert!(anyone.get("minimum_amount").is_none());
    }

    #[test]
    fn ids_are_numbers_or_text() {
        assert_eq!(id_of(&json!({ "id": 719 })), Some("719".into()));
        assert_eq!(id_of(&json!({ "id": "719" })), Some("719".into()));
        assert_eq!(id_of(&json!({})), None);
    }
}
