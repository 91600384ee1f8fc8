//! Reads for the station API and the tools: decisions, profiles, coupons, stock counters, the
//! newest decision's time; a readiness round trip; every text value, for tests.

use super::This;
use crate::engine::Decision;
use crate::profile::Profile;
use crate::store::backend::{corrupt, packed_from_columns};
use crate::store::types::*;
use sqlx::Row;

impl This {
    /// The work of [`Store::decision`](crate::store::Store::decision).
    pub(super) async fn read_decision(
        &self,
        order_id: &str,
    ) -> Result<Option<StoredDecision>, StoreError> {
        let row = sqlx::query(
            "SELECT d.decision, d.warehouse, p.station, p.body, p.confirmed_at FROM decisions d \
             LEFT JOIN packed_confirmations p ON p.order_id = d.order_id WHERE d.order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(&self.read)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let decision: Decision =
                    serde_json::from_str(&r.try_get::<String, _>(0)?).map_err(corrupt)?;
                let packed = match r.try_get::<Option<String>, _>(2)? {
                    None => None,
                    Some(station) => Some(packed_from_columns(
                        station,
                        &r.try_get::<String, _>(3)?,
                        r.try_get(4)?,
                    )?),
                };
                Ok(Some(StoredDecision {
                    decision,
                    warehouse: r.try_get(1)?,
                    packed,
                }))
            }
        }
    }

    /// The work of [`Store::profile`](crate::store::Store::profile).
    pub(super) async fn read_profile(
        &self,
        customer_id: &str,
    ) -> Result<Option<Profile>, StoreError> {
        let row = sqlx::query("SELECT data FROM profiles WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| serde_json::from_str(&r.try_get::<String, _>(0)?).map_err(corrupt))
            .transpose()
    }

    /// The work of [`Store::coupons_of_order`](crate::store::Store::coupons_of_order).
    pub(super) async fn read_coupons_of_order(
        &self,
        order_id: &str,
    ) -> Result<Vec<CouponRow>, StoreError> {
        let rows = sqlx::query("SELECT code, insert_id, state, version, redeemed_order_id FROM coupons WHERE order_id = $1 ORDER BY code")
            .bind(order_id)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CouponRow {
                    code: r.try_get(0)?,
                    insert_id: r.try_get(1)?,
                    state: r.try_get(2)?,
                    version: r.try_get(3)?,
                    redeemed_order_id: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// The work of [`Store::stock_used`](crate::store::Store::stock_used).
    pub(super) async fn read_stock_used(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT insert_id, slot, used FROM stock ORDER BY insert_id, slot")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// The work of [`Store::newest_decision_at`](crate::store::Store::newest_decision_at).
    pub(super) async fn read_newest_decision_at(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(decided_at) FROM decisions")
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    /// The work of [`Store::ping`](crate::store::Store::ping).
    pub(super) async fn ping_reader(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// The work of [`Store::dump_text`](crate::store::Store::dump_text).
    pub(super) async fn dump_tables_text(&self) -> Result<String, StoreError> {
        let mut out = String::new();
        for (table, cols) in [
            ("meta", "key, value"),
            ("processed_events", "event_id"),
            ("profiles", "customer_id, data"),
            ("orders", "order_id, customer_id, data"),
            (
                "decisions",
                "order_id, customer_id, warehouse, rules_version, decision",
            ),
            ("given_inserts", "order_id, insert_id, rule_id, kind, state"),
            (
                "coupons",
                "code, order_id, source_id, insert_id, customer_id, state",
            ),
            ("email_jobs", "order_id, followup_id, customer_id, state"),
            ("imports", "source"),
            ("operator_log", "actor, action, subject, detail"),
        ] {
            for r in sqlx::query(&format!("SELECT {cols} FROM {table}"))
                .fetch_all(&self.read)
                .await?
            {
                for i in 0..cols.split(',').count() {
                    out.push_str(&r.try_get::<String, _>(i)?);
                    out.push('\n');
                }
            }
        }
        for r in sqlx::query("SELECT payload, headers FROM outbox")
            .fetch_all(&self.read)
            .await?
        {
            out.push_str(&String::from_utf8_lossy(&r.try_get::<Vec<u8>, _>(0)?));
            out.push_str(&r.try_get::<Option<String>, _>(1)?.unwrap_or_default());
            out.push('\n');
        }
        Ok(out)
    }
}
