//! `packwell ingest`: only the shop webhook routes (docs/REFERENCE.md §8), for deployments
//! that keep that edge apart from the service. It produces to `orders` and reads delivery ids
//! and stored orders from the store the service writes, so that store must be PostgreSQL (a
//! SQLite file belongs to the one `run` beside it). It decides nothing: the dead letters it
//! writes to the outbox are sent by the service's relay.

use crate::config::Config;
use crate::connector::Webhooks;
use crate::http::{self, EdgeState, Health, Readiness};
use crate::kafka::{TOPIC_ORDERS, producer_config};
use crate::metrics::Metrics;
use rdkafka::producer::{FutureProducer, Producer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the edge checks that Kafka answers, for `/readyz`.
const KAFKA_CHECK: Duration = Duration::from_secs(10);

/// What `/readyz` reports for the edge: Kafka reachable at the last check, not stopping.
struct EdgeHealth {
    kafka_ok: AtomicBool,
    stop: CancellationToken,
}

impl Health for EdgeHealth {
    fn kafka_ok(&self) -> bool {
        self.kafka_ok.load(Ordering::Relaxed)
    }

    fn readiness(&self) -> Readiness {
        Readiness::default()
    }

    fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// Serves the webhook routes on `listen` until `stop`; `started` receives the bound address.
/// Errors at start-up are a sentence for the operator.
pub async fn run_edge(
    config: &Config,
    brokers: &str,
    listen: SocketAddr,
    stop: CancellationToken,
    started: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), String> {
    let settings = config.settings();
    let store_url = config.store_url();
    if crate::store::sqlite_file(&store_url).is_some() {
        return Err(format!(
            "`packwell ingest` needs the PostgreSQL store ([store] url = \"postgres://…\"), not {}: it reads delivery ids and stored orders beside the service",
            crate::config::mask_url_password(&store_url)
        ));
    }
    if settings.connectors.shopify.is_none() && settings.connectors.woocommerce.is_none() {
        return Err(
            "no connector is configured: add [connectors.shopify] or [connectors.woocommerce]"
                .into(),
        );
    }
    let store = crate::store::open(&store_url).await.map_err(|e| {
        format!(
            "store {}: {e}",
            crate::config::mask_url_password(&store_url)
        )
    })?;
    let producer: FutureProducer = producer_config(brokers)
        .create()
        .map_err(|e| format!("Kafka producer for {brokers}: {e}"))?;
    let metrics = Arc::new(Metrics::new());
    let webhooks = Webhooks::new(
        &settings.connectors,
        super::product_directory,
        store.clone(),
        producer.clone(),
        metrics.clone(),
        // No relay here: the service's relay sends the dead letters on its next round.
        Arc::new(tokio::sync::Notify::new()),
    )?;
    let health = Arc::new(EdgeHealth {
        kafka_ok: AtomicBool::new(true),
        stop: stop.clone(),
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("--listen {listen}: cannot listen there: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = http::edge_router(
        EdgeState {
            webhooks: Arc::new(webhooks),
            store,
            health: health.clone(),
            metrics,
        },
        http::Limits {
            max_body_bytes: settings.http.max_body_bytes,
            max_webhook_bytes: settings.connectors.max_body_bytes,
            request_timeout: settings.http.request_timeout,
        },
    );
    let checker = tokio::spawn(watch_kafka(producer, health, stop.clone()));
    if let Some(tx) = started {
        let _ = tx.send(addr);
    }
    let served = http::serve(
        listener,
        app,
        settings.http.request_timeout,
        http::MAX_CONNECTIONS,
        stop,
    )
    .await;
    checker.abort();
    served.map_err(|e| format!("the HTTP server: {e}"))
}

/// Keeps `kafka_ok` current: the broker answers a metadata request for `orders`.
async fn watch_kafka(producer: FutureProducer, health: Arc<EdgeHealth>, stop: CancellationToken) {
    loop {
        let client = producer.clone();
        let ok = tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(Some(TOPIC_ORDERS), Duration::from_secs(5))
                .is_ok()
        })
        .await
        .unwrap_or(false);
        if ok != health.kafka_ok.swap(ok, Ordering::Relaxed) {
            tracing::warn!(reachable = ok, "Kafka reachability changed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(KAFKA_CHECK) => {}
        }
    }
}
