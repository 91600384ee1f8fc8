//! The workbench's routes that run an edit before it is saved (CONTRACT §7): the recent orders
//! to try it on, "try it" on one order, and backtests of the edit against the rules in force.

use super::caller::Marketer;
use super::error::{ApiError, ErrorBody, JsonBody};
use super::state::AppState;
use super::workbench::{blocking, load};
use crate::config::Caller;
use crate::email::RulesInForce;
use crate::event::{Event, EventBody, parse_event};
use crate::rules::RuleSet;
use crate::store::{DecideEnv, Store};
use crate::workbench::{
    BacktestView, Edits, MAX_HISTORY, Tried, TryEnv, Workbench, find_order, history_before,
    try_order,
};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(recent_orders))
        .routes(routes!(try_edit))
        .routes(routes!(start_backtest))
        .routes(routes!(backtest))
}

/// Kept events looked through for recent orders, at most.
const ORDER_SCAN: i64 = 5_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrdersParams {
    /// How many (1 to 200, default 20).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecentOrder {
    pub order_id: String,
    pub customer_id: String,
    pub placed_at: String,
    pub total: String,
    pub currency: String,
    pub warehouse: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecentOrders {
    pub orders: Vec<RecentOrder>,
}

/// The newest orders among the store's kept events, newest first: orders to try an edit on.
#[utoipa::path(
    get,
    path = "/v1/rules/orders",
    tag = "workbench",
    security(("bearer" = [])),
    params(OrdersParams),
    responses(
        (status = 200, description = "The orders", body = RecentOrders),
        (status = 400, description = "A query parameter is not understood", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "A station's token", body = ErrorBody),
        (status = 422, description = "The limit is out of range", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    )
)]
pub async fn recent_orders(
    Marketer(caller): Marketer,
    State(store): State<Arc<dyn Store>>,
    Query(params): Query<OrdersParams>,
) -> Result<Json<RecentOrders>, ApiError> {
    let limit = params.limit.unwrap_or(20);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit: expected 1 to 200"));
    }
    let kept = store
        .newest_kept_events(ORDER_SCAN)
        .await
        .map_err(ApiError::store)?;
    let orders = kept
        .into_iter()
        .filter_map(|k| k.event.ok())
        .filter_map(|e| match e.body {
            EventBody::OrderPlaced(o) if caller.may_see(&o.warehouse) => Some(RecentOrder {
                order_id: o.id,
                customer_id: o.customer.id,
                placed_at: crate::engine::format_time(e.occurred_at),
                total: crate::money::format_amount(o.total),
                currency: o.currency.to_string(),
                warehouse: o.warehouse,
            }),
            _ => None,
        })
        .take(limit as usize)
        .collect();
    Ok(Json(RecentOrders { orders }))
}

/// An edit and the order to try it on: a kept order by id, or an event given whole.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TryRequest {
    #[serde(default)]
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub files: Edits,
    pub order_id: Option<String>,
    /// An `order.placed` event (CONTRACT §1).
    #[schema(value_type = Object)]
    pub event: Option<serde_json::Value>,
}

/// One order decided by the rules in force and by the edited ones, each after the customer's
/// kept history, with the explain trace, the notes and the follow-up e-mails.
#[utoipa::path(
    post,
    path = "/v1/rules/try",
    tag = "workbench",
    security(("bearer" = [])),
    request_body = TryRequest,
    responses(
        (status = 200, description = "Both decisions", body = Tried),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "A station's token, or a pasted event of a warehouse the token may not see", body = ErrorBody),
        (status = 404, description = "No kept order with this id (or one of a warehouse the token may not see)", body = ErrorBody),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "Not sent as application/json", body = ErrorBody),
        (status = 422, description = "The edit does not validate, or the order or event is not understood", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    )
)]
pub async fn try_edit(
    Marketer(caller): Marketer,
    State(workbench): State<Arc<Workbench>>,
    State(store): State<Arc<dyn Store>>,
    State(env): State<Arc<dyn RulesInForce>>,
    JsonBody(request): JsonBody<TryRequest>,
) -> Result<Json<Tried>, ApiError> {
    let (history, order) = match (request.order_id, request.event) {
        (Some(id), None) => kept_order(&*store, &caller, &id).await?,
        (None, Some(event)) => pasted_order(&*store, &caller, &event).await?,
        _ => return Err(ApiError::invalid("give order_id or event, one of them")),
    };
    let edited = valid_rules(&workbench, request.files).await?;
    let current = env.in_force();
    let (from, public_url) = (workbench.email_from.clone(), workbench.public_url.clone());
    let tried = blocking(move || {
        let env = TryEnv {
            key: &current.key,
            shop: &current.shop,
            from: &from,
            public_url: &public_url,
        };
        try_order(&current.rules, &edited, &env, &history, &order)
    })
    .await?
    .map_err(ApiError::invalid)?;
    Ok(Json(tried))
}

