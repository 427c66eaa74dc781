//! Server-side copy: the destination's store copies the source's bytes
//! itself (S3 CopyObject, UploadPartCopy), and no byte of the object passes
//! through the worker.
//!
//! Used when the job's settings allow it (`--server-side`, see
//! [`ferry_core::config::ServerSideCopy`]):
//!
//! * **CopyObject** for an object sent in one PUT when streamed (up to the
//!   multipart threshold), and for a larger one stored in one part, up to
//!   the vendor's single-copy limit (S3's 5 GiB; OSS's 1 GiB): its MD5 ETag is kept, so the copy is verified and
//!   compared like any other.
//! * **UploadPartCopy** otherwise (a source uploaded in parts, or above
//!   5 GiB), through the same steps as a streamed multipart upload: the
//!   source's part layout is mirrored where its ETag can then be
//!   recomputed, the upload and each part are recorded, an attempt resumes
//!   at part granularity, and the completed object's ETag is checked
//!   against the source's.
//!
//! Every copy is pinned to the listed ETag (`x-amz-copy-source-if-match`),
//! so a source that changes fails the attempt like a pinned read. A
//! refusal (a store without UploadPartCopy, copies across regions or
//! accounts it does not allow, an SSE-C source) falls back to streaming
//! with a log line saying why, unless the user asked for `always`; a
//! refusal that concerns every object (access denied, not implemented)
//! turns server-side copy off for the rest of the process.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use ferry_core::config::ServerSideCopy;
use ferry_core::etag::{ETag, ETagKind};
use ferry_core::state::{ObjectRecord, UploadRecord};
use ferry_core::store::{CopySource, PartInfo, StoreError, UploadShape};
use ferry_core::telemetry::ObjectTransferred;
use futures::stream::{self, StreamExt, TryStreamExt};

use super::multipart::{Layout, Target, Upload};
use super::{Engine, EngineError};

/// What became of a job offered to server-side copy.
pub(super) enum Offered {
    /// Not for this job (off, or turned off in this process).
    No,
    /// The store refused; the bytes are to be streamed (the record may
    /// have changed: read it again).
    FellBack,
    /// Copied (the destination ETag and ledger checksum), or failed for good.
    Done(Result<(Option<String>, Option<String>), EngineError>),
}

/// Server-side copy in an engine: the settings, and why it was turned off
/// for this process, once a refusal said it cannot work for any object.
#[derive(Debug)]
pub(super) struct ServerSide {
    cfg: ServerSideCopy,
    off: Mutex<Option<String>>,
}

impl ServerSide {
    pub(super) fn new(cfg: ServerSideCopy) -> Self {
        Self {
            cfg,
            off: Mutex::new(None),
        }
    }

    fn is_off(&self) -> bool {
        self.off.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Notes a refusal; returns whether it turns copies off for the process.
    fn refused(&self, e: &StoreError) -> bool {
        let everywhere = matches!(e, StoreError::AccessDenied { .. } | StoreError::Unsupported { .. })
            || matches!(e, StoreError::Backend { code, .. } if code.contains("NotImplemented") || code == "HTTP 501");
        if everywhere {
            *self.off.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
        }
        everywhere
    }
}

/// Whether a store's answer to a copy is a refusal to copy (rather than a
/// failure that streaming would meet too, or a source that changed).
fn is_refusal(e: &EngineError) -> Option<&StoreError> {
    let EngineError::Dest(se) = e else {
        return None;
    };
    let refusal = match se {
        StoreError::AccessDenied { .. } | StoreError::Unsupported { .. } => true,
        StoreError::Backend { code, retryable, .. } => !retryable || code.contains("NotImplemented"),
        _ => false,
    };
    refusal.then_some(se)
}

/// A copy's errors as the engine reads them: the source's ETag no longer
/// matching, or the source missing, are the source's.
fn copy_err(e: StoreError) -> EngineError {
    match e {
        e @ (StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) => EngineError::Source(e),
        e => EngineError::Dest(e),
    }
}

impl Engine {
    /// Uses server-side copy for this job's copy of `src_etag`, `size`.
    pub(super) async fn offer_server_side(&self, t: &Target<'_>, rec: &ObjectRecord) -> Offered {
        let Some(ss) = self.server_side.as_ref().filter(|ss| !ss.is_off()) else {
            return Offered::No;
        };
        let multipart_source = t
            .src_etag
            .is_some_and(|tag| matches!(ETag(tag).kind(), ETagKind::Multipart(_)));
        // Up to the multipart threshold an object is claimed as one request
        // (see `Engine::recorded_by_claim`), so it is copied in one.
        let whole = t.size <= self.cfg.multipart_threshold || (t.size <= ss.cfg.max_copy_object && !multipart_source);
        let r = match whole {
            true => self.copy_whole(t, &ss.cfg).await,
            false => self.copy_parts(t, rec, &ss.cfg).await,
        };
        let Some(e) = r.as_ref().err().and_then(is_refusal).filter(|_| !ss.cfg.always) else {
            if r.is_ok() {
                self.stats.server_side.fetch_add(1, Ordering::Relaxed);
            }
            return Offered::Done(r);
        };
        match ss.refused(e) {
            true => tracing::warn!(key = %t.job.src.key, reason = %e,
                "The store refused a server-side copy; streaming this and every further object through this worker."),
            false => tracing::info!(key = %t.job.src.key, reason = %e,
                "The store refused a server-side copy of this object; streaming it instead."),
        }
        Offered::FellBack
    }

