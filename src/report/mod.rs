//! The effect report (docs/REFERENCE.md §4 `report`): does a rule or a follow-up bring customers
//! back? Each compares the customers it treated with its deterministic holdout, who were chosen
//! alike and got nothing from it, by how many ordered again within a window.
//!
//! The store sums what it holds into a few hundred rows ([`crate::store::attribution`]);
//! [`compute`] turns them into figures, a pure function; [`text`] and [`html`] show them.
//! Rates and intervals are statistics (floats); money stays exact decimals end to end.

mod cache;
mod effect;
pub mod html;
pub mod power;
pub mod stats;
pub mod text;
mod variants;

pub use cache::{REPORT_TTL, ReportCache};

use crate::money::format_amount;
use crate::rules::{Mode, RuleSet};
use crate::store::attribution::AttributionData;
use crate::store::{AttributionQuery, Store, StoreError};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use effect::effect;

/// The report's JSON `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;
/// The default window: outcomes within 90 days of the exposure.
pub const DEFAULT_WINDOW_DAYS: u32 = 90;
/// Fewer customers than this in either group and the report says it cannot tell.
pub const MIN_GROUP: u64 = 100;

/// What to report on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReportOptions {
    /// Exposures on or after this date (UTC); None: all the store holds.
    pub since: Option<NaiveDate>,
    pub window_days: u32,
    /// The absolute uplift `needed_per_group` is computed for (`--target-uplift`), in basis
    /// points of repeat rate (300: +3 points), so that the options stay a cache key.
    pub target_uplift_bp: u16,
}

/// The default of `--target-uplift`: 3 points of repeat rate.
pub const DEFAULT_TARGET_UPLIFT_BP: u16 = 300;

/// `--target-uplift`: an absolute uplift as a share (`0.03`) or in points (`3%`), above 0 and
/// below 1, in whole basis points.
pub fn parse_target_uplift(text: &str) -> Result<u16, String> {
    let t = text.trim();
    let bad = || format!("{text:?}: expected an uplift such as 0.03 or 3% (above 0, below 1)");
    let share = match t.strip_suffix('%') {
        Some(points) => points.trim().parse::<Decimal>().map_err(|_| bad())? / Decimal::ONE_HUNDRED,
        None => t.parse::<Decimal>().map_err(|_| bad())?,
    };
    let bp = share * Decimal::from(10_000);
    if bp.fract() != Decimal::ZERO || bp <= Decimal::ZERO || bp >= Decimal::from(10_000) {
        return Err(bad());
    }
    u16::try_from(bp.mantissa() / 10i128.pow(bp.scale())).map_err(|_| bad())
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            since: None,
            window_days: DEFAULT_WINDOW_DAYS,
            target_uplift_bp: DEFAULT_TARGET_UPLIFT_BP,
        }
    }
}

/// What `--window` and `?window=` accept, for the OpenAPI document: whole days (1d to 999d)
/// or weeks (1w to 99w), without leading zeros.
pub const WINDOW_PATTERN: &str = "^([1-9][0-9]{0,2}d|[1-9][0-9]?w)$";

/// Parses `--window`: whole days (`90d`) or weeks (`12w`), as [`WINDOW_PATTERN`] says.
pub fn parse_window(s: &str) -> Result<u32, String> {
    let bad = || {
        format!(
            "bad window {s:?}: expected whole days or weeks, e.g. \"90d\" or \"12w\" (1d to 999d, 1w to 99w)"
        )
    };
    let (number, days_each, longest) = match (s.strip_suffix('d'), s.strip_suffix('w')) {
        (Some(n), _) => (n, 1, 3),
        (_, Some(n)) => (n, 7, 2),
        _ => return Err(bad()),
    };
    if number.is_empty()
        || number.len() > longest
        || number.starts_with('0')
        || !number.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    number
        .parse::<u32>()
        .map(|n| n * days_each)
        .map_err(|_| bad())
}

