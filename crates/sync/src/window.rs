//! Policy sync windows: may a new revision be applied now, and if not, until when must it wait.

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

use plumb_api::policy::{SyncWindow, WindowAction};

/// Why a window could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The schedule is not a five-field cron expression.
    #[error("window schedule {schedule:?}: {reason}")]
    Schedule {
        /// The schedule as written.
        schedule: String,
        /// What is wrong.
        reason: String,
    },
    /// The time zone is unknown.
    #[error("window time zone {0:?} is unknown")]
    TimeZone(String),
}

/// Whether applying a new revision is allowed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Apply.
    Open,
    /// Wait; `until` is when it may open again, if known within a year.
    Closed {
        /// When the wait ends.
        until: Option<Timestamp>,
    },
}

/// A five-field cron schedule (minute, hour, day of month, month, day of week; lists, ranges,
/// steps and names), parsed and evaluated by the `croner` crate. As in cron, when both the day of
/// month and the day of week are restricted, either one matching is enough.
#[derive(Debug, Clone)]
pub struct Schedule(croner::Cron);

impl Schedule {
    /// Parses `minute hour day-of-month month day-of-week`.
    pub fn parse(text: &str) -> Result<Self, WindowError> {
        let err = |reason: String| WindowError::Schedule {
            schedule: text.to_owned(),
            reason,
        };
        let fields = text.split_whitespace().count();
        if fields != 5 {
            return Err(err(format!("expected 5 fields, found {fields}")));
        }
        text.parse::<croner::Cron>()
            .map(Self)
            .map_err(|e| err(e.to_string()))
    }

    /// Whether the schedule fires at the minute of `t`.
    pub fn matches(&self, t: &Zoned) -> bool {
        let minute = t.with().second(0).subsec_nanosecond(0).build();
        minute.is_ok_and(|m| self.0.is_time_matching(&m).unwrap_or(false))
    }

    /// The first time after `t` at which the schedule fires.
    pub fn next_after(&self, t: &Zoned) -> Option<Zoned> {
        self.0.find_next_occurrence(t, false).ok()
    }
}

struct Parsed {
    action: WindowAction,
    schedule: Schedule,
    duration: std::time::Duration,
    tz: TimeZone,
}

fn parse(w: &SyncWindow) -> Result<Parsed, WindowError> {
    let tz = match &w.time_zone {
        Some(name) => TimeZone::get(name).map_err(|_| WindowError::TimeZone(name.clone()))?,
        None => TimeZone::UTC,
    };
    Ok(Parsed {
        action: w.action,
        schedule: Schedule::parse(&w.schedule)?,
        duration: w.duration.get(),
        tz,
    })
}

fn minute_floor(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second() - t.as_second().rem_euclid(60)).unwrap_or(t)
}

/// The end of the occurrence of `w` that covers `now`, if one does. Looks back at most a week.
fn active_until(w: &Parsed, now: Timestamp) -> Option<Timestamp> {
    let dur = w
        .duration
        .min(std::time::Duration::from_secs(7 * 24 * 3600));
    let minutes = (dur.as_secs() / 60) as i64;
    let start = minute_floor(now);
    (0..=minutes)
        .filter_map(|m| start.checked_sub(m.minutes()).ok())
        .filter(|s| w.schedule.matches(&s.to_zoned(w.tz.clone())))
        .filter_map(|s| {
            s.checked_add(jiff::SignedDuration::try_from(w.duration).ok()?)
                .ok()
        })
        .filter(|end| *end > now)
        .max()
}

/// The next time after `now` at which `w` opens, looking at most a year ahead.
fn next_start(w: &Parsed, now: Timestamp) -> Option<Timestamp> {
    let next = w
        .schedule
        .next_after(&now.to_zoned(w.tz.clone()))?
        .timestamp();
    let horizon = now
        .checked_add(jiff::SignedDuration::from_hours(366 * 24))
        .ok()?;
    (next <= horizon).then_some(next)
}

