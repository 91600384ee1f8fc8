//! The packing stations' routes (docs/REFERENCE.md §7), for bearer tokens that may be limited to
//! some warehouses: an order's insert list, its printable card and the station's confirmation of
//! what went into the parcel; and the packer's page. Reads go to the store's read pool; a
//! confirmation is one write transaction through the store's writer.

use super::error::{ApiError, ErrorBody, JsonBody};
use super::state::AppState;
use crate::config::Caller;
use crate::email::RulesInForce;
use crate::engine::{GivenInsert, ScheduledFollowup};
use crate::station::{Cached, InsertListCache};
use crate::store::{
    NotPackedReason, PackedConfirmation, PackedLine, PackedOutcome, Store, StoredDecision,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The station's documented routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(inserts))
        .routes(routes!(card))
        .routes(routes!(packed))
}

/// `GET /station`: the packer's page. Its policy allows only its own inline script and style
/// and requests to this server; the card it prints goes into a sandboxed frame without
/// scripts.
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
        Html(crate::station::PAGE),
    )
}

/// The insert list of a parcel: the decision without `skipped`, plus the confirmation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InsertList {
    pub schema_version: u32,
    pub order_id: String,
    pub customer_id: String,
    /// The warehouse that packs the parcel.
    pub warehouse: String,
    /// A hash of the rule files and templates the decision was made with.
    pub rules_version: String,
    /// When the order was decided (UTC).
    #[schema(format = DateTime)]
    pub decided_at: String,
    pub segments: Vec<String>,
    /// What goes in the parcel; empty when nothing extra does.
    pub inserts: Vec<GivenInsert>,
    pub followups: Vec<ScheduledFollowup>,
    /// Null until a station confirmed the parcel, then that confirmation.
    #[schema(required = true)]
    pub packed: Option<PackedConfirmation>,
}

impl InsertList {
    fn new(stored: StoredDecision) -> InsertList {
        let d = stored.decision;
        InsertList {
            schema_version: d.schema_version,
            order_id: d.order_id,
            customer_id: d.customer_id,
            warehouse: d.warehouse,
            rules_version: d.rules_version,
            decided_at: d.decided_at,
            segments: d.segments,
            inserts: d.inserts,
            followups: d.followups,
            packed: stored.packed,
        }
    }
}

/// What a station sends when the parcel is packed: every insert of the order once.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackedRequest {
    /// The station's name, shown with the confirmation.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub station: String,
    pub inserts: Vec<PackedItem>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackedItem {
    pub insert_id: String,
    /// Which one, when two rules gave the same insert; otherwise not needed.
    #[serde(default)]
    pub rule_id: Option<String>,
    pub packed: bool,
    /// Needed when `packed` is false.
    #[serde(default)]
    pub reason: Option<NotPackedReason>,
}

/// The order's decision, if the caller may see its warehouse; otherwise the same 404 as for
/// an order that does not exist.
async fn visible_decision(
    store: &dyn Store,
    caller: &Caller,
    order_id: &str,
) -> Result<StoredDecision, ApiError> {
    match store.decision(order_id).await {
        Ok(Some(stored)) if caller.may_see(&stored.warehouse) => Ok(stored),
        Ok(_) => Err(ApiError::order_not_found(order_id)),
        Err(e) => Err(ApiError::store(e)),
    }
}

/// The insert list of a parcel.
#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}/inserts",
    tag = "station",
    params(("order_id" = String, Path, description = "The order id of the `order.placed` event")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What goes into the parcel", body = InsertList),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "Not decided (yet), unknown, or of a warehouse this token may not see", body = ErrorBody),
        (status = 408, description = "The request was not sent in time", body = ErrorBody),
        (status = 500, description = "Something went wrong on the server; the log says what", body = ErrorBody),
        (status = 503, description = "The store did not answer, or the answer took too long", body = ErrorBody),
    )
)]
pub async fn inserts(
    caller: Caller,
    State(insert_lists): State<Arc<InsertListCache>>,
    State(store): State<Arc<dyn Store>>,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    let cached = match insert_lists.get(&order_id) {
        Some(hit) => hit,
        None => {
            let generation = insert_lists.generation();
            let loaded = match store.decision(&order_id).await {
                Ok(None) => Cached::Absent,
                Ok(Some(stored)) => Cached::Present {
                    warehouse: stored.warehouse.as_str().into(),
                    body: serde_json::to_vec(&InsertList::new(stored))
                        .map_err(|e| {
                            ApiError::store(crate::store::StoreError::Corrupt(e.to_string()))
                        })?
                        .into(),
                },
                Err(e) => return Err(ApiError::store(e)),
            };
            insert_lists.put(&order_id, loaded.clone(), generation);
            loaded
        }
    };
    match cached {
        Cached::Present { warehouse, body } if caller.may_see(&warehouse) => {
            Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
        }
        _ => Err(ApiError::order_not_found(&order_id)),
    }
}

