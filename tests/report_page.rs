//! The effect report's HTML page, in a real browser: headless Chromium driven over the DevTools
//! protocol opens the page as a file, the way a marketer opens it from an e-mail. The report is
//! computed by `packwell::report::compute` from store aggregates made by hand: a rule with a
//! clear uplift (2000 customers a group), one with none, a shadow rule and a follow-up, with
//! coupon redemptions over ten weeks. The page must show the uplift chart with its intervals
//! laid out (not of zero width), the redemptions chart with its lines, and no sideways
//! scrolling on a laptop's screen. The page of an empty store must say there is nothing to
//! report yet. The pages and screenshots are left in `target/test-artifacts/effect-report.html`
//! and `effect-report.png` (and `effect-report-empty.*`) for a person to look at.
//!
//! Needs a Chromium: `PACKWELL_CHROMIUM`, else `chromium`, `chromium-browser` or
//! `google-chrome` on PATH. Without one the test says it was skipped, unless
//! `PACKWELL_REQUIRE_TOOLS=1` (as in CI), where a missing browser is a failure.

mod browser_support;

use browser_support::*;
use chrono::{NaiveDate, TimeZone, Utc};

use packwell::report::{self, Report, ReportOptions};
use packwell::store::attribution::{
    AttributionData, CostRow, CouponRow, GroupRow, NpsRow, RedemptionRow, RevenueRow,
};

/// A laptop's screen.
const VIEWPORT: (u32, u32) = (1280, 800);
const DAY: i64 = 86_400;
/// Money in the store is in 1/10000 units.
const UNIT: i64 = 10_000;

fn group(
    kind: &str,
    source: &str,
    arm: &str,
    customers: i64,
    matured: i64,
    repeaters: i64,
) -> GroupRow {
    GroupRow {
        kind: kind.into(),
        source_id: source.into(),
        arm: arm.into(),
        customers,
        matured,
        repeaters,
        // About 200 days since their first order, alike in both groups.
        tenure_secs: matured * 200 * DAY,
    }
}

fn revenue(
    kind: &str,
    source: &str,
    arm: &str,
    currency: &str,
    orders: i64,
    cents: i64,
) -> RevenueRow {
    RevenueRow {
        kind: kind.into(),
        source_id: source.into(),
        arm: arm.into(),
        currency: currency.into(),
        orders,
        units: cents * (UNIT / 100),
    }
}

fn nps(
    kind: &str,
    source: &str,
    arm: &str,
    answers: i64,
    mean_tenths: i64,
    promoters: i64,
    detractors: i64,
) -> NpsRow {
    NpsRow {
        kind: kind.into(),
        source_id: source.into(),
        arm: arm.into(),
        answers,
        sum: answers * mean_tenths / 10,
        promoters,
        detractors,
    }
}

fn cost(source: &str, arm: &str, currency: &str, cents: i64) -> CostRow {
    CostRow {
        kind: "rule".into(),
        source_id: source.into(),
        arm: arm.into(),
        currency: currency.into(),
        units: cents * (UNIT / 100),
    }
}

fn coupons(kind: &str, source: &str, amount: &str, state: &str, count: i64) -> CouponRow {
    CouponRow {
        kind: kind.into(),
        source_id: source.into(),
        currency: "EUR".into(),
        amount: amount.into(),
        state: state.into(),
        count,
    }
}

/// Redemptions on the Wednesday of each week from `first_monday`, one count a week.
fn redemptions(source: &str, first_monday: NaiveDate, per_week: &[i64]) -> Vec<RedemptionRow> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    per_week
        .iter()
        .enumerate()
        .map(|(i, count)| RedemptionRow {
            source_id: source.into(),
            day: (first_monday - epoch).num_days() + 7 * i as i64 + 2,
            count: *count,
        })
        .collect()
}

/// What a store of a few months of orders would sum to.
fn data() -> AttributionData {
    let jan5 = NaiveDate::from_ymd_opt(2026, 1, 5).expect("date");
    let feb2 = NaiveDate::from_ymd_opt(2026, 2, 2).expect("date");
    let (w, g, s, f) = (
        "welcome-coupon",
        "gift-wrap",
        "eco-sample",
        "review-request",
    );
    let mut redeemed = redemptions(w, jan5, &[35, 88, 120, 131, 104, 92, 77, 66, 51, 36]);
    redeemed.extend(redemptions(f, feb2, &[12, 41, 47, 38, 30, 22]));
    AttributionData {
        groups: vec![
            // 28% against 22% of 2000: an uplift of 6 points, its interval well above zero.
            group("rule", w, "treated", 2310, 2000, 560),
            group("rule", w, "held_out", 2275, 2000, 440),
            // 22% against 22.3%: nothing to tell, and a few customers in both groups.
            group("rule", g, "treated", 1950, 1800, 396),
            group("rule", g, "held_out", 1940, 1800, 401),
            group("rule", g, "mixed", 12, 12, 3),
            group("rule", s, "shadow", 930, 850, 190),
            group("followup", f, "treated", 1010, 950, 266),
            group("followup", f, "held_out", 260, 240, 55),
        ],
        revenue: vec![
            revenue("rule", w, "treated", "EUR", 690, 690 * 5230),
            revenue("rule", w, "held_out", "EUR", 520, 520 * 5100),
            revenue("rule", w, "treated", "USD", 41, 41 * 6050),
            revenue("rule", w, "held_out", "USD", 30, 30 * 5900),
            revenue("rule", g, "treated", "EUR", 480, 480 * 4720),
            revenue("rule", g, "held_out", "EUR", 486, 486 * 4700),
            revenue("rule", s, "shadow", "EUR", 230, 230 * 4400),
            revenue("followup", f, "treated", "EUR", 322, 322 * 4980),
            revenue("followup", f, "held_out", "EUR", 66, 66 * 4900),
        ],
        nps: vec![
            nps("rule", w, "treated", 310, 85, 160, 40),
            nps("rule", w, "held_out", 295, 80, 120, 60),
            nps("followup", f, "treated", 205, 82, 98, 35),
        ],
        costs: vec![
            cost(w, "treated", "EUR", 2310 * 500),
            cost(w, "held_out", "EUR", 2275 * 500),
            cost(g, "treated", "EUR", 1950 * 80),
            cost(g, "held_out", "EUR", 1940 * 80),
            cost(s, "shadow", "EUR", 930 * 120),
        ],
        coupons: vec![
            coupons("rule", w, "5.00", "issued", 1410),
            coupons("rule", w, "5.00", "redeemed", 800),
            coupons("rule", w, "5.00", "voided", 100),
            coupons("followup", f, "10.00", "issued", 740),
            coupons("followup", f, "10.00", "redeemed", 190),
            coupons("followup", f, "10.00", "voided", 80),
        ],
        redemptions: redeemed,
    }
}

