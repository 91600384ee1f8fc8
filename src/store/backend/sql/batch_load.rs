//! Loading the state a batch's events touch, one statement per kind of row (in chunks): the
//! event ids it processes, its customers' profiles (locked on PostgreSQL), its orders and which
//! are decided, the coupons it redeems or may void, the given inserts of the orders it cancels
//! and the stock and budget counters.

use super::{Db, This};
use crate::event::{Event, EventBody};
use crate::money::from_units;
use crate::profile::{OrderSummary, Profile};
use crate::step::{CounterState, CouponState, CouponStatus, GivenState, GivenStatus, State};
use crate::store::StoreError;
use crate::store::backend::{corrupt, now_secs, sorted};
use crate::store::types::*;
use sqlx::Row;
use std::collections::{HashMap, HashSet};

/// `SELECT … WHERE column IN (ids)` in chunks, with `tail` after the list.
pub(super) fn in_list<'a>(head: &str, ids: &[&'a str], tail: &str) -> sqlx::QueryBuilder<'a, Db> {
    let mut qb = sqlx::QueryBuilder::<Db>::new(head);
    let mut list = qb.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    qb.push(")");
    qb.push(tail);
    qb
}

impl This {
    /// Records the batch's event ids as processed and reads everything its new events may
    /// touch. Ids are read in sorted order, so that locks are always taken in one order.
    pub(super) async fn load_state(
        tx: &mut sqlx::Transaction<'_, Db>,
        batch: &Batch,
    ) -> Result<State, StoreError> {
        let mut state = State::default();
        // Events that will be applied, as far as can be told before the step: parsed, and
        // keyed by their customer.
        let events: Vec<&Event> = batch
            .items
            .iter()
            .filter_map(|i| match (&i.event, &i.key) {
                (Ok(e), Some(k)) if k.as_slice() != e.customer_id().as_bytes() => None,
                (Ok(e), _) => Some(e),
                _ => None,
            })
            .collect();
        let fresh = Self::mark_processed(tx, &mut state, &events).await?;
        let fresh: Vec<&Event> = events
            .into_iter()
            .filter(|e| fresh.contains(e.event_id.as_str()))
            .collect();
        let customers = sorted(fresh.iter().map(|e| e.customer_id()).collect());
        for chunk in statement_chunks(&customers) {
            let head = "SELECT customer_id, data FROM profiles WHERE customer_id IN (";
            let tail = format!(" ORDER BY customer_id{}", Self::LOCK_PROFILES);
            for r in in_list(head, chunk, &tail)
                .build()
                .fetch_all(&mut **tx)
                .await?
            {
                let p: Profile =
                    serde_json::from_str(&r.try_get::<String, _>(1)?).map_err(corrupt)?;
                state.profiles.insert(r.try_get(0)?, p);
            }
        }
        let order_ids = sorted(fresh.iter().filter_map(|e| e.order_id()).collect());
        for chunk in statement_chunks(&order_ids) {
            let head = "SELECT order_id, data FROM orders WHERE order_id IN (";
            for r in in_list(head, chunk, "")
                .build()
                .fetch_all(&mut **tx)
                .await?
            {
                let o: OrderSummary =
                    serde_json::from_str(&r.try_get::<String, _>(1)?).map_err(corrupt)?;
                state.orders.insert(r.try_get(0)?, o);
            }
        }
        let placed: Vec<&crate::event::Order> = fresh
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::OrderPlaced(o) => Some(&**o),
                _ => None,
            })
            .collect();
        let placed_ids = sorted(placed.iter().map(|o| o.id.as_str()).collect());
        for chunk in statement_chunks(&placed_ids) {
            let head = "SELECT order_id FROM decisions WHERE order_id IN (";
            for r in in_list(head, chunk, "")
                .build()
                .fetch_all(&mut **tx)
                .await?
            {
                state.decided.insert(r.try_get(0)?);
            }
        }
        let cancelled = sorted(
            fresh
                .iter()
                .filter_map(|e| match &e.body {
                    EventBody::OrderCancelled { order_id, .. } => Some(order_id.as_str()),
                    _ => None,
                })
                .collect(),
        );
        Self::load_settlements(tx, &mut state, &cancelled).await?;
        let redeemed = sorted(
            placed
                .iter()
                .flat_map(|o| o.coupon_codes.iter().map(String::as_str))
                .collect(),
        );
        for chunk in statement_chunks(&redeemed) {
            let head =
                "SELECT code, order_id, customer_id, state, version FROM coupons WHERE code IN (";
            Self::load_coupons(tx, &mut state, in_list(head, chunk, "")).await?;
        }
        if batch.items.iter().any(|i| i.decide) && !placed.is_empty() {
            // The codes in use read above stay: they are not counters.
            let counters = Self::counter_state(tx).await?;
            state.counters.stock = counters.stock;
            state.counters.budget = counters.budget;
        }
        Ok(state)
    }

    /// Inserts the batch's event ids into `processed_events`; the ids new to it are returned,
    /// and the others are put in `state.seen` with the digest they were processed with.
    async fn mark_processed(
        tx: &mut sqlx::Transaction<'_, Db>,
        state: &mut State,
        events: &[&Event],
    ) -> Result<HashSet<String>, StoreError> {
        let now = now_secs();
        // The first occurrence of an id in the batch gives its digest.
        let mut firsts: HashMap<&str, &[u8; 32]> = HashMap::new();
        for e in events {
            firsts.entry(e.event_id.as_str()).or_insert(&e.digest);
        }
        let mut ids: Vec<(&str, &[u8; 32])> = firsts.into_iter().collect();
        ids.sort_unstable();
        let mut fresh: HashSet<String> = HashSet::new();
        for chunk in statement_chunks(&ids) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO processed_events (event_id, processed_at, digest) ",
            );
            qb.push_values(chunk, |mut b, (id, digest)| {
                b.push_bind(*id).push_bind(now).push_bind(digest.as_slice());
            });
            qb.push(" ON CONFLICT (event_id) DO NOTHING RETURNING event_id");
            for r in qb.build().fetch_all(&mut **tx).await? {
                fresh.insert(r.try_get(0)?);
            }
        }
        let seen: Vec<&str> = ids
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !fresh.contains(*id))
            .collect();
        for id in &seen {
            state.seen.insert(id.to_string(), None);
        }
        for chunk in statement_chunks(&seen) {
            let head = "SELECT event_id, digest FROM processed_events WHERE digest IS NOT NULL AND event_id IN (";
            for r in in_list(head, chunk, "")
                .build()
                .fetch_all(&mut **tx)
                .await?
            {
                let stored: Vec<u8> = r.try_get(1)?;
                if let Ok(digest) = <[u8; 32]>::try_from(stored.as_slice()) {
                    state.seen.insert(r.try_get(0)?, Some(digest));
                }
            }
        }
        Ok(fresh)
    }

    /// What cancelling `orders` settles: their coupons, given inserts and packing
    /// confirmations. Each order's decision row is its lock, as a packing confirmation takes it:
    /// a confirmation either committed before (the parcel is on its way) or waits and sees the
    /// cancellation.
    async fn load_settlements(
        tx: &mut sqlx::Transaction<'_, Db>,
        state: &mut State,
        orders: &[&str],
    ) -> Result<(), StoreError> {
        for chunk in statement_chunks(orders) {
            let head = "SELECT order_id FROM decisions WHERE order_id IN (";
            let tail = format!(" ORDER BY order_id{}", Self::LOCK_ROW);
            in_list(head, chunk, &tail)
                .build()
                .fetch_all(&mut **tx)
                .await?;
            let head = "SELECT order_id, seq, insert_id, kind, stock_slot, state FROM given_inserts WHERE order_id IN (";
            let rows = in_list(head, chunk, " ORDER BY order_id, seq")
                .build()
                .fetch_all(&mut **tx)
                .await?;
            for r in rows {
                let status: String = r.try_get(5)?;
                let given = GivenState {
                    seq: r.try_get(1)?,
                    insert_id: r.try_get(2)?,
                    kind: r.try_get(3)?,
                    stock_slot: r.try_get(4)?,
                    status: GivenStatus::parse(&status)
                        .ok_or_else(|| corrupt(format!("given insert state {status:?}")))?,
                };
                state.given.entry(r.try_get(0)?).or_default().push(given);
            }
            let head = "SELECT order_id FROM packed_confirmations WHERE order_id IN (";
            for r in in_list(head, chunk, "")
                .build()
                .fetch_all(&mut **tx)
                .await?
            {
                state.packed.insert(r.try_get(0)?);
            }
            let head = "SELECT code, order_id, customer_id, state, version FROM coupons WHERE order_id IN (";
            Self::load_coupons(tx, state, in_list(head, chunk, " ORDER BY issued_at, code"))
                .await?;
        }
        Ok(())
    }

    async fn load_coupons(
        tx: &mut sqlx::Transaction<'_, Db>,
        state: &mut State,
        mut query: sqlx::QueryBuilder<'_, Db>,
    ) -> Result<(), StoreError> {
        for r in query.build().fetch_all(&mut **tx).await? {
            let code: String = r.try_get(0)?;
            if state.coupons.contains_key(&code) {
                continue;
            }
            let status: String = r.try_get(3)?;
            let coupon = CouponState {
                order_id: r.try_get(1)?,
                customer_id: r.try_get(2)?,
                status: CouponStatus::parse(&status)
                    .ok_or_else(|| corrupt(format!("coupon state {status:?}")))?,
                version: r.try_get(4)?,
            };
            state.add_coupon(&code, coupon);
        }
        Ok(())
    }

    /// Every stock and budget counter, as the engine decides on them.
    pub(super) async fn counter_state(
        tx: &mut sqlx::Transaction<'_, Db>,
    ) -> Result<CounterState, StoreError> {
        let mut counters = CounterState::default();
        for r in sqlx::query("SELECT insert_id, slot, used FROM stock")
            .fetch_all(&mut **tx)
            .await?
        {
            let used: i64 = r.try_get(2)?;
            counters.stock.insert(
                (r.try_get(0)?, r.try_get(1)?),
                u32::try_from(used.max(0)).unwrap_or(u32::MAX),
            );
        }
        for r in sqlx::query("SELECT rule_id, period, currency, spent_units FROM budgets")
            .fetch_all(&mut **tx)
            .await?
        {
            counters.budget.insert(
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?),
                from_units(r.try_get(3)?),
            );
        }
        Ok(counters)
    }
}
