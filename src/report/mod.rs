//! The effect report (CONTRACT §4 `report`): does a rule or a follow-up bring customers back?
//! Each compares the customers it treated with its deterministic holdout, who were chosen
//! alike and got nothing from it, by how many ordered again within a window.
//!
//! The store sums what it holds into a few hundred rows ([`crate::store::attribution`]);
//! [`compute`] turns them into figures, a pure function; [`text`] and [`html`] show them.
//! Rates and intervals are statistics (floats); money stays exact decimals end to end.

mod cache;
pub mod html;
pub mod stats;
pub mod text;

pub use cache::{REPORT_TTL, ReportCache};

use crate::money::format_amount;
use crate::rules::{Mode, RuleSet};
use crate::store::attribution::AttributionData;
use crate::store::{AttributionQuery, Store, StoreError};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            since: None,
            window_days: DEFAULT_WINDOW_DAYS,
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
    /// What was given to the treated (CONTRACT §2: coupons at face value, items at unit cost).
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
fn sources(data: &AttributionData, rules: Option<&RuleSet>) -> Vec<(String, String, String)> {
    let mode = |m: Mode| match m {
        Mode::Live => "live",
        Mode::Shadow => "shadow",
        Mode::Off => "off",
    };
    let mut out: Vec<(String, String, String)> = Vec::new();
    if let Some(r) = rules {
        for rule in &r.rules {
            out.push((rule.id.clone(), "rule".into(), mode(rule.mode).into()));
        }
        for f in &r.followups {
            out.push((f.id.clone(), "followup".into(), mode(f.mode).into()));
        }
    }
    let known = |out: &Vec<(String, String, String)>, id: &str| out.iter().any(|(i, _, _)| i == id);
    let mut extra: BTreeMap<String, String> = BTreeMap::new();
    for g in &data.groups {
        extra.entry(g.source_id.clone()).or_insert(g.kind.clone());
    }
    for c in &data.costs {
        extra.entry(c.source_id.clone()).or_insert("rule".into());
    }
    for (id, kind) in extra {
        if !known(&out, &id) {
            let mode = if rules.is_some() { "removed" } else { "live" };
            out.push((id, kind, mode.into()));
        }
    }
    out
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
    for (id, kind, mode) in sources(data, rules) {
        effects.push(effect(data, &id, &kind, &mode, options.since));
    }
    Report {
        schema_version: SCHEMA_VERSION,
        window_days: options.window_days,
        since: options.since.map(|d| d.format("%Y-%m-%d").to_string()),
        as_of: as_of.and_then(time),
        cohort_until: as_of.and_then(|a| time(a - window)),
        rules: effects,
    }
}

/// One group's counts, read from the aggregates.
#[derive(Debug, Default, Clone, Copy)]
struct Group {
    customers: u64,
    matured: u64,
    repeaters: u64,
    tenure_secs: i64,
    orders: u64,
}

