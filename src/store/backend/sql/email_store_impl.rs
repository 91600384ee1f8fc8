//! [`EmailStore`] for the backend. Each method calls the inherent method that does the work, in
//! the file of its concern, under a name of its own, so that it is plain which of the two a
//! call reaches.

use super::This;
use crate::store::emails::*;
use crate::store::types::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[async_trait]
impl EmailStore for This {
    async fn claim_due_emails(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<EmailJob>, StoreError> {
        self.claim_due_jobs(now, lease_until, limit).await
    }

    async fn email_facts(&self, job: &EmailJob) -> Result<EmailFacts, StoreError> {
        let mut facts = self.read_email_facts(std::slice::from_ref(job)).await?;
        Ok(facts.pop().unwrap_or_default())
    }

    async fn email_facts_of(&self, jobs: &[EmailJob]) -> Result<Vec<EmailFacts>, StoreError> {
        self.read_email_facts(jobs).await
    }

    async fn begin_send(
        &self,
        job: &EmailJob,
        plan: &SendPlan<'_>,
    ) -> Result<BeginSend, StoreError> {
        let plan = plan.clone();
        let mut out = self
            .begin_email_sends(&[HandOver::First { job, plan }])
            .await?;
        Ok(out.pop().unwrap_or(BeginSend::Lost))
    }

    async fn begin_sends(&self, hand_overs: &[HandOver<'_>]) -> Result<Vec<BeginSend>, StoreError> {
        self.begin_email_sends(hand_overs).await
    }

    async fn resume_send(&self, job: &EmailJob, lease_until: i64) -> Result<bool, StoreError> {
        let out = self
            .begin_email_sends(&[HandOver::Again { job, lease_until }])
            .await?;
        Ok(out.first() == Some(&BeginSend::Go))
    }

    async fn finish_email(
        &self,
        job: &EmailJob,
        end: &EmailEnd,
        now: i64,
    ) -> Result<bool, StoreError> {
        let out = self.finish_email_jobs(&[(job, end)], now).await?;
        Ok(out.first() == Some(&true))
    }

    async fn finish_emails(
        &self,
        ends: &[(&EmailJob, &EmailEnd)],
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        self.finish_email_jobs(ends, now).await
    }

    async fn unsubscribe(&self, customer_id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.record_unsubscribe(customer_id, at).await
    }

    async fn is_unsubscribed(&self, customer_id: &str) -> Result<bool, StoreError> {
        self.read_unsubscribed(customer_id).await
    }

    async fn suppress(
        &self,
        email: &str,
        reason: &str,
        occurred_at: DateTime<Utc>,
    ) -> Result<Suppression, StoreError> {
        self.record_suppression(email, reason, occurred_at).await
    }

    async fn email_jobs(
        &self,
        order_id: Option<&str>,
        customer_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EmailJobRow>, StoreError> {
        self.read_email_jobs(order_id, customer_id, limit).await
    }

    async fn cancel_email(
        &self,
        order_id: &str,
        followup_id: &str,
        actor: &str,
    ) -> Result<EmailControl, StoreError> {
        self.cancel_email_job(order_id, followup_id, actor).await
    }

    async fn resend_email(
        &self,
        order_id: &str,
        followup_id: &str,
        actor: &str,
        now: i64,
    ) -> Result<EmailControl, StoreError> {
        self.resend_email_job(order_id, followup_id, actor, now)
            .await
    }
}
