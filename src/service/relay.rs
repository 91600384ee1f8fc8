//! The relay: produces outbox rows to Kafka in id order and marks them sent after their
//! delivery reports (docs/ARCHITECTURE.md "Order per key in the relay"). One relay per store: on
//! PostgreSQL it runs only while this instance holds the advisory lock. A crash between delivery
//! and marking re-sends the same rows with the same keys and content; consumers upsert.

use super::ServiceState;
use crate::store::OutboxRow;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Rows read and produced per round.
const ROUND: i64 = 1000;

/// Runs until the service stops and the outbox is empty (or `drain_for` has passed since).
pub async fn run(producer: FutureProducer, shared: Arc<ServiceState>, drain_for: Duration) {
    let mut holding = false;
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let mut wait = Duration::from_millis(100);
    loop {
        if shared.consumer_done.load(Ordering::Relaxed) && drain_deadline.is_none() {
            drain_deadline = Some(tokio::time::Instant::now() + drain_for);
        }
        if drain_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            tracing::warn!(
                "stopping the relay with rows still unsent; they go out at the next start"
            );
            break;
        }
        if !holding {
            match shared.store.try_relay_lock().await {
                Ok(true) => {
                    holding = true;
                    tracing::info!("relay started");
                }
                Ok(false) => {
                    if drain_deadline.is_some() {
                        break; // another instance relays
                    }
                    sleep_or_wake(&shared, Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(%e, "relay: cannot take the relay lock");
                    sleep_or_wake(&shared, Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        match round(&producer, &shared).await {
            Ok(0) => {
                if drain_deadline.is_some() {
                    break;
                }
                sleep_or_wake(&shared, Duration::from_millis(200)).await;
                wait = Duration::from_millis(100);
            }
            Ok(_) => wait = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, "relay: producing failed; retrying");
                holding = false; // take the lock again: the store may have gone too
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::info!("relay stopped");
}

async fn sleep_or_wake(shared: &ServiceState, d: Duration) {
    tokio::select! {
        _ = shared.relay_wake.notified() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// Produces one round of rows; returns how many were sent.
async fn round(producer: &FutureProducer, shared: &ServiceState) -> Result<usize, String> {
    let rows = shared
        .store
        .unsent_outbox(ROUND)
        .await
        .map_err(|e| e.to_string())?;
    if rows.len() < ROUND as usize {
        shared.backlog.store(rows.len() as i64, Ordering::Relaxed);
    } else if let Ok(n) = shared.store.outbox_backlog().await {
        shared.backlog.store(n, Ordering::Relaxed);
    }
    shared
        .metrics
        .outbox_backlog
        .set(shared.backlog.load(Ordering::Relaxed));
    if rows.is_empty() {
        return Ok(0);
    }
    // All sent at once (the idempotent producer keeps each partition's order), then awaited
    // in order; any failure leaves the whole round unmarked, to be sent again.
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in &rows {
        let record = record(row);
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((e, _)) => return Err(format!("queueing a message for {}: {e}", row.topic)),
        }
    }
    for (row, delivery) in rows.iter().zip(deliveries) {
        match delivery.await {
            Ok(Ok(_)) => shared
                .metrics
                .relayed
                .with_label_values(&[&row.topic])
                .inc(),
            Ok(Err((e, _))) => return Err(format!("delivering to {}: {e}", row.topic)),
            Err(_) => return Err("the producer went away".into()),
        }
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    shared
        .store
        .mark_sent(&ids)
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows.len())
}

fn record(row: &OutboxRow) -> FutureRecord<'_, [u8], [u8]> {
    let mut record = FutureRecord::to(&row.topic).payload(row.payload.as_slice());
    if let Some(key) = &row.key {
        record = record.key(key.as_slice());
    }
    if let Some(headers) = row
        .headers
        .as_deref()
        .and_then(|h| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(h).ok())
    {
        let mut owned = OwnedHeaders::new();
        for (name, value) in &headers {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            owned = owned.insert(Header {
                key: name,
                value: Some(text.as_bytes()),
            });
        }
        record = record.headers(owned);
    }
    record
}
