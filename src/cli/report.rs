//! `packwell report`: the effect of each rule and follow-up (docs/REFERENCE.md §4), from the store
//! the configuration names, as text, JSON or one self-contained HTML page.

use super::{CliResult, Common, ExistingStore, Failure, RulesArgs};
use crate::report::{self, ReportOptions};
use clap::ValueEnum;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Html,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub rules: RulesArgs,
    /// Only customers first exposed on or after this date (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// How long after the exposure a repeat purchase counts (whole days: 90d, 12w).
    #[arg(long, value_name = "DURATION", default_value = "90d")]
    pub window: String,
    /// The uplift `needed_per_group` is computed for: a share (0.03) or points (3%).
    #[arg(long, value_name = "UPLIFT", default_value = "0.03")]
    pub target_uplift: String,
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Where to write the report (default: standard output).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(args: &ReportArgs) -> CliResult {
    let options = ReportOptions {
        since: args
            .since
            .as_deref()
            .map(report::parse_since)
            .transpose()
            .map_err(|e| Failure::usage(format!("error: --since: {e}")))?,
        window_days: report::parse_window(&args.window)
            .map_err(|e| Failure::usage(format!("error: --window: {e}")))?,
        target_uplift_bp: report::parse_target_uplift(&args.target_uplift)
            .map_err(|e| Failure::usage(format!("error: --target-uplift: {e}")))?,
    };
    let config = super::load_config(&args.common)?;
    // The rules give the report its order and each rule's mode; without them (a folder that
    // does not load) it still reports what the store holds.
    let loaded = crate::rules::load_rules(&args.rules.rules, &args.rules.templates_dir());
    if loaded.rules.is_none() {
        eprintln!(
            "note: the rules in {} do not load (`packwell validate` says why): the report lists the rules the store knows, without their modes",
            args.rules.rules.display()
        );
    }
    let store = ExistingStore::open(&config)?;
    let built = store.block_on(report::build(store.store(), loaded.rules.as_ref(), options))?;
    let body = match args.format {
        ReportFormat::Text => report::text::render(&built),
        ReportFormat::Json => {
            let mut s = serde_json::to_string_pretty(&built)
                .map_err(|e| Failure::usage(format!("error: {e}")))?;
            s.push('\n');
            s
        }
        ReportFormat::Html => report::html::render(&built),
    };
    match args.out.as_deref() {
        Some(path) => std::fs::write(path, body)
            .map_err(|e| Failure::usage(format!("error: cannot write {}: {e}", path.display()))),
        None => {
            print!("{body}");
            Ok(())
        }
    }
}
