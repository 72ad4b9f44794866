//! Time arguments as Splunk users write them: relative time modifiers (`now`, `-70m@m`,
//! `-1d@d`, `@w1`, `-1mon@mon+2h`), RFC 3339 timestamps, `YYYY-MM-DD` dates and epoch seconds.
//! Arithmetic and snapping happen in a time zone ([`parse_time_in`]; UTC for [`parse_time`]), as
//! Splunk does in the user's zone: `@d` is local midnight, `-1d` the same local time a day before.
//! Also durations (`24h`, `90m`, `7d`) for look-backs, and the one time-range type
//! ([`Window`]) that scheduled runs and ad hoc searches share.

use chrono::offset::LocalResult;
use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc};

/// Earliest time of "all time": 0001-01-01T00:00:00Z, in µs.
pub const MIN_TIME_US: i64 = -62_135_596_800_000_000;
/// Latest time of "all time": 10000-01-01T00:00:00Z (exclusive), in µs.
pub const MAX_TIME_US: i64 = 253_402_300_800_000_000;

/// A time range, `[earliest, latest)`: a scheduled run's window, or what an ad hoc search covers
/// ([`Window::all_time`] when no bound is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub earliest: DateTime<Utc>,
    pub latest: DateTime<Utc>,
}

impl Window {
    /// Years 1 to 9999: every time the lake can hold.
    pub fn all_time() -> Self {
        Window {
            earliest: DateTime::from_timestamp_micros(MIN_TIME_US).expect("in range"),
            latest: DateTime::from_timestamp_micros(MAX_TIME_US).expect("in range"),
        }
    }

    /// `[earliest, latest)`, each end all time's where it is not given.
    pub fn between(earliest: Option<DateTime<Utc>>, latest: Option<DateTime<Utc>>) -> Self {
        let all = Window::all_time();
        Window { earliest: earliest.unwrap_or(all.earliest), latest: latest.unwrap_or(all.latest) }
    }

    pub fn earliest_us(&self) -> i64 {
        self.earliest.timestamp_micros()
    }

    pub fn latest_us(&self) -> i64 {
        self.latest.timestamp_micros()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad time {input:?}: {reason} (use e.g. now, -70m@m, -1d@d, 2026-11-03T14:00:00Z)")]
pub struct TimeError {
    input: String,
    reason: String,
}

fn err(input: &str, reason: impl Into<String>) -> TimeError {
    TimeError { input: input.to_string(), reason: reason.into() }
}

/// A unit of a relative time modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    /// `w`, or `w0`..`w6` (week starting on that weekday, 0 = Sunday) when snapping.
    Week(u32),
    Month,
    Quarter,
    Year,
}

fn parse_unit(s: &str) -> Option<Unit> {
    Some(match s {
        "s" | "sec" | "secs" | "second" | "seconds" => Unit::Second,
        "m" | "min" | "mins" | "minute" | "minutes" => Unit::Minute,
        "h" | "hr" | "hrs" | "hour" | "hours" => Unit::Hour,
        "d" | "day" | "days" => Unit::Day,
        "w" | "week" | "weeks" | "w0" | "w7" => Unit::Week(0),
        "w1" => Unit::Week(1),
        "w2" => Unit::Week(2),
        "w3" => Unit::Week(3),
        "w4" => Unit::Week(4),
        "w5" => Unit::Week(5),
        "w6" => Unit::Week(6),
        "mon" | "month" | "months" => Unit::Month,
        "q" | "qtr" | "qtrs" | "quarter" | "quarters" => Unit::Quarter,
        "y" | "yr" | "yrs" | "year" | "years" => Unit::Year,
        _ => return None,
    })
}

/// A local wall-clock time in `tz`; in a gap (spring forward) the first valid instant after it,
/// in a fold (fall back) the earlier of the two.
fn local<Tz: TimeZone>(tz: &Tz, naive: NaiveDateTime) -> DateTime<Tz> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(a, _) => a,
        LocalResult::None => {
            // Walk forward minute by minute out of the gap (gaps are at most a few hours).
            let mut n = naive;
            loop {
                n += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&n).earliest() {
                    return t;
                }
            }
        }
    }
}

