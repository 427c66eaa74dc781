//! Objects above the multipart threshold, in four steps:
//!
//! 1. **Plan** the parts ([`crate::plan`]), mirroring the source's own part
//!    layout where its multipart ETag can then be recomputed.
//! 2. **Resume or create** the upload. A recorded upload with the same part
//!    size, source ETag and size is reconciled with ListParts: parts both
//!    the record and the store agree on are kept. Otherwise it is aborted.
//!    A new upload is created after reading the first part (its response
//!    carries the metadata the upload is created with), behind a marker in
//!    the record so a crash between the two leaves nothing unseen.
//! 3. **Send** the missing parts in parallel (up to `concurrency`), each
//!    holding its bytes from the process-wide budget until it is uploaded
//!    and recorded as soon as it is done.
//! 4. **Complete** once what was read is proven against the source
//!    ([`super::verify`]), then check the object by a HEAD.

use ferry_core::etag::ETag;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use bytes::Bytes;
use ferry_core::etag;
use ferry_core::job::Job;
use ferry_core::state::{ObjectRecord, RecordKey, UploadRecord};
use ferry_core::store::{GetResult, PartInfo, StoreError, UploadShape};
use ferry_core::telemetry::{ObjectTransferred, PartUploaded};
use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument as _;

use super::verify::hashers::{Crcs, OrderedMd5, PartCrcs};
use super::verify::md5_in_etag;
use super::{md5_of, Engine, EngineError, Part};
use crate::plan;

/// Where a job's upload is: its identity and the source version it copies.
pub(super) struct Target<'a> {
    pub(super) job: &'a Job,
    pub(super) worker: &'a str,
    pub(super) rk: &'a RecordKey,
    pub(super) src_etag: Option<&'a str>,
    pub(super) size: u64,
}

/// The part layout of an upload.
pub(super) struct Layout {
    pub(super) part_size: u64,
    /// Whether the source's own layout is mirrored.
    pub(super) mirrored: bool,
    pub(super) parts: Vec<Part>,
}

/// An upload under way: its id, the parts already on the store, and the
/// first part when it was read to create the upload.
pub(super) struct Upload {
    pub(super) id: String,
    pub(super) done: Vec<PartInfo>,
    pub(super) first: Option<(GetResult, OwnedSemaphorePermit)>,
}

/// Hashes of what this attempt reads, for the checks before completion.
pub(super) struct ReadProof {
    /// The source's whole-object MD5, and the ordered hash of the parts read.
    whole: Option<([u8; 16], OrderedMd5)>,
    /// The source store's CRC-64/ECMA, when it sent one.
    src_crc: Option<u64>,
    /// CRCs of every part read (when every part is read by this attempt).
    crcs: Option<PartCrcs>,
}

impl ReadProof {
    /// No whole-object proof: an attempt that reads only some of the parts,
    /// each proven by its Content-MD5.
    pub(super) fn parts_only() -> Self {
        Self {
            whole: None,
            src_crc: None,
            crcs: None,
        }
    }
}

impl<'a> Target<'a> {
    /// A job's copy of the source version `pinned` (ETag, size).
    pub(super) fn of(job: &'a Job, worker: &'a str, rk: &'a RecordKey, pinned: &'a (Option<String>, u64)) -> Self {
        Target {
            job,
            worker,
            rk,
            src_etag: pinned.0.as_deref(),
            size: pinned.1,
        }
    }
}

impl Engine {
    /// Copies an object in parts; returns the destination ETag and the
    /// ledger's checksum of the bytes sent (when this attempt sent them all).
    pub(super) async fn multipart(
        &self,
        job: &Job,
        worker: &str,
        rk: &RecordKey,
        rec: &ObjectRecord,
        src_etag: Option<&str>,
        size: u64,
    ) -> Result<(Option<String>, Option<String>), EngineError> {
        let t = Target {
            job,
            worker,
            rk,
            src_etag,
            size,
        };
        let layout = self.plan_layout(&t).await;
        let upload = match self.resume(&t, rec, &layout).await? {
            Some(up) => up,
            None => self.create(&t, &layout).await?,
        };
        let proof = self.read_proof(&t, &layout, &upload);
        let resumed = upload.done.len() as u32;
        self.stats.resumed_parts.fetch_add(resumed as u64, Ordering::Relaxed);
        let id = upload.id.clone();
        let parts = self.send_parts(&t, &layout, upload, &proof).await?;
        self.complete(&t, &layout, &id, parts, proof, resumed).await
    }

    /// Step 1: the part size and the parts.
    pub(super) async fn plan_layout(&self, t: &Target<'_>) -> Layout {
        let planned = plan::part_size(t.size, self.cfg.part_size);
        let mirrored = self.source_layout(&t.job.src.key, t.src_etag, t.size, planned).await;
        let part_size = mirrored.unwrap_or(planned);
        Layout {
            part_size,
            mirrored: mirrored.is_some(),
            parts: plan::parts(t.size, part_size).collect(),
        }
    }

