//! The e-mail sender: claims due jobs under a lease, checks each again, hands it over to the
//! provider with bounded concurrency, and records how it ended (DESIGN "E-mail jobs").
//!
//! A job's life: `pending` → checked (skipped, or waits for quiet hours to end) → handed over
//! (`sending`: frequency cap counted and coupons issued under the customer's lock, the rendered
//! message kept) → `sent`, or `retry` (429, 5xx, timeouts; back-off with jitter or the
//! provider's `Retry-After`) until `max_tries`, then `failed`. A job found in `sending` after a
//! crash is sent again with the same idempotency key to a provider that de-duplicates, and
//! becomes `unknown` otherwise: never sent twice.

use super::check::{Verdict, check};
use super::compose::{
    ComposeInput, OutgoingEmail, complete_coupons, compose, idempotency_key, plan_coupons,
};
use super::provider::{Provider, SendError};
use super::token::unsubscribe_url;
use crate::config::Config;
use crate::service::metrics::EmailMetrics;
use crate::store::emails::{BeginSend, EmailEnd, EmailJob, EmailSkip, SendPlan, address_hash};
use crate::store::{DecideEnv, Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Where the worker reads the rules, key and shop in force (they change on reload).
pub trait EnvSource: Send + Sync {
    fn env(&self) -> Arc<DecideEnv>;
}

impl EnvSource for arc_swap::ArcSwap<DecideEnv> {
    fn env(&self) -> Arc<DecideEnv> {
        self.load_full()
    }
}

/// The wall clock of sending: quiet hours, expiry, leases and retries (DESIGN "Two clocks").
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
        let e = &config.email;
        WorkerSettings {
            concurrency: e.concurrency.max(1),
            max_tries: e.max_tries.max(1),
            timeout: Duration::from_millis(e.timeout_ms),
            retry_base: Duration::from_millis(e.retry_base_ms),
            retry_max: Duration::from_millis(e.retry_max_ms),
            poll: Duration::from_millis(e.poll_ms),
            from: e.from.clone(),
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

/// A little randomness for the jitter, without a generator to seed.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(Utc::now().timestamp_subsec_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

pub struct Worker {
    store: Arc<dyn Store>,
    env: Arc<dyn EnvSource>,
    provider: Arc<dyn Provider>,
    settings: WorkerSettings,
    metrics: EmailMetrics,
    clock: Arc<dyn Clock>,
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        env: Arc<dyn EnvSource>,
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

    /// Sends due e-mails until `stop`; e-mails being handed over when it comes are finished.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let permits = Arc::new(tokio::sync::Semaphore::new(self.settings.concurrency));
        let mut running = tokio::task::JoinSet::new();
        let mut store_wait = Duration::from_millis(200);
        tracing::info!(provider = self.provider.name(), "e-mail sender started");
        while !stop.is_cancelled() {
            while running.try_join_next().is_some() {}
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = running.join_next() => {}
                    _ = stop.cancelled() => break,
                }
                continue;
            }
            let jobs = match self.claim(free).await {
                Ok(jobs) => {
                    store_wait = Duration::from_millis(200);
                    jobs
                }
                Err(e) => {
                    tracing::warn!(%e, "e-mail sender: cannot claim due e-mails; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(store_wait) => {}
                        _ = stop.cancelled() => break,
                    }
                    store_wait = (store_wait * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            if jobs.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll) => {}
                    _ = stop.cancelled() => break,
                }
                continue;
            }
            for job in jobs {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let worker = self.clone();
                running.spawn(async move {
                    worker.process(job).await;
                    drop(permit);
                });
            }
        }
        while running.join_next().await.is_some() {}
        tracing::info!("e-mail sender stopped");
    }

    /// Sends every e-mail due now, `concurrency` at a time, until none is left to claim;
    /// returns how many jobs were worked on. For tests and benchmarks.
    pub async fn drain(self: &Arc<Self>) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let jobs = self.claim(self.settings.concurrency).await?;
            if jobs.is_empty() {
                return Ok(total);
            }
            total += jobs.len();
            let mut set = tokio::task::JoinSet::new();
            for job in jobs {
                let worker = self.clone();
                set.spawn(async move { worker.process(job).await });
            }
            while set.join_next().await.is_some() {}
        }
    }

    /// A lease from now: a claim's, renewed when the hand-over starts.
    fn lease_until(&self) -> i64 {
        let lease = i64::try_from(self.settings.lease().as_secs()).unwrap_or(60);
        self.clock.now().timestamp() + lease
    }

    async fn claim(&self, limit: usize) -> Result<Vec<EmailJob>, StoreError> {
        let now = self.clock.now().timestamp();
        self.store
            .claim_due_emails(now, self.lease_until(), limit as i64)
            .await
    }

    async fn process(&self, job: EmailJob) {
        if let Err(e) = self.process_job(&job).await {
            tracing::warn!(job = %job.id(), error = %e, "e-mail: the store failed; the job is taken up again when its lease runs out");
        }
    }

    async fn process_job(&self, job: &EmailJob) -> Result<(), StoreError> {
        match job.state.as_str() {
            "retry" => {
                // Between tries the customer may have unsubscribed, the address bounced or
                // the order come back: then it ends here, and its coupons are voided.
                let facts = self.store.email_facts(job).await?;
                if let Some(Verdict::Skip(reason, detail)) = super::check::unwanted(&facts) {
                    return self.end(job, EmailEnd::Skipped { reason, detail }).await;
                }
                self.send_again(job).await
            }
            // Cut off by a crash: it may have gone out, so it goes again under its key as it
            // is (a de-duplicating provider drops a repeat), without new checks.
            "sending" if self.provider.deduplicates() => self.send_again(job).await,
            "sending" => {
                let detail = format!(
                    "the hand-over to {} was cut off (the service stopped while sending); it may have gone out, so it is not sent again",
                    self.provider.name()
                );
                tracing::warn!(job = %job.id(), "{detail}");
                self.end(job, EmailEnd::Unknown { detail }).await
            }
            _ => self.send_first(job).await,
        }
    }

    /// A job handed over before: the same message, under the same key.
    async fn send_again(&self, job: &EmailJob) -> Result<(), StoreError> {
        let email: Option<OutgoingEmail> = job
            .message
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok());
        let Some(email) = email else {
            let detail = "the rendered message was not kept".to_string();
            return self.end(job, EmailEnd::Failed { detail }).await;
        };
        if job.tries >= i64::from(self.settings.max_tries) {
            let detail = format!("gave up after {} tries", job.tries);
            return self.end(job, EmailEnd::Failed { detail }).await;
        }
        let lease_until = self.lease_until();
        if !self.store.resume_send(job, lease_until).await? {
            return Ok(());
        }
        let job = EmailJob {
            lease: lease_until,
            ..job.clone()
        };
        self.deliver(&job, &email, job.tries + 1).await
    }

    /// A pending job: checked, rendered, handed over.
    async fn send_first(&self, job: &EmailJob) -> Result<(), StoreError> {
        let now = self.clock.now();
        let env = self.env.env();
        let rules = &env.rules;
        let facts = self.store.email_facts(job).await?;
        match check(rules, job, &facts, now) {
            Verdict::Skip(reason, detail) => {
                return self.end(job, EmailEnd::Skipped { reason, detail }).await;
            }
            Verdict::Wait(until) => {
                let due_at = until.timestamp();
                tracing::debug!(job = %job.id(), %until, "e-mail waits for the end of quiet hours");
                return self.end(job, EmailEnd::Deferred { due_at }).await;
            }
            Verdict::Send => {}
        }
        let (Some(profile), Some(order), Some(followup)) = (
            facts.profile.as_ref(),
            facts.order.as_ref(),
            rules.followup(&job.followup_id),
        ) else {
            return Err(StoreError::Other("checked job lost its facts".into()));
        };
        let unsubscribe = unsubscribe_url(&self.settings.public_url, &env.key, &job.customer_id);
        let to_hash = address_hash(profile.email.as_deref().unwrap_or(""));
        let frequency = rules
            .email
            .max_per_customer
            .map(|(count, per)| (count, (now - per).timestamp()));
        let mut attempts: HashMap<String, u32> = HashMap::new();
        let mut coupons = plan_coupons(
            rules,
            followup,
            order,
            &env.key,
            &attempts,
            now.date_naive(),
        );
        // Bounded: each round follows a code collision or coupons found issued before.
        for _ in 0..16 {
            let input = ComposeInput {
                rules,
                followup,
                profile,
                order,
                coupons: &coupons,
                shop: &env.shop,
                from: &self.settings.from,
                unsubscribe_url: &unsubscribe,
            };
            let email = match compose(&input) {
                Ok(email) => email,
                Err(e) => {
                    let detail = format!("the e-mail could not be rendered: {e}");
                    tracing::warn!(job = %job.id(), "{detail}");
                    return self.end(job, EmailEnd::Failed { detail }).await;
                }
            };
            let message =
                serde_json::to_string(&email).map_err(|e| StoreError::Other(e.to_string()))?;
            let plan = SendPlan {
                coupons: &coupons,
                message: &message,
                to_hash: &to_hash,
                now,
                frequency,
                lease_until: self.lease_until(),
            };
            match self.store.begin_send(job, &plan).await? {
                BeginSend::Go => {
                    let job = EmailJob {
                        lease: plan.lease_until,
                        ..job.clone()
                    };
                    return self.deliver(&job, &email, job.tries + 1).await;
                }
                BeginSend::Frequency => {
                    self.metrics
                        .skipped
                        .with_label_values(&[EmailSkip::Frequency.as_str()])
                        .inc();
                    return Ok(());
                }
                BeginSend::Lost => return Ok(()),
                BeginSend::Existing(found) => coupons = complete_coupons(rules, order, found),
                BeginSend::Collision { insert_id } => {
                    *attempts.entry(insert_id).or_default() += 1;
                    coupons = plan_coupons(
                        rules,
                        followup,
                        order,
                        &env.key,
                        &attempts,
                        now.date_naive(),
                    );
                }
            }
        }
        Err(StoreError::Other(
            "the e-mail's coupon codes kept colliding".into(),
        ))
    }

    /// Hands the e-mail to the provider and records the answer; `tries` counts this one.
    async fn deliver(
        &self,
        job: &EmailJob,
        email: &OutgoingEmail,
        tries: i64,
    ) -> Result<(), StoreError> {
        let key = idempotency_key(&job.order_id, &job.followup_id, job.resends);
        let started = Instant::now();
        // Bounded as a whole (SMTP's timeout is per command), so the hand-over ends well
        // inside the lease: past it, the answer is unknown.
        let bound = self.settings.timeout * 2;
        let answer = match tokio::time::timeout(bound, self.provider.send(&key, email)).await {
            Ok(answer) => answer,
            Err(_) => Err(SendError::Ambiguous {
                detail: format!(
                    "{}: no answer within {} ms",
                    self.provider.name(),
                    bound.as_millis()
                ),
            }),
        };
        self.metrics
            .send_seconds
            .with_label_values(&[self.provider.name()])
            .observe(started.elapsed().as_secs_f64());
        let give_up = tries >= i64::from(self.settings.max_tries);
        let end = match answer {
            Ok(detail) => EmailEnd::Sent { detail },
            Err(SendError::Permanent { detail }) => EmailEnd::Failed { detail },
            Err(SendError::Ambiguous { detail }) if !self.provider.deduplicates() => {
                EmailEnd::Unknown {
                    detail: format!("{detail}; it may have gone out, so it is not sent again"),
                }
            }
            Err(SendError::Transient { detail, .. } | SendError::Ambiguous { detail })
                if give_up =>
            {
                EmailEnd::Failed {
                    detail: format!("gave up after {tries} tries; the last: {detail}"),
                }
            }
            Err(SendError::Transient {
                detail,
                retry_after,
            }) => self.retry(tries, retry_after, detail),
            Err(SendError::Ambiguous { detail }) => self.retry(tries, None, detail),
        };
        self.end(job, end).await
    }

    fn retry(&self, tries: i64, retry_after: Option<Duration>, detail: String) -> EmailEnd {
        let s = &self.settings;
        let wait = match retry_after {
            Some(asked) => asked.min(s.retry_max),
            None => super::timing::backoff(tries, s.retry_base, s.retry_max, jitter()),
        };
        let at = self.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
        // Due times are whole seconds: round up, so that a retry never comes early.
        let due_at = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
        EmailEnd::Retry { due_at, detail }
    }

    async fn end(&self, job: &EmailJob, end: EmailEnd) -> Result<(), StoreError> {
        let now = self.clock.now().timestamp();
        if !self.store.finish_email(job, &end, now).await? {
            tracing::warn!(job = %job.id(), "e-mail: the lease ran out before the job ended; another worker has it");
            return Ok(());
        }
        let m = &self.metrics;
        let followup = [job.followup_id.as_str()];
        match &end {
            EmailEnd::Sent { .. } => {
                m.sent.with_label_values(&followup).inc();
                tracing::info!(job = %job.id(), customer_id = %job.customer_id, "e-mail sent");
            }
            EmailEnd::Retry { detail, .. } => {
                m.retried.with_label_values(&followup).inc();
                tracing::info!(job = %job.id(), %detail, "e-mail: will try again");
            }
            EmailEnd::Failed { detail } => {
                m.failed.with_label_values(&followup).inc();
                tracing::warn!(job = %job.id(), %detail, "e-mail failed");
            }
            EmailEnd::Unknown { .. } => m.unknown.with_label_values(&followup).inc(),
            EmailEnd::Skipped { reason, detail } => {
                m.skipped.with_label_values(&[reason.as_str()]).inc();
                tracing::info!(job = %job.id(), reason = reason.as_str(), %detail, "e-mail skipped");
            }
            EmailEnd::Deferred { .. } => {}
        }
        Ok(())
    }
}
