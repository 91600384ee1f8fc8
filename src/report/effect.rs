//! One rule's or follow-up's effect: its treated and held-out groups read from the store's
//! aggregates, the figures that compare them, the warnings when they cannot tell much, and its
//! coupon redemptions per week.

use super::*;

/// One group's counts, read from the aggregates.
#[derive(Debug, Default, Clone, Copy)]
struct Group {
    customers: u64,
    matured: u64,
    repeaters: u64,
    tenure_secs: i64,
    orders: u64,
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
    let sample_ratio = sample_ratio(mode, source.holdout_bp, t, h);
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
        sample_ratio,
        detectable_uplift,
        needed_per_group,
    }
}

/// The split of everyone exposed (window over or not) against the configured holdout share.
/// Nothing to test for a rule that is not live, holds out nobody or everybody, or has no
/// customers yet.
fn sample_ratio(mode: &str, holdout_bp: Option<u16>, t: Group, h: Group) -> SampleRatio {
    let Some(bp) = holdout_bp.filter(|bp| (1..10_000).contains(bp)) else {
        return SampleRatio::default();
    };
    if mode != "live" {
        return SampleRatio::default();
    }
    let (treated, held_out) = (t.customers, h.customers);
    let weights = [f64::from(10_000 - bp), f64::from(bp)];
    let p_value = power::sample_ratio_p_value(&[treated, held_out], &weights);
    let warning = p_value.filter(|p| *p < power::SAMPLE_RATIO_ALPHA).map(|p| {
        format!(
            "the split is {treated} treated to {held_out} held out, not the configured {}% holdout (p = {p:.1e}): the assignment or the data is broken, or the holdout changed within the period; no figure of this rule can be trusted until that is explained",
            f64::from(bp) / 100.0
        )
    });
    SampleRatio { p_value, warning }
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
