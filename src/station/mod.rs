//! The packing-station HTTP API (CONTRACT §7): a parcel's insert list, its printable card and
//! the station's confirmation of what went in, for bearer tokens that may be limited to some
//! warehouses; and the packer's page. Reads go to the store's read pool; a confirmation is one
//! write transaction through the store's writer.

mod auth;
mod cache;
mod card;
mod error;
mod orders;

pub use auth::{Caller, Tokens};
pub use cache::{Cached, InsertListCache};
pub use error::{ApiError, ErrorBody, json_errors};
pub use orders::{InsertList, JsonBody, PackedItem, PackedRequest};

use crate::service::Shared;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The station's documented routes.
pub fn routes() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(orders::inserts))
        .routes(routes!(orders::card))
        .routes(routes!(orders::packed))
}

/// `Cache-Control: no-store` on every answer under `/v1/` and `/u/`: insert lists, cards and
/// confirmations carry coupon codes and names, the report and the unsubscribe pages the shop's
/// figures and a customer's link; no browser, proxy or CDN keeps a copy. Errors get it too, so
/// no answer under those paths depends on which route produced it. Whether `path` is one of
/// them; the server's one middleware sets the header.
pub fn is_private(path: &str) -> bool {
    path.starts_with("/v1/") || path.starts_with("/u/")
}

/// Marks an answer to a private path (see [`is_private`]) not to be stored.
pub fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `GET /station`: the packer's page, one self-contained file (no build step). Its policy
/// allows only its own inline script and style and requests to this server; the card it
/// prints goes into a sandboxed frame without scripts.
pub async fn page() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src 'self' data:; frame-src 'self'; base-uri 'none'; \
                 form-action 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(include_str!("page.html")),
    )
}
