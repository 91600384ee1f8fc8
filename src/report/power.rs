//! Is a test big enough, and is its split what was configured? The arithmetic behind the
//! report's `sample_ratio`, `detectable_uplift` and `needed_per_group` (docs/REFERENCE.md §4):
//! counts in, numbers out, no I/O and nothing that panics.
//!
//! - [`sample_ratio_p_value`]: Pearson's chi-square goodness-of-fit test of the observed group
//!   sizes (treated, held out, variants) against the configured shares. A split that differs
//!   from its configuration (a broken assignment, customers lost in one group) makes every other
//!   figure wrong, so the report warns below [`SAMPLE_RATIO_ALPHA`].
//! - [`detectable_uplift`] and [`needed_per_group`]: power analysis for two independent
//!   proportions on Cohen's arcsine scale (h = 2·asin√p₂ − 2·asin√p₁, Cohen 1988, "Statistical
//!   Power Analysis for the Behavioral Sciences", ch. 6), the normal approximation
//!   statsmodels' `NormalIndPower` uses: h = (z₁₋α/₂ + z₁₋β)·√(1/n₁ + 1/n₂). The arcsine
//!   transform makes the variance independent of p, so the figures hold near rates of 0 as
//!   well as in the middle. The far tail of a two-sided test (an effect in the wrong
//!   direction) is left out, as is usual: it changes the figures by far less than rounding.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// Below this p-value the split is reported as broken: 0.001, so that a report read every day
/// rarely cries wolf, while a real assignment fault (a few percent off on thousands of
/// customers) is far below it.
pub const SAMPLE_RATIO_ALPHA: f64 = 0.001;

/// The report's power: 80 %.
pub const POWER: f64 = 0.8;

/// The report's significance level, two-sided: 5 %.
pub const ALPHA: f64 = 0.05;

/// The p-value of Pearson's chi-square test of `observed` counts against `weights` (any
/// positive scale: 90 and 10, or 0.9 and 0.1). None when there is nothing to test: fewer than
/// two groups, no customer at all, or a weight that is not a positive finite number.
pub fn sample_ratio_p_value(observed: &[u64], weights: &[f64]) -> Option<f64> {
    if observed.len() != weights.len() || observed.len() < 2 {
        return None;
    }
    if weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
        return None;
    }
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    let weight_sum: f64 = weights.iter().sum();
    if total <= 0.0 || !weight_sum.is_finite() {
        return None;
    }
    let chi_square: f64 = observed
        .iter()
        .zip(weights)
        .map(|(&o, &w)| {
            let expected = total * w / weight_sum;
            (o as f64 - expected).powi(2) / expected
        })
        .sum();
    let dist = ChiSquared::new((observed.len() - 1) as f64).ok()?;
    let p = dist.sf(chi_square);
    p.is_finite().then_some(p.clamp(0.0, 1.0))
}

/// z₁₋α/₂ + z₁₋β for the report's α and power.
fn z_sum(alpha: f64, power: f64) -> Option<f64> {
    if !(alpha > 0.0 && alpha < 1.0 && power > 0.0 && power < 1.0) {
        return None;
    }
    let normal = Normal::standard();
    Some(normal.inverse_cdf(1.0 - alpha / 2.0) + normal.inverse_cdf(power))
}

/// The smallest absolute uplift over `baseline` (the held-out group's rate, 0 to 1) that groups
/// of `n_treated` and `n_held_out` customers detect with the given power at the given
/// two-sided level. None when a group is empty, the baseline is not a rate, or no uplift up to
/// a rate of 1 is detectable.
pub fn detectable_uplift(
    baseline: f64,
    n_treated: u64,
    n_held_out: u64,
    alpha: f64,
    power: f64,
) -> Option<f64> {
    if n_treated == 0 || n_held_out == 0 || !(0.0..=1.0).contains(&baseline) {
        return None;
    }
    let h = z_sum(alpha, power)? * (1.0 / n_treated as f64 + 1.0 / n_held_out as f64).sqrt();
    let angle = baseline.sqrt().asin() + h / 2.0;
    if angle > std::f64::consts::FRAC_PI_2 {
        return None;
    }
    Some(angle.sin().powi(2) - baseline)
}

