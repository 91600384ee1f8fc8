//! `packwell backtest`: a history replayed through the rules ([`crate::backtest`]) and
//! printed. The history is an NDJSON file (`--events`) or the events the configured store keeps
//! (`--from-store`, read only); both are replayed alike.

use super::{CliResult, Common, Failure, Format, RulesArgs};
use crate::backtest::{BacktestReport, backtest};
use crate::config::Config;
use crate::event::{Event, parse_event};
use crate::store::{DecideEnv, StoreError};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};

pub fn text_report(r: &BacktestReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} events, {} orders decided, {} lines rejected",
        r.events, r.orders, r.rejected
    );
    if let Some(w) = &r.window {
        let _ = writeln!(
            out,
            "decided: the last {} days, {} to {}; the {} events before them were folded as history",
            w.days, w.from, w.to, w.history
        );
    }
    let cost = |m: &BTreeMap<String, String>| {
        if m.is_empty() {
            "-".to_string()
        } else {
            m.iter()
                .map(|(c, a)| format!("{a} {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let _ = writeln!(
        out,
        "\nRules and follow-ups          given  held out  shadow  cost                 skipped"
    );
    for s in &r.rules {
        let skipped: Vec<String> = s.skipped.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            out,
            "  {:<26} {:>7} {:>9} {:>7}  {:<20} {}",
            s.id,
            s.given,
            s.held_out,
            s.shadow,
            cost(&s.cost),
            skipped.join(", ")
        );
    }
    let _ = writeln!(out, "\nInserts                        given  cost");
    for s in &r.inserts {
        let _ = writeln!(out, "  {:<26} {:>7}  {}", s.id, s.given, cost(&s.cost));
    }
    let _ = writeln!(out, "\nSegments                      orders");
    for s in &r.segments {
        let _ = writeln!(out, "  {:<26} {:>7}", s.id, s.orders);
    }
    let _ = writeln!(out, "\nE-mails scheduled: {}", r.emails.scheduled);
    out
}

/// Where the history comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    File(&'a Path),
    Store,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("history").required(true).args(["events", "from_store"])))]
pub struct BacktestArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub rules: RulesArgs,
    /// The history (NDJSON, one event a line).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Replay the events the configured store keeps (for [store] retention) instead of a
    /// file, in the order the store applied them. The store is only read.
    #[arg(long)]
    pub from_store: bool,
    /// Decide only the last N days, counted back from the newest event replayed (its
    /// occurred_at); the events before them are folded into the history first, deciding
    /// nothing, as import does. Default with --from-store: 30; with --events the whole
    /// file is decided.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: Option<u32>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

impl BacktestArgs {
    /// The arg group makes `--events` and `--from-store` exclusive and one of them required,
    /// so no file means the store.
    pub fn source(&self) -> Source<'_> {
        match &self.events {
            Some(path) => Source::File(path),
            None => Source::Store,
        }
    }
}

pub fn run(args: &BacktestArgs) -> CliResult {
    let (days, format) = (args.days, args.format);
    let config = super::load_config(&args.common)?;
    let rules = super::load_valid_rules(&args.rules)?;
    let key = super::read_only_key(&config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(format!("error: cannot start: {e}")))?;
    let (parsed, rejected, days) = match args.source() {
        Source::File(path) => {
            let (parsed, rejected) = read_file(path)?;
            (parsed, rejected, days)
        }
        Source::Store => {
            let (parsed, rejected) = runtime.block_on(read_store(&config))?;
            (
                parsed,
                rejected,
                Some(days.unwrap_or(crate::backtest::DEFAULT_STORE_DAYS)),
            )
        }
    };
    let bar = ProgressBar::new(parsed.len() as u64).with_style(
        ProgressStyle::with_template("replaying {pos}/{len} events {wide_bar} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let env = DecideEnv {
        rules: std::sync::Arc::new(rules),
        key,
        shop: config.shop(),
    };
    let mut report = runtime
        .block_on(backtest(&env, &parsed, days, &bar))
        .map_err(|e| Failure::usage(format!("error: the scratch store failed: {e}")))?;
    bar.finish_and_clear();
    report.rejected = rejected.len() as u64;
    for r in rejected.iter().take(20) {
        eprintln!("rejected: {r}");
    }
    if rejected.len() > 20 {
        eprintln!("rejected: ... and {} more", rejected.len() - 20);
    }
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| Failure::usage(format!("error: {e}")))?;
            println!("{text}");
        }
        Format::Text => print!("{}", text_report(&report)),
    }
    Ok(())
}

/// The events of an NDJSON file, and its lines that are not events.
fn read_file(events: &Path) -> Result<(Vec<Event>, Vec<String>), Failure> {
    let file = std::fs::File::open(events)
        .map_err(|e| Failure::usage(format!("error: cannot read {}: {e}", events.display())))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("reading {bytes}/{total_bytes} {wide_bar} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut parsed = Vec::new();
    let mut rejected: Vec<String> = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line
            .map_err(|e| Failure::usage(format!("error: {}:{}: {e}", events.display(), i + 1)))?;
        bar.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        match parse_event(line.as_bytes()) {
            Ok(e) => parsed.push(e),
            Err(r) => rejected.push(format!(
                "{}:{}: {} ({})",
                events.display(),
                i + 1,
                r.message,
                r.reason.as_str()
            )),
        }
    }
    bar.finish_and_clear();
    Ok((parsed, rejected))
}

/// The events the configured store keeps, in the order it applied them, read through a
/// read-only opening of the store; kept bytes that are not an event are told, not replayed.
async fn read_store(config: &Config) -> Result<(Vec<Event>, Vec<String>), Failure> {
    let url = config.store_url();
    let shown = crate::config::mask_url_password(&url);
    if super::sqlite_file_missing(&url) {
        return Err(Failure::usage(format!(
            "error: there is no store at {shown}: run this where the service runs, or set [store] url (PACKWELL_STORE_URL)"
        )));
    }
    let failed = |e: StoreError| Failure::usage(format!("error: the store {shown}: {e}"));
    let store = crate::store::events::open_read_only(&url)
        .await
        .map_err(failed)?;
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("reading {pos} kept events {spinner}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let kept = crate::store::events::all_kept_events(&*store, None, 1000, |n| bar.inc(n as u64))
        .await
        .map_err(failed)?;
    bar.finish_and_clear();
    if kept.is_empty() {
        eprintln!(
            "note: the store {shown} keeps no events: events are kept as they are applied, for [store] retention"
        );
    }
    let mut parsed = Vec::with_capacity(kept.len());
    let mut rejected = Vec::new();
    for k in kept {
        match k.event {
            Ok(e) => parsed.push(e),
            Err(e) => rejected.push(format!("{shown}: kept event {}: {e} (not readable)", k.seq)),
        }
    }
    Ok((parsed, rejected))
}