/// Whether `windows` let a new revision be applied at `now`: never inside a deny window; with
/// any allow window, only inside one.
pub fn verdict(windows: &[&SyncWindow], now: Timestamp) -> Result<Verdict, WindowError> {
    let parsed: Vec<Parsed> = windows.iter().map(|w| parse(w)).collect::<Result<_, _>>()?;
    let denied_until = parsed
        .iter()
        .filter(|w| w.action == WindowAction::Deny)
        .filter_map(|w| active_until(w, now))
        .max();
    if let Some(until) = denied_until {
        return Ok(Verdict::Closed { until: Some(until) });
    }
    let allows: Vec<&Parsed> = parsed
        .iter()
        .filter(|w| w.action == WindowAction::Allow)
        .collect();
    if allows.is_empty() || allows.iter().any(|w| active_until(w, now).is_some()) {
        return Ok(Verdict::Open);
    }
    let until = allows.iter().filter_map(|w| next_start(w, now)).min();
    Ok(Verdict::Closed { until })
}

#[cfg(test)]
mod tests {
    use plumb_api::Duration;

    use super::*;

    fn window(
        action: WindowAction,
        schedule: &str,
        duration: &str,
        tz: Option<&str>,
    ) -> SyncWindow {
        SyncWindow {
            action,
            schedule: schedule.to_owned(),
            duration: duration.parse::<Duration>().unwrap(),
            time_zone: tz.map(str::to_owned),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn no_windows_means_open() {
        assert_eq!(
            verdict(&[], at("2026-11-23T10:00:00Z")).unwrap(),
            Verdict::Open
        );
    }

    #[test]
    fn allow_window_on_weekday_mornings() {
        let w = window(WindowAction::Allow, "0 9 * * 1-5", "2h", None);
        // Monday 2026-11-23.
        assert_eq!(
            verdict(&[&w], at("2026-11-23T10:30:00Z")).unwrap(),
            Verdict::Open
        );
        assert_eq!(
            verdict(&[&w], at("2026-11-23T11:30:00Z")).unwrap(),
            Verdict::Closed {
                until: Some(at("2026-11-24T09:00:00Z"))
            }
        );
        // Saturday waits for Monday.
        assert_eq!(
            verdict(&[&w], at("2026-11-28T10:00:00Z")).unwrap(),
            Verdict::Closed {
                until: Some(at("2026-11-30T09:00:00Z"))
            }
        );
    }

    #[test]
    fn deny_wins_over_allow_and_says_when_it_ends() {
        let allow = window(WindowAction::Allow, "* * * * *", "1m", None);
        let deny = window(WindowAction::Deny, "0 22 * * *", "8h", None);
        assert_eq!(
            verdict(&[&allow, &deny], at("2026-11-24T03:00:00Z")).unwrap(),
            Verdict::Closed {
                until: Some(at("2026-11-24T06:00:00Z"))
            }
        );
        assert_eq!(
            verdict(&[&allow, &deny], at("2026-11-24T07:00:00Z")).unwrap(),
            Verdict::Open
        );
    }

    #[test]
    fn time_zones_shift_the_schedule() {
        let w = window(
            WindowAction::Allow,
            "0 9 * * *",
            "1h",
            Some("Europe/Berlin"),
        );
        // 09:30 in Berlin (UTC+1 in November) is 08:30 UTC.
        assert_eq!(
            verdict(&[&w], at("2026-11-23T08:30:00Z")).unwrap(),
            Verdict::Open
        );
        assert!(matches!(
            verdict(&[&w], at("2026-11-23T09:30:00Z")).unwrap(),
            Verdict::Closed { .. }
        ));
    }

    #[test]
    fn bad_schedules_and_zones_are_errors() {
        for bad in ["* * * *", "61 * * * *", "*/0 * * * *", "a b c d e"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        let w = window(WindowAction::Allow, "* * * * *", "1m", Some("Mars/Olympus"));
        assert!(matches!(
            verdict(&[&w], Timestamp::now()),
            Err(WindowError::TimeZone(_))
        ));
    }

    #[test]
    fn names_steps_and_lists() {
        let s = Schedule::parse("*/15 8-10,14 * jan-mar mon,fri").unwrap();
        let t = at("2026-01-05T14:45:00Z").to_zoned(TimeZone::UTC);
        assert!(s.matches(&t));
        let t = at("2026-01-06T14:45:00Z").to_zoned(TimeZone::UTC);
        assert!(!s.matches(&t));
    }
}
