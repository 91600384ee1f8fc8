//! `packwell run`: the service. It consumes `orders`, decides through the store's batch path,
//! relays the outbox to Kafka, serves HTTP, reloads rules when their files change, and removes
//! old rows in the background. Each part has its own module; this one starts and stops them.
//!
//! It also sends due follow-up e-mails (`crate::email::Worker`), and creates issued coupon
//! codes in the shop's checkout when a connector syncs them ([`coupon_sync`]).
//!
//! Shutdown (SIGINT, SIGTERM, or the caller's token): the consumer applies what it has read
//! and leaves the group, the relay sends what the outbox still holds (bounded), the e-mail
//! sender finishes the hand-overs under way, the HTTP server finishes its requests.

mod consumer;
mod coupon_sync;
mod edge;
mod relay;
pub mod reload;
pub use edge::run_edge;

use crate::config::Config;
use crate::coupon::CouponKey;
use crate::http::{self, AppState, Readiness};
use crate::kafka::{consumer_config, fast_consumer_config, producer_config};
use crate::metrics::Metrics;
use crate::rules::load_rules;
use crate::station::InsertListCache;
use crate::store::{DecideEnv, Store};
use arc_swap::ArcSwap;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::FutureProducer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The consumer's knobs, from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub batch_max: usize,
    pub batch_wait: Duration,
    pub max_outbox_backlog: i64,
    pub max_event_age: chrono::Duration,
    /// Events larger than this go to the DLQ unparsed (`too_large`).
    pub max_event_bytes: usize,
}

/// State shared by the consumer thread, the relay, the watcher and the e-mail sender. The HTTP
/// handlers see only the parts in `crate::http::AppState`.
pub struct ServiceState {
    pub store: Arc<dyn Store>,
    pub env: ArcSwap<DecideEnv>,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// The runtime the consumer thread blocks on for store calls.
    pub runtime: tokio::runtime::Handle,
    pub stop: CancellationToken,
    pub kafka_ok: AtomicBool,
    /// Outbox rows not yet relayed, as the relay last saw them.
    pub backlog: AtomicI64,
    pub relay_wake: Arc<tokio::sync::Notify>,
    pub consumer_done: AtomicBool,
    /// Set when stopping must not wait for a store that does not answer.
    pub abandon: AtomicBool,
    pub readiness: Mutex<Readiness>,
    /// Insert lists answered from memory for a moment; a batch forgets the orders it changed.
    pub insert_lists: Arc<InsertListCache>,
}

impl ServiceState {
    /// A worker died (a panic, or an end nobody asked for): `/readyz` answers 503 naming it,
    /// and the service stops, to exit non-zero so that its supervisor restarts it. The first
    /// failure is the one reported.
    pub fn fail(&self, worker: &str, why: &str) {
        tracing::error!(worker, why, "a worker failed; the service stops");
        {
            let mut r = self.readiness.lock().unwrap_or_else(|e| e.into_inner());
            if r.failed_worker.is_none() {
                r.failed_worker = Some(format!("{worker}: {why}"));
            }
        }
        self.stop.cancel();
    }

    fn failure(&self) -> Option<String> {
        self.readiness
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed_worker
            .clone()
    }
}

/// Runs a task; its panic, or its end before the service stops, fails the service.
async fn supervised(
    shared: Arc<ServiceState>,
    worker: &'static str,
    task: impl Future<Output = ()>,
) {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(task).catch_unwind().await {
        Ok(()) if shared.stop.is_cancelled() => {}
        Ok(()) => shared.fail(worker, "it ended while the service was running"),
        Err(panic) => shared.fail(
            worker,
            &format!("panicked: {}", crate::panic_message(&*panic)),
        ),
    }
}

/// Waits for a task until `deadline`; past it the task is abandoned (aborted) and the log says
/// so. A task that panicked fails the service (it exits non-zero), like a worker that died
/// while running. Returns whether it finished.
async fn finish_by<T>(
    shared: &ServiceState,
    deadline: tokio::time::Instant,
    what: &str,
    mut task: tokio::task::JoinHandle<T>,
) -> bool {
    match tokio::time::timeout_at(deadline, &mut task).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            if e.is_panic() {
                let why = format!("panicked: {}", crate::panic_message(&*e.into_panic()));
                shared.fail(what, &why);
            }
            true
        }
        Err(_) => {
            task.abort();
            tracing::warn!("{what} did not stop within [service] shutdown_timeout; abandoned");
            false
        }
    }
}

