//! The hand-over of a batch of ready jobs (marked `sending` in one transaction, the frequency
//! cap counted and coupons issued under each customer's lock), then each send to the
//! provider on a task of its own, holding its slot until its end is queued for the recorder.

use super::Worker;
use super::flight::{Ending, Ready};
use super::prepare::Rendered;
use crate::email::compose::{
    OutgoingEmail, complete_coupons, followup_as_sent, idempotency_key, plan_coupons,
};
use crate::email::provider::SendError;
use crate::store::emails::{BeginSend, EmailEnd, EmailJob, EmailSkip, HandOver, SendPlan};
use chrono::Utc;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

/// Hand-overs of one job sent back for other coupons, at most: each follows a code collision
/// or coupons found issued before.
const ROUNDS: u32 = 16;

impl Worker {
    /// Hands over the batch, each job with the slot it will be sent in, and starts the sends
    /// of those that went ahead; jobs sent back to be rendered with other coupons go to
    /// `again`.
    pub(super) async fn hand_over(
        self: &Arc<Self>,
        batch: Vec<(Ready, OwnedSemaphorePermit)>,
        ends: &mpsc::Sender<Ending>,
        sends: &mut tokio::task::JoinSet<()>,
        again: &mut VecDeque<Ready>,
    ) {
        // The lease covers the send, which starts as soon as the transaction commits.
        let lease_until = self.lease_until();
        let hand_overs: Vec<HandOver<'_>> = batch
            .iter()
            .map(|(r, _)| match &r.first {
                Some(f) => HandOver::First {
                    job: &r.job,
                    plan: SendPlan {
                        coupons: &f.coupons,
                        message: &f.message,
                        to_hash: &f.to_hash,
                        now: f.now,
                        frequency: f.frequency,
                        lease_until,
                    },
                },
                None => HandOver::Again {
                    job: &r.job,
                    lease_until,
                },
            })
            .collect();
        let answers = self.store.begin_sends(&hand_overs).await;
        drop(hand_overs);
        let answers = match answers {
            Ok(answers) => answers,
            Err(e) => {
                tracing::warn!(error = %e, jobs = batch.len(), "e-mail: the store failed handing over; the jobs are taken up again when their lease runs out");
                return;
            }
        };
        for ((ready, slot), answer) in batch.into_iter().zip(answers) {
            let Ready {
                mut job,
                email,
                first,
                token,
            } = ready;
            let mut first = match (answer, first) {
                (BeginSend::Go, _) => {
                    job.lease = lease_until;
                    let (worker, ends) = (self.clone(), ends.clone());
                    sends.spawn(async move {
                        let tries = job.tries + 1;
                        let end = worker.deliver(&job, &email, tries).await;
                        // The recorder outlives every sender of ends.
                        let _ = ends
                            .send(Ending {
                                job,
                                end,
                                _token: token,
                            })
                            .await;
                        drop(slot);
                    });
                    continue;
                }
                (BeginSend::Frequency, _) => {
                    self.metrics
                        .skipped
                        .with_label_values(&[EmailSkip::Frequency.as_str()])
                        .inc();
                    continue;
                }
                (BeginSend::Lost, _) | (_, None) => continue,
                (BeginSend::Existing(found), Some(mut first)) => {
                    if let Some(order) = first.facts.order.as_ref() {
                        first.coupons = complete_coupons(&first.env.rules, order, found);
                    }
                    first
                }
                (BeginSend::Collision { insert_id }, Some(mut first)) => {
                    *first.attempts.entry(insert_id).or_default() += 1;
                    let rules = &first.env.rules;
                    if let (Some(followup), Some(order)) = (
                        followup_as_sent(rules, &job, first.facts.profile.as_ref()),
                        first.facts.order.as_ref(),
                    ) {
                        first.coupons = plan_coupons(
                            rules,
                            followup,
                            order,
                            &first.env.key,
                            &first.attempts,
                            first.now.date_naive(),
                        );
                    }
                    first
                }
            };
            drop(slot);
            first.rounds += 1;
            if first.rounds >= ROUNDS {
                tracing::warn!(job = %job.id(), "e-mail: the e-mail's coupon codes kept colliding; it is taken up again when its lease runs out");
                continue;
            }
            match self.render_again(job, token, first) {
                Rendered::Ready(r) => again.push_back(r),
                // The recorder outlives every sender of ends.
                Rendered::End(e) => _ = ends.send(e).await,
                Rendered::Dropped => {}
            }
        }
    }

    /// Hands the e-mail to the provider; how it ended. `tries` counts this one.
    async fn deliver(&self, job: &EmailJob, email: &OutgoingEmail, tries: i64) -> EmailEnd {
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
        match answer {
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
        }
    }

    fn retry(&self, tries: i64, retry_after: Option<Duration>, detail: String) -> EmailEnd {
        let s = &self.settings;
        let wait = match retry_after {
            Some(asked) => asked.min(s.retry_max),
            None => crate::email::timing::backoff(tries, s.retry_base, s.retry_max, jitter()),
        };
        let at = self.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
        // Due times are whole seconds: round up, so that a retry never comes early.
        let due_at = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
        EmailEnd::Retry { due_at, detail }
    }
}

/// A little randomness for the jitter, without a generator to seed.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(Utc::now().timestamp_subsec_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
