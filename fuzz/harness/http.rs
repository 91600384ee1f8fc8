//! `request_bodies`: the service's HTTP routes that take what a client sends, through the
//! real router.

use super::{EXAMPLE_ORDER, example_event, example_rules, key};
use packwell::coupon::CouponKey;
use packwell::engine::Shop;
use serde_json::Value;
use std::sync::Mutex;

/// The low three bits of the first byte pick a route of the service's HTTP API; the rest is
/// its body or a part of its path: the packing confirmation (`POST /v1/orders/O-1001/packed`,
/// an order the example rules decided), a bounce or complaint (`POST /v1/email-events`), an
/// unsubscribe link made for the rest as a customer id, an unsubscribe link with the rest as
/// its token (the page, then the one-click `POST`), a confirmation, the insert list and the
/// card of the order id in the rest. The real router runs in this process on an in-memory
/// SQLite store.
pub fn request_bodies(data: &[u8]) {
    request_status(data);
}

/// [`request_bodies`], with the status the request was answered with (`None` for no input).
pub fn request_status(data: &[u8]) -> Option<u16> {
    let (&selector, rest) = data.split_first()?;
    Some(with_api(|api| request(api, selector, rest)))
}

fn request(api: &HttpApi, selector: u8, rest: &[u8]) -> u16 {
    let json = "application/json";
    let (method, path, body, content_type) = match selector & 7 {
        0 => (
            "POST",
            "/v1/orders/O-1001/packed".to_string(),
            rest.to_vec(),
            json,
        ),
        1 => ("POST", "/v1/email-events".to_string(), rest.to_vec(), json),
        2 => {
            let customer = String::from_utf8_lossy(rest);
            let token = packwell::email::token::unsubscribe_token(&api.key, &customer);
            let body = b"List-Unsubscribe=One-Click".to_vec();
            (
                "POST",
                format!("/u/{token}"),
                body,
                "application/x-www-form-urlencoded",
            )
        }
        3 => (
            "GET",
            format!("/u/{}", percent_encode(rest)),
            Vec::new(),
            "text/plain",
        ),
        4 => (
            "POST",
            format!("/u/{}", percent_encode(rest)),
            Vec::new(),
            "text/plain",
        ),
        5 => {
            let path = format!("/v1/orders/{}/packed", percent_encode(rest));
            (
                "POST",
                path,
                br#"{"station":"fuzz","inserts":[]}"#.to_vec(),
                json,
            )
        }
        6 => (
            "GET",
            format!("/v1/orders/{}/inserts", percent_encode(rest)),
            Vec::new(),
            json,
        ),
        _ => (
            "GET",
            format!("/v1/orders/{}/card", percent_encode(rest)),
            Vec::new(),
            json,
        ),
    };
    let (status, is_json, answer) = api.call(method, &path, body, content_type);
    assert!(
        status != 500,
        "{method} {path} answered 500: {}",
        String::from_utf8_lossy(&answer)
    );
    if path.starts_with("/v1/") && status >= 400 {
        assert!(
            is_json,
            "{method} {path} answered {status} without a JSON body"
        );
        serde_json::from_slice::<Value>(&answer).unwrap_or_else(|e| {
            panic!("{method} {path} answered {status} with a body that is not JSON: {e}")
        });
    }
    status
}

/// Every byte outside the unreserved set of RFC 3986 as `%XX`, so any input makes a path.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const TOKEN: &str = "fuzz-station-token";

/// Requests one store serves before a fresh one replaces it: the bounces and unsubscribes of
/// millions of inputs would otherwise grow it without end.
const REQUESTS_PER_STORE: u32 = 100_000;

/// The service's router on an in-memory SQLite store holding the example order, decided.
/// (Fields drop in this order: the router and its store before their runtime.)
struct HttpApi {
    router: axum::Router,
    key: CouponKey,
    runtime: tokio::runtime::Runtime,
}

/// Runs `f` with the router, started on first use and renewed every [`REQUESTS_PER_STORE`].
fn with_api<T>(f: impl FnOnce(&HttpApi) -> T) -> T {
    static API: Mutex<Option<(HttpApi, u32)>> = Mutex::new(None);
    let mut slot = API.lock().unwrap_or_else(|e| e.into_inner());
    if slot
        .as_ref()
        .is_none_or(|(_, served)| *served >= REQUESTS_PER_STORE)
    {
        *slot = None;
        *slot = Some((HttpApi::start(), 0));
    }
    let (api, served) = slot.as_mut().expect("started above");
    *served += 1;
    f(api)
}

