//! The statistics of the effect report: how much more often the treated group buys again than
//! the holdout group, with the uncertainty of that comparison.
//!
//! Each group is a binomial count (x customers of n bought again), and the two groups are
//! independent. This module owns the arithmetic only: it takes counts and returns numbers,
//! with no I/O, no formatting and no opinion on what counts as a result.
//!
//! Methods, by name:
//! - [`wilson`]: the Wilson score interval for one proportion (Wilson 1927, "Probable
//!   inference, the law of succession, and statistical inference", JASA 22:209–212).
//! - [`newcombe_difference`]: the difference p1 − p2 with Newcombe's hybrid score interval
//!   (Newcombe 1998, "Interval estimation for the difference between independent proportions:
//!   comparison of eleven methods", Statistics in Medicine 17:873–890, method 10), built from
//!   the two Wilson intervals. Named in the report by [`NEWCOMBE_METHOD`].
//! - [`relative_uplift`]: p1 / p2 − 1 with the Katz log interval for the risk ratio (Katz,
//!   Baptista, Azen and Pike 1978, "Obtaining confidence intervals for the risk ratio in cohort
//!   studies", Biometrics 34:469–474). Named in the report by [`KATZ_METHOD`].
//!
//! Why not the textbook Wald interval (p ± z·√(p(1−p)/n))? Its coverage is erratic and often
//! far below nominal at small counts, it collapses to a zero-width interval at x = 0 or x = n
//! ("no holdout customer bought again, so the rate is exactly 0"), and it overshoots [0, 1].
//! Holdout groups are small by design, and rates of 0 happen, so those are the cases a report
//! meets. The score intervals behave there, and Newcombe's comparison found method 10 close to
//! nominal coverage while being a closed formula (no iteration, nothing that can fail to
//! converge).
//!
//! Every function returns `None` for counts that describe no data or impossible data
//! (n = 0, x > n) and for an unusable `z` (negative, NaN, or so large that z² overflows);
//! otherwise the result is finite. Nothing here panics.

/// The standard normal quantile for a two-sided 95 % interval (Φ⁻¹(0.975)).
pub const Z95: f64 = 1.959_963_984_540_054;

/// The name of the method behind [`newcombe_difference`], for the report.
pub const NEWCOMBE_METHOD: &str = "Newcombe hybrid score";

/// The name of the method behind [`relative_uplift`], for the report.
pub const KATZ_METHOD: &str = "Katz log risk ratio";

/// A confidence interval for one proportion, within [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// The difference p1 − p2 between two proportions and its interval, all within [−1, 1] and
/// `low <= absolute <= high`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    pub absolute: f64,
    pub low: f64,
    pub high: f64,
}

/// The relative uplift p1 / p2 − 1 and its interval, `-1 <= low <= value <= high`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relative {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// `z` must be a non-negative number whose square is finite, or the formulas below produce
/// NaN (∞/∞) instead of an interval.
fn usable_z(z: f64) -> bool {
    z >= 0.0 && (z * z).is_finite()
}

/// Wilson score interval for x successes out of n. None when n == 0 or x > n.
///
/// The interval is the set of p for which the score test does not reject, so it never leaves
/// [0, 1] and keeps a sensible width at x = 0 and x = n, where the Wald interval has width 0.
///
/// The bounds are the roots of (n + z²)p² − (2x + z²)p + x²/n = 0. The upper root is a sum
/// (no cancellation); the lower one is taken from the product of the roots, x² / (n(n + z²)),
/// instead of the difference centre − half-width, which loses digits when x is small against
/// n (a rare event in a large group). At x = 0 the lower bound is exactly 0, at x = n the upper
/// bound exactly 1.
pub fn wilson(x: u64, n: u64, z: f64) -> Option<Interval> {
    if n == 0 || x > n || !usable_z(z) {
        return None;
    }
    let (xf, nf) = (x as f64, n as f64);
    let z2 = z * z;
    let denominator = nf + z2;
    let high = if x == n {
        1.0
    } else {
        let centre = (xf + z2 / 2.0) / denominator;
        // x(n − x)/n ≥ 0 by construction; max(0) only guards the rounding of the sum.
        let spread = (xf * ((n - x) as f64) / nf + z2 / 4.0).max(0.0);
        let half = z / denominator * spread.sqrt();
        (centre + half).clamp(0.0, 1.0)
    };
    let low = if x == 0 {
        0.0
    } else {
        // high ≥ x/n > 0 here, so the division is safe.
        ((xf / nf) * (xf / (denominator * high))).clamp(0.0, high)
    };
    Some(Interval { low, high })
}

