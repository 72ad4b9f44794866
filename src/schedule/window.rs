//! When a detection runs and what it searches: cron fire times in a time zone, and each fire
//! time's window, computed as Splunk does: the relative times (`-70m@m`, `-10m@m`) are taken from
//! the *scheduled* time, snapped in the zone; earliest inclusive, latest exclusive.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::detect::metadata;
pub use crate::time::Window;
use crate::time::parse_time_in;

#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("bad cron {cron:?}: {reason}")]
    Cron { cron: String, reason: croner::errors::CronError },
    /// A relative time of the schedule (`earliest`, `latest`).
    #[error(transparent)]
    Time(#[from] crate::time::TimeError),
    #[error("window of the run scheduled at {fire} is empty or inverted: [{earliest}, {latest})")]
    Empty { fire: DateTime<Utc>, earliest: DateTime<Utc>, latest: DateTime<Utc> },
}

/// A detection's schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    earliest: String,
    latest: String,
    tz: Tz,
}

impl Schedule {
    pub fn new(meta: &metadata::Schedule, tz: Tz) -> Result<Self, WindowError> {
        let cron = Cron::from_str(&meta.cron)
            .map_err(|reason| WindowError::Cron { cron: meta.cron.clone(), reason })?;
        let s = Schedule { cron, earliest: meta.earliest.clone(), latest: meta.latest.clone(), tz };
        // Fail early on bad relative times.
        s.window(Utc::now())?;
        Ok(s)
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t.with_timezone(&self.tz), false).ok().map(|f| f.with_timezone(&Utc))
    }

    /// The last fire time at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&t.with_timezone(&self.tz), true).ok().map(|f| f.with_timezone(&Utc))
    }

    /// Fire times `f` with `after < f <= until`, in order.
    pub fn fire_times(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = after;
        while let Some(f) = self.next_after(t) {
            if f > until {
                break;
            }
            out.push(f);
            t = f;
        }
        out
    }

    /// The window searched by the run scheduled at `fire`.
    pub fn window(&self, fire: DateTime<Utc>) -> Result<Window, WindowError> {
        let local = fire.with_timezone(&self.tz);
        let earliest = parse_time_in(&self.earliest, local)?;
        let latest = parse_time_in(&self.latest, local)?;
        let (earliest, latest) = (earliest.with_timezone(&Utc), latest.with_timezone(&Utc));
        if earliest >= latest {
            return Err(WindowError::Empty { fire, earliest, latest });
        }
        Ok(Window { earliest, latest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn escu(tz: Tz) -> Schedule {
        let meta = metadata::Schedule { cron: "0 * * * *".into(), earliest: "-70m@m".into(), latest: "-10m@m".into() };
        Schedule::new(&meta, tz).unwrap()
    }

    fn windows(s: &Schedule, after: &str, until: &str) -> Vec<(String, String, String)> {
        s.fire_times(at(after), at(until))
            .into_iter()
            .map(|f| {
                let w = s.window(f).unwrap();
                (f.to_rfc3339(), w.earliest.to_rfc3339(), w.latest.to_rfc3339())
            })
            .collect()
    }

    #[test]
    fn hourly_windows_across_an_hour_and_a_day_in_utc() {
        let s = escu(chrono_tz::UTC);
        assert_eq!(
            windows(&s, "2026-11-03T22:30:00Z", "2026-11-04T01:00:00Z"),
            vec![
                ("2026-11-03T23:00:00+00:00".into(), "2026-11-03T21:50:00+00:00".into(), "2026-11-03T22:50:00+00:00".into()),
                ("2026-11-04T00:00:00+00:00".into(), "2026-11-03T22:50:00+00:00".into(), "2026-11-03T23:50:00+00:00".into()),
                ("2026-11-04T01:00:00+00:00".into(), "2026-11-03T23:50:00+00:00".into(), "2026-11-04T00:50:00+00:00".into()),
            ]
        );
        // A fire time is its own boundary: after is exclusive, until inclusive.
        assert_eq!(s.fire_times(at("2026-11-04T00:00:00Z"), at("2026-11-04T00:59:59Z")), Vec::<DateTime<Utc>>::new());
        assert_eq!(s.last_at_or_before(at("2026-11-04T00:59:59Z")), Some(at("2026-11-04T00:00:00Z")));
        assert_eq!(s.next_after(at("2026-11-04T00:00:00Z")), Some(at("2026-11-04T01:00:00Z")));
    }

    #[test]
    fn hourly_windows_stay_contiguous_across_dst_changes() {
        let s = escu(chrono_tz::Europe::Berlin);
        for (after, until) in [
            // Fall back: 03:00 CEST → 02:00 CET on 2026-10-25 (01:00 UTC).
            ("2026-10-24T21:30:00Z", "2026-10-25T04:00:00Z"),
            // Spring forward: 02:00 CET → 03:00 CEST on 2026-03-29 (01:00 UTC).
            ("2026-03-28T21:30:00Z", "2026-03-29T04:00:00Z"),
        ] {
            let fires = s.fire_times(at(after), at(until));
            // Every real hour fires once: no hour is skipped or run twice.
            for pair in fires.windows(2) {
                assert_eq!(pair[1] - pair[0], chrono::Duration::hours(1), "{after}: {fires:?}");
            }
            assert_eq!(fires.len(), 7, "{after}: {fires:?}");
            let ws: Vec<Window> = fires.iter().map(|f| s.window(*f).unwrap()).collect();
            for pair in ws.windows(2) {
                assert_eq!(pair[0].latest, pair[1].earliest, "windows must tile: {ws:?}");
            }
        }
    }

    #[test]
    fn a_daily_schedule_snaps_to_local_midnight() {
        let meta = metadata::Schedule { cron: "0 0 * * *".into(), earliest: "-1d@d".into(), latest: "@d".into() };
        let s = Schedule::new(&meta, chrono_tz::Europe::Berlin).unwrap();
        let fires = s.fire_times(at("2026-10-24T12:00:00Z"), at("2026-10-27T00:00:00Z"));
        assert_eq!(fires, vec![at("2026-10-24T22:00:00Z"), at("2026-10-25T23:00:00Z"), at("2026-10-26T23:00:00Z")]);
        // The run at local midnight of the 26th searches the 25th: 25 hours long.
        let w = s.window(fires[1]).unwrap();
        assert_eq!((w.earliest, w.latest), (at("2026-10-24T22:00:00Z"), at("2026-10-25T23:00:00Z")));
        assert_eq!(w.latest - w.earliest, chrono::Duration::hours(25));
    }

    #[test]
    fn bad_schedules_are_errors() {
        let bad = metadata::Schedule { cron: "61 * * * *".into(), earliest: "-70m@m".into(), latest: "-10m@m".into() };
        assert!(matches!(Schedule::new(&bad, chrono_tz::UTC), Err(WindowError::Cron { .. })));
        let inverted = metadata::Schedule { cron: "0 * * * *".into(), earliest: "-10m".into(), latest: "-70m".into() };
        assert!(matches!(Schedule::new(&inverted, chrono_tz::UTC), Err(WindowError::Empty { .. })));
        let bad_time = metadata::Schedule { cron: "0 * * * *".into(), earliest: "-10x".into(), latest: "now".into() };
        let err = Schedule::new(&bad_time, chrono_tz::UTC).unwrap_err();
        assert!(matches!(err, WindowError::Time(_)), "{err:?}");
        assert!(err.to_string().starts_with("bad time \"-10x\": unknown time unit"), "{err}");
    }
}
