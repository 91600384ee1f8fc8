//! The shops' APIs, as far as Packwell calls them: Shopify's Admin GraphQL ([`shopify`]) and
//! WooCommerce's REST API ([`woocommerce`]). Both are paced to `max_rps` calls per second
//! ([`Pacer`]), sort every answer into done, worth another try, or refused for good
//! ([`ApiError`]), and offer the same two things: the coupon calls of the sync worker
//! ([`CouponApi`]) and product look-ups for mapping ([`crate::connector::ProductDirectory`]).
//!
//! Retrying is the caller's: a create whose answer was lost may have happened, so the sync
//! worker starts again from the look-up rather than posting twice ([`RetryPolicy`]).

pub mod shopify;
pub mod woocommerce;

use crate::config::{ShopApi, ShopConnector};
use crate::connector::ProductDirectory;
use async_trait::async_trait;
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub use shopify::Shopify;
pub use woocommerce::WooCommerce;

/// How long one call may take, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Worth another try: 429, 5xx, Shopify's `THROTTLED`, no answer. `wait`: what the shop
    /// asked for (`Retry-After`, or the throttle's budget restored), if it said.
    #[error("{detail}")]
    Transient {
        detail: String,
        wait: Option<Duration>,
    },
    /// The shop refuses it, and would again: another 4xx, GraphQL `userErrors` or errors.
    #[error("{detail}")]
    Refused { detail: String },
}

impl ApiError {
    pub fn transient(detail: impl Into<String>) -> ApiError {
        ApiError::Transient {
            detail: detail.into(),
            wait: None,
        }
    }

    pub fn refused(detail: impl Into<String>) -> ApiError {
        ApiError::Refused {
            detail: detail.into(),
        }
    }
}

/// What an HTTP status means for the call: `None` when it succeeded.
pub fn classify_status(status: u16, body: &str, wait: Option<Duration>) -> Option<ApiError> {
    let detail = || format!("HTTP {status}: {}", excerpt(body));
    match status {
        200..=299 => None,
        // 408 (the shop's proxy gave up waiting) and 429 are "later"; 409 is WooCommerce's
        // answer to two writes of one coupon at once.
        408 | 409 | 429 | 500..=599 => Some(ApiError::Transient {
            detail: detail(),
            wait,
        }),
        _ => Some(ApiError::refused(detail())),
    }
}

/// The start of an answer's body, for error details (a shop's error page can be long).
pub fn excerpt(body: &str) -> String {
    const MAX: usize = 300;
    let body = body.trim();
    match body.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_string(),
    }
}

/// A coupon as the shop is asked to create it: what `coupon.issued` says, with the
/// customer's e-mail address where WooCommerce restricts by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCoupon {
    pub code: String,
    pub rule_id: String,
    pub customer_id: String,
    pub amount: Decimal,
    pub min_order: Option<Decimal>,
    /// The last valid day (YYYY-MM-DD).
    pub expires_on: chrono::NaiveDate,
    /// RFC 3339: when it was issued.
    pub starts_at: String,
    pub email: Option<String>,
}

/// A code as the shop holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopCode {
    /// The shop's id of the discount (Shopify's `DiscountCodeNode` gid, WooCommerce's coupon
    /// id).
    pub id: String,
    /// Whether it can still be used (Shopify's status `ACTIVE` or `SCHEDULED`).
    pub active: bool,
}

/// The coupon calls of the sync worker. Each is one call; none retries.
#[async_trait]
pub trait CouponApi: Send + Sync {
    fn platform(&self) -> crate::config::Platform;
    /// The shop's discount with this code, if there is one.
    async fn find_code(&self, code: &str) -> Result<Option<ShopCode>, ApiError>;
    /// Creates the discount; returns the shop's id of it.
    async fn create_code(&self, coupon: &NewCoupon) -> Result<String, ApiError>;
    /// Disables the discount: it can no longer be used at checkout.
    async fn disable_code(&self, found: &ShopCode) -> Result<(), ApiError>;
}

