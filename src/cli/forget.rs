//! `packwell forget --customer ID`: erases a customer's personal data from the store (the
//! profile's e-mail address, names, locale and birthday; names in stored notes; outbox copies),
//! keeping the anonymous counts.

use super::{CliResult, Common, Failure};
use crate::store::{self, ForgetReport};

pub fn run(common: &Common, customer: &str) -> CliResult {
    let customer = customer.trim();
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
    print!("{}", text_report(customer, &report));
    Ok(())
}

pub fn text_report(customer: &str, r: &ForgetReport) -> String {
    if *r == ForgetReport::default() {
        return format!("nothing stored for customer {customer}\n");
    }
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "erased the personal data of customer {customer}: {} (e-mail address, names, locale, birthday), \
         {} (names in notes), {} (copies of messages about them); anonymous counts kept\n",
        plural(r.profiles, "profile", "profiles"),
        plural(r.decisions, "decision", "decisions"),
        plural(r.outbox_rows, "outbox row", "outbox rows"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_customer_is_nothing_stored() {
        assert_eq!(
            text_report("C-1", &ForgetReport::default()),
            "nothing stored for customer C-1\n"
        );
        let r = ForgetReport {
            profiles: 1,
            decisions: 2,
            outbox_rows: 1,
        };
        let text = text_report("C-1", &r);
        assert!(
            text.contains("1 profile")
                && text.contains("2 decisions")
                && text.contains("1 outbox row"),
            "{text}"
        );
    }
}
