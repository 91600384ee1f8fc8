//! One rule's or follow-up's effect: its treated and held-out groups read from the store's
//! aggregates, the figures that compare them, the warnings when they cannot tell much, and its
//! coupon redemptions per week.

use super::variants::{difference, variant_effects};
use super::*;
use crate::engine::split_arm_label;

/// One group's counts, read from the aggregates.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Group {
    /// Exposed in the period, window over or not.
    pub(super) customers: u64,
    /// Of them, those whose window is over: the cohort compared.
    pub(super) matured: u64,
    pub(super) repeaters: u64,
    tenure_secs: i64,
    /// The cohort's later orders.
    pub(super) orders: u64,
}

impl Group {
    pub(super) fn rate(self) -> Option<f64> {
        (self.matured > 0).then(|| self.repeaters as f64 / self.matured as f64)
    }
}

/// The groups of one rule by arm (`treated` and `held_out` sum their variants' slices), and by
/// variant: those given it, and the held out who would have had it.
#[derive(Default)]
pub(super) struct Arms<'d> {
    pub(super) arms: BTreeMap<&'d str, Group>,
    pub(super) variants: BTreeMap<&'d str, Group>,
    pub(super) held_out_variants: BTreeMap<&'d str, Group>,
}

impl<'d> Arms<'d> {
    /// The groups of an arm's name as stored: `treated:note` counts for `treated` and for the
    /// variant `note`, `held_out:note` for `held_out` and for the held out of `note`; a shadow
    /// rule's variants gave nothing and are not split.
    fn update(&mut self, label: &'d str, f: impl Fn(&mut Group)) {
        let (arm, variant) = split_arm_label(label);
        f(self.arms.entry(arm).or_default());
        let slices = match arm {
            "treated" => &mut self.variants,
            "held_out" => &mut self.held_out_variants,
            _ => return,
        };
        if let Some(v) = variant {
            f(slices.entry(v).or_default());
        }
    }
}

