//! How a job ends: [`JobOutcome`] when it ends, [`EngineError`] when it
//! fails. Each outcome owns what follows from it — the ledger status it
//! leaves, the run counters it adds and the metric it is counted under — so
//! the runner, the finder's summary and the telemetry speak one vocabulary.

use std::sync::atomic::AtomicU64;

use ferry_core::metrics::Outcome as Metric;
use ferry_core::state::{RunCounters, StateError, Status};
use ferry_core::store::StoreError;

/// Errors of a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Reading the source failed.
    #[error("reading the source: {0}")]
    Source(#[source] StoreError),
    /// Writing the destination failed.
    #[error("writing the destination: {0}")]
    Dest(#[source] StoreError),
    /// The state store failed or the lease was lost.
    #[error(transparent)]
    State(#[from] StateError),
    /// What arrived is not what was sent.
    #[error("verification of {key:?} failed: {what} (expected {expected}, found {found})")]
    Verify {
        /// Destination key.
        key: String,
        /// What was compared.
        what: &'static str,
        /// Expected value.
        expected: String,
        /// Found value.
        found: String,
    },
    /// Listing a list job's range failed.
    #[error("listing a key range: {0}")]
    Listing(String),
    /// The source kept changing while it was read.
    #[error("the source {key:?} changed {times} times during the transfer; giving up this attempt")]
    Unstable {
        /// Source key.
        key: String,
        /// Attempts.
        times: u32,
    },
}

impl EngineError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Source(e) | EngineError::Dest(e) => e.is_retryable(),
            EngineError::State(_)
            | EngineError::Verify { .. }
            | EngineError::Unstable { .. }
            | EngineError::Listing(_) => true,
        }
    }

    /// A stable code for summaries and telemetry.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Source(e) | EngineError::Dest(e) => e.code(),
            EngineError::State(_) => "state",
            EngineError::Verify { .. } => "verify",
            EngineError::Unstable { .. } => "source_unstable",
            EngineError::Listing(_) => "listing",
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Copied and verified.
    Transferred {
        /// Object size.
        bytes: u64,
    },
    /// Already there.
    Identical,
    /// The source no longer exists; nothing written.
    SourceGone,
    /// An event older than the last one applied to the object; dropped.
    Stale,
    /// Deleted at the destination.
    Deleted,
    /// A giant object was planned: these span jobs copy it, any worker each.
    Split {
        /// The span jobs to queue.
        spans: Vec<ferry_core::job::Job>,
    },
    /// A span of a giant object is done (copied now, found done, or moot
    /// because its upload was abandoned); the object is not complete yet.
    SpanDone {
        /// Bytes copied by this job.
        bytes: u64,
    },
    /// The source of a giant object changed while spans copied it: the
    /// upload is abandoned and this job plans it again.
    Replan {
        /// The whole-object job to queue.
        job: Box<ferry_core::job::Job>,
    },
    /// A list job's range was diffed and its jobs queued; `split` ranges
    /// were split off its rest and queued for others.
    Listed {
        /// Ranges split off.
        split: usize,
    },
    /// Another worker holds the object's lease until this time (ms since the epoch).
    Busy {
        /// Lease end.
        until: i64,
        /// Whether the holder is copying the same source version (this job is a duplicate).
        duplicate: bool,
    },
}

/// Live counters for progress displays.
#[derive(Debug, Default)]
pub struct Stats {
    /// Bytes uploaded (parts and PUTs).
    pub bytes: AtomicU64,
    /// Objects completed.
    pub objects: AtomicU64,
    /// Objects found identical by the worker.
    pub identical: AtomicU64,
    /// Source versions replayed (`--versions all`).
    pub versions: AtomicU64,
    /// Jobs given up.
    pub failed: AtomicU64,
    /// Parts skipped because an earlier attempt had uploaded them.
    pub resumed_parts: AtomicU64,
    /// Objects copied inside the store (server-side copy).
    pub server_side: AtomicU64,
}

impl JobOutcome {
    /// The metric a job that ended so is counted under.
    pub fn metric(&self) -> Metric {
        match self {
            JobOutcome::Transferred { .. } => Metric::Transferred,
            JobOutcome::Identical => Metric::Identical,
            JobOutcome::Busy { .. } => Metric::Skipped,
            JobOutcome::Stale => Metric::Stale,
            JobOutcome::Deleted => Metric::Deleted,
            JobOutcome::SourceGone => Metric::SourceGone,
            JobOutcome::Split { .. } | JobOutcome::Replan { .. } => Metric::Split,
            JobOutcome::SpanDone { .. } => Metric::Span,
            JobOutcome::Listed { .. } => Metric::Listed,
        }
    }

    /// What the outcome adds to its run's counters.
    pub fn counters(&self) -> RunCounters {
        let mut c = RunCounters::default();
        match self {
            JobOutcome::Transferred { bytes } => {
                c.done = 1;
                c.bytes = *bytes;
            }
            JobOutcome::Deleted => c.done = 1,
            JobOutcome::Identical | JobOutcome::Stale | JobOutcome::Busy { .. } => c.skipped = 1,
            JobOutcome::SourceGone => c.gone = 1,
            // The object's job ends when its last span completes it.
            JobOutcome::Split { .. } | JobOutcome::Replan { .. } => {}
            // The list job added its counters itself (see `listing`).
            JobOutcome::Listed { .. } => {}
            JobOutcome::SpanDone { bytes } => c.bytes = *bytes,
        }
        c
    }

    /// The status the outcome leaves in the object's record: `None` when the
    /// record is left as it was (a stale event, another worker's lease).
    pub fn status(&self) -> Option<Status> {
        match self {
            JobOutcome::Transferred { .. } | JobOutcome::Identical => Some(Status::Done),
            JobOutcome::SourceGone => Some(Status::SourceGone),
            JobOutcome::Deleted => Some(Status::Deleted),
            JobOutcome::Stale
            | JobOutcome::Busy { .. }
            | JobOutcome::Split { .. }
            | JobOutcome::SpanDone { .. }
            | JobOutcome::Listed { .. }
            | JobOutcome::Replan { .. } => None,
        }
    }
}

impl EngineError {
    /// The status a job that is given up after this error ends with.
    pub fn final_status(&self) -> Status {
        match self.code() {
            "restore_needed" => Status::RestoreNeeded,
            _ => Status::Failed,
        }
    }

    /// The metric a job given up after this error is counted under.
    pub fn metric(&self) -> Metric {
        match self.final_status() {
            Status::RestoreNeeded => Metric::RestoreNeeded,
            _ => Metric::Failed,
        }
    }
}
