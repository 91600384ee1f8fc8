//! The e-mail sender: claims due jobs under a lease, checks each again, hands it over to the
//! provider with bounded concurrency, and records how it ended (docs/ARCHITECTURE.md "E-mail
//! jobs").
//!
//! It works as a pipeline of batches, so that the store's one writer (SQLite) is not paid a
//! transaction per job and step: [`prepare`] claims due jobs a batch at a time, reads the facts
//! of their checks in one go, checks and renders them; the hand-over loop here marks as many
//! `sending` in one transaction as there are free sending slots, then sends them at once (so a
//! job is never marked `sending` long before it is sent: its lease covers the send);
//! [`record`] writes the ends of whatever jobs ended meanwhile in one transaction.
//!
//! A job's life: `pending` → checked (skipped, or waits for quiet hours to end) → handed over
//! (`sending`: frequency cap counted and coupons issued under the customer's lock, the rendered
//! message kept) → `sent`, or `retry` (429, 5xx, timeouts; back-off with jitter or the
//! provider's `Retry-After`) until `max_tries`, then `failed`. A job found in `sending` after a
//! crash is sent again with the same idempotency key to a provider that de-duplicates, and
//! becomes `unknown` otherwise: never sent twice.

mod deliver;
mod flight;
mod prepare;
mod record;

use super::provider::Provider;
use crate::config::Config;
use crate::metrics::EmailMetrics;
use crate::store::emails::EmailJob;
use crate::store::{DecideEnv, Store, StoreError};
use chrono::{DateTime, Utc};
use flight::{Ending, InFlight, Ready};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// Where the e-mail sender and the HTTP handlers read the rules, coupon key and shop in force
/// (they change when the rules reload).
pub trait RulesInForce: Send + Sync {
    fn in_force(&self) -> Arc<DecideEnv>;
}

impl RulesInForce for arc_swap::ArcSwap<DecideEnv> {
    fn in_force(&self) -> Arc<DecideEnv> {
        self.load_full()
    }
}

/// The wall clock of sending: quiet hours, expiry, leases and retries (docs/ARCHITECTURE.md "Two
/// clocks").
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told: for tests of quiet hours, expiry and retries.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sender's knobs, from `[email]` and `[http] public_url`.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub max_tries: u32,
    pub timeout: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub poll: Duration,
    pub from: String,
    /// The base of unsubscribe links.
    pub public_url: String,
}

impl WorkerSettings {
    pub fn from_config(config: &Config) -> WorkerSettings {
        let e = &config.settings().email;
        WorkerSettings {
            concurrency: e.concurrency,
            max_tries: e.max_tries,
            timeout: e.timeout,
            retry_base: e.retry_base,
            retry_max: e.retry_max,
            poll: e.poll,
            // As written: it is the From header of every e-mail, parsed when one is built.
            from: config.email.from.clone(),
            public_url: config.public_url(),
        }
    }

    /// How long a claim holds a job, renewed when the hand-over starts: longer than a
    /// hand-over may take (twice the provider's timeout, enforced), so that another worker
    /// takes it only from a worker that is gone.
    pub fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(3)
    }
}

/// Jobs claimed at once, per sending slot: enough that a claim, the facts of the checks and
/// their rendering are paid once for many jobs, few enough that a claimed job waits for its
/// hand-over far less than its lease.
const CLAIM_PER_SLOT: usize = 4;
/// Bounds of a claim (the slots times `CLAIM_PER_SLOT`).
const CLAIM_MIN: usize = 16;
const CLAIM_MAX: usize = 256;
/// Ends waiting to be written: a sender whose end finds this full waits before it frees its
/// slot, so a store that falls behind slows the sending down.
const ENDS_QUEUED: usize = 1024;

pub struct Worker {
    store: Arc<dyn Store>,
    env: Arc<dyn RulesInForce>,
    provider: Arc<dyn Provider>,
    settings: WorkerSettings,
    metrics: EmailMetrics,
    clock: Arc<dyn Clock>,
}

/// When the pipeline ends.
#[derive(Clone)]
enum Until {
    /// When nothing is left to claim and everything claimed has ended (`drain`).
    Drained,
    /// When told (`run`).
    Stopped(CancellationToken),
}

impl Until {
    fn stop(&self) -> Option<&CancellationToken> {
        match self {
            Until::Drained => None,
            Until::Stopped(token) => Some(token),
        }
    }

    fn stopped(&self) -> bool {
        self.stop().is_some_and(|t| t.is_cancelled())
    }

