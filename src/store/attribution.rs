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

/// The first exposure of each customer to each rule and follow-up since `$1`: one row per
/// (kind, source, customer), each half read from an index that holds all it needs.
pub(crate) const FIRST_EXPOSURES: &str = "\
    SELECT 'rule' AS kind, source_id, customer_id, MIN(at) AS at, MIN(arm) AS arm_lo, MAX(arm) AS arm_hi \
    FROM exposures WHERE at >= $1 GROUP BY source_id, customer_id \
    UNION ALL \
    SELECT 'followup' AS kind, followup_id, customer_id, MIN(scheduled_for), \
        MIN(CASE WHEN reason = 'holdout' THEN 'held_out' ELSE 'treated' END), \
        MAX(CASE WHEN reason = 'holdout' THEN 'held_out' ELSE 'treated' END) \
    FROM email_jobs WHERE scheduled_for >= $1 GROUP BY followup_id, customer_id";

/// Per kind, source and arm: customers, the matured cohort, repeaters, tenure.
/// `$1` since, `$2` until, `$3` window.
pub(crate) const GROUPS_SQL: &str = "\
    WITH f AS (FIRST_EXPOSURES) \
    SELECT kind, source_id, CASE WHEN arm_lo = arm_hi THEN arm_lo ELSE 'mixed' END AS arm, \
        COUNT(*), \
        CAST(SUM(CASE WHEN at <= $2 THEN 1 ELSE 0 END) AS BIGINT), \
        CAST(SUM(CASE WHEN at <= $2 AND EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = f.customer_id \
            AND o.placed_at > f.at AND o.placed_at <= f.at + $3 AND NOT o.cancelled) THEN 1 ELSE 0 END) AS BIGINT), \
        CAST(SUM(CASE WHEN at <= $2 THEN f.at - COALESCE((SELECT MIN(o.placed_at) FROM orders o \
            WHERE o.customer_id = f.customer_id), f.at) ELSE 0 END) AS BIGINT) \
    FROM f GROUP BY kind, source_id, CASE WHEN arm_lo = arm_hi THEN arm_lo ELSE 'mixed' END";

/// Per kind, source, arm and currency: the cohort's later orders and their value kept.
pub(crate) const REVENUE_SQL: &str = "\
    WITH f AS (FIRST_EXPOSURES) \
    SELECT f.kind, f.source_id, CASE WHEN arm_lo = arm_hi THEN arm_lo ELSE 'mixed' END AS arm, o.currency, \
        COUNT(*), CAST(SUM(o.net_units) AS BIGINT) \
    FROM f JOIN orders o ON o.customer_id = f.customer_id AND o.placed_at > f.at AND o.placed_at <= f.at + $3 \
        AND NOT o.cancelled \
    WHERE f.at <= $2 \
    GROUP BY f.kind, f.source_id, CASE WHEN arm_lo = arm_hi THEN arm_lo ELSE 'mixed' END, o.currency";

/// Per kind, source and arm: the cohort's NPS answers within the window.
pub(crate) const NPS_SQL: &str = "\
    WITH f AS (FIRST_EXPOSURES) \
    SELECT f.kind, f.source_id, CASE WHEN arm_lo = arm_hi THEN arm_lo ELSE 'mixed' END AS arm, \
        COUNT(*), CAST(SUM(b.nps) AS BIGINT), CAST(SUM(CASE WHEN b.nps >= 9 THEN 1 ELSE 0 END) AS BIGINT), CAST(SUM(CASE WHEN b.nps <= 6 THEN 1 ELSE 0 END) AS BIGINT) \
    FROM f JOIN feedback b ON b.customer_id = f.customer_id AND b.at > f.at AND b.at <= f.at + $3 \
    WHERE f.at <= $2 \
    GROUP BY f.kind, f.source_id, CASE WHEN arm_lo = arm_hi THEN arm_lo ELSE 'mixed' END";

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

/// A query with the first-exposure CTE put in.
pub(crate) fn with_first(sql: &str) -> String {
    sql.replace("FIRST_EXPOSURES", FIRST_EXPOSURES)
}
