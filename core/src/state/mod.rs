//! The state store seam: one record per destination object, and per-run counters.
//!
//! A worker claims an object's lease before touching it, so two workers never
//! transfer the same object at once; a lease that lapses (or whose holder is a
//! dead process on this host) can be taken over. The record keeps what resume
//! needs — upload id, part size, source ETag and size, and the parts done with
//! their ETags — and every write after the claim is conditional on still
//! holding the lease. Backends: [`EmbeddedStateStore`] (SQLite) and
//! [`DynamoStateStore`] (DynamoDB; schema in `docs/STATE.md`).

#[cfg(any(test, feature = "testing"))]
#[allow(missing_docs)]
pub mod conformance;
mod dynamo;
mod embedded;

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use dynamo::DynamoStateStore;
pub use embedded::EmbeddedStateStore;

use crate::db::DbError;
use crate::store::PartInfo;

/// Errors of a state store call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The embedded database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The state service refused or failed a call.
    #[error("{store}: {operation} failed: {message}")]
    Service {
        /// Store description.
        store: String,
        /// The call.
        operation: String,
        /// What the service said.
        message: String,
    },
    /// A stored item that this build cannot read.
    #[error("{store}: the record {key:?} is malformed: {message}")]
    Malformed {
        /// Store description.
        store: String,
        /// The item's key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A batch call left items unprocessed (throttled) after its tries.
    #[error("{store}: {operation}: {left} item(s) stayed unprocessed after every try (throttled)")]
    Unprocessed {
        /// Store description.
        store: String,
        /// The call.
        operation: String,
        /// Items left.
        left: usize,
    },
    /// Another worker holds the lease now.
    #[error("the lease on {bucket}/{key} is held by {holder}")]
    LeaseLost {
        /// Destination bucket.
        bucket: String,
        /// Destination key.
        key: String,
        /// Who holds it now.
        holder: String,
    },
}

/// Identifies a destination object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordKey {
    /// Destination bucket (or directory).
    pub bucket: String,
    /// Destination key.
    pub key: String,
}

impl RecordKey {
    /// The record of one replayed source version of a destination object
    /// (`--versions all`): bucket `DEST#versions`, key `KEY#v=VERSION`. It
    /// says which destination version the source version became.
    pub fn of_version(dest_bucket: &str, dest_key: &str, version: &str) -> Self {
        RecordKey {
            bucket: format!("{dest_bucket}#versions"),
            key: format!("{dest_key}#v={version}"),
        }
    }
}

/// Where an object stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Claimed, being transferred.
    InProgress,
    /// Complete and verified.
    Done,
    /// Given up after retries; `last_error` says why.
    Failed,
    /// The source disappeared; nothing was written.
    SourceGone,
    /// Deleted at the destination (delete sync).
    Deleted,
    /// The source is archived (Glacier, Deep Archive): restore it, then run again.
    RestoreNeeded,
}

impl Status {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::SourceGone => "source_gone",
            Status::Deleted => "deleted",
            Status::RestoreNeeded => "restore_needed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "in_progress" => Status::InProgress,
            "done" => Status::Done,
            "failed" => Status::Failed,
            "source_gone" => Status::SourceGone,
            "deleted" => Status::Deleted,
            "restore_needed" => Status::RestoreNeeded,
            _ => return None,
        })
    }
}

/// An unfinished multipart upload as recorded for resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// Upload id at the destination.
    pub upload_id: String,
    /// Part size in bytes.
    pub part_size: u64,
    /// Source ETag the parts were read from.
    pub src_etag: Option<String>,
    /// Source size.
    pub src_size: u64,
}

/// The record of one destination object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    /// Which object.
    pub key: RecordKey,
    /// Where it stands.
    pub status: Status,
    /// Run that last touched it.
    pub run: Option<String>,
    /// The recorded upload, if one is in progress.
    pub upload: Option<UploadRecord>,
    /// Source ETag of the last completed transfer.
    pub src_etag: Option<String>,
    /// Parts done for the recorded upload, ascending.
    pub parts: Vec<PartInfo>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Order of the last event applied to the object (see [`Outcome::event_seq`]).
    pub event_seq: Option<String>,
    /// Lease holder.
    pub worker: Option<String>,
    /// Source ETag the lease holder is copying.
    pub lease_etag: Option<String>,
    /// Lease end, ms since the epoch.
    pub lease_until: Option<i64>,
    /// Destination ETag after completion.
    pub dest_etag: Option<String>,
    /// The destination version a replayed source version became (see [`Outcome::dest_version`]).
    pub dest_version: Option<String>,
    /// Checksum of the bytes of the last completed transfer (see [`Outcome::checksum`]).
    pub checksum: Option<String>,
    /// The last error.
    pub last_error: Option<String>,
    /// Last update, ms since the epoch.
    pub updated_at: i64,
}

