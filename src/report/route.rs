//! `GET /v1/report`: the effect report as JSON for dashboards (CONTRACT §7), for tokens without
//! a warehouse limit. A report reads the whole store, so the service keeps each one for a
//! minute and computes one at a time: a dashboard polling every few seconds, or ten of them,
//! costs the store one report a minute.

use super::{Report, ReportOptions};
use crate::service::Shared;
use crate::station::{ApiError, Caller, ErrorBody};
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long a computed report is served again.
pub const REPORT_TTL: Duration = Duration::from_secs(60);

pub fn routes() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new().routes(routes!(report))
}

/// A report's options and the version of the rules it was computed with.
type CacheKey = (ReportOptions, String);

/// Reports computed lately, by their options and the rules' version; one computed at a time.
#[derive(Default)]
pub struct ReportCache {
    entries: std::sync::Mutex<HashMap<CacheKey, (Instant, Arc<Report>)>>,
    /// Held while a report is computed: the store computes one at a time, and a request that
    /// waited finds the report it wanted in `entries` when its turn comes.
    computing: tokio::sync::Mutex<()>,
}

impl ReportCache {
    fn cached(&self, key: &CacheKey) -> Option<Arc<Report>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (at, _)| at.elapsed() < REPORT_TTL);
        entries.get(key).map(|(_, r)| r.clone())
    }

    async fn get_or_build(
        &self,
        shared: &Shared,
        options: ReportOptions,
    ) -> Result<Arc<Report>, ApiError> {
        let env = shared.env.load_full();
        let key = (options, env.rules.version.clone());
        if let Some(r) = self.cached(&key) {
            return Ok(r);
        }
        let _turn = self.computing.lock().await;
        if let Some(r) = self.cached(&key) {
            return Ok(r);
        }
        let report = super::build(&*shared.store, Some(&env.rules), options)
            .await
            .map_err(ApiError::store)?;
        let report = Arc::new(report);
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (Instant::now(), report.clone()));
        Ok(report)
    }
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
        (status = 200, description = "The report (CONTRACT §4 report shape)", body = Report),
        (status = 400, description = "A query parameter is not understood", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "The token is limited to some warehouses", body = ErrorBody),
        (status = 422, description = "A query parameter is out of range", body = ErrorBody),
        (status = 500, description = "Something went wrong on the server; the log says what", body = ErrorBody),
        (status = 503, description = "The store did not answer, or the answer took too long", body = ErrorBody),
    )
)]
pub async fn report(
    caller: Caller,
    State(shared): State<Arc<Shared>>,
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
            .map(super::parse_since)
            .transpose()
            .map_err(|e| ApiError::invalid(format!("since: {e}")))?,
        window_days: match params.window.as_deref() {
            Some(w) => {
                super::parse_window(w).map_err(|e| ApiError::invalid(format!("window: {e}")))?
            }
            None => super::DEFAULT_WINDOW_DAYS,
        },
    };
    let report = shared.reports.get_or_build(&shared, options).await?;
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
        assert_eq!(schema["pattern"], super::super::WINDOW_PATTERN, "{schema}");
    }
}