/// p1 - p2 (p1 = x1/n1 treated, p2 = x2/n2 held out) with its interval by Newcombe's hybrid
/// score method (Newcombe 1998, "Interval estimation for the difference between independent
/// proportions", method 10), built from Wilson intervals.
/// None when n1 == 0 or n2 == 0 (or x > n).
///
/// With (l1, u1) and (l2, u2) the Wilson intervals of the two groups:
/// L = p1 − p2 − √((p1 − l1)² + (u2 − p2)²), U = p1 − p2 + √((u1 − p1)² + (p2 − l2)²).
/// Each group contributes the distance from its estimate to its own score bound on the side
/// that moves the difference, so the interval inherits the Wilson interval's good behaviour at
/// small counts and at 0 or n, where the Wald interval for a difference (p1 − p2 ± z·se)
/// degenerates (0/10 vs 0/20 would give the single point 0). The interval is asymmetric around
/// the estimate whenever the proportions are near 0 or 1, as it should be.
///
/// Pass [`Z95`] for the 95 % interval.
pub fn newcombe_difference(x1: u64, n1: u64, x2: u64, n2: u64, z: f64) -> Option<Difference> {
    let w1 = wilson(x1, n1, z)?;
    let w2 = wilson(x2, n2, z)?;
    let p1 = x1 as f64 / n1 as f64;
    let p2 = x2 as f64 / n2 as f64;
    let absolute = p1 - p2;
    // hypot is √(a² + b²) without intermediate overflow; the arguments' signs do not matter.
    let low = absolute - (p1 - w1.low).hypot(w2.high - p2);
    let high = absolute + (w1.high - p1).hypot(p2 - w2.low);
    Some(Difference {
        absolute,
        low: low.clamp(-1.0, absolute),
        high: high.clamp(absolute, 1.0),
    })
}

