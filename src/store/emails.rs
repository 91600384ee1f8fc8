//! What the store offers the e-mail sender and the unsubscribe and bounce routes
//! (docs/ARCHITECTURE.md "E-mail jobs"): claiming due jobs under a lease, the facts a job is
//! checked against, the hand-over to the provider (frequency cap and coupons under a per-customer
//! lock), the end of a job, unsubscribes, suppressions and the operators' controls.

use super::StoreError;
use crate::profile::{OrderSummary, Profile};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// A job as claimed: the lease it was claimed with is the proof that it is this worker's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailJob {
    pub order_id: String,
    pub followup_id: String,
    pub customer_id: String,
    /// `pending`, `retry` or `sending` (found so after a crash).
    pub state: String,
    /// When it may go next (Unix seconds): the schedule, a quiet-hours end or a retry.
    pub due_at: i64,
    /// When it was scheduled for; `expire_after` counts from here.
    pub scheduled_for: i64,
    /// The lease this claim set (`claimed_until`).
    pub lease: i64,
    /// Claims so far, this one included.
    pub attempts: i64,
    /// Hand-overs to the provider so far.
    pub tries: i64,
    /// Times an operator asked to send it again (part of the idempotency key).
    pub resends: i64,
    /// The rendered e-mail (JSON), once handed over.
    pub message: Option<String>,
    /// The follow-up's variant it was scheduled with, when the follow-up is an experiment.
    pub variant: Option<String>,
}

impl EmailJob {
    /// `ORDER_ID/FOLLOWUP_ID`, as operators name a job.
    pub fn id(&self) -> String {
        job_id(&self.order_id, &self.followup_id)
    }
}

/// How operators and logs name a job.
pub fn job_id(order_id: &str, followup_id: &str) -> String {
    format!("{order_id}/{followup_id}")
}

/// Splits `ORDER_ID/FOLLOWUP_ID` at its last slash (follow-up ids have none).
pub fn parse_job_id(id: &str) -> Option<(&str, &str)> {
    let (order, followup) = id.rsplit_once('/')?;
    (!order.is_empty() && !followup.is_empty()).then_some((order, followup))
}

/// SHA-256 of the trimmed, lower-cased address: how suppressions and sent jobs name it.
pub fn address_hash(email: &str) -> String {
    hex::encode(Sha256::digest(email.trim().to_lowercase().as_bytes()))
}

/// What a job is checked against at send time, read in one go.
#[derive(Debug, Clone, Default)]
pub struct EmailFacts {
    pub profile: Option<Profile>,
    pub order: Option<OrderSummary>,
    /// The customer used an unsubscribe link (and has not subscribed again since).
    pub unsubscribed_by_link: bool,
    /// The address bounced hard (`hard_bounce`) or complained (`complaint`).
    pub suppressed: Option<String>,
}

/// A coupon an e-mail gives, as planned before the hand-over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCoupon {
    pub insert_id: String,
    pub code: String,
    pub amount: String,
    pub currency: String,
    pub min_order: Option<String>,
    pub expires_on: String,
}

/// What the hand-over writes when it goes ahead.
#[derive(Debug, Clone)]
pub struct SendPlan<'a> {
    pub coupons: &'a [PlannedCoupon],
    /// The rendered e-mail, JSON.
    pub message: &'a str,
    pub to_hash: &'a str,
    pub now: DateTime<Utc>,
    /// `[email] max_per_customer`: at most `count` hand-overs since `since` (Unix seconds).
    pub frequency: Option<(u32, i64)>,
    /// The lease renewed for the hand-over (Unix seconds): the job stays this worker's
    /// while it sends.
    pub lease_until: i64,
}

/// One job of a hand-over batch ([`EmailStore::begin_sends`]).
#[derive(Debug, Clone)]
pub enum HandOver<'a> {
    /// A `pending` job, checked and rendered: as [`EmailStore::begin_send`].
    First {
        job: &'a EmailJob,
        plan: SendPlan<'a>,
    },
    /// A job handed over before (`retry`, or `sending` after a crash): as
    /// [`EmailStore::resume_send`]; [`BeginSend::Go`] or [`BeginSend::Lost`].
    Again { job: &'a EmailJob, lease_until: i64 },
}

impl HandOver<'_> {
    pub fn job(&self) -> &EmailJob {
        match self {
            HandOver::First { job, .. } | HandOver::Again { job, .. } => job,
        }
    }
}

/// What became of a hand-over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginSend {
    /// Marked `sending`, coupons issued: send it now.
    Go,
    /// Over the frequency cap: the job is skipped (reason `frequency`), nothing issued.
    Frequency,
    /// The lease ran out and another worker has the job, or it was cancelled meanwhile.
    Lost,
    /// The e-mail's coupons were issued before (an operator's resend): render with these.
    Existing(Vec<PlannedCoupon>),
    /// This code belongs to another coupon: plan the insert again with the next attempt.
    Collision { insert_id: String },
}

/// How a job ends, or waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailEnd {
    Sent {
        detail: String,
    },
    /// Try again at `due_at` (Unix seconds).
    Retry {
        due_at: i64,
        detail: String,
    },
    Failed {
        detail: String,
    },
    Unknown {
        detail: String,
    },
    Skipped {
        reason: EmailSkip,
        detail: String,
    },
    /// Not now (quiet hours): pending again, due at `due_at`.
    Deferred {
        due_at: i64,
    },
}

/// Why an e-mail was not sent (docs/REFERENCE.md §5), and `holdout` for the control group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EmailSkip {
    Unsubscribed,
    Suppressed,
    Cancelled,
    Condition,
    Frequency,
    Expired,
    Holdout,
}