/// Parses `--since`: a date (`2026-01-31`).
pub fn parse_since(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("bad date {s:?}: expected YYYY-MM-DD, e.g. \"2026-01-31\""))
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, schemars::JsonSchema,
)]
pub struct Report {
    pub schema_version: u32,
    pub window_days: u32,
    /// The first day of exposures read (`--since`), or null: all.
    pub since: Option<String>,
    /// The newest decision in the store: the report's "now" (RFC 3339), null when empty.
    pub as_of: Option<String>,
    /// Exposures up to here have their whole window behind them and are compared; later ones
    /// are counted as `in_window`.
    pub cohort_until: Option<String>,
    /// The absolute uplift each rule's `needed_per_group` is for (`--target-uplift`).
    pub target_uplift: f64,
    pub rules: Vec<RuleEffect>,
}

/// A figure for each group.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema, schemars::JsonSchema,
)]
pub struct PerGroup<T> {
    pub treated: T,
    pub held_out: T,
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, schemars::JsonSchema,
)]
pub struct Uplift {
    /// Treated rate less held-out rate.
    pub absolute: f64,
    pub low: f64,
    pub high: f64,
    pub method: String,
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, schemars::JsonSchema,
)]
pub struct RelativeUplift {
    /// Treated rate over held-out rate, less 1.
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub method: String,
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, schemars::JsonSchema,
)]
pub struct Nps {
    pub answers: u64,
    /// Mean answer, 0-10.
    pub mean: f64,
    /// Promoters less detractors, in % of answers (-100..100).
    pub score: f64,
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, schemars::JsonSchema,
)]
pub struct WeekCount {
    /// The Monday the week starts (UTC).
    pub week: String,
    pub redeemed: u64,
}

/// Money per currency, decimal strings.
pub type Amounts = BTreeMap<String, String>;

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, schemars::JsonSchema,
)]
pub struct RuleEffect {
    pub id: String,
    /// `rule` or `followup`.
    pub kind: String,
    /// `live`, `shadow`, `off`, or `removed` (in the store, no longer in the rules).
    pub mode: String,
    /// Customers compared: first exposed in the period, their window behind them.
    pub treated: u64,
    pub held_out: u64,
    /// Customers a shadow rule would have given to.
    pub shadow: u64,
    /// Customers exposed too recently for their window to be over: not compared yet.
    pub in_window: u64,
    /// Customers found in both groups (the holdout share changed): left out.
    pub mixed: u64,
    /// Share of each group that ordered again within the window.
    pub repeat_rate: PerGroup<Option<f64>>,
    pub uplift: Option<Uplift>,
    pub relative_uplift: Option<RelativeUplift>,
    /// Orders placed within the window after the exposure, not cancelled.
    pub later_orders: PerGroup<u64>,
    /// Their value kept (less returns) per customer of the group, per currency.
    pub revenue_per_customer: PerGroup<Amounts>,
    /// What the treated bought beyond what they would have at the held-out group's rate.
    pub extra_revenue: Amounts,
    /// Later orders of the treated beyond the held-out group's rate.
    pub extra_orders: Option<f64>,
    /// What was given to the treated: coupons at face value, items at unit cost.
    pub cost: Amounts,
    /// What the held-out customers (or a shadow rule's) would have been given.
    pub would_have_cost: Amounts,
    pub cost_per_extra_order: Option<Amounts>,
    pub coupons_issued: u64,
    pub redeemed: u64,
    pub redemption_rate: Option<f64>,
    pub redeemed_face_value: Amounts,
    /// NPS answers within the window after the exposure.
    pub nps: PerGroup<Option<Nps>>,
    /// Mean days from a customer's first order to the exposure: the groups should be alike.
    pub relationship_days: PerGroup<Option<f64>>,
    /// Redemptions of its coupons per week, since the start of the report.
    pub redemptions_by_week: Vec<WeekCount>,
    pub warning: Option<String>,
    /// The observed split of treated and held-out customers against the configured holdout.
    pub sample_ratio: SampleRatio,
    /// The smallest absolute uplift the current counts detect (80 % power, two-sided 5 %);
    /// null when a group is empty.
    pub detectable_uplift: Option<f64>,
    /// Customers each group needs to detect the report's target uplift; null without a rate
    /// to start from.
    pub needed_per_group: Option<u64>,
    /// An experiment's variants, each against the holdout and against each other; empty for a
    /// rule without variants.
    pub variants: Vec<VariantEffect>,
    /// The configured variant whose interval against every other configured variant lies above
    /// zero; null when no variant is shown better than all the others (or there are none).
    pub best_variant: Option<String>,
}

