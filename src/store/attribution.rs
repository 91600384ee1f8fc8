//! What the effect report reads from the store (docs/REFERENCE.md §4 `report`): aggregates per
//! rule or follow-up and arm, summed in the database so that a store of a million customers sends
//! back a few hundred rows. The statistics are computed from them in `report`, a pure function.
//!
//! A customer counts once per rule or follow-up, at their first exposure ever, if that was
//! on or after `since`: a decision in which the rule gave (`treated`) or was held out
//! (`held_out`); for a follow-up, its e-mail job (held out when skipped with reason
//! `holdout`, treated otherwise, whatever the checks at send time made of it: intention to
//! treat, so that both groups are chosen alike). A customer found in both arms (the holdout
//! share changed) is counted as `mixed`, in neither group; a shadow rule's customers are
//! counted apart. Outcomes are read in the window after that first exposure: orders not
//! cancelled and their value kept (less returns), NPS answers, and what the rule gave them
//! (or would have) within it, so that costs and extra orders describe the same customers
//! over the same days.

/// Which exposures and windows to read. Times are Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributionQuery {
    /// Customers whose first exposure ever was at or after this time (None: all).
    pub since: Option<i64>,
    /// First exposures up to this time have a full window of outcomes behind them; later
    /// ones are counted as still in their window.
    pub until: i64,
    /// The window's length.
    pub window: i64,
}

/// "rule" (the exposures table) or "followup" (e-mail jobs).
pub type SourceKind = String;

/// Customers of one rule or follow-up and arm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupRow {
    pub kind: SourceKind,
    pub source_id: String,
    /// `treated`, `held_out`, `shadow` or `mixed`.
    pub arm: String,
    /// First exposures in the period, with or without a full window.
    pub customers: i64,
    /// Those with a full window behind them: the cohort compared.
    pub matured: i64,
    /// Of the cohort, those who ordered again within the window.
    pub repeaters: i64,
    /// Of the cohort, the sum of seconds from their first order to the exposure.
    pub tenure_secs: i64,
}

/// Later orders of a cohort in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevenueRow {
    pub kind: SourceKind,
    pub source_id: String,
    pub arm: String,
    pub currency: String,
    pub orders: i64,
    /// Their value kept, in 1/10000 units.
    pub units: i64,
}

/// NPS answers of a cohort within the window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NpsRow {
    pub kind: SourceKind,
    pub source_id: String,
    pub arm: String,
    pub answers: i64,
    pub sum: i64,
    pub promoters: i64,
    pub detractors: i64,
}

/// What a rule gave the cohort within their windows (or would have given the held-out
/// customers, or a shadow rule would have), in 1/10000 units.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CostRow {
    /// `rule`, or `followup` for the coupons of a follow-up variant's e-mails.
    pub kind: SourceKind,
    pub source_id: String,
    pub arm: String,
    pub currency: String,
    pub units: i64,
}

/// Coupons issued to the treated cohort within their windows, by face value and state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CouponRow {
    pub kind: SourceKind,
    pub source_id: String,
    pub currency: String,
    /// The face value as stored (decimal text).
    pub amount: String,
    /// `issued`, `redeemed` or `voided`.
    pub state: String,
    pub count: i64,
}

/// Coupons of a rule or follow-up redeemed on one day (Unix day number), since the start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedemptionRow {
    pub source_id: String,
    pub day: i64,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttributionData {
    pub groups: Vec<GroupRow>,
    pub revenue: Vec<RevenueRow>,
    pub nps: Vec<NpsRow>,
    pub costs: Vec<CostRow>,
    pub coupons: Vec<CouponRow>,
    pub redemptions: Vec<RedemptionRow>,
}

/// Every exposure to a rule: `(source_id, customer_id, order_id, at, arm)`.
const RULE_EXPOSURES: &str = "SELECT source_id, customer_id, order_id, at, arm FROM exposures";

/// Every exposure to a follow-up: its e-mail jobs, at the time each was first due, held out
/// when skipped with reason `holdout`, treated otherwise (`treated:<variant>` and
/// `held_out:<variant>` for a follow-up with variants, as `crate::engine::arm_label` names
/// them).
const FOLLOWUP_EXPOSURES: &str = "SELECT followup_id AS source_id, customer_id, order_id, first_due_at AS at, \
    CASE WHEN reason = 'holdout' THEN 'held_out' ELSE 'treated' END \
    || CASE WHEN variant IS NULL THEN '' ELSE ':' || variant END AS arm FROM email_jobs";