/// A kept order and the customer's events kept before it; 404 for an order the caller may
/// not see, as for one that is not there. The order may be one the service decided or one
/// folded into the history only (imported, or older than `[decide] max_event_age`).
async fn kept_order(
    store: &dyn Store,
    caller: &Caller,
    order_id: &str,
) -> Result<(Vec<Event>, Event), ApiError> {
    let not_found = || {
        ApiError::not_found(format!(
            "no order {order_id} among the kept events: give its id as the shop sent it, or paste the event"
        ))
    };
    let customer = store
        .order_customer(order_id)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(not_found)?;
    let kept = store
        .customer_kept_events(&customer, MAX_HISTORY)
        .await
        .map_err(ApiError::store)?;
    let (history, order) = find_order(kept, order_id).ok_or_else(not_found)?;
    match &order.body {
        EventBody::OrderPlaced(o) if caller.may_see(&o.warehouse) => Ok((history, order)),
        _ => Err(not_found()),
    }
}

/// A pasted `order.placed` event, checked as the consumer checks one, and its customer's
/// kept events from before it.
async fn pasted_order(
    store: &dyn Store,
    caller: &Caller,
    event: &serde_json::Value,
) -> Result<(Vec<Event>, Event), ApiError> {
    let bytes = serde_json::to_vec(event).map_err(|e| ApiError::invalid(e.to_string()))?;
    let order =
        parse_event(&bytes).map_err(|r| ApiError::invalid(format!("event: {}", r.message)))?;
    let EventBody::OrderPlaced(placed) = &order.body else {
        return Err(ApiError::invalid(format!(
            "event: a {} event; an order.placed event is tried",
            order.type_name()
        )));
    };
    if !caller.may_see(&placed.warehouse) {
        return Err(ApiError::forbidden(format!(
            "this token is limited to some warehouses, and {} is not among them",
            placed.warehouse
        )));
    }
    let kept = store
        .customer_kept_events(&placed.customer.id, MAX_HISTORY)
        .await
        .map_err(ApiError::store)?;
    let history = history_before(kept, &order).map_err(ApiError::store)?;
    Ok((history, order))
}

/// The edited rules, or 422 with the findings.
async fn valid_rules(workbench: &Workbench, files: Edits) -> Result<Arc<RuleSet>, ApiError> {
    let loaded = load(workbench, files).await?;
    match loaded.rules {
        Some(rules) => Ok(Arc::new(rules)),
        None => Err(ApiError::invalid_rules(loaded.diagnostics)),
    }
}

/// An edit to backtest, over the last `days` days of the store's kept events.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    #[serde(default)]
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub files: Edits,
    /// 1 to 3650; default 30.
    #[schema(minimum = 1, maximum = 3650)]
    pub days: Option<u32>,
}

/// Starts a backtest of the edit against the rules in force, in the background; read its
/// progress and result at the `Location` answered.
#[utoipa::path(
    post,
    path = "/v1/rules/backtests",
    tag = "workbench",
    security(("bearer" = [])),
    request_body = BacktestRequest,
    responses(
        (status = 202, description = "Started", body = BacktestView,
         headers(("Location" = String, description = "Where to read it"))),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "A station's token, or one limited to some warehouses", body = ErrorBody),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "Not sent as application/json", body = ErrorBody),
        (status = 422, description = "The edit does not validate, or days is out of range", body = ErrorBody),
        (status = 429, description = "Another backtest is running", body = ErrorBody),
    )
)]
pub async fn start_backtest(
    Marketer(caller): Marketer,
    State(workbench): State<Arc<Workbench>>,
    State(store): State<Arc<dyn Store>>,
    State(env): State<Arc<dyn RulesInForce>>,
    JsonBody(request): JsonBody<BacktestRequest>,
) -> Result<impl IntoResponse, ApiError> {
    if caller.warehouses.is_some() {
        return Err(ApiError::forbidden(
            "this token is limited to some warehouses; a backtest replays every warehouse's orders and needs a token without [[http.tokens]] warehouses",
        ));
    }
    let days = request.days.unwrap_or(crate::backtest::DEFAULT_STORE_DAYS);
    if !(1..=3650).contains(&days) {
        return Err(ApiError::invalid("days: expected 1 to 3650"));
    }
    let rules = valid_rules(&workbench, request.files).await?;
    let current = env.in_force();
    let edited = Arc::new(DecideEnv {
        rules,
        key: current.key.clone(),
        shop: current.shop.clone(),
    });
    let view = workbench
        .backtests
        .start(store, current, edited, days)
        .map_err(|_| {
            ApiError::too_many_requests(
                "a backtest is running; wait for it to finish, then start this one",
            )
        })?;
    let location = format!("/v1/rules/backtests/{}", view.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view),
    ))
}

/// A backtest's progress, then its figures before and after the edit.
#[utoipa::path(
    get,
    path = "/v1/rules/backtests/{id}",
    tag = "workbench",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "As answered when it started")),
    responses(
        (status = 200, description = "The backtest", body = BacktestView),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "A station's token", body = ErrorBody),
        (status = 404, description = "No such backtest (the service keeps the last 16)", body = ErrorBody),
    )
)]
pub async fn backtest(
    _: Marketer,
    State(workbench): State<Arc<Workbench>>,
    Path(id): Path<String>,
) -> Result<Json<BacktestView>, ApiError> {
    workbench
        .backtests
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no backtest {id} here")))
}
