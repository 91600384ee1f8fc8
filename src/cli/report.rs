//! `packwell report`: the effect of each rule and follow-up (CONTRACT §4), from the store the
//! configuration names, as text, JSON or one self-contained HTML page.

use super::{CliResult, Common, ExistingStore, Failure, RulesArgs};
use crate::report::{self, ReportOptions};
use clap::ValueEnum;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Html,
}

pub fn run(
    common: &Common,
    args: &RulesArgs,
    since: Option<&str>,
    window: &str,
    format: ReportFormat,
    out: Option<&Path>,
) -> CliResult {
    let options = ReportOptions {
        since: since
            .map(report::parse_since)
            .transpose()
            .map_err(|e| Failure::usage(format!("error: --since: {e}")))?,
        window_days: report::parse_window(window)
            .map_err(|e| Failure::usage(format!("error: --window: {e}")))?,
    };
    let config = super::load_config(common)?;
    // The rules give the report its order and each rule's mode; without them (a folder that
    // does not load) it still reports what the store holds.
    let loaded = crate::rules::load_rules(&args.rules, &args.templates_dir());
    if loaded.rules.is_none() {
        eprintln!(
            "note: the rules in {} do not load (`packwell validate` says why): the report lists the rules the store knows, without their modes",
            args.rules.display()
        );
    }
    let store = ExistingStore::open(&config)?;
    let built = store.block_on(report::build(store.store(), loaded.rules.as_ref(), options))?;
    let body = match format {
        ReportFormat::Text => report::text::render(&built),
        ReportFormat::Json => {
            let mut s = serde_json::to_string_pretty(&built)
                .map_err(|e| Failure::usage(format!("error: {e}")))?;
            s.push('\n');
            s
        }
        ReportFormat::Html => report::html::render(&built),
    };
    match out {
        Some(path) => std::fs::write(path, body)
            .map_err(|e| Failure::usage(format!("error: cannot write {}: {e}", path.display()))),
        None => {
            print!("{body}");
            Ok(())
        }
    }
}
