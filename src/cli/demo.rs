//! `packwell run --demo`: a first look with nothing else to run. It sends an example history
//! (retimed so that its newest event happened now) to the service it runs beside, decides all
//! of it through the service's own path, paced on the consumer so that it goes in time order,
//! prints what comes out, and says when the history is decided and the effect report can tell
//! what worked.

use super::run::data_dir;
use super::send::{SendArgs, scan, send};
use super::{Common, Failure};
use crate::config::{Config, mask_url_password};
use crate::kafka::{TOPIC_PACKING_INSTRUCTIONS, fast_consumer_config};
use crate::service::Started;
use prometheus::IntCounter;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What `run --demo` sends, and how the banner says so.
pub(super) struct Demo {
    file: PathBuf,
    /// Events in the file.
    events: usize,
    /// The banner's line about it.
    pub(super) feed: String,
}

/// `--demo`: reads FILE once for its span. Unless the configuration sets
/// `[decide] max_event_age` itself, the age is made to cover the whole history (and a day
/// more, for the time the sending takes), so that every order in it is decided, through the
/// service's own path, as if it had come live: the effect report then has months of
/// treated and held-out customers to compare. A configured age is kept and the banner says
/// how much of the history it leaves undecided.
pub(super) fn prepare_demo(file: &Path, config: &mut Config) -> Result<Demo, Failure> {
    let span = scan(file)?;
    let days = match (span.oldest, span.newest) {
        (Some(oldest), Some(newest)) => (newest - oldest).num_seconds().div_euclid(86_400) + 1,
        _ => 0,
    };
    let what = format!(
        "the demo sends {} ({} events over {days} days), retimed so that the newest happened now",
        file.display(),
        span.lines
    );
    let feed = if config.max_event_age_given() {
        format!(
            "{what}; orders older than [decide] max_event_age = {:?} (as configured) only fold into the history",
            config.decide.max_event_age
        )
    } else {
        let age = u32::try_from(days + 1).unwrap_or(u32::MAX).max(7);
        config.set_max_event_age_days(age);
        format!(
            "{what}: every order decided, in time order\n\x20 decide:  [decide] max_event_age = \"{age}d\" for the demo (default 7d), so that the history is decided, not only its last week"
        )
    };
    Ok(Demo {
        file: file.to_path_buf(),
        events: span.lines,
        feed,
    })
}

/// The demo's events carry the ids they had the last time, retimed anew: a store that decided
/// them before would set every one aside as a conflicting repeat (`orders.dlq`), so the demo
/// starts from an empty store or not at all.
pub(super) async fn refuse_a_store_in_use(config: &Config) -> Result<(), Failure> {
    let url = config.store_url();
    let Ok(store) = crate::store::open(&url).await else {
        return Ok(()); // the service says what is wrong with it
    };
    match store.newest_decision_at().await {
        Ok(Some(_)) => Err(Failure::usage(format!(
            "error: the store {} already holds decisions (an earlier run?): the demo's events, retimed anew, would be set aside as repeats of the ones it decided\n  start the demo from an empty store: move {}/ away, or give it another one (PACKWELL_STORE_URL=demo/packwell.db)",
            mask_url_password(&url),
            data_dir(config).display()
        ))),
        _ => Ok(()),
    }
}

/// How far the demo's sending may run ahead of the service's consumer, in events. The embedded
/// broker keeps at most 5 MiB per partition, and a history sent all at once would have its
/// partitions decided months apart from each other: within this lead, every customer's events
/// are decided in order and all customers' within days of each other, as in a live stream.
const LEAD: u64 = 2_000;
/// How long the consumer may read nothing before the sending stops waiting for it (until it
/// reads again).
const STALLED: Duration = Duration::from_secs(10);
/// How often the demo says how far it has come (when it has come further).
const PROGRESS: Duration = Duration::from_secs(5);
/// Packing instructions printed in full before the demo only counts them.
const SHOWN: usize = 12;

/// Where the demo's sending is, for the thread that watches what comes out.
#[derive(Default)]
struct Sending {
    /// Events queued so far.
    queued: AtomicU64,
    /// Every event is sent and acknowledged.
    done: AtomicBool,
}

