//! What a batch reads before its first event: its event ids, recorded as processed; the
//! profiles, orders and decisions its events refer to, one statement each; and the stock and
//! budget counters, once per batch (again after a lost claim).

use super::{Db, This};
use crate::event::{Event, EventBody};
use crate::profile::{OrderSummary, Profile};
use crate::store::apply::{CounterView, from_units};
use crate::store::backend::{BatchCache, corrupt, now_secs, sorted};
use crate::store::pending::*;
use crate::store::types::*;
use sqlx::Row;
use std::collections::HashMap;

impl This {
    /// Records the batch's event ids as processed and reads what its events refer to:
    /// profiles (locked on PostgreSQL), orders and existing decisions, one statement each.
    pub(super) async fn preload(
        tx: &mut sqlx::Transaction<'_, Db>,
        cache: &mut BatchCache,
        batch: &Batch,
    ) -> Result<(), StoreError> {
        // Events that will be applied, as far as can be told before folding: parsed,
        // and keyed by their customer.
        let events: Vec<&Event> = batch
            .items
            .iter()
            .filter_map(|i| match (&i.event, &i.key) {
                (Ok(e), Some(k)) if k.as_slice() != e.customer_id().as_bytes() => None,
                (Ok(e), _) => Some(e),
                _ => None,
            })
            .collect();
        let now = now_secs();
        // The first occurrence of an id in the batch gives its digest.
        let mut firsts: HashMap<&str, &[u8; 32]> = HashMap::new();
        for e in &events {
            firsts.entry(e.event_id.as_str()).or_insert(&e.digest);
        }
        let mut ids: Vec<(&str, &[u8; 32])> = firsts.into_iter().collect();
        ids.sort_unstable();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO processed_events (event_id, processed_at, digest) ",
            );
            qb.push_values(chunk, |mut b, (id, digest)| {
                b.push_bind(*id).push_bind(now).push_bind(digest.as_slice());
            });
            qb.push(" ON CONFLICT (event_id) DO NOTHING RETURNING event_id");
            for r in qb.build().persistent(false).fetch_all(&mut **tx).await? {
                cache.fresh.insert(r.try_get(0)?);
            }
        }
        let seen: Vec<&str> = ids
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !cache.fresh.contains(*id))
            .collect();
        for chunk in seen.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "SELECT event_id, digest FROM processed_events WHERE digest IS NOT NULL AND event_id IN (",
            );
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            qb.push(")");
            for r in qb.build().persistent(false).fetch_all(&mut **tx).await? {
                let stored: Vec<u8> = r.try_get(1)?;
                if let Ok(digest) = <[u8; 32]>::try_from(stored.as_slice()) {
                    cache.digests.insert(r.try_get(0)?, digest);
                }
            }
        }
        for (id, digest) in &ids {
            if cache.fresh.contains(*id) {
                cache.digests.insert(id.to_string(), **digest);
            }
        }
        let fresh: Vec<&Event> = events
            .into_iter()
            .filter(|e| cache.fresh.contains(&e.event_id))
            .collect();
        let customers = sorted(fresh.iter().map(|e| e.customer_id()).collect());
        for chunk in customers.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "SELECT customer_id, data FROM profiles WHERE customer_id IN (",
            );
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            qb.push(") ORDER BY customer_id");
            qb.push(Self::LOCK_PROFILES);
            for r in qb.build().persistent(false).fetch_all(&mut **tx).await? {
                let id: String = r.try_get(0)?;
                let p: Profile =
                    serde_json::from_str(&r.try_get::<String, _>(1)?).map_err(corrupt)?;
                cache.profiles.insert(id, p);
            }
        }
        for id in customers {
            if !cache.profiles.contains_key(id) {
                cache.profiles.insert(id.to_string(), Profile::new(id));
            }
        }
        let order_ids = sorted(fresh.iter().filter_map(|e| e.order_id()).collect());
        for chunk in order_ids.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "SELECT order_id, data FROM orders WHERE order_id IN (",
            );
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            qb.push(")");
            for r in qb.build().persistent(false).fetch_all(&mut **tx).await? {
                let id: String = r.try_get(0)?;
                let o: OrderSummary =
                    serde_json::from_str(&r.try_get::<String, _>(1)?).map_err(corrupt)?;
                cache.orders.insert(id, o);
            }
        }
        let placed = sorted(
            fresh
                .iter()
                .filter_map(|e| match &e.body {
                    EventBody::OrderPlaced(o) => Some(o.id.as_str()),
                    _ => None,
                })
                .collect(),
        );
        for chunk in placed.chunks(ROWS_PER_STATEMENT) {
            let mut qb =
                sqlx::QueryBuilder::<Db>::new("SELECT order_id FROM decisions WHERE order_id IN (");
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            qb.push(")");
            for r in qb.build().persistent(false).fetch_all(&mut **tx).await? {
                cache.decided.insert(r.try_get(0)?);
            }
        }
        Ok(())
    }

    pub(super) async fn counter_view(
        tx: &mut sqlx::Transaction<'_, Db>,
    ) -> Result<CounterView, StoreError> {
        let mut view = CounterView::default();
        for r in sqlx::query("SELECT insert_id, slot, used FROM stock")
            .fetch_all(&mut **tx)
            .await?
        {
            let used: i64 = r.try_get(2)?;
            view.stock.insert(
                (r.try_get(0)?, r.try_get(1)?),
                u32::try_from(used.max(0)).unwrap_or(u32::MAX),
            );
        }
        for r in sqlx::query("SELECT rule_id, period, currency, spent_units FROM budgets")
            .fetch_all(&mut **tx)
            .await?
        {
            view.budget.insert(
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?),
                from_units(r.try_get(3)?),
            );
        }
        Ok(view)
    }
}
