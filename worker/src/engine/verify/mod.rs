//! Verification: every read of the source and every check of what was read
//! or written, in one place.
//!
//! * **Reads** are pinned to the ETag seen at discovery (`if-match`) and
//!   must return the bytes asked for ([`Engine::read`]).
//! * **What was read** is checked against the source's own proof before
//!   anything is made visible: its multipart ETag when the transfer mirrors
//!   its part layout, its whole-object MD5 hashed in order, or the
//!   CRC-64/ECMA its store sent (OSS, COS); see [`hashers`] for the
//!   algorithm. A mismatch aborts and forgets the upload, so the next
//!   attempt reads everything again.
//! * **What was written** is checked against what was sent: each PUT's and
//!   part's ETag against its MD5 where the store's ETags are MD5s, and a
//!   completed object by a HEAD (size, the MD5-of-MD5s `-N` ETag, and the
//!   CRC-64/NVME the store keeps) ([`Engine::check_completed`]).
//!
//! Also here: the sweep of uploads an attempt created but did not record.

pub mod hashers;

use bytes::Bytes;
use ferry_core::etag;
use ferry_core::etag::ETag;
use ferry_core::job::Job;
use ferry_core::state::RecordKey;
use ferry_core::store::{GetOptions, GetResult, ObjectMeta, PartInfo, StoreError};

use super::{Engine, EngineError, Part};
use crate::plan;
use hashers::{mirrorable, Crcs};

/// What the CRC checks compare.
const CRC_READ: &str = "CRC-64/ECMA of the bytes read from the source";