impl ObjectRecord {
    /// The record of an object never written before, claimed for `run`.
    pub fn new(key: RecordKey, run: &str, now: i64) -> Self {
        Self {
            key,
            status: Status::InProgress,
            run: Some(run.to_string()),
            upload: None,
            src_etag: None,
            parts: vec![],
            attempts: 0,
            worker: None,
            lease_etag: None,
            event_seq: None,
            lease_until: None,
            dest_etag: None,
            dest_version: None,
            checksum: None,
            last_error: None,
            updated_at: now,
        }
    }
}

/// Who claims an object's lease, for which run and source version, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct ClaimFor<'a> {
    /// The lease holder.
    pub worker: &'a str,
    /// The run the job belongs to.
    pub run: &'a str,
    /// The source ETag about to be copied.
    pub src_etag: Option<&'a str>,
    /// How long the lease lasts.
    pub lease: Duration,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The lease is ours; the record as it was before the claim.
    Acquired(Box<ObjectRecord>),
    /// Someone else holds a live lease until `until` (ms since the epoch).
    Busy {
        /// Holder.
        worker: String,
        /// Lease end.
        until: i64,
        /// The source ETag the holder is copying.
        etag: Option<String>,
    },
}

/// How a job ended, for [`StateStore::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Final status.
    pub status: Status,
    /// Source ETag that was copied.
    pub src_etag: Option<String>,
    /// Destination ETag after completion.
    pub dest_etag: Option<String>,
    /// Error text for failures.
    pub error: Option<String>,
    /// Order of the event that caused the job (S3 sequencer, OSS event
    /// time), recorded so an older event arriving later is dropped.
    pub event_seq: Option<String>,
    /// Checksum of the bytes copied, `crc64nvme:<base64>`, for objects sent
    /// in parts (whose ETags depend on the part layout); a single-part
    /// object's MD5 ETag proves its content already.
    pub checksum: Option<String>,
    /// The destination's version id of what was written, for the record of
    /// a replayed source version (`--versions`).
    pub dest_version: Option<String>,
}

impl Outcome {
    /// An outcome with a status and nothing else.
    pub fn bare(status: Status) -> Self {
        Outcome {
            status,
            src_etag: None,
            dest_etag: None,
            error: None,
            event_seq: None,
            checksum: None,
            dest_version: None,
        }
    }

    /// A copy done: the source version copied and the destination's ETag.
    pub fn done(src_etag: Option<String>, dest_etag: Option<String>) -> Self {
        Outcome {
            src_etag,
            dest_etag,
            ..Outcome::bare(Status::Done)
        }
    }

    /// The same outcome, for the event of sequencer `seq`.
    pub fn with_seq(self, seq: Option<String>) -> Self {
        Outcome { event_seq: seq, ..self }
    }

    /// The same outcome, with the ledger's checksum of the bytes copied.
    pub fn with_checksum(self, checksum: Option<String>) -> Self {
        Outcome { checksum, ..self }
    }

    /// The same outcome, with the destination version written.
    pub fn with_dest_version(self, dest_version: Option<String>) -> Self {
        Outcome { dest_version, ..self }
    }
}

/// Counters of one run; deltas are added atomically.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounters {
    /// Source objects found (matching the filters).
    pub found: u64,
    /// Jobs enqueued.
    pub enqueued: u64,
    /// Bytes of the enqueued jobs.
    pub planned_bytes: u64,
    /// Objects the finder found identical (not enqueued).
    pub identical: u64,
    /// Enqueued jobs a worker found already done (duplicates, redeliveries).
    pub skipped: u64,
    /// Objects transferred (or deleted).
    pub done: u64,
    /// Objects whose source vanished before they were copied.
    pub gone: u64,
    /// Objects given up.
    pub failed: u64,
    /// Bytes transferred.
    pub bytes: u64,
}