    fn copy_source(&self, t: &Target<'_>, cfg: &ServerSideCopy) -> CopySource {
        CopySource {
            bucket: cfg.src_bucket.clone(),
            key: t.job.src.key.clone(),
            if_match: t.src_etag.map(str::to_string),
            version: t.job.src.version.clone(),
        }
    }

    /// CopyObject, checked by a HEAD: the size, and the ETag where both are
    /// MD5s of the same bytes.
    async fn copy_whole(
        &self,
        t: &Target<'_>,
        cfg: &ServerSideCopy,
    ) -> Result<(Option<String>, Option<String>), EngineError> {
        let dkey = &t.job.dest.key;
        let src = self.copy_source(t, cfg);
        let tag = self
            .dst
            .copy_object(&src, dkey, &self.copy_policy())
            .await
            .map_err(copy_err)?;
        let single_md5 = t
            .src_etag
            .filter(|_| self.src.etags_are_md5())
            .and_then(|s| ETag(s).md5());
        let expect = single_md5.map(|m| ETag::of_md5(&m));
        let head = self.check_copied(dkey, t.size, expect.as_deref()).await?;
        self.tag_written(t.job, true).await?;
        self.stats.bytes.fetch_add(t.size, Ordering::Relaxed);
        tracing::debug!(key = %dkey, bytes = t.size, "Copied server-side (CopyObject).");
        Ok((head.etag.or(tag), None))
    }

    /// UploadPartCopy: plan, resume or create, copy the missing parts,
    /// complete and check, like a streamed multipart upload.
    async fn copy_parts(
        &self,
        t: &Target<'_>,
        rec: &ObjectRecord,
        cfg: &ServerSideCopy,
    ) -> Result<(Option<String>, Option<String>), EngineError> {
        let layout = self.plan_layout(t).await;
        let upload = match self.resume(t, rec, &layout).await? {
            Some(up) => up,
            None => self.create_for_copy(t, &layout).await?,
        };
        let resumed = upload.done.len() as u32;
        self.stats.resumed_parts.fetch_add(resumed as u64, Ordering::Relaxed);
        let src = self.copy_source(t, cfg);
        let Upload { id, mut done, .. } = upload;
        let todo: Vec<_> = layout
            .parts
            .iter()
            .filter(|(n, _)| !done.iter().any(|p| p.number == *n))
            .cloned()
            .collect();
        let copied: Vec<PartInfo> = stream::iter(
            todo.into_iter()
                .map(|(n, range)| self.copy_part(t, &src, &id, n, range)),
        )
        .buffer_unordered(self.cfg.concurrency.max(1))
        .try_collect()
        .await?;
        done.extend(copied);
        done.sort_by_key(|p| p.number);
        self.complete_copy(t, &layout, &id, done, resumed).await
    }

