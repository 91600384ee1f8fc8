//! `packwell backtest`: a history replayed in time order through the fold and the engine
//! (stock and budgets applied): per rule, insert and segment, what was given, held out,
//! skipped and what it cost. The history is an NDJSON file (`--events`) or the events the
//! configured store keeps (`--from-store`, read only); both are replayed alike. With `--days N`
//! only the last N days, counted back from the newest event, are decided; the events before
//! them are folded into the history first, deciding nothing, as `import` folds a history.

use super::{CliResult, Common, Failure, Format, RulesArgs};
use crate::config::Config;
use crate::engine::{SkipReason, format_time};
use crate::event::{Event, parse_event};
use crate::money::format_amount;
use crate::step::Applied;
use crate::store::{Batch, BatchItem, DecideEnv, Fence, SqliteStore, StoreError};
use indicatif::{ProgressBar, ProgressStyle};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct RuleStats {
    pub id: String,
    /// Orders a rule gave to; e-mails a follow-up scheduled.
    pub given: u64,
    pub held_out: u64,
    pub shadow: u64,
    pub skipped: BTreeMap<String, u64>,
    pub cost: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct InsertStats {
    pub id: String,
    pub given: u64,
    pub cost: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct SegmentStats {
    pub id: String,
    pub orders: u64,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct EmailStats {
    pub scheduled: u64,
}

/// What was decided with `--days`: the events from `from` to `to` (the newest event's time).
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct WindowStats {
    pub days: u32,
    pub from: String,
    pub to: String,
    /// Events before `from`, folded into the history without deciding.
    pub history: u64,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct BacktestReport {
    /// Every event replayed, the history before the window included.
    pub events: u64,
    pub orders: u64,
    pub rejected: u64,
    /// Null when the whole history was decided (no `--days`).
    pub window: Option<WindowStats>,
    pub rules: Vec<RuleStats>,
    pub inserts: Vec<InsertStats>,
    pub segments: Vec<SegmentStats>,
    pub emails: EmailStats,
}

/// Per rule while counting: given, held out, shadow, skipped by reason, cost by currency.
type Tally = (
    u64,
    u64,
    u64,
    BTreeMap<String, u64>,
    BTreeMap<String, Decimal>,
);

/// Adds a cost to a per-currency total, checked: rule amounts are the marketer's, and no
/// total may wrap or panic.
fn add_cost(
    totals: &mut BTreeMap<String, Decimal>,
    currency: &str,
    amount: Decimal,
    id: &str,
) -> Result<(), StoreError> {
    let total = totals.entry(currency.to_string()).or_default();
    *total = total.checked_add(amount).ok_or_else(|| {
        StoreError::Other(format!(
            "the cost in {currency} of {id} over the history is too large to hold exactly"
        ))
    })?;
    Ok(())
}

/// Replays `events` (in time order; ties keep the order given) through a scratch store, the
/// service's own code path (fold, decide, counters, coupons, e-mail jobs), and counts. With
/// `days`, only the events of the last `days` days before the newest one (at or after its
/// `occurred_at` less `days`) are decided; those before are folded without deciding.
pub async fn backtest(
    env: &DecideEnv,
    events: Vec<Event>,
    days: Option<u32>,
    progress: &ProgressBar,
) -> Result<BacktestReport, StoreError> {
    let mut events = events;
    if !events
        .windows(2)
        .all(|w| w[0].occurred_at <= w[1].occurred_at)
    {
        events.sort_by_key(|e| e.occurred_at);
    }
    let window = days.zip(events.last()).map(|(days, newest)| {
        let to = newest.occurred_at;
        let from = to
            .checked_sub_signed(chrono::Duration::days(i64::from(days)))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        (days, from, to)
    });
    let mut history = 0u64;
    let rules = &env.rules;
    let store = SqliteStore::open(":memory:").await?;
    let mut by_rule: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_insert: BTreeMap<String, (u64, BTreeMap<String, Decimal>)> = BTreeMap::new();
    let mut by_segment: BTreeMap<String, u64> = BTreeMap::new();
    let mut report = BacktestReport::default();
    let mut offset = 0i64;
    for chunk in events.chunks(500) {
        let items = chunk
            .iter()
            .map(|e| {
                offset += 1;
                let decide = window.is_none_or(|(_, from, _)| e.occurred_at >= from);
                history += u64::from(!decide);
                BatchItem {
                    offset,
                    key: None,
                    value: Vec::new(),
                    event: Ok(e.clone()),
                    decide,
                }
            })
            .collect();
        let mut batch = Batch {
            fence: Fence::None,
            items,
        };
        let applied_batch = crate::store::apply_guarded(&store, &mut batch, env).await?;
        progress.inc(chunk.len() as u64);
        report.events += chunk.len() as u64;
        for applied in applied_batch.applied {
            match applied {
                Applied::Decided(outcome) => {
                    report.orders += 1;
                    let d = &outcome.decision;
                    for s in &d.segments {
                        *by_segment.entry(s.clone()).or_default() += 1;
                    }
                    // A rule counts once per order it gave to; an insert once per unit given.
                    for rule in &outcome.rules_given {
                        by_rule.entry(rule.clone()).or_default().0 += 1;
                    }
                    for i in &d.inserts {
                        by_insert.entry(i.insert_id.clone()).or_default().0 +=
                            u64::from(i.quantity);
                    }
                    for f in &d.followups {
                        by_rule.entry(f.followup_id.clone()).or_default().0 += 1;
                    }
                    for c in &outcome.costs {
                        let currency = c.currency.to_string();
                        let rule = by_rule.entry(c.rule_id.clone()).or_default();
                        add_cost(&mut rule.4, &currency, c.amount, &c.rule_id)?;
                        let insert = by_insert.entry(c.insert_id.clone()).or_default();
                        add_cost(&mut insert.1, &currency, c.amount, &c.insert_id)?;
                    }
                    for s in &d.skipped {
                        let stats = by_rule.entry(s.rule_id.clone()).or_default();
                        match s.reason {
                            SkipReason::Holdout => stats.1 += 1,
                            SkipReason::Shadow => stats.2 += 1,
                            _ => {}
                        }
                        *stats.3.entry(s.reason.as_str().to_string()).or_default() += 1;
                    }
                    report.emails.scheduled += d.followups.len() as u64;
                }
                Applied::Folded { followups, skipped } => {
                    report.emails.scheduled += followups.len() as u64;
                    for f in &followups {
                        by_rule.entry(f.followup_id.clone()).or_default().0 += 1;
                    }
                    for s in skipped {
                        let stats = by_rule.entry(s.rule_id.clone()).or_default();
                        if s.reason == SkipReason::Holdout {
                            stats.1 += 1;
                        }
                        *stats.3.entry(s.reason.as_str().to_string()).or_default() += 1;
                    }
                }
                Applied::Unchanged | Applied::Conflict | Applied::Rejected(_) => {}
            }
        }
    }
    let money =
        |m: BTreeMap<String, Decimal>| m.into_iter().map(|(k, v)| (k, format_amount(v))).collect();
    // Every rule, follow-up, insert and segment is listed, also those that never applied.
    for id in rules
        .rules
        .iter()
        .map(|r| &r.id)
        .chain(rules.followups.iter().map(|f| &f.id))
    {
        let (given, held_out, shadow, skipped, cost) = by_rule.remove(id).unwrap_or_default();
        report.rules.push(RuleStats {
            id: id.clone(),
            given,
            held_out,
            shadow,
            skipped,
            cost: money(cost),
        });
    }
    for insert in &rules.inserts {
        let (given, cost) = by_insert.remove(&insert.id).unwrap_or_default();
        report.inserts.push(InsertStats {
            id: insert.id.clone(),
            given,
            cost: money(cost),
        });
    }
    for seg in &rules.segments {
        report.segments.push(SegmentStats {
            id: seg.id.clone(),
            orders: by_segment.remove(&seg.id).unwrap_or(0),
        });
    }
    report.window = window.map(|(days, from, to)| WindowStats {
        days,
        from: format_time(from),
        to: format_time(to),
        history,
    });
    Ok(report)
}

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

/// Decided with `--from-store` when `--days` is not given.
pub const STORE_DAYS: u32 = 30;

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
            (parsed, rejected, Some(days.unwrap_or(STORE_DAYS)))
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
        .block_on(backtest(&env, parsed, days, &bar))
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
