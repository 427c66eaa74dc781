//! Objects up to the multipart threshold: one pinned GET and one PUT with
//! Content-MD5; the returned ETag must be that MD5.
//!
//! When the source's ETag is its MD5 (single-part, unencrypted S3 objects),
//! that is the Content-MD5 sent, so the destination checks the bytes against
//! the source and nothing is hashed here. Should the destination disagree,
//! what was read is hashed to tell a bad read (the job fails and is retried)
//! from damage on the way out (the PUT is sent again). A store that hashes
//! what it writes (a local directory) is given the body unhashed; otherwise
//! the body is hashed off the async threads.

use ferry_core::etag::ETag;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use ferry_core::checksum::Checksums;
use ferry_core::etag;
use ferry_core::job::Job;
use ferry_core::store::{GetResult, PutOptions, StoreError};
use ferry_core::telemetry::{ObjectTransferred, PartUploaded};

use super::verify::md5_in_etag;
use super::{md5_of, remember, Engine, EngineError};

/// What a PUT left: the MD5 of the body and the ETag the store answered.
struct Sent {
    md5: [u8; 16],
    etag: Option<String>,
}

impl Engine {
    /// Copies an object of `size` bytes pinned to `src_etag` in one PUT;
    /// returns the destination ETag the ledger records.
    pub(super) async fn single(
        &self,
        job: &Job,
        src_etag: Option<&str>,
        size: u64,
    ) -> Result<Option<String>, EngineError> {
        let started = Instant::now();
        let _permit = self.reserve(size).await;
        self.pacing.take(size).await;
        let got = self.read(job, src_etag, None).await?;
        if got.meta.size != size && src_etag.is_none() {
            tracing::debug!(key = %job.src.key, "The source size changed; copying what was read.");
        }
        let kept_file = self.kept_file(&job.src.key);
        let local_sums = match kept_file {
            Some(_) => Some(remember::checksums_of(got.body.clone()).await),
            None => None,
        };
        self.check_single_read(job, src_etag, &got, local_sums).await?;
        let opts = self.put_options(job, &got.attributes, &got.meta).await?;
        let sent = self.put_body(job, src_etag, &got, local_sums, &opts).await?;
        self.check_sent(&job.dest.key, "destination ETag", &sent.md5, sent.etag.as_deref())?;
        self.count_single(&job.dest.key, got.body.len() as u64, size, started);
        if let (Some(path), Some(sums)) = (kept_file, local_sums) {
            self.keep_checksums(path, &got.meta, sums).await;
        }
        // A local directory lists modification-time tokens, not MD5s: the
        // ledger records the written file's, so later runs can match it.
        if self.dst.local_path(&job.dest.key).is_some() {
            if let Some(h) = self.dest_head(&job.dest.key).await? {
                return Ok(h.etag);
            }
        }
        Ok(sent.etag.or(Some(ETag::of_md5(&sent.md5))))
    }

    /// Checks a whole object read at once against the source's multipart
    /// ETag (when its layout is known) and its store's CRC-64/ECMA.
    async fn check_single_read(
        &self,
        job: &Job,
        src_etag: Option<&str>,
        got: &GetResult,
        local_sums: Option<Checksums>,
    ) -> Result<(), EngineError> {
        if let Some(tag) = src_etag.filter(|t| matches!(ETag(t).kind(), etag::ETagKind::Multipart(_))) {
            self.check_body_layout(&job.src.key, tag, &got.body).await?;
        }
        if let Some(want) = got.meta.checksums.crc64ecma {
            let known = local_sums.and_then(|c| c.crc64ecma);
            self.check_source_crc(&job.src.key, want, known, &got.body).await?;
        }
        Ok(())
    }

    /// Sends the body with the cheapest proof available: the source's own
    /// MD5, the checksums a local source file was hashed for, the store's
    /// own hashing, or an MD5 computed here.
    async fn put_body(
        &self,
        job: &Job,
        src_etag: Option<&str>,
        got: &GetResult,
        local_sums: Option<Checksums>,
        opts: &PutOptions,
    ) -> Result<Sent, EngineError> {
        let key = &job.dest.key;
        let body = got.body.clone();
        let src_md5 = src_etag
            .filter(|_| !got.meta.encrypted && self.src.etags_are_md5())
            .and_then(|t| ETag(t).md5());
        let md5 = match (src_md5, local_sums.and_then(|c| c.md5)) {
            (Some(m), _) => return self.put_pinned(job, body, m, opts).await,
            (None, Some(m)) => m,
            (None, None) if self.dst.hashes_bodies() => {
                let tag = self
                    .dst
                    .put_unhashed(key, body, opts)
                    .await
                    .map_err(EngineError::Dest)?;
                let md5 = md5_in_etag(key, "destination ETag", &tag)?;
                return Ok(Sent { md5, etag: Some(tag) });
            }
            (None, None) => md5_of(body.clone()).await,
        };
        let etag = self.dst.put(key, body, md5, opts).await.map_err(EngineError::Dest)?;
        Ok(Sent { md5, etag })
    }

    /// Sends the body with the source's MD5 as its Content-MD5. A refusal
    /// (BadDigest) is a bad read when the bytes do not hash to it (the job
    /// fails), else damage on the way out (sent once more).
    async fn put_pinned(&self, job: &Job, body: Bytes, md5: [u8; 16], opts: &PutOptions) -> Result<Sent, EngineError> {
        let key = &job.dest.key;
        match self.dst.put(key, body.clone(), md5, opts).await {
            Ok(etag) => return Ok(Sent { md5, etag }),
            Err(StoreError::BadDigest { .. }) => {
                let read = md5_of(body.clone()).await;
                if read != md5 {
                    return Err(EngineError::Verify {
                        key: job.src.key.clone(),
                        what: "MD5 of the bytes read from the source",
                        expected: hex::encode(md5),
                        found: hex::encode(read),
                    });
                }
            }
            Err(e) => return Err(EngineError::Dest(e)),
        }
        let etag = self.dst.put(key, body, md5, opts).await.map_err(EngineError::Dest)?;
        Ok(Sent { md5, etag })
    }

    /// Counts a single PUT in the live stats and telemetry.
    fn count_single(&self, key: &str, sent: u64, size: u64, started: Instant) {
        self.stats.bytes.fetch_add(sent, Ordering::Relaxed);
        PartUploaded {
            bytes: sent,
            duration: started.elapsed(),
        }
        .emit();
        ObjectTransferred {
            key,
            bytes: size,
            parts: 1,
            resumed_parts: 0,
        }
        .emit();
    }
}
