//! The engine's checks of what was read against the source's ETag, and the
//! sweep of uploads an attempt created but did not record (see
//! [`crate::source_check`] for the algorithm).

use bytes::Bytes;
use ferry_core::etag;
use ferry_core::job::Job;
use ferry_core::retry::retry;
use ferry_core::state::RecordKey;
use ferry_core::store::StoreError;

use super::{Engine, EngineError, Part};
use crate::plan;
use crate::source_check::mirrorable;

/// What the CRC checks compare.
const CRC_READ: &str = "CRC-64/ECMA of the bytes read from the source";

impl Engine {
    /// The source's part size when the transfer can mirror its multipart
    /// layout (see [`crate::source_check`]); `None` to plan parts freely.
    pub(super) async fn source_layout(
        &self,
        key: &str,
        src_etag: Option<&str>,
        size: u64,
        planned: u64,
    ) -> Option<u64> {
        let tag = src_etag.filter(|_| self.src.etags_are_md5())?;
        let etag::ETagKind::Multipart(n) = etag::kind(tag) else {
            return None;
        };
        let max_part = (u64::from(self.budget_kib) * 1024).max(planned).min(plan::MAX_PART);
        match retry(self.cfg.retries, StoreError::is_retryable, || {
            self.src.part_size(key, 1)
        })
        .await
        {
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
            (Some((sent, plan)), Some(tag), _) if !etag::same(sent, tag) => {
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
        retry(self.cfg.retries, StoreError::is_retryable, || {
            self.dst.abort_multipart(&dkey, upload_id)
        })
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
    /// when the source tells its part layout (see [`crate::source_check`]).
    pub(super) async fn check_body_layout(&self, key: &str, tag: &str, body: &Bytes) -> Result<(), EngineError> {
        let size = body.len() as u64;
        let Some(first) = self.source_layout(key, Some(tag), size, size).await else {
            return Ok(());
        };
        let b = body.clone();
        let read = tokio::task::spawn_blocking(move || {
            let md5s: Vec<[u8; 16]> = b.chunks(first as usize).map(etag::md5).collect();
            etag::multipart_etag(md5s.iter())
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        if etag::same(&read, tag) {
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
        let uploads = retry(self.cfg.retries, StoreError::is_retryable, || {
            self.dst.list_uploads(key)
        })
        .await
        .map_err(EngineError::Dest)?;
        for u in uploads.iter().filter(|u| u.key == key) {
            tracing::info!(key, upload_id = %u.upload_id, "Aborting an upload an earlier attempt created but did not record.");
            retry(self.cfg.retries, StoreError::is_retryable, || {
                self.dst.abort_multipart(key, &u.upload_id)
            })
            .await
            .map_err(EngineError::Dest)?;
        }
        Ok(())
    }

    /// Whether every part of the source has the size the plan gives it.
    async fn source_parts_match(&self, key: &str, plan: &[Part]) -> bool {
        for (n, range) in plan {
            match retry(self.cfg.retries, StoreError::is_retryable, || {
                self.src.part_size(key, *n)
            })
            .await
            {
                Ok(Some((len, _))) if len == range.end - range.start => {}
                Ok(Some(_)) => return false,
                // Unknown: treat the mismatch as damage; the next attempt asks again.
                Ok(None) | Err(_) => return true,
            }
        }
        true
    }
}
