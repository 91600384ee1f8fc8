//! `packwell import`: backfills purchase history from an NDJSON file into the store. Nothing
//! is decided and no coupon is issued: every event is only folded into its customer's history.
//!
//! Streaming: a reader thread reads the file line by line and hands over batches of `--batch`
//! lines; each batch is applied in one transaction that also records how far the import of
//! this file has come (`Fence::Import`), so an interrupted import resumes where it stopped and a
//! batch is either in the store with its position or not at all. Event ids already processed
//! are skipped by the store, so importing a file again changes nothing. Bad lines are set aside
//! (the store's dead-letter outbox), counted, and listed in the closing summary.

use super::{CliResult, Common, Failure, RulesArgs};
use crate::coupon::CouponKey;
use crate::event::parse_event_within;
use crate::step::Applied;
use crate::store::{self, Batch, BatchItem, DecideEnv, Fence};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rejected lines listed one by one in the summary; the rest are counted.
pub const LISTED_REJECTS: usize = 20;

/// The lines [start, end) of the file (0-based), parsed.
struct Chunk {
    start: i64,
    end: i64,
    items: Vec<BatchItem>,
    /// Lines that did not parse: 1-based line number and why.
    bad: Vec<(i64, String)>,
    bytes: u64,
}

/// What one run of `import` did.
#[derive(Debug, Default)]
pub struct ImportSummary {
    /// Lines of the file done before this run (0 for a fresh import).
    pub resumed_at: i64,
    /// Lines read in this run.
    pub lines_read: i64,
    /// Events new to the store.
    pub imported: u64,
    /// Events whose id the store had processed before.
    pub seen_before: u64,
    /// Lines set aside: not an event, or an order known under another customer.
    pub rejected: u64,
    /// The first [`LISTED_REJECTS`] of them: 1-based line number and why.
    pub listed: Vec<(i64, String)>,
    /// Distinct customers whose history this run changed.
    pub customers: usize,
    pub elapsed: Duration,
}

impl ImportSummary {
    fn note_rejected(&mut self, line: i64, message: String) {
        if self.listed.len() < LISTED_REJECTS {
            self.listed.push((line, message));
        }
    }
}

/// Reads up to `batch` lines (blank ones count as lines but carry no event).
fn read_chunk(
    reader: &mut impl BufRead,
    next_line: &mut i64,
    batch: usize,
    max_event_bytes: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Chunk>> {
    let start = *next_line;
    let mut chunk = Chunk {
        start,
        end: start,
        items: Vec::with_capacity(batch),
        bad: Vec::new(),
        bytes: 0,
    };
    while (chunk.end - start) < batch as i64 {
        buf.clear();
        let n = reader.read_until(b'\n', buf)?;
        if n == 0 {
            break;
        }
        chunk.bytes += n as u64;
        let index = chunk.end;
        chunk.end += 1;
        let line = trim_line(buf);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event = parse_event_within(line, max_event_bytes);
        let key = match &event {
            Ok(e) => Some(e.customer_id().as_bytes().to_vec()),
            Err(r) => {
                chunk
                    .bad
                    .push((index + 1, format!("{} ({})", r.message, r.reason.as_str())));
                customer_of_bad_line(line).map(String::into_bytes)
            }
        };
        chunk.items.push(BatchItem {
            offset: index,
            key,
            value: line.to_vec(),
            event,
            decide: false,
        });
    }
    *next_line = chunk.end;
    Ok((chunk.end > start).then_some(chunk))
}

fn trim_line(buf: &[u8]) -> &[u8] {
    let line = buf.strip_suffix(b"\n").unwrap_or(buf);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The customer id a bad line names, if any: the set-aside copy is keyed by it, so that
/// `forget` finds it. From the JSON when it is JSON, else (a cut line) from its text.
fn customer_of_bad_line(line: &[u8]) -> Option<String> {
    static NAMED: std::sync::LazyLock<Option<regex::bytes::Regex>> =
        std::sync::LazyLock::new(|| {
            regex::bytes::Regex::new(
                r#""customer_id"\s*:\s*"([^"\\]+)"|"customer"\s*:\s*\{\s*"id"\s*:\s*"([^"\\]+)""#,
            )
            .ok()
        });
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
        return [
            v.pointer("/order/customer/id"),
            v.get("customer_id"),
            v.pointer("/customer/id"),
        ]
        .into_iter()
        .flatten()
        .find_map(|c| c.as_str().filter(|s| !s.is_empty()).map(str::to_string));
    }
    let caps = NAMED.as_ref()?.captures(line)?;
    let id = caps.get(1).or_else(|| caps.get(2))?;
    String::from_utf8(id.as_bytes().to_vec()).ok()
}

/// Skips the `lines` lines already imported; returns the bytes skipped, or the number of
/// lines the file has when it has fewer.
fn skip_lines(reader: &mut impl BufRead, lines: i64) -> std::io::Result<Result<u64, i64>> {
    let mut buf = Vec::new();
    let mut bytes = 0u64;
    for i in 0..lines {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(Err(i));
        }
        bytes += n as u64;
    }
    Ok(Ok(bytes))
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub rules: RulesArgs,
    /// The history (NDJSON, one event a line).
    #[arg(long, value_name = "FILE")]
    pub events: PathBuf,
    /// Lines per transaction.
    #[arg(long, value_name = "N", default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch: u32,
}