fn add<Tz: TimeZone>(t: DateTime<Tz>, n: i64, unit: Unit) -> Option<DateTime<Tz>> {
    let tz = t.timezone();
    // Days and longer move the wall clock (as Splunk does), seconds to hours move the instant.
    let days = |k: i64| -> Option<DateTime<Tz>> {
        let naive = t.naive_local().checked_add_signed(Duration::try_days(k)?)?;
        Some(local(&tz, naive))
    };
    let months = |k: i64| -> Option<DateTime<Tz>> {
        let m = Months::new(u32::try_from(k.unsigned_abs()).ok()?);
        let naive = t.naive_local();
        let naive = if k >= 0 { naive.checked_add_months(m) } else { naive.checked_sub_months(m) }?;
        Some(local(&tz, naive))
    };
    match unit {
        Unit::Second => t.checked_add_signed(Duration::try_seconds(n)?),
        Unit::Minute => t.checked_add_signed(Duration::try_minutes(n)?),
        Unit::Hour => t.checked_add_signed(Duration::try_hours(n)?),
        Unit::Day => days(n),
        Unit::Week(_) => days(n.checked_mul(7)?),
        Unit::Month => months(n),
        Unit::Quarter => months(n.checked_mul(3)?),
        Unit::Year => months(n.checked_mul(12)?),
    }
}

fn snap<Tz: TimeZone>(t: DateTime<Tz>, unit: Unit) -> DateTime<Tz> {
    let tz = t.timezone();
    let day = |d: NaiveDate| local(&tz, d.and_time(NaiveTime::MIN));
    match unit {
        // Subtract the local remainder: `with_second(0)` has no answer inside a repeated
        // (fall-back) hour, where the wall clock is ambiguous.
        Unit::Second => t.clone() - Duration::nanoseconds(t.nanosecond() as i64),
        Unit::Minute => t.clone() - Duration::nanoseconds(t.nanosecond() as i64) - Duration::seconds(t.second() as i64),
        Unit::Hour => {
            t.clone()
                - Duration::nanoseconds(t.nanosecond() as i64)
                - Duration::seconds(t.second() as i64)
                - Duration::minutes(t.minute() as i64)
        }
        Unit::Day => day(t.date_naive()),
        Unit::Week(start) => {
            let wd = t.weekday().num_days_from_sunday();
            let back = (wd + 7 - start) % 7;
            day(t.date_naive() - Duration::days(back as i64))
        }
        Unit::Month => day(t.date_naive().with_day(1).expect("day 1")),
        Unit::Quarter => {
            let m = (t.month0() / 3) * 3 + 1;
            day(NaiveDate::from_ymd_opt(t.year(), m, 1).expect("valid"))
        }
        Unit::Year => day(NaiveDate::from_ymd_opt(t.year(), 1, 1).expect("valid")),
    }
}

/// Parses a time argument relative to `now`, in UTC.
pub fn parse_time(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, TimeError> {
    parse_time_in(input, now)
}

/// Parses a time argument relative to `now`, snapping and moving by days in `now`'s time zone.
/// Dates without a zone (`YYYY-MM-DD`) are local midnight in that zone.
pub fn parse_time_in<Tz: TimeZone>(input: &str, now: DateTime<Tz>) -> Result<DateTime<Tz>, TimeError> {
    let tz = now.timezone();
    let s = input.trim();
    if s.is_empty() {
        return Err(err(input, "empty"));
    }
    if s == "now" {
        return Ok(now);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&tz));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(local(&tz, d.and_time(NaiveTime::MIN)));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = s.parse().map_err(|_| err(input, "epoch seconds out of range"))?;
        return DateTime::from_timestamp(secs, 0)
            .map(|t| t.with_timezone(&tz))
            .ok_or_else(|| err(input, "epoch seconds out of range"));
    }
    if !s.starts_with(['+', '-', '@']) {
        return Err(err(input, "not a relative time, RFC 3339 timestamp, date or epoch"));
    }
    let mut t = now;
    let mut rest = s;
    while !rest.is_empty() {
        let (is_snap, sign) = match rest.as_bytes()[0] {
            b'@' => (true, 1),
            b'+' => (false, 1),
            b'-' => (false, -1),
            _ => return Err(err(input, format!("unexpected {:?}", &rest[..1]))),
        };
        rest = &rest[1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: i64 = if digits == 0 {
            1
        } else {
            rest[..digits].parse().map_err(|_| err(input, "number too large"))?
        };
        rest = &rest[digits..];
        let unit_len = rest.find(['+', '-', '@']).unwrap_or(rest.len());
        let unit_str = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit = parse_unit(unit_str).ok_or_else(|| err(input, format!("unknown time unit {unit_str:?}")))?;
        if is_snap {
            if digits != 0 {
                return Err(err(input, "a snap (@) takes a unit, not a number"));
            }
            t = snap(t, unit);
        } else {
            if unit_str.is_empty() {
                return Err(err(input, "missing time unit"));
            }
            t = add(t, sign * n, unit).ok_or_else(|| err(input, "out of range"))?;
        }
    }
    Ok(t)
}

