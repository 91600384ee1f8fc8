//! When an e-mail may go: quiet hours in the customer's time zone (across midnight and
//! daylight-saving changes), expiry, and the back-off between tries. Pure: times are passed in.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// If `at` falls in the quiet hours `from`–`until` (local times in `tz`; `from` after `until`
/// means the hours run across midnight), the first instant after them; else None.
///
/// The end is `until` on the local calendar. On a day when the clocks skip that time (spring
/// forward), it is the first local time after the gap; when they read it twice (fall back),
/// the first of the two.
pub fn quiet_hours_end(
    at: DateTime<Utc>,
    tz: Tz,
    from: NaiveTime,
    until: NaiveTime,
) -> Option<DateTime<Utc>> {
    if from == until {
        return None;
    }
    let local = at.with_timezone(&tz);
    let (date, time) = (local.date_naive(), local.time());
    let end_date = if from < until {
        // Within one day, e.g. 12:00–14:00.
        (from <= time && time < until).then_some(date)?
    } else if time >= from {
        // Evening part of an overnight window: ends tomorrow morning.
        date.succ_opt()?
    } else if time < until {
        // Morning part: ends today.
        date
    } else {
        return None;
    };
    let end = first_instant_at(tz, end_date.and_time(until));
    if end > at {
        return Some(end);
    }
    // On a fall-back night, `at` may be in the second pass of the hour the end falls in: the
    // quiet hours end at the second `until`, or have ended.
    match tz.from_local_datetime(&end_date.and_time(until)) {
        LocalResult::Ambiguous(_, second) if second.with_timezone(&Utc) > at => {
            Some(second.with_timezone(&Utc))
        }
        _ => None,
    }
}

/// The first instant at which the local clock in `tz` reads `local` or, if it never does that
/// day (a skipped hour), the first local time after it.
fn first_instant_at(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = local;
    // Gaps are at most a few hours; step a minute at a time past them.
    for _ in 0..(6 * 60) {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => probe += Duration::minutes(1),
        }
    }
    // Not reached for real time zones; fall back to reading the local time as UTC.
    Utc.from_utc_datetime(&local)
}

/// Whether an e-mail scheduled for `scheduled_for` may no longer go at `at`.
pub fn expired(scheduled_for: DateTime<Utc>, expire_after: Duration, at: DateTime<Utc>) -> bool {
    at > scheduled_for + expire_after
}

