//! Typed telemetry events. Every metric-worthy happening is a struct with an
//! `emit()` that logs it with fields first and records its metrics
//! ([`crate::metrics`]). Metric labels never carry keys or bucket names.

use std::time::Duration;

use crate::metrics::{self, Outcome};

/// A part (or a whole object sent in one PUT) was read and uploaded.
#[derive(Debug, Clone, Copy)]
pub struct PartUploaded {
    /// Bytes in the part.
    pub bytes: u64,
    /// From the start of its read to the end of its upload.
    pub duration: Duration,
}

impl PartUploaded {
    /// Records the event.
    pub fn emit(self) {
        tracing::trace!(
            bytes = self.bytes,
            duration_ms = self.duration.as_millis() as u64,
            "Part uploaded."
        );
        metrics::bytes(self.bytes);
        metrics::part_duration(self.duration);
    }
}

/// A job ended (its message acknowledged or given up).
#[derive(Debug, Clone, Copy)]
pub struct JobEnded {
    /// How.
    pub outcome: Outcome,
}

impl JobEnded {
    /// Records the event.
    pub fn emit(self) {
        tracing::trace!(outcome = self.outcome.as_str(), "Job ended.");
        metrics::object(self.outcome);
    }
}

/// A worker received a job that waited `lag` in the queue.
#[derive(Debug, Clone, Copy)]
pub struct JobReceived {
    /// Time since it was enqueued.
    pub lag: Duration,
}

impl JobReceived {
    /// Records the event.
    pub fn emit(self) {
        metrics::queue_lag(self.lag);
    }
}

/// A lease whose holder let it lapse was taken over.
#[derive(Debug, Clone)]
pub struct LeaseTakenOver<'a> {
    /// Destination key.
    pub key: &'a str,
    /// The former holder.
    pub from: &'a str,
}

impl LeaseTakenOver<'_> {
    /// Records the event.
    pub fn emit(&self) {
        tracing::info!(
            key = self.key,
            from = self.from,
            "Took over an object whose lease had lapsed."
        );
        metrics::lease_takeover();
    }
}

/// The finder listed a page of source objects.
#[derive(Debug, Clone, Copy)]
pub struct SourceListed {
    /// Objects in the page.
    pub objects: u64,
}

impl SourceListed {
    /// Records the event.
    pub fn emit(self) {
        metrics::listed(self.objects);
    }
}

/// An object was completed and verified.
#[derive(Debug, Clone)]
pub struct ObjectTransferred<'a> {
    /// Destination key.
    pub key: &'a str,
    /// Size.
    pub bytes: u64,
    /// Parts (1 for a single PUT).
    pub parts: u32,
    /// Parts reused from an earlier attempt.
    pub resumed_parts: u32,
}

impl ObjectTransferred<'_> {
    /// Records the event.
    pub fn emit(&self) {
        tracing::debug!(
            key = self.key,
            bytes = self.bytes,
            parts = self.parts,
            resumed_parts = self.resumed_parts,
            "Object transferred."
        );
    }
}

/// A job failed an attempt.
#[derive(Debug, Clone)]
pub struct JobFailed<'a> {
    /// Destination key.
    pub key: &'a str,
    /// Stable error code.
    pub error_code: &'static str,
    /// Whether it will be tried again.
    pub will_retry: bool,
    /// The error.
    pub error: &'a str,
}

impl JobFailed<'_> {
    /// Records the event: WARN when it will be retried, ERROR when given up.
    pub fn emit(&self) {
        if self.will_retry {
            tracing::warn!(
                key = self.key,
                error_code = self.error_code,
                error = self.error,
                "Job attempt failed; it will be retried."
            );
        } else {
            tracing::error!(
                key = self.key,
                error_code = self.error_code,
                error = self.error,
                "Job failed and was given up."
            );
        }
    }
}
