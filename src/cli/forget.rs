//! `packwell forget --customer ID`: erases a customer's personal data, keeping the anonymous
//! counts: in the store (the profile's names, e-mail address, locale, birthday and time zone;
//! names in notes and order lines; rendered e-mails and the provider's answers; every outbox
//! message about them, sent or not, DLQ copies of their events included; their kept events),
//! with no readable copy left in the database's own files (SQLite's free space and WAL,
//! PostgreSQL's old row versions); and their e-mails in the outbox folder.

use super::{CliResult, Common, Failure};
use crate::store::{self, ForgetReport};

#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub common: Common,
    /// The customer id.
    #[arg(long, value_name = "ID")]
    pub customer: String,
}

pub fn run(args: &ForgetArgs) -> CliResult {
    let common = &args.common;
    let customer = args.customer.trim();
    if customer.is_empty() {
        return Err(Failure::usage("error: --customer: give a customer id"));
    }
    let config = super::load_config(common)?;
    let url = config.store_url();
    let shown = crate::config::mask_url_password(&url);
    // A SQLite store that does not exist holds nobody: say so rather than create it.
    if super::sqlite_file_missing(&url) {
        println!("nothing stored for customer {customer} (there is no store at {shown})");
        return Ok(());
    }
    let runtime = super::runtime()?;
    let report = runtime
        .block_on(async {
            let store = store::open(&url).await?;
            store.forget_customer(customer).await
        })
        .map_err(|e| Failure::usage(format!("error: the store {shown}: {e}")))?;
    // After the store's commit: a file removed before it could be written again by an e-mail
    // then still being sent. The keys stay in the store, so running forget again finds any
    // file this could not remove.
    let outbox = &config.email.outbox_dir;
    let files = crate::email::provider::erase_outbox_files(
        outbox,
        &report.email_keys,
        &report.address_hashes,
    )
    .map_err(|e| {
        Failure::finding(format!(
            "{}error: removing their e-mails from {}: {e}; fix that and run forget again",
            text_report(customer, &report, 0),
            outbox.display()
        ))
    })?;
    print!("{}", text_report(customer, &report, files));
    Ok(())
}

/// What was erased, by kind, on one line, and how the store made sure of it on a second.
pub fn text_report(customer: &str, r: &ForgetReport, files: u64) -> String {
    let kinds = [
        (r.profiles, "profile", "profiles"),
        (r.orders, "order", "orders"),
        (r.decisions, "decision", "decisions"),
        (r.email_jobs, "e-mail job", "e-mail jobs"),
        (files, "e-mail file", "e-mail files"),
        (r.outbox_rows, "outbox message", "outbox messages"),
        (r.events, "kept event", "kept events"),
    ];
    if kinds.iter().all(|(n, _, _)| *n == 0) {
        return format!("nothing stored for customer {customer}\n");
    }
    let erased: Vec<String> = kinds
        .iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| format!("{n} {}", if *n == 1 { one } else { many }))
        .collect();
    let mut text = format!(
        "erased the personal data of customer {customer}: {}; anonymous counts kept\n",
        erased.join(", ")
    );
    if let Some(cleanup) = &r.cleanup {
        text.push_str(&format!("  store: {cleanup}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_kind_or_nothing() {
        assert_eq!(
            text_report("C-1", &ForgetReport::default(), 0),
            "nothing stored for customer C-1\n"
        );
        let r = ForgetReport {
            profiles: 1,
            decisions: 2,
            email_jobs: 1,
            outbox_rows: 3,
            cleanup: Some("the WAL emptied".into()),
            ..ForgetReport::default()
        };
        let text = text_report("C-1", &r, 2);
        assert!(
            text.contains(
                "1 profile, 2 decisions, 1 e-mail job, 2 e-mail files, 3 outbox messages;"
            ) && !text.contains("order")
                && text.contains("store: the WAL emptied"),
            "{text}"
        );
        // A second forget finding only files left behind says so.
        let text = text_report("C-1", &ForgetReport::default(), 1);
        assert!(text.contains("1 e-mail file;"), "{text}");
    }
}