impl HttpApi {
    fn start() -> HttpApi {
        use packwell::http::{self, AppState, Health, Readiness};
        use packwell::metrics::Metrics;
        use packwell::store::{Batch, BatchItem, DecideEnv, Fence};
        use std::sync::Arc;
        use std::time::Duration;

        /// A service that is always ready: the routes are what is fuzzed.
        struct Ready;
        impl Health for Ready {
            fn kafka_ok(&self) -> bool {
                true
            }
            fn readiness(&self) -> Readiness {
                Readiness::default()
            }
            fn stopping(&self) -> bool {
                false
            }
        }

        // Several test threads may send requests at once (the fuzzer sends one at a time).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let store = runtime
            .block_on(packwell::store::open(":memory:"))
            .expect("an in-memory SQLite store");
        let env = DecideEnv {
            rules: Arc::new(example_rules().clone()),
            key: key().clone(),
            shop: Shop::default(),
        };
        let batch = Batch {
            fence: Fence::None,
            items: vec![BatchItem {
                offset: 0,
                key: Some(b"C-1001".to_vec()),
                value: EXAMPLE_ORDER.as_bytes().to_vec(),
                event: Ok(example_event()),
                decide: true,
            }],
        };
        runtime
            .block_on(store.apply_batch(&batch, &env))
            .expect("the example order is decided");
        let tokens = packwell::config::Tokens::from_config(&[packwell::config::TokenConfig {
            name: "fuzz".into(),
            token: Some(TOKEN.into()),
            token_sha256: None,
            warehouses: None,
            role: None,
        }])
        .expect("a token");
        // A Shopify connector on, so that webhooks reach the signature check; the producer
        // connects to nothing (a request never gets past the signature).
        let connectors = packwell::config::Config::load(
            None,
            [(
                "PACKWELL_CONNECTORS_SHOPIFY_WEBHOOK_SECRETS".to_string(),
                "fuzz-secret".to_string(),
            )],
        )
        .expect("a configuration")
        .settings()
        .connectors
        .clone();
        let producer: rdkafka::producer::FutureProducer =
            packwell::kafka::producer_config("127.0.0.1:9")
                .create()
                .expect("a producer");
        let metrics = Arc::new(Metrics::new());
        let webhooks = runtime
            .block_on(async {
                packwell::connector::Webhooks::new(
                    &connectors,
                    |_| None,
                    store.clone(),
                    producer,
                    metrics.clone(),
                    Default::default(),
                )
            })
            .expect("the webhooks");
        let router = http::router(
            AppState {
                store,
                env: Arc::new(arc_swap::ArcSwap::from_pointee(env)),
                tokens: Arc::new(tokens),
                insert_lists: Arc::new(packwell::station::InsertListCache::new(
                    Duration::from_secs(1),
                    100,
                )),
                reports: Default::default(),
                metrics,
                health: Arc::new(Ready),
                outbox_written: Default::default(),
                webhooks: Arc::new(webhooks),
                // No request here reaches the workbench's routes; its folders are left empty.
                workbench: Arc::new(packwell::workbench::Workbench::new(
                    packwell::workbench::Folders {
                        rules: std::env::temp_dir().join("packwell-fuzz-no-rules"),
                        templates: std::env::temp_dir().join("packwell-fuzz-no-templates"),
                    },
                    "Shop <hello@shop.example>".into(),
                    "http://127.0.0.1:8080".into(),
                )),
            },
            http::Limits {
                max_body_bytes: 64 * 1024,
                max_webhook_bytes: 256 * 1024,
                request_timeout: Duration::from_secs(5),
            },
        );
        HttpApi {
            router,
            key: key().clone(),
            runtime,
        }
    }

    /// One request through the router: the status, whether the answer says it is JSON, and
    /// its body.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> (u16, bool, Vec<u8>) {
        use hyper::service::Service;
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", content_type)
            .body(axum::body::Body::from(body))
            .expect("a request");
        let service = hyper_util::service::TowerToHyperService::new(self.router.clone());
        self.runtime.block_on(async {
            let response = match service.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let status = response.status().as_u16();
            let is_json = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .expect("the answer's body");
            (status, is_json, body.to_vec())
        })
    }
}