/// The printable card of a parcel: note and coupons, A6, with a QR code of each code.
#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}/card",
    tag = "station",
    params(("order_id" = String, Path, description = "The order id of the `order.placed` event")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "An HTML document to print", content_type = "text/html", body = String),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "Not decided (yet), unknown, or of a warehouse this token may not see", body = ErrorBody),
        (status = 408, description = "The request was not sent in time", body = ErrorBody),
        (status = 500, description = "Something went wrong on the server; the log says what", body = ErrorBody),
        (status = 503, description = "The store did not answer, or the answer took too long", body = ErrorBody),
    )
)]
pub async fn card(
    caller: Caller,
    State(store): State<Arc<dyn Store>>,
    State(env): State<Arc<dyn RulesInForce>>,
    Path(order_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let stored = visible_decision(&*store, &caller, &order_id).await?;
    let locale = match store.profile(&stored.decision.customer_id).await {
        Ok(profile) => profile.and_then(|p| p.locale),
        Err(e) => return Err(ApiError::store(e)),
    };
    // A code voided since (order cancelled, not packed, by an operator) is not printed: it
    // would be refused at the till.
    let coupons = store
        .coupons_of_order(&order_id)
        .await
        .map_err(ApiError::store)?;
    let mut decision = stored.decision;
    decision.inserts.retain(|i| match &i.coupon {
        Some(c) => coupons
            .iter()
            .any(|row| row.code == c.code && row.state != "voided"),
        None => true,
    });
    let shop = env.in_force().shop.clone();
    let html = crate::station::render_card(&decision, &shop, locale.as_deref().unwrap_or("en"));
    // Only its own inline style and inline SVG: nothing in a card can run or load.
    Ok((
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(html),
    ))
}

/// The station confirms what went into the parcel.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/packed",
    tag = "station",
    params(("order_id" = String, Path, description = "The order id of the `order.placed` event")),
    request_body = PackedRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Recorded, or the same confirmation again: the insert list with `packed`", body = InsertList),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "Not decided (yet), unknown, or of a warehouse this token may not see", body = ErrorBody),
        (status = 408, description = "The request (its body) was not sent in time", body = ErrorBody),
        (status = 409, description = "A different confirmation was recorded before (`conflict`; it is in `packed`), or the order was cancelled (`order_cancelled`)", body = ErrorBody),
        (status = 413, description = "The body is larger than `[http] max_body_bytes`", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json", body = ErrorBody),
        (status = 422, description = "The body does not list every insert once, packed or with a reason", body = ErrorBody),
        (status = 500, description = "Something went wrong on the server; the log says what", body = ErrorBody),
        (status = 503, description = "The store did not answer, or the answer took too long", body = ErrorBody),
    )
)]
pub async fn packed(
    caller: Caller,
    State(store): State<Arc<dyn Store>>,
    State(env): State<Arc<dyn RulesInForce>>,
    State(insert_lists): State<Arc<InsertListCache>>,
    Path(order_id): Path<String>,
    JsonBody(request): JsonBody<PackedRequest>,
) -> Result<Json<InsertList>, ApiError> {
    let mut stored = visible_decision(&*store, &caller, &order_id).await?;
    let station = request.station.as_str();
    if station.trim().is_empty() || station.chars().count() > 100 {
        return Err(ApiError::invalid(
            "station: give the station's name (1 to 100 characters)",
        ));
    }
    let lines = resolve(&stored.decision.inserts, &request.inserts)?;
    let rules = env.in_force().rules.clone();
    let outcome = store
        .confirm_packed(&order_id, station, &lines, &rules)
        .await
        .map_err(ApiError::store)?;
    // Whatever came of it, the stored state is what the next look should show.
    insert_lists.forget(&order_id);
    match outcome {
        PackedOutcome::Recorded(confirmation) => {
            tracing::info!(
                order_id,
                station,
                token = &*caller.name,
                not_packed = lines.iter().filter(|l| !l.packed).count(),
                "parcel confirmed"
            );
            stored.packed = Some(confirmation);
        }
        PackedOutcome::Repeated(confirmation) => stored.packed = Some(confirmation),
        PackedOutcome::Conflict(recorded) => {
            return Err(ApiError::conflict(
                format!(
                    "Order {order_id} was already confirmed differently, by station {} at {}; that confirmation stands.",
                    recorded.station, recorded.confirmed_at
                ),
                recorded,
            ));
        }
        PackedOutcome::NotDecided => return Err(ApiError::order_not_found(&order_id)),
        PackedOutcome::Cancelled => {
            return Err(ApiError::order_cancelled(format!(
                "Order {order_id} was cancelled: do not ship it. Nothing was recorded."
            )));
        }
    }
    Ok(Json(InsertList::new(stored)))
}

