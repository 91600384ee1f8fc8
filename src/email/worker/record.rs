//! The last stage of the sender: the ends of jobs, whatever ended while the last batch was
//! being written, written in one transaction; then counted and told.

use super::Worker;
use super::flight::Ending;
use crate::store::emails::{EmailEnd, EmailJob};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Ends written in one transaction, at most.
const ENDS_PER_BATCH: usize = 256;

impl Worker {
    /// Writes ends until every sender of them is gone.
    pub(super) async fn record(self: Arc<Self>, mut ends: mpsc::Receiver<Ending>) {
        let mut batch: Vec<Ending> = Vec::with_capacity(ENDS_PER_BATCH);
        while ends.recv_many(&mut batch, ENDS_PER_BATCH).await > 0 {
            let now = self.clock.now().timestamp();
            let pairs: Vec<(&EmailJob, &EmailEnd)> =
                batch.iter().map(|e| (&e.job, &e.end)).collect();
            match self.store.finish_emails(&pairs, now).await {
                Ok(held) => {
                    for (ending, held) in batch.iter().zip(held) {
                        if held {
                            self.told(&ending.job, &ending.end);
                        } else {
                            tracing::warn!(job = %ending.job.id(), "e-mail: the lease ran out before the job ended; another worker has it");
                        }
                    }
                }
                Err(e) => {
                    for ending in &batch {
                        tracing::warn!(job = %ending.job.id(), error = %e, "e-mail: the store failed recording how the job ended; it is taken up again when its lease runs out");
                    }
                }
            }
            // Their tokens go with them: the jobs have ended.
            batch.clear();
        }
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
