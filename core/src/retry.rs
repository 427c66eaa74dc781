//! Backoff with decorrelated jitter, and the retry loop every store call uses.
//!
//! Layers: the SDK's own retry is disabled (see [`crate::store::S3Store`]);
//! a failed store call is retried here, at most `attempts` times, only when
//! [`StoreError::is_retryable`](crate::store::StoreError::is_retryable) says so;
//! a job that still fails is given back to the queue with a delay, and after
//! the queue's maximum deliveries it is parked as dead.

use std::future::Future;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct BackoffConfig {
    /// First delay. Default 100 ms.
    pub initial: Duration,
    /// Largest delay. Default 20 s.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(20),
        }
    }
}

/// Decorrelated jitter: each delay is uniform in `[initial, 3 × previous]`, capped.
#[derive(Debug)]
pub struct Backoff {
    cfg: BackoffConfig,
    prev: Duration,
    rng: StdRng,
}

impl Backoff {
    /// A backoff seeded from the OS.
    pub fn new(cfg: BackoffConfig) -> Self {
        Self::with_rng(cfg, StdRng::from_os_rng())
    }

    /// A backoff with a given RNG (tests).
    pub fn with_rng(cfg: BackoffConfig, rng: StdRng) -> Self {
        Self {
            cfg,
            prev: cfg.initial,
            rng,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let lo = self.cfg.initial.as_secs_f64();
        let hi = (self.prev.as_secs_f64() * 3.0).max(lo);
        let d = Duration::from_secs_f64(self.rng.random_range(lo..=hi)).min(self.cfg.max);
        self.prev = d;
        d
    }
}

/// An error with a stable code, for the retry metric.
pub trait Coded {
    /// A short stable code from a small fixed set.
    fn code(&self) -> &'static str;
}

impl Coded for crate::store::StoreError {
    fn code(&self) -> &'static str {
        crate::store::StoreError::code(self)
    }
}

impl Coded for crate::state::StateError {
    fn code(&self) -> &'static str {
        match self {
            crate::state::StateError::Unprocessed { .. } => "throttled",
            _ => "state",
        }
    }
}

impl Coded for String {
    fn code(&self) -> &'static str {
        "other"
    }
}

/// How long a failed job waits before it is delivered again, after
/// `attempts` failed attempts: 0.5 s doubling per attempt, at most a minute.
/// The queue redelivers; this is the delay the worker gives the message back
/// with.
pub fn redelivery_delay(attempts: u32) -> Duration {
    Duration::from_millis((500u64 << attempts.min(7)).min(60_000))
}

/// Runs `op` until it succeeds, fails with an error that `retryable` rejects,
/// or has been tried `attempts` times. Each retry counts in `ferry.retries`.
pub async fn retry<T, E, F, Fut>(attempts: u32, retryable: impl Fn(&E) -> bool, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display + Coded,
{
    let mut backoff = Backoff::new(BackoffConfig::default());
    let mut n = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if n < attempts && retryable(&e) => {
                let d = backoff.next_delay();
                tracing::warn!(attempt = n, delay_ms = d.as_millis() as u64, error = %e, "Retrying.");
                crate::metrics::retry(e.code());
                tokio::time::sleep(d).await;
                n += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_in_bounds() {
        let cfg = BackoffConfig {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(1),
        };
        let mut b = Backoff::with_rng(cfg, StdRng::seed_from_u64(7));
        let mut prev = cfg.initial;
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(d >= cfg.initial && d <= cfg.max);
            assert!(d.as_secs_f64() <= (prev.as_secs_f64() * 3.0).max(0.01) + 1e-9);
            prev = d;
        }
    }

    #[tokio::test]
    async fn retries_only_retryable() {
        let mut calls = 0;
        let r: Result<(), String> = retry(
            5,
            |e: &String| e == "again",
            || {
                calls += 1;
                let c = calls;
                async move {
                    if c < 3 {
                        Err("again".to_string())
                    } else {
                        Err("fatal".to_string())
                    }
                }
            },
        )
        .await;
        assert_eq!(r.unwrap_err(), "fatal");
        assert_eq!(calls, 3);
    }
}
