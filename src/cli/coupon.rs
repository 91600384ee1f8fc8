//! `packwell coupon void CODE`: voids an issued coupon in the store the configuration names.
//! The `coupon.voided` message (a version above every earlier one of the code) goes in the
//! outbox in the same transaction, so the running service's relay sends it to `coupons`.
//!
//! `packwell coupon list`: the issued coupons, newest first, with where each stands in the
//! shops that sync coupons (docs/REFERENCE.md §8).

use super::{CliResult, Common, Failure, Format, load_config};
use crate::store::{CouponFilter, CouponListing, VoidOutcome};
use std::fmt::Write;

#[derive(Debug, clap::Args)]
pub struct CouponArgs {
    #[command(subcommand)]
    pub command: CouponCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CouponCommand {
    /// Void an issued coupon: it can no longer be redeemed.
    ///
    /// The coupon's state becomes `voided` and its version grows by one; a `coupon.voided`
    /// message (reason `operator`) is written to the outbox in the same transaction, for the
    /// running service to send to `coupons`, with a row of the operator log. An unknown code is
    /// exit 2; a coupon already voided or redeemed is exit 1 and changes nothing.
    Void(VoidArgs),
    /// List issued coupons, newest first: code, state, amount, when issued, and where a
    /// connector syncs coupons, each shop's sync state and error.
    List(ListArgs),
}

/// `coupon list --state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListState {
    Issued,
    Voided,
    Redeemed,
    /// Refused by a shop, or given up on after the retries.
    #[value(name = "sync_failed")]
    SyncFailed,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only coupons in this state (`sync_failed`: in some shop).
    #[arg(long, value_enum)]
    pub state: Option<ListState>,
    /// At most this many (1 to 10000).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u32,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct VoidArgs {
    #[command(flatten)]
    pub common: Common,
    /// The coupon code.
    #[arg(value_name = "CODE")]
    pub code: String,
}

pub fn run(args: &CouponArgs) -> CliResult {
    match &args.command {
        CouponCommand::Void(void) => run_void(void),
        CouponCommand::List(list) => run_list(list),
    }
}

fn run_list(args: &ListArgs) -> CliResult {
    if !(1..=10_000).contains(&args.limit) {
        return Err(Failure::usage(format!(
            "error: --limit {}: expected 1 to 10000",
            args.limit
        )));
    }
    let filter = match args.state {
        None => CouponFilter::All,
        Some(ListState::Issued) => CouponFilter::State("issued".into()),
        Some(ListState::Voided) => CouponFilter::State("voided".into()),
        Some(ListState::Redeemed) => CouponFilter::State("redeemed".into()),
        Some(ListState::SyncFailed) => CouponFilter::SyncFailed,
    };
    let config = load_config(&args.common)?;
    let store = super::ExistingStore::open(&config)?;
    let rows = store.block_on(store.store().coupon_listing(&filter, i64::from(args.limit)))?;
    match args.format {
        Format::Json => {
            let json: Vec<serde_json::Value> = rows.iter().map(listing_json).collect();
            let text = serde_json::to_string_pretty(&json)
                .map_err(|e| Failure::usage(format!("error: {e}")))?;
            println!("{text}");
        }
        Format::Text => print!("{}", table(&rows)),
    }
    Ok(())
}

fn time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// A coupon for `--format json`.
fn listing_json(c: &CouponListing) -> serde_json::Value {
    let sync: Vec<serde_json::Value> = c
        .sync
        .iter()
        .map(|s| {
            serde_json::json!({
                "platform": s.platform,
                "state": s.state.as_str(),
                "version": s.version,
                "shop_id": s.shop_id,
                "error": s.error,
                "attempts": s.attempts,
                "updated_at": time(s.updated_at),
            })
        })
        .collect();
    serde_json::json!({
        "code": c.code,
        "state": c.state,
        "version": c.version,
        "order_id": c.order_id,
        "customer_id": c.customer_id,
        "insert_id": c.insert_id,
        "amount": c.amount,
        "currency": c.currency,
        "expires_on": c.expires_on,
        "redeemed_order_id": c.redeemed_order_id,
        "issued_at": time(c.issued_at),
        "sync": sync,
    })
}

fn table(rows: &[CouponListing]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("no coupons\n");
        return out;
    }
    let width = rows.iter().map(|r| r.code.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "{:<width$}  {:<8}  {:>12}  {:<20}  sync",
        "code", "state", "amount", "issued (UTC)"
    );
    for r in rows {
        let sync: Vec<String> = r
            .sync
            .iter()
            .map(|s| match &s.error {
                Some(e) => format!("{} {}: {e}", s.platform, s.state.as_str()),
                None => format!("{} {}", s.platform, s.state.as_str()),
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<width$}  {:<8}  {:>12}  {:<20}  {}",
            r.code,
            r.state,
            format!("{} {}", r.amount, r.currency),
            time(r.issued_at),
            if sync.is_empty() {
                "-".to_string()
            } else {
                sync.join("; ")
            }
        );
    }
    out
}

fn run_void(args: &VoidArgs) -> CliResult {
    let common = &args.common;
    let code = args.code.trim();
    if code.is_empty() {
        return Err(Failure::usage("error: CODE: give a coupon code"));
    }
    let config = load_config(common)?;
    let store = super::ExistingStore::open(&config)?;
    let outcome = store.block_on(store.store().void_coupon(code, &super::actor()))?;
    match outcome {
        VoidOutcome::Voided {
            version,
            order_id,
            customer_id,
        } => {
            println!(
                "voided coupon {code} (order {order_id}, customer {customer_id}); \
                 coupon.voided version {version} is in the outbox for the service to send to coupons"
            );
            Ok(())
        }
        other => Err(refusal(code, store.shown(), &other)),
    }
}

/// Why a code was not voided: unknown (exit 2), or voided or redeemed already (exit 1).
pub fn refusal(code: &str, store: &str, outcome: &VoidOutcome) -> Failure {
    match outcome {
        VoidOutcome::Unknown => Failure::usage(format!(
            "error: no coupon {code} in the store {store} (codes are case-sensitive)"
        )),
        VoidOutcome::Final {
            state,
            redeemed_order_id: Some(order),
        } if state == "redeemed" => Failure::finding(format!(
            "coupon {code} is redeemed (on order {order}): nothing changed"
        )),
        VoidOutcome::Final { state, .. } => {
            Failure::finding(format!("coupon {code} is {state} already: nothing changed"))
        }
        VoidOutcome::Voided { .. } => Failure::finding(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_state_and_exit_1_or_2() {
        let unknown = refusal("TY-1", "data/packwell.db", &VoidOutcome::Unknown);
        assert_eq!(unknown.code, 2);
        assert!(
            unknown
                .message
                .contains("no coupon TY-1 in the store data/packwell.db")
        );
        let voided = refusal(
            "TY-1",
            "s",
            &VoidOutcome::Final {
                state: "voided".into(),
                redeemed_order_id: None,
            },
        );
        assert_eq!(
            (voided.code, voided.message.as_str()),
            (1, "coupon TY-1 is voided already: nothing changed")
        );
        let redeemed = refusal(
            "TY-1",
            "s",
            &VoidOutcome::Final {
                state: "redeemed".into(),
                redeemed_order_id: Some("O-9".into()),
            },
        );
        assert_eq!(redeemed.code, 1);
        assert!(redeemed.message.contains("redeemed (on order O-9)"));
    }
}