pub fn run(args: &ImportArgs) -> CliResult {
    let events = args.events.as_path();
    let batch = args.batch as usize;
    let config = super::load_config(&args.common)?;
    // Nothing is decided, but the store's batch procedure takes what deciding needs.
    let rules = super::load_valid_rules(&args.rules)?;
    // No code is made, so no key is created and none is needed: the preview key stands in.
    let key = CouponKey::read(&config.coupons.key_file)
        .map_err(|e| Failure::usage(format!("error: {e}")))?
        .unwrap_or_else(CouponKey::preview);
    let env = DecideEnv {
        rules: Arc::new(rules),
        key,
        shop: config.shop(),
    };
    let shown = events.display().to_string();
    let cannot_read =
        |e: std::io::Error| Failure::usage(format!("error: cannot read {shown}: {e}"));
    let file = std::fs::File::open(events).map_err(cannot_read)?;
    let meta = file.metadata().map_err(cannot_read)?;
    if meta.is_dir() {
        return Err(Failure::usage(format!(
            "error: cannot read {shown}: it is a folder"
        )));
    }
    let source = std::fs::canonicalize(events)
        .map_err(cannot_read)?
        .display()
        .to_string();
    let url = config.store_url();
    let runtime = super::runtime()?;
    let started = Instant::now();
    let summary = runtime.block_on(async {
        let store = store::open(&url).await.map_err(|e| {
            Failure::usage(format!(
                "error: cannot open the store {}: {e}",
                crate::config::mask_url_password(&url)
            ))
        })?;
        let resumed_at = store
            .import_position(&source)
            .await
            .map_err(|e| Failure::usage(format!("error: the store: {e}")))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let skipped = match skip_lines(&mut reader, resumed_at).map_err(cannot_read)? {
            Ok(bytes) => bytes,
            Err(has) => {
                return Err(Failure::usage(format!(
                    "error: {shown}: the store says {resumed_at} lines of this file were imported, but it has only {has}: \
                     was the file changed? To import it anew, give the new content another file name"
                )));
            }
        };
        let more = !reader.fill_buf().map_err(cannot_read)?.is_empty();
        if resumed_at > 0 && more {
            eprintln!(
                "resuming at line {}: the first {resumed_at} lines of {shown} were imported before",
                resumed_at + 1
            );
        }
        let bar = ProgressBar::new(meta.len()).with_style(
            ProgressStyle::with_template(
                "importing {bytes}/{total_bytes} {wide_bar} {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(skipped);
        let mut summary = ImportSummary {
            resumed_at,
            ..Default::default()
        };
        let result = import_chunks(reader, resumed_at, batch, config.kafka.max_event_bytes, &*store, &env, &source, &bar, &mut summary).await;
        bar.finish_and_clear();
        result.map_err(|message| {
            Failure::usage(format!(
                "{message}\nnote: {} lines of {shown} are in the store; run the same command again to resume",
                summary.resumed_at + summary.lines_read
            ))
        })?;
        Ok(summary)
    })?;
    let summary = ImportSummary {
        elapsed: started.elapsed(),
        ..summary
    };
    print!("{}", text_summary(&shown, &summary));
    Ok(())
}

/// Reads the file on a thread of its own and applies its batches in order.
#[allow(clippy::too_many_arguments)]
async fn import_chunks(
    mut reader: BufReader<std::fs::File>,
    first_line: i64,
    batch: usize,
    max_event_bytes: usize,
    store: &dyn store::Store,
    env: &DecideEnv,
    source: &str,
    bar: &ProgressBar,
    summary: &mut ImportSummary,
) -> Result<(), String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Chunk, String>>(2);
    let reading = std::thread::spawn(move || {
        let mut next_line = first_line;
        let mut buf = Vec::new();
        loop {
            let chunk = read_chunk(
                &mut reader,
                &mut next_line,
                batch,
                max_event_bytes,
                &mut buf,
            )
            .map_err(|e| format!("error: cannot read line {}: {e}", next_line + 1));
            let stop = !matches!(chunk, Ok(Some(_)));
            let sent = match chunk {
                Ok(Some(c)) => tx.blocking_send(Ok(c)),
                Ok(None) => Ok(()),
                Err(e) => tx.blocking_send(Err(e)),
            };
            if stop || sent.is_err() {
                break;
            }
        }
    });
    let mut touched: HashSet<String> = HashSet::new();
    let mut outcome = Ok(());
    while let Some(chunk) = rx.recv().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                outcome = Err(e);
                break;
            }
        };
        let lines: Vec<(i64, Option<String>, Option<String>)> = chunk
            .items
            .iter()
            .map(|i| {
                let e = i.event.as_ref().ok();
                (
                    i.offset,
                    e.map(|e| e.customer_id().to_string()),
                    e.and_then(|e| e.order_id()).map(str::to_string),
                )
            })
            .collect();
        let count = chunk.items.len() as u64;
        let (start, end) = (chunk.start, chunk.end);
        let mut batch = Batch {
            fence: Fence::Import {
                source: source.to_string(),
                start,
                end,
            },
            items: chunk.items,
        };
        let report = match store::apply_guarded(store, &mut batch, env).await {
            Ok(r) => r,
            Err(e) => {
                outcome = Err(format!(
                    "error: the store, applying lines {}-{end}: {e}",
                    start + 1
                ));
                break;
            }
        };
        // Parse failures and the store's own rejections (an order id known under another
        // customer), in line order.
        let mut bad = chunk.bad;
        for ((offset, customer, order), applied) in lines.iter().zip(&report.applied) {
            match applied {
                Applied::Conflict => bad.push((
                    offset + 1,
                    format!(
                        "order {:?} is known under another customer (conflict)",
                        order.as_deref().unwrap_or("")
                    ),
                )),
                Applied::Rejected(r) => {
                    bad.push((offset + 1, format!("{} ({})", r.message, r.reason.as_str())))
                }
                Applied::Decided(_) | Applied::Folded { .. } => {
                    if let Some(c) = customer {
                        touched.insert(c.clone());
                    }
                }
                // Unchanged is a replayed event id or an order placed twice; without replays
                // in the batch, it is the latter, which still counts as that customer's.
                Applied::Unchanged => {
                    if report.seen_before == 0
                        && let Some(c) = customer
                    {
                        touched.insert(c.clone());
                    }
                }
            }
        }
        bad.sort_by_key(|(line, _)| *line);
        for (line, message) in bad {
            summary.note_rejected(line, message);
        }
        let rejected = report.rejected as u64;
        let seen = report.seen_before as u64;
        summary.rejected += rejected;
        summary.seen_before += seen;
        summary.imported += count.saturating_sub(rejected + seen);
        summary.lines_read = end - first_line;
        bar.inc(chunk.bytes);
        bar.set_message(format!("{} events", summary.imported));
    }
    drop(rx);
    let _ = reading.join();
    summary.customers = touched.len();
    outcome
}

