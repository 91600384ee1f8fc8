//! `packwell coupon void CODE`: voids an issued coupon in the store the configuration names.
//! The `coupon.voided` message (a version above every earlier one of the code) goes in the
//! outbox in the same transaction, so the running service's relay sends it to `coupons`.

use super::{CliResult, Common, Failure, load_config};
use crate::store::VoidOutcome;

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
    }
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
