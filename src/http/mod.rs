//! The HTTP layer of `packwell run`: the routes, one file per group (the packing stations'
//! API and page, the e-mail routes, the report, health and metrics), the state they share,
//! the error type every route answers with, the bearer-token [`Caller`](crate::config::Caller)
//! extractor, and the server itself. The OpenAPI document is generated from the handlers, at
//! `/openapi.json`. Every request has a body limit and a timeout, every error answers with a
//! JSON body, and open connections are bounded.
//!
//! Domain modules (`station`, `email`, `report`) keep their logic and know nothing of HTTP
//! state; the service builds an [`AppState`] and this module serves it.

mod caller;
mod email;
pub mod error;
pub mod health;
mod ingest;
mod report;
mod state;
mod station;
mod workbench;
mod workbench_try;

pub use error::{ApiError, ErrorBody, JsonBody, json_errors};
pub use health::{Health, Readiness};
pub use state::AppState;
pub use station::{InsertList, PackedItem, PackedRequest};

use crate::metrics::Metrics;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

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
        (name = "connectors", description = "Shop webhooks (authenticated by the platform's signature)"),
        (name = "email", description = "Unsubscribe links (the signed token is the proof) and the e-mail provider's bounces and complaints (a bearer token without a warehouse limit)"),
        (name = "report", description = "The effect report (marketer and admin tokens)"),
        (name = "workbench", description = "The marketers' workbench: rule files and templates read, validated, tried on an order, backtested and saved (marketer and admin tokens)"),
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

/// The documented routes and their OpenAPI document, in three parts by body limit: the API's,
/// the shop webhooks' and the workbench's (it sends whole rule files).
pub struct Api {
    pub routes: Router<AppState>,
    pub webhooks: Router<AppState>,
    pub workbench: Router<AppState>,
    pub document: utoipa::openapi::OpenApi,
}

/// The workbench's requests carry whole rule files (each up to 1 MiB) and templates.
pub const WORKBENCH_BODY_BYTES: usize = 8 * 1024 * 1024;

pub fn api() -> Api {
    let (routes, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::routes())
        .merge(station::routes())
        .merge(email::routes())
        .merge(report::routes())
        .split_for_parts();
    let (webhooks, webhook_document) = ingest::routes().split_for_parts();
    document.merge(webhook_document);
    let (workbench, workbench_document) = workbench::routes()
        .merge(workbench_try::routes())
        .split_for_parts();
    document.merge(workbench_document);
    document.merge(<workbench::FileRoutesDoc as OpenApi>::openapi());
    Api {
        routes,
        webhooks,
        workbench: workbench.merge(workbench::file_routes()),
        document,
    }
}

/// Every route, with the limits and the one middleware every answer goes through.
pub fn router(state: AppState, limits: Limits) -> Router {
    let api = api();
    // Built once: the document does not change while the service runs.
    let document = api.document.to_pretty_json().unwrap_or_default();
    let routes = api
        .routes
        .route(
            "/openapi.json",
            get(move || async move { ([("content-type", "application/json")], document) }),
        )
        .route("/station", get(station::page))
        .route("/workbench", get(workbench::page))
        .route("/workbench/editor.js", get(workbench::editor_js));
    let metrics = state.metrics.clone();
    let webhooks = api
        .webhooks
        .layer(RequestBodyLimitLayer::new(limits.max_webhook_bytes));
    let workbench = api
        .workbench
        .layer(RequestBodyLimitLayer::new(WORKBENCH_BODY_BYTES));
    limited(routes, webhooks.merge(workbench), limits, metrics).with_state(state)
}

/// The routes with their limits, and the one middleware every answer goes through. Layers run
/// outside-in from the last: `answer` sees every answer (it counts them, marks those with
/// order data not to be cached, errors included, and gives errors the JSON body), then the
/// timeouts and the body limit apply (`own_limits` carry their own body limit already). A body
/// that does not come within the timeout is the client's doing (408); an answer not ready
/// within twice the timeout is the server's (503, which clients do not take as their own
/// fault).
fn limited<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    own_limits: Router<S>,
    limits: Limits,
    metrics: Arc<Metrics>,
) -> Router<S> {
    routes
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .merge(own_limits)
        .layer(RequestBodyTimeoutLayer::new(limits.request_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout * 2,
        ))
        .layer(axum::middleware::from_fn_with_state(metrics, answer))
}

/// What the webhook edge (`packwell ingest`) serves from: the webhooks, and what its health
/// routes read.
#[derive(Clone, axum::extract::FromRef)]
pub struct EdgeState {
    pub webhooks: Arc<crate::connector::Webhooks>,
    pub store: Arc<dyn crate::store::Store>,
    pub health: Arc<dyn Health>,
    pub metrics: Arc<Metrics>,
}

