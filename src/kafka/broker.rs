//! The embedded development broker: librdkafka's mock cluster (in memory, the Kafka protocol
//! over TCP) with Packwell's topics, reachable at a fixed address.
//!
//! The mock binds a random loopback port and cannot be told another. So the broker listens on
//! the fixed address itself, forwards every connection to the mock's port, and has the mock
//! advertise the fixed address in its metadata: clients (rdkafka, kcat, Java) learn brokers and
//! group coordinators from metadata, and would otherwise go straight to the random port.
//!
//! The mock cluster is created by a producer handle configured with `test.mock.num.brokers`
//! rather than with [`rdkafka::mocking::MockCluster::new`]: `MockCluster` holds a raw pointer
//! and is not `Send`, while the producer handle is, so an [`EmbeddedBroker`] can live in any
//! tokio task. librdkafka destroys the mock together with that handle.

use super::{
    TOPIC_COUPONS, TOPIC_CUSTOMER_PREFERENCES, TOPIC_ORDERS, TOPIC_ORDERS_DLQ,
    TOPIC_PACKING_INSTRUCTIONS,
};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The partitions of `orders`: the most consumer instances that can share the work.
pub const ORDERS_PARTITIONS: i32 = 6;

/// Packwell's topics on the development broker, with their partition counts. The outputs have
/// one partition each: downstream consumers upsert by key, and one ordered stream per topic is
/// the easiest to read while developing.
pub const TOPICS: &[(&str, i32)] = &[
    (TOPIC_ORDERS, ORDERS_PARTITIONS),
    // Keyed by order id and by code, so spread; the mock also keeps at most 5 MiB per
    // partition, which one partition of decisions would outgrow within an afternoon's trial.
    (TOPIC_PACKING_INSTRUCTIONS, ORDERS_PARTITIONS),
    (TOPIC_COUPONS, ORDERS_PARTITIONS),
    (TOPIC_ORDERS_DLQ, 1),
    (TOPIC_CUSTOMER_PREFERENCES, 1),
];

/// The mock cluster has one broker; librdkafka numbers mock brokers from 1.
const MOCK_BROKER_ID: i32 = 1;

/// More connections than this at once are refused: a development broker serves a handful of
/// clients, and a runaway client should not exhaust file descriptors.
const MAX_CONNECTIONS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source}{}", in_use_hint(.source))]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("cannot start librdkafka's mock cluster: {0}")]
    Mock(String),
}

fn in_use_hint(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::AddrInUse {
        " (is another `packwell broker` or a Kafka broker running there?)"
    } else {
        ""
    }
}

/// A running development broker; it stops when dropped (or with [`EmbeddedBroker::shutdown`]).
/// Everything it holds is in memory and is lost then.
pub struct EmbeddedBroker {
    advertised: SocketAddr,
    forward: JoinHandle<()>,
    /// Owns the mock cluster.
    mock_owner: Option<ThreadedProducer<MockOwner>>,
}

impl EmbeddedBroker {
    /// Listens on `listen` (port 0: any free port, see [`EmbeddedBroker::bootstrap`]), starts
    /// the mock cluster and creates Packwell's topics. Call from inside a tokio runtime.
    pub async fn start(listen: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
        // Bind first: a taken port is the likeliest failure, and finding it leaves nothing
        // half-started behind.
        let listen_error = |source| BrokerError::Listen {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(listen_error)?;
        let advertised = advertised_addr(listener.local_addr().map_err(listen_error)?);
        let (mock_owner, mock_addr) = start_mock(advertised)?;
        tracing::debug!(%advertised, %mock_addr, "embedded broker started");
        let forward = tokio::spawn(forward(listener, mock_addr));
        Ok(EmbeddedBroker {
            advertised,
            forward,
            mock_owner: Some(mock_owner),
        })
    }

    /// The `bootstrap.servers` for clients, e.g. `127.0.0.1:9092`: the address the broker
    /// listens on and advertises.
    pub fn bootstrap(&self) -> String {
        self.advertised.to_string()
    }

    /// The address the broker listens on and advertises.
    pub fn addr(&self) -> SocketAddr {
        self.advertised
    }

    /// Takes the broker down (its connections closed, new ones refused) or brings it back,
    /// keeping every message: a broker outage, for tests and for trying what clients do.
    pub fn set_available(&self, up: bool) -> Result<(), BrokerError> {
        let owner = self
            .mock_owner
            .as_ref()
            .ok_or_else(|| BrokerError::Mock("the broker was shut down".into()))?;
        let mock = owner
            .client()
            .mock_cluster()
            .ok_or_else(|| BrokerError::Mock("librdkafka created no mock cluster".into()))?;
        let result = if up {
            mock.broker_up(MOCK_BROKER_ID)
        } else {
            mock.broker_down(MOCK_BROKER_ID)
        };
        result.map_err(|e| BrokerError::Mock(e.to_string()))
    }

    /// Stops the broker and waits until its address is free again. Dropping it stops it too,
    /// but the listening socket is then closed a moment later, and the mock cluster's threads
    /// are joined on the dropping thread.
    pub async fn shutdown(mut self) {
        // The mock first: its owner is a client of the forward too, and leaves it quietly.
        if let Some(owner) = self.mock_owner.take() {
            // Destroying a librdkafka handle joins its threads: keep that off the runtime.
            let _ = tokio::task::spawn_blocking(move || drop(owner)).await;
        }
        self.forward.abort();
        let _ = (&mut self.forward).await;
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.forward.abort();
    }
}

/// The context of the handle that owns the mock cluster. librdkafka makes that handle a client
/// of the mock as well (through the forward, once it has read the advertised address); its
/// connection errors, as when the broker shuts down, say nothing about the broker's health, so
/// they are logged at debug level, not as errors. Log lines of the mock itself pass as usual.
struct MockOwner;

impl ClientContext for MockOwner {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "embedded broker: its own client");
    }
}

