//! Typed telemetry events. Every metric-worthy happening is a struct with an
//! `emit()` that logs it with fields first; metric export comes with the
//! OpenTelemetry work. Labels never carry keys or bucket names.

/// A part was uploaded.
#[derive(Debug, Clone, Copy)]
pub struct PartUploaded {
    /// Bytes in the part.
    pub bytes: u64,
}

impl PartUploaded {
    /// Records the event.
    pub fn emit(self) {
        tracing::trace!(bytes = self.bytes, "Part uploaded.");
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
