//! Applying a batch of events: the state its events touch is loaded in bulk
//! ([`batch_load`](super::batch_load)), the one event path ([`crate::step`]) runs over each
//! event, and the effects are written in bulk ([`batch_write`](super::batch_write)), all in one
//! transaction fenced by the partition's epoch (docs/ARCHITECTURE.md "Fencing after a rebalance").
//!
//! Counter claims are totals per key, each a conditional upsert; when one fails (another
//! instance took what the batch's view still showed) the batch is rolled back and applied again
//! *carefully*: each event's effects written under a savepoint as soon as it is applied, a lost
//! claim undoing just that event's step and taking it again on a fresh view of the counters.

use super::{Db, This};
use crate::step::{self, Effects, Input, State, Stepped};
use crate::store::StoreError;
use crate::store::backend::{Retry, is_transient, rand_u64};
use crate::store::types::*;
use sqlx::Connection;

/// How a batch writes its effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteMode {
    /// All of them at the batch's end; a lost claim rolls the whole batch back.
    Batched,
    /// Each event's under a savepoint as it is applied; a lost claim takes that event again.
    Careful,
}

/// Most times one event is taken again after losing a claim or a code to another instance.
const CAREFUL_TRIES: usize = 16;

impl This {
    /// [`crate::store::Store::apply_batch`]: a batch is all or nothing, so one that lost a
    /// deadlock or a serialization check (two instances claiming the same counters in different
    /// orders) is applied again, a bounded number of times, after a short random wait; one
    /// whose totals lost a claim to another instance is applied again carefully.
    pub(super) async fn apply_batch_retrying(
        &self,
        batch: &Batch,
        env: &DecideEnv,
    ) -> Result<BatchReport, StoreError> {
        let mut tries: u64 = 0;
        let mut mode = WriteMode::Batched;
        loop {
            match self.apply_batch_once(batch, env, mode).await {
                Err(StoreError::Db(e)) if is_transient(&e) && tries < 8 => {
                    tries += 1;
                    let wait = 5 + (rand_u64() % 20) * tries;
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                }
                Err(StoreError::Contended) if tries < 8 => {
                    tries += 1;
                    mode = WriteMode::Careful;
                }
                other => return other,
            }
        }
    }

    async fn apply_batch_once(
        &self,
        batch: &Batch,
        env: &DecideEnv,
        mode: WriteMode,
    ) -> Result<BatchReport, StoreError> {
        let mut tx = self.begin_write().await?;
        Self::fence(&mut tx, &batch.fence).await?;
        let mut state = Self::load_state(&mut tx, batch).await?;
        let env = step::Env {
            rules: &env.rules,
            key: &env.key,
            shop: &env.shop,
        };
        let mut effects = Effects::default();
        let mut report = BatchReport::default();
        for item in &batch.items {
            let input = Input {
                event: item.event.as_ref(),
                key: item.key.as_deref(),
                value: &item.value,
                offset: item.offset,
                decide: item.decide,
                explain: false,
            };
            let stepped = match mode {
                WriteMode::Batched => step_guarded(&mut state, &mut effects, &input, &env)?,
                WriteMode::Careful => {
                    Self::step_carefully(&mut tx, &mut state, &input, &env, &batch.fence).await?
                }
            };
            report.applied.push(stepped.applied);
            if let Some(reason) = stepped.rejected {
                report.rejected += 1;
                report.rejections.push(reason);
            }
            report.seen_before += usize::from(stepped.seen_before);
        }
        for item in &batch.items {
            if let Ok(e) = &item.event {
                crate::fault::check(crate::fault::Point::Write, &e.event_id);
            }
        }
        if mode == WriteMode::Batched
            && Self::write_effects(&mut tx, &state, &effects, &batch.fence)
                .await?
                .is_err()
        {
            return Err(StoreError::Contended);
        }
        tx.commit().await?;
        Ok(report)
    }

    /// One event's step with its effects written at once under a savepoint; a claim or a code
    /// lost to another instance undoes the step and takes it again on counters read afresh.
    async fn step_carefully(
        tx: &mut sqlx::Transaction<'_, Db>,
        state: &mut State,
        input: &Input<'_>,
        env: &step::Env<'_>,
        fence: &Fence,
    ) -> Result<Stepped, StoreError> {
        for _ in 0..CAREFUL_TRIES {
            let before = input.event.ok().map(|e| state.snapshot(e));
            let mut effects = Effects::default();
            let stepped = step_guarded(state, &mut effects, input, env)?;
            let mut savepoint = (**tx).begin().await?;
            match Self::write_effects(&mut savepoint, state, &effects, fence).await? {
                Ok(()) => {
                    savepoint.commit().await?;
                    return Ok(stepped);
                }
                Err(retry) => {
                    savepoint.rollback().await?;
                    if let Some(before) = before {
                        state.restore(before);
                    }
                    let codes = std::mem::take(&mut state.counters.codes);
                    state.counters = Self::counter_state(tx).await?;
                    state.counters.codes = codes;
                    match retry {
                        Retry::Code(code) => {
                            state.counters.codes.insert(code);
                        }
                        Retry::Claim => {}
                        // Rows the batch read changed under it: only a fresh read helps.
                        Retry::Stale => return Err(StoreError::Contended),
                    }
                }
            }
        }
        Err(StoreError::Other(format!(
            "the event at offset {}: could not take counters after {CAREFUL_TRIES} tries",
            input.offset
        )))
    }

    async fn fence(tx: &mut sqlx::Transaction<'_, Db>, fence: &Fence) -> Result<(), StoreError> {
        match fence {
            Fence::None => Ok(()),
            Fence::Partition {
                topic,
                partition,
                epoch,
                start,
                end,
            } => {
                let r = sqlx::query(
                    "UPDATE partitions SET next_offset = $1 WHERE topic = $2 AND partition = $3 AND epoch = $4 AND next_offset = $5",
                )
                .bind(*end)
                .bind(topic)
                .bind(i64::from(*partition))
                .bind(*epoch)
                .bind(*start)
                .execute(&mut **tx)
                .await?;
                if r.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(StoreError::Fenced {
                        topic: topic.clone(),
                        partition: *partition,
                    })
                }
            }
            Fence::Import { source, start, end } => {
                sqlx::query(
                    "INSERT INTO imports (source, next_line) VALUES ($1, 0) ON CONFLICT (source) DO NOTHING",
                )
                .bind(source)
                .execute(&mut **tx)
                .await?;
                let r = sqlx::query(
                    "UPDATE imports SET next_line = $1 WHERE source = $2 AND next_line = $3",
                )
                .bind(*end)
                .bind(source)
                .bind(*start)
                .execute(&mut **tx)
                .await?;
                if r.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(StoreError::Other(format!(
                        "the import of {source} moved on elsewhere (another import running?)"
                    )))
                }
            }
        }
    }
}

/// The step, with a panic caught so that it cannot take the consumer down: the transaction
/// rolls back and the caller tries the batch again, then sets the event aside
/// (`store::apply_guarded`). What the decision could not evaluate or render goes to the log
/// here, at the edge: the step itself is pure.
fn step_guarded(
    state: &mut State,
    effects: &mut Effects,
    input: &Input,
    env: &step::Env,
) -> Result<Stepped, StoreError> {
    let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        step::apply(state, effects, input, env)
    }))
    .map_err(|panic| StoreError::Panicked {
        offset: input.offset,
        message: crate::panic_message(&*panic),
    })?;
    for problem in effects.problems.drain(..) {
        tracing::warn!(offset = input.offset, "{problem}");
    }
    Ok(stepped)
}