/// One variant of an experiment: its treated customers against the holdout, and against each
/// other variant.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, schemars::JsonSchema,
)]
pub struct VariantEffect {
    pub id: String,
    /// Its share of the customers, as configured (0 for a variant removed from the rules).
    pub weight: u32,
    /// Customers compared, their window over: given this variant.
    pub treated: u64,
    /// Customers compared, their window over: held out, who would have had this variant.
    pub held_out: u64,
    /// Share of each group that ordered again within the window.
    pub repeat_rate: PerGroup<Option<f64>>,
    /// Against its held out; null without a holdout.
    pub uplift: Option<Uplift>,
    /// What it gave its customers compared.
    pub cost: Amounts,
    /// Against its held out; null without extra orders.
    pub cost_per_extra_order: Option<Amounts>,
    /// Against each other variant: this variant's rate less the other's.
    pub versus: Vec<VariantComparison>,
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, schemars::JsonSchema,
)]
pub struct VariantComparison {
    /// The other variant.
    pub variant: String,
    /// Null until both have a cohort.
    pub uplift: Option<Uplift>,
}

/// The sample-ratio check: Pearson's chi-square test of the observed split against the
/// configured one.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema, schemars::JsonSchema,
)]
pub struct SampleRatio {
    /// Null when there is nothing to test: no holdout, or not live, or nobody exposed.
    pub p_value: Option<f64>,
    /// Set when p < 0.001: the split is broken and no other figure of the rule can be trusted.
    pub warning: Option<String>,
}