/// Customers needed in each of two equal groups to detect an absolute uplift of `uplift` over
/// `baseline` with the given power at the given two-sided level, rounded up. None when the
/// uplift is not positive or takes the rate past 1.
pub fn needed_per_group(baseline: f64, uplift: f64, alpha: f64, power: f64) -> Option<u64> {
    let target = baseline + uplift;
    if !(0.0..=1.0).contains(&baseline) || uplift.is_nan() || uplift <= 0.0 || target > 1.0 {
        return None;
    }
    // Two groups of n: h = z·√(2/n).
    let h = 2.0 * target.sqrt().asin() - 2.0 * baseline.sqrt().asin();
    let n = 2.0 * (z_sum(alpha, power)? / h).powi(2);
    (n.is_finite() && n < u64::MAX as f64).then(|| n.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (observed, weights, p) computed once with scipy 1.x
    /// (`scipy.stats.chisquare(observed, f_exp=total·weights/Σweights).pvalue`).
    const CHI_SQUARE: &[(&[u64], &[f64], f64)] = &[
        (&[9000, 1000], &[90.0, 10.0], 1.0),
        (&[9300, 700], &[90.0, 10.0], 1.523_970_604_832_099_5e-23),
        (&[512, 488], &[50.0, 50.0], 0.447_884_478_264_111_93),
        (&[480, 520], &[50.0, 50.0], 0.205_903_210_732_064_66),
        (
            &[3300, 3400, 3300],
            &[1.0, 1.0, 1.0],
            0.367_879_441_171_442_45,
        ),
        (
            &[3000, 3600, 3400],
            &[1.0, 1.0, 1.0],
            6.914_400_106_940_193e-13,
        ),
        (&[120, 45, 35], &[60.0, 20.0, 20.0], 0.535_261_428_518_990_3),
        (&[70, 30], &[2.0, 1.0], 0.479_500_122_186_953_5),
    ];

    /// (baseline, n_treated, n_held_out, detectable uplift) computed once with statsmodels
    /// (`NormalIndPower().solve_power(nobs1=n_treated, ratio=n_held_out/n_treated,
    /// alpha=0.05, power=0.8)` for h, then sin²(asin√p + h/2) − p).
    const DETECTABLE: &[(f64, u64, u64, f64)] = &[
        (0.25, 1000, 1000, 0.056_070_126_479_423),
        (0.25, 9000, 1000, 0.041_468_050_557_221_525),
        (0.1, 500, 500, 0.059_141_285_226_992_11),
        (0.0, 2000, 2000, 0.001_960_934_354_601_471_6),
        (0.4, 50000, 5000, 0.020_438_007_585_596_274),
        (0.05, 300, 30, 0.174_606_272_550_748_56),
    ];

    /// (baseline, uplift, customers per group) computed once with statsmodels
    /// (`NormalIndPower().solve_power(effect_size=h, ratio=1, alpha=0.05, power=0.8)`, rounded
    /// up).
    const NEEDED: &[(f64, f64, u64)] = &[
        (0.25, 0.03, 3395),
        (0.1, 0.03, 1769),
        (0.3, 0.05, 1376),
        (0.05, 0.01, 8143),
        (0.5, 0.1, 388),
    ];

    #[test]
    fn the_chi_square_p_values_match_scipy() {
        for &(observed, weights, p) in CHI_SQUARE {
            let got = sample_ratio_p_value(observed, weights).expect("testable");
            assert!(
                (got - p).abs() <= 1e-9_f64.max(p * 1e-6),
                "{observed:?} {weights:?}: {got} against {p}"
            );
        }
    }

    #[test]
    fn an_honest_split_is_quiet_and_a_broken_one_fires() {
        // 90/10 configured: 9 000 / 1 000 is exactly right, 9 300 / 700 is broken.
        let honest = sample_ratio_p_value(&[9_000, 1_000], &[90.0, 10.0]).unwrap();
        assert!((honest - 1.0).abs() < 1e-12, "{honest}");
        let broken = sample_ratio_p_value(&[9_300, 700], &[90.0, 10.0]).unwrap();
        assert!(broken < SAMPLE_RATIO_ALPHA, "{broken}");
        for (observed, weights) in [
            (&[5u64][..], &[1.0][..]),
            (&[0, 0], &[1.0, 1.0]),
            (&[3, 4], &[1.0, 0.0]),
            (&[3, 4], &[1.0, f64::NAN]),
            (&[3, 4, 5], &[1.0, 1.0]),
        ] {
            assert_eq!(
                sample_ratio_p_value(observed, weights),
                None,
                "{observed:?}"
            );
        }
    }

    #[test]
    fn the_detectable_uplift_matches_statsmodels() {
        for &(p, n1, n2, expected) in DETECTABLE {
            let got = detectable_uplift(p, n1, n2, ALPHA, POWER).expect("detectable");
            assert!(
                (got - expected).abs() <= expected * 1e-4,
                "p {p}, n {n1}/{n2}: {got} against {expected}"
            );
        }
        assert_eq!(detectable_uplift(0.2, 0, 100, ALPHA, POWER), None);
        assert_eq!(detectable_uplift(0.99, 1, 1, ALPHA, POWER), None);
    }

    #[test]
    fn the_customers_needed_match_statsmodels() {
        for &(p, d, expected) in NEEDED {
            assert_eq!(
                needed_per_group(p, d, ALPHA, POWER),
                Some(expected),
                "p {p}, d {d}"
            );
        }
        assert_eq!(needed_per_group(0.2, 0.0, ALPHA, POWER), None);
        assert_eq!(needed_per_group(0.99, 0.03, ALPHA, POWER), None);
    }

    #[test]
    fn more_customers_detect_smaller_uplifts() {
        let mut last = f64::INFINITY;
        for n in [100u64, 1_000, 10_000, 100_000] {
            let d = detectable_uplift(0.25, n, n, ALPHA, POWER).unwrap();
            assert!(d < last && d > 0.0);
            last = d;
            // Groups of the size needed for d detect d.
            let needed = needed_per_group(0.25, d, ALPHA, POWER).unwrap();
            assert!(
                needed.abs_diff(n) <= 1,
                "{n} customers detect {d}, which needs {needed}"
            );
        }
    }
}