/// The webhook edge's routes: the shop webhooks, `/healthz`, `/readyz` and `/metrics`, with
/// the same timeouts and answers as the service's.
pub fn edge_router(state: EdgeState, limits: Limits) -> Router {
    let (webhooks, _) = ingest::routes::<EdgeState>().split_for_parts();
    let (operations, _) = health::routes::<EdgeState>().split_for_parts();
    let metrics = state.metrics.clone();
    let webhooks = webhooks.layer(RequestBodyLimitLayer::new(limits.max_webhook_bytes));
    limited(operations, webhooks, limits, metrics).with_state(state)
}

/// Open connections at most: past it, accepting waits until one closes (the kernel's backlog
/// holds the newcomers), so a flood of idle connections cannot exhaust file descriptors or
/// memory. Packing stations hold a few keep-alive connections each.
pub const MAX_CONNECTIONS: usize = 4096;

/// Serves HTTP/1 and HTTP/2 until `stop`, then lets open requests finish. Unlike
/// `axum::serve` it bounds the time to send a request's headers, how long an idle connection
/// stays open and how many are open at once (`max_connections`, [`MAX_CONNECTIONS`] in the
/// service; a semaphore as in tokio's mini-redis), so slow, silent or too many clients cannot
/// hold the server. Connection tasks
/// are joined as they end; one that panicked is logged, never lost.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
    max_connections: usize,
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
    let open = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // closed: never, the semaphore lives here
            },
            Some(ended) = connections.join_next() => {
                connection_ended(ended);
                continue;
            }
            _ = stop.cancelled() => break,
        };
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
            Some(ended) = connections.join_next() => {
                connection_ended(ended);
                continue;
            }
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let _permit = permit;
            // A client that connects and sends nothing is let go after the header timeout:
            // telling HTTP/1 from HTTP/2 waits for its first bytes with no timer of its own,
            // and a silent connection must not hold one of the places for good.
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%e, "HTTP connection");
            }
        });
    }
    drop(listener);
    // Open requests finish; idle keep-alive connections are closed.
    graceful.shutdown().await;
    while let Some(ended) = connections.join_next().await {
        connection_ended(ended);
    }
    Ok(())
}

/// A connection task's end: a panic in one is a bug worth an error in the log (the server
/// goes on; the connection is gone).
fn connection_ended(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended
        && e.is_panic()
    {
        tracing::error!(
            panic = crate::panic_message(&*e.into_panic()),
            "an HTTP connection's task panicked"
        );
    }
}

/// What one request may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// `[connectors] max_body_bytes`: shop webhooks' own limit.
    pub max_webhook_bytes: usize,
    pub request_timeout: Duration,
}

/// What every answer goes through, in one middleware rather than one each (each costs a
/// request a clone of the routes below it and three boxed futures): errors that are not JSON
/// yet get the JSON body ([`json_errors`]), answers under the private paths
/// `Cache-Control: no-store` ([`no_store`]), and requests are counted by route and
/// status and timed; the route is the matched pattern, so ids in paths never become labels.
async fn answer(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    // The matched path is shared (an `Arc<str>` inside); holding it costs no copy.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let private = is_private(req.uri().path());
    let started = Instant::now();
    let mut response = json_errors(next.run(req).await);
    if private {
        no_store(&mut response);
    }
    metrics
        .http_seconds
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .http_requests
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    response
}

/// `Cache-Control: no-store` on every answer under `/v1/` and `/u/`: insert lists, cards and
/// confirmations carry coupon codes and names, the report and the unsubscribe pages the shop's
/// figures and a customer's link; no browser, proxy or CDN keeps a copy. Errors get it too, so
/// no answer under those paths depends on which route produced it. Whether `path` is one of
/// them; [`answer`] sets the header.
fn is_private(path: &str) -> bool {
    path.starts_with("/v1/") || path.starts_with("/u/")
}

/// Marks an answer to a private path (see [`is_private`]) not to be stored.
fn no_store(response: &mut Response) {
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// With room for one connection, a second is served only once the first is gone: here
    /// the first sends nothing and is let go after the header timeout, so the second's answer
    /// cannot come sooner than that (without the limit it comes at once).
    #[tokio::test]
    async fn a_connection_past_the_limit_waits_for_one_to_close() {
        let header_timeout = Duration::from_millis(300);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", get(|| async { "ok" }));
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(listener, app, header_timeout, 1, stop.clone()));
        let started = Instant::now();
        // Connected first, so accepted first (the kernel queues connections in order).
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut asking = TcpStream::connect(addr).await.unwrap();
        asking
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        asking.read_to_string(&mut answer).await.unwrap();
        let waited = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            waited >= header_timeout,
            "answered after {waited:?}, while the first connection held the only place"
        );
        // Nothing was ever sent on the first: the server has let it go.
        let mut buf = [0u8; 16];
        assert_eq!(silent.read(&mut buf).await.unwrap(), 0);
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
