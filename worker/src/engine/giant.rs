//! Giant objects, copied by the whole fleet.
//!
//! An object larger than `giant_threshold` is not copied by the worker that
//! takes its job. That worker, holding the object's lease:
//!
//! 1. **plans** the parts as for any multipart copy, resumes the recorded
//!    upload or creates one (recorded in the object's record as usual), and
//! 2. **splits** the parts into spans of `giant_span` bytes, returning one
//!    job per span ([`JobOutcome::Split`]); the runner queues them on the
//!    job's own queue and only then acknowledges the object's message, and
//!    the object's lease is released.
//!
//! Any worker takes a span job. A span has a record of its own in the
//! ledger (bucket `DEST#spans`, key `KEY#parts-FIRST-LAST`, run `RUN#spans`,
//! so a run's object counts never see it), claimed with a lease like any
//! object: its parts are recorded there as they are sent, so a span resumes
//! after a crash at part granularity, and its failed attempts are counted
//! there. A span whose record is done is not copied again.
//!
//! The worker that finishes a span reads every span's record (strongly
//! consistent); when all are done it claims the object's lease, lists the
//! upload's parts at the destination (each must be there with its planned
//! size), completes the upload, checks the object (size, MD5-of-MD5s, and
//! the source's ETag where the layout is the source's) and records the
//! object done. Two spans finishing together both see every span done at
//! worst, and the second finds the object done or its lease held: it is
//! given back and finds the object done next time. No other service is
//! involved.
//!
//! A span whose reads find the source changed (`if-match`) abandons the
//! whole upload (aborted at the destination, forgotten in the record) and
//! queues the object's job again with its new ETag, once
//! ([`JobOutcome::Replan`]); the other spans of the abandoned upload find
//! it gone and end without copying.

use std::sync::atomic::Ordering;

use ferry_core::etag::{ETag, ETagKind};
use ferry_core::job::{Job, Span};
use ferry_core::lease::LeaseHolder;
use ferry_core::state::{Claim, ObjectRecord, Outcome, RecordKey, Status, UploadRecord};
use ferry_core::store::{PartInfo, StoreError};
use ferry_core::telemetry::ObjectTransferred;

use super::multipart::{Layout, ReadProof, Target, Upload};
use super::{Engine, EngineError, JobOutcome, Part};
use crate::plan;

impl Engine {
    /// Whether a copy of `size` bytes to `dest_key` is split into spans for
    /// the fleet: not when the store copies it itself (server-side), and
    /// not into a local directory, which one machine writes anyway (and
    /// whose completion would read every part back to list it).
    pub(super) fn splits(&self, dest_key: &str, size: u64) -> bool {
        size > self.cfg.giant_threshold
            && size > self.cfg.giant_span
            && self.server_side.is_none()
            && self.dst.local_path(dest_key).is_none()
    }

    /// The ledger record whose lease a job holds: its span's for a span job.
    pub fn lease_key(&self, job: &Job) -> RecordKey {
        match &job.span {
            Some(s) => self.span_key(&job.dest.key, s.first, s.last),
            None if job.op == ferry_core::job::Op::List => self.list_key(job),
            None => self.record_key(&job.dest.key),
        }
    }

    fn span_key(&self, dest_key: &str, first: u32, last: u32) -> RecordKey {
        RecordKey {
            bucket: format!("{}#spans", self.dest_bucket),
            key: format!("{dest_key}#parts-{first}-{last}"),
        }
    }

    /// Failed attempts of a job as the ledger counts them: its span's, or
    /// the object's when the object's completion failed.
    pub async fn attempts(&self, job: &Job) -> Result<u32, EngineError> {
        let own = self.state.get(&self.lease_key(job)).await?.map_or(0, |r| r.attempts);
        if job.span.is_none() {
            return Ok(own);
        }
        let object = self.state.get(&self.record_key(&job.dest.key)).await?;
        Ok(own.max(object.map_or(0, |r| r.attempts)))
    }