pub fn text_summary(file: &str, s: &ImportSummary) -> String {
    let mut out = String::new();
    if s.lines_read == 0 {
        if s.resumed_at > 0 {
            let _ = writeln!(
                out,
                "{file}: all {} lines were already imported; nothing to do",
                s.resumed_at
            );
        } else {
            let _ = writeln!(out, "{file}: no lines to import");
        }
        return out;
    }
    let from = if s.resumed_at > 0 {
        format!(", resumed at line {}", s.resumed_at + 1)
    } else {
        String::new()
    };
    let _ = writeln!(out, "Imported {file}: {} lines read{from}", s.lines_read);
    let _ = writeln!(out, "  events imported:   {}", s.imported);
    if s.seen_before > 0 {
        let _ = writeln!(
            out,
            "  already in store:  {} (event ids imported or consumed before: skipped)",
            s.seen_before
        );
    }
    let _ = writeln!(out, "  customers touched: {}", s.customers);
    if s.rejected == 0 {
        let _ = writeln!(out, "  lines rejected:    0");
    } else {
        let _ = writeln!(
            out,
            "  lines rejected:    {} (set aside in the store's dead-letter outbox, {}; the rest was loaded)",
            s.rejected,
            store::TOPIC_DLQ
        );
        for (line, message) in &s.listed {
            let _ = writeln!(out, "    {file}:{line}: {message}");
        }
        let more = s.rejected.saturating_sub(s.listed.len() as u64);
        if more > 0 {
            let _ = writeln!(out, "    ... and {more} more");
        }
    }
    let secs = s.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        s.imported as f64 / secs
    } else {
        0.0
    };
    let _ = writeln!(out, "  elapsed:           {secs:.2} s ({rate:.0} events/s)");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_count_every_line_and_keep_bad_ones() {
        let text = "{\"x\":1}\n\n   \r\nnot json\r\n{\"event_id\":\"e\",\"type\":\"order.cancelled\",\"customer_id\":\"C-9\"}";
        let mut r = std::io::Cursor::new(text.as_bytes());
        let mut next = 0;
        let mut buf = Vec::new();
        let c = read_chunk(&mut r, &mut next, 3, 1 << 20, &mut buf)
            .unwrap()
            .unwrap();
        assert_eq!((c.start, c.end), (0, 3));
        assert_eq!(c.items.len(), 1, "blank lines carry no event");
        assert_eq!(c.bad[0].0, 1);
        let c = read_chunk(&mut r, &mut next, 3, 1 << 20, &mut buf)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.start, c.end),
            (3, 5),
            "a last line without a newline counts"
        );
        assert_eq!(c.items.len(), 2);
        assert_eq!(c.items[0].value, b"not json");
        assert_eq!(c.items[0].offset, 3);
        assert_eq!(c.bad.iter().map(|b| b.0).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(
            c.items[1].key.as_deref(),
            Some(&b"C-9"[..]),
            "keyed by the customer it names"
        );
        assert!(c.items.iter().all(|i| !i.decide));
        assert!(
            read_chunk(&mut r, &mut next, 3, 1 << 20, &mut buf)
                .unwrap()
                .is_none()
        );
        assert_eq!(next, 5);
    }

    #[test]
    fn bad_lines_are_keyed_by_the_customer_they_name() {
        let cut = br#"{"event_id":"e","type":"order.placed","order":{"id":"O-1","customer":{"id":"C-7","email":"a@b"#;
        assert_eq!(customer_of_bad_line(cut).as_deref(), Some("C-7"));
        let shipped =
            br#"{"event_id":"e","type":"order.shipped","customer_id":"C-8","order_id":5}"#;
        assert_eq!(customer_of_bad_line(shipped).as_deref(), Some("C-8"));
        assert_eq!(customer_of_bad_line(b"garbage"), None);
    }

    #[test]
    fn skipping_more_lines_than_there_are_says_how_many() {
        let mut r = std::io::Cursor::new(&b"a\nb\nc"[..]);
        assert_eq!(skip_lines(&mut r, 2).unwrap(), Ok(4));
        let mut r = std::io::Cursor::new(&b"a\nb\nc"[..]);
        assert_eq!(skip_lines(&mut r, 5).unwrap(), Err(3));
    }

    #[test]
    fn the_summary_lists_twenty_rejects_then_counts() {
        let s = ImportSummary {
            lines_read: 100,
            imported: 70,
            rejected: 30,
            listed: (1..=20).map(|l| (l, "bad".to_string())).collect(),
            customers: 3,
            elapsed: Duration::from_secs(2),
            ..Default::default()
        };
        let text = text_summary("h.ndjson", &s);
        assert!(text.contains("h.ndjson:20: bad"), "{text}");
        assert!(text.contains("... and 10 more"), "{text}");
        assert!(text.contains("35 events/s"), "{text}");
    }
}
