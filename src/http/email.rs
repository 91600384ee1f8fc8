//! The e-mail routes of the HTTP API (docs/REFERENCE.md §7): the unsubscribe page and its one-click
//! POST (RFC 8058), and the provider's bounces and complaints.
//!
//! `GET /u/{token}` changes nothing (mail scanners fetch links to check them); it shows a
//! page with a button. `POST /u/{token}` unsubscribes: the button's form, or a mail client's
//! one-click POST (`List-Unsubscribe=One-Click`). The signed token is the proof.

use super::caller::Admin;
use super::error::{ApiError, ErrorBody, JsonBody};
use super::state::AppState;
use crate::email::RulesInForce;
use crate::email::token::verify_unsubscribe_token;
use crate::store::Store;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::Notify;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(unsubscribe_page, unsubscribe))
        .routes(routes!(email_events))
}

/// A page of its own: nothing loaded from elsewhere, no scripts, a form posting to itself.
fn page(status: StatusCode, shop: &str, title: &str, body: &str) -> Response {
    let shop = handlebars::html_escape(shop);
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{title} · {shop}</title>\
<style>body{{font-family:Georgia,serif;background:#f6f3ee;color:#2b2b2b;margin:0;padding:24px}}\
main{{max-width:480px;margin:48px auto;background:#fff;padding:32px;border-radius:6px}}\
button{{font:inherit;font-size:18px;padding:12px 24px;background:#7a4b2a;color:#fff;border:0;border-radius:4px;cursor:pointer}}</style>\
</head><body><main><h1>{title}</h1>{body}<p>— {shop}</p></main></body></html>\n"
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

fn invalid_link(shop: &str) -> Response {
    page(
        StatusCode::NOT_FOUND,
        shop,
        "This link does not work",
        "<p>This unsubscribe link is not valid: it may have been cut short when it was copied. \
         Please use the link at the bottom of one of our e-mails.</p>",
    )
}

fn unavailable(shop: &str, e: crate::store::StoreError) -> Response {
    tracing::error!("unsubscribe page: {e}");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        shop,
        "Please try again",
        "<p>We could not reach our records just now. Please try again in a minute.</p>",
    )
}

/// The unsubscribe page: a button, nothing changed yet.
#[utoipa::path(
    get,
    path = "/u/{token}",
    tag = "email",
    params(("token" = String, Path, description = "The signed token of an e-mail's unsubscribe link")),
    responses(
        (status = 200, description = "A page with the unsubscribe button (or saying the customer is unsubscribed already)", content_type = "text/html", body = String),
        (status = 404, description = "The link is not valid (a page), or no token was given (the JSON error body)",
            content((String = "text/html"), (ErrorBody = "application/json"))),
        (status = 503, description = "The store did not answer", content_type = "text/html", body = String),
    )
)]
pub async fn unsubscribe_page(
    State(store): State<Arc<dyn Store>>,
    State(env): State<Arc<dyn RulesInForce>>,
    Path(token): Path<String>,
) -> Response {
    let env = env.in_force();
    let shop = env.shop.name.clone();
    let Some(customer) = verify_unsubscribe_token(&env.key, &token) else {
        return invalid_link(&shop);
    };
    match store.is_unsubscribed(&customer).await {
        Ok(true) => page(
            StatusCode::OK,
            &shop,
            "You are unsubscribed",
            "<p>You will get no more of these e-mails from us.</p>",
        ),
        Ok(false) => page(
            StatusCode::OK,
            &shop,
            "Unsubscribe?",
            &format!(
                "<p>Click below and we will send you no more of these e-mails about your orders from {}.</p>\
                 <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
                 <button type=\"submit\" id=\"unsubscribe\">Unsubscribe</button></form>",
                handlebars::html_escape(&shop)
            ),
        ),
        Err(e) => unavailable(&shop, e),
    }
}

/// Unsubscribes the link's customer: the page's button, or one-click (RFC 8058).
#[utoipa::path(
    post,
    path = "/u/{token}",
    tag = "email",
    params(("token" = String, Path, description = "The signed token of an e-mail's unsubscribe link")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "`List-Unsubscribe=One-Click` (RFC 8058); the body is not needed, the token is the proof"),
    responses(
        (status = 200, description = "Unsubscribed (also when the customer was already)", content_type = "text/html", body = String),
        (status = 404, description = "The link is not valid (a page), or no token was given (the JSON error body)",
            content((String = "text/html"), (ErrorBody = "application/json"))),
        (status = 503, description = "The store did not answer", content_type = "text/html", body = String),
    )
)]
pub async fn unsubscribe(
    State(store): State<Arc<dyn Store>>,
    State(env): State<Arc<dyn RulesInForce>>,
    State(outbox_written): State<Arc<Notify>>,
    Path(token): Path<String>,
) -> Response {
    let env = env.in_force();
    let shop = env.shop.name.clone();
    let Some(customer) = verify_unsubscribe_token(&env.key, &token) else {
        return invalid_link(&shop);
    };
    match store.unsubscribe(&customer, Utc::now()).await {
        Ok(new) => {
            if new {
                tracing::info!(customer_id = %customer, "unsubscribed by link");
                outbox_written.notify_one();
            }
            page(
                StatusCode::OK,
                &shop,
                "You are unsubscribed",
                "<p>You will get no more of these e-mails from us. We are sorry to see you go.</p>",
            )
        }
        Err(e) => unavailable(&shop, e),
    }
}

/// The shape of an address the route takes, as its OpenAPI document states it: one `@`
/// between two non-empty parts, no spaces or control characters, at most 320 characters.
const ADDRESS_PATTERN: &str = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+$";

fn is_address(email: &str) -> bool {
    static PATTERN: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let chars = email.chars().count();
    (3..=320).contains(&chars)
        && PATTERN
            .get_or_init(|| regex::Regex::new(ADDRESS_PATTERN).ok())
            .as_ref()
            .is_some_and(|p| p.is_match(email))
}

/// What the provider reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmailEventType {
    /// A hard bounce: the address does not exist or refuses mail for good.
    Bounce,
    /// The recipient marked an e-mail as spam.
    Complaint,
}

/// A bounce or complaint, as the provider's webhook (or a small adapter in front of it) sends.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailEvent {
    #[serde(rename = "type")]
    pub kind: EmailEventType,
    /// The address the e-mail went to.
    #[schema(
        min_length = 3,
        max_length = 320,
        pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+$"
    )]
    pub email: String,
    /// When it happened (RFC 3339).
    #[schema(format = DateTime)]
    pub occurred_at: String,
}

