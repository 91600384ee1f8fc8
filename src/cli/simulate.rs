//! `packwell simulate`: one order decided on the rules, after its customer's history.

use super::{CliResult, Common, Failure, Format, RulesArgs};
use crate::coupon::CouponKey;
use crate::engine::{Decision, Outcome, Shop};
use crate::event::Event;
use crate::replay::Replay;
use crate::rules::RuleSet;
use chrono::{DateTime, Utc};
use std::fmt::Write;
use std::path::PathBuf;

/// Replays `history` (deciding it, as the service would have) and decides `order` at `at`.
pub fn simulate_order(
    rules: &RuleSet,
    key: &CouponKey,
    shop: &Shop,
    history: &[Event],
    order: &Event,
    at: Option<DateTime<Utc>>,
    explain: bool,
) -> Result<Outcome, Failure> {
    let mut order = order.clone();
    if let Some(at) = at {
        order.occurred_at = at;
    }
    Replay::new(rules, key, shop)
        .decide_after(history, &order, explain)
        .map_err(|e| Failure::usage(format!("error: {e}")))
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub rules: RulesArgs,
    /// An order.placed event (JSON).
    #[arg(long, value_name = "FILE")]
    pub order: PathBuf,
    /// Earlier events of that customer (NDJSON), replayed through the rules first.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// The decision time (RFC 3339); default: the event's occurred_at.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Also show why each segment and rule matched or not.
    #[arg(long)]
    pub explain: bool,
}

pub fn run(args: &SimulateArgs) -> CliResult {
    let config = super::load_config(&args.common)?;
    let event = super::read_event_file(&args.order)?;
    let history = super::read_history(args.history.as_deref())?;
    let at = args.at.as_deref().map(super::parse_time).transpose()?;
    let rules = super::load_valid_rules(&args.rules)?;
    let key = super::read_only_key(&config)?;
    let outcome = simulate_order(
        &rules,
        &key,
        &config.shop(),
        &history,
        &event,
        at,
        args.explain,
    )?;
    match args.format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&outcome.decision)
                .map_err(|e| Failure::usage(format!("error: cannot write JSON: {e}")))?;
            println!("{text}");
        }
        Format::Text => print!("{}", decision_text(&outcome.decision)),
    }
    Ok(())
}

/// The decision as a person reads it.
pub fn decision_text(d: &Decision) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Order {} of customer {} ({}), decided {}",
        d.order_id, d.customer_id, d.warehouse, d.decided_at
    );
    let _ = writeln!(out, "Rules {}", d.rules_version);
    let segments = if d.segments.is_empty() {
        "none".to_string()
    } else {
        d.segments.join(", ")
    };
    let _ = writeln!(out, "Segments: {segments}");
    if d.inserts.is_empty() {
        let _ = writeln!(out, "Inserts: nothing extra in this parcel");
    } else {
        let _ = writeln!(out, "Inserts:");
        for i in &d.inserts {
            let mut line = format!("  {:<20} {:<9} from {}", i.insert_id, i.kind, i.rule_id);
            if let Some(v) = &i.variant {
                let _ = write!(line, " (variant {v})");
            }
            if let Some(c) = &i.coupon {
                let min = c
                    .min_order
                    .as_ref()
                    .map(|m| format!(", min. order {m}"))
                    .unwrap_or_default();
                let _ = write!(
                    line,
                    "\n      code {}: {} {}{min}, valid until {}",
                    c.code, c.amount, c.currency, c.expires_on
                );
            }
            if let Some(sku) = &i.sku {
                let _ = write!(line, "  [{sku}]");
            }
            if let Some(n) = &i.note {
                for l in n.text.lines() {
                    let _ = write!(line, "\n      | {l}");
                }
            }
            let _ = writeln!(out, "{line}");
        }
    }
    if !d.followups.is_empty() {
        let _ = writeln!(out, "Follow-ups:");
        for f in &d.followups {
            let variant = f
                .variant
                .as_ref()
                .map(|v| format!(" (variant {v})"))
                .unwrap_or_default();
            let _ = writeln!(out, "  {:<30} due {}{variant}", f.followup_id, f.due_at);
        }
    }
    if !d.skipped.is_empty() {
        let _ = writeln!(out, "Skipped:");
        for s in &d.skipped {
            let what = match &s.insert_id {
                Some(i) => format!("{} / {i}", s.rule_id),
                None => s.rule_id.clone(),
            };
            let msg = s
                .message
                .as_ref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            let _ = writeln!(out, "  {what:<36} {}{msg}", s.reason.as_str());
        }
    }
    if let Some(e) = &d.explain {
        let _ = writeln!(out, "Explain:");
        for s in &e.segments {
            let _ = writeln!(
                out,
                "  segment {:<24} {}",
                s.id,
                if s.matched { "matched" } else { "not matched" }
            );
        }
        for r in &e.rules {
            let _ = writeln!(out, "  rule    {:<24} {}", r.id, r.outcome);
        }
    }
    out
}
