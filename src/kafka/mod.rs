//! Kafka: the topic names of docs/REFERENCE.md §1 and §5, the client settings every Packwell client
//! shares, and the embedded development broker ([`broker`]).
//!
//! Every consumer and producer is built from [`consumer_config`] or [`producer_config`], so the
//! group timings, offset policy and delivery guarantees are decided in one place.

pub mod broker;

pub use broker::{BrokerError, EmbeddedBroker};

use rdkafka::ClientConfig;

/// Order events in (key: customer id).
pub const TOPIC_ORDERS: &str = "orders";
/// Decisions out (key: order id).
pub const TOPIC_PACKING_INSTRUCTIONS: &str = "packing-instructions";
/// `coupon.issued` / `coupon.voided` out (key: coupon code).
pub const TOPIC_COUPONS: &str = "coupons";
/// Rejected order events, key and value unchanged.
pub const TOPIC_ORDERS_DLQ: &str = "orders.dlq";
/// `customer.unsubscribed` / `customer.suppressed` out.
pub const TOPIC_CUSTOMER_PREFERENCES: &str = "customer-preferences";

/// The address of the embedded broker when nothing else is said (`packwell broker`, and the
/// brokers `packwell send` and `packwell run` use when `[kafka] brokers` is not set).
pub const DEFAULT_BROKER_ADDR: &str = "127.0.0.1:9092";

/// Settings every client shares.
fn base_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        // The default backoff grows to 10 s: after the development broker restarts, or a real
        // broker fails over, clients would sit idle that long before trying again.
        .set("reconnect.backoff.max.ms", "500");
    c
}

/// A consumer in `group`: offsets are committed by the caller only, after the batch is stored.
/// Its group timings suit any Kafka cluster; see [`fast_consumer_config`] for the embedded one.
pub fn consumer_config(brokers: &str, group: &str) -> ClientConfig {
    let mut c = base_config(brokers);
    c.set("group.id", group)
        // The shortest session a Kafka broker accepts with its default
        // `group.min.session.timeout.ms` (6 s): shorter ones fail to join with
        // INVALID_SESSION_TIMEOUT. A crashed instance's partitions move within 6 s.
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1500")
        // The store is the source of truth for offsets (docs/ARCHITECTURE.md, "The store is the
        // source of truth"); Kafka's committed offsets are written after the store commit, for lag tools.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // With a committed offset past the end (a topic recreated, a broker restarted empty)
        // `error` would leave the partition stuck; `earliest` re-reads, which the idempotent
        // store turns into no-ops.
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    c
}

/// [`consumer_config`] with 2 s sessions, for the embedded broker (which accepts them) and for
/// tests that start, crash and restart consumers: a member that is gone loses its partitions
/// within 2 s instead of 6. A real Kafka broker refuses such a session unless its
/// `group.min.session.timeout.ms` was lowered.
pub fn fast_consumer_config(brokers: &str, group: &str) -> ClientConfig {
    let mut c = consumer_config(brokers, group);
    c.set("session.timeout.ms", "2000")
        .set("heartbeat.interval.ms", "500");
    c
}

/// An idempotent producer that waits for every in-sync replica.
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut c = base_config(brokers);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        // The partitioner of the Java client: a customer's events land in the same partition
        // whether Packwell (`send`, `dlq replay`) or the shop's own Java producers wrote them,
        // which keeps one customer's events in order for the consumer. librdkafka's default
        // (CRC32) would split a customer's events across two partitions.
        .set("partitioner", "murmur2_random");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_share_one_set_of_settings() {
        let c = consumer_config("k:9092", "packwell");
        assert_eq!(c.get("bootstrap.servers"), Some("k:9092"));
        assert_eq!(c.get("group.id"), Some("packwell"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(c.get("session.timeout.ms"), Some("6000"));
        assert_eq!(c.get("reconnect.backoff.max.ms"), Some("500"));
        let f = fast_consumer_config("k:9092", "packwell");
        assert_eq!(f.get("session.timeout.ms"), Some("2000"));
        assert_eq!(f.get("heartbeat.interval.ms"), Some("500"));
        assert_eq!(f.get("enable.auto.commit"), Some("false"));
        let p = producer_config("k:9092");
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("reconnect.backoff.max.ms"), Some("500"));
    }
}