/// Parses a duration: `24h`, `90m`, `7d`, `1w`, `30s`, or `0`.
pub fn parse_duration(input: &str) -> Result<Duration, TimeError> {
    let s = input.trim();
    if s == "0" {
        return Ok(Duration::zero());
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(err(input, "a duration is a number and a unit, e.g. 24h"));
    }
    let n: i64 = s[..digits].parse().map_err(|_| err(input, "number too large"))?;
    let d = match parse_unit(&s[digits..]) {
        Some(Unit::Second) => Duration::try_seconds(n),
        Some(Unit::Minute) => Duration::try_minutes(n),
        Some(Unit::Hour) => Duration::try_hours(n),
        Some(Unit::Day) => Duration::try_days(n),
        Some(Unit::Week(0)) => Duration::try_weeks(n),
        _ => return Err(err(input, "units are s, m, h, d, w")),
    };
    d.ok_or_else(|| err(input, "out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn escu_window() {
        let now = at("2026-11-03T15:07:42.5Z");
        assert_eq!(parse_time("-70m@m", now).unwrap(), at("2026-11-03T13:57:00Z"));
        assert_eq!(parse_time("-10m@m", now).unwrap(), at("2026-11-03T14:57:00Z"));
        assert_eq!(parse_time("now", now).unwrap(), now);
    }

    #[test]
    fn snaps() {
        let now = at("2026-11-04T15:07:42Z"); // a Wednesday
        assert_eq!(parse_time("-1d@d", now).unwrap(), at("2026-11-03T00:00:00Z"));
        assert_eq!(parse_time("@d", now).unwrap(), at("2026-11-04T00:00:00Z"));
        assert_eq!(parse_time("@h", now).unwrap(), at("2026-11-04T15:00:00Z"));
        assert_eq!(parse_time("@w0", now).unwrap(), at("2026-11-01T00:00:00Z"));
        assert_eq!(parse_time("@w1", now).unwrap(), at("2026-11-02T00:00:00Z"));
        assert_eq!(parse_time("@mon", now).unwrap(), at("2026-11-01T00:00:00Z"));
        assert_eq!(parse_time("@q", now).unwrap(), at("2026-10-01T00:00:00Z"));
        assert_eq!(parse_time("-1y@y", now).unwrap(), at("2025-01-01T00:00:00Z"));
        assert_eq!(parse_time("-1mon@mon+2h", now).unwrap(), at("2026-10-01T02:00:00Z"));
        assert_eq!(parse_time("+1h", now).unwrap(), at("2026-11-04T16:07:42Z"));
        assert_eq!(parse_time("-d", now).unwrap(), at("2026-11-03T15:07:42Z"));
    }

    #[test]
    fn absolute_forms() {
        let now = Utc::now();
        assert_eq!(parse_time("2026-11-03T14:00:00Z", now).unwrap(), at("2026-11-03T14:00:00Z"));
        assert_eq!(parse_time("2026-11-03T16:00:00+02:00", now).unwrap(), at("2026-11-03T14:00:00Z"));
        assert_eq!(parse_time("2026-11-03", now).unwrap(), at("2026-11-03T00:00:00Z"));
        assert_eq!(parse_time("0", now).unwrap(), at("1970-01-01T00:00:00Z"));
    }

    #[test]
    fn snapping_in_a_time_zone_across_dst() {
        let tz = chrono_tz::Europe::Berlin;
        // 2026-10-25: clocks go back at 03:00 CEST (01:00 UTC) to 02:00 CET.
        let now = tz.from_utc_datetime(&at("2026-10-25T10:30:00Z").naive_utc()); // 11:30 CET
        assert_eq!(parse_time_in("@d", now).unwrap().with_timezone(&Utc), at("2026-10-24T22:00:00Z"));
        assert_eq!(parse_time_in("-1d@d", now).unwrap().with_timezone(&Utc), at("2026-10-23T22:00:00Z"));
        // -1d is the same wall-clock time the day before: 25 hours earlier across the change.
        assert_eq!(parse_time_in("-1d", now).unwrap().with_timezone(&Utc), at("2026-10-24T09:30:00Z"));
        assert_eq!(parse_time_in("-70m@m", now).unwrap().with_timezone(&Utc), at("2026-10-25T09:20:00Z"));
        assert_eq!(parse_time_in("2026-10-25", now).unwrap().with_timezone(&Utc), at("2026-10-24T22:00:00Z"));
    }

    #[test]
    fn errors() {
        let now = Utc::now();
        for bad in ["", "yesterday", "-70x", "-5@m", "@5m", "-", "--1d", "-99999999999999999999d"] {
            assert!(parse_time(bad, now).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::hours(24));
        assert_eq!(parse_duration("90m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("0").unwrap(), Duration::zero());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("3mon").is_err());
    }
}