/// The head of every cohort statement (one kind's figures). `g`: the customers first exposed
/// since `$1` (from `first_exposures`, kept as exposures are written: a customer's first
/// exposure ever, so that `--since` never makes an old customer new), one row per live or
/// shadow cohort member. `w`: the exposures (`E`, one of the two above) of each cohort member
/// within their window, in the member's arm, found once (rules read it twice).
///
/// Rows `(part, kind, source, arm, currency, amount, a, b, c, d)`:
/// - `group`: customers, of them those whose window is over by `$2` (the cohort), the cohort's
///   repeaters, and its seconds from first order to exposure, summed;
/// - `revenue` (per currency): the cohort's later orders and their value kept;
/// - `nps`: answers within the window, their sum, promoters, detractors;
/// - `coupon` (the arm column holds the state; per currency and face value): coupons of the
///   treated cohort's exposures within the window;
/// - `cost` (rules only, [`RULE_COSTS`]): what its exposures within the window gave, or
///   would have given, per arm and currency.
///
/// `$1` since, `$2` until (the cohort's last exposure time), `$3` the window in seconds.
const COHORT_WITH: &str = "\
    WITH g AS (SELECT source_id, customer_id, at, arm, customer_since FROM first_exposures \
        WHERE kind = 'KIND' AND at >= $1), \
    w AS MATERIALIZED (SELECT g.source_id, g.arm, e.order_id FROM g JOIN (E) e ON e.source_id = g.source_id \
        AND e.customer_id = g.customer_id AND e.at >= g.at AND e.at <= g.at + $3 AND e.arm = g.arm \
        WHERE g.at <= $2) ";

/// The `group`, `revenue` and `nps` rows.
const OUTCOMES: &str = "\
    SELECT 'group', 'KIND', source_id, arm, '', '', COUNT(*), \
        SUM(CASE WHEN at <= $2 THEN 1 ELSE 0 END), \
        SUM(CASE WHEN at <= $2 AND EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = g.customer_id \
            AND o.placed_at > g.at AND o.placed_at <= g.at + $3 AND NOT o.cancelled) THEN 1 ELSE 0 END), \
        SUM(CASE WHEN at <= $2 THEN at - COALESCE(customer_since, at) ELSE 0 END) \
    FROM g GROUP BY source_id, arm \
    UNION ALL \
    SELECT 'revenue', 'KIND', g.source_id, g.arm, o.currency, '', COUNT(*), SUM(o.net_units), CAST(0 AS BIGINT), CAST(0 AS BIGINT) \
    FROM g JOIN orders o ON o.customer_id = g.customer_id AND o.placed_at > g.at AND o.placed_at <= g.at + $3 \
        AND NOT o.cancelled \
    WHERE g.at <= $2 GROUP BY g.source_id, g.arm, o.currency \
    UNION ALL \
    SELECT 'nps', 'KIND', g.source_id, g.arm, '', '', COUNT(*), SUM(b.nps), \
        SUM(CASE WHEN b.nps >= 9 THEN 1 ELSE 0 END), SUM(CASE WHEN b.nps <= 6 THEN 1 ELSE 0 END) \
    FROM g JOIN feedback b ON b.customer_id = g.customer_id AND b.at > g.at AND b.at <= g.at + $3 \
    WHERE g.at <= $2 GROUP BY g.source_id, g.arm";

/// The `coupon` rows (the arm column holds the coupon's state).
const COUPONS: &str = "\
    SELECT 'coupon', 'KIND', w.source_id, c.state, c.currency, c.amount, COUNT(*), CAST(0 AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS BIGINT) \
    FROM w JOIN coupons c ON c.order_id = w.order_id AND c.source_id = w.source_id \
    WHERE (w.arm = 'treated' OR w.arm LIKE 'treated:%') GROUP BY w.source_id, c.state, c.currency, c.amount";

/// The `cost` rows: only rules record costs as they decide.
const RULE_COSTS: &str = "\
    SELECT 'cost', 'KIND', w.source_id, w.arm, c.currency, '', SUM(c.units), CAST(0 AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS BIGINT) \
    FROM w JOIN exposure_costs c ON c.source_id = w.source_id AND c.order_id = w.order_id \
    GROUP BY w.source_id, w.arm, c.currency";

/// The `variant_coupon` rows (follow-ups only; a rule's variants have `cost` rows): the coupons
/// each variant's e-mails gave within the window, not voided, by face value, so that what a
/// variant cost is summed exactly as [`CostRow`]s.
const FOLLOWUP_VARIANT_COUPONS: &str = "\
    SELECT 'variant_coupon', 'KIND', w.source_id, w.arm, c.currency, c.amount, COUNT(*), CAST(0 AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS BIGINT) \
    FROM w JOIN coupons c ON c.order_id = w.order_id AND c.source_id = w.source_id \
    WHERE w.arm LIKE 'treated:%' AND c.state <> 'voided' GROUP BY w.source_id, w.arm, c.currency, c.amount";

/// Redemptions per source and day, of coupons issued since `$1`: the report's timeline, with
/// the recent ones whose windows are not over.
pub(crate) const REDEMPTIONS_SQL: &str = "\
    SELECT c.source_id, o.placed_at / 86400, COUNT(*) FROM coupons c JOIN orders o ON o.order_id = c.redeemed_order_id \
    WHERE c.redeemed_order_id IS NOT NULL AND c.issued_at >= $1 \
    GROUP BY c.source_id, o.placed_at / 86400";