/// Builds the client of a connector's API; None when the section has no API settings. Build
/// one per platform and share it (the coupon sync and the webhooks' product look-ups), so that
/// `max_rps` bounds the calls of both together.
pub fn client_for(connector: &ShopConnector) -> Result<Option<ShopClient>, String> {
    let pacer = Pacer::new(connector.max_rps);
    Ok(match &connector.api {
        None => None,
        Some(api @ ShopApi::Shopify { .. }) => {
            let client = Arc::new(Shopify::new(api, pacer)?);
            Some(ShopClient {
                coupons: client.clone(),
                products: client,
            })
        }
        Some(api @ ShopApi::WooCommerce { .. }) => {
            let client = Arc::new(WooCommerce::new(api, pacer)?);
            Some(ShopClient {
                coupons: client.clone(),
                products: client,
            })
        }
    })
}

/// One shop's client, seen as what each side needs of it; both share one pacer.
#[derive(Clone)]
pub struct ShopClient {
    coupons: Arc<dyn CouponApi>,
    products: Arc<dyn ProductDirectory>,
}

impl ShopClient {
    /// For the coupon sync.
    pub fn coupons(&self) -> Arc<dyn CouponApi> {
        self.coupons.clone()
    }

    /// For mapping webhooks (product types, tags, categories).
    pub fn products(&self) -> Arc<dyn ProductDirectory> {
        self.products.clone()
    }
}

/// The HTTP client both platforms use: rustls with the ring provider, bounded calls.
fn http_client() -> Result<reqwest::Client, String> {
    crate::email::provider::ensure_tls_provider();
    reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .connect_timeout(CALL_TIMEOUT)
        .build()
        .map_err(|e| format!("the shop's HTTP client: {e}"))
}

/// A reqwest error as a transient failure, without the URL (it may carry credentials).
fn transport_error(what: &str, e: reqwest::Error) -> ApiError {
    let how = if e.is_timeout() {
        "no answer in time"
    } else {
        "cannot reach it"
    };
    ApiError::transient(format!("{what}: {how}: {}", e.without_url()))
}

/// The `Retry-After` header of an answer, as a wait.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()
        .and_then(|v| crate::email::timing::parse_retry_after(v, chrono::Utc::now()))
}

/// At most `max_rps` calls a second, evenly spaced: each call takes the next free slot. A
/// shop's request to wait (429, a throttle) pushes every later slot back.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    pub fn new(max_rps: u32) -> Pacer {
        Pacer {
            interval: Duration::from_secs(1) / max_rps.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this call's slot.
    pub async fn slot(&self) {
        let now = Instant::now();
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(now);
            *next = at + self.interval;
            at
        };
        // A slot already due goes at once: tokio's timer rounds every sleep up to its next
        // millisecond tick, which cost each call about 1 ms when nothing was to be waited for.
        if at > now {
            tokio::time::sleep_until(at).await;
        }
    }

    /// No call before `wait` from now.
    pub async fn hold_off(&self, wait: Duration) {
        let mut next = self.next.lock().await;
        *next = (*next).max(Instant::now() + wait);
    }
}

/// How often, and how far apart, a failing step is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub tries: u32,
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The sync worker's: 8 tries over about two minutes.
    pub const SYNC: RetryPolicy = RetryPolicy {
        tries: 8,
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };
    /// Product look-ups, which a webhook is waiting for: 3 tries, short waits.
    pub const LOOKUP: RetryPolicy = RetryPolicy {
        tries: 3,
        base: Duration::from_millis(250),
        max: Duration::from_secs(2),
    };

    /// The wait after the `tried`-th failed try (1-based): doubling from `base` up to `max`,
    /// or longer when the shop asked for longer.
    pub fn wait(&self, tried: u32, asked: Option<Duration>) -> Duration {
        let exponent = tried.saturating_sub(1).min(20);
        let backoff = self.base.saturating_mul(1u32 << exponent).min(self.max);
        asked.map_or(backoff, |a| a.max(backoff))
    }
}

