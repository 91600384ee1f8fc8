//! The shop webhook routes (docs/REFERENCE.md §8): `POST /v1/ingest/shopify` and
//! `POST /v1/ingest/woocommerce`. Authenticated by the platform's signature, not a bearer
//! token; their body limit is `[connectors] max_body_bytes`, apart from the API's. What a
//! webhook becomes is `connector::Webhooks`' business; this file turns its outcome into an
//! answer.

use super::error::{ApiError, ErrorBody};
use crate::connector::{Delivery, Platform, Received, Refused, Webhooks};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Webhooks>: FromRef<S>,
{
    OpenApiRouter::new().routes(routes!(ingest))
}

/// How long a platform is asked to wait before delivering again an event whose order is not
/// stored yet (Shopify and WooCommerce retry on their own schedules; this is a hint).
const RETRY_AFTER_SECS: &str = "30";

/// The answer to a webhook taken.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestAnswer {
    /// `produced` (the events are on `orders`, acknowledged), `duplicate` (handled before:
    /// nothing produced), `ignored` (it maps to no event), `set_aside` (it could not be mapped:
    /// in `orders.dlq`, reason `unmappable`).
    pub status: &'static str,
    /// The ids of the events produced.
    pub events: Vec<String>,
    /// Why it was ignored or set aside.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Receive a shop webhook.
///
/// The body is the platform's raw webhook; it is verified against the platform's signature
/// header (`X-Shopify-Hmac-Sha256`, `X-WC-Webhook-Signature`) before anything else, with
/// the topic in `X-Shopify-Topic` / `X-WC-Webhook-Topic` and the delivery id in
/// `X-Shopify-Webhook-Id` / `X-WC-Webhook-Delivery-ID`. 200 once the mapped events are
/// acknowledged by Kafka (or it was handled before, maps to nothing, or was set aside); 503
/// when it names an order not stored yet or Kafka, the store or the shop's API does not answer,
/// so that the platform delivers it again.
#[utoipa::path(
    post,
    path = "/v1/ingest/{platform}",
    tag = "connectors",
    params(("platform" = String, Path, description = "`shopify` or `woocommerce`")),
    request_body(content = String, content_type = "application/json", description = "The platform's webhook, as it sends it."),
    responses(
        (status = 200, description = "Taken", body = IngestAnswer),
        (status = 400, description = "The platform's topic header is missing", body = ErrorBody),
        (status = 401, description = "Missing or wrong signature", body = ErrorBody),
        (status = 404, description = "No such platform, or its connector is not configured", body = ErrorBody),
        (status = 413, description = "Over `[connectors] max_body_bytes`", body = ErrorBody),
        (status = 503, description = "Not taken for now: the platform delivers it again", body = ErrorBody),
    )
)]
async fn ingest(
    State(webhooks): State<Arc<Webhooks>>,
    Path(platform): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<IngestAnswer>, Response> {
    let Some(platform) = Platform::parse(&platform) else {
        return Err(ApiError::not_found(format!(
            "no shop platform {platform:?}: the webhook routes are /v1/ingest/shopify and /v1/ingest/woocommerce"
        ))
        .into_response());
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = Delivery {
        topic: header(platform.topic_header()),
        signature: header(platform.signature_header()),
        delivery_id: header(platform.delivery_header()),
        body: &body,
    };
    let answer = |status, events, reason| {
        Json(IngestAnswer {
            status,
            events,
            reason,
        })
    };
    match webhooks.receive(platform, delivery).await {
        Ok(Received::Produced(ids)) => Ok(answer("produced", ids, None)),
        Ok(Received::Duplicate) => Ok(answer("duplicate", Vec::new(), None)),
        Ok(Received::Ignored(why)) => Ok(answer("ignored", Vec::new(), Some(why.to_string()))),
        Ok(Received::SetAside(why)) => Ok(answer("set_aside", Vec::new(), Some(why))),
        Err(refused) => Err(refusal(platform, refused)),
    }
}

fn refusal(platform: Platform, refused: Refused) -> Response {
    match refused {
        Refused::NotConfigured(p) => ApiError::not_found(format!(
            "the {p} connector is not configured ([connectors.{p}])"
        ))
        .into_response(),
        Refused::BadSignature => ApiError::unauthorized(format!(
            "the webhook's {} does not match a configured webhook secret",
            platform.signature_header()
        ))
        .into_response(),
        Refused::MissingHeader(name) => {
            ApiError::bad_request(format!("the webhook has no {name} header")).into_response()
        }
        Refused::OrderNotStored(order) => {
            let mut r = ApiError::unavailable(format!(
                "order {order} is not stored yet (webhooks arrive out of order); deliver this again later"
            ))
            .into_response();
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
            r
        }
        Refused::Unavailable(why) => {
            tracing::warn!(platform = platform.as_str(), %why, "a webhook was not taken for now");
            ApiError::unavailable("the webhook could not be taken now; deliver it again later")
                .into_response()
        }
    }
}
