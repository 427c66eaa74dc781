//! A limit shared by every worker of a queue, kept in the state store.
//!
//! The limit's text (a [`Timetable`]) and the fleet's pacing time `tat` are
//! one record per queue. A worker reads the limit at most every
//! [`FLEET_REFRESH`], so a changed limit takes effect within that time
//! without a restart, and before each read reserves its bytes with
//! [`SharedBandwidth::reserve`]: one atomic step that moves the shared
//! `tat` (see [`super`]). Each worker's own clock gives "now"; clocks that
//! differ by `d` shift a reservation by at most `d`, not the rate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Pace, Timetable};
use crate::state::StateError;

/// How often a worker reads the fleet's limit again.
pub const FLEET_REFRESH: Duration = Duration::from_secs(30);

/// The state store's side of a fleet-wide limit.
#[async_trait::async_trait]
pub trait SharedBandwidth: Send + Sync + std::fmt::Debug {
    /// The limit of `name` (a timetable's text), if one is set.
    async fn fleet_limit(&self, name: &str) -> Result<Option<String>, StateError>;

    /// Sets (or, with `None`, removes) the limit of `name`.
    async fn set_fleet_limit(&self, name: &str, limit: Option<&str>) -> Result<(), StateError>;

    /// Reserves `bytes` at `rate` bytes per second on `name`'s shared
    /// schedule, atomically: `tat = max(tat, now_us) + bytes / rate`.
    /// Returns the new `tat`, microseconds since the epoch: when the bytes
    /// may be read.
    async fn reserve(&self, name: &str, bytes: u64, rate: u64, now_us: i64) -> Result<i64, StateError>;
}

/// Microseconds since the epoch.
fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// One worker's view of its fleet's limit.
#[derive(Debug)]
pub struct FleetPacer {
    store: Arc<dyn SharedBandwidth>,
    name: String,
    /// The limit as last read, and when.
    limit: Mutex<Option<(Instant, Option<Timetable>)>>,
    refresh: Duration,
    rate: AtomicU64,
    warned: AtomicBool,
}

impl FleetPacer {
    /// The pacer of the fleet sharing `name` (the queue's name).
    pub fn new(store: Arc<dyn SharedBandwidth>, name: String) -> Self {
        Self {
            store,
            name,
            limit: Mutex::new(None),
            refresh: FLEET_REFRESH,
            rate: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        }
    }

    /// Reads the limit again every `refresh` instead of [`FLEET_REFRESH`].
    pub fn refresh_every(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// The limit, read again when older than the refresh period.
    async fn timetable(&self) -> Result<Option<Timetable>, StateError> {
        let cached = self.limit.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((_, t)) = cached.filter(|(read, _)| read.elapsed() < self.refresh) {
            return Ok(t);
        }
        let text = self.store.fleet_limit(&self.name).await?;
        let t = match text.as_deref().map(str::parse::<Timetable>) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                tracing::warn!(queue = %self.name, error = %e, "The fleet's bandwidth limit cannot be read; no fleet limit applies until it is set again.");
                None
            }
            None => None,
        };
        *self.limit.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), t.clone()));
        Ok(t)
    }

    async fn try_take(&self, bytes: u64) -> Result<(), StateError> {
        let rate = self
            .timetable()
            .await?
            .and_then(|t| t.rate_at(chrono::Local::now().naive_local()));
        self.rate.store(rate.unwrap_or(0), Ordering::Relaxed);
        crate::metrics::bandwidth_limit("fleet", rate);
        let Some(rate) = rate else {
            return Ok(());
        };
        let now = now_us();
        let until = self.store.reserve(&self.name, bytes, rate, now).await?;
        let wait = Duration::from_micros(until.saturating_sub(now_us()).max(0) as u64);
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Pace for FleetPacer {
    async fn take(&self, bytes: u64) {
        if let Err(e) = self.try_take(bytes).await {
            // The copy goes on: a state store that cannot pace is reported,
            // not allowed to stop the transfer.
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(queue = %self.name, error = %e, "The fleet's bandwidth limit could not be applied to a read; reads go on unpaced while the state store fails.");
            }
        }
    }

    fn current(&self) -> Option<u64> {
        Some(self.rate.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::state::EmbeddedStateStore;

    #[tokio::test]
    async fn a_changed_fleet_limit_applies_at_the_next_refresh_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStateStore::new(Db::open(&dir.path().join("s.sqlite")).unwrap()));
        let pacer = FleetPacer::new(store.clone(), "q".into()).refresh_every(Duration::from_millis(100));
        pacer.take(1).await;
        assert_eq!(pacer.current(), None, "no fleet limit set");
        store.set_fleet_limit("q", Some("64M")).await.unwrap();
        pacer.take(1).await;
        assert_eq!(pacer.current(), None, "the limit read last is kept until the refresh");
        tokio::time::sleep(Duration::from_millis(150)).await;
        pacer.take(1).await;
        assert_eq!(pacer.current(), Some(64 << 20), "read again after the refresh");
        let t0 = Instant::now();
        pacer.take(16 << 20).await;
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(240) && took < Duration::from_secs(2),
            "16 MiB at 64 MiB/s waits a quarter second: {took:?}"
        );
        store.set_fleet_limit("q", None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        pacer.take(1 << 30).await;
        assert_eq!(pacer.current(), None, "removed: no limit");
    }
}
