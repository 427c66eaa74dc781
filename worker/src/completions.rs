//! Batched completion of finished jobs: acknowledgements and run counters.
//!
//! A job task hands its finished message here instead of acknowledging it and
//! adding to the run's counters itself: per small object those two writes
//! would cost as much as the transfer. The batch is written when it holds
//! [`BATCH`] jobs, or [`PERIOD`] after its first job, or when the runner asks:
//! one `ack_many` and one counter update per run. The object is already
//! complete at the destination when its job arrives here, so a crash before
//! the batch is written only means those messages are delivered again, and a
//! redelivered job finds its object done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::queue::JobQueue;
use ferry_core::state::{RunCounters, StateStore};
use tokio::sync::Notify;

/// Jobs per batch.
pub const BATCH: usize = 64;
/// Longest wait of a finished job before its batch is written.
pub const PERIOD: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Pending {
    receipts: Vec<String>,
    counters: HashMap<String, RunCounters>,
}

/// The batcher shared by a runner's job tasks.
pub struct Completions {
    queue: Arc<dyn JobQueue>,
    state: Arc<dyn StateStore>,
    pending: Mutex<Pending>,
    full: Notify,
    /// Serializes flushes so counters are never written twice.
    flushing: tokio::sync::Mutex<()>,
}

fn add(into: &mut RunCounters, d: &RunCounters) {
    into.add(d);
}

impl Completions {
    /// A batcher over `queue` and `state`.
    pub fn new(queue: Arc<dyn JobQueue>, state: Arc<dyn StateStore>) -> Arc<Self> {
        Arc::new(Self {
            queue,
            state,
            pending: Mutex::default(),
            full: Notify::new(),
            flushing: tokio::sync::Mutex::new(()),
        })
    }

    /// Records a finished job: its receipt and what it adds to its run.
    pub fn push(&self, receipt: String, run: &str, delta: RunCounters) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.receipts.push(receipt);
        if delta != RunCounters::default() {
            add(p.counters.entry(run.to_string()).or_default(), &delta);
        }
        if p.receipts.len() >= BATCH {
            self.full.notify_one();
        }
    }

    /// Whether nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.receipts.is_empty() && p.counters.is_empty()
    }

    /// Writes what is pending.
    pub async fn flush(&self) {
        let _one = self.flushing.lock().await;
        let Pending { receipts, counters } =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for (run, delta) in counters {
            if let Err(e) = self.state.run_add(&run, delta).await {
                tracing::warn!(error = %e, "Could not update the run's counters.");
            }
        }
        if receipts.is_empty() {
            return;
        }
        let results = self.queue.ack_many(&receipts).await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            tracing::warn!(error = %e, failed, "Jobs are done but their messages could not be acknowledged; duplicates will find them done.");
        }
    }

    /// Flushes every [`PERIOD`], or at once when a batch is full, until the
    /// task is aborted.
    pub async fn run(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.full.notified() => {}
                _ = tokio::time::sleep(PERIOD) => {}
            }
            self.flush().await;
        }
    }
}
