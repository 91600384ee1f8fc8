//! The small value languages of rule files: durations ("90d"), percentages ("10%"),
//! dates ("2026-12-01") and times of day ("21:00").

use chrono::{Duration, NaiveDate, NaiveTime};
use rust_decimal::Decimal;

/// Parses `30m`, `4h`, `90d` or `2w`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "bad duration {s:?}: expected a whole number and a unit, e.g. \"30m\", \"4h\", \"90d\" or \"2w\""
        )
    };
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        "w" => Duration::try_weeks(n),
        _ => None,
    };
    d.filter(|d| *d > Duration::zero()).ok_or_else(bad)
}

/// Parses a percentage `"10%"` or `"2.5%"` into basis points (0..=10000).
pub fn parse_percent(s: &str) -> Result<u16, String> {
    let bad =
        || format!("bad percentage {s:?}: expected e.g. \"10%\" or \"2.5%\", between 0% and 100%");
    let num = s.strip_suffix('%').ok_or_else(bad)?;
    let d = Decimal::from_str_exact(num).map_err(|_| bad())?;
    if d < Decimal::ZERO || d > Decimal::ONE_HUNDRED {
        return Err(bad());
    }
    let bp = d * Decimal::ONE_HUNDRED;
    if bp.fract() != Decimal::ZERO {
        return Err(format!("bad percentage {s:?}: at most two decimals"));
    }
    u16::try_from(bp.mantissa() / 10i128.pow(bp.scale())).map_err(|_| bad())
}

pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("bad date {s:?}: expected YYYY-MM-DD"))
}

pub fn parse_time_of_day(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s, "%H:%M")
        .map_err(|_| format!("bad time of day {s:?}: expected HH:MM"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d").unwrap(), Duration::days(90));
        assert_eq!(parse_duration("4h").unwrap(), Duration::hours(4));
        assert_eq!(parse_duration("2w").unwrap(), Duration::days(14));
        assert_eq!(parse_duration("30m").unwrap(), Duration::minutes(30));
        for bad in [
            "",
            "d",
            "90",
            "90 d",
            "1.5d",
            "0d",
            "-3d",
            "3y",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percents() {
        assert_eq!(parse_percent("10%").unwrap(), 1000);
        assert_eq!(parse_percent("2.5%").unwrap(), 250);
        assert_eq!(parse_percent("0%").unwrap(), 0);
        assert_eq!(parse_percent("100%").unwrap(), 10000);
        for bad in ["10", "101%", "-1%", "1.234%", "ten%"] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
    }
}
