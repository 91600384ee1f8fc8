//! What the service bench reads from the broker and from /proc while `packwell run` works:
//! the events a topic holds, the bare consumer's rate, the packing instructions as they come
//! out, the service group's committed offsets and the child's memory.

use super::RUN_TIMEOUT;
use packwell::kafka::{TOPIC_ORDERS, TOPIC_PACKING_INSTRUCTIONS, fast_consumer_config};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A topic's partitions, from the broker's metadata.
pub fn partitions(consumer: &BaseConsumer, topic: &str) -> Vec<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect()
}

/// The events `orders` holds: the sum of high − low watermarks. A low watermark above 0 means
/// the mock dropped events past its 5 MiB per partition; they are said and not counted.
pub fn events_held(brokers: &str, produced: usize) -> usize {
    let consumer: BaseConsumer = fast_consumer_config(brokers, "bench-watermarks")
        .create()
        .expect("consumer");
    let mut held = 0;
    for p in partitions(&consumer, TOPIC_ORDERS) {
        let (low, high) = consumer
            .fetch_watermarks(TOPIC_ORDERS, p, Duration::from_secs(10))
            .expect("watermarks");
        if low > 0 {
            eprintln!("warning: orders/{p} starts at {low}: the broker dropped {low} events");
        }
        held += (high - low) as usize;
    }
    if held != produced {
        eprintln!("warning: {produced} events produced, {held} in the topic: {held} counted");
    }
    held
}

/// The service's consumer settings (`packwell::service::run` adds statistics to
/// `fast_consumer_config`), in a group of its own, reading `n` events: events per second
/// from its first message to its last.
pub fn bare_rate(brokers: &str, group: &str, n: usize) -> f64 {
    let consumer: BaseConsumer = fast_consumer_config(brokers, group)
        .set("statistics.interval.ms", "5000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC_ORDERS]).expect("subscribe");
    let deadline = Instant::now() + RUN_TIMEOUT;
    let (mut seen, mut bytes) = (0usize, 0usize);
    let mut first = None;
    while seen < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            bytes += m.payload_len();
            seen += 1;
        }
    }
    assert!(
        seen == n && bytes > 0,
        "the bare consumer read {seen} of {n}"
    );
    n as f64 / first.expect("a first message").elapsed().as_secs_f64()
}

/// What the reader of `packing-instructions` saw.
#[derive(Default)]
pub struct Received {
    pub count: usize,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// The producer's timestamps (ms) of the first and last message: the same span as the
    /// service's clock saw it, free of the reader's own delays.
    pub first_stamp: Option<i64>,
    pub last_stamp: Option<i64>,
}

/// Reads `packing-instructions` from the beginning in a thread of its own, assigned (no group
/// join, so it is fetching before the service starts) and with short fetch waits, so that a
/// message is seen within a few milliseconds of its arrival.
pub struct Reader {
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Received>,
}

impl Reader {
    pub fn start(brokers: &str) -> Reader {
        let consumer: BaseConsumer = fast_consumer_config(brokers, "bench-reader")
            .set("fetch.wait.max.ms", "5")
            .create()
            .expect("reader");
        let mut tpl = TopicPartitionList::new();
        for p in partitions(&consumer, TOPIC_PACKING_INSTRUCTIONS) {
            tpl.add_partition_offset(TOPIC_PACKING_INSTRUCTIONS, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut r = Received::default();
            while !s.load(Ordering::Relaxed) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) else {
                    continue;
                };
                let now = Instant::now();
                r.first.get_or_insert(now);
                r.last = Some(now);
                let stamp = m.timestamp().to_millis();
                if r.first_stamp.is_none() {
                    r.first_stamp = stamp;
                }
                r.last_stamp = stamp.or(r.last_stamp);
                r.count += 1;
                c.store(r.count, Ordering::Relaxed);
            }
            r
        });
        Reader {
            count,
            stop,
            thread,
        }
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn finish(self) -> Received {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("reader thread")
    }
}

/// The sum of the offsets `group` committed on `orders`: the events the service has applied
/// (it commits to Kafka after each store commit; a fresh broker starts at 0).
pub fn committed(consumer: &BaseConsumer, orders: &TopicPartitionList) -> usize {
    let Ok(tpl) = consumer.committed_offsets(orders.clone(), Duration::from_secs(2)) else {
        return 0;
    };
    tpl.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o.max(0) as usize,
            _ => 0,
        })
        .sum()
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `RssAnon`, `VmHWM`).
pub fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len() + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
