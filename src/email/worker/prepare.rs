//! The first stage of the sender: due jobs claimed a batch at a time, the facts of their checks
//! read in one go, each checked again (docs/REFERENCE.md §5) and rendered; what ends here (skipped,
//! waiting for quiet hours, not renderable, given up) goes to the recorder, the rest waits
//! for a sending slot.

use super::flight::{Ending, FirstSend, InFlight, Ready, Token};
use super::{Until, Worker};
use crate::email::check::{Verdict, check, unwanted};
use crate::email::compose::{ComposeInput, OutgoingEmail, compose, followup_as_sent, plan_coupons};
use crate::email::token::unsubscribe_url;
use crate::store::emails::{EmailEnd, EmailFacts, EmailJob, address_hash};
use crate::store::{DecideEnv, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What becomes of a claimed job after its checks.
pub(super) enum Next {
    HandOver(Ready),
    End(Ending),
}

impl Worker {
    /// Claims and prepares until told to stop (or, draining, until nothing is left); returns
    /// how many jobs it claimed. Only a drain returns a claim's error: the service's loop
    /// tells it and tries again, waiting longer each time.
    pub(super) async fn prepare_loop(
        self: Arc<Self>,
        until: Until,
        flight: InFlight,
        ready: mpsc::Sender<Ready>,
        ends: mpsc::Sender<Ending>,
    ) -> Result<usize, StoreError> {
        let mut worked = 0;
        let mut store_wait = Duration::from_millis(200);
        while !until.stopped() && !ready.is_closed() {
            let jobs = match self.claim(self.claim_size()).await {
                Ok(jobs) => {
                    store_wait = Duration::from_millis(200);
                    jobs
                }
                Err(e) if until.stop().is_none() => return Err(e),
                Err(e) => {
                    tracing::warn!(%e, "e-mail sender: cannot claim due e-mails; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(store_wait) => {}
                        _ = until.cancelled() => break,
                    }
                    store_wait = (store_wait * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            if jobs.is_empty() {
                match &until {
                    Until::Drained => {
                        if flight.is_idle() {
                            break;
                        }
                        // What is in flight may come due again (a retry without a wait).
                        flight.idle().await;
                    }
                    Until::Stopped(_) => {
                        tokio::select! {
                            _ = tokio::time::sleep(self.settings.poll) => {}
                            _ = until.cancelled() => break,
                        }
                    }
                }
                continue;
            }
            worked += jobs.len();
            let jobs: Vec<(EmailJob, Token)> =
                jobs.into_iter().map(|j| (j, flight.token())).collect();
            for next in self.prepare(jobs).await {
                match next {
                    Next::HandOver(r) => {
                        if let Err(mpsc::error::SendError(r)) = ready.send(r).await {
                            // The sender stops: nothing more is handed over.
                            r.give_back(&ends).await;
                        }
                    }
                    // The recorder outlives every sender of ends.
                    Next::End(e) => _ = ends.send(e).await,
                }
            }
        }
        Ok(worked)
    }

    /// The checks of a claimed batch, with their facts read in one go; a job whose facts
    /// cannot be read is left to its lease.
    async fn prepare(&self, jobs: Vec<(EmailJob, Token)>) -> Vec<Next> {
        let claimed: Vec<EmailJob> = jobs.iter().map(|(j, _)| j.clone()).collect();
        let facts = match self.store.email_facts_of(&claimed).await {
            Ok(facts) => facts,
            Err(e) => {
                tracing::warn!(error = %e, jobs = jobs.len(), "e-mail: the store failed reading the facts of the checks; the jobs are taken up again when their lease runs out");
                return Vec::new();
            }
        };
        drop(claimed);
        let env = self.env.in_force();
        let now = self.clock.now();
        jobs.into_iter()
            .zip(facts)
            .filter_map(|((job, token), facts)| self.prepare_one(job, token, facts, &env, now))
            .collect()
    }

    fn prepare_one(
        &self,
        job: EmailJob,
        token: Token,
        facts: EmailFacts,
        env: &Arc<DecideEnv>,
        now: DateTime<Utc>,
    ) -> Option<Next> {
        let end = |job, end, token| {
            Some(Next::End(Ending {
                job,
                end,
                _token: token,
            }))
        };
        match job.state.as_str() {
            "retry" => {
                // Between tries the customer may have unsubscribed, the address bounced or
                // the order come back: then it ends here, and its coupons are voided.
                if let Some(Verdict::Skip(reason, detail)) = unwanted(&facts) {
                    return end(job, EmailEnd::Skipped { reason, detail }, token);
                }
                self.again(job, token)
            }
            // Cut off by a crash: it may have gone out, so it goes again under its key as it
            // is (a de-duplicating provider drops a repeat), without new checks.
            "sending" if self.provider.deduplicates() => self.again(job, token),
            "sending" => {
                let detail = format!(
                    "the hand-over to {} was cut off (the service stopped while sending); it may have gone out, so it is not sent again",
                    self.provider.name()
                );
                tracing::warn!(job = %job.id(), "{detail}");
                end(job, EmailEnd::Unknown { detail }, token)
            }
            _ => self.first(job, token, facts, env, now),
        }
    }

    /// A job handed over before: the same message, under the same key.
    fn again(&self, job: EmailJob, token: Token) -> Option<Next> {
        let email: Option<OutgoingEmail> = job
            .message
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok());
        let end = |job, detail, token| {
            let end = EmailEnd::Failed { detail };
            Some(Next::End(Ending {
                job,
                end,
                _token: token,
            }))
        };
        let Some(email) = email else {
            return end(job, "the rendered message was not kept".to_string(), token);
        };
        if job.tries >= i64::from(self.settings.max_tries) {
            let detail = format!("gave up after {} tries", job.tries);
            return end(job, detail, token);
        }
        Some(Next::HandOver(Ready {
            job,
            email,
            first: None,
            token,
        }))
    }

    /// A pending job: checked and rendered.
    fn first(
        &self,
        job: EmailJob,
        token: Token,
        facts: EmailFacts,
        env: &Arc<DecideEnv>,
        now: DateTime<Utc>,
    ) -> Option<Next> {
        let rules = &env.rules;
        let end = |job, end, token| {
            Some(Next::End(Ending {
                job,
                end,
                _token: token,
            }))
        };
        match check(rules, &job, &facts, now) {
            Verdict::Skip(reason, detail) => {
                return end(job, EmailEnd::Skipped { reason, detail }, token);
            }
            Verdict::Wait(until) => {
                let due_at = until.timestamp();
                tracing::debug!(job = %job.id(), %until, "e-mail waits for the end of quiet hours");
                return end(job, EmailEnd::Deferred { due_at }, token);
            }
            Verdict::Send => {}
        }
        let (Some(profile), Some(order), Some(followup)) = (
            facts.profile.as_ref(),
            facts.order.as_ref(),
            followup_as_sent(rules, &job, facts.profile.as_ref()),
        ) else {
            tracing::warn!(job = %job.id(), "e-mail: the checked job lost its facts; it is taken up again when its lease runs out");
            return None;
        };
        let attempts = HashMap::new();
        let coupons = plan_coupons(
            rules,
            followup,
            order,
            &env.key,
            &attempts,
            now.date_naive(),
        );
        let first = FirstSend {
            env: env.clone(),
            to_hash: address_hash(profile.email.as_deref().unwrap_or("")),
            unsubscribe: unsubscribe_url(&self.settings.public_url, &env.key, &job.customer_id),
            frequency: rules
                .email
                .max_per_customer
                .map(|(count, per)| (count, (now - per).timestamp())),
            facts,
            message: String::new(),
            coupons,
            attempts,
            now,
            rounds: 0,
        };
        self.render(job, token, Box::new(first))
    }

    /// Renders a pending job with its planned coupons: ready for the hand-over, or failed
    /// when it cannot be rendered.
    pub(super) fn render(
        &self,
        job: EmailJob,
        token: Token,
        mut first: Box<FirstSend>,
    ) -> Option<Next> {
        let rules = &first.env.rules;
        let (Some(profile), Some(order), Some(followup)) = (
            first.facts.profile.as_ref(),
            first.facts.order.as_ref(),
            followup_as_sent(rules, &job, first.facts.profile.as_ref()),
        ) else {
            return None;
        };
        let input = ComposeInput {
            rules,
            followup,
            profile,
            order,
            coupons: &first.coupons,
            shop: &first.env.shop,
            from: &self.settings.from,
            unsubscribe_url: &first.unsubscribe,
        };
        let email = match compose(&input) {
            Ok(email) => email,
            Err(e) => {
                let detail = format!("the e-mail could not be rendered: {e}");
                tracing::warn!(job = %job.id(), "{detail}");
                let end = EmailEnd::Failed { detail };
                return Some(Next::End(Ending {
                    job,
                    end,
                    _token: token,
                }));
            }
        };
        first.message = match serde_json::to_string(&email) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(job = %job.id(), error = %e, "e-mail: the rendered message could not be kept; it is taken up again when its lease runs out");
                return None;
            }
        };
        Some(Next::HandOver(Ready {
            job,
            email,
            first: Some(first),
            token,
        }))
    }
}

/// A rendering for the hand-over loop: what to do with a job sent back for other coupons.
pub(super) enum Rendered {
    Ready(Ready),
    End(Ending),
    Dropped,
}

impl Worker {
    /// [`Worker::render`] for the hand-over loop.
    pub(super) fn render_again(
        &self,
        job: EmailJob,
        token: Token,
        first: Box<FirstSend>,
    ) -> Rendered {
        match self.render(job, token, first) {
            Some(Next::HandOver(r)) => Rendered::Ready(r),
            Some(Next::End(e)) => Rendered::End(e),
            None => Rendered::Dropped,
        }
    }
}