/// Runs `step` until it succeeds, is refused, or has failed `policy.tries` times; waits in
/// between as [`RetryPolicy::wait`] says, and tells `on_retry` of each retry. A transient
/// error after the last try is returned as it is.
pub async fn with_retries<T, F, Fut>(
    policy: RetryPolicy,
    pacer: Option<&Pacer>,
    mut on_retry: impl FnMut(&ApiError),
    mut step: F,
) -> Result<T, (ApiError, u32)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut tried = 0;
    loop {
        tried += 1;
        match step().await {
            Ok(v) => return Ok(v),
            Err(e @ ApiError::Refused { .. }) => return Err((e, tried)),
            Err(e @ ApiError::Transient { .. }) if tried >= policy.tries => {
                return Err((e, tried));
            }
            Err(e @ ApiError::Transient { wait: asked, .. }) => {
                let wait = policy.wait(tried, asked);
                tracing::info!(error = %e, wait_ms = wait.as_millis() as u64, "the shop's API: trying again");
                on_retry(&e);
                if let Some(p) = pacer {
                    p.hold_off(wait).await;
                } else {
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_retry_and_refusal() {
        assert_eq!(classify_status(201, "", None), None);
        for s in [408, 409, 429, 500, 502, 503] {
            assert!(
                matches!(
                    classify_status(s, "x", None),
                    Some(ApiError::Transient { .. })
                ),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(
                matches!(
                    classify_status(s, "x", None),
                    Some(ApiError::Refused { .. })
                ),
                "{s}"
            );
        }
        let asked = Some(Duration::from_secs(3));
        assert_eq!(
            classify_status(429, "slow down", asked),
            Some(ApiError::Transient {
                detail: "HTTP 429: slow down".into(),
                wait: asked
            })
        );
    }

    #[test]
    fn waits_double_up_to_the_bound_and_honour_the_shop() {
        let p = RetryPolicy::SYNC;
        let secs = |n, asked| p.wait(n, asked).as_secs();
        assert_eq!((secs(1, None), secs(2, None), secs(3, None)), (1, 2, 4));
        assert_eq!(secs(7, None), 60);
        assert_eq!(secs(40, None), 60);
        assert_eq!(secs(1, Some(Duration::from_secs(5))), 5);
        assert_eq!(secs(4, Some(Duration::from_secs(5))), 8);
    }

    #[tokio::test]
    async fn retries_stop_at_a_refusal_or_the_bound() {
        let policy = RetryPolicy {
            tries: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(1),
        };
        let mut calls = 0;
        let mut retries = 0;
        let r: Result<(), _> = with_retries(
            policy,
            None,
            |_| retries += 1,
            || {
                calls += 1;
                async { Err(ApiError::transient("down")) }
            },
        )
        .await;
        assert_eq!(r.unwrap_err().1, 3);
        assert_eq!((calls, retries), (3, 2));
        let mut calls = 0;
        let r: Result<(), _> = with_retries(
            policy,
            None,
            |_| {},
            || {
                calls += 1;
                async { Err(ApiError::refused("no")) }
            },
        )
        .await;
        assert_eq!(r.unwrap_err(), (ApiError::refused("no"), 1));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn the_pacer_spaces_calls() {
        // 50 a second: the fifth call is 80 ms after the first.
        let pacer = Pacer::new(50);
        let start = Instant::now();
        for _ in 0..5 {
            pacer.slot().await;
        }
        assert!(start.elapsed() >= Duration::from_millis(80));
        pacer.hold_off(Duration::from_millis(50)).await;
        let held = Instant::now();
        pacer.slot().await;
        assert!(held.elapsed() >= Duration::from_millis(45));
    }
}

#[cfg(test)]
mod product_tests;
