//! Backtests run in the background for the workbench: the store's kept events read once, then
//! replayed with the rules in force and with the edited ones on two blocking threads at once
//! (each with a scratch store of its own), their progress counted as they go, and the two put
//! side by side ([`super::compare`]). One runs at a time per service; the last few are kept
//! to be read.

use super::compare::{Comparison, SideLog, compare};
use crate::backtest::backtest_observed;
use crate::event::Event;
use crate::store::{DecideEnv, Store};
use indicatif::ProgressBar;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Finished backtests kept to be read, the oldest forgotten first.
pub const KEPT: usize = 16;

/// Kept events a backtest replays at most: the service holds them in memory (once, shared by
/// both sides) besides the two scratch stores, next to the work it serves the stations.
pub const MAX_EVENTS: usize = 2_000_000;

/// How far a backtest is: events replayed, of both sides together.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// A backtest as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BacktestView {
    pub id: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub progress: Progress,
    pub error: Option<String>,
    pub result: Option<Comparison>,
}

enum Outcome {
    Running,
    Done(Box<Comparison>),
    Failed(String),
}

struct Job {
    id: String,
    /// Hidden: counted into, never drawn.
    progress: ProgressBar,
    outcome: Mutex<Outcome>,
}

impl Job {
    fn view(&self) -> BacktestView {
        let outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        let (state, error, result) = match &*outcome {
            Outcome::Running => ("running", None, None),
            Outcome::Done(c) => ("done", None, Some(Comparison::clone(c))),
            Outcome::Failed(e) => ("failed", Some(e.clone()), None),
        };
        BacktestView {
            id: self.id.clone(),
            state: state.to_string(),
            progress: Progress {
                done: self.progress.position(),
                total: self.progress.length().unwrap_or(0),
            },
            error,
            result,
        }
    }

    fn running(&self) -> bool {
        matches!(
            *self.outcome.lock().unwrap_or_else(|e| e.into_inner()),
            Outcome::Running
        )
    }
}

/// The service's background backtests.
#[derive(Default)]
pub struct Backtests {
    jobs: Mutex<VecDeque<Arc<Job>>>,
    started: std::sync::atomic::AtomicU64,
}

/// A backtest could not start: another one is running.
#[derive(Debug)]
pub struct Busy;

impl Backtests {
    /// Starts a backtest of `edited` against `current` over the store's kept events, deciding
    /// the last `days` days. Must be called on the service's runtime.
    pub fn start(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        current: Arc<DecideEnv>,
        edited: Arc<DecideEnv>,
        days: u32,
    ) -> Result<BacktestView, Busy> {
        let job = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            if jobs.iter().any(|j| j.running()) {
                return Err(Busy);
            }
            let n = self
                .started
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let job = Arc::new(Job {
                id: format!("bt-{}-{n}", chrono::Utc::now().timestamp_millis()),
                progress: ProgressBar::hidden(),
                outcome: Mutex::new(Outcome::Running),
            });
            jobs.push_back(job.clone());
            while jobs.len() > KEPT {
                match jobs.iter().position(|j| !j.running()) {
                    Some(oldest) => drop(jobs.remove(oldest)),
                    None => break,
                }
            }
            job
        };
        let view = job.view();
        tokio::spawn(async move {
            // Run as a task of its own, so that even a panic ends the job (as failed) and
            // the next backtest may start.
            let running = job.clone();
            let ran =
                tokio::spawn(async move { run(&running, &*store, current, edited, days).await })
                    .await
                    .unwrap_or_else(|e| Err(format!("the backtest stopped: {e}")));
            let outcome = match ran {
                Ok(c) => Outcome::Done(Box::new(c)),
                Err(e) => {
                    tracing::warn!(id = job.id, error = %e, "a workbench backtest failed");
                    Outcome::Failed(e)
                }
            };
            *job.outcome.lock().unwrap_or_else(|e| e.into_inner()) = outcome;
        });
        Ok(view)
    }

    /// A backtest by id, if it is still kept.
    pub fn get(&self, id: &str) -> Option<BacktestView> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.iter().find(|j| j.id == id).map(|j| j.view())
    }
}

async fn run(
    job: &Job,
    store: &dyn Store,
    current: Arc<DecideEnv>,
    edited: Arc<DecideEnv>,
    days: u32,
) -> Result<Comparison, String> {
    let events = kept_events(store).await?;
    job.progress.set_length(2 * events.len() as u64);
    let side = |env: Arc<DecideEnv>, events: Arc<[Event]>, bar: ProgressBar| {
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a backtest: {e}"))?;
            let mut log = SideLog::default();
            let report = runtime
                .block_on(backtest_observed(
                    &env,
                    &events,
                    Some(days),
                    &bar,
                    &mut |a| log.observe(a),
                ))
                .map_err(|e| format!("the scratch store failed: {e}"))?;
            Ok::<_, String>((report, log))
        })
    };
    let before = side(current, events.clone(), job.progress.clone());
    let after = side(edited, events, job.progress.clone());
    // Both awaited before either's error counts, so that a failed job has stopped for good
    // when the next may start.
    let (before, after) = (before.await, after.await);
    let joined = |r: Result<Result<_, String>, tokio::task::JoinError>| {
        r.map_err(|e| format!("a backtest stopped: {e}"))?
    };
    let (before, after) = (joined(before)?, joined(after)?);
    compare(days, (&before.0, &before.1), (&after.0, &after.1))
}

/// Every kept event the store can read, at most [`MAX_EVENTS`]; bytes that are not an event
/// are left out, as `backtest --from-store` leaves them out.
async fn kept_events(store: &dyn Store) -> Result<Arc<[Event]>, String> {
    let mut events = Vec::new();
    let mut after = i64::MIN;
    loop {
        let page = store
            .kept_events(after, None, 2_000)
            .await
            .map_err(|e| format!("reading the kept events: {e}"))?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        events.extend(page.into_iter().filter_map(|k| k.event.ok()));
        if events.len() > MAX_EVENTS {
            return Err(format!(
                "the store keeps more than {MAX_EVENTS} events, more than the service replays in \
                 the background: run packwell backtest --from-store on a machine of its own"
            ));
        }
    }
    Ok(events.into())
}
