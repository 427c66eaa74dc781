//! The transfer engine: one job at a time, resumable and verified.
//!
//! A copy job runs like this:
//!
//! 1. Claim the destination object's lease in the [`StateStore`]. A record
//!    that says the same source ETag is already done, with the destination
//!    still holding the recorded ETag, ends the job as identical.
//! 2. Objects up to the multipart threshold go in one PUT ([`single`]).
//! 3. Larger objects go in parts ([`multipart`]): plan, resume or create,
//!    send the parts, complete.
//! 4. A source that changed (if-match failed) is re-read with its new ETag and
//!    the upload restarted; a source that vanished ends as "source gone".
//!
//! Every read and every check of what was read or written lives in
//! [`verify`]; the ledger's side of a job's end in `ledger`; how a job ends
//! in [`outcome`]. Store calls are retried by the stores themselves
//! ([`ferry_core::store::RetryingStore`], wrapped once by the composition
//! root), never here.

use ferry_core::etag::ETag;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_core::etag;
use ferry_core::job::{Job, Op};
use ferry_core::state::{Claim, ObjectRecord, Outcome, RecordKey, StateStore, Status};
use ferry_core::store::{ObjectStore, PutOptions, StoreError};
use ferry_core::telemetry::LeaseTakenOver;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

mod carried;
mod giant;
mod ledger;
pub mod listing;
pub mod multipart;
pub mod outcome;
mod remember;
pub mod replay;
pub mod server_side;
pub mod single;
pub mod verify;

pub use outcome::{EngineError, JobOutcome, Stats};

use ferry_core::lease::LeaseHolder;
use multipart::Target;

/// A job whose object lease is held: `rec` is the record as it was, and
/// `recorded` the outcome the claim already wrote (single-PUT objects),
/// which needs no second write when it holds.
#[derive(Clone, Copy)]
struct Claimed<'a> {
    job: &'a Job,
    worker: &'a str,
    rk: &'a RecordKey,
    rec: &'a ObjectRecord,
    recorded: Option<&'a Outcome>,
}

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
    /// Object lease.
    pub lease: Duration,
    /// Objects larger than this are split into spans for the fleet.
    pub giant_threshold: u64,
    /// Bytes of one span of a giant object.
    pub giant_span: u64,
}