fn effect(
    data: &AttributionData,
    id: &str,
    kind: &str,
    mode: &str,
    since: Option<NaiveDate>,
) -> RuleEffect {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
    for g in data
        .groups
        .iter()
        .filter(|g| g.source_id == id && g.kind == kind)
    {
        // Sums of stored counts saturate rather than wrap or panic; with the bounds events
        // are checked against at the edge, no real history comes near them.
        let e = groups.entry(g.arm.as_str()).or_default();
        e.customers = e.customers.saturating_add(count(g.customers));
        e.matured = e.matured.saturating_add(count(g.matured));
        e.repeaters = e.repeaters.saturating_add(count(g.repeaters));
        e.tenure_secs = e.tenure_secs.saturating_add(g.tenure_secs);
    }
    let mut revenue: BTreeMap<&str, BTreeMap<String, Decimal>> = BTreeMap::new();
    for r in data
        .revenue
        .iter()
        .filter(|r| r.source_id == id && r.kind == kind)
    {
        let g = groups.entry(r.arm.as_str()).or_default();
        g.orders = g.orders.saturating_add(count(r.orders));
        let total = revenue
            .entry(r.arm.as_str())
            .or_default()
            .entry(r.currency.clone())
            .or_default();
        *total = total.saturating_add(units(r.units));
    }
    let t = groups.get("treated").copied().unwrap_or_default();
    let h = groups.get("held_out").copied().unwrap_or_default();
    let s = groups.get("shadow").copied().unwrap_or_default();
    let mixed = groups.get("mixed").copied().unwrap_or_default();
    let in_window = groups.values().fold(0u64, |n, g| {
        n.saturating_add(g.customers.saturating_sub(g.matured))
    });

    let rate = |g: Group| (g.matured > 0).then(|| g.repeaters as f64 / g.matured as f64);
    let uplift =
        stats::newcombe_difference(t.repeaters, t.matured, h.repeaters, h.matured, stats::Z95).map(
            |d| Uplift {
                absolute: d.absolute,
                low: d.low,
                high: d.high,
                method: stats::NEWCOMBE_METHOD.to_string(),
            },
        );
    let relative_uplift =
        stats::relative_uplift(t.repeaters, t.matured, h.repeaters, h.matured, stats::Z95).map(
            |r| RelativeUplift {
                value: r.value,
                low: r.low,
                high: r.high,
                method: stats::KATZ_METHOD.to_string(),
            },
        );

    // Money per currency, exact: revenue per customer, and the treated group's revenue beyond
    // the held-out group's per-customer revenue.
    let per_customer = |arm: &str, n: u64| -> Amounts {
        if n == 0 {
            return Amounts::new();
        }
        money(
            revenue
                .get(arm)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|(c, a)| (c, a / Decimal::from(n)))
                .collect(),
        )
    };
    let both = t.matured > 0 && h.matured > 0;
    let mut extra_revenue = BTreeMap::new();
    if both {
        let empty = BTreeMap::new();
        let (rt, rh) = (
            revenue.get("treated").unwrap_or(&empty),
            revenue.get("held_out").unwrap_or(&empty),
        );
        for c in rt.keys().chain(rh.keys()) {
            let treated = rt.get(c).copied().unwrap_or_default();
            let held = rh.get(c).copied().unwrap_or_default();
            let scaled = held
                .saturating_mul(Decimal::from(t.matured))
                .checked_div(Decimal::from(h.matured))
                .unwrap_or(Decimal::MAX);
            extra_revenue.insert(c.clone(), treated.saturating_sub(scaled));
        }
    }
    // Extra orders = o_t - o_h * n_t / n_h, kept as the fraction (o_t n_h - o_h n_t) / n_h
    // so that the cost per extra order is exact.
    let extra_numerator = (i128::from(t.orders) * i128::from(h.matured))
        .saturating_sub(i128::from(h.orders) * i128::from(t.matured));
    let extra_orders = both.then(|| extra_numerator as f64 / h.matured as f64);

    let mut cost: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut would_have: BTreeMap<String, Decimal> = BTreeMap::new();
    for c in data
        .costs
        .iter()
        .filter(|c| c.source_id == id && kind == "rule")
    {
        let target = match c.arm.as_str() {
            "treated" => &mut cost,
            "held_out" | "shadow" => &mut would_have,
            _ => continue,
        };
        let total = target.entry(c.currency.clone()).or_default();
        *total = total.saturating_add(units(c.units));
    }
    let (mut issued, mut redeemed) = (0u64, 0u64);
    let mut redeemed_value: BTreeMap<String, Decimal> = BTreeMap::new();
    for c in data
        .coupons
        .iter()
        .filter(|c| c.source_id == id && c.kind == kind && c.state != "voided")
    {
        // A voided coupon never reached the customer (the order was cancelled, it was not
        // packed, the e-mail never went): it is neither issued nor redeemable here.
        let n = count(c.count);
        issued = issued.saturating_add(n);
        let amount: Decimal = c.amount.parse().unwrap_or_default();
        let value = amount.saturating_mul(Decimal::from(n));
        if c.state == "redeemed" {
            redeemed = redeemed.saturating_add(n);
            let total = redeemed_value.entry(c.currency.clone()).or_default();
            *total = total.saturating_add(value);
        }
        // A follow-up's cost is the coupons its e-mails gave, issued as they went.
        if kind == "followup" {
            let total = cost.entry(c.currency.clone()).or_default();
            *total = total.saturating_add(value);
        }
    }
    let numerator = Decimal::try_from_i128_with_scale(extra_numerator, 0).ok();
    let cost_per_extra_order = (both && extra_numerator > 0 && !cost.is_empty())
        .then_some(numerator)
        .flatten()
        .map(|numerator| {
            money(
                cost.iter()
                    .map(|(c, a)| {
                        let per = a
                            .saturating_mul(Decimal::from(h.matured))
                            .checked_div(numerator)
                            .unwrap_or(Decimal::MAX);
                        (c.clone(), per)
                    })
                    .collect(),
            )
        });

    let nps = |arm: &str| {
        let rows: Vec<_> = data
            .nps
            .iter()
            .filter(|n| n.source_id == id && n.kind == kind && n.arm == arm)
            .collect();
        let answers: i64 = rows.iter().map(|n| n.answers).sum();
        (answers > 0).then(|| {
            let sum: i64 = rows.iter().map(|n| n.sum).sum();
            let net: i64 = rows.iter().map(|n| n.promoters - n.detractors).sum();
            Nps {
                answers: count(answers),
                mean: sum as f64 / answers as f64,
                score: 100.0 * net as f64 / answers as f64,
            }
        })
    };
    let tenure =
        |g: Group| (g.matured > 0).then(|| g.tenure_secs as f64 / 86_400.0 / g.matured as f64);

    let warning = warning(mode, t, h, mixed.customers);
    RuleEffect {
        id: id.to_string(),
        kind: kind.to_string(),
        mode: mode.to_string(),
        treated: t.matured,
        held_out: h.matured,
        shadow: s.matured,
        in_window,
        mixed: mixed.customers,
        repeat_rate: PerGroup {
            treated: rate(t),
            held_out: rate(h),
        },
        uplift,
        relative_uplift,
        later_orders: PerGroup {
            treated: t.orders,
            held_out: h.orders,
        },
        revenue_per_customer: PerGroup {
            treated: per_customer("treated", t.matured),
            held_out: per_customer("held_out", h.matured),
        },
        extra_revenue: money(extra_revenue),
        extra_orders,
        cost: money(cost),
        would_have_cost: money(would_have),
        cost_per_extra_order,
        coupons_issued: issued,
        redeemed,
        redemption_rate: (issued > 0).then(|| redeemed as f64 / issued as f64),
        redeemed_face_value: money(redeemed_value),
        nps: PerGroup {
            treated: nps("treated"),
            held_out: nps("held_out"),
        },
        relationship_days: PerGroup {
            treated: tenure(t),
            held_out: tenure(h),
        },
        redemptions_by_week: weeks(data, id, since),
        warning,
    }
}

