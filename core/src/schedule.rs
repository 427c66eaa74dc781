//! When the finder runs: `once`, at a fixed rate (`rate:15m`), or on a cron
//! expression (`cron:0 */6 * * *`, five fields, UTC, parsed by `croner`).
//!
//! A rate counts from the start of the previous run; a run that takes longer
//! than the rate is followed by the next one at once (runs never overlap).
//! A cron schedule runs at the next matching minute after the previous run
//! ended.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

/// A finder schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// One run, then exit.
    Once,
    /// A run every interval.
    Rate(Duration),
    /// Runs at the times a cron expression matches (UTC).
    Cron(Box<croner::Cron>, String),
}

impl Schedule {
    /// Parses `once`, `rate:DURATION` or `cron:EXPRESSION`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "once" {
            return Ok(Schedule::Once);
        }
        if let Some(d) = s.strip_prefix("rate:") {
            let d = humantime::parse_duration(d.trim())
                .map_err(|e| format!("{s:?}: {e}; write a duration like rate:15m or rate:1h"))?;
            if d < Duration::from_secs(1) {
                return Err(format!("{s:?}: the rate must be at least one second"));
            }
            return Ok(Schedule::Rate(d));
        }
        if let Some(expr) = s.strip_prefix("cron:") {
            let expr = expr.trim();
            if expr.split_whitespace().count() != 5 {
                return Err(format!(
                    "{s:?}: a cron expression has five fields: minute hour day-of-month month day-of-week, e.g. cron:0 */6 * * *"
                ));
            }
            let cron: croner::Cron = expr.parse().map_err(|e| format!("{s:?}: {e}"))?;
            return Ok(Schedule::Cron(Box::new(cron), expr.to_string()));
        }
        Err(format!(
            "{s:?}: expected once, rate:DURATION (rate:15m) or cron:EXPRESSION (cron:0 */6 * * *)"
        ))
    }

    /// When the next run starts, given when the last one started and ended;
    /// `None` for [`Schedule::Once`].
    pub fn next(&self, started: SystemTime, ended: SystemTime) -> Option<SystemTime> {
        match self {
            Schedule::Once => None,
            Schedule::Rate(d) => Some((started + *d).max(ended)),
            Schedule::Cron(c, _) => {
                let after: DateTime<Utc> = ended.into();
                c.find_next_occurrence(&after, false).ok().map(SystemTime::from)
            }
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Once => f.write_str("once"),
            Schedule::Rate(d) => write!(f, "rate:{}", humantime::format_duration(*d)),
            Schedule::Cron(_, e) => write!(f, "cron:{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_plans() {
        assert!(matches!(Schedule::parse("once").unwrap(), Schedule::Once));
        let r = Schedule::parse("rate:15m").unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            r.next(t0, t0 + Duration::from_secs(60)),
            Some(t0 + Duration::from_secs(900))
        );
        assert_eq!(
            r.next(t0, t0 + Duration::from_secs(1000)),
            Some(t0 + Duration::from_secs(1000)),
            "a long run is followed at once"
        );
        let c = Schedule::parse("cron:0 */6 * * *").unwrap();
        // 1_800_000_000 is 2027-01-15T08:00:00Z; the next 6-hour mark is 12:00.
        assert_eq!(c.next(t0, t0), Some(t0 + Duration::from_secs(4 * 3600)));
        assert_eq!(c.to_string(), "cron:0 */6 * * *");
        for bad in ["daily", "rate:soon", "rate:0s", "cron:* * *", "cron:61 * * * *"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}
