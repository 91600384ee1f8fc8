//! The service's HTTP server: the station API (`crate::station`), `/healthz`, `/readyz`
//! (store and Kafka reachable, rules loaded, as JSON), `/metrics` (Prometheus text) and the
//! OpenAPI document generated from the handlers, at `/openapi.json`. Every request has a
//! body limit and a timeout, and every error answers with a JSON body.

use super::Shared;
use crate::station;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Packwell",
        description = "Packing stations fetch a parcel's inserts and card and confirm what went in; \
                       customers unsubscribe from follow-up e-mails; the e-mail provider reports \
                       bounces and complaints; operators read health, readiness and metrics."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "station", description = "Packing stations (a bearer token from `[http] tokens`)"),
        (name = "email", description = "Unsubscribe links (the signed token is the proof) and the e-mail provider's bounces and complaints (a bearer token without a warehouse limit)"),
        (name = "operations", description = "Health, readiness and metrics (no token)")
    )
)]
struct ApiDoc;

/// The bearer scheme the station routes name.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The documented routes and their OpenAPI document.
pub fn api() -> (Router<Arc<Shared>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .merge(station::routes())
        .merge(crate::email::routes::routes())
        .merge(crate::report::route::routes())
        .split_for_parts()
}

pub fn router(shared: Arc<Shared>, limits: Limits) -> Router {
    let (documented, document) = api();
    // Built once: the document does not change while the service runs.
    let document = document.to_pretty_json().unwrap_or_default();
    documented
        .route(
            "/openapi.json",
            get(move || async move { ([("content-type", "application/json")], document) }),
        )
        .route("/station", get(station::page))
        // Layers run outside-in from the last: `answer` sees every answer (it counts them,
        // marks those with order data not to be cached, errors included, and gives errors
        // the JSON body), then the timeouts and the body limit apply. A body that does not come within the timeout is
        // the client's doing (408); an answer not ready within twice the timeout is the
        // server's (503, which clients do not take as their own fault).
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(RequestBodyTimeoutLayer::new(limits.request_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout * 2,
        ))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), answer))
        .with_state(shared)
}

/// Serves HTTP/1 and HTTP/2 until `stop`, then lets open requests finish. Unlike
/// `axum::serve` it bounds the time to send a request's headers and how long an idle
/// connection stays open, so slow or silent clients cannot hold connections forever.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    tracing::warn!(%e, "accepting an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%e, "HTTP connection");
            }
        });
    }
    drop(listener);
    // Open requests finish; idle keep-alive connections are closed.
    graceful.shutdown().await;
    Ok(())
}

/// What one request may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

/// What every answer goes through, in one middleware rather than one each (each costs a
/// request a clone of the routes below it and three boxed futures): errors that are not JSON
/// yet get the JSON body ([`station::json_errors`]), answers under the private paths
/// `Cache-Control: no-store` ([`station::no_store`]), and requests are counted by route and
/// status and timed; the route is the matched pattern, so ids in paths never become labels.
async fn answer(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    // The matched path is shared (an `Arc<str>` inside); holding it costs no copy.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let private = station::is_private(req.uri().path());
    let started = Instant::now();
    let mut response = station::json_errors(next.run(req).await);
    if private {
        station::no_store(&mut response);
    }
    shared
        .metrics
        .http_seconds
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    shared
        .metrics
        .http_requests
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    response
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
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let store = match shared.store.ping().await {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    let kafka_ok = shared.kafka_ok.load(Ordering::Relaxed);
    let (rules_version, rules_error, failed, consumer_error) = {
        let r = shared.readiness.lock().unwrap_or_else(|e| e.into_inner());
        (
            r.rules_version.clone(),
            r.rules_error.clone(),
            r.failed_worker.clone(),
            r.consumer_error.clone(),
        )
    };
    // A worker that died (consumer, relay, sender, watcher) is never hidden: the process is
    // on its way out, to be restarted by its supervisor.
    let stopping = shared.stop.is_cancelled();
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
async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}