/// The cohort statements. Side by side (`split`), four of about equal length (4 to 6 s each
/// on 1M customers on PostgreSQL), so that the cores share them evenly: the outcomes of rules
/// and of follow-ups, and what each gave. One after the other, two: each kind's cohort is then
/// found once.
pub(crate) fn cohort_statements(split: bool) -> Vec<String> {
    let statement = |kind: &str, exposures: &str, parts: &[&str]| {
        let sql = format!("{COHORT_WITH} {}", parts.join(" UNION ALL "))
            .replace("(E)", &format!("({exposures})"))
            .replace("'KIND'", &format!("'{kind}'"));
        sum_as_bigint(&sql)
    };
    if split {
        vec![
            statement("rule", RULE_EXPOSURES, &[COUPONS, RULE_COSTS]),
            statement("rule", RULE_EXPOSURES, &[OUTCOMES]),
            statement("followup", FOLLOWUP_EXPOSURES, &[OUTCOMES]),
            statement(
                "followup",
                FOLLOWUP_EXPOSURES,
                &[COUPONS, FOLLOWUP_VARIANT_COUPONS],
            ),
        ]
    } else {
        vec![
            statement("rule", RULE_EXPOSURES, &[OUTCOMES, COUPONS, RULE_COSTS]),
            statement(
                "followup",
                FOLLOWUP_EXPOSURES,
                &[OUTCOMES, COUPONS, FOLLOWUP_VARIANT_COUPONS],
            ),
        ]
    }
}

/// PostgreSQL sums BIGINT into NUMERIC: every `SUM(…)` is read back as a BIGINT.
fn sum_as_bigint(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 256);
    let mut rest = sql;
    while let Some(start) = rest.find("SUM(") {
        out.push_str(&rest[..start]);
        let mut depth = 0;
        let mut end = start;
        for (i, ch) in rest[start..].char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = start + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push_str("CAST(");
        out.push_str(&rest[start..end]);
        out.push_str(" AS BIGINT)");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// One row of the cohort statements, sorted into `data`.
pub(crate) fn add_cohort_row(
    data: &mut AttributionData,
    part: &str,
    (kind, source_id, arm): (String, String, String),
    (currency, amount): (String, String),
    [a, b, c, d]: [i64; 4],
) {
    match part {
        "group" => data.groups.push(GroupRow {
            kind,
            source_id,
            arm,
            customers: a,
            matured: b,
            repeaters: c,
            tenure_secs: d,
        }),
        "revenue" => data.revenue.push(RevenueRow {
            kind,
            source_id,
            arm,
            currency,
            orders: a,
            units: b,
        }),
        "nps" => data.nps.push(NpsRow {
            kind,
            source_id,
            arm,
            answers: a,
            sum: b,
            promoters: c,
            detractors: d,
        }),
        "cost" => data.costs.push(CostRow {
            kind,
            source_id,
            arm,
            currency,
            units: a,
        }),
        // Face value times count, in 1/10000 units; an amount that does not parse (never
        // written so) counts nothing rather than failing the report.
        "variant_coupon" => data.costs.push(CostRow {
            kind,
            source_id,
            arm,
            currency,
            units: amount
                .parse::<rust_decimal::Decimal>()
                .map(|d| crate::money::to_units(d).saturating_mul(a))
                .unwrap_or(0),
        }),
        // The arm column holds the coupon's state.
        _ => data.coupons.push(CouponRow {
            kind,
            source_id,
            currency,
            amount,
            state: arm,
            count: a,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_read_as_bigint_also_nested() {
        assert_eq!(
            sum_as_bigint("SELECT SUM(CASE WHEN (a) THEN 1 END), SUM(b) FROM t"),
            "SELECT CAST(SUM(CASE WHEN (a) THEN 1 END) AS BIGINT), CAST(SUM(b) AS BIGINT) FROM t"
        );
        let [gifts, outcomes, followup_outcomes, followup_gifts]: [String; 4] =
            cohort_statements(true).try_into().expect("four statements");
        for followups in [&followup_outcomes, &followup_gifts] {
            assert!(followups.contains("FROM email_jobs") && !followups.contains("'cost'"));
            assert!(followups.contains("kind = 'followup'"));
        }
        assert!(followup_gifts.contains("'coupon'") && followup_outcomes.contains("'group'"));
        for rules in [&outcomes, &gifts] {
            assert!(rules.contains("FROM exposures") && rules.contains("kind = 'rule'"));
            assert!(!rules.contains("KIND") && !rules.contains("(E)"));
        }
        assert!(gifts.contains("'cost'") && !outcomes.contains("'cost'"));
        let [rules, followups]: [String; 2] =
            cohort_statements(false).try_into().expect("two statements");
        assert!(
            rules.contains("'group'") && rules.contains("'coupon'") && rules.contains("'cost'")
        );
        assert!(followups.contains("'group'") && followups.contains("'coupon'"));
    }
}