/// What became of a bounce or complaint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EmailEventOutcome {
    /// The address gets no more e-mail (also when it was suppressed already).
    pub suppressed: bool,
    /// False when the address was suppressed before: nothing was emitted again.
    pub new: bool,
    /// `hard_bounce` or `complaint`.
    pub reason: String,
    /// Customers whose e-mails went to the address; each got `customer.suppressed` on Kafka
    /// `customer-preferences` (the first time).
    pub customers: usize,
}

/// Records a hard bounce or a spam complaint: the address is suppressed.
#[utoipa::path(
    post,
    path = "/v1/email-events",
    tag = "email",
    security(("bearer" = [])),
    request_body = EmailEvent,
    responses(
        (status = 200, description = "Suppressed", body = EmailEventOutcome),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "Not an admin token, or one limited to some warehouses", body = ErrorBody),
        (status = 408, description = "The request was not sent in time", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "Not sent as application/json", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong", body = ErrorBody),
        (status = 500, description = "Something went wrong on the server; the log says what", body = ErrorBody),
        (status = 503, description = "The store did not answer, or the answer took too long", body = ErrorBody),
    )
)]
pub async fn email_events(
    Admin(caller): Admin,
    State(store): State<Arc<dyn Store>>,
    State(outbox_written): State<Arc<Notify>>,
    JsonBody(event): JsonBody<EmailEvent>,
) -> Result<Json<EmailEventOutcome>, ApiError> {
    if caller.warehouses.is_some() {
        return Err(ApiError::forbidden(
            "this token is limited to some warehouses; bounces and complaints need a token without [[http.tokens]] warehouses",
        ));
    }
    let email = event.email.as_str();
    if !is_address(email) {
        return Err(ApiError::invalid(
            "email: expected an e-mail address such as ana@example.com",
        ));
    }
    let occurred_at = DateTime::parse_from_rfc3339(&event.occurred_at)
        .map_err(|_| {
            ApiError::invalid("occurred_at: expected an RFC 3339 time such as 2026-11-20T10:00:00Z")
        })?
        .with_timezone(&Utc);
    let reason = match event.kind {
        EmailEventType::Bounce => "hard_bounce",
        EmailEventType::Complaint => "complaint",
    };
    let outcome = store
        .suppress(email, reason, occurred_at)
        .await
        .map_err(ApiError::store)?;
    if outcome.new {
        tracing::info!(
            reason,
            customers = outcome.customers.len(),
            "address suppressed"
        );
        outbox_written.notify_one();
    }
    Ok(Json(EmailEventOutcome {
        suppressed: true,
        new: outcome.new,
        reason: reason.to_string(),
        customers: outcome.customers.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_the_document_states_them() {
        for good in ["a@b", "lena.hoffmann@example.com", "ÄÖ@bücher.de"] {
            assert!(is_address(good), "{good}");
        }
        for bad in [
            "",
            "a@",
            "@b",
            "a b@c",
            "a@b@c",
            "a\u{7}@b",
            "a\u{85}@b",
            "000",
        ] {
            assert!(!is_address(bad), "{bad:?}");
        }
        assert!(!is_address(&format!("{}@b", "a".repeat(319))));
    }

    #[test]
    fn the_document_states_the_pattern_checked() {
        let schema =
            serde_json::to_value(<EmailEvent as utoipa::PartialSchema>::schema()).expect("schema");
        assert_eq!(schema["properties"]["email"]["pattern"], ADDRESS_PATTERN);
    }
}