/// `--demo`: sends the events (retimed), `paced` on the service's consumer (with the embedded
/// broker, whose `orders` this service alone reads), and prints the packing instructions that
/// come out: the first ones in full, then how far it has come, then that the whole history is
/// decided and how to see what worked.
pub(super) fn start_demo(
    common: Common,
    demo: &Demo,
    brokers: String,
    started: &Started,
    paced: bool,
    stop: CancellationToken,
) {
    let sending = Arc::new(Sending::default());
    let watch = Watch {
        brokers: brokers.clone(),
        events: demo.events as u64,
        consumed: started.consumed.clone(),
        decided: started.decided.clone(),
        sending: sending.clone(),
        stop: stop.clone(),
    };
    std::thread::spawn(move || watch.run());
    let consumed = started.consumed.clone();
    let send_args = SendArgs {
        common,
        events: demo.file.clone(),
        brokers: Some(brokers),
        retime: true,
    };
    std::thread::spawn(move || {
        // What the consumer had read when it last moved on, and when.
        let moved = Cell::new((consumed.get(), Instant::now()));
        let pace = |queued: usize| {
            let queued = queued as u64;
            sending.queued.store(queued, Ordering::Relaxed);
            while paced && !stop.is_cancelled() {
                let read = consumed.get();
                if read != moved.get().0 {
                    moved.set((read, Instant::now()));
                }
                // A consumer that has read nothing for a while (still joining, or stuck) is
                // not waited for until it reads again.
                if queued.saturating_sub(read) <= LEAD || moved.get().1.elapsed() > STALLED {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        match send(&send_args, &pace) {
            Ok(()) => sending.done.store(true, Ordering::Relaxed),
            Err(f) => {
                eprintln!("{}", f.message.trim_end());
                stop.cancel();
            }
        }
    });
}

/// The thread that reads `packing-instructions` and tells how the demo goes.
struct Watch {
    brokers: String,
    /// Events in the file.
    events: u64,
    consumed: IntCounter,
    decided: IntCounter,
    sending: Arc<Sending>,
    stop: CancellationToken,
}

impl Watch {
    fn run(self) {
        let group = format!("packwell-demo-{}", std::process::id());
        let Ok(consumer) = fast_consumer_config(&self.brokers, &group).create::<BaseConsumer>()
        else {
            return;
        };
        if consumer.subscribe(&[TOPIC_PACKING_INSTRUCTIONS]).is_err() {
            return;
        }
        let begun = Instant::now();
        let (mut seen, mut last_told, mut last_read) = (0u64, 0u64, 0u64);
        let (mut quiet_since, mut told) = (Instant::now(), Instant::now());
        let mut all_decided = false;
        while !self.stop.is_cancelled() {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                seen += 1;
                quiet_since = Instant::now();
                if seen <= SHOWN as u64 {
                    let line = m
                        .payload()
                        .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                        .map(|d| summarize(&d))
                        .unwrap_or_default();
                    println!("  packing-instructions: {line}");
                }
                continue;
            }
            let quiet = quiet_since.elapsed();
            if !all_decided && self.all_decided(seen, quiet) {
                all_decided = true;
                last_told = seen;
                let decided = self.decided.get();
                println!(
                    "  the whole history is decided: {decided} order{} from {} events in {} s\n  \
                     what worked? in another terminal: packwell report   (also --window 30d, or --format html --out report.html); Ctrl-C stops the service",
                    if decided == 1 { "" } else { "s" },
                    self.sending.queued.load(Ordering::Relaxed),
                    begun.elapsed().as_secs()
                );
            } else if !all_decided
                && told.elapsed() >= PROGRESS
                && seen >= SHOWN as u64
                && self.consumed.get() != last_read
            {
                (told, last_read) = (Instant::now(), self.consumed.get());
                println!(
                    "  … {} orders decided so far, {} of {} events read",
                    self.decided.get(),
                    last_read.min(self.events),
                    self.events
                );
            } else if all_decided && seen > last_told && quiet > Duration::from_secs(2) {
                // Events sent since (`packwell send`) are decided as they come.
                println!("  … {seen} packing instructions so far; Ctrl-C to stop");
                last_told = seen;
            }
        }
    }

    /// Everything sent was read, and every decision made has come out for a second.
    fn all_decided(&self, seen: u64, quiet: Duration) -> bool {
        self.sending.done.load(Ordering::Relaxed)
            && self.consumed.get() >= self.sending.queued.load(Ordering::Relaxed)
            && seen >= self.decided.get()
            && quiet > Duration::from_secs(1)
    }
}

/// One line about a decision: the order and what goes into its parcel.
fn summarize(d: &serde_json::Value) -> String {
    let inserts: Vec<String> = d["inserts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| match i["coupon"]["code"].as_str() {
                    Some(code) => format!(
                        "{} ({} {} {code})",
                        i["insert_id"].as_str().unwrap_or("?"),
                        i["coupon"]["amount"].as_str().unwrap_or("?"),
                        i["coupon"]["currency"].as_str().unwrap_or("")
                    ),
                    None => i["insert_id"].as_str().unwrap_or("?").to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{} ({}): {}",
        d["order_id"].as_str().unwrap_or("?"),
        d["warehouse"].as_str().unwrap_or("?"),
        if inserts.is_empty() {
            "nothing".to_string()
        } else {
            inserts.join(", ")
        }
    )
}
