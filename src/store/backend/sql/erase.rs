//! `forget`, written once for both backends (what becomes of each stored message is in
//! `scrub.rs`): the customer's personal data goes from their rows in one write transaction,
//! then the backend cleans up the copies the database itself keeps (`backend/erase.rs`).

use super::{Db, This};
use crate::profile::Profile;
use crate::store::backend::corrupt;
use crate::store::backend::erase::{JobRow, add_recipient, names_customer};
use crate::store::emails::idempotency_key;
use crate::store::scrub::{Needles, scrub_headers, scrub_payload};
use crate::store::types::*;
use serde_json::Value;
use sqlx::Row;
use std::collections::HashSet;

impl This {
    /// [`crate::store::Store::forget_customer`]: the rows in one write transaction,
    /// then the backend's clean-up of the copies the database itself keeps.
    pub(super) async fn erase_customer(
        &self,
        customer_id: &str,
    ) -> Result<ForgetReport, StoreError> {
        let mut report = self.erase_rows(customer_id).await?;
        if report.profiles
            + report.orders
            + report.decisions
            + report.email_jobs
            + report.outbox_rows
            + report.events
            > 0
        {
            report.cleanup = Some(self.after_forget().await?);
        }
        Ok(report)
    }

    async fn erase_rows(&self, customer_id: &str) -> Result<ForgetReport, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut report = ForgetReport::default();
        let mut needles = Needles::default();

