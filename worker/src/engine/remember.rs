//! Checksums of local source files, kept as they are copied.
//!
//! With `--compare checksum`, the finder compares a local file with its copy
//! by content, and keeps each file's checksums in the state file so a file is
//! read for that only once ([`FileHashes`]). The engine reads every byte of a
//! file it copies anyway: a file sent in one PUT is hashed in one pass (MD5
//! for the Content-MD5, the CRC-64s beside it) and a file sent in parts
//! leaves the multipart ETag of its part size. Both are kept for the version
//! that was read — the file's stamp is taken after the copy and must still
//! match the listed size and time — so the next comparison reads nothing.
//! A failure here is logged, never fatal: the cache only saves reading.

use std::path::PathBuf;

use bytes::Bytes;
use ferry_core::checksum::{Checksums, Hasher};
use ferry_core::file_hashes::FileStamp;
use ferry_core::store::ObjectMeta;

use super::Engine;

/// MD5 and both CRC-64s of a body, computed off the async threads.
pub(super) async fn checksums_of(body: Bytes) -> Checksums {
    let hash = move || {
        let mut h = Hasher::new();
        h.update(&body);
        h.finish()
    };
    match tokio::task::spawn_blocking(hash).await {
        Ok(c) => c,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl Engine {
    /// The local file behind a source key, when its checksums are kept.
    pub(super) fn kept_file(&self, src_key: &str) -> Option<PathBuf> {
        self.hashes.as_ref()?;
        self.src.local_path(src_key)
    }

    /// The file's stamp now, if it is still the version `read` describes.
    async fn stamp_if_unchanged(path: PathBuf, read: &ObjectMeta) -> Option<(PathBuf, FileStamp)> {
        let (size, mtime) = (read.size, read.mtime_ns?);
        let stamped = tokio::task::spawn_blocking(move || FileStamp::of(&path).ok().map(|s| (path, s)))
            .await
            .ok()
            .flatten()?;
        (stamped.1.size == size && stamped.1.mtime_ns == mtime).then_some(stamped)
    }

    /// Keeps the checksums of a file copied in one PUT.
    pub(super) async fn keep_checksums(&self, path: PathBuf, read: &ObjectMeta, sums: Checksums) {
        let Some(cache) = &self.hashes else { return };
        let Some((path, stamp)) = Self::stamp_if_unchanged(path, read).await else {
            return;
        };
        if let Err(e) = cache.put_many(vec![(path, stamp, sums)]).await {
            tracing::debug!(error = %e, "Could not keep a file's checksums.");
        }
    }

    /// Keeps the multipart ETag of a file copied in parts of `part_size`.
    pub(super) async fn keep_part_etag(&self, src_key: &str, src_etag: Option<&str>, part_size: u64, tag: String) {
        let (Some(cache), Some(path)) = (&self.hashes, self.kept_file(src_key)) else {
            return;
        };
        let Ok(Some(now)) = self.src.head(src_key).await else {
            return;
        };
        if now.etag.as_deref() != src_etag {
            return;
        }
        let Some((path, stamp)) = Self::stamp_if_unchanged(path, &now).await else {
            return;
        };
        if let Err(e) = cache.put_part_etag(path, stamp, part_size, tag).await {
            tracing::debug!(error = %e, "Could not keep a file's multipart ETag.");
        }
    }
}
