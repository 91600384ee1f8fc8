//! `/healthz` (the process answers), `/readyz` (store and Kafka reachable, rules loaded, no
//! worker failed, as JSON) and `/metrics` (Prometheus text).

use crate::metrics::Metrics;
use crate::store::Store;
use axum::Json;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What `/readyz` reports about the rules and the workers.
#[derive(Debug, Default, Clone)]
pub struct Readiness {
    pub rules_version: String,
    /// The errors of the last reload that failed (the previous rules keep deciding).
    pub rules_error: Option<String>,
    /// The worker that died, and why: the service is unready and on its way out.
    pub failed_worker: Option<String>,
    /// Why batches keep failing (the store refuses them, say): the service is unready until
    /// one is applied again, so that deciding stopped is never hidden behind a "ready".
    pub consumer_error: Option<String>,
}

/// What `/readyz` asks of the running service (which implements it).
pub trait Health: Send + Sync {
    /// Kafka was reachable at the last try.
    fn kafka_ok(&self) -> bool;
    /// The rules' and workers' state, as of now.
    fn readiness(&self) -> Readiness;
    /// The service is stopping.
    fn stopping(&self) -> bool;
}

/// The documented operations routes, for the service's state or the webhook edge's
/// (`packwell ingest`).
pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<dyn Store>: FromRef<S>,
    Arc<dyn Health>: FromRef<S>,
    Arc<Metrics>: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process answers", body = Object, example = json!({"status": "ok"}))))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store answers, Kafka was reachable at the last try, rules are loaded and
/// no worker has failed.
/// Rules that failed to reload do not make it unready (the previous ones keep deciding, and
/// taking the instance out of service over a marketer's typo would stop the packing
/// stations); the detail says why under `rules.error`.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready: the store answers, Kafka was reachable, rules are loaded", body = Object),
        (status = 503, description = "Not ready; the body says which part is not", body = Object),
    ))]
async fn readyz(
    State(store): State<Arc<dyn Store>>,
    State(health): State<Arc<dyn Health>>,
) -> Response {
    let store = match store.ping().await {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    let kafka_ok = health.kafka_ok();
    let Readiness {
        rules_version,
        rules_error,
        failed_worker: failed,
        consumer_error,
    } = health.readiness();
    // A worker that died (consumer, relay, sender, watcher) is never hidden: the process is
    // on its way out, to be restarted by its supervisor.
    let stopping = health.stopping();
    let ready = store["ok"] == true
        && kafka_ok
        && failed.is_none()
        && consumer_error.is_none()
        && !stopping;
    let body = json!({
        "ready": ready,
        "stopping": stopping,
        "store": store,
        "kafka": {"ok": kafka_ok},
        "workers": {"ok": failed.is_none(), "failed": failed},
        "consumer": {"ok": consumer_error.is_none(), "error": consumer_error},
        "rules": {
            "ok": rules_error.is_none(),
            "version": rules_version,
            "error": rules_error,
        },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics, all prefixed `packwell_`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)))]
async fn metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        metrics.render(),
    )
}