impl Engine {
    /// The source's part size when the transfer can mirror its multipart
    /// layout (see [`hashers`]); `None` to plan parts freely.
    pub(super) async fn source_layout(
        &self,
        key: &str,
        src_etag: Option<&str>,
        size: u64,
        planned: u64,
    ) -> Option<u64> {
        let tag = src_etag.filter(|_| self.src.etags_are_md5())?;
        let etag::ETagKind::Multipart(n) = ETag(tag).kind() else {
            return None;
        };
        let max_part = (u64::from(self.budget_kib) * 1024).max(planned).min(plan::MAX_PART);
        match self.src.part_size(key, 1).await {
            Ok(Some((first, count))) if mirrorable(size, first, count, n, max_part) => Some(first),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(key, error = %e, "The source's part layout is unknown; planning parts freely.");
                None
            }
        }
    }

    /// Checks what was read against the source's ETag before the upload is
    /// completed: the parts' MD5-of-MD5s when the layout is mirrored
    /// (`mirrored`: that ETag and the plan), or the ordered whole-object MD5
    /// (`whole`: expected, read). A mismatch aborts and forgets the upload so
    /// the next attempt reads everything again.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn check_read(
        &self,
        job: &Job,
        worker: &str,
        rk: &RecordKey,
        upload_id: &str,
        src_etag: Option<&str>,
        mirrored: Option<(&String, &[Part])>,
        whole: Option<([u8; 16], [u8; 16])>,
        crc: Option<(u64, u64)>,
    ) -> Result<(), EngineError> {
        let key = &job.src.key;
        let bad = match (mirrored, src_etag, whole) {
            _ if crc.is_some_and(|(want, read)| want != read) => {
                let (want, read) = crc.unwrap_or_default();
                Some((CRC_READ, want.to_string(), read.to_string()))
            }
            (Some((sent, plan)), Some(tag), _) if !ETag(sent).same(tag) => {
                if !self.source_parts_match(key, plan).await {
                    tracing::warn!(
                        key = %key,
                        "The source's parts differ in size, so its ETag cannot be recomputed; \
                         the object is verified part by part only."
                    );
                    return Ok(());
                }
                Some(("source multipart ETag of the bytes read", tag.to_string(), sent.clone()))
            }
            (None, _, Some((want, read))) if want != read && self.src.etags_are_md5() => Some((
                "MD5 of the bytes read from the source",
                hex::encode(want),
                hex::encode(read),
            )),
            _ => None,
        };
        let Some((what, expected, found)) = bad else {
            return Ok(());
        };
        let dkey = job.dest.key.clone();
        self.dst
            .abort_multipart(&dkey, upload_id)
            .await
            .map_err(EngineError::Dest)?;
        self.state.clear_upload(rk, worker).await?;
        Err(EngineError::Verify {
            key: key.clone(),
            what,
            expected,
            found,
        })
    }

    /// Checks a whole object read at once against the whole-object
    /// CRC-64/ECMA its store sent with it (OSS, COS): an end-to-end proof of
    /// the read with no second request. `known`: the CRC already computed.
    pub(super) async fn check_source_crc(
        &self,
        key: &str,
        want: u64,
        known: Option<u64>,
        body: &Bytes,
    ) -> Result<(), EngineError> {
        let read = match known {
            Some(c) => c,
            None => {
                let b = body.clone();
                tokio::task::spawn_blocking(move || ferry_core::checksum::crc64ecma(&b))
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            }
        };
        if read == want {
            return Ok(());
        }
        Err(EngineError::Verify {
            key: key.to_string(),
            what: CRC_READ,
            expected: want.to_string(),
            found: read.to_string(),
        })
    }

    /// Checks a whole object read at once against its multipart source ETag,
    /// when the source tells its part layout (see [`hashers`]).
    pub(super) async fn check_body_layout(&self, key: &str, tag: &str, body: &Bytes) -> Result<(), EngineError> {
        let size = body.len() as u64;
        let Some(first) = self.source_layout(key, Some(tag), size, size).await else {
            return Ok(());
        };
        let b = body.clone();
        let read = tokio::task::spawn_blocking(move || {
            let md5s: Vec<[u8; 16]> = b.chunks(first as usize).map(etag::md5).collect();
            ETag::of_parts(md5s.iter())
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        if ETag(&read).same(tag) {
            return Ok(());
        }
        let plan: Vec<_> = plan::parts(size, first).collect();
        if !self.source_parts_match(key, &plan).await {
            tracing::warn!(key = %key, "The source's parts differ in size, so its ETag cannot be recomputed; \
                the object is verified by its MD5 at the destination only.");
            return Ok(());
        }
        Err(EngineError::Verify {
            key: key.to_string(),
            what: "source multipart ETag of the bytes read",
            expected: tag.to_string(),
            found: read,
        })
    }

    /// Aborts the destination's unfinished uploads of exactly `key`: left by an
    /// attempt that died before recording its upload id. This worker holds
    /// the key's lease, so no other ferry upload of it is under way.
    pub(super) async fn abort_unrecorded(&self, key: &str) -> Result<(), EngineError> {
        let uploads = self.dst.list_uploads(key).await.map_err(EngineError::Dest)?;
        for u in uploads.iter().filter(|u| u.key == key) {
            tracing::info!(key, upload_id = %u.upload_id, "Aborting an upload an earlier attempt created but did not record.");
            self.dst
                .abort_multipart(key, &u.upload_id)
                .await
                .map_err(EngineError::Dest)?;
        }
        Ok(())
    }

    /// Whether every part of the source has the size the plan gives it.
    async fn source_parts_match(&self, key: &str, plan: &[Part]) -> bool {
        for (n, range) in plan {
            match self.src.part_size(key, *n).await {
                Ok(Some((len, _))) if len == range.end - range.start => {}
                Ok(Some(_)) => return false,
                // Unknown: treat the mismatch as damage; the next attempt asks again.
                Ok(None) | Err(_) => return true,
            }
        }
        true
    }
}

/// The MD5 in an ETag returned by a store that hashes what it writes.
pub(super) fn md5_in_etag(key: &str, what: &'static str, tag: &str) -> Result<[u8; 16], EngineError> {
    ETag(tag).md5().ok_or_else(|| EngineError::Verify {
        key: key.to_string(),
        what,
        expected: "an MD5".into(),
        found: tag.to_string(),
    })
}

impl Engine {
    /// Reads the job's source (or a range of it) pinned to `etag`, and to
    /// the job's version id when it names one; a short read is a retryable
    /// source error.
    pub(super) async fn read(
        &self,
        job: &Job,
        etag: Option<&str>,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<GetResult, EngineError> {
        let key = &job.src.key;
        let opts = GetOptions {
            range: range.clone(),
            if_match: etag.map(str::to_string),
            version: job.src.version.clone(),
        };
        // Bandwidth limits: a ranged read waits for its bytes before it is
        // sent (a whole read is paced by its caller, who knows its size),
        // once, however often the store retries it.
        if let Some(r) = &range {
            self.pacing.take(r.end - r.start).await;
        }
        let got = self.src.get(key, &opts).await.map_err(EngineError::Source)?;
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

    /// The destination's metadata of `key`.
    pub(super) async fn dest_head(&self, key: &str) -> Result<Option<ObjectMeta>, EngineError> {
        self.dst.head(key).await.map_err(EngineError::Dest)
    }

    /// Whether the destination's ETags prove what it stored: MD5 forms, and
    /// no KMS encryption that makes them opaque.
    pub(super) fn verify_etags(&self) -> bool {
        self.dst.etags_are_md5() && self.put.sse.as_deref() != Some("aws:kms")
    }

    /// Checks the ETag a PUT or a part upload returned against the MD5 sent.
    pub(super) fn check_sent(
        &self,
        key: &str,
        what: &'static str,
        md5: &[u8; 16],
        tag: Option<&str>,
    ) -> Result<(), EngineError> {
        let expect = ETag::of_md5(md5);
        match tag {
            Some(found) if self.verify_etags() && !ETag(found).same(&expect) => Err(EngineError::Verify {
                key: key.to_string(),
                what,
                expected: expect,
                found: found.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Completes the job's upload from `parts`, checks the object
    /// ([`Engine::check_completed`]) and gives it its tags
    /// ([`Engine::tag_written`]). A completion whose answer was lost finds
    /// the upload gone: the HEAD decides. Returns the HEAD and the ETag the
    /// completion answered.
    pub(super) async fn complete_checked(
        &self,
        job: &Job,
        upload_id: &str,
        parts: &[PartInfo],
        size: u64,
        expect: &str,
        sent: Option<Crcs>,
    ) -> Result<(ObjectMeta, Option<String>), EngineError> {
        let dkey = &job.dest.key;
        let completed = match self.dst.complete_multipart(dkey, upload_id, parts).await {
            Ok(tag) => tag,
            Err(StoreError::NoSuchUpload { .. }) => None,
            Err(e) => return Err(EngineError::Dest(e)),
        };
        let head = self
            .check_completed(dkey, size, expect, completed.as_deref(), sent)
            .await?;
        self.tag_written(job, false).await?;
        Ok((head, completed))
    }

    /// Checks a completed multipart object by a HEAD: present, `size` bytes,
    /// the CRC-64/NVME the store keeps equal to the one of the bytes sent,
    /// and its ETag the MD5-of-MD5s `expect` where ETags are checkable.
    /// `completed`: the ETag the completion answered. Returns the HEAD.
    pub(super) async fn check_completed(
        &self,
        dkey: &str,
        size: u64,
        expect: &str,
        completed: Option<&str>,
        sent: Option<Crcs>,
    ) -> Result<ObjectMeta, EngineError> {
        let bad = |what: &'static str, expected: String, found: String| EngineError::Verify {
            key: dkey.to_string(),
            what,
            expected,
            found,
        };
        let head = self.dest_head(dkey).await?.ok_or_else(|| {
            bad(
                "destination object after completion",
                "present".into(),
                "missing".into(),
            )
        })?;
        if head.size != size {
            return Err(bad("destination size", size.to_string(), head.size.to_string()));
        }
        if let (Some(stored), Some(read)) = (head.checksums.crc64nvme, sent) {
            if stored != read.nvme {
                return Err(bad(
                    "destination CRC-64/NVME (the store's, against the bytes sent)",
                    ferry_core::checksum::crc64_base64(read.nvme),
                    ferry_core::checksum::crc64_base64(stored),
                ));
            }
        }
        let found = match self.verify_etags() {
            true => head.etag.clone(),
            false => completed.map(str::to_string),
        };
        // Part ETags are MD5s on stores that hash what they write and on a
        // local directory (which reports the MD5-of-MD5s it assembled); an
        // encrypting store's are not, and its object is proven by the parts'
        // Content-MD5 acknowledgements and the size.
        let checkable = self.verify_etags() || self.dst.local_path(dkey).is_some();
        if let Some(found) = found.filter(|_| checkable) {
            if ETag(&found).kind() != etag::ETagKind::Opaque && !ETag(&found).same(expect) {
                return Err(bad("destination multipart ETag", expect.to_string(), found));
            }
        }
        Ok(head)
    }
}
