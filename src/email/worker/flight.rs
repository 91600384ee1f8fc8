//! What travels through the sender's pipeline: a claimed job with its place in the count of
//! jobs in flight, ready to be handed over or with its end.

use crate::email::compose::OutgoingEmail;
use crate::store::DecideEnv;
use crate::store::emails::{EmailEnd, EmailFacts, EmailJob, PlannedCoupon};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// How many claimed jobs have not ended yet (their end written, or dropped after a store
/// error): a drain claims again only when it is zero, as one whose claims were all sent and
/// ended would.
#[derive(Clone)]
pub(super) struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    pub(super) fn new() -> InFlight {
        InFlight(Arc::new(watch::channel(0).0))
    }

    /// Counts a claimed job until the token is dropped.
    pub(super) fn token(&self) -> Token {
        self.0.send_modify(|n| *n += 1);
        Token(self.0.clone())
    }

    pub(super) fn is_idle(&self) -> bool {
        *self.0.borrow() == 0
    }

    /// Waits until every claimed job has ended.
    pub(super) async fn idle(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`: `wait_for` ends when the count is zero.
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// A claimed job's place in the [`InFlight`] count.
pub(super) struct Token(Arc<watch::Sender<usize>>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A checked, rendered job waiting for a sending slot.
pub(super) struct Ready {
    pub job: EmailJob,
    pub email: OutgoingEmail,
    /// A pending job's hand-over; none for a job handed over before (sent again as it is).
    pub first: Option<Box<FirstSend>>,
    pub token: Token,
}

/// What a pending job's hand-over needs, and what it takes to render it again with other
/// coupons when the hand-over sends it back.
pub(super) struct FirstSend {
    pub env: Arc<DecideEnv>,
    pub facts: EmailFacts,
    /// The rendered e-mail as the store keeps it (JSON).
    pub message: String,
    pub coupons: Vec<PlannedCoupon>,
    /// Code attempts per insert, moved on by collisions.
    pub attempts: HashMap<String, u32>,
    pub to_hash: String,
    pub unsubscribe: String,
    pub frequency: Option<(u32, i64)>,
    /// When it was checked: the day its coupons' validity counts from.
    pub now: DateTime<Utc>,
    /// Hand-overs sent back so far (bounded).
    pub rounds: u32,
}

/// A job's end, on its way to the store.
pub(super) struct Ending {
    pub job: EmailJob,
    pub end: EmailEnd,
    /// Dropped once the end is written.
    pub _token: Token,
}

impl Ready {
    /// Not handed over (the sender stops): the job's lease is given up, due as it was.
    pub(super) async fn give_back(self, ends: &mpsc::Sender<Ending>) {
        let end = EmailEnd::Deferred {
            due_at: self.job.due_at,
        };
        let ending = Ending {
            job: self.job,
            end,
            _token: self.token,
        };
        // The recorder outlives every sender of ends.
        let _ = ends.send(ending).await;
    }
}
