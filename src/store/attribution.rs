//! What the effect report reads from the store (CONTRACT §4 `report`): aggregates per rule or
//! follow-up and arm, summed in the database so that a store of a million customers sends back
//! a few hundred rows. The statistics are computed from them in `report`, a pure function.
//!
//! A customer counts once per rule or follow-up, at their first exposure in the period: a
//! decision in which the rule gave (`treated`), was held out (`held_out`) or ran in shadow
//! (`shadow`); for a follow-up, its e-mail job (held out when skipped with reason `holdout`,
//! treated otherwise, whatever the checks at send time made of it: intention to treat, so
//! that both groups are chosen alike). A customer found in both arms (the holdout share
//! changed) is counted as `mixed`, in neither group. Outcomes are read in the window after
//! that exposure: orders not cancelled, their value kept (less returns), NPS answers.

/// Which exposures and windows to read. Times are Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributionQuery {
    /// Exposures at or after this time (None: all).
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

/// What rules gave (or would have given) in the cohort's period, in 1/10000 units.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CostRow {
    pub source_id: String,
    pub arm: String,
    pub currency: String,
    pub units: i64,
}

/// Coupons issued in the cohort's period, by rule or follow-up, face value and state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CouponRow {
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

/// The first exposure of each customer to each rule since `$1`: one row per (rule, customer),
/// read from an index that holds all it needs.
pub(crate) const FIRST_RULE_EXPOSURES: &str = "\
    SELECT 'rule' AS kind, source_id, customer_id, MIN(at) AS at, MIN(arm) AS arm_lo, MAX(arm) AS arm_hi \
    FROM exposures WHERE at >= $1 GROUP BY source_id, customer_id";

/// The same for follow-ups, from their e-mail jobs (held out: skipped with reason `holdout`).
pub(crate) const FIRST_FOLLOWUP_EXPOSURES: &str = "\
    SELECT 'followup' AS kind, followup_id AS source_id, customer_id, MIN(scheduled_for) AS at, \
        MIN(CASE WHEN reason = 'holdout' THEN 'held_out' ELSE 'treated' END) AS arm_lo, \
        MAX(CASE WHEN reason = 'holdout' THEN 'held_out' ELSE 'treated' END) AS arm_hi \
    FROM email_jobs WHERE scheduled_for >= $1 GROUP BY followup_id, customer_id";

/// The outcomes of first exposures (FIRST, one of the two above), in one statement so that
/// the first exposures are found once (a CTE read three times is materialized by both
/// databases). Rows `(part, kind, source, arm, currency, a, b, c, d)`:
/// - `group`: customers, of them those with their window over (the cohort), the cohort's
///   repeaters, and the sum of its seconds from first order to exposure;
/// - `revenue` (per currency): the cohort's later orders and their value kept;
/// - `nps`: answers in the window, their sum, promoters, detractors.
///
/// `$1` since, `$2` until (the cohort's last exposure time), `$3` the window in seconds.
pub(crate) const OUTCOMES_SQL: &str = "\
    WITH f AS (FIRST), \
    g AS (SELECT kind, source_id, customer_id, at, CASE WHEN arm_lo = arm_hi THEN arm_lo ELSE 'mixed' END AS arm FROM f) \
    SELECT 'group', kind, source_id, arm, '', COUNT(*), \
        CAST(SUM(CASE WHEN at <= $2 THEN 1 ELSE 0 END) AS BIGINT), \
        CAST(SUM(CASE WHEN at <= $2 AND EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = g.customer_id \
            AND o.placed_at > g.at AND o.placed_at <= g.at + $3 AND NOT o.cancelled) THEN 1 ELSE 0 END) AS BIGINT), \
        CAST(SUM(CASE WHEN at <= $2 THEN g.at - COALESCE((SELECT MIN(o.placed_at) FROM orders o \
            WHERE o.customer_id = g.customer_id), g.at) ELSE 0 END) AS BIGINT) \
    FROM g GROUP BY kind, source_id, arm \
    UNION ALL \
    SELECT 'revenue', g.kind, g.source_id, g.arm, o.currency, COUNT(*), CAST(SUM(o.net_units) AS BIGINT), 0, 0 \
    FROM g JOIN orders o ON o.customer_id = g.customer_id AND o.placed_at > g.at AND o.placed_at <= g.at + $3 \
        AND NOT o.cancelled \
    WHERE g.at <= $2 GROUP BY g.kind, g.source_id, g.arm, o.currency \
    UNION ALL \
    SELECT 'nps', g.kind, g.source_id, g.arm, '', COUNT(*), CAST(SUM(b.nps) AS BIGINT), \
        CAST(SUM(CASE WHEN b.nps >= 9 THEN 1 ELSE 0 END) AS BIGINT), CAST(SUM(CASE WHEN b.nps <= 6 THEN 1 ELSE 0 END) AS BIGINT) \
    FROM g JOIN feedback b ON b.customer_id = g.customer_id AND b.at > g.at AND b.at <= g.at + $3 \
    WHERE g.at <= $2 GROUP BY g.kind, g.source_id, g.arm";

/// What rules gave or would have given in the period `[$1, $2]`.
pub(crate) const COSTS_SQL: &str = "\
    SELECT source_id, arm, currency, CAST(SUM(units) AS BIGINT) FROM exposure_costs WHERE at >= $1 AND at <= $2 \
    GROUP BY source_id, arm, currency";

/// Coupons issued in the period `[$1, $2]`, by source, face value and state.
pub(crate) const COUPONS_SQL: &str = "\
    SELECT source_id, currency, amount, state, COUNT(*) FROM coupons WHERE issued_at >= $1 AND issued_at <= $2 \
    GROUP BY source_id, currency, amount, state";

/// Redemptions per source and day, of coupons issued since `$1`.
pub(crate) const REDEMPTIONS_SQL: &str = "\
    SELECT c.source_id, o.placed_at / 86400, COUNT(*) FROM coupons c JOIN orders o ON o.order_id = c.redeemed_order_id \
    WHERE c.redeemed_order_id IS NOT NULL AND c.issued_at >= $1 \
    GROUP BY c.source_id, o.placed_at / 86400";

/// The outcomes statement for rules and the one for follow-ups: run side by side.
pub(crate) fn outcome_statements() -> [String; 2] {
    [FIRST_RULE_EXPOSURES, FIRST_FOLLOWUP_EXPOSURES]
        .map(|first| OUTCOMES_SQL.replace("FIRST", first))
}

/// One row of [`OUTCOMES_SQL`], sorted into `data`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_outcome(
    data: &mut AttributionData,
    part: &str,
    kind: String,
    source_id: String,
    arm: String,
    currency: String,
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
        _ => data.nps.push(NpsRow {
            kind,
            source_id,
            arm,
            answers: a,
            sum: b,
            promoters: c,
            detractors: d,
        }),
    }
}