/// Why the figures cannot tell much, if they cannot.
fn warning(mode: &str, t: Group, h: Group, mixed: u64) -> Option<String> {
    let mut notes: Vec<String> = Vec::new();
    if mode == "shadow" {
        notes.push("a shadow rule gives nothing: it shows what it would have given".into());
    } else if t.matured == 0 && h.matured == 0 {
        if t.customers + h.customers > 0 {
            notes.push(
                "no customer's window is over yet: come back later or use a shorter --window"
                    .into(),
            );
        }
    } else if h.matured == 0 {
        notes.push(
            "nobody was held out: give it a holdout (e.g. holdout = \"10%\") to measure its effect"
                .into(),
        );
    } else if t.matured < MIN_GROUP || h.matured < MIN_GROUP {
        notes.push(format!(
            "too few customers to tell: {} treated and {} held out (at least {MIN_GROUP} in each group are needed)",
            t.matured, h.matured
        ));
    }
    if mixed > 0 {
        notes.push(format!(
            "{mixed} customers were in both groups (its holdout changed) and are left out"
        ));
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// Redemptions per ISO week (starting Monday, UTC), with the weeks between filled with 0.
fn weeks(data: &AttributionData, id: &str, since: Option<NaiveDate>) -> Vec<WeekCount> {
    let mut by_week: BTreeMap<NaiveDate, u64> = BTreeMap::new();
    for r in data.redemptions.iter().filter(|r| r.source_id == id) {
        let Some(day) = DateTime::<Utc>::from_timestamp(r.day * 86_400, 0).map(|d| d.date_naive())
        else {
            continue;
        };
        if since.is_some_and(|s| day < s) {
            continue;
        }
        let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
        *by_week.entry(monday).or_default() += u64::try_from(r.count).unwrap_or(0);
    }
    let (Some(first), Some(last)) = (
        by_week.keys().next().copied(),
        by_week.keys().next_back().copied(),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut w = first;
    while w <= last {
        out.push(WeekCount {
            week: w.format("%Y-%m-%d").to_string(),
            redeemed: by_week.get(&w).copied().unwrap_or(0),
        });
        w += Duration::days(7);
    }
    out
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
