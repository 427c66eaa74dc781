//! The transfer engine: one job at a time, resumable and verified.
//!
//! A copy job runs like this:
//!
//! 1. Claim the destination object's lease in the [`StateStore`]. A record
//!    that says the same source ETag is already done, with the destination
//!    still holding the recorded ETag, ends the job as identical.
//! 2. Objects up to the multipart threshold: one pinned GET (if-match the
//!    ETag seen at discovery) and one PUT with Content-MD5; the returned ETag
//!    must be that MD5. When the source's ETag is its MD5 (single-part S3
//!    objects), that is the Content-MD5 sent, so the destination checks the
//!    bytes against the source and nothing is hashed here; otherwise the
//!    bytes are hashed off the async threads.
//! 3. Larger objects: plan the parts ([`crate::plan`]); if the record holds an
//!    upload with the same part size, source ETag and size, reconcile its
//!    recorded parts with ListParts and skip those both agree on; otherwise
//!    abort it and start a new upload. Parts run in parallel (up to
//!    `concurrency`), each holding its bytes from the process-wide budget
//!    until it is uploaded, and each is recorded as soon as it is done.
//!    Before completion, what was read is checked against the source's ETag
//!    ([`crate::source_check`]: the parts mirror a multipart source's layout,
//!    or are hashed in order against a whole-object MD5). Completion is
//!    followed by a HEAD: size and the MD5-of-MD5s `-N` ETag computed here
//!    must match.
//! 4. A source that changed (if-match failed) is re-read with its new ETag and
//!    the upload restarted; a source that vanished ends as "source gone".
//!
//! Every store call is retried for retryable errors only ([`ferry_core::retry`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_core::checksum::MTIME_META;
use ferry_core::etag;
use ferry_core::job::{Job, Op};
use ferry_core::retry::retry;
use ferry_core::state::{Claim, ObjectRecord, Outcome, RecordKey, StateError, StateStore, Status, UploadRecord};
use ferry_core::store::{GetOptions, GetResult, ObjectStore, PartInfo, PutOptions, StoreError};
use ferry_core::telemetry::{LeaseTakenOver, ObjectTransferred, PartUploaded};
use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument as _;

use crate::plan;
use crate::source_check::{OrderedMd5, PartCrcs};

mod ledger;
mod reads;
mod remember;

/// A planned part: its number and byte range.
type Part = (u32, std::ops::Range<u64>);

/// Engine settings (see `ferry_core::config::TransferConfig` for the defaults).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Largest object sent with one PUT, bytes.
    pub multipart_threshold: u64,
    /// Configured part size, bytes.
    pub part_size: u64,
    /// Parts of one object in flight.
    pub concurrency: usize,
    /// Budget of bytes in memory across all transfers.
    pub max_in_flight: u64,
    /// Tries per store call.
    pub retries: u32,
    /// Object lease.
    pub lease: Duration,
}

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
            EngineError::State(_) | EngineError::Verify { .. } | EngineError::Unstable { .. } => true,
        }
    }

    /// A stable code for summaries and telemetry.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Source(e) | EngineError::Dest(e) => e.code(),
            EngineError::State(_) => "state",
            EngineError::Verify { .. } => "verify",
            EngineError::Unstable { .. } => "source_unstable",
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
    /// Jobs given up.
    pub failed: AtomicU64,
    /// Parts skipped because an earlier attempt had uploaded them.
    pub resumed_parts: AtomicU64,
}

/// The transfer engine shared by the worker tasks of a process.
#[derive(Debug)]
pub struct Engine {
    src: Arc<dyn ObjectStore>,
    dst: Arc<dyn ObjectStore>,
    state: Arc<dyn StateStore>,
    dest_bucket: String,
    put: PutOptions,
    cfg: EngineConfig,
    budget: Arc<Semaphore>,
    budget_kib: u32,
    /// Where checksums of copied local files are kept (`--compare checksum`).
    hashes: Option<ferry_core::file_hashes::FileHashes>,
    /// Live counters.
    pub stats: Arc<Stats>,
}

