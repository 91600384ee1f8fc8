//! The sync worker's Kafka side: `coupons` read in its own consumer group, one message at a
//! time (a code's messages share a partition, so issued comes before voided), and the offset
//! committed only after the store recorded the outcome: at least once, and the shop's side is
//! idempotent by code. On stop, the message under way is left uncommitted for the next start.

use super::{CouponSync, Stopped};
use crate::kafka::TOPIC_COUPONS;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Creates the consumer from `config` (the service's consumer settings with the group of
/// [`super::group_of`]) and subscribes it to `coupons`.
pub fn subscribe(config: &ClientConfig) -> Result<StreamConsumer, String> {
    let consumer: StreamConsumer = config
        .create()
        .map_err(|e| format!("the coupon sync's Kafka consumer: {e}"))?;
    consumer
        .subscribe(&[TOPIC_COUPONS])
        .map_err(|e| format!("the coupon sync's Kafka consumer: subscribing to coupons: {e}"))?;
    Ok(consumer)
}

/// Runs until `stop`.
pub async fn run(consumer: StreamConsumer, sync: CouponSync, stop: CancellationToken) {
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => break,
            m = consumer.recv() => m,
        };
        let message = match received {
            Ok(m) => m,
            Err(e) => {
                // The topic not there yet (nothing issued so far), a broker away: the client
                // reconnects by itself.
                tracing::debug!(%e, "coupon sync: reading coupons");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
        };
        match sync
            .handle(message.key(), message.payload().unwrap_or_default(), &stop)
            .await
        {
            Ok(()) => {
                // A commit that is lost (a rebalance under way) re-delivers the message, which
                // the recorded version then skips.
                if let Err(e) = consumer.commit_message(&message, CommitMode::Async) {
                    tracing::debug!(%e, "coupon sync: committing an offset");
                }
            }
            Err(Stopped) => break,
        }
    }
    // No commit of the consumer's position here: it may be past a message that was read but
    // not recorded.
    consumer.unsubscribe();
}