impl EmailSkip {
    pub const ALL: [EmailSkip; 7] = [
        EmailSkip::Unsubscribed,
        EmailSkip::Suppressed,
        EmailSkip::Cancelled,
        EmailSkip::Condition,
        EmailSkip::Frequency,
        EmailSkip::Expired,
        EmailSkip::Holdout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EmailSkip::Unsubscribed => "unsubscribed",
            EmailSkip::Suppressed => "suppressed",
            EmailSkip::Cancelled => "cancelled",
            EmailSkip::Condition => "condition",
            EmailSkip::Frequency => "frequency",
            EmailSkip::Expired => "expired",
            EmailSkip::Holdout => "holdout",
        }
    }
}

/// A job as operators see it (`packwell email list`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EmailJobRow {
    pub id: String,
    pub order_id: String,
    pub followup_id: String,
    pub customer_id: String,
    pub state: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
    /// Unix seconds.
    pub due_at: i64,
    pub scheduled_for: i64,
    pub tries: i64,
    pub sending_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// What an operator's cancel or resend did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailControl {
    /// Done; the state the job was in.
    Done { before: String },
    /// No such job.
    Unknown,
    /// Not in a state this control applies to.
    Refused { state: String },
}

/// A hard bounce or a complaint as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// False when the address was suppressed already (nothing emitted again).
    pub new: bool,
    /// The customers e-mails to this address went to; each got a `customer.suppressed`.
    pub customers: Vec<String>,
}

#[async_trait]
pub trait EmailStore: Send + Sync {
    /// Claims up to `limit` jobs due at `now` (pending, retry, or sending with a lapsed lease)
    /// with a lease until `lease_until` (Unix seconds); `FOR UPDATE SKIP LOCKED` on PostgreSQL.
    async fn claim_due_emails(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<EmailJob>, StoreError>;
    /// The profile, the order and the customer's unsubscribe and suppression state.
    async fn email_facts(&self, job: &EmailJob) -> Result<EmailFacts, StoreError>;
    /// [`email_facts`](Self::email_facts) of each job, in their order, read in one go.
    async fn email_facts_of(&self, jobs: &[EmailJob]) -> Result<Vec<EmailFacts>, StoreError>;
    /// Hands a `pending` job over: under the customer's lock, checks the frequency cap, issues
    /// the planned coupons (`coupon.issued` in the outbox) and marks it `sending` with its
    /// message, in one transaction.
    async fn begin_send(
        &self,
        job: &EmailJob,
        plan: &SendPlan<'_>,
    ) -> Result<BeginSend, StoreError>;
    /// Hands over several jobs in one transaction, each as [`begin_send`](Self::begin_send)
    /// or [`resume_send`](Self::resume_send) would alone (customers' locks taken in sorted
    /// order); what became of each, in their order. A job sent back (`Existing`,
    /// `Collision`) leaves nothing written; the others stand.
    async fn begin_sends(&self, hand_overs: &[HandOver<'_>]) -> Result<Vec<BeginSend>, StoreError>;
    /// Counts one more try of a job handed over before (`retry`, or `sending` after a crash)
    /// and marks it `sending`, its lease renewed until `lease_until`; false when the lease
    /// was lost.
    async fn resume_send(&self, job: &EmailJob, lease_until: i64) -> Result<bool, StoreError>;
    /// Ends a claimed job (or lets it wait); false when the lease was lost. A job that issued
    /// coupons when it was handed over and then fails or is skipped voids them
    /// (`coupon.voided`, reason `email_not_sent`), unless it was sent before.
    async fn finish_email(
        &self,
        job: &EmailJob,
        end: &EmailEnd,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Ends several claimed jobs in one transaction, each as
    /// [`finish_email`](Self::finish_email) would alone; whether each lease still held, in
    /// their order.
    async fn finish_emails(
        &self,
        ends: &[(&EmailJob, &EmailEnd)],
        now: i64,
    ) -> Result<Vec<bool>, StoreError>;
    /// Records an unsubscribe from a link, with `customer.unsubscribed` in the outbox the
    /// first time; true when it is new.
    async fn unsubscribe(&self, customer_id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Whether a customer unsubscribed, by link or by the shop's event.
    async fn is_unsubscribed(&self, customer_id: &str) -> Result<bool, StoreError>;
    /// Suppresses an address (`hard_bounce` or `complaint`), with `customer.suppressed` for
    /// each customer it was used for, the first time.
    async fn suppress(
        &self,
        email: &str,
        reason: &str,
        occurred_at: DateTime<Utc>,
    ) -> Result<Suppression, StoreError>;
    /// Jobs of an order or a customer (or the newest ones), newest first, at most `limit`.
    async fn email_jobs(
        &self,
        order_id: Option<&str>,
        customer_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EmailJobRow>, StoreError>;
    /// `packwell email cancel`: a pending or retrying job is skipped (`cancelled`).
    async fn cancel_email(
        &self,
        order_id: &str,
        followup_id: &str,
        actor: &str,
    ) -> Result<EmailControl, StoreError>;
    /// `packwell email resend`: a sent, failed, unknown or skipped job (not a held-out one) is
    /// pending again, due at `now`, under a new idempotency key; its coupons stay the same.
    async fn resend_email(
        &self,
        order_id: &str,
        followup_id: &str,
        actor: &str,
        now: i64,
    ) -> Result<EmailControl, StoreError>;
}

/// The key that names one sending of a job at the provider: the same for every try of it, a
/// new one only when an operator asks for a resend.
pub fn idempotency_key(order_id: &str, followup_id: &str, resends: i64) -> String {
    let mut h = Sha256::new();
    for field in [order_id.as_bytes(), followup_id.as_bytes()] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field);
    }
    h.update(resends.to_be_bytes());
    format!("pw-{}", hex::encode(&h.finalize()[..16]))
}