/// The e-mail sender and the HTTP handlers read the rules, key and shop in force, like the
/// consumer.
impl crate::email::RulesInForce for ServiceState {
    fn in_force(&self) -> Arc<DecideEnv> {
        self.env.load_full()
    }
}

impl http::Health for ServiceState {
    fn kafka_ok(&self) -> bool {
        self.kafka_ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn readiness(&self) -> Readiness {
        self.readiness
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// What the service is started with.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    pub brokers: String,
    /// 2 s group sessions (the embedded broker and tests); a real cluster needs the default.
    pub fast_group: bool,
    pub rules_dir: PathBuf,
    pub templates_dir: PathBuf,
}

/// What a started service tells its caller.
#[derive(Debug, Clone)]
pub struct Started {
    pub http: SocketAddr,
    pub rules_version: String,
    pub store: String,
    /// Events read from `orders` so far, and orders decided (the metrics' own counters):
    /// `run --demo` paces its sending on the first and tells from both when all is decided.
    pub consumed: prometheus::IntCounter,
    pub decided: prometheus::IntCounter,
}

/// Runs the service until `stop` is cancelled. `started` receives the bound addresses once
/// everything runs. Errors at start-up are returned as a sentence for the operator.
pub async fn run(
    opts: Options,
    stop: CancellationToken,
    started: Option<tokio::sync::oneshot::Sender<Started>>,
) -> Result<(), String> {
    let config = &opts.config;
    let settings = config.settings();
    let outcome = load_rules(&opts.rules_dir, &opts.templates_dir);
    for w in outcome.warnings() {
        tracing::warn!("{w}");
    }
    let errors: Vec<String> = outcome.errors().map(|e| e.to_string()).collect();
    let rules = outcome
        .rules
        .ok_or_else(|| format!("the rules are invalid:\n{}", errors.join("\n")))?;
    let store_url = config.store_url();
    let store = crate::store::open(&store_url).await.map_err(|e| {
        format!(
            "store {}: {e}",
            crate::config::mask_url_password(&store_url)
        )
    })?;
    let key = CouponKey::read_or_create(&config.coupons.key_file).map_err(|e| e.to_string())?;
    store
        .check_key_fingerprint(&key.fingerprint())
        .await
        .map_err(|e| e.to_string())?;
    let rules_version = rules.version.clone();
    let shutdown_timeout = settings.service.shutdown_timeout;
    let retention = settings.store.retention;
    // Built here rather than when loading: `run --demo` may have added a token since.
    let tokens = crate::config::Tokens::from_config(&config.http.tokens)?;
    if tokens.is_empty() {
        tracing::warn!(
            "no [http] tokens are configured: the station API answers 401 to every request"
        );
    }
    let shared = Arc::new(ServiceState {
        store: store.clone(),
        env: ArcSwap::from_pointee(DecideEnv {
            rules: Arc::new(rules),
            key,
            shop: config.shop(),
        }),
        metrics: Arc::new(Metrics::new()),
        settings: Settings {
            batch_max: settings.kafka.batch_max,
            batch_wait: settings.kafka.batch_wait,
            max_outbox_backlog: settings.kafka.max_outbox_backlog,
            max_event_age: settings.decide.max_event_age,
            max_event_bytes: settings.kafka.max_event_bytes,
        },
        runtime: tokio::runtime::Handle::current(),
        stop: stop.clone(),
        kafka_ok: AtomicBool::new(true),
        backlog: AtomicI64::new(0),
        relay_wake: Arc::new(tokio::sync::Notify::new()),
        consumer_done: AtomicBool::new(false),
        abandon: AtomicBool::new(false),
        readiness: Mutex::new(Readiness {
            rules_version: rules_version.clone(),
            rules_error: None,
            failed_worker: None,
            consumer_error: None,
        }),
        insert_lists: Arc::new(InsertListCache::new(
            settings.http.cache_ttl,
            settings.http.cache_entries,
        )),
    });

    let listener = tokio::net::TcpListener::bind(settings.http.listen)
        .await
        .map_err(|e| {
            format!(
                "[http] listen = {:?}: cannot listen there: {e}",
                config.http.listen
            )
        })?;
    let http_addr = listener.local_addr().map_err(|e| e.to_string())?;

    let producer: FutureProducer = producer_config(&opts.brokers)
        .create()
        .map_err(|e| format!("Kafka producer for {}: {e}", opts.brokers))?;
    let shops = shop_clients(&settings.connectors)?;
    let webhooks = crate::connector::Webhooks::new(
        &settings.connectors,
        |shop| shops.get(&shop.platform).map(|c| c.products()),
        store.clone(),
        producer.clone(),
        shared.metrics.clone(),
        shared.relay_wake.clone(),
    )?;
    let mut consumer_cfg = if opts.fast_group {
        fast_consumer_config(&opts.brokers, &config.kafka.group)
    } else {
        let mut c = consumer_config(&opts.brokers, &config.kafka.group);
        let session = settings.kafka.session_timeout.as_millis();
        c.set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 4).to_string());
        c
    };
    consumer_cfg.set("statistics.interval.ms", "5000");
    let consumer: BaseConsumer<consumer::Rebalancer> = consumer_cfg
        .create_with_context(consumer::Rebalancer::new(shared.clone()))
        .map_err(|e| format!("Kafka consumer for {}: {e}", opts.brokers))?;