/// MD5 of `body`, hashed on the blocking pool when it is large so the async
/// threads keep moving bytes meanwhile.
async fn md5_of(body: Bytes) -> [u8; 16] {
    if body.len() < 256 * 1024 {
        return etag::md5(&body);
    }
    match tokio::task::spawn_blocking(move || etag::md5(&body)).await {
        Ok(m) => m,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The MD5 in an ETag returned by a store that hashes what it writes.
fn md5_in_etag(key: &str, what: &'static str, tag: &str) -> Result<[u8; 16], EngineError> {
    etag::md5_of_etag(tag).ok_or_else(|| EngineError::Verify {
        key: key.to_string(),
        what,
        expected: "an MD5".into(),
        found: tag.to_string(),
    })
}

/// Two optional ETags name the same object version (quotes aside).
fn same_tag(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => etag::same(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// The queue message id in a worker name `OWNER#SLOT@MESSAGE`, if any.
fn message_of(worker: &str) -> Option<&str> {
    worker.rsplit_once('@').map(|(_, id)| id)
}

fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).min(u32::MAX as u64) as u32
}

impl Engine {
    /// An engine between two stores, recording into `state`. The byte budget is
    /// raised to one part when smaller, so the largest part can always run.
    pub fn new(
        src: Arc<dyn ObjectStore>,
        dst: Arc<dyn ObjectStore>,
        state: Arc<dyn StateStore>,
        dest_bucket: String,
        put: PutOptions,
        cfg: EngineConfig,
    ) -> Self {
        let budget_kib = kib(cfg.max_in_flight.max(cfg.part_size).max(cfg.multipart_threshold));
        Self {
            src,
            dst,
            state,
            dest_bucket,
            put,
            cfg,
            budget: Arc::new(Semaphore::new(budget_kib as usize)),
            budget_kib,
            hashes: None,
            stats: Arc::default(),
        }
    }

    /// Keeps the checksums of the local files this engine copies in `hashes`
    /// (see `remember`), so a comparison by content need not read them again.
    pub fn keep_checksums_in(mut self, hashes: ferry_core::file_hashes::FileHashes) -> Self {
        self.hashes = Some(hashes);
        self
    }

    /// The state store.
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// The record key of a destination key.
    pub fn record_key(&self, dest_key: &str) -> RecordKey {
        RecordKey {
            bucket: self.dest_bucket.clone(),
            key: dest_key.to_string(),
        }
    }

    async fn reserve(&self, bytes: u64) -> OwnedSemaphorePermit {
        let n = kib(bytes).clamp(1, self.budget_kib);
        self.budget
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("the budget semaphore is never closed")
    }

    /// Runs one job as `worker`. The caller holds the queue message and keeps
    /// the leases alive (see [`crate::runner`]).
    pub async fn run_job(&self, job: &Job, worker: &str) -> Result<JobOutcome, EngineError> {
        let rk = self.record_key(&job.dest.key);
        // An object sent in one PUT is recorded done by its claim: one state
        // write per object (see `StateStore::claim_done`).
        // Event jobs are claimed plainly: their order is checked first.
        let recorded =
            (job.op == Op::Copy && job.seq.is_none() && job.src.size <= self.cfg.multipart_threshold).then(|| {
                Outcome {
                    status: Status::Done,
                    src_etag: job.src.etag.clone(),
                    dest_etag: self.expected_put_etag(job.src.etag.as_deref()),
                    error: None,
                    event_seq: None,
                    checksum: None,
                }
            });
        let claim = match &recorded {
            Some(o) => self.state.claim_done(&rk, worker, &job.run, o, self.cfg.lease).await?,
            None => {
                self.state
                    .claim(&rk, worker, &job.run, job.src.etag.as_deref(), self.cfg.lease)
                    .await?
            }
        };
        let rec = match claim {
            Claim::Busy {
                until,
                etag,
                worker: holder,
            } => {
                // The holder copies this very version under its own message, which
                // stays queued until it is done: this job is a duplicate. Unless the
                // lease was taken under this same message, by a delivery that died.
                let same_message = matches!((message_of(&holder), message_of(worker)), (Some(a), Some(b)) if a == b);
                let duplicate = etag.is_some() && etag == job.src.etag && !same_message;
                self.check_clock(&holder, until);
                return Ok(JobOutcome::Busy { until, duplicate });
            }
            Claim::Acquired(rec) => {
                // The record as it was: a holder other than this worker that did
                // not release its lease let it lapse.
                if let Some(from) = rec.worker.as_deref().filter(|h| *h != worker) {
                    if rec.status == Status::InProgress {
                        LeaseTakenOver {
                            key: &job.dest.key,
                            from,
                        }
                        .emit();
                    }
                }
                rec
            }
        };
        if let (Some(seq), Some(last)) = (&job.seq, &rec.event_seq) {
            if ferry_core::events::seq_older(seq, last) {
                tracing::info!(key = %job.dest.key, event = %seq, applied = %last, "An event older than the last one applied to the object; dropped.");
                self.state.release(&rk, worker, None).await?;
                return Ok(JobOutcome::Stale);
            }
        }
        let result = self.run_claimed(job, worker, &rk, &rec, recorded.as_ref()).await;
        let with_seq = |status| Outcome {
            event_seq: job.seq.clone(),
            ..Outcome::bare(status)
        };
        match &result {
            Ok(JobOutcome::Transferred { .. }) if rec.attempts > 0 => {
                // The claim kept the failed attempts of this object; it is done now.
                if let Some(o) = &recorded {
                    self.state.finish(&rk, worker, o).await?;
                }
            }
            Ok(JobOutcome::Transferred { .. }) | Ok(JobOutcome::Identical) | Ok(JobOutcome::Stale) => {}
            Ok(JobOutcome::SourceGone) => {
                self.abort_recorded_upload(&rk).await?;
                self.state.finish(&rk, worker, &with_seq(Status::SourceGone)).await?
            }
            Ok(JobOutcome::Deleted) => self.state.finish(&rk, worker, &with_seq(Status::Deleted)).await?,
            Ok(JobOutcome::Busy { .. }) => {}
            Err(e) => {
                if let Err(se) = self.state.release(&rk, worker, Some(&e.to_string())).await {
                    tracing::warn!(error = %se, "Could not release the object lease after a failure.");
                }
            }
        }
        result
    }

    /// The ETag a single PUT of a source with ETag `src_etag` leaves: the same
    /// MD5, unless the destination encrypts with KMS (then unknown).
    fn expected_put_etag(&self, src_etag: Option<&str>) -> Option<String> {
        let tag = src_etag?;
        (etag::md5_of_etag(tag).is_some() && self.verify_etags()).then(|| tag.to_string())
    }

    /// The job after its claim; `recorded` is the outcome the claim already
    /// wrote (single-PUT objects), which needs no second write when it holds.
    async fn run_claimed(
        &self,
        job: &Job,
        worker: &str,
        rk: &RecordKey,
        rec: &ObjectRecord,
        recorded: Option<&Outcome>,
    ) -> Result<JobOutcome, EngineError> {
        if job.op == Op::Delete {
            let key = job.dest.key.clone();
            retry(self.cfg.retries, StoreError::is_retryable, || self.dst.delete(&key))
                .await
                .map_err(EngineError::Dest)?;
            return Ok(JobOutcome::Deleted);
        }
        if rec.status == Status::Done && rec.src_etag.is_some() && rec.src_etag == job.src.etag {
            let head = self.dest_head(&job.dest.key).await?;
            if let Some(h) = head {
                let same_etag = match (&h.etag, &rec.dest_etag) {
                    (Some(a), Some(b)) => etag::same(a, b),
                    _ => true,
                };
                if h.size == job.src.size && same_etag {
                    let o = Outcome {
                        status: Status::Done,
                        src_etag: job.src.etag.clone(),
                        dest_etag: h.etag,
                        error: None,
                        event_seq: job.seq.clone(),
                        checksum: rec.checksum.clone(),
                    };
                    if recorded.is_none_or(|r| r.dest_etag.is_some() && !same_tag(&r.dest_etag, &o.dest_etag)) {
                        self.state.finish(rk, worker, &o).await?;
                    }
                    self.stats.identical.fetch_add(1, Ordering::Relaxed);
                    return Ok(JobOutcome::Identical);
                }
            }
        }
        let mut pinned = (job.src.etag.clone(), job.src.size);
        let mut rec = rec.clone();
        for _ in 0..3 {
            let r = if pinned.1 <= self.cfg.multipart_threshold {
                self.single(job, pinned.0.as_deref(), pinned.1)
                    .await
                    .map(|tag| (tag, None))
            } else {
                self.multipart(job, worker, rk, &rec, pinned.0.as_deref(), pinned.1)
                    .await
            };
            match r {
                Ok((dest_etag, checksum)) => {
                    let o = Outcome {
                        status: Status::Done,
                        src_etag: pinned.0.clone(),
                        dest_etag,
                        error: None,
                        event_seq: job.seq.clone(),
                        checksum,
                    };
                    let already =
                        recorded.is_some_and(|r| r.src_etag == o.src_etag && same_tag(&r.dest_etag, &o.dest_etag));
                    if !already {
                        self.state.finish(rk, worker, &o).await?;
                    }
                    self.stats.objects.fetch_add(1, Ordering::Relaxed);
                    return Ok(JobOutcome::Transferred { bytes: pinned.1 });
                }
                Err(EngineError::Source(StoreError::NotFound { .. })) => return Ok(JobOutcome::SourceGone),
                Err(EngineError::Source(StoreError::PreconditionFailed { .. })) => {
                    let key = job.src.key.clone();
                    let head = retry(self.cfg.retries, StoreError::is_retryable, || self.src.head(&key))
                        .await
                        .map_err(EngineError::Source)?;
                    let Some(h) = head else {
                        return Ok(JobOutcome::SourceGone);
                    };
                    tracing::info!(key = %job.src.key, "The source changed since it was listed; copying the new version.");
                    pinned = (h.etag, h.size);
                    rec = self.state.get(rk).await?.unwrap_or(rec);
                }
                Err(e) => return Err(e),
            }
        }
        Err(EngineError::Unstable {
            key: job.src.key.clone(),
            times: 3,
        })
    }

    async fn dest_head(&self, key: &str) -> Result<Option<ferry_core::store::ObjectMeta>, EngineError> {
        retry(self.cfg.retries, StoreError::is_retryable, || self.dst.head(key))
            .await
            .map_err(EngineError::Dest)
    }

    async fn read(
        &self,
        key: &str,
        etag: Option<&str>,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<GetResult, EngineError> {
        let opts = GetOptions {
            range: range.clone(),
            if_match: etag.map(str::to_string),
            version: None,
        };
        let got = retry(self.cfg.retries, StoreError::is_retryable, || self.src.get(key, &opts))
            .await
            .map_err(EngineError::Source)?;
        let want = range.map(|r| r.end - r.start).unwrap_or(got.meta.size);
        if got.body.len() as u64 != want {
            return Err(EngineError::Source(StoreError::Backend {
                store: self.src.describe(),
                operation: "GetObject",
                code: "ShortRead".into(),
                message: format!("{key:?}: expected {want} bytes, got {}", got.body.len()),
                retryable: true,
            }));
        }
        Ok(got)
    }

    /// How the destination object is written: the source's metadata and the
    /// job's policy. A local copy keeps the source's modification time: the
    /// recorded `mtime`, else when the source was written (rclone's reading).
    fn put_options(&self, got: &GetResult, dest_key: &str) -> PutOptions {
        let mut o = self.put.clone();
        o.attributes = got.attributes.clone();
        if self.dst.local_path(dest_key).is_some() && !o.attributes.user.contains_key(MTIME_META) {
            if let Some(ns) = got.meta.modified_ns() {
                o.attributes
                    .user
                    .insert(MTIME_META.to_string(), ferry_core::checksum::format_mtime(ns));
            }
        }
        o
    }

    fn verify_etags(&self) -> bool {
        self.dst.etags_are_md5() && self.put.sse.as_deref() != Some("aws:kms")
    }

    async fn single(&self, job: &Job, src_etag: Option<&str>, size: u64) -> Result<Option<String>, EngineError> {
        let started = std::time::Instant::now();
        let _permit = self.reserve(size).await;
        let got = self.read(&job.src.key, src_etag, None).await?;
        if got.meta.size != size && src_etag.is_none() {
            tracing::debug!(key = %job.src.key, "The source size changed; copying what was read.");
        }
        let body = got.body.clone();
        if let Some(tag) = src_etag.filter(|t| matches!(etag::kind(t), etag::ETagKind::Multipart(_))) {
            self.check_body_layout(&job.src.key, tag, &body).await?;
        }
        let opts = self.put_options(&got, &job.dest.key);
        let key = job.dest.key.clone();
        // A single-part source ETag is the MD5 of the object: sent as the
        // destination's Content-MD5 it makes the destination check every byte
        // against the source, with no hashing here. Should the destination
        // disagree, hash what was read to tell a bad read (retry the job) from
        // damage on the way out (retry the PUT).
        let src_md5 = src_etag
            .filter(|_| !got.meta.encrypted && self.src.etags_are_md5())
            .and_then(etag::md5_of_etag);
        let mut first = None;
        let kept_file = self.kept_file(&job.src.key);
        let local_sums = match kept_file {
            Some(_) => Some(remember::checksums_of(body.clone()).await),
            None => None,
        };
        if let Some(want) = got.meta.checksums.crc64ecma {
            let known = local_sums.and_then(|c| c.crc64ecma);
            self.check_source_crc(&job.src.key, want, known, &body).await?;
        }
        let md5 = match src_md5 {
            Some(m) => {
                match self.dst.put(&key, body.clone(), m, &opts).await {
                    Ok(e) => first = Some(e),
                    Err(StoreError::BadDigest { .. }) => {
                        let read = md5_of(body.clone()).await;
                        if read != m {
                            return Err(EngineError::Verify {
                                key: job.src.key.clone(),
                                what: "MD5 of the bytes read from the source",
                                expected: hex::encode(m),
                                found: hex::encode(read),
                            });
                        }
                    }
                    Err(e) if e.is_retryable() => {}
                    Err(e) => return Err(EngineError::Dest(e)),
                }
                m
            }
            None if local_sums.is_some() => local_sums.and_then(|c| c.md5).expect("one pass hashes MD5"),
            None if self.dst.hashes_bodies() => {
                // The store hashes what it writes; its ETag is the object's MD5.
                let tag = retry(self.cfg.retries, StoreError::is_retryable, || {
                    self.dst.put_unhashed(&key, body.clone(), &opts)
                })
                .await
                .map_err(EngineError::Dest)?;
                let m = md5_in_etag(&key, "destination ETag", &tag)?;
                first = Some(Some(tag));
                m
            }
            None => md5_of(body.clone()).await,
        };
        let put = match first {
            Some(e) => e,
            None => retry(self.cfg.retries, StoreError::is_retryable, || {
                self.dst.put(&key, body.clone(), md5, &opts)
            })
            .await
            .map_err(EngineError::Dest)?,
        };
        let expect = etag::single_part_etag(&md5);
        if self.verify_etags() {
            if let Some(got) = &put {
                if !etag::same(got, &expect) {
                    return Err(EngineError::Verify {
                        key,
                        what: "destination ETag",
                        expected: expect,
                        found: got.clone(),
                    });
                }
            }
        }
        self.stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        PartUploaded {
            bytes: body.len() as u64,
            duration: started.elapsed(),
        }
        .emit();
        ObjectTransferred {
            key: &job.dest.key,
            bytes: size,
            parts: 1,
            resumed_parts: 0,
        }
        .emit();
        if let (Some(path), Some(sums)) = (kept_file, local_sums) {
            self.keep_checksums(path, &got.meta, sums).await;
        }
        // A local directory lists modification-time tokens, not MD5s: the
        // ledger records the written file's, so later runs can match it.
        if self.dst.local_path(&key).is_some() {
            if let Some(h) = self.dest_head(&key).await? {
                return Ok(h.etag);
            }
        }
        Ok(put.or(Some(expect)))
    }

    async fn multipart(
        &self,
        job: &Job,
        worker: &str,
        rk: &RecordKey,
        rec: &ObjectRecord,
        src_etag: Option<&str>,
        size: u64,
    ) -> Result<(Option<String>, Option<String>), EngineError> {
        let dkey = job.dest.key.clone();
        let planned = plan::part_size(size, self.cfg.part_size);
        let mirrored = self.source_layout(&job.src.key, src_etag, size, planned).await;
        let part_size = mirrored.unwrap_or(planned);
        let plan: Vec<(u32, std::ops::Range<u64>)> = plan::parts(size, part_size).collect();
        let mut done: Vec<PartInfo> = Vec::new();
        let mut upload_id = None;
        if rec.upload.as_ref().is_some_and(|u| u.upload_id.is_empty()) {
            // An attempt died between creating an upload and recording it.
            self.abort_unrecorded(&dkey).await?;
            self.state.clear_upload(rk, worker).await?;
        } else if let Some(up) = &rec.upload {
            let fits = up.part_size == part_size && up.src_size == size && up.src_etag.as_deref() == src_etag;
            let listed = if fits {
                match retry(self.cfg.retries, StoreError::is_retryable, || {
                    self.dst.list_parts(&dkey, &up.upload_id)
                })
                .await
                {
                    Ok(l) => Some(l),
                    Err(StoreError::NoSuchUpload { .. }) => None,
                    Err(e) => return Err(EngineError::Dest(e)),
                }
            } else {
                None
            };
            match listed {
                Some(listed) => {
                    upload_id = Some(up.upload_id.clone());
                    for p in &rec.parts {
                        let expected_len = plan.get(p.number as usize - 1).map(|(_, r)| r.end - r.start);
                        let on_store = listed
                            .iter()
                            .any(|l| l.number == p.number && etag::same(&l.etag, &p.etag) && l.size == p.size);
                        if on_store && expected_len == Some(p.size) && etag::md5_of_etag(&p.etag).is_some() {
                            done.push(p.clone());
                        }
                    }
                    tracing::info!(key = %dkey, resumed_parts = done.len(), parts = plan.len(), "Resuming a multipart upload.");
                }
                None => {
                    if !fits {
                        tracing::info!(key = %dkey, "The recorded upload no longer fits the source or part size; starting over.");
                    }
                    let id = up.upload_id.clone();
                    retry(self.cfg.retries, StoreError::is_retryable, || {
                        self.dst.abort_multipart(&dkey, &id)
                    })
                    .await
                    .map_err(EngineError::Dest)?;
                    self.state.clear_upload(rk, worker).await?;
                }
            }
        }
        let mut first: Option<GetResult> = None;
        let first_permit;
        let upload_id = match upload_id {
            Some(id) => {
                first_permit = None;
                id
            }
            None => {
                // Read the first part before creating the upload: its response carries the
                // source's metadata, which the upload must be created with.
                let (_, r0) = plan[0].clone();
                first_permit = Some(self.reserve(r0.end - r0.start).await);
                let got = self.read(&job.src.key, src_etag, Some(r0)).await?;
                let opts = self.put_options(&got, &dkey);
                first = Some(got);
                // A marker first: should this attempt die before the upload id is
                // recorded, the next one knows to look for the unrecorded upload.
                let mut up = UploadRecord {
                    upload_id: String::new(),
                    part_size,
                    src_etag: src_etag.map(str::to_string),
                    src_size: size,
                };
                self.state.begin_upload(rk, worker, &up).await?;
                let id = retry(self.cfg.retries, StoreError::is_retryable, || {
                    self.dst.create_multipart(&dkey, &opts)
                })
                .await
                .map_err(EngineError::Dest)?;
                up.upload_id = id.clone();
                self.state.begin_upload(rk, worker, &up).await?;
                id
            }
        };
        let resumed = done.len() as u32;
        // A whole-object MD5 source ETag is checked by hashing the parts in
        // order; resumed parts are not read again, so only a fresh upload can.
        let whole_md5 = src_etag
            .filter(|_| mirrored.is_none() && done.is_empty() && self.src.etags_are_md5())
            .filter(|t| etag::kind(t) == etag::ETagKind::SinglePart)
            .and_then(etag::md5_of_etag);
        let hasher = whole_md5.map(|_| OrderedMd5::new());
        self.stats.resumed_parts.fetch_add(resumed as u64, Ordering::Relaxed);
        let todo: Vec<(u32, std::ops::Range<u64>)> = plan
            .iter()
            .filter(|(n, _)| !done.iter().any(|p| p.number == *n))
            .cloned()
            .collect();
        // The CRCs of what is read, when every part is read here (not on a
        // resumed upload): checked against the whole-object CRC-64/ECMA the
        // source's store sent (OSS, COS) and the CRC-64/NVME the
        // destination keeps (S3).
        let src_crc = first.as_ref().and_then(|g| g.meta.checksums.crc64ecma);
        let crcs = first.as_ref().map(|_| PartCrcs::default());
        let first = std::sync::Mutex::new(first.map(|g| (g, first_permit)));
        let uploaded: Vec<PartInfo> = stream::iter(todo.into_iter().map(|(n, range)| {
            let span = tracing::debug_span!("part", number = n, bytes = range.end - range.start);
            let first = &first;
            let hasher = &hasher;
            let crcs = &crcs;
            let upload_id = &upload_id;
            let dkey = &dkey;
            async move {
                let started = std::time::Instant::now();
                let pre = if n == 1 {
                    first.lock().unwrap_or_else(|e| e.into_inner()).take()
                } else {
                    None
                };
                let (body, _permit): (Bytes, Option<OwnedSemaphorePermit>) = match pre {
                    Some((g, p)) => (g.body, p),
                    None => {
                        let permit = self.reserve(range.end - range.start).await;
                        (
                            self.read(&job.src.key, src_etag, Some(range.clone())).await?.body,
                            Some(permit),
                        )
                    }
                };
                if let Some(h) = hasher {
                    h.feed(n, body.clone()).await;
                }
                if let Some(c) = crcs {
                    c.feed(n, body.clone()).await;
                }
                let len = body.len() as u64;
                let (tag, md5) = if self.dst.hashes_bodies() {
                    // The store hashes what it writes; its ETag is the part's MD5.
                    let tag = retry(self.cfg.retries, StoreError::is_retryable, || {
                        self.dst.upload_part_unhashed(dkey, upload_id, n, body.clone())
                    })
                    .await
                    .map_err(EngineError::Dest)?;
                    let md5 = md5_in_etag(dkey, "part ETag", &tag)?;
                    (tag, md5)
                } else {
                    let md5 = md5_of(body.clone()).await;
                    let tag = retry(self.cfg.retries, StoreError::is_retryable, || {
                        self.dst.upload_part(dkey, upload_id, n, body.clone(), md5)
                    })
                    .await
                    .map_err(EngineError::Dest)?;
                    (tag, md5)
                };
                let expect = etag::single_part_etag(&md5);
                if self.verify_etags() && !etag::same(&tag, &expect) {
                    return Err(EngineError::Verify {
                        key: dkey.clone(),
                        what: "part ETag",
                        expected: expect,
                        found: tag,
                    });
                }
                // Completion names each part by the ETag the store gave it
                // (an encrypting store's is not the MD5).
                let info = PartInfo {
                    number: n,
                    etag: if self.verify_etags() { expect } else { tag },
                    size: len,
                };
                self.state.part_done(rk, worker, upload_id, &info).await?;
                self.stats.bytes.fetch_add(len, Ordering::Relaxed);
                PartUploaded {
                    bytes: len,
                    duration: started.elapsed(),
                }
                .emit();
                Ok::<_, EngineError>(info)
            }
            .instrument(span)
        }))
        .buffer_unordered(self.cfg.concurrency.max(1))
        .try_collect()
        .await?;
        done.extend(uploaded);
        done.sort_by_key(|p| p.number);
        let md5s: Vec<[u8; 16]> = done.iter().filter_map(|p| etag::md5_of_etag(&p.etag)).collect();
        let expect = etag::multipart_etag(md5s.iter());
        let read_md5 = hasher.and_then(|h| h.finish(plan.len() as u32));
        let read_crcs = crcs.and_then(PartCrcs::finish);
        self.check_read(
            job,
            worker,
            rk,
            &upload_id,
            src_etag,
            mirrored.map(|_| (&expect, plan.as_slice())),
            whole_md5.zip(read_md5),
            src_crc.zip(read_crcs.map(|c| c.ecma)),
        )
        .await?;
        let completed = retry(self.cfg.retries, StoreError::is_retryable, || {
            self.dst.complete_multipart(&dkey, &upload_id, &done)
        })
        .await;
        let completed = match completed {
            Ok(tag) => tag,
            // A completion whose answer was lost: the upload is gone; the HEAD below decides.
            Err(StoreError::NoSuchUpload { .. }) => None,
            Err(e) => return Err(EngineError::Dest(e)),
        };
        let head = self.dest_head(&dkey).await?.ok_or_else(|| EngineError::Verify {
            key: dkey.clone(),
            what: "destination object after completion",
            expected: "present".into(),
            found: "missing".into(),
        })?;
        if head.size != size {
            return Err(EngineError::Verify {
                key: dkey,
                what: "destination size",
                expected: size.to_string(),
                found: head.size.to_string(),
            });
        }
        if let (Some(stored), Some(read)) = (head.checksums.crc64nvme, read_crcs) {
            if stored != read.nvme {
                return Err(EngineError::Verify {
                    key: dkey,
                    what: "destination CRC-64/NVME (the store's, against the bytes sent)",
                    expected: ferry_core::checksum::crc64_base64(read.nvme),
                    found: ferry_core::checksum::crc64_base64(stored),
                });
            }
        }
        let found = if self.verify_etags() {
            head.etag.clone()
        } else {
            completed.clone()
        };
        // Part ETags are MD5s on stores that hash what they write and on a
        // local directory (which reports the MD5-of-MD5s it assembled); an
        // encrypting store's are not, and its object is proven by the parts'
        // Content-MD5 acknowledgements and the size.
        let etags_checkable = self.verify_etags() || self.dst.local_path(&dkey).is_some();
        if let Some(found) = found.filter(|_| etags_checkable) {
            if etag::kind(&found) != etag::ETagKind::Opaque && !etag::same(&found, &expect) {
                return Err(EngineError::Verify {
                    key: dkey,
                    what: "destination multipart ETag",
                    expected: expect,
                    found,
                });
            }
        }
        ObjectTransferred {
            key: &dkey,
            bytes: size,
            parts: plan.len() as u32,
            resumed_parts: resumed,
        }
        .emit();
        if self.verify_etags() || self.dst.local_path(&dkey).is_some() {
            self.keep_part_etag(&job.src.key, src_etag, part_size, expect.clone())
                .await;
        }
        // For the ledger: the ETag the destination lists for the object, and
        // the CRC of the bytes sent (every part read by this attempt).
        let checksum = read_crcs.map(|c| format!("crc64nvme:{}", ferry_core::checksum::crc64_base64(c.nvme)));
        Ok((Some(head.etag.or(completed).unwrap_or(expect)), checksum))
    }
}