impl RunCounters {
    /// Enqueued jobs that have ended one way or another.
    pub fn ended(&self) -> u64 {
        self.done + self.skipped + self.gone + self.failed
    }

    /// The counters as (name, value) pairs, in storage order.
    pub fn fields(&self) -> [(&'static str, u64); 9] {
        [
            ("found", self.found),
            ("enqueued", self.enqueued),
            ("planned_bytes", self.planned_bytes),
            ("identical", self.identical),
            ("skipped", self.skipped),
            ("done", self.done),
            ("gone", self.gone),
            ("failed", self.failed),
            ("bytes", self.bytes),
        ]
    }

    /// Adds every counter of `d`.
    pub fn add(&mut self, d: &RunCounters) {
        for (name, v) in d.fields() {
            let cur = self
                .fields()
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| *c)
                .unwrap_or(0);
            self.set(name, cur + v);
        }
    }

    /// Sets a counter by its name (see [`fields`](Self::fields)); unknown names are ignored.
    pub fn set(&mut self, name: &str, v: u64) {
        match name {
            "found" => self.found = v,
            "enqueued" => self.enqueued = v,
            "planned_bytes" => self.planned_bytes = v,
            "identical" => self.identical = v,
            "skipped" => self.skipped = v,
            "done" => self.done = v,
            "gone" => self.gone = v,
            "failed" => self.failed = v,
            "bytes" => self.bytes = v,
            _ => {}
        }
    }
}

/// One finder run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunRecord {
    /// Run id.
    pub id: String,
    /// Counters.
    pub counters: RunCounters,
    /// Start, ms since the epoch.
    pub started_at: i64,
    /// When the listing ended and every job was enqueued, ms since the epoch.
    pub listed_at: Option<i64>,
}

impl RunRecord {
    /// Whether every job of the run has ended: the listing is over and as
    /// many jobs ended as were enqueued.
    pub fn complete(&self) -> bool {
        self.listed_at.is_some() && self.counters.ended() >= self.counters.enqueued
    }
}

/// Per-object records and per-run counters.
#[async_trait]
pub trait StateStore: Send + Sync + Debug {
    /// Claims the lease on `key` for `worker` for `lease`, unless another worker
    /// holds a live one. Taking over a lapsed lease keeps the record (and its
    /// upload) for resume.
    /// `src_etag` is what the worker is about to copy; the finder does not
    /// queue the object again while the lease lives for that ETag.
    async fn claim(
        &self,
        key: &RecordKey,
        worker: &str,
        run: &str,
        src_etag: Option<&str>,
        lease: Duration,
    ) -> Result<Claim, StateError> {
        let to = ClaimFor {
            worker,
            run,
            src_etag,
            lease,
        };
        self.claim_with(key, to, None).await
    }

    /// Claims the lease like [`claim`](Self::claim) and, in the same write,
    /// records `outcome` (status done, source and destination ETags) — for an
    /// object written by one atomic PUT, whose record then needs no second
    /// write. Until the lease ends the record means "done, or being written
    /// under this lease"; a reader checks the destination before it trusts a
    /// done record (the engine does, with a HEAD). A failure after this claim
    /// must [`release`](Self::release), which sets the status back to
    /// in progress. The count of failed attempts is kept: a caller that
    /// succeeds after failures ends with [`finish`](Self::finish), which
    /// resets it. Returns the record as it was before.
    async fn claim_done(
        &self,
        key: &RecordKey,
        worker: &str,
        run: &str,
        outcome: &Outcome,
        lease: Duration,
    ) -> Result<Claim, StateError> {
        let to = ClaimFor {
            worker,
            run,
            src_etag: outcome.src_etag.as_deref(),
            lease,
        };
        self.claim_with(key, to, Some(outcome)).await
    }