    let watcher = reload::watch(
        shared.clone(),
        opts.rules_dir.clone(),
        opts.templates_dir.clone(),
    );
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("{e}: rule changes need a restart");
            None
        }
    };

    let consumer_shared = shared.clone();
    let consumer_thread = std::thread::Builder::new()
        .name("packwell-consumer".into())
        // Deciding evaluates rule expressions and renders notes, which recurse; their depth is
        // bounded when rules load, and this stack leaves room to spare.
        .stack_size(WORKER_STACK)
        .spawn(move || {
            let run =
                std::panic::AssertUnwindSafe(|| consumer::run(consumer, consumer_shared.clone()));
            match std::panic::catch_unwind(run) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => consumer_shared.fail("consumer", &e),
                Err(panic) => consumer_shared.fail(
                    "consumer",
                    &format!("panicked: {}", crate::panic_message(&*panic)),
                ),
            }
        })
        .map_err(|e| format!("cannot start the consumer thread: {e}"))?;
    // The relay drains the outbox within half the bound once consuming has stopped; past the
    // bound it is abandoned and unsent rows wait in the outbox for the next start.
    let relay = tokio::spawn(supervised(
        shared.clone(),
        "relay",
        relay::run(producer, shared.clone(), shutdown_timeout / 2),
    ));
    let retention_task = tokio::spawn(supervised(
        shared.clone(),
        "retention",
        retention_loop(store.clone(), retention, stop.clone()),
    ));
    if config.http.public_url.is_none() {
        tracing::warn!(
            "[http] public_url is not set: unsubscribe links in e-mails point at {}, which customers cannot reach from outside",
            config.public_url()
        );
    }
    let provider = crate::email::provider::from_settings(&settings.email)?;
    let sender = Arc::new(crate::email::Worker::new(
        store.clone(),
        shared.clone(),
        Arc::from(provider),
        crate::email::WorkerSettings::from_config(config),
        shared.metrics.email.clone(),
        Arc::new(crate::email::SystemClock),
    ));
    let sender_task = tokio::spawn(supervised(
        shared.clone(),
        "e-mail sender",
        sender.run(stop.clone()),
    ));
    let sync_task = coupon_sync::start(&shared, &opts, &shops)?;
    let app = http::router(
        AppState {
            store: store.clone(),
            env: shared.clone(),
            tokens: Arc::new(tokens),
            insert_lists: shared.insert_lists.clone(),
            reports: Default::default(),
            metrics: shared.metrics.clone(),
            health: shared.clone(),
            outbox_written: shared.relay_wake.clone(),
            webhooks: Arc::new(webhooks),
            workbench: Arc::new(crate::workbench::Workbench::new(
                crate::workbench::Folders {
                    rules: opts.rules_dir.clone(),
                    templates: opts.templates_dir.clone(),
                },
                config.email.from.clone(),
                config.public_url(),
            )),
        },
        http::Limits {
            max_body_bytes: settings.http.max_body_bytes,
            max_webhook_bytes: settings.connectors.max_body_bytes,
            request_timeout: settings.http.request_timeout,
        },
    );
    // HTTP has a token of its own: it keeps answering (`/readyz` with 503) while the rest
    // stops, and closes last.
    let http_stop = CancellationToken::new();
    let server_stop = http_stop.clone();
    let server_shared = shared.clone();
    let header_timeout = settings.http.request_timeout;
    let server = tokio::spawn(async move {
        let serve = http::serve(
            listener,
            app,
            header_timeout,
            http::MAX_CONNECTIONS,
            server_stop.clone(),
        );
        match serve.await {
            Ok(()) if server_stop.is_cancelled() => {}
            Ok(()) => server_shared.fail("http", "the server ended while the service was running"),
            Err(e) => server_shared.fail("http", &e.to_string()),
        }
    });

    if let Some(tx) = started {
        let _ = tx.send(Started {
            http: http_addr,
            rules_version,
            store: crate::config::mask_url_password(&store_url),
            consumed: shared.metrics.consumed.clone(),
            decided: shared.metrics.decided.clone(),
        });
    }

    stop.cancelled().await;
    let began = tokio::time::Instant::now();
    let deadline = began + shutdown_timeout;
    tracing::info!(bound_s = shutdown_timeout.as_secs(), "stopping");
    // The consumer applies what it read; a store that does not answer within half the bound
    // is given up on (the events are read again at the next start).
    let joined = tokio::task::spawn_blocking(move || consumer_thread.join());
    tokio::pin!(joined);
    tokio::select! {
        _ = &mut joined => {}
        _ = tokio::time::sleep_until(began + shutdown_timeout / 2) => {
            shared.abandon.store(true, std::sync::atomic::Ordering::Relaxed);
            // Closing the Kafka consumer may wait on a broker that is gone: not past the bound.
            if tokio::time::timeout_at(began + shutdown_timeout * 3 / 4, &mut joined).await.is_err() {
                tracing::warn!("the consumer did not stop within [service] shutdown_timeout; abandoned");
            }
        }
    }
    shared
        .consumer_done
        .store(true, std::sync::atomic::Ordering::Relaxed);
    shared.relay_wake.notify_one();
    // The relay drains and the e-mails being handed over finish side by side, both within
    // the bound (none is started); one cut off mid-send is found in `sending` at the next
    // start.
    retention_task.abort();
    let sync_done = async {
        if let Some(task) = sync_task {
            finish_by(&shared, deadline, "the coupon sync", task).await;
        }
    };
    let (relayed, _, _) = tokio::join!(
        finish_by(&shared, deadline, "the relay", relay),
        finish_by(&shared, deadline, "the e-mail sender", sender_task),
        sync_done,
    );
    if !relayed {
        tracing::warn!("outbox rows not yet sent stay in the store; they go out at the next start");
    }
    if shared.failure().is_some() {
        // Unready, for a moment, before the port closes: an orchestrator or load balancer
        // polling `/readyz` sees why the instance goes.
        tokio::time::sleep_until((tokio::time::Instant::now() + FAILED_GRACE).min(deadline)).await;
    }
    http_stop.cancel();
    finish_by(&shared, deadline, "the HTTP server", server).await;
    let failure = shared.failure();
    // Stop watching before the state goes, on this runtime.
    drop(_watcher);
    drop(shared);
    tracing::info!(ms = began.elapsed().as_millis() as u64, "stopped");
    match failure {
        Some(f) => Err(format!("a worker failed: {f}")),
        None => Ok(()),
    }
}

