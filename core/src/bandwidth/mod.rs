//! Bandwidth limits: rates, timetables and pacing.
//!
//! A limit is written as rclone writes `--bwlimit`: a rate (`10M`, `512k`,
//! `1.5G`, `off`; bytes per second, `B K M G T` in powers of 1024, KiB when
//! no unit is given), or a timetable of space-separated `WHEN,RATE` entries
//! (`"08:00,512k 12:00,10M 23:00,off"`; `Mon-08:00,1M` applies on Mondays
//! only). An entry holds from its time until the next entry's, and the last
//! one of the week wraps round to the first. Times are local.
//!
//! **Pacing** is the virtual-scheduling form of a token bucket (GCRA) with
//! no burst: a pacer keeps a theoretical arrival time `tat`; taking `n`
//! bytes at rate `r` sets `tat = max(tat, now) + n / r`, and the caller
//! waits until that `tat` before it reads. Bytes read by time `t` never
//! exceed `r · t`, whatever the read sizes, and an idle pacer saves no
//! credit for later. The same step runs on one process's clock
//! ([`Pacer`]) and, for a limit shared by a fleet, against the state store
//! ([`SharedBandwidth`]), where every worker's reservation moves one shared
//! `tat` atomically (see [`FleetPacer`]). A crate limiter (governor) keeps
//! its state in process memory only, so it cannot be the shared one; one
//! small algorithm serves both.

mod fleet;
mod timetable;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use fleet::{FleetPacer, SharedBandwidth, FLEET_REFRESH};
pub use timetable::{format_rate, parse_rate, Timetable};

/// How long `bytes` take at `rate` bytes per second, in microseconds.
pub fn cost_us(bytes: u64, rate: u64) -> i64 {
    (u128::from(bytes) * 1_000_000 / u128::from(rate.max(1))).min(i64::MAX as u128) as i64
}

/// Something that paces reads: waits until `bytes` more may be read.
#[async_trait::async_trait]
pub trait Pace: Send + Sync + std::fmt::Debug {
    /// Waits until `bytes` may be read.
    async fn take(&self, bytes: u64);

    /// The rate in force, bytes per second (`None`: no limit now).
    fn current(&self) -> Option<u64>;
}

/// One process's limit (`--bwlimit`).
#[derive(Debug)]
pub struct Pacer {
    timetable: Timetable,
    tat: Mutex<Instant>,
    rate: AtomicU64,
}

impl Pacer {
    /// A pacer of `timetable`.
    pub fn new(timetable: Timetable) -> Self {
        Self {
            timetable,
            tat: Mutex::new(Instant::now()),
            rate: AtomicU64::new(0),
        }
    }

    /// Reserves `bytes` at the rate the timetable gives for local time
    /// `local`: returns when they may be read (`None`: no limit now).
    pub fn reserve(&self, bytes: u64, now: Instant, local: chrono::NaiveDateTime) -> Option<Instant> {
        let rate = self.timetable.rate_at(local);
        self.rate.store(rate.unwrap_or(0), Ordering::Relaxed);
        crate::metrics::bandwidth_limit("process", rate);
        let rate = rate?;
        let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        *tat = (*tat).max(now) + Duration::from_secs_f64(bytes as f64 / rate as f64);
        Some(*tat)
    }
}

#[async_trait::async_trait]
impl Pace for Pacer {
    async fn take(&self, bytes: u64) {
        if let Some(until) = self.reserve(bytes, Instant::now(), chrono::Local::now().naive_local()) {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    fn current(&self) -> Option<u64> {
        Some(self.rate.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }
}

/// The limits a process's reads obey: its own and its fleet's.
#[derive(Debug, Clone, Default)]
pub struct Pacing {
    /// `--bwlimit`.
    pub process: Option<Arc<Pacer>>,
    /// The limit shared by the queue's workers.
    pub fleet: Option<Arc<FleetPacer>>,
}

impl Pacing {
    /// Waits until `bytes` may be read under every limit.
    pub async fn take(&self, bytes: u64) {
        if let Some(p) = &self.process {
            p.take(bytes).await;
        }
        if let Some(f) = &self.fleet {
            f.take(bytes).await;
        }
    }

    /// The lowest rate in force, bytes per second (`None`: unlimited now).
    pub fn current(&self) -> Option<u64> {
        let p = self.process.as_ref().and_then(|p| p.current());
        let f = self.fleet.as_ref().and_then(|f| f.current());
        match (p, f) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(day: u32, h: u32, m: u32) -> chrono::NaiveDateTime {
        // 2026-11-30 is a Monday.
        NaiveDate::from_ymd_opt(2026, 11, 30 + day - 1)
            .or_else(|| NaiveDate::from_ymd_opt(2026, 12, day - 1))
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
    }

    #[test]
    fn a_pacer_holds_its_rate_and_saves_no_credit() {
        let p = Pacer::new("1M".parse().unwrap());
        let t0 = Instant::now();
        let local = at(1, 12, 0);
        let a = p.reserve(512 * 1024, t0, local).unwrap();
        let b = p.reserve(512 * 1024, t0, local).unwrap();
        assert_eq!(a - t0, Duration::from_millis(500));
        assert_eq!(b - t0, Duration::from_secs(1), "two reads share one second");
        let later = t0 + Duration::from_secs(60);
        let c = p.reserve(1024 * 1024, later, local).unwrap();
        assert_eq!(c - later, Duration::from_secs(1), "a minute idle is not a burst");
        assert_eq!(p.current(), Some(1024 * 1024));
    }

    #[test]
    fn a_pacer_switches_rate_at_a_timetable_boundary() {
        // A fake clock: the reservations give the local time explicitly.
        let p = Pacer::new("08:00,1M 12:00,4M 23:00,off".parse().unwrap());
        let t0 = Instant::now();
        let before = p.reserve(4 * 1024 * 1024, t0, at(2, 11, 59)).unwrap();
        assert_eq!(before - t0, Duration::from_secs(4), "1 MiB/s until noon");
        let t1 = t0 + Duration::from_secs(10);
        let after = p.reserve(4 * 1024 * 1024, t1, at(2, 12, 0)).unwrap();
        assert_eq!(after - t1, Duration::from_secs(1), "4 MiB/s from noon");
        assert_eq!(p.reserve(1 << 30, t1, at(2, 23, 30)), None, "off at night");
        assert_eq!(p.current(), None);
        let morning = p.reserve(1024 * 1024, t1, at(3, 7, 59));
        assert!(morning.is_none(), "still off before 08:00 the next day");
    }
}
