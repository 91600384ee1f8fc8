//! `GET /v1/report`: the effect report as JSON for dashboards (docs/REFERENCE.md §7), for tokens
//! without a warehouse limit, answered from `crate::report::ReportCache`.

use super::caller::Marketer;
use super::error::{ApiError, ErrorBody};
use super::state::AppState;
use crate::email::RulesInForce;
use crate::report::{self, Report, ReportCache, ReportOptions};
use crate::store::Store;
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(report))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// Only customers first exposed on or after this date (YYYY-MM-DD, UTC).
    #[param(format = Date)]
    pub since: Option<String>,
    /// How long after the exposure a repeat purchase counts: whole days (1d to 999d) or
    /// weeks (1w to 99w); default 90d.
    #[param(pattern = "^([1-9][0-9]{0,2}d|[1-9][0-9]?w)$")]
    pub window: Option<String>,
}

/// The effect of each rule and follow-up: treated against held-out customers.
#[utoipa::path(
    get,
    path = "/v1/report",
    tag = "report",
    security(("bearer" = [])),
    params(ReportParams),
    responses(
        (status = 200, description = "The report (docs/REFERENCE.md §4 report shape)", body = Report),
        (status = 400, description = "A query parameter is not understood", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "A station's token, or one limited to some warehouses", body = ErrorBody),
        (status = 422, description = "A query parameter is out of range", body = ErrorBody),
        (status = 500, description = "Something went wrong on the server; the log says what", body = ErrorBody),
        (status = 503, description = "The store did not answer, or the answer took too long", body = ErrorBody),
    )
)]
pub async fn report(
    Marketer(caller): Marketer,
    State(store): State<Arc<dyn Store>>,
    State(env): State<Arc<dyn RulesInForce>>,
    State(reports): State<Arc<ReportCache>>,
    Query(params): Query<ReportParams>,
) -> Result<Json<Report>, ApiError> {
    if caller.warehouses.is_some() {
        return Err(ApiError::forbidden(
            "this token is limited to some warehouses; the report covers every warehouse and needs a token without [[http.tokens]] warehouses",
        ));
    }
    let options = ReportOptions {
        since: params
            .since
            .as_deref()
            .map(report::parse_since)
            .transpose()
            .map_err(|e| ApiError::invalid(format!("since: {e}")))?,
        window_days: match params.window.as_deref() {
            Some(w) => {
                report::parse_window(w).map_err(|e| ApiError::invalid(format!("window: {e}")))?
            }
            None => report::DEFAULT_WINDOW_DAYS,
        },
        target_uplift_bp: report::DEFAULT_TARGET_UPLIFT_BP,
    };
    let env = env.in_force();
    let report = reports
        .get_or_build(&*store, &env.rules, options)
        .await
        .map_err(ApiError::store)?;
    Ok(Json(Report::clone(&report)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::IntoParams;

    #[test]
    fn the_document_states_the_window_pattern_parsed() {
        let params = ReportParams::into_params(|| None);
        let window = params
            .iter()
            .find(|p| p.name == "window")
            .expect("a window parameter");
        let schema = serde_json::to_value(&window.schema).expect("schema");
        assert_eq!(schema["pattern"], report::WINDOW_PATTERN, "{schema}");
    }
}
