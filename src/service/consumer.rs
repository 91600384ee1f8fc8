//! The consumer: reads `orders` in the consumer group and applies each partition's events in
//! batches through the store's one-transaction path (docs/ARCHITECTURE.md "The store is the source
//! of truth").
//!
//! It runs on a thread of its own around librdkafka's blocking `poll`, so the rebalance
//! callback (which librdkafka calls inside `poll`) and the batches are never in flight at the
//! same time: on revoke, the partition's buffered events are applied before it is let go; on
//! assign, ownership is taken in the store (its epoch bumped) and the partition is assigned at
//! the offset the store holds. Kafka's committed offsets are written after the store commits,
//! for lag tools only.

use super::ServiceState;
use crate::event::{Event, EventBody, parse_event_within};
use crate::kafka::TOPIC_ORDERS;
use crate::step::Applied;
use crate::store::{Batch, BatchItem, BatchReport, Fence, StoreError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Failed tries of one batch after which `/readyz` reports the consumer stuck (a few seconds
/// of back-off: a short store hiccup does not take the instance out of service).
const FAILURES_UNREADY: u32 = 5;

/// One owned partition: its epoch, the next offset the store expects, and events read but
/// not yet applied.
struct Owned {
    epoch: i64,
    position: i64,
    items: Vec<BatchItem>,
    first_at: Option<Instant>,
    /// Another instance owns it now (a batch was fenced off): read nothing more until the
    /// group's rebalance takes it away.
    fenced: bool,
}

/// The consumer's librdkafka context, named for its main job: taking partitions (bumping their
/// epoch in the store) and giving them up on rebalances; it also hears errors and statistics.
pub struct Rebalancer {
    shared: Arc<ServiceState>,
    owned: Mutex<BTreeMap<i32, Owned>>,
}

impl ClientContext for Rebalancer {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka consumer");
        if matches!(
            error.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.shared.kafka_ok.store(false, Ordering::Relaxed);
        }
    }

    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(TOPIC_ORDERS) {
            for (p, part) in &topic.partitions {
                if *p >= 0 && part.consumer_lag >= 0 {
                    self.shared
                        .metrics
                        .consumer_lag
                        .with_label_values(&[&p.to_string()])
                        .set(part.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Rebalancer {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                tracing::warn!(error = ?other, "rebalance failed; letting go of every partition");
                self.owned.lock().unwrap_or_else(|e| e.into_inner()).clear();
                let _ = consumer.unassign();
            }
        }
    }
}

impl Rebalancer {
    pub fn new(shared: Arc<ServiceState>) -> Rebalancer {
        Rebalancer {
            shared,
            owned: Mutex::new(BTreeMap::new()),
        }
    }

    /// Takes ownership in the store (epoch + 1) and assigns at the stored offsets.
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        let mut assignment = TopicPartitionList::new();
        for elem in tpl.elements() {
            let (topic, partition) = (elem.topic().to_string(), elem.partition());
            let mut wait = Duration::from_millis(100);
            let claimed = loop {
                match self
                    .shared
                    .runtime
                    .block_on(self.shared.store.claim_partition(&topic, partition))
                {
                    Ok(c) => break Some(c),
                    Err(e) if !self.shared.stop.is_cancelled() => {
                        tracing::error!(%e, partition, "cannot take ownership in the store; retrying");
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                    Err(_) => break None,
                }
            };
            let Some((epoch, next)) = claimed else {
                continue;
            };
            tracing::info!(partition, epoch, offset = next, "partition assigned");
            let _ = assignment.add_partition_offset(&topic, partition, Offset::Offset(next));
            owned.insert(
                partition,
                Owned {
                    epoch,
                    position: next,
                    items: Vec::new(),
                    first_at: None,
                    fenced: false,
                },
            );
        }
        if let Err(e) = consumer.assign(&assignment) {
            tracing::error!(%e, "assigning partitions failed");
        }
    }

    /// Applies what was read of the revoked partitions, then lets them go.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        for elem in tpl.elements() {
            if let Some(mut part) = owned.remove(&elem.partition()) {
                self.flush(consumer, elem.partition(), &mut part);
                tracing::info!(partition = elem.partition(), "partition revoked");
            }
        }
        let _ = consumer.unassign();
    }

    /// Adds a message to its partition's batch; applies the batch when it is full.
    fn take(
        &self,
        consumer: &BaseConsumer<Self>,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) {
        let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        let Some(part) = owned.get_mut(&partition) else {
            return; // not ours (any more)
        };
        if part.fenced {
            return;
        }
        if part.items.is_empty() && offset < part.position {
            tracing::warn!(
                partition,
                offset,
                stored = part.position,
                "the partition restarted below the stored offset (a new or emptied broker?): reading it again; events seen before are skipped by id"
            );
        }
        self.shared.metrics.consumed.inc();
        let value = value.unwrap_or_default();
        // Over the bound, not even parsed: no sane order is that large.
        let event = parse_event_within(value, self.shared.settings.max_event_bytes);
        if let Ok(e) = &event {
            crate::fault::check(crate::fault::Point::Consumer, &e.event_id);
        }
        let max_age = self.shared.settings.max_event_age;
        let decide = match &event {
            Ok(e) => chrono::Utc::now() - e.occurred_at <= max_age,
            Err(_) => false,
        };
        part.items.push(BatchItem {
            offset,
            key: key.map(<[u8]>::to_vec),
            value: value.to_vec(),
            event,
            decide,
        });
        if part.first_at.is_none() {
            part.first_at = Some(Instant::now());
        }
        if part.items.len() >= self.shared.settings.batch_max {
            self.flush(consumer, partition, part);
        }
    }

    /// Applies the batches that waited long enough; returns how long until the next is due.
    fn flush_due(&self, consumer: &BaseConsumer<Self>) -> Duration {
        let wait = self.shared.settings.batch_wait;
        let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = wait;
        for (partition, part) in owned.iter_mut() {
            if let Some(first) = part.first_at {
                let age = first.elapsed();
                if age >= wait {
                    self.flush(consumer, *partition, part);
                } else {
                    next = next.min(wait - age);
                }
            }
        }
        next
    }

    /// Applies everything read so far (at shutdown).
    fn flush_all(&self, consumer: &BaseConsumer<Self>) {
        let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        for (partition, part) in owned.iter_mut() {
            self.flush(consumer, *partition, part);
        }
    }

    /// Applies one partition's batch in one store transaction, fenced by its epoch. A store
    /// that is down is retried until it answers (or the service stops): nothing is skipped.
    fn flush(&self, consumer: &BaseConsumer<Self>, partition: i32, part: &mut Owned) {
        if part.items.is_empty() {
            return;
        }
        let items = std::mem::take(&mut part.items);
        part.first_at = None;
        let end = items.last().map(|i| i.offset + 1).unwrap_or(part.position);
        let mut batch = Batch {
            fence: Fence::Partition {
                topic: TOPIC_ORDERS.to_string(),
                partition,
                epoch: part.epoch,
                start: part.position,
                end,
            },
            items,
        };
        let span = tracing::info_span!(
            "batch",
            partition,
            start = part.position,
            end,
            events = batch.items.len()
        );
        let _entered = span.enter();
        let env = self.shared.env.load_full();
        let mut wait = Duration::from_millis(100);
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let result = self.shared.runtime.block_on(crate::store::apply_guarded(
                &*self.shared.store,
                &mut batch,
                &env,
            ));
            let secs = started.elapsed().as_secs_f64();
            match result {
                Ok(report) => {
                    self.shared
                        .metrics
                        .batch_seconds
                        .with_label_values(&["ok"])
                        .observe(secs);
                    if failures >= FAILURES_UNREADY {
                        tracing::info!(partition, "batches are applied again");
                    }
                    self.set_error(None);
                    self.count(&report);
                    self.forget_insert_lists(&batch);
                    part.position = end;
                    let mut tpl = TopicPartitionList::new();
                    let _ = tpl.add_partition_offset(TOPIC_ORDERS, partition, Offset::Offset(end));
                    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                        tracing::debug!(%e, "committing the offset to Kafka (for lag tools) failed");
                    }
                    self.shared.relay_wake.notify_one();
                    return;
                }
                Err(StoreError::Fenced { .. }) => {
                    self.shared
                        .metrics
                        .batch_seconds
                        .with_label_values(&["fenced"])
                        .observe(secs);
                    tracing::warn!(
                        partition,
                        "fenced off: another instance owns the partition now; its batch is left to it"
                    );
                    part.fenced = true;
                    return;
                }
                Err(e) => {
                    self.shared
                        .metrics
                        .batch_seconds
                        .with_label_values(&["error"])
                        .observe(secs);
                    if self.shared.stop.is_cancelled()
                        && self.shared.abandon.load(Ordering::Relaxed)
                    {
                        tracing::error!(%e, partition, "stopping with a batch not applied; it is read again at the next start");
                        part.fenced = true;
                        return;
                    }
                    failures = failures.saturating_add(1);
                    if failures >= FAILURES_UNREADY {
                        // Still retried: a store back up, or a bug fixed by a restart, moves
                        // the partition on; meanwhile `/readyz` says deciding is stuck.
                        self.set_error(Some(format!(
                            "partition {partition}: applying a batch failed {failures} times: {e}"
                        )));
                    }
                    tracing::error!(%e, partition, failures, "applying a batch failed; retrying");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn set_error(&self, error: Option<String>) {
        let mut r = self
            .shared
            .readiness
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if r.consumer_error.is_some() || error.is_some() {
            r.consumer_error = error;
        }
    }

    /// Orders placed in the batch may have been asked for before they were decided; the
    /// station cache must not keep answering "no such order" for them.
    fn forget_insert_lists(&self, batch: &Batch) {
        for item in &batch.items {
            if let Ok(Event {
                body: EventBody::OrderPlaced(order),
                ..
            }) = &item.event
            {
                self.shared.insert_lists.forget(&order.id);
            }
        }
    }

    fn count(&self, report: &BatchReport) {
        let m = &self.shared.metrics;
        for reason in &report.rejections {
            m.rejected.with_label_values(&[reason.as_str()]).inc();
        }
        let holdout = crate::store::emails::EmailSkip::Holdout.as_str();
        for applied in &report.applied {
            match applied {
                Applied::Decided(outcome) => {
                    m.decided.inc();
                    let d = &outcome.decision;
                    tracing::debug!(order_id = %d.order_id, customer_id = %d.customer_id, inserts = d.inserts.len(), "decided");
                    for i in &d.inserts {
                        m.inserts_given.with_label_values(&[&i.insert_id]).inc();
                    }
                    for f in &d.followups {
                        m.email.scheduled.with_label_values(&[&f.followup_id]).inc();
                    }
                    let held_out = outcome.followup_holdouts.len() as u64;
                    m.email
                        .skipped
                        .with_label_values(&[holdout])
                        .inc_by(held_out);
                }
                Applied::Folded { followups, skipped } => {
                    for f in followups {
                        m.email.scheduled.with_label_values(&[&f.followup_id]).inc();
                    }
                    let held_out = skipped
                        .iter()
                        .filter(|s| s.reason == crate::engine::SkipReason::Holdout)
                        .count() as u64;
                    m.email
                        .skipped
                        .with_label_values(&[holdout])
                        .inc_by(held_out);
                }
                _ => {}
            }
        }
    }

    /// Pauses the owned partitions while the relay is far behind; resumes below half the bound.
    fn backpressure(&self, consumer: &BaseConsumer<Self>, paused: &mut bool) {
        let backlog = self.shared.backlog.load(Ordering::Relaxed);
        let bound = self.shared.settings.max_outbox_backlog;
        let want_pause = if *paused {
            backlog > bound / 2
        } else {
            backlog > bound
        };
        if want_pause == *paused {
            return;
        }
        let Ok(assignment) = consumer.assignment() else {
            return;
        };
        let result = if want_pause {
            tracing::warn!(backlog, bound, "the relay is behind: pausing consumption");
            consumer.pause(&assignment)
        } else {
            tracing::info!(backlog, "the relay caught up: resuming consumption");
            consumer.resume(&assignment)
        };
        if result.is_ok() {
            *paused = want_pause;
            self.shared.metrics.paused.set(i64::from(want_pause));
        }
    }
}

/// The consumer thread's loop: poll, batch, apply, until the service stops. An error is the
/// end of consuming, which the service reports as a failed worker.
pub fn run(consumer: BaseConsumer<Rebalancer>, shared: Arc<ServiceState>) -> Result<(), String> {
    if let Err(e) = consumer.subscribe(&[TOPIC_ORDERS]) {
        return Err(format!("cannot subscribe to {TOPIC_ORDERS}: {e}"));
    }
    let mut paused = false;
    let mut wait = shared.settings.batch_wait;
    while !shared.stop.is_cancelled() {
        consumer.context().backpressure(&consumer, &mut paused);
        match consumer.poll(wait.min(Duration::from_millis(100))) {
            Some(Ok(msg)) => {
                shared.kafka_ok.store(true, Ordering::Relaxed);
                if msg.topic() == TOPIC_ORDERS {
                    consumer.context().take(
                        &consumer,
                        msg.partition(),
                        msg.offset(),
                        msg.key(),
                        msg.payload(),
                    );
                }
            }
            Some(Err(e)) => tracing::warn!(%e, "kafka consumer"),
            None => {}
        }
        wait = consumer.context().flush_due(&consumer);
    }
    // Stopping: what was read is applied and committed before the group is left.
    consumer.context().flush_all(&consumer);
    consumer.unsubscribe();
    tracing::info!("consumer stopped");
    Ok(())
}
