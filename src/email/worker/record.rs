//! The last stage of the sender: the ends of jobs, whatever ended while the last batch was
//! being written, written in one transaction; then counted and told.

use super::Worker;
use super::flight::Ending;
use crate::store::emails::{EmailEnd, EmailJob};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Ends written in one transaction, at most.
const ENDS_PER_BATCH: usize = 256;
/// Times a failed batch of ends is written again before it is written job by job.
const FINISH_TRIES: usize = 3;

impl Worker {
    /// Writes ends until every sender of them is gone.
    pub(super) async fn record(self: Arc<Self>, mut ends: mpsc::Receiver<Ending>) {
        let mut batch: Vec<Ending> = Vec::with_capacity(ENDS_PER_BATCH);
        while ends.recv_many(&mut batch, ENDS_PER_BATCH).await > 0 {
            let now = self.clock.now().timestamp();
            let pairs: Vec<(&EmailJob, &EmailEnd)> =
                batch.iter().map(|e| (&e.job, &e.end)).collect();
            for (ending, held) in batch.iter().zip(self.finish(&pairs, now).await) {
                match held {
                    Ok(true) => self.told(&ending.job, &ending.end),
                    Ok(false) => {
                        tracing::warn!(job = %ending.job.id(), "e-mail: the lease ran out before the job ended; another worker has it")
                    }
                    Err(e) => {
                        tracing::warn!(job = %ending.job.id(), error = %e, "e-mail: the store failed recording how the job ended; it is taken up again when its lease runs out")
                    }
                }
            }
            // Their tokens go with them: the jobs have ended.
            batch.clear();
        }
    }

    /// Writes a batch of ends: whether each job's lease still held. Each end is written only
    /// under its lease, so a batch that failed (a deadlock, a dropped connection) is written
    /// again, a few times, then job by job: one bad job does not leave the others `sending`
    /// until their leases run out.
    async fn finish(
        &self,
        pairs: &[(&EmailJob, &EmailEnd)],
        now: i64,
    ) -> Vec<Result<bool, crate::store::StoreError>> {
        let mut wait = std::time::Duration::from_millis(50);
        for _ in 0..FINISH_TRIES {
            match self.store.finish_emails(pairs, now).await {
                Ok(held) => return held.into_iter().map(Ok).collect(),
                Err(e) => {
                    tracing::debug!(error = %e, "e-mail: writing a batch of ends failed; again")
                }
            }
            tokio::time::sleep(wait).await;
            wait *= 4;
        }
        let mut out = Vec::with_capacity(pairs.len());
        for pair in pairs {
            out.push(
                self.store
                    .finish_emails(std::slice::from_ref(pair), now)
                    .await
                    .map(|held| held.first().copied().unwrap_or(false)),
            );
        }
        out
    }

    /// The metrics and the log line of a job's end, once written.
    fn told(&self, job: &EmailJob, end: &EmailEnd) {
        let m = &self.metrics;
        let followup = [job.followup_id.as_str()];
        match end {
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
    }
}