/// One API client per shop whose section gives the API's settings: the webhooks' product
/// look-ups and the coupon sync share it, so that `max_rps` bounds their calls together.
pub(crate) type ShopClients =
    std::collections::HashMap<crate::config::Platform, crate::connector::api::ShopClient>;

fn shop_clients(connectors: &crate::config::ConnectorSettings) -> Result<ShopClients, String> {
    let mut clients = ShopClients::new();
    for shop in [&connectors.shopify, &connectors.woocommerce]
        .into_iter()
        .flatten()
    {
        if let Some(client) = crate::connector::api::client_for(shop)? {
            clients.insert(shop.platform, client);
        }
    }
    Ok(clients)
}

/// Where a connector looks products up, for categories that come from the shop's API, for the
/// commands that map webhooks on their own (`ingest`, `ingest replay`, `dlq replay`).
pub fn product_directory(
    shop: &crate::config::ShopConnector,
) -> Option<Arc<dyn crate::connector::ProductDirectory>> {
    match crate::connector::api::client_for(shop) {
        Ok(client) => client.map(|c| c.products()),
        Err(e) => {
            tracing::warn!("[connectors.{}]: {e}", shop.platform);
            None
        }
    }
}

/// The stack of the threads that decide (rule expressions and templates recurse; their depth
/// is bounded when rules load).
pub const WORKER_STACK: usize = 16 * 1024 * 1024;

/// How long `/readyz` keeps answering 503 after a worker failed, before the process exits.
const FAILED_GRACE: Duration = Duration::from_secs(1);

/// Removes decisions, processed event ids, e-mail jobs and sent outbox rows older than the
/// retention, in small batches, every ten minutes.
async fn retention_loop(
    store: Arc<dyn Store>,
    retention: chrono::Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
        }
        let cutoff = (chrono::Utc::now() - retention).timestamp();
        match crate::store::purge(&*store, cutoff, 1000).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "retention: old rows removed"),
            Err(e) => tracing::warn!(%e, "retention"),
        }
    }
}