fn the_report() -> Report {
    let as_of = Utc
        .with_ymd_and_hms(2026, 6, 1, 6, 0, 0)
        .single()
        .expect("time")
        .timestamp();
    let options = ReportOptions {
        since: NaiveDate::from_ymd_opt(2026, 1, 1),
        window_days: 90,
        ..Default::default()
    };
    report::compute(&data(), None, options, Some(as_of))
}

#[test]
fn the_effect_report_page_shows_its_charts_in_a_browser() {
    // The data is what the test says it is: one clear uplift, one none.
    let built = the_report();
    let rule = |id: &str| {
        built
            .rules
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("{id} not in the report: {built:?}"))
    };
    let welcome = rule("welcome-coupon").uplift.clone().expect("an uplift");
    assert!(welcome.low > 0.0, "{welcome:?}");
    let gift = rule("gift-wrap").uplift.clone().expect("an uplift");
    assert!(gift.low < 0.0 && gift.high > 0.0, "{gift:?}");
    assert!(rule("eco-sample").uplift.is_none());
    assert_eq!(rule("review-request").kind, "followup");

    let page = report::html::render(&built);
    let dir = artifacts_dir();
    let html_path = dir.join("effect-report.html");
    std::fs::write(&html_path, &page).expect("write the page");

    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let (_browser, tab) = launch(chromium, VIEWPORT);
    // Waits go by the page's elements, never by DevTools events (see the station test: with
    // serde_json's `arbitrary_precision` some events fail to parse and are dropped).
    tab.navigate_to(&format!("file://{}", html_path.display()))
        .expect("open the page");
    tab.wait_for_element("#uplift-chart")
        .expect("the uplift chart");

    assert_eq!(eval(&tab, "document.title"), "Packwell effect report");
    let count = |js: &str| {
        eval(&tab, js)
            .as_u64()
            .unwrap_or_else(|| panic!("{js}: not a count"))
    };
    // One row per rule with an uplift: the shadow rule has none.
    assert_eq!(
        count("document.querySelectorAll('#uplift-chart .interval').length"),
        3
    );
    let drawn = count(
        "Array.from(document.querySelectorAll('#uplift-chart .interval'))\
         .filter(e => e.getBoundingClientRect().width > 0).length",
    );
    assert!(drawn >= 2, "{drawn} intervals drawn with a width");
    assert_eq!(
        count("document.querySelectorAll('#uplift-chart .interval.green').length"),
        1,
        "the welcome coupon's interval lies above zero"
    );
    assert_eq!(
        count("document.querySelectorAll('#redemptions-chart polyline').length"),
        2
    );
    let line_width = eval(
        &tab,
        "document.querySelector('#redemptions-chart polyline').getBoundingClientRect().width",
    )
    .as_f64()
    .unwrap_or(0.0);
    assert!(
        line_width > 100.0,
        "the redemptions line is {line_width} px wide"
    );
    // Readable on a laptop: nothing sticks out sideways.
    let overflow = eval(
        &tab,
        "document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .as_i64()
    .unwrap_or(i64::MAX);
    assert!(overflow <= 0, "the page is {overflow} px too wide");
    let warnings = count("document.querySelectorAll('.warning').length");
    assert!(warnings >= 1, "the mixed customers' warning is shown");

    let png = whole_page_png(&tab, VIEWPORT);
    let png_path = dir.join("effect-report.png");
    std::fs::write(&png_path, &png).expect("write the screenshot");
    let written = std::fs::metadata(&png_path).expect("the screenshot").len();
    assert!(
        written > 0 && png.starts_with(b"\x89PNG"),
        "{}",
        png_path.display()
    );
    eprintln!("screenshot: {}", png_path.display());

    // A new install: an empty store says there is nothing to report yet, and why, with no
    // empty charts.
    let empty = report::compute(
        &AttributionData::default(),
        None,
        ReportOptions::default(),
        None,
    );
    let empty_path = dir.join("effect-report-empty.html");
    std::fs::write(&empty_path, report::html::render(&empty)).expect("write the empty page");
    tab.navigate_to(&format!("file://{}", empty_path.display()))
        .expect("open the empty page");
    let note = tab
        .wait_for_element("#nothing-to-report")
        .expect("the nothing-to-report note")
        .get_inner_text()
        .expect("its text");
    assert!(
        note.contains("Nothing to report yet") && note.contains("no decisions"),
        "{note}"
    );
    assert_eq!(count("document.querySelectorAll('svg').length"), 0);
    std::fs::write(
        dir.join("effect-report-empty.png"),
        whole_page_png(&tab, VIEWPORT),
    )
    .expect("write the empty page's screenshot");
}