/// Relative uplift p1/p2 - 1 with the interval from the Katz log method for the risk ratio:
/// ln(RR) ± z * sqrt(1/x1 - 1/n1 + 1/x2 - 1/n2), then exp(...) - 1. None when any of x1, x2,
/// n1, n2 is 0 or x > n.
///
/// Why on the log scale: the ratio of two proportions is skewed (bounded below by 0, unbounded
/// above), its logarithm is close to normal, so the interval is built there and mapped back;
/// it is asymmetric around the estimate, wider upwards. With no successes in either group the
/// ratio is 0 or undefined and the log method has no answer, hence `None`; the absolute
/// difference ([`newcombe_difference`]) still has one.
///
/// The variance term 1/x − 1/n is computed as (n − x)/(x·n), which is never negative and
/// exactly 0 at x = n. Also `None` if the upper bound overflows (only for absurd `z`).
pub fn relative_uplift(x1: u64, n1: u64, x2: u64, n2: u64, z: f64) -> Option<Relative> {
    if x1 == 0 || x2 == 0 || x1 > n1 || x2 > n2 || !usable_z(z) {
        return None;
    }
    let p1 = x1 as f64 / n1 as f64;
    let p2 = x2 as f64 / n2 as f64;
    let ratio = p1 / p2;
    let value = ratio - 1.0;
    let variance = |x: u64, n: u64| (n - x) as f64 / (x as f64 * n as f64);
    let se = (variance(x1, n1) + variance(x2, n2)).max(0.0).sqrt();
    let log_ratio = ratio.ln();
    let margin = z * se;
    // exp_m1 keeps the digits of a small uplift that exp(..) − 1 would cancel away.
    let low = (log_ratio - margin).exp_m1();
    let high = (log_ratio + margin).exp_m1();
    if !(value.is_finite() && low.is_finite() && high.is_finite()) {
        return None;
    }
    Some(Relative {
        value,
        // exp_m1(ln r) and r − 1 can differ in the last bit; keep the estimate inside.
        low: low.clamp(-1.0, value),
        high: high.max(value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Published values are rounded to 4 decimals.
    const TABLE_TOL: f64 = 5e-5;

    fn close(actual: f64, expected: f64, tol: f64, what: &str) {
        assert!(
            (actual - expected).abs() <= tol,
            "{what}: got {actual}, expected {expected} ± {tol}"
        );
    }

    /// Newcombe (1998), Table II, examples (a)–(h), method 10 (score, no continuity
    /// correction); the difference is the first group minus the second. Recomputed here with
    /// Python from the formula; the same figures are used as reference values by other
    /// implementations (e.g. statsmodels' test data, the R package propint).
    ///
    /// Example (a) is 0.2000 (0.0524, 0.3339): 56/70 − 48/80 = 0.8 − 0.6 = 0.2 exactly, so a
    /// difference of 0.1833 or an upper bound of 0.3104 cannot be right. Example (c) is
    /// (0.0582, 0.8062); (0.0574, 0.8118) is not what method 10 gives.
    const NEWCOMBE_TABLE_II: [(u64, u64, u64, u64, f64, f64, f64); 8] = [
        (56, 70, 48, 80, 0.2000, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.6000, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.5714, 0.0582, 0.8062),
        (5, 56, 0, 29, 0.0893, -0.0381, 0.1926),
        (0, 10, 0, 20, 0.0000, -0.1611, 0.2775),
        (0, 10, 0, 10, 0.0000, -0.2775, 0.2775),
        (10, 10, 0, 20, 1.0000, 0.6791, 1.0000),
        (10, 10, 0, 10, 1.0000, 0.6075, 1.0000),
    ];

    #[test]
    fn newcombe_matches_published_table_ii() {
        for (x1, n1, x2, n2, d, low, high) in NEWCOMBE_TABLE_II {
            let what = format!("{x1}/{n1} vs {x2}/{n2}");
            let got = newcombe_difference(x1, n1, x2, n2, Z95).expect("valid counts");
            close(got.absolute, d, TABLE_TOL, &format!("{what} difference"));
            close(got.low, low, TABLE_TOL, &format!("{what} low"));
            close(got.high, high, TABLE_TOL, &format!("{what} high"));
        }
    }

    #[test]
    fn newcombe_swapping_groups_mirrors_the_interval() {
        for (x1, n1, x2, n2, ..) in NEWCOMBE_TABLE_II {
            let a = newcombe_difference(x1, n1, x2, n2, Z95).expect("valid counts");
            let b = newcombe_difference(x2, n2, x1, n1, Z95).expect("valid counts");
            close(b.absolute, -a.absolute, 1e-12, "absolute");
            close(b.low, -a.high, 1e-12, "low");
            close(b.high, -a.low, 1e-12, "high");
        }
    }

    #[test]
    fn newcombe_rejects_empty_or_impossible_groups() {
        assert_eq!(newcombe_difference(0, 0, 1, 10, Z95), None);
        assert_eq!(newcombe_difference(1, 10, 0, 0, Z95), None);
        assert_eq!(newcombe_difference(11, 10, 1, 10, Z95), None);
        assert_eq!(newcombe_difference(1, 10, 11, 10, Z95), None);
        assert_eq!(newcombe_difference(1, 10, 1, 10, f64::NAN), None);
        assert_eq!(newcombe_difference(1, 10, 1, 10, -1.0), None);
    }

    #[test]
    fn newcombe_single_customer_groups_stay_in_range() {
        for (x1, x2) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let d = newcombe_difference(x1, 1, x2, 1, Z95).expect("valid counts");
            assert!(d.low.is_finite() && d.high.is_finite(), "{d:?}");
            assert!(-1.0 <= d.low && d.low <= d.absolute, "{d:?}");
            assert!(d.absolute <= d.high && d.high <= 1.0, "{d:?}");
        }
        let all_vs_none = newcombe_difference(1, 1, 0, 1, Z95).expect("valid counts");
        assert_eq!((all_vs_none.absolute, all_vs_none.high), (1.0, 1.0));
        let none_vs_all = newcombe_difference(0, 1, 1, 1, Z95).expect("valid counts");
        assert_eq!((none_vs_all.absolute, none_vs_all.low), (-1.0, -1.0));
    }

    /// 81/263: centre = (81 + z²/2)/(263 + z²) = 82.9208/266.8415 = 0.310750, half-width
    /// = z/(263 + z²)·√(81·182/263 + z²/4) = 0.0073450·7.5511 = 0.055460, so
    /// (0.25529, 0.36621) (Python: 0.2552885, 0.3662096).
    #[test]
    fn wilson_81_of_263() {
        let w = wilson(81, 263, Z95).expect("valid counts");
        close(w.low, 0.255_289, 1e-6, "low");
        close(w.high, 0.366_210, 1e-6, "high");
    }

    /// 0/10: the lower bound is exactly 0 and the upper z²/(n + z²) = 3.8415/13.8415 = 0.27753
    /// (the Wald interval would be the single point 0).
    #[test]
    fn wilson_at_zero_and_at_n() {
        let none = wilson(0, 10, Z95).expect("valid counts");
        assert_eq!(none.low, 0.0);
        close(none.high, 0.277_533, 1e-6, "0/10 high");
        let all = wilson(10, 10, Z95).expect("valid counts");
        assert_eq!(all.high, 1.0);
        close(all.low, 1.0 - 0.277_533, 1e-6, "10/10 low");
        for x in [0, 1] {
            let w = wilson(x, 1, Z95).expect("valid counts");
            assert!(0.0 <= w.low && w.low <= w.high && w.high <= 1.0, "{w:?}");
        }
    }

    #[test]
    fn wilson_rejects_empty_or_impossible_counts() {
        assert_eq!(wilson(0, 0, Z95), None);
        assert_eq!(wilson(11, 10, Z95), None);
        assert_eq!(wilson(1, 10, f64::NAN), None);
        assert_eq!(wilson(1, 10, f64::INFINITY), None);
        assert_eq!(wilson(1, 10, 1e200), None);
    }

    #[test]
    fn wilson_with_z_zero_is_the_point_estimate() {
        let w = wilson(3, 12, 0.0).expect("valid counts");
        close(w.low, 0.25, 1e-15, "low");
        close(w.high, 0.25, 1e-15, "high");
    }

    #[test]
    fn wilson_keeps_digits_for_rare_events_in_large_groups() {
        // x = 1 of a huge n: n·high → 1 + z²/2 + z·√(1 + z²/4) = 5.664934 and
        // n·low → 1 + z²/2 − z·√(1 + z²/4) = 0.176525 (= 1/5.664934, the product of the roots
        // being x²/(n(n + z²)) ≈ 1/n²). The difference form would cancel about 15 digits here.
        let n = 1_000_000_000_000_000;
        let w = wilson(1, n, Z95).expect("valid counts");
        let p = 1.0 / n as f64;
        assert!(w.low > 0.0 && w.low < p && p < w.high, "{w:?}");
        close(w.low * n as f64, 0.176_525, 1e-6, "n * low");
        close(w.high * n as f64, 5.664_934, 1e-6, "n * high");
    }

    /// 30/100 vs 20/100, by hand: RR = 0.30/0.20 = 1.5, ln 1.5 = 0.405465;
    /// variance = 1/30 − 1/100 + 1/20 − 1/100 = 0.033333 − 0.01 + 0.05 − 0.01 = 0.063333,
    /// se = 0.251661, z·se = 1.959964 × 0.251661 = 0.493246;
    /// low = exp(0.405465 − 0.493246) − 1 = exp(−0.087781) − 1 = 0.915961 − 1 = −0.084039,
    /// high = exp(0.405465 + 0.493246) − 1 = exp(0.898711) − 1 = 2.456437 − 1 = 1.456437.
    #[test]
    fn katz_30_of_100_vs_20_of_100() {
        let r = relative_uplift(30, 100, 20, 100, Z95).expect("valid counts");
        close(r.value, 0.5, 1e-12, "value");
        close(r.low, -0.084_039, 1e-6, "low");
        close(r.high, 1.456_437, 1e-6, "high");
    }

    #[test]
    fn katz_everyone_bought_in_both_groups_is_a_point() {
        let r = relative_uplift(7, 7, 3, 3, Z95).expect("valid counts");
        assert_eq!((r.value, r.low, r.high), (0.0, 0.0, 0.0));
    }

    #[test]
    fn katz_rejects_zero_and_impossible_counts() {
        assert_eq!(relative_uplift(0, 10, 1, 10, Z95), None);
        assert_eq!(relative_uplift(1, 10, 0, 10, Z95), None);
        assert_eq!(relative_uplift(0, 0, 1, 10, Z95), None);
        assert_eq!(relative_uplift(1, 10, 0, 0, Z95), None);
        assert_eq!(relative_uplift(11, 10, 1, 10, Z95), None);
        assert_eq!(relative_uplift(1, 10, 11, 10, Z95), None);
        assert_eq!(relative_uplift(1, 10, 1, 10, f64::NAN), None);
        // The upper bound would overflow to infinity.
        assert_eq!(relative_uplift(1, 10, 1, 10, 1e150), None);
    }

    /// A group size in 1..2000 and a count of successes within it.
    fn group() -> impl Strategy<Value = (u64, u64)> {
        (1u64..2000).prop_flat_map(|n| (0..=n, Just(n)))
    }

    proptest! {
        #[test]
        fn newcombe_interval_contains_estimate_and_stays_in_range(
            (x1, n1) in group(),
            (x2, n2) in group(),
        ) {
            let d = newcombe_difference(x1, n1, x2, n2, Z95).expect("valid counts");
            prop_assert!(d.absolute.is_finite() && d.low.is_finite() && d.high.is_finite());
            prop_assert!(d.low >= -1.0 && d.high <= 1.0, "{:?}", d);
            prop_assert!(d.low <= d.absolute && d.absolute <= d.high, "{:?}", d);
        }

        #[test]
        fn wilson_contains_estimate_and_is_symmetric((x, n) in group()) {
            let w = wilson(x, n, Z95).expect("valid counts");
            let mirror = wilson(n - x, n, Z95).expect("valid counts");
            let p = x as f64 / n as f64;
            prop_assert!(0.0 <= w.low && w.low <= p && p <= w.high && w.high <= 1.0, "{:?}", w);
            prop_assert!((w.low - (1.0 - mirror.high)).abs() < 1e-12, "{:?} {:?}", w, mirror);
        }

        #[test]
        fn katz_interval_contains_estimate(
            (x1, n1) in group(),
            (x2, n2) in group(),
        ) {
            match relative_uplift(x1, n1, x2, n2, Z95) {
                None => prop_assert!(x1 == 0 || x2 == 0),
                Some(r) => {
                    prop_assert!(r.value.is_finite() && r.low.is_finite() && r.high.is_finite());
                    prop_assert!(-1.0 <= r.low && r.low <= r.value && r.value <= r.high, "{:?}", r);
                }
            }
        }
    }
}
