//! `packwell stock set INSERT [--warehouse WH] N`: sets what remains of an insert's stock, in
//! the store the configuration names, recorded in the operator log.
//!
//! Stock is an allocation (the insert's `stock` in the rules) and a counter of what was given
//! (`used`): remaining = allocation − used. Setting N remaining sets `used = allocation − N`,
//! against the allocation in the rules given with `--rules`. N may not exceed the allocation:
//! the service never gives more than the allocation, so a larger N could not take effect (a
//! negative `used` would be read as 0); to have more to give, raise `stock` in the rules.

use super::{CliResult, Common, Failure, RulesArgs, load_config, load_valid_rules};
use crate::rules::{InsertBody, RuleSet, Stock, StockSlot};
use crate::store::{StockChange, StockSetting};

#[derive(Debug, clap::Args)]
pub struct StockArgs {
    #[command(subcommand)]
    pub command: StockCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum StockCommand {
    /// Set how many of an insert remain to be given (in a warehouse, or its pool).
    ///
    /// Stock is an allocation, the insert's `stock` in the rules (read with --rules: use the
    /// rules the service runs), less what was given: setting N remaining counts
    /// `allocation - N` as given. N cannot be more than the allocation, since the service
    /// never gives more than that: to have more to give, raise `stock` in the rules (what was
    /// given stays counted). Written in one transaction with a row of the operator log.
    Set(SetArgs),
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub rules: RulesArgs,
    /// The insert id (an `[[insert]]` with `stock` in the rules).
    #[arg(value_name = "INSERT")]
    pub insert: String,
    /// The warehouse, for stock counted per warehouse (`stock = { WH-BER = 300, … }`);
    /// leave it out for one pool (`stock = 500`).
    #[arg(long, value_name = "WH")]
    pub warehouse: Option<String>,
    /// How many remain to be given, from 0 to the allocation.
    #[arg(value_name = "N")]
    pub remaining: u32,
}

pub fn run(args: &StockArgs) -> CliResult {
    match &args.command {
        StockCommand::Set(set) => run_set(set),
    }
}

fn run_set(args: &SetArgs) -> CliResult {
    let config = load_config(&args.common)?;
    let rules = load_valid_rules(&args.rules)?;
    let (setting, place) = setting_for(
        &rules,
        args.insert.trim(),
        args.warehouse.as_deref().map(str::trim),
        args.remaining,
    )?;
    let store = super::ExistingStore::open(&config)?;
    let changes = store.block_on(
        store
            .store()
            .set_stock(std::slice::from_ref(&setting), &super::actor()),
    )?;
    for change in &changes {
        println!("{}", describe(change, &place));
    }
    Ok(())
}

/// The counter an operator means, checked against the rules: the insert must exist and have
/// stock; a warehouse must be one it is stocked in (per-warehouse stock), and none may be
/// named for a pool. Returns the setting and how to name its place in messages.
pub fn setting_for(
    rules: &RuleSet,
    insert: &str,
    warehouse: Option<&str>,
    remaining: u32,
) -> Result<(StockSetting, String), Failure> {
    let Some(found) = rules.insert(insert) else {
        let stocked: Vec<&str> = rules
            .inserts
            .iter()
            .filter(|i| matches!(i.body, InsertBody::Item { stock: Some(_), .. }))
            .map(|i| i.id.as_str())
            .collect();
        let hint = match crate::suggest::closest(
            insert,
            rules.inserts.iter().map(|i| i.id.as_str()),
            crate::suggest::Likeness::SharedStart,
        ) {
            Some(s) => format!(", did you mean {s:?}?"),
            None if stocked.is_empty() => " (no insert in the rules has stock)".to_string(),
            None => format!(" (inserts with stock: {})", stocked.join(", ")),
        };
        return Err(Failure::usage(format!(
            "error: no insert {insert:?} in the rules{hint}"
        )));
    };
    let InsertBody::Item {
        stock: Some(stock), ..
    } = &found.body
    else {
        return Err(Failure::usage(format!(
            "error: insert {insert:?} has no stock in the rules (no `stock` on it): it is never out of stock, there is nothing to set"
        )));
    };
    let (slot, allocation, place) = match (stock, warehouse) {
        (Stock::Pool(n), None) => (
            StockSlot::Pool,
            *n,
            format!("{insert} (one pool for every warehouse)"),
        ),
        (Stock::Pool(n), Some(wh)) => {
            return Err(Failure::usage(format!(
                "error: --warehouse {wh}: the stock of {insert:?} is one pool of {n} for every warehouse; leave out --warehouse to set the pool"
            )));
        }
        (Stock::PerWarehouse(map), None) => {
            let names: Vec<&str> = map.keys().map(String::as_str).collect();
            return Err(Failure::usage(format!(
                "error: the stock of {insert:?} is counted per warehouse ({}): name one with --warehouse",
                names.join(", ")
            )));
        }
        (Stock::PerWarehouse(map), Some(wh)) => match map.get(wh) {
            Some(n) => (
                StockSlot::Warehouse(wh.to_string()),
                *n,
                format!("{insert} in {wh}"),
            ),
            None => {
                let names: Vec<&str> = map.keys().map(String::as_str).collect();
                return Err(Failure::usage(format!(
                    "error: --warehouse {wh}: {insert:?} has no stock in that warehouse (it is stocked in {}); add it to `stock` in the rules first",
                    names.join(", ")
                )));
            }
        },
    };
    if remaining > allocation {
        return Err(Failure::usage(format!(
            "error: {remaining} remaining is more than the allocation of {place}, {allocation} (its `stock` in the rules); \
             never more than the allocation is given, so raise `stock` in the rules to give more"
        )));
    }
    Ok((
        StockSetting {
            insert_id: insert.to_string(),
            slot: slot.as_str().to_string(),
            allocation: i64::from(allocation),
            remaining: i64::from(remaining),
        },
        place,
    ))
}

/// `stock of tea in WH-BER: 10 remaining (was 37); allocation 300, given 290`.
pub fn describe(c: &StockChange, place: &str) -> String {
    let before = c.allocation - c.used_before;
    let was = if before < 0 {
        format!("was 0, {} given over the allocation", -before)
    } else {
        format!("was {before}")
    };
    format!(
        "stock of {place}: {} remaining ({was}); allocation {}, counted as given {}",
        c.allocation - c.used_after,
        c.allocation,
        c.used_after
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RuleSet {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        std::fs::write(
            dir.path().join("rules/r.toml"),
            r#"
[[insert]]
id = "tea"
kind = "gift"
unit_cost = "0.40"
stock = 500
[[insert]]
id = "vial"
kind = "sample"
unit_cost = "1.10"
stock = { WH-BER = 300, WH-NYC = 200 }
[[insert]]
id = "box"
kind = "packaging"
unit_cost = "1.00"
"#,
        )
        .unwrap();
        let out =
            crate::rules::load_rules(&dir.path().join("rules"), &dir.path().join("templates"));
        out.rules.expect("valid rules")
    }

    fn err(r: Result<(StockSetting, String), Failure>) -> String {
        let f = r.expect_err("a failure");
        assert_eq!(f.code, 2, "{}", f.message);
        f.message
    }

    #[test]
    fn a_pool_and_a_warehouse_slot() {
        let rules = rules();
        let (s, place) = setting_for(&rules, "tea", None, 120).unwrap();
        assert_eq!(
            s,
            StockSetting {
                insert_id: "tea".into(),
                slot: "*".into(),
                allocation: 500,
                remaining: 120
            }
        );
        assert!(place.contains("one pool"), "{place}");
        let (s, place) = setting_for(&rules, "vial", Some("WH-NYC"), 0).unwrap();
        assert_eq!(
            (s.slot.as_str(), s.allocation, s.remaining),
            ("WH-NYC", 200, 0)
        );
        assert_eq!(place, "vial in WH-NYC");
    }

    #[test]
    fn unknown_inserts_and_warehouses_are_usage_errors() {
        let rules = rules();
        assert!(err(setting_for(&rules, "tee", None, 1)).contains("did you mean \"tea\""));
        assert!(err(setting_for(&rules, "zzz", None, 1)).contains("inserts with stock: tea, vial"));
        assert!(err(setting_for(&rules, "box", None, 1)).contains("has no stock"));
        assert!(err(setting_for(&rules, "vial", Some("WH-PAR"), 1)).contains("WH-BER, WH-NYC"));
        assert!(err(setting_for(&rules, "vial", None, 1)).contains("--warehouse"));
        assert!(err(setting_for(&rules, "tea", Some("WH-BER"), 1)).contains("one pool"));
        assert!(err(setting_for(&rules, "tea", None, 501)).contains("raise `stock`"));
        assert!(setting_for(&rules, "tea", None, 500).is_ok());
    }

    #[test]
    fn changes_are_described_with_what_was_left() {
        let c = StockChange {
            insert_id: "tea".into(),
            slot: "*".into(),
            allocation: 500,
            used_before: 463,
            used_after: 400,
        };
        assert_eq!(
            describe(&c, "tea"),
            "stock of tea: 100 remaining (was 37); allocation 500, counted as given 400"
        );
        let over = StockChange {
            used_before: 510,
            ..c
        };
        assert!(describe(&over, "tea").contains("was 0, 10 given over the allocation"));
    }
}
