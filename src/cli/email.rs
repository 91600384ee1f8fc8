//! `packwell email list|cancel|resend`: operators' view and control of e-mail jobs, in the
//! store the configuration names. A job is named `ORDER_ID/FOLLOWUP_ID`; changes are written
//! with a row of the operator log, and the running service's sender picks them up.

use super::{CliResult, Common, Failure, Format, load_config};
use crate::store::emails::{EmailControl, EmailJobRow, parse_job_id};
use chrono::DateTime;
use std::fmt::Write as _;

fn job(id: &str) -> Result<(&str, &str), Failure> {
    parse_job_id(id.trim()).ok_or_else(|| {
        Failure::usage(format!(
            "error: {id:?}: name a job as ORDER_ID/FOLLOWUP_ID, as `packwell email list` shows it"
        ))
    })
}

fn control(id: &str, store: &str, outcome: EmailControl, done: &str, allowed: &str) -> CliResult {
    match outcome {
        EmailControl::Done { before } => {
            println!("{done} {id} (it was {before})");
            Ok(())
        }
        EmailControl::Unknown => Err(Failure::usage(format!(
            "error: no e-mail job {id} in the store {store}"
        ))),
        EmailControl::Refused { state } => Err(Failure::finding(format!(
            "e-mail {id} is {state}: nothing changed ({allowed})"
        ))),
    }
}

#[derive(Debug, clap::Args)]
pub struct EmailArgs {
    #[command(subcommand)]
    pub command: EmailCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum EmailCommand {
    /// List e-mail jobs (newest first): id (ORDER_ID/FOLLOWUP_ID), state, due time, detail.
    List(ListArgs),
    /// Cancel a pending or retrying e-mail: it ends skipped (`cancelled`) and is never sent.
    Cancel(JobArgs),
    /// Send a sent, failed, unknown or skipped e-mail again, now: it is checked anew
    /// (unsubscribes, suppressions, frequency cap, quiet hours) and goes under a new
    /// idempotency key; coupons it gave before stay the same.
    Resend(JobArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only this order's e-mails.
    #[arg(long, value_name = "ID")]
    pub order: Option<String>,
    /// Only this customer's e-mails.
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
    /// At most this many.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u32,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// `cancel` and `resend` name one job.
#[derive(Debug, clap::Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub common: Common,
    /// The job: ORDER_ID/FOLLOWUP_ID.
    #[arg(value_name = "ID")]
    pub id: String,
}

pub fn run(args: &EmailArgs) -> CliResult {
    match &args.command {
        EmailCommand::List(list_args) => list(
            &list_args.common,
            list_args.order.as_deref(),
            list_args.customer.as_deref(),
            list_args.limit,
            list_args.format,
        ),
        EmailCommand::Cancel(job) => cancel(&job.common, &job.id),
        EmailCommand::Resend(job) => resend(&job.common, &job.id),
    }
}

fn cancel(common: &Common, id: &str) -> CliResult {
    let (order, followup) = job(id)?;
    let config = load_config(common)?;
    let store = super::ExistingStore::open(&config)?;
    let outcome = store.block_on(store.store().cancel_email(order, followup, &super::actor()))?;
    control(
        id.trim(),
        store.shown(),
        outcome,
        "cancelled",
        "only a pending or retrying e-mail can be cancelled",
    )
}

fn resend(common: &Common, id: &str) -> CliResult {
    let (order, followup) = job(id)?;
    let config = load_config(common)?;
    let store = super::ExistingStore::open(&config)?;
    let now = chrono::Utc::now().timestamp();
    let outcome = store.block_on(store.store().resend_email(
        order,
        followup,
        &super::actor(),
        now,
    ))?;
    control(
        id.trim(),
        store.shown(),
        outcome,
        "will send again, checked anew (unsubscribes, frequency cap, quiet hours):",
        "a sent, failed, unknown or skipped e-mail can be sent again, not a held-out one",
    )
}

fn list(
    common: &Common,
    order: Option<&str>,
    customer: Option<&str>,
    limit: u32,
    format: Format,
) -> CliResult {
    let config = load_config(common)?;
    let store = super::ExistingStore::open(&config)?;
    let rows = store.block_on(store.store().email_jobs(order, customer, i64::from(limit)))?;
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&rows)
                .map_err(|e| Failure::usage(format!("error: {e}")))?;
            println!("{text}");
        }
        Format::Text => print!("{}", table(&rows)),
    }
    Ok(())
}

fn time(t: i64) -> String {
    DateTime::from_timestamp(t, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn table(rows: &[EmailJobRow]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("no e-mail jobs\n");
        return out;
    }
    let width = rows.iter().map(|r| r.id.len()).max().unwrap_or(2).max(2);
    let _ = writeln!(
        out,
        "{:<width$}  {:<22}  {:<16}  detail",
        "id", "state", "due (UTC)"
    );
    for r in rows {
        let state = match &r.reason {
            Some(reason) => format!("{} ({reason})", r.state),
            None => r.state.clone(),
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:<22}  {:<16}  {}",
            r.id,
            state,
            time(r.due_at),
            r.detail.as_deref().unwrap_or("")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_split_at_the_last_slash() {
        assert_eq!(job("O-1/thanks").unwrap(), ("O-1", "thanks"));
        assert_eq!(job("shop/O-1/thanks").unwrap(), ("shop/O-1", "thanks"));
        assert_eq!(job("O-1").unwrap_err().code, 2);
        assert_eq!(job("/thanks").unwrap_err().code, 2);
    }
}