/// Matches the station's items to the decision's inserts: each item takes the first insert
/// not taken yet with its id (and rule, when given); every insert must be taken once. The
/// lines come out in the decision's order.
fn resolve(given: &[GivenInsert], items: &[PackedItem]) -> Result<Vec<PackedLine>, ApiError> {
    let mut taken: Vec<Option<&PackedItem>> = vec![None; given.len()];
    // Items naming their rule are placed first, so that an item without one never takes
    // the insert another item names.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].rule_id.is_none());
    for i in order {
        let item = &items[i];
        match (item.packed, item.reason) {
            (true, Some(_)) => {
                return Err(ApiError::invalid(format!(
                    "inserts[{i}] ({}): a packed insert has no reason; send \"packed\": false with the reason",
                    item.insert_id
                )));
            }
            (false, None) => {
                return Err(ApiError::invalid(format!(
                    "inserts[{i}] ({}): say why it was not packed: \"reason\" is out_of_stock, damaged or other",
                    item.insert_id
                )));
            }
            _ => {}
        }
        let same_id = given
            .iter()
            .filter(|g| g.insert_id == item.insert_id)
            .count();
        if same_id > 1 && item.rule_id.is_none() {
            return Err(ApiError::invalid(format!(
                "inserts[{i}] ({}): the order has it from {same_id} rules; say which with \"rule_id\"",
                item.insert_id
            )));
        }
        let slot = (0..given.len()).find(|&k| {
            taken[k].is_none()
                && given[k].insert_id == item.insert_id
                && item.rule_id.as_ref().is_none_or(|r| *r == given[k].rule_id)
        });
        let Some(k) = slot else {
            let known = given.iter().any(|g| g.insert_id == item.insert_id);
            return Err(ApiError::invalid(if known {
                format!(
                    "inserts[{i}] ({}): listed more often than the order has it",
                    item.insert_id
                )
            } else {
                format!(
                    "inserts[{i}] ({}): the order has no such insert",
                    item.insert_id
                )
            }));
        };
        taken[k] = Some(item);
    }
    given
        .iter()
        .zip(taken)
        .map(|(g, item)| match item {
            Some(item) => Ok(PackedLine {
                insert_id: g.insert_id.clone(),
                rule_id: g.rule_id.clone(),
                packed: item.packed,
                reason: item.reason.filter(|_| !item.packed),
            }),
            None => Err(ApiError::invalid(format!(
                "insert {} (rule {}) is missing: list every insert of the order, packed or with a reason",
                g.insert_id, g.rule_id
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(insert_id: &str, rule_id: &str) -> GivenInsert {
        GivenInsert {
            insert_id: insert_id.into(),
            kind: "gift".into(),
            rule_id: rule_id.into(),
            variant: None,
            title: None,
            quantity: 1,
            sku: None,
            coupon: None,
            note: None,
        }
    }

    fn item(insert_id: &str, rule_id: Option<&str>, reason: Option<NotPackedReason>) -> PackedItem {
        PackedItem {
            insert_id: insert_id.into(),
            rule_id: rule_id.map(Into::into),
            packed: reason.is_none(),
            reason,
        }
    }

    fn message(e: ApiError) -> String {
        format!("{e:?}")
    }

    #[test]
    fn items_are_matched_in_the_decision_order() {
        let decision = [
            given("tea", "book-tea"),
            given("note", "welcome"),
            given("tea", "vip"),
        ];
        let items = [
            item("tea", None, None),
            item("note", None, None),
            item("tea", Some("vip"), Some(NotPackedReason::OutOfStock)),
        ];
        let ambiguous = resolve(&decision, &items).expect_err("which tea?");
        assert!(message(ambiguous).contains("rule_id"));
        let items = [
            item("tea", Some("book-tea"), None),
            item("note", None, None),
            item("tea", Some("vip"), Some(NotPackedReason::OutOfStock)),
        ];
        let lines = resolve(&decision, &items).expect("resolved");
        let got: Vec<(&str, &str, bool)> = lines
            .iter()
            .map(|l| (l.insert_id.as_str(), l.rule_id.as_str(), l.packed))
            .collect();
        assert_eq!(
            got,
            [
                ("tea", "book-tea", true),
                ("note", "welcome", true),
                ("tea", "vip", false)
            ]
        );
        assert_eq!(lines[2].reason, Some(NotPackedReason::OutOfStock));
    }

    #[test]
    fn every_insert_once_with_reasons_only_when_not_packed() {
        let decision = [given("tea", "book-tea"), given("note", "welcome")];
        let missing = resolve(&decision, &[item("tea", None, None)]).expect_err("missing");
        assert!(message(missing).contains("note (rule welcome) is missing"));
        let unknown = resolve(&decision, &[item("mug", None, None)]).expect_err("unknown");
        assert!(message(unknown).contains("no such insert"));
        let twice = resolve(
            &decision,
            &[
                item("tea", None, None),
                item("tea", None, None),
                item("note", None, None),
            ],
        )
        .expect_err("twice");
        assert!(message(twice).contains("more often"));
        let mut no_reason = item("tea", None, None);
        no_reason.packed = false;
        assert!(
            message(resolve(&decision, &[no_reason]).expect_err("no reason")).contains("say why")
        );
        let mut packed_with_reason = item("tea", None, Some(NotPackedReason::Damaged));
        packed_with_reason.packed = true;
        assert!(
            message(resolve(&decision, &[packed_with_reason]).expect_err("reason"))
                .contains("has no reason")
        );
        assert_eq!(resolve(&[], &[]).expect("nothing to confirm"), vec![]);
    }
}
