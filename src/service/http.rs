//! The service's own HTTP routes: `/healthz`, `/readyz` (store and Kafka reachable, rules
//! loaded, as JSON) and `/metrics` (Prometheus text). The station API mounts beside them.

use super::Shared;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            observe,
        ))
        .with_state(shared)
}

/// Counts requests by route and status and times them; the route is the matched pattern, so
/// ids in paths never become labels.
async fn observe(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(req).await;
    shared
        .metrics
        .http_seconds
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    shared
        .metrics
        .http_requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    response
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store answers, Kafka was reachable at the last try, and rules are loaded.
/// Rules that failed to reload do not make it unready (the previous ones keep deciding, and
/// taking the instance out of service over a marketer's typo would stop the packing
/// stations); the detail says why under `rules.error`.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let store = match shared.store.ping().await {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    let kafka_ok = shared.kafka_ok.load(Ordering::Relaxed);
    let (rules_version, rules_error) = {
        let r = shared.readiness.lock().unwrap_or_else(|e| e.into_inner());
        (r.rules_version.clone(), r.rules_error.clone())
    };
    let ready = store["ok"] == true && kafka_ok;
    let body = json!({
        "ready": ready,
        "store": store,
        "kafka": {"ok": kafka_ok},
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

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}