    /// Step 2a: the recorded upload, with the parts the record and the store
    /// agree on, when it still fits; otherwise it is aborted and forgotten.
    pub(super) async fn resume(
        &self,
        t: &Target<'_>,
        rec: &ObjectRecord,
        layout: &Layout,
    ) -> Result<Option<Upload>, EngineError> {
        let dkey = &t.job.dest.key;
        let Some(up) = &rec.upload else {
            return Ok(None);
        };
        if up.upload_id.is_empty() {
            // An attempt died between creating an upload and recording it.
            self.abort_unrecorded(dkey).await?;
            self.state.clear_upload(t.rk, t.worker).await?;
            return Ok(None);
        }
        let fits = up.part_size == layout.part_size && up.src_size == t.size && up.src_etag.as_deref() == t.src_etag;
        let listed = match fits {
            true => match self.dst.list_parts(dkey, &up.upload_id).await {
                Ok(l) => Some(l),
                Err(StoreError::NoSuchUpload { .. }) => None,
                Err(e) => return Err(EngineError::Dest(e)),
            },
            false => None,
        };
        let Some(listed) = listed else {
            if !fits {
                tracing::info!(key = %dkey, "The recorded upload no longer fits the source or part size; starting over.");
            }
            self.dst
                .abort_multipart(dkey, &up.upload_id)
                .await
                .map_err(EngineError::Dest)?;
            self.state.clear_upload(t.rk, t.worker).await?;
            return Ok(None);
        };
        let done: Vec<PartInfo> = rec
            .parts
            .iter()
            .filter(|p| {
                let expected_len = layout.parts.get(p.number as usize - 1).map(|(_, r)| r.end - r.start);
                let on_store = listed
                    .iter()
                    .any(|l| l.number == p.number && ETag(&l.etag).same(&p.etag) && l.size == p.size);
                on_store && expected_len == Some(p.size) && ETag(&p.etag).md5().is_some()
            })
            .cloned()
            .collect();
        tracing::info!(key = %dkey, resumed_parts = done.len(), parts = layout.parts.len(), "Resuming a multipart upload.");
        Ok(Some(Upload {
            id: up.upload_id.clone(),
            done,
            first: None,
        }))
    }

    /// Step 2b: a new upload, created with the metadata of the first part's
    /// response. A marker is recorded first: should this attempt die before
    /// the upload id is recorded, the next one looks for the unrecorded upload.
    pub(super) async fn create(&self, t: &Target<'_>, layout: &Layout) -> Result<Upload, EngineError> {
        let dkey = &t.job.dest.key;
        let (_, r0) = layout.parts[0].clone();
        let permit = self.reserve(r0.end - r0.start).await;
        let got = self.read(t.job, t.src_etag, Some(r0)).await?;
        let opts = self.put_options(t.job, &got.attributes, &got.meta).await?;
        let mut up = UploadRecord {
            upload_id: String::new(),
            part_size: layout.part_size,
            src_etag: t.src_etag.map(str::to_string),
            src_size: t.size,
        };
        self.state.begin_upload(t.rk, t.worker, &up).await?;
        let id = self
            .dst
            .create_multipart(
                dkey,
                &opts,
                UploadShape {
                    size: t.size,
                    part_size: layout.part_size,
                },
            )
            .await
            .map_err(EngineError::Dest)?;
        up.upload_id = id.clone();
        self.state.begin_upload(t.rk, t.worker, &up).await?;
        Ok(Upload {
            id,
            done: Vec::new(),
            first: Some((got, permit)),
        })
    }

    /// What this attempt can prove of its reads: the whole-object MD5 only on
    /// a fresh upload (resumed parts are not read again), the CRCs only when
    /// every part is read here.
    fn read_proof(&self, t: &Target<'_>, layout: &Layout, upload: &Upload) -> ReadProof {
        let whole = t
            .src_etag
            .filter(|_| !layout.mirrored && upload.done.is_empty() && self.src.etags_are_md5())
            .filter(|tag| ETag(tag).kind() == etag::ETagKind::SinglePart)
            .and_then(|t| ETag(t).md5());
        let first = upload.first.as_ref().map(|(g, _)| g);
        ReadProof {
            whole: whole.map(|m| (m, OrderedMd5::new())),
            src_crc: first.and_then(|g| g.meta.checksums.crc64ecma),
            crcs: first.map(|_| PartCrcs::default()),
        }
    }