/// The JSON Schema of the report (`schemas/report.schema.json`), from the types it is
/// serialized from.
pub fn report_schema_json() -> String {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<Report>();
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

/// Reads the store and computes the report. `rules` gives the order, the kinds and the modes;
/// rules and follow-ups the store knows and the rules no longer have come after, `removed`.
pub async fn build(
    store: &dyn Store,
    rules: Option<&RuleSet>,
    options: ReportOptions,
) -> Result<Report, StoreError> {
    let window = i64::from(options.window_days) * 86_400;
    let since = options.since.map(day_start);
    let as_of = store.newest_decision_at().await?;
    let data = match as_of {
        Some(as_of) => {
            store
                .attribution(&AttributionQuery {
                    since,
                    until: as_of - window,
                    window,
                })
                .await?
        }
        None => AttributionData::default(),
    };
    Ok(compute(&data, rules, options, as_of))
}

fn day_start(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
        .unwrap_or(0)
}

fn time(secs: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp(secs, 0).map(crate::engine::format_time)
}

/// The sources to report on, in order: the rules' rules, then follow-ups, then ids the data
/// has that the rules do not (removed since).
fn sources(data: &AttributionData, rules: Option<&RuleSet>) -> Vec<Source> {
    let mode = |m: Mode| match m {
        Mode::Live => "live",
        Mode::Shadow => "shadow",
        Mode::Off => "off",
    };
    let mut out: Vec<Source> = Vec::new();
    if let Some(r) = rules {
        for rule in &r.rules {
            out.push(
                Source::new(&rule.id, "rule", mode(rule.mode), Some(rule.holdout_bp))
                    .with_variants(&rule.variants),
            );
        }
        for f in &r.followups {
            out.push(
                Source::new(&f.id, "followup", mode(f.mode), Some(f.holdout_bp))
                    .with_variants(&f.variants),
            );
        }
    }
    let known = |out: &Vec<Source>, id: &str| out.iter().any(|s| s.id == id);
    let mut extra: BTreeMap<String, String> = BTreeMap::new();
    for g in &data.groups {
        extra.entry(g.source_id.clone()).or_insert(g.kind.clone());
    }
    for c in &data.costs {
        extra.entry(c.source_id.clone()).or_insert(c.kind.clone());
    }
    for (id, kind) in extra {
        if !known(&out, &id) {
            let mode = if rules.is_some() { "removed" } else { "live" };
            out.push(Source::new(&id, &kind, mode, None));
        }
    }
    out
}

/// A rule or follow-up to report on.
pub(super) struct Source {
    id: String,
    kind: String,
    mode: String,
    /// Its holdout share in basis points, as the rules configure it; None once removed.
    holdout_bp: Option<u16>,
    /// Its variants' ids and weights, as the rules configure them, in order.
    variants: Vec<(String, u32)>,
}

impl Source {
    fn new(id: &str, kind: &str, mode: &str, holdout_bp: Option<u16>) -> Source {
        Source {
            id: id.into(),
            kind: kind.into(),
            mode: mode.into(),
            holdout_bp,
            variants: Vec::new(),
        }
    }

    fn with_variants(mut self, variants: &[crate::rules::Variant]) -> Source {
        self.variants = variants.iter().map(|v| (v.id.clone(), v.weight)).collect();
        self
    }
}

fn units(u: i64) -> Decimal {
    Decimal::new(u, 4)
}

fn money(m: BTreeMap<String, Decimal>) -> Amounts {
    m.into_iter()
        .map(|(c, a)| (c, format_amount(a.round_dp(2))))
        .collect()
}

/// The report from the store's aggregates: pure, so every figure is testable by hand.
pub fn compute(
    data: &AttributionData,
    rules: Option<&RuleSet>,
    options: ReportOptions,
    as_of: Option<i64>,
) -> Report {
    let window = i64::from(options.window_days) * 86_400;
    let mut effects = Vec::new();
    for source in sources(data, rules) {
        effects.push(effect(data, &source, &options));
    }
    Report {
        schema_version: SCHEMA_VERSION,
        window_days: options.window_days,
        since: options.since.map(|d| d.format("%Y-%m-%d").to_string()),
        as_of: as_of.and_then(time),
        cohort_until: as_of.and_then(|a| time(a - window)),
        target_uplift: f64::from(options.target_uplift_bp) / 10_000.0,
        rules: effects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_whole_days_or_weeks() {
        assert_eq!(parse_window("90d"), Ok(90));
        assert_eq!(parse_window("12w"), Ok(84));
        assert_eq!(parse_window("999d"), Ok(999));
        assert_eq!(parse_window("99w"), Ok(693));
        for bad in [
            "0d", "090d", "1000d", "100w", "4h", "d", "ninety", "-1d", "1.5d", "",
        ] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_since("2026-01-31").map(|d| d.to_string()),
            Ok("2026-01-31".into())
        );
        assert!(parse_since("2026-13-01").is_err());
        assert_eq!(parse_target_uplift("0.03"), Ok(300));
        assert_eq!(parse_target_uplift("3%"), Ok(300));
        assert_eq!(parse_target_uplift("0.5%"), Ok(50));
        for bad in ["0", "1", "-0.01", "0.00001", "x", "150%", ""] {
            assert!(parse_target_uplift(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pattern_documented_is_the_one_parsed() {
        let pattern = regex::Regex::new(WINDOW_PATTERN).expect("a regex");
        for s in [
            "1d", "90d", "999d", "1000d", "0d", "7w", "99w", "100w", "05w", "x", "9d9", "12W",
        ] {
            assert_eq!(parse_window(s).is_ok(), pattern.is_match(s), "{s}");
        }
    }
}