    /// The one claim every backend implements: [`claim`](Self::claim) when
    /// `done` is `None`, [`claim_done`](Self::claim_done) with it.
    async fn claim_with(&self, key: &RecordKey, to: ClaimFor<'_>, done: Option<&Outcome>) -> Result<Claim, StateError>;

    /// Extends our lease; [`StateError::LeaseLost`] if it is no longer ours.
    async fn renew(&self, key: &RecordKey, worker: &str, lease: Duration) -> Result<(), StateError>;

    /// Records a new multipart upload (forgetting the parts of any earlier one).
    async fn begin_upload(&self, key: &RecordKey, worker: &str, upload: &UploadRecord) -> Result<(), StateError>;

    /// Records one finished part of the recorded upload.
    async fn part_done(&self, key: &RecordKey, worker: &str, upload: &str, part: &PartInfo) -> Result<(), StateError>;

    /// Forgets the recorded upload and its parts (after an abort).
    async fn clear_upload(&self, key: &RecordKey, worker: &str) -> Result<(), StateError>;

    /// Records the end of a job and releases the lease. Every status recorded
    /// here is final: the recorded upload and its parts are forgotten (the
    /// caller aborts an upload it gives up first) and the attempts go back
    /// to zero, so a job sent again later gets its full count of attempts.
    async fn finish(&self, key: &RecordKey, worker: &str, outcome: &Outcome) -> Result<(), StateError>;

    /// Releases the lease after a failed or stopped attempt, keeping the
    /// upload for resume. With an `error` (a failed attempt) the status goes
    /// back to in progress, one attempt is added and the error recorded;
    /// without one (stopped, or a stale event) the record is left as it is.
    async fn release(&self, key: &RecordKey, worker: &str, error: Option<&str>) -> Result<(), StateError>;

    /// The record of an object.
    async fn get(&self, key: &RecordKey) -> Result<Option<ObjectRecord>, StateError>;

    /// The records of several objects (without their parts), in order.
    async fn get_many(&self, keys: &[RecordKey]) -> Result<Vec<Option<ObjectRecord>>, StateError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k).await?.map(|mut r| {
                r.parts.clear();
                r
            }));
        }
        Ok(out)
    }

    /// Creates a run's record and makes it the latest run.
    async fn run_start(&self, run: &str) -> Result<(), StateError>;

    /// Records that a run's listing ended (every job is enqueued).
    async fn run_listed(&self, run: &str) -> Result<(), StateError>;

    /// Adds `delta` to a run's counters, creating the run if needed.
    async fn run_add(&self, run: &str, delta: RunCounters) -> Result<(), StateError>;

    /// A run's record.
    async fn run_get(&self, run: &str) -> Result<Option<RunRecord>, StateError>;

    /// The id of the run started last.
    async fn latest_run(&self) -> Result<Option<String>, StateError>;

    /// Objects of a run with the given status (first `limit`).
    async fn run_objects(&self, run: &str, status: Status, limit: usize) -> Result<Vec<ObjectRecord>, StateError>;

    /// How many object records of a run stand at each status: each object
    /// once, whatever crashes and redeliveries did (unlike [`RunCounters`],
    /// which a crash between two writes can count twice).
    async fn run_tally(&self, run: &str) -> Result<RunTally, StateError>;
}

/// Object records of one run by status (see [`StateStore::run_tally`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTally {
    /// Claimed and not ended (being transferred, or stranded).
    pub in_progress: u64,
    /// Copied and verified (or found already done).
    pub done: u64,
    /// Given up.
    pub failed: u64,
    /// Source vanished.
    pub source_gone: u64,
    /// Deleted at the destination.
    pub deleted: u64,
    /// Archived sources.
    pub restore_needed: u64,
}

impl RunTally {
    /// Every status, in display order.
    pub const STATUSES: [Status; 6] = [
        Status::InProgress,
        Status::Done,
        Status::Failed,
        Status::SourceGone,
        Status::Deleted,
        Status::RestoreNeeded,
    ];

    /// The count of one status.
    pub fn get(&self, status: Status) -> u64 {
        match status {
            Status::InProgress => self.in_progress,
            Status::Done => self.done,
            Status::Failed => self.failed,
            Status::SourceGone => self.source_gone,
            Status::Deleted => self.deleted,
            Status::RestoreNeeded => self.restore_needed,
        }
    }

    /// Sets the count of one status.
    pub fn set(&mut self, status: Status, n: u64) {
        *match status {
            Status::InProgress => &mut self.in_progress,
            Status::Done => &mut self.done,
            Status::Failed => &mut self.failed,
            Status::SourceGone => &mut self.source_gone,
            Status::Deleted => &mut self.deleted,
            Status::RestoreNeeded => &mut self.restore_needed,
        } = n;
    }
}