    /// Steps 1 and 2: the upload planned, resumed or created, and its spans.
    pub(super) async fn split(&self, t: &Target<'_>, rec: &ObjectRecord) -> Result<JobOutcome, EngineError> {
        let layout = self.plan_layout(t).await;
        let upload = match self.resume(t, rec, &layout).await? {
            Some(up) => up,
            // Created with the metadata of the first part's read, which
            // its span reads again.
            None => self.create(t, &layout).await?,
        };
        let per = (self.cfg.giant_span / layout.part_size).clamp(1, u32::MAX as u64) as u32;
        let parts = layout.parts.len() as u32;
        let spans: Vec<Job> = (0..parts.div_ceil(per))
            .map(|i| {
                let mut j = t.job.clone();
                j.src.etag = t.src_etag.map(str::to_string);
                j.src.size = t.size;
                j.span = Some(Span {
                    upload_id: upload.id.clone(),
                    part_size: layout.part_size,
                    first: i * per + 1,
                    last: ((i + 1) * per).min(parts),
                    parts,
                    per,
                });
                j
            })
            .collect();
        tracing::info!(key = %t.job.dest.key, parts, spans = spans.len(), "A giant object: its spans are queued for every worker.");
        Ok(JobOutcome::Split { spans })
    }

    /// A span job: its parts copied under the span's own lease, then the
    /// object completed if every span is done.
    pub(super) async fn run_span(
        &self,
        job: &Job,
        span: &Span,
        holder: &LeaseHolder,
    ) -> Result<JobOutcome, EngineError> {
        let worker = holder.as_str();
        let srk = self.lease_key(job);
        let run = format!("{}#spans", job.run);
        let etag = job.src.etag.as_deref();
        let rec = match self.state.claim(&srk, worker, &run, etag, self.cfg.lease).await? {
            Claim::Busy { until, etag, worker } => return Ok(self.busy(job, holder, until, etag, &worker)),
            Claim::Acquired(rec) => *rec,
        };
        let copied = match rec.status == Status::Done && rec.src_etag == job.src.etag {
            true => {
                self.state.release(&srk, worker, None).await?;
                Ok(Some(0))
            }
            false => self.copy_span(job, span, worker, &srk, &rec).await,
        };
        let bytes = match copied {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(JobOutcome::SpanDone { bytes: 0 }),
            Err(EngineError::Source(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. })) => {
                self.state.release(&srk, worker, None).await?;
                return self.abandon(job, span, worker).await;
            }
            Err(e) => {
                if let Err(se) = self.state.release(&srk, worker, Some(&e.to_string())).await {
                    tracing::warn!(error = %se, "Could not release a span's lease after a failure.");
                }
                return Err(e);
            }
        };
        self.complete_if_last(job, span, worker, bytes).await
    }

    /// Copies a span's missing parts and records the span done; returns the
    /// bytes copied, or `None` (the span's lease released) when the
    /// object's record no longer holds this upload: the span is moot.
    async fn copy_span(
        &self,
        job: &Job,
        span: &Span,
        worker: &str,
        srk: &RecordKey,
        rec: &ObjectRecord,
    ) -> Result<Option<u64>, EngineError> {
        let object = self.state.get(&self.record_key(&job.dest.key)).await?;
        let holds = object
            .and_then(|o| o.upload)
            .is_some_and(|u| u.upload_id == span.upload_id);
        if !holds {
            tracing::info!(key = %job.dest.key, first = span.first, "The upload of this span was completed or abandoned; nothing to copy.");
            self.state.release(srk, worker, None).await?;
            return Ok(None);
        }
        let done = match &rec.upload {
            Some(u) if u.upload_id == span.upload_id => rec.parts.clone(),
            _ => {
                let up = UploadRecord {
                    upload_id: span.upload_id.clone(),
                    part_size: span.part_size,
                    src_etag: job.src.etag.clone(),
                    src_size: job.src.size,
                };
                self.state.begin_upload(srk, worker, &up).await?;
                Vec::new()
            }
        };
        let layout = Layout {
            part_size: span.part_size,
            mirrored: false,
            parts: plan::parts(job.src.size, span.part_size)
                .filter(|(n, _)| (span.first..=span.last).contains(n))
                .collect(),
        };
        let resumed: u64 = done.iter().map(|p| p.size).sum();
        let total: u64 = layout.parts.iter().map(|(_, r)| r.end - r.start).sum();
        let t = Target {
            job,
            worker,
            rk: srk,
            src_etag: job.src.etag.as_deref(),
            size: job.src.size,
        };
        let upload = Upload {
            id: span.upload_id.clone(),
            done,
            first: None,
        };
        self.send_parts(&t, &layout, upload, &ReadProof::parts_only()).await?;
        self.state
            .finish(srk, worker, &Outcome::done(job.src.etag.clone(), None))
            .await?;
        tracing::info!(key = %job.dest.key, first = span.first, last = span.last, "A span of a giant object is copied.");
        Ok(Some(total - resumed))
    }

    /// Completes the object when every span is done (see the module docs).
    async fn complete_if_last(
        &self,
        job: &Job,
        span: &Span,
        worker: &str,
        bytes: u64,
    ) -> Result<JobOutcome, EngineError> {
        let keys: Vec<RecordKey> = (0..span.parts.div_ceil(span.per))
            .map(|i| self.span_key(&job.dest.key, i * span.per + 1, ((i + 1) * span.per).min(span.parts)))
            .collect();
        let spans = self.state.get_many(&keys).await?;
        let all = spans.iter().all(|r| {
            r.as_ref()
                .is_some_and(|r| r.status == Status::Done && r.src_etag == job.src.etag)
        });
        let prk = self.record_key(&job.dest.key);
        let object = self.state.get(&prk).await?;
        let open = object
            .as_ref()
            .and_then(|o| o.upload.as_ref())
            .is_some_and(|u| u.upload_id == span.upload_id);
        if !all || !open {
            return Ok(JobOutcome::SpanDone { bytes });
        }
        match self
            .state
            .claim(&prk, worker, &job.run, job.src.etag.as_deref(), self.cfg.lease)
            .await?
        {
            Claim::Busy { until, .. } => Ok(JobOutcome::Busy {
                until: until.min(ferry_core::now_millis() + 2_000),
                duplicate: false,
            }),
            Claim::Acquired(rec) if rec.upload.as_ref().is_some_and(|u| u.upload_id == span.upload_id) => {
                match self.complete_spans(job, span, worker, &prk).await {
                    Ok(()) => Ok(JobOutcome::Transferred { bytes }),
                    Err(e) => {
                        if let Err(se) = self.state.release(&prk, worker, Some(&e.to_string())).await {
                            tracing::warn!(error = %se, "Could not release the object's lease after a failure.");
                        }
                        Err(e)
                    }
                }
            }
            Claim::Acquired(_) => {
                self.state.release(&prk, worker, None).await?;
                Ok(JobOutcome::SpanDone { bytes })
            }
        }
    }

    /// Completes the upload from the parts the destination lists, checks
    /// the object and records it done.
    async fn complete_spans(&self, job: &Job, span: &Span, worker: &str, prk: &RecordKey) -> Result<(), EngineError> {
        let dkey = &job.dest.key;
        let size = job.src.size;
        let plan: Vec<Part> = plan::parts(size, span.part_size).collect();
        let parts = self.listed_parts(dkey, &span.upload_id, &plan).await?;
        let md5s: Vec<[u8; 16]> = parts.iter().filter_map(|p| ETag(&p.etag).md5()).collect();
        let expect = ETag::of_parts(md5s.iter());
        let src_etag = job.src.etag.as_deref();
        let comparable = src_etag.is_some_and(|t| ETag(t).kind() == ETagKind::Multipart(plan.len() as u32));
        let mirrored =
            (comparable && self.verify_etags() && md5s.len() == parts.len()).then_some((&expect, plan.as_slice()));
        self.check_read(job, worker, prk, &span.upload_id, src_etag, mirrored, None, None)
            .await?;
        let (head, completed) = self
            .complete_checked(job, &span.upload_id, &parts, size, &expect, None)
            .await?;
        let dest_etag = head.etag.or(completed).unwrap_or(expect);
        self.state
            .finish(prk, worker, &Outcome::done(job.src.etag.clone(), Some(dest_etag)))
            .await?;
        self.stats.objects.fetch_add(1, Ordering::Relaxed);
        ObjectTransferred {
            key: dkey,
            bytes: size,
            parts: plan.len() as u32,
            resumed_parts: 0,
        }
        .emit();
        tracing::info!(key = %dkey, parts = plan.len(), "A giant object is complete: the last of its spans completed it.");
        Ok(())
    }

    /// The upload's parts as the destination lists them: every planned part,
    /// with its planned size.
    async fn listed_parts(&self, dkey: &str, upload_id: &str, plan: &[Part]) -> Result<Vec<PartInfo>, EngineError> {
        let listed = self.dst.list_parts(dkey, upload_id).await.map_err(EngineError::Dest)?;
        plan.iter()
            .map(|(n, r)| {
                listed
                    .iter()
                    .find(|p| p.number == *n && p.size == r.end - r.start)
                    .cloned()
                    .ok_or_else(|| EngineError::Verify {
                        key: dkey.to_string(),
                        what: "parts of the upload at the destination",
                        expected: format!("part {n} of {} bytes", r.end - r.start),
                        found: "missing".into(),
                    })
            })
            .collect()
    }

    /// A span found the source changed: the upload is abandoned and the
    /// object planned again with its new version, once.
    async fn abandon(&self, job: &Job, span: &Span, worker: &str) -> Result<JobOutcome, EngineError> {
        let prk = self.record_key(&job.dest.key);
        let rec = match self
            .state
            .claim(&prk, worker, &job.run, job.src.etag.as_deref(), self.cfg.lease)
            .await?
        {
            // Another span abandons it or the object completes: look again soon.
            Claim::Busy { until, .. } => {
                return Ok(JobOutcome::Busy {
                    until: until.min(ferry_core::now_millis() + 2_000),
                    duplicate: false,
                })
            }
            Claim::Acquired(rec) => *rec,
        };
        if rec.upload.as_ref().is_none_or(|u| u.upload_id != span.upload_id) {
            // Another span abandoned it first.
            self.state.release(&prk, worker, None).await?;
            return Ok(JobOutcome::SpanDone { bytes: 0 });
        }
        tracing::info!(key = %job.src.key, "The source changed while its spans were copied; the upload is abandoned.");
        self.dst
            .abort_multipart(&job.dest.key, &span.upload_id)
            .await
            .map_err(EngineError::Dest)?;
        self.state.clear_upload(&prk, worker).await?;
        let Some(now) = self.src.head(&job.src.key).await.map_err(EngineError::Source)? else {
            self.state
                .finish(&prk, worker, &Outcome::bare(Status::SourceGone))
                .await?;
            return Ok(JobOutcome::SourceGone);
        };
        if job.replans >= 1 {
            let e = EngineError::Unstable {
                key: job.src.key.clone(),
                times: job.replans + 1,
            };
            self.state.release(&prk, worker, Some(&e.to_string())).await?;
            return Err(e);
        }
        self.state.release(&prk, worker, None).await?;
        let mut again = job.clone();
        again.span = None;
        again.replans += 1;
        again.src.etag = now.etag;
        again.src.size = now.size;
        Ok(JobOutcome::Replan { job: Box::new(again) })
    }
}