    /// Step 3: every part not yet on the store, in parallel; returns all the
    /// parts of the object in order.
    pub(super) async fn send_parts(
        &self,
        t: &Target<'_>,
        layout: &Layout,
        upload: Upload,
        proof: &ReadProof,
    ) -> Result<Vec<PartInfo>, EngineError> {
        let Upload { id, mut done, first } = upload;
        let todo: Vec<Part> = layout
            .parts
            .iter()
            .filter(|(n, _)| !done.iter().any(|p| p.number == *n))
            .cloned()
            .collect();
        let first = Mutex::new(first);
        let sent: Vec<PartInfo> = stream::iter(todo.into_iter().map(|(n, range)| {
            let span = tracing::debug_span!("part", number = n, bytes = range.end - range.start);
            let pre = match n {
                1 => first.lock().unwrap_or_else(|e| e.into_inner()).take(),
                _ => None,
            };
            self.send_part(t, &id, n, range, pre, proof).instrument(span)
        }))
        .buffer_unordered(self.cfg.concurrency.max(1))
        .try_collect()
        .await?;
        done.extend(sent);
        done.sort_by_key(|p| p.number);
        Ok(done)
    }

    /// One part: read (unless it was read to create the upload), fed to the
    /// read proofs, uploaded with its MD5, checked and recorded.
    async fn send_part(
        &self,
        t: &Target<'_>,
        upload_id: &str,
        n: u32,
        range: std::ops::Range<u64>,
        pre: Option<(GetResult, OwnedSemaphorePermit)>,
        proof: &ReadProof,
    ) -> Result<PartInfo, EngineError> {
        let started = std::time::Instant::now();
        let (body, _permit): (Bytes, OwnedSemaphorePermit) = match pre {
            Some((g, p)) => (g.body, p),
            None => {
                let permit = self.reserve(range.end - range.start).await;
                let got = self.read(t.job, t.src_etag, Some(range)).await?;
                (got.body, permit)
            }
        };
        if let Some((_, h)) = &proof.whole {
            h.feed(n, body.clone()).await;
        }
        if let Some(c) = &proof.crcs {
            c.feed(n, body.clone()).await;
        }
        let len = body.len() as u64;
        let dkey = &t.job.dest.key;
        let (tag, md5) = if self.dst.hashes_bodies() {
            // The store hashes what it writes; its ETag is the part's MD5.
            let tag = self
                .dst
                .upload_part_unhashed(dkey, upload_id, n, body)
                .await
                .map_err(EngineError::Dest)?;
            let md5 = md5_in_etag(dkey, "part ETag", &tag)?;
            (tag, md5)
        } else {
            let md5 = md5_of(body.clone()).await;
            let tag = self
                .dst
                .upload_part(dkey, upload_id, n, body, md5)
                .await
                .map_err(EngineError::Dest)?;
            (tag, md5)
        };
        self.check_sent(dkey, "part ETag", &md5, Some(&tag))?;
        // Completion names each part by the ETag the store gave it (an
        // encrypting store's is not the MD5).
        let info = PartInfo {
            number: n,
            etag: if self.verify_etags() { ETag::of_md5(&md5) } else { tag },
            size: len,
        };
        self.state.part_done(t.rk, t.worker, upload_id, &info).await?;
        self.stats.bytes.fetch_add(len, Ordering::Relaxed);
        PartUploaded {
            bytes: len,
            duration: started.elapsed(),
        }
        .emit();
        Ok(info)
    }

    /// Step 4: proves what was read, completes the upload and checks the
    /// object. Returns the destination ETag and the ledger's checksum.
    async fn complete(
        &self,
        t: &Target<'_>,
        layout: &Layout,
        upload_id: &str,
        parts: Vec<PartInfo>,
        proof: ReadProof,
        resumed: u32,
    ) -> Result<(Option<String>, Option<String>), EngineError> {
        let dkey = &t.job.dest.key;
        let md5s: Vec<[u8; 16]> = parts.iter().filter_map(|p| ETag(&p.etag).md5()).collect();
        let expect = ETag::of_parts(md5s.iter());
        let count = layout.parts.len() as u32;
        let whole = proof
            .whole
            .and_then(|(want, h)| h.finish(count).map(|read| (want, read)));
        let read_crcs: Option<Crcs> = proof.crcs.and_then(PartCrcs::finish);
        let mirrored = layout.mirrored.then_some((&expect, layout.parts.as_slice()));
        let crc = proof.src_crc.zip(read_crcs.map(|c| c.ecma));
        self.check_read(t.job, t.worker, t.rk, upload_id, t.src_etag, mirrored, whole, crc)
            .await?;
        let (head, completed) = self
            .complete_checked(t.job, upload_id, &parts, t.size, &expect, read_crcs)
            .await?;
        ObjectTransferred {
            key: dkey,
            bytes: t.size,
            parts: count,
            resumed_parts: resumed,
        }
        .emit();
        if self.verify_etags() || self.dst.local_path(dkey).is_some() {
            self.keep_part_etag(&t.job.src.key, t.src_etag, layout.part_size, expect.clone())
                .await;
        }
        // For the ledger: the ETag the destination lists for the object, and
        // the CRC of the bytes sent (every part read by this attempt).
        let checksum = read_crcs.map(|c| format!("crc64nvme:{}", ferry_core::checksum::crc64_base64(c.nvme)));
        Ok((Some(head.etag.or(completed).unwrap_or(expect)), checksum))
    }
}