/// The transfer engine shared by the worker tasks of a process.
#[derive(Debug)]
pub struct Engine {
    src: Arc<dyn ObjectStore>,
    dst: Arc<dyn ObjectStore>,
    state: Arc<dyn StateStore>,
    /// The process-wide byte budget, in KiB permits.
    budget: Arc<Semaphore>,
    budget_kib: u32,
    /// The destination bucket, as named in records.
    dest_bucket: String,
    /// How destination objects are written.
    put: PutOptions,
    cfg: EngineConfig,
    /// Where checksums of copied local files are kept (`--compare checksum`).
    hashes: Option<ferry_core::file_hashes::FileHashes>,
    /// Server-side copy, when the job uses it.
    server_side: Option<server_side::ServerSide>,
    /// Bandwidth limits on reads of the source.
    pacing: ferry_core::bandwidth::Pacing,
    /// Which tags destination objects get.
    tags: ferry_core::config::TagMode,
    /// What was dropped because the destination cannot keep it, told once.
    dropped: carried::Dropped,
    /// Lists the ranges of list jobs (see [`listing`]).
    lister: Option<Arc<dyn listing::RangeLister>>,
    /// Where list jobs split off a range are queued.
    list_queue: Option<Arc<dyn ferry_core::queue::JobQueue>>,
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
            server_side: None,
            pacing: Default::default(),
            tags: Default::default(),
            dropped: Default::default(),
            lister: None,
            list_queue: None,
            stats: Arc::default(),
        }
    }

    /// Keeps the checksums of the local files this engine copies in `hashes`
    /// (see `remember`), so a comparison by content need not read them again.
    pub fn keep_checksums_in(mut self, hashes: ferry_core::file_hashes::FileHashes) -> Self {
        self.hashes = Some(hashes);
        self
    }

    /// Copies objects inside the store when it can ([`server_side`]).
    pub fn copy_server_side(mut self, cfg: ferry_core::config::ServerSideCopy) -> Self {
        self.server_side = Some(server_side::ServerSide::new(cfg));
        self
    }

    /// Gives destination objects these tags (`--tags`; default: the source's).
    pub fn with_tags(mut self, tags: ferry_core::config::TagMode) -> Self {
        self.tags = tags;
        self
    }

    /// Paces reads of the source by these bandwidth limits.
    pub fn paced_by(mut self, pacing: ferry_core::bandwidth::Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// The bandwidth limits reads obey.
    pub fn pacing(&self) -> &ferry_core::bandwidth::Pacing {
        &self.pacing
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

    /// Runs one job as `holder`. The caller holds the queue message and keeps
    /// the leases alive (see [`crate::runner`]).
    pub async fn run_job(&self, job: &Job, holder: &LeaseHolder) -> Result<JobOutcome, EngineError> {
        if let Some(span) = &job.span {
            return self.run_span(job, span, holder).await;
        }
        match job.op {
            Op::Replay => return self.replay(job, holder).await,
            Op::List => return self.run_list(job, holder).await,
            Op::Copy | Op::Delete => {}
        }
        let worker = holder.as_str();
        let rk = self.record_key(&job.dest.key);
        let recorded = self.recorded_by_claim(job);
        let rec = match self.claim(job, holder, &rk, recorded.as_ref()).await? {
            Ok(rec) => rec,
            Err(busy) => return Ok(busy),
        };
        if let (Some(seq), Some(last)) = (&job.seq, &rec.event_seq) {
            if ferry_core::events::seq_older(seq, last) {
                tracing::info!(key = %job.dest.key, event = %seq, applied = %last, "An event older than the last one applied to the object; dropped.");
                self.state.release(&rk, worker, None).await?;
                return Ok(JobOutcome::Stale);
            }
        }
        let c = Claimed {
            job,
            worker,
            rk: &rk,
            rec: &rec,
            recorded: recorded.as_ref(),
        };
        let result = self.run_claimed(&c).await;
        self.record_end(&c, &result).await?;
        result
    }

    /// The outcome a claim records at once: an object sent in one PUT is
    /// recorded done by its claim, one state write per object (see
    /// `StateStore::claim_done`). Event jobs are claimed plainly: their
    /// order is checked first.
    fn recorded_by_claim(&self, job: &Job) -> Option<Outcome> {
        let single = job.op == Op::Copy && job.seq.is_none() && job.src.size <= self.cfg.multipart_threshold;
        single.then(|| Outcome::done(job.src.etag.clone(), self.expected_put_etag(job.src.etag.as_deref())))
    }

    /// Claims the object's lease: its record as it was, or the outcome of a
    /// job that finds another holder.
    async fn claim(
        &self,
        job: &Job,
        holder: &LeaseHolder,
        rk: &RecordKey,
        recorded: Option<&Outcome>,
    ) -> Result<Result<ObjectRecord, JobOutcome>, EngineError> {
        let worker = holder.as_str();
        let claim = match recorded {
            Some(o) => self.state.claim_done(rk, worker, &job.run, o, self.cfg.lease).await?,
            None => {
                self.state
                    .claim(rk, worker, &job.run, job.src.etag.as_deref(), self.cfg.lease)
                    .await?
            }
        };
        match claim {
            Claim::Busy {
                until,
                etag,
                worker: other,
            } => Ok(Err(self.busy(job, holder, until, etag, &other))),
            Claim::Acquired(rec) => {
                // A holder other than this worker that did not release its
                // lease let it lapse.
                if let Some(from) = rec.worker.as_deref().filter(|h| *h != worker) {
                    if rec.status == Status::InProgress {
                        LeaseTakenOver {
                            key: &job.dest.key,
                            from,
                        }
                        .emit();
                    }
                }
                Ok(Ok(*rec))
            }
        }
    }

    /// A job that found its lease held by `other` until `until`, for a copy
    /// of `etag`. The holder copies this very version under its own
    /// message, which stays queued until it is done: this job is a
    /// duplicate. Unless the lease was taken under this same message, by a
    /// delivery that died.
    fn busy(&self, job: &Job, holder: &LeaseHolder, until: i64, etag: Option<String>, other: &str) -> JobOutcome {
        let other = LeaseHolder::parse(other);
        let duplicate = etag.is_some() && etag == job.src.etag && !other.same_message(holder);
        self.check_clock(&other, until);
        JobOutcome::Busy { until, duplicate }
    }

    /// Records how a claimed job ended (what the claim or the copy did not
    /// record already), or releases the lease with the error.
    async fn record_end(&self, c: &Claimed<'_>, result: &Result<JobOutcome, EngineError>) -> Result<(), EngineError> {
        let (job, worker, rk, rec, recorded) = (c.job, c.worker, c.rk, c.rec, c.recorded);
        let with_seq = |status| Outcome::bare(status).with_seq(job.seq.clone());
        match result {
            Ok(JobOutcome::Transferred { .. }) if rec.attempts > 0 => {
                // The claim kept the failed attempts of this object; it is done now.
                if let Some(o) = recorded {
                    self.state.finish(rk, worker, o).await?;
                }
            }
            Ok(JobOutcome::SourceGone) => {
                self.abort_recorded_upload(rk).await?;
                self.state.finish(rk, worker, &with_seq(Status::SourceGone)).await?
            }
            Ok(JobOutcome::Deleted) => self.state.finish(rk, worker, &with_seq(Status::Deleted)).await?,
            // The spans (or the object's job again) carry on; the lease is free for them.
            Ok(JobOutcome::Split { .. } | JobOutcome::Replan { .. }) => self.state.release(rk, worker, None).await?,
            Ok(_) => {}
            Err(e) => {
                if let Err(se) = self.state.release(rk, worker, Some(&e.to_string())).await {
                    tracing::warn!(error = %se, "Could not release the object lease after a failure.");
                }
            }
        }
        Ok(())
    }

    /// The ETag a single PUT of a source with ETag `src_etag` leaves: the same
    /// MD5, unless the destination encrypts with KMS (then unknown).
    fn expected_put_etag(&self, src_etag: Option<&str>) -> Option<String> {
        let tag = src_etag?;
        (ETag(tag).md5().is_some() && self.verify_etags()).then(|| tag.to_string())
    }

    /// The job after its claim; `recorded` is the outcome the claim already
    /// wrote (single-PUT objects), which needs no second write when it holds.
    async fn run_claimed(&self, c: &Claimed<'_>) -> Result<JobOutcome, EngineError> {
        let (job, worker, rk, rec, recorded) = (c.job, c.worker, c.rk, c.rec, c.recorded);
        if job.op == Op::Delete {
            self.dst.delete(&job.dest.key).await.map_err(EngineError::Dest)?;
            return Ok(JobOutcome::Deleted);
        }
        if self.still_identical(c).await? {
            self.stats.identical.fetch_add(1, Ordering::Relaxed);
            return Ok(JobOutcome::Identical);
        }
        let mut pinned = (job.src.etag.clone(), job.src.size);
        let mut rec = rec.clone();
        if job.op == Op::Copy && self.splits(&job.dest.key, job.src.size) {
            return self.split_claimed(c).await;
        }
        let mut current = self.pin_version(job).await?;
        for _ in 0..3 {
            let r = match self
                .offer_server_side(&Target::of(&current, worker, rk, &pinned), &rec)
                .await
            {
                server_side::Offered::Done(r) => r,
                offered => {
                    if matches!(offered, server_side::Offered::FellBack) {
                        rec = self.state.get(rk).await?.unwrap_or(rec);
                    }
                    self.stream(&current, worker, rk, &rec, &pinned).await
                }
            };
            match r {
                Ok((dest_etag, checksum)) => {
                    let o = Outcome::done(pinned.0.clone(), dest_etag)
                        .with_seq(job.seq.clone())
                        .with_checksum(checksum);
                    let already = recorded.is_some_and(|r| {
                        r.src_etag == o.src_etag && ETag::same_version(r.dest_etag.as_deref(), o.dest_etag.as_deref())
                    });
                    if !already {
                        self.state.finish(rk, worker, &o).await?;
                    }
                    self.stats.objects.fetch_add(1, Ordering::Relaxed);
                    return Ok(JobOutcome::Transferred { bytes: pinned.1 });
                }
                Err(EngineError::Source(StoreError::NotFound { .. })) => return Ok(JobOutcome::SourceGone),
                Err(EngineError::Source(StoreError::PreconditionFailed { .. })) => {
                    let Some(h) = self.src.head(&job.src.key).await.map_err(EngineError::Source)? else {
                        return Ok(JobOutcome::SourceGone);
                    };
                    tracing::info!(key = %job.src.key, "The source changed since it was listed; copying the new version.");
                    current.src.version = h.version.filter(|_| current.src.version.is_some());
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

    /// The job, pinned to the source's version id as well as its ETag when
    /// it is read in several requests from a store that keeps versions: an
    /// overwrite during the copy then cannot end it, and every part comes
    /// from the version listed. One HEAD, for objects above the multipart
    /// threshold only.
    async fn pin_version(&self, job: &Job) -> Result<Job, EngineError> {
        let mut pinned = job.clone();
        let several_reads = job.src.size > self.cfg.multipart_threshold;
        if job.op != Op::Copy
            || job.src.version.is_some()
            || !several_reads
            || self.src.local_path(&job.src.key).is_some()
        {
            return Ok(pinned);
        }
        if let Some(h) = self.src.head(&job.src.key).await.map_err(EngineError::Source)? {
            let same = matches!((&h.etag, &job.src.etag), (Some(a), Some(b)) if ETag(a).same(b));
            if same {
                pinned.src.version = h.version.filter(|v| v != "null");
            }
        }
        Ok(pinned)
    }

    /// A giant object's first job: split into spans ([`giant`]); a source
    /// that changed or vanished meanwhile is planned again or ends.
    async fn split_claimed(&self, c: &Claimed<'_>) -> Result<JobOutcome, EngineError> {
        let pinned = (c.job.src.etag.clone(), c.job.src.size);
        match self.split(&Target::of(c.job, c.worker, c.rk, &pinned), c.rec).await {
            Err(EngineError::Source(StoreError::PreconditionFailed { .. })) => {
                let Some(h) = self.src.head(&c.job.src.key).await.map_err(EngineError::Source)? else {
                    return Ok(JobOutcome::SourceGone);
                };
                let mut again = c.job.clone();
                (again.src.etag, again.src.size) = (h.etag, h.size);
                Ok(JobOutcome::Replan { job: Box::new(again) })
            }
            Err(EngineError::Source(StoreError::NotFound { .. })) => Ok(JobOutcome::SourceGone),
            r => r,
        }
    }

    /// Copies the bytes through this worker: one PUT, or in parts.
    async fn stream(
        &self,
        job: &Job,
        worker: &str,
        rk: &RecordKey,
        rec: &ObjectRecord,
        pinned: &(Option<String>, u64),
    ) -> Result<(Option<String>, Option<String>), EngineError> {
        match pinned.1 <= self.cfg.multipart_threshold {
            true => self
                .single(job, pinned.0.as_deref(), pinned.1)
                .await
                .map(|tag| (tag, None)),
            false => {
                self.multipart(job, worker, rk, rec, pinned.0.as_deref(), pinned.1)
                    .await
            }
        }
    }

    /// Whether the record says this very source version is done and the
    /// destination still holds what was recorded; records the destination's
    /// ETag when the claim's guess of it was wrong.
    async fn still_identical(&self, c: &Claimed<'_>) -> Result<bool, EngineError> {
        let (job, worker, rk, rec, recorded) = (c.job, c.worker, c.rk, c.rec, c.recorded);
        if !(rec.status == Status::Done && rec.src_etag.is_some() && rec.src_etag == job.src.etag) {
            return Ok(false);
        }
        let Some(h) = self.dest_head(&job.dest.key).await? else {
            return Ok(false);
        };
        let same_etag = match (&h.etag, &rec.dest_etag) {
            (Some(a), Some(b)) => ETag(a).same(b),
            _ => true,
        };
        if h.size != job.src.size || !same_etag {
            return Ok(false);
        }
        let o = Outcome::done(job.src.etag.clone(), h.etag)
            .with_seq(job.seq.clone())
            .with_checksum(rec.checksum.clone());
        if recorded.is_none_or(|r| {
            r.dest_etag.is_some() && !ETag::same_version(r.dest_etag.as_deref(), o.dest_etag.as_deref())
        }) {
            self.state.finish(rk, worker, &o).await?;
        }
        Ok(true)
    }
}