impl ProducerContext for MockOwner {
    type DeliveryOpaque = ();
    /// It never produces.
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// The address clients are told to connect to: the listening address, or loopback when the
/// broker listens on every interface (0.0.0.0 is not an address a client can connect to).
fn advertised_addr(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

/// Creates the mock cluster, its topics and group settings, and makes it advertise
/// `advertised`. Returns the handle that owns it and the mock broker's own address.
fn start_mock(
    advertised: SocketAddr,
) -> Result<(ThreadedProducer<MockOwner>, SocketAddr), BrokerError> {
    let mock_error = |e: rdkafka::error::KafkaError| BrokerError::Mock(e.to_string());
    let owner: ThreadedProducer<MockOwner> = ClientConfig::new()
        .set("test.mock.num.brokers", "1")
        .set("client.id", "packwell-embedded-broker")
        .create_with_context(MockOwner)
        .map_err(mock_error)?;
    // A `MockCluster` borrowed from the handle: not `Send`, so it never crosses an `.await`.
    let mock = owner
        .client()
        .mock_cluster()
        .ok_or_else(|| BrokerError::Mock("librdkafka created no mock cluster".into()))?;
    // Read before the advertised address changes: this is where the mock really listens.
    let bootstrap = mock.bootstrap_servers();
    let mock_addr: SocketAddr = bootstrap.parse().map_err(|_| {
        BrokerError::Mock(format!(
            "unexpected mock cluster address {bootstrap:?} (one broker expected)"
        ))
    })?;
    for (topic, partitions) in TOPICS {
        mock.create_topic(topic, *partitions, 1)
            .map_err(mock_error)?;
    }
    drop(mock);

    let host = CString::new(advertised.ip().to_string())
        .map_err(|_| BrokerError::Mock("the advertised host contains a NUL byte".into()))?;
    // SAFETY: the handle was created with `test.mock.num.brokers` (`mock_cluster()` above found
    // the cluster), so the pointer is non-null and valid until `owner` is dropped, which is
    // after these calls. Both functions only take the cluster's own lock; `host` is copied.
    unsafe {
        let cluster = rdkafka::bindings::rd_kafka_handle_mock_cluster(owner.client().native_ptr());
        if cluster.is_null() {
            return Err(BrokerError::Mock(
                "librdkafka created no mock cluster".into(),
            ));
        }
        // The mock, like Kafka, waits 3 s for more members before a new group's first
        // rebalance: every consumer start (and every test) would pay it.
        rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
        rdkafka::bindings::rd_kafka_mock_broker_set_host_port(
            cluster,
            MOCK_BROKER_ID,
            host.as_ptr(),
            i32::from(advertised.port()),
        );
    }
    Ok((owner, mock_addr))
}

/// Accepts connections on the fixed address and pipes each to the mock broker. Aborting this
/// task drops the `JoinSet`, which aborts every connection's task.
async fn forward(listener: TcpListener, mock_addr: SocketAddr) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) if connections.len() < MAX_CONNECTIONS => {
                    connections.spawn(pipe(client, peer, mock_addr));
                }
                Ok((_, peer)) => {
                    tracing::warn!(%peer, "embedded broker: too many connections, refusing one");
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "embedded broker: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn pipe(mut client: TcpStream, peer: SocketAddr, mock_addr: SocketAddr) {
    let mut upstream = match TcpStream::connect(mock_addr).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "embedded broker: cannot reach the mock cluster");
            return;
        }
    };
    // Kafka requests are small and answered one by one: Nagle's algorithm with delayed ACKs
    // would add tens of milliseconds to each round trip through the extra hop.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(%peer, error = %e, "embedded broker: connection closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread")]
    async fn any_port_advertised_a_taken_one_refused_and_freed_on_shutdown() {
        let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = broker.addr();
        assert_ne!(addr.port(), 0);
        assert_eq!(broker.bootstrap(), addr.to_string());

        let err = EmbeddedBroker::start(addr)
            .await
            .err()
            .expect("a taken port");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot listen on {addr}: ")),
            "{err}"
        );

        let bootstrap = broker.bootstrap();
        let advertised = tokio::task::spawn_blocking(move || {
            let client: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .unwrap();
            let metadata = client
                .fetch_metadata(None, Duration::from_secs(10))
                .unwrap();
            let brokers: Vec<String> = metadata
                .brokers()
                .iter()
                .map(|b| format!("{}:{}", b.host(), b.port()))
                .collect();
            let topics: Vec<(String, usize)> = metadata
                .topics()
                .iter()
                .map(|t| (t.name().to_string(), t.partitions().len()))
                .collect();
            (brokers, topics)
        })
        .await
        .unwrap();
        assert_eq!(advertised.0, vec![addr.to_string()]);
        for (topic, partitions) in TOPICS {
            assert!(
                advertised
                    .1
                    .contains(&(topic.to_string(), *partitions as usize)),
                "{topic}: {:?}",
                advertised.1
            );
        }

        broker.shutdown().await;
        std::net::TcpListener::bind(addr).expect("the address is free after shutdown");
    }

    #[test]
    fn clients_are_told_an_address_they_can_connect_to() {
        let a = |s: &str| advertised_addr(s.parse().unwrap()).to_string();
        assert_eq!(a("0.0.0.0:9092"), "127.0.0.1:9092");
        assert_eq!(a("[::]:9092"), "[::1]:9092");
        assert_eq!(a("127.0.0.2:19092"), "127.0.0.2:19092");
    }
}