    /// Waits until told to stop; never, when draining.
    async fn cancelled(&self) {
        match self {
            Until::Drained => std::future::pending().await,
            Until::Stopped(token) => token.cancelled().await,
        }
    }
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        env: Arc<dyn RulesInForce>,
        provider: Arc<dyn Provider>,
        settings: WorkerSettings,
        metrics: EmailMetrics,
        clock: Arc<dyn Clock>,
    ) -> Worker {
        Worker {
            store,
            env,
            provider,
            settings,
            metrics,
            clock,
        }
    }

    /// Sends due e-mails until `stop`; e-mails being handed over when it comes are finished,
    /// and those claimed but not yet handed over are given back (due as they were).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        tracing::info!(provider = self.provider.name(), "e-mail sender started");
        // Only a drain returns the claim's errors; here they are told and tried again.
        let _ = self.pipeline(Until::Stopped(stop)).await;
        tracing::info!("e-mail sender stopped");
    }

    /// Sends every e-mail due now, `concurrency` at a time, until none is left to claim;
    /// returns how many jobs were worked on. For tests and benchmarks.
    pub async fn drain(self: &Arc<Self>) -> Result<usize, StoreError> {
        self.clone().pipeline(Until::Drained).await
    }

    /// How many jobs a claim takes.
    fn claim_size(&self) -> usize {
        (self.settings.concurrency * CLAIM_PER_SLOT).clamp(CLAIM_MIN, CLAIM_MAX)
    }

    /// A lease from now: a claim's, renewed when the hand-over starts.
    fn lease_until(&self) -> i64 {
        let lease = i64::try_from(self.settings.lease().as_secs()).unwrap_or(60);
        self.clock.now().timestamp() + lease
    }

    async fn claim(&self, limit: usize) -> Result<Vec<EmailJob>, StoreError> {
        let now = self.clock.now().timestamp();
        let mut jobs = self
            .store
            .claim_due_emails(now, self.lease_until(), limit as i64)
            .await?;
        // Sent in the order they fell due (a claim's rows come back in no set order).
        jobs.sort_by_key(|j| j.due_at);
        Ok(jobs)
    }

    /// The pipeline: [`prepare`] claims, checks and renders on a task of its own; this loop
    /// hands over what is ready, as many at a time as there are free slots, and starts their
    /// sends; [`record`] writes how they ended. Returns how many jobs were claimed.
    async fn pipeline(self: Arc<Self>, until: Until) -> Result<usize, StoreError> {
        let flight = InFlight::new();
        let (ready_tx, mut ready_rx) = mpsc::channel::<Ready>(self.claim_size());
        let (ends, ends_rx) = mpsc::channel::<Ending>(ENDS_QUEUED);
        let recorder = tokio::spawn(self.clone().record(ends_rx));
        let preparer = tokio::spawn(self.clone().prepare_loop(
            until.clone(),
            flight.clone(),
            ready_tx,
            ends.clone(),
        ));
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        let mut sends = tokio::task::JoinSet::new();
        // Jobs sent back by the hand-over to be rendered with other coupons.
        let mut again: VecDeque<Ready> = VecDeque::new();
        let most = self.settings.concurrency;
        'handing: loop {
            while sends.try_join_next().is_some() {}
            let first = match again.pop_front() {
                Some(ready) => ready,
                None => tokio::select! {
                    ready = ready_rx.recv() => match ready {
                        Some(ready) => ready,
                        None => break 'handing,
                    },
                    _ = until.cancelled() => break 'handing,
                },
            };
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot,
                _ = until.cancelled() => {
                    again.push_front(first);
                    break 'handing;
                }
            };
            let Ok(slot) = slot else {
                again.push_front(first);
                break 'handing;
            };
            let mut batch: Vec<(Ready, OwnedSemaphorePermit)> = vec![(first, slot)];
            while batch.len() < most {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    break;
                };
                let next = match again.pop_front() {
                    Some(ready) => Some(ready),
                    None => ready_rx.try_recv().ok(),
                };
                let Some(next) = next else { break };
                batch.push((next, slot));
            }
            self.hand_over(batch, &ends, &mut sends, &mut again).await;
        }
        // Stopping: what is ready but not handed over goes back, due as it was; the preparer
        // sees the channel closed and stops claiming.
        ready_rx.close();
        while let Some(ready) = again.pop_front() {
            ready.give_back(&ends).await;
        }
        while let Some(ready) = ready_rx.recv().await {
            ready.give_back(&ends).await;
        }
        while sends.join_next().await.is_some() {}
        let worked = preparer
            .await
            .map_err(|e| StoreError::Other(format!("the e-mail preparer failed: {e}")))?;
        drop(ends);
        if let Err(e) = recorder.await {
            tracing::warn!(error = %e, "e-mail: the recorder failed");
        }
        worked
    }
}