    /// A new upload for a server-side copy, created with the source's
    /// metadata from a HEAD (no byte is read), behind the same marker as a
    /// streamed upload's.
    async fn create_for_copy(&self, t: &Target<'_>, layout: &Layout) -> Result<Upload, EngineError> {
        let dkey = &t.job.dest.key;
        let Some((meta, attributes)) = self
            .src
            .head_attributes(&t.job.src.key)
            .await
            .map_err(EngineError::Source)?
        else {
            return Err(EngineError::Source(StoreError::NotFound {
                store: self.src.describe(),
                key: t.job.src.key.clone(),
            }));
        };
        if meta
            .etag
            .as_deref()
            .zip(t.src_etag)
            .is_some_and(|(now, was)| !ETag(now).same(was))
        {
            return Err(EngineError::Source(StoreError::PreconditionFailed {
                store: self.src.describe(),
                key: t.job.src.key.clone(),
                expected: t.src_etag.unwrap_or_default().to_string(),
            }));
        }
        let opts = self.put_options(t.job, &attributes, &meta).await?;
        let mut up = UploadRecord {
            upload_id: String::new(),
            part_size: layout.part_size,
            src_etag: t.src_etag.map(str::to_string),
            src_size: t.size,
        };
        self.state.begin_upload(t.rk, t.worker, &up).await?;
        let shape = UploadShape {
            size: t.size,
            part_size: layout.part_size,
        };
        up.upload_id = self
            .dst
            .create_multipart(dkey, &opts, shape)
            .await
            .map_err(EngineError::Dest)?;
        self.state.begin_upload(t.rk, t.worker, &up).await?;
        Ok(Upload {
            id: up.upload_id,
            done: Vec::new(),
            first: None,
        })
    }

    /// One part copied and recorded.
    async fn copy_part(
        &self,
        t: &Target<'_>,
        src: &CopySource,
        upload_id: &str,
        n: u32,
        range: std::ops::Range<u64>,
    ) -> Result<PartInfo, EngineError> {
        let len = range.end - range.start;
        let dkey = &t.job.dest.key;
        let tag = self
            .dst
            .upload_part_copy(src, dkey, upload_id, n, range)
            .await
            .map_err(copy_err)?;
        let info = PartInfo {
            number: n,
            etag: tag,
            size: len,
        };
        self.state.part_done(t.rk, t.worker, upload_id, &info).await?;
        self.stats.bytes.fetch_add(len, Ordering::Relaxed);
        Ok(info)
    }

    /// Completes a copied upload and checks it: its MD5-of-MD5s against
    /// the source's ETag when the layout is mirrored (aborting a copy that
    /// differs), then the object by a HEAD.
    async fn complete_copy(
        &self,
        t: &Target<'_>,
        layout: &Layout,
        upload_id: &str,
        parts: Vec<PartInfo>,
        resumed: u32,
    ) -> Result<(Option<String>, Option<String>), EngineError> {
        let dkey = &t.job.dest.key;
        let md5s: Vec<[u8; 16]> = parts.iter().filter_map(|p| ETag(&p.etag).md5()).collect();
        let expect = ETag::of_parts(md5s.iter());
        let proven = self.verify_etags() && md5s.len() == parts.len();
        let mirrored = (layout.mirrored && proven).then_some((&expect, layout.parts.as_slice()));
        self.check_read(t.job, t.worker, t.rk, upload_id, t.src_etag, mirrored, None, None)
            .await?;
        let (head, completed) = self
            .complete_checked(t.job, upload_id, &parts, t.size, &expect, None)
            .await?;
        ObjectTransferred {
            key: dkey,
            bytes: t.size,
            parts: layout.parts.len() as u32,
            resumed_parts: resumed,
        }
        .emit();
        tracing::debug!(key = %dkey, bytes = t.size, parts = parts.len(), "Copied server-side (UploadPartCopy).");
        Ok((Some(head.etag.or(completed).unwrap_or(expect)), None))
    }

    /// Checks an object copied in one request by a HEAD: present, `size`
    /// bytes, and the source's MD5 ETag `expect` where the destination's
    /// ETags are MD5s.
    async fn check_copied(
        &self,
        dkey: &str,
        size: u64,
        expect: Option<&str>,
    ) -> Result<ferry_core::store::ObjectMeta, EngineError> {
        let bad = |what: &'static str, expected: String, found: String| EngineError::Verify {
            key: dkey.to_string(),
            what,
            expected,
            found,
        };
        let head = self
            .dest_head(dkey)
            .await?
            .ok_or_else(|| bad("destination object after the copy", "present".into(), "missing".into()))?;
        if head.size != size {
            return Err(bad("destination size", size.to_string(), head.size.to_string()));
        }
        if let (Some(want), Some(found)) = (expect.filter(|_| self.verify_etags()), &head.etag) {
            if !ETag(found).same(want) {
                return Err(bad("destination ETag after the copy", want.to_string(), found.clone()));
            }
        }
        Ok(head)
    }
}