        // First what names them, so that each copy below loses every known value.
        let profile = sqlx::query(&format!(
            "SELECT data FROM profiles WHERE customer_id = $1{}",
            Self::LOCK_ROW
        ))
        .bind(customer_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get::<String, _>(0))
        .transpose()?;
        let mut profile: Option<Profile> = profile
            .map(|d| serde_json::from_str(&d).map_err(corrupt))
            .transpose()?;
        if let Some(p) = &profile {
            for v in [&p.first_name, &p.last_name, &p.email]
                .into_iter()
                .flatten()
            {
                needles.add(v);
            }
            // Files written to the profile's address are theirs too, also those of
            // jobs that retention has removed since.
            if let Some(email) = p.email.as_deref().filter(|e| !e.trim().is_empty()) {
                report
                    .address_hashes
                    .push(crate::store::emails::address_hash(email));
            }
        }
        let mut jobs = Vec::new();
        for r in sqlx::query("SELECT order_id, followup_id, resends, message, to_hash, detail FROM email_jobs WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_all(&mut *tx)
            .await?
        {
            jobs.push(JobRow {
                order_id: r.try_get(0)?,
                followup_id: r.try_get(1)?,
                resends: r.try_get(2)?,
                message: r.try_get(3)?,
                to_hash: r.try_get(4)?,
                detail: r.try_get(5)?,
            });
        }
        for j in &jobs {
            if let Some(m) = &j.message {
                add_recipient(&mut needles, m);
            }
        }
        let outbox = self.outbox_rows_of(&mut tx, customer_id).await?;
        for (_, topic, payload, _) in &outbox {
            if topic == TOPIC_DLQ
                && let Ok(v) = serde_json::from_slice::<Value>(payload)
            {
                needles.add_from_event(&v);
            }
        }
        Self::kept_event_needles(&mut tx, customer_id, &mut needles).await?;

        // The profile: its personal fields go; its counts stay.
        if let Some(p) = profile.as_mut().filter(|p| {
            p.first_name.is_some()
                || p.last_name.is_some()
                || p.email.is_some()
                || p.locale.is_some()
                || p.time_zone.is_some()
                || p.birthday_month.is_some()
        }) {
            p.first_name = None;
            p.last_name = None;
            p.email = None;
            p.locale = None;
            p.time_zone = None;
            p.birthday_month = None;
            sqlx::query("UPDATE profiles SET data = $1 WHERE customer_id = $2")
                .bind(serde_json::to_string(p).map_err(corrupt)?)
                .bind(customer_id)
                .execute(&mut *tx)
                .await?;
            report.profiles = 1;
        }
        // Rendered e-mails name the customer and hold the address: they go, and so
        // does the address's hash. A job not sent yet then finds no address and ends
        // skipped; one cut off mid-send has no message to send again and ends failed.
        // The provider's answers may quote the address.
        for j in &jobs {
            let detail = j.detail.as_deref().map(|d| needles.redact(d));
            if j.message.is_some() || j.to_hash.is_some() || detail != j.detail {
                sqlx::query("UPDATE email_jobs SET message = NULL, to_hash = NULL, detail = $3 WHERE order_id = $1 AND followup_id = $2")
                    .bind(&j.order_id)
                    .bind(&j.followup_id)
                    .bind(&detail)
                    .execute(&mut *tx)
                    .await?;
                report.email_jobs += 1;
            }
            for resend in 0..=j.resends.max(0) {
                report
                    .email_keys
                    .push(idempotency_key(&j.order_id, &j.followup_id, resend));
            }
            report.address_hashes.extend(j.to_hash.clone());
        }
        report.address_hashes.sort();
        report.address_hashes.dedup();
        // Notes greet the customer by name: their text goes, the decision's shape stays.
        for (table, key, column, kind) in [
            ("decisions", "order_id", "decision", 0),
            ("orders", "order_id", "data", 1),
        ] {
            let rows = sqlx::query(&format!(
                "SELECT {key}, {column} FROM {table} WHERE customer_id = $1"
            ))
            .bind(customer_id)
            .fetch_all(&mut *tx)
            .await?;
            for r in rows {
                let id: String = r.try_get(0)?;
                let text: String = r.try_get(1)?;
                let Some(new) = scrub_payload(text.as_bytes(), &needles) else {
                    continue;
                };
                sqlx::query(&format!(
                    "UPDATE {table} SET {column} = $1 WHERE {key} = $2"
                ))
                .bind(String::from_utf8(new).map_err(corrupt)?)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                if kind == 0 {
                    report.decisions += 1;
                } else {
                    report.orders += 1;
                }
            }
        }
        // Every message about them, sent or not: the relay sends a scrubbed one as it
        // is now, and nothing sent before keeps a copy here.
        for (id, topic, payload, headers) in &outbox {
            let new_payload = scrub_payload(payload, &needles);
            let new_headers = match headers {
                Some(h) if topic == TOPIC_DLQ => scrub_headers(h, &needles),
                _ => None,
            };
            if new_payload.is_none() && new_headers.is_none() {
                continue;
            }
            sqlx::query("UPDATE outbox SET payload = $1, headers = $2 WHERE id = $3")
                .bind(new_payload.as_deref().unwrap_or(payload.as_slice()))
                .bind(new_headers.as_ref().or(headers.as_ref()))
                .bind(*id)
                .execute(&mut *tx)
                .await?;
            report.outbox_rows += 1;
        }
        // Their kept events go whole: a replayed history without them is still a history.
        report.events = Self::erase_kept_events(&mut tx, customer_id).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// The outbox rows about a customer, in any state: keyed by their id (their DLQ
    /// copies, their preferences), by their orders (packing instructions), by their
    /// coupons, and DLQ copies of their events that came without a key.
    async fn outbox_rows_of(
        &self,
        tx: &mut sqlx::Transaction<'_, Db>,
        customer_id: &str,
    ) -> Result<Vec<(i64, String, Vec<u8>, Option<String>)>, StoreError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut take =
            |rows: Vec<<Db as sqlx::Database>::Row>, only_theirs: bool| -> Result<(), StoreError> {
                for r in rows {
                    let id: i64 = r.try_get(0)?;
                    let payload: Vec<u8> = r.try_get(2)?;
                    if (only_theirs && !names_customer(&payload, customer_id)) || !seen.insert(id) {
                        continue;
                    }
                    out.push((id, r.try_get(1)?, payload, r.try_get(3)?));
                }
                Ok(())
            };
        const COLUMNS: &str = "SELECT id, topic, payload, headers FROM outbox WHERE ";
        let rows = sqlx::query(&format!("{COLUMNS}msg_key = $1"))
            .bind(customer_id.as_bytes())
            .fetch_all(&mut **tx)
            .await?;
        take(rows, false)?;
        let rows = sqlx::query(&format!("{COLUMNS}topic = $1 AND msg_key IS NULL"))
            .bind(TOPIC_DLQ)
            .fetch_all(&mut **tx)
            .await?;
        take(rows, true)?;
        let mut orders: Vec<String> = Vec::new();
        for sql in [
            "SELECT order_id FROM decisions WHERE customer_id = $1",
            "SELECT order_id FROM orders WHERE customer_id = $1",
        ] {
            for r in sqlx::query(sql)
                .bind(customer_id)
                .fetch_all(&mut **tx)
                .await?
            {
                orders.push(r.try_get(0)?);
            }
        }
        orders.sort();
        orders.dedup();
        let mut codes: Vec<String> = Vec::new();
        for r in sqlx::query("SELECT code FROM coupons WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_all(&mut **tx)
            .await?
        {
            codes.push(r.try_get(0)?);
        }
        for (topic, keys) in [(TOPIC_PACKING, &orders), (TOPIC_COUPONS, &codes)] {
            for chunk in keys.chunks(ROWS_PER_STATEMENT) {
                let mut qb = sqlx::QueryBuilder::<Db>::new(COLUMNS);
                qb.push("topic = ")
                    .push_bind(topic)
                    .push(" AND msg_key IN (");
                let mut list = qb.separated(", ");
                for k in chunk {
                    list.push_bind(k.as_bytes());
                }
                qb.push(")");
                let rows = qb.build().persistent(false).fetch_all(&mut **tx).await?;
                take(rows, false)?;
            }
        }
        Ok(out)
    }
}