/// The wait before try `tries + 1` after `tries` failed ones: exponential from `base`, at most
/// `max`, with "equal jitter" (half fixed, half random by `jitter` in 0..1) so that many
/// e-mails failing together do not come back together, yet none comes back at once.
pub fn backoff(
    tries: i64,
    base: std::time::Duration,
    max: std::time::Duration,
    jitter: f64,
) -> std::time::Duration {
    let exponent = u32::try_from(tries.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let full = base.saturating_mul(1u32 << exponent).min(max);
    let half = full / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A `Retry-After` header: a number of seconds or an HTTP date (RFC 9110), as a wait from `now`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<std::time::Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(std::time::Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn hm(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }

    const BERLIN: Tz = chrono_tz::Europe::Berlin;
    const NEW_YORK: Tz = chrono_tz::America::New_York;

    #[test]
    fn overnight_quiet_hours_in_berlin() {
        let q = |at| quiet_hours_end(t(at), BERLIN, hm("21:00"), hm("08:00"));
        // 20:59 CET is not quiet; 21:00 is, until 08:00 CET (07:00 UTC) the next day.
        assert_eq!(q("2026-01-15T19:59:00Z"), None);
        assert_eq!(q("2026-01-15T20:00:00Z"), Some(t("2026-01-16T07:00:00Z")));
        // After midnight it ends the same morning.
        assert_eq!(q("2026-01-16T02:30:00Z"), Some(t("2026-01-16T07:00:00Z")));
        // 08:00 itself is no longer quiet.
        assert_eq!(q("2026-01-16T07:00:00Z"), None);
    }

    #[test]
    fn the_same_instant_is_quiet_in_one_zone_and_not_in_another() {
        // 22:00 UTC is 23:00 in Berlin (quiet) and 17:00 in New York (not).
        let at = t("2026-01-15T22:00:00Z");
        assert_eq!(
            quiet_hours_end(at, BERLIN, hm("21:00"), hm("08:00")),
            Some(t("2026-01-16T07:00:00Z"))
        );
        assert_eq!(
            quiet_hours_end(at, NEW_YORK, hm("21:00"), hm("08:00")),
            None
        );
        // 03:00 UTC is 22:00 in New York: quiet until 08:00 EST = 13:00 UTC.
        assert_eq!(
            quiet_hours_end(
                t("2026-01-16T03:00:00Z"),
                NEW_YORK,
                hm("21:00"),
                hm("08:00")
            ),
            Some(t("2026-01-16T13:00:00Z"))
        );
    }

    #[test]
    fn quiet_hours_across_daylight_saving_changes() {
        // Berlin springs forward on 2026-03-29 (02:00 CET -> 03:00 CEST): 23:00 CET on the
        // 28th waits until 08:00 CEST, which is 06:00 UTC, not 07:00.
        assert_eq!(
            quiet_hours_end(t("2026-03-28T22:00:00Z"), BERLIN, hm("21:00"), hm("08:00")),
            Some(t("2026-03-29T06:00:00Z"))
        );
        // And falls back on 2026-10-25 (03:00 CEST -> 02:00 CET): 08:00 CET is 07:00 UTC.
        assert_eq!(
            quiet_hours_end(t("2026-10-24T20:00:00Z"), BERLIN, hm("21:00"), hm("08:00")),
            Some(t("2026-10-25T07:00:00Z"))
        );
        // New York springs forward on 2026-03-08.
        assert_eq!(
            quiet_hours_end(
                t("2026-03-08T03:00:00Z"),
                NEW_YORK,
                hm("21:00"),
                hm("08:00")
            ),
            Some(t("2026-03-08T12:00:00Z"))
        );
    }

    #[test]
    fn an_end_in_a_skipped_hour_is_the_first_time_after_it() {
        // Quiet until 02:30, on the night 02:00-03:00 does not exist: it ends at 03:00 CEST.
        assert_eq!(
            quiet_hours_end(t("2026-03-28T23:00:00Z"), BERLIN, hm("23:00"), hm("02:30")),
            Some(t("2026-03-29T01:00:00Z"))
        );
        // Quiet until 02:30 on the night 02:00-03:00 happens twice: the first 02:30 (CEST).
        assert_eq!(
            quiet_hours_end(t("2026-10-24T22:00:00Z"), BERLIN, hm("23:00"), hm("02:30")),
            Some(t("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn in_the_second_pass_of_a_repeated_hour_the_end_is_not_in_the_past() {
        // 00:00–02:30 quiet; 02:15 CET on 2026-10-25 is the second 02:15 (01:15 UTC): the
        // first 02:30 (00:30 UTC) has passed, the second (01:30 UTC) has not.
        assert_eq!(
            quiet_hours_end(t("2026-10-25T01:15:00Z"), BERLIN, hm("00:00"), hm("02:30")),
            Some(t("2026-10-25T01:30:00Z"))
        );
        // 02:45 CET (01:45 UTC), after both: not quiet.
        assert_eq!(
            quiet_hours_end(t("2026-10-25T01:45:00Z"), BERLIN, hm("00:00"), hm("02:30")),
            None
        );
    }

    #[test]
    fn daytime_windows_and_empty_windows() {
        let q = |at| quiet_hours_end(t(at), Tz::UTC, hm("12:00"), hm("14:00"));
        assert_eq!(q("2026-01-15T11:59:00Z"), None);
        assert_eq!(q("2026-01-15T12:00:00Z"), Some(t("2026-01-15T14:00:00Z")));
        assert_eq!(q("2026-01-15T14:00:00Z"), None);
        assert_eq!(
            quiet_hours_end(t("2026-01-15T12:00:00Z"), Tz::UTC, hm("12:00"), hm("12:00")),
            None
        );
    }

    #[test]
    fn expiry_counts_from_the_schedule() {
        let due = t("2026-01-15T12:00:00Z");
        assert!(!expired(due, Duration::days(3), t("2026-01-18T12:00:00Z")));
        assert!(expired(due, Duration::days(3), t("2026-01-18T12:00:01Z")));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        use std::time::Duration as D;
        let b = |tries, jitter| backoff(tries, D::from_secs(1), D::from_secs(60), jitter);
        assert_eq!(b(1, 0.0), D::from_millis(500));
        assert_eq!(b(1, 1.0), D::from_secs(1));
        assert_eq!(b(3, 0.0), D::from_secs(2));
        assert_eq!(b(3, 0.5), D::from_secs(3));
        assert_eq!(b(20, 1.0), D::from_secs(60));
        assert_eq!(b(200, 0.0), D::from_secs(30));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = t("2015-10-21T07:28:00Z");
        assert_eq!(
            parse_retry_after("120", now),
            Some(std::time::Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now),
            Some(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(std::time::Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
