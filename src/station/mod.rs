//! The packing-station HTTP API (CONTRACT §7): a parcel's insert list, its printable card and
//! the station's confirmation of what went in, for bearer tokens that may be limited to some
//! warehouses; and the packer's page. Reads go to the store's read pool; a confirmation is one
//! write transaction through the store's writer.

mod auth;
mod card;
mod error;
mod orders;

pub use auth::{Caller, Tokens};
pub use error::{ApiError, ErrorBody, json_errors};
pub use orders::{InsertList, PackedItem, PackedRequest};

use crate::service::Shared;
use axum::response::Html;
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

/// `GET /station`: the packer's page, one self-contained file (no build step).
pub async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}