pub(super) fn effect(
    data: &AttributionData,
    source: &Source,
    options: &ReportOptions,
) -> RuleEffect {
    let (id, kind, mode) = (
        source.id.as_str(),
        source.kind.as_str(),
        source.mode.as_str(),
    );
    let since = options.since;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let mut groups = Arms::default();
    for g in data
        .groups
        .iter()
        .filter(|g| g.source_id == id && g.kind == kind)
    {
        // Sums of stored counts saturate rather than wrap or panic; with the bounds events
        // are checked against at the edge, no real history comes near them.
        groups.update(&g.arm, |e| {
            e.customers = e.customers.saturating_add(count(g.customers));
            e.matured = e.matured.saturating_add(count(g.matured));
            e.repeaters = e.repeaters.saturating_add(count(g.repeaters));
            e.tenure_secs = e.tenure_secs.saturating_add(g.tenure_secs);
        });
    }
    let mut revenue: BTreeMap<&str, BTreeMap<String, Decimal>> = BTreeMap::new();
    for r in data
        .revenue
        .iter()
        .filter(|r| r.source_id == id && r.kind == kind)
    {
        groups.update(&r.arm, |g| {
            g.orders = g.orders.saturating_add(count(r.orders))
        });
        let total = revenue
            .entry(split_arm_label(&r.arm).0)
            .or_default()
            .entry(r.currency.clone())
            .or_default();
        *total = total.saturating_add(units(r.units));
    }
    let arm = |name: &str| groups.arms.get(name).copied().unwrap_or_default();
    let (t, h, s, mixed) = (arm("treated"), arm("held_out"), arm("shadow"), arm("mixed"));
    let in_window = groups.arms.values().fold(0u64, |n, g| {
        n.saturating_add(g.customers.saturating_sub(g.matured))
    });

    let rate = Group::rate;
    let uplift = difference(t, h);
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
    let extra = ExtraOrders::of(t, h);

    let mut cost: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut would_have: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut variant_costs: BTreeMap<&str, BTreeMap<String, Decimal>> = BTreeMap::new();
    for c in data
        .costs
        .iter()
        .filter(|c| c.source_id == id && c.kind == kind)
    {
        let (arm, variant) = split_arm_label(&c.arm);
        let target = match arm {
            "treated" => &mut cost,
            "held_out" | "shadow" => &mut would_have,
            _ => continue,
        };
        // A follow-up's own cost is its coupons (below); these rows only split it by variant.
        if kind == "rule" {
            let total = target.entry(c.currency.clone()).or_default();
            *total = total.saturating_add(units(c.units));
        }
        if let (Some(v), "treated") = (variant, arm) {
            let total = variant_costs
                .entry(v)
                .or_default()
                .entry(c.currency.clone())
                .or_default();
            *total = total.saturating_add(units(c.units));
        }
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
    let cost_per_extra_order = extra.cost_per_order(&cost);

    let nps = |arm: &str| {
        let rows: Vec<_> = data
            .nps
            .iter()
            .filter(|n| n.source_id == id && n.kind == kind && split_arm_label(&n.arm).0 == arm)
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
    let sample_ratio = sample_ratio(mode, source, &groups);
    let (variants, best_variant) = variant_effects(source, &groups, &variant_costs);
    // The held-out group's rate is the baseline an uplift is measured from; without one, the
    // treated group's stands in for the customers needed.
    let baseline = rate(h).or(rate(t));
    let detectable_uplift = rate(h).and_then(|p| {
        power::detectable_uplift(p, t.matured, h.matured, power::ALPHA, power::POWER)
    });
    let target = f64::from(options.target_uplift_bp) / 10_000.0;
    let needed_per_group =
        baseline.and_then(|p| power::needed_per_group(p, target, power::ALPHA, power::POWER));
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
        extra_orders: extra.orders,
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
        sample_ratio,
        detectable_uplift,
        needed_per_group,
        variants,
        best_variant,
    }
}

/// A group's later orders beyond what the held-out group's rate gives for as many customers:
/// `o_t - o_h n_t / n_h`, kept as the fraction `(o_t n_h - o_h n_t) / n_h` so that the cost
/// per extra order is exact.
pub(super) struct ExtraOrders {
    numerator: i128,
    held_out: u64,
    /// Null unless both groups have a cohort.
    pub(super) orders: Option<f64>,
}

impl ExtraOrders {
    pub(super) fn of(t: Group, h: Group) -> Self {
        let numerator = (i128::from(t.orders) * i128::from(h.matured))
            .saturating_sub(i128::from(h.orders) * i128::from(t.matured));
        let both = t.matured > 0 && h.matured > 0;
        ExtraOrders {
            numerator,
            held_out: h.matured,
            orders: both.then(|| numerator as f64 / h.matured as f64),
        }
    }

    /// What each extra order cost, per currency: null without extra orders or costs.
    pub(super) fn cost_per_order(&self, cost: &BTreeMap<String, Decimal>) -> Option<Amounts> {
        if self.orders.is_none() || self.numerator <= 0 || cost.is_empty() {
            return None;
        }
        let numerator = Decimal::try_from_i128_with_scale(self.numerator, 0).ok()?;
        Some(money(
            cost.iter()
                .map(|(c, a)| {
                    let per = a
                        .saturating_mul(Decimal::from(self.held_out))
                        .checked_div(numerator)
                        .unwrap_or(Decimal::MAX);
                    (c.clone(), per)
                })
                .collect(),
        ))
    }
}

/// One test of the sample-ratio check: each group's name, its customers and its configured
/// weight.
struct Split {
    groups: Vec<(String, u64, f64)>,
}

impl Split {
    fn p_value(&self) -> Option<f64> {
        let observed: Vec<u64> = self.groups.iter().map(|(_, n, _)| *n).collect();
        let weights: Vec<f64> = self.groups.iter().map(|(_, _, w)| *w).collect();
        power::sample_ratio_p_value(&observed, &weights)
    }

    /// `1489 coupon to 1103 sticker, not the configured 50.0% coupon, 50.0% sticker`
    fn describe(&self) -> String {
        let sum: f64 = self.groups.iter().map(|(_, _, w)| w).sum();
        let seen: Vec<String> = self
            .groups
            .iter()
            .map(|(name, n, _)| format!("{n} {name}"))
            .collect();
        let meant: Vec<String> = self
            .groups
            .iter()
            .map(|(name, _, w)| format!("{:.1}% {name}", 100.0 * w / sum))
            .collect();
        format!(
            "{}, not the configured {}",
            seen.join(" to "),
            meant.join(", ")
        )
    }
}

/// The split of everyone exposed (window over or not) against the configuration, in two tests:
/// held out against treated at the configured holdout share, and, for an experiment, its
/// customers (treated and held out alike, since the draw is independent of the holdout) among
/// the configured variants by their weights. The smaller p-value stands for both. Nothing to
/// test for a rule that is not live, or has fewer than two groups to split between.
fn sample_ratio(mode: &str, source: &Source, groups: &Arms<'_>) -> SampleRatio {
    let Some(bp) = source.holdout_bp else {
        return SampleRatio::default();
    };
    if mode != "live" {
        return SampleRatio::default();
    }
    let customers = |m: &BTreeMap<&str, Group>, k: &str| m.get(k).map_or(0, |g| g.customers);
    let mut tests: Vec<Split> = Vec::new();
    if (1..10_000).contains(&bp) {
        tests.push(Split {
            groups: vec![
                (
                    "held out".into(),
                    customers(&groups.arms, "held_out"),
                    f64::from(bp),
                ),
                (
                    "treated".into(),
                    customers(&groups.arms, "treated"),
                    f64::from(10_000 - bp),
                ),
            ],
        });
    }
    if source.variants.len() >= 2 {
        tests.push(Split {
            groups: source
                .variants
                .iter()
                .map(|(id, weight)| {
                    let n = customers(&groups.variants, id)
                        .saturating_add(customers(&groups.held_out_variants, id));
                    (id.clone(), n, f64::from(*weight))
                })
                .collect(),
        });
    }
    let Some((p, worst)) = tests
        .iter()
        .filter_map(|t| t.p_value().map(|p| (p, t)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
    else {
        return SampleRatio::default();
    };
    let warning = (p < power::SAMPLE_RATIO_ALPHA).then(|| {
        format!(
            "the split is {} (p = {p:.1e}): the assignment or the data is broken, the holdout or weights changed within the period, or one group is skipped more often than another (stock, budget); no figure of this rule can be trusted until that is explained",
            worst.describe()
        )
    });
    SampleRatio {
        p_value: Some(p),
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
            "{mixed} customers were in both groups (its holdout changed, or they met two of its variants) and are left out"
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
