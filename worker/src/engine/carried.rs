//! What a copy carries besides the bytes: the Content-* headers and user
//! metadata the source answered, the job's destination policy (storage
//! class, ACL, encryption) and the tags (`--tags`).
//!
//! Tags are read only when the source has some: a GET answers their count
//! (`x-amz-tagging-count`), so objects without tags cost no request; a HEAD
//! does not, so the server-side path asks GetObjectTagging once per upload
//! in parts (CopyObject keeps the source's tags by itself). A destination
//! that cannot keep something (tags, or user metadata in a local
//! directory, which keeps only the modification time) gets the bytes
//! anyway, and the process says once what it dropped and why.

use std::sync::atomic::{AtomicBool, Ordering};

use ferry_core::checksum::MTIME_META;
use ferry_core::config::TagMode;
use ferry_core::job::Job;
use ferry_core::store::{ObjectAttributes, ObjectMeta, PutOptions, StoreError};

use super::{Engine, EngineError};

/// Warnings given once per process about what a destination cannot keep.
#[derive(Debug, Default)]
pub(super) struct Dropped {
    tags: AtomicBool,
    metadata: AtomicBool,
}

impl Dropped {
    fn once(flag: &AtomicBool, what: &str, why: &str) {
        if !flag.swap(true, Ordering::Relaxed) {
            tracing::warn!("{what} are not copied: {why}. The bytes are; this is said once per process.");
        }
    }
}

impl Engine {
    /// How the destination object is written: the source's metadata and
    /// tags, and the job's policy. A local copy keeps the source's
    /// modification time: the recorded `mtime`, else when the source was
    /// written (rclone's reading).
    pub(super) async fn put_options(
        &self,
        job: &Job,
        attributes: &ObjectAttributes,
        meta: &ObjectMeta,
    ) -> Result<PutOptions, EngineError> {
        let dest_key = &job.dest.key;
        let mut o = self.put.clone();
        o.attributes = attributes.clone();
        o.tags = self.tags_for(job, meta).await?;
        if self.dst.local_path(dest_key).is_some() {
            let user: Vec<_> = o.attributes.user.keys().filter(|k| *k != MTIME_META).collect();
            if !user.is_empty() {
                Dropped::once(
                    &self.dropped.metadata,
                    "User metadata (x-amz-meta-*)",
                    "a local directory keeps only the modification time",
                );
            }
            if o.tags.as_ref().is_some_and(|t| !t.is_empty()) {
                Dropped::once(&self.dropped.tags, "Tags", "a local directory keeps none");
            }
            if !o.attributes.user.contains_key(MTIME_META) {
                if let Some(ns) = meta.modified_ns() {
                    o.attributes
                        .user
                        .insert(MTIME_META.to_string(), ferry_core::checksum::format_mtime(ns));
                }
            }
        }
        Ok(o)
    }

    /// The tags the destination object gets: `None` leaves them to the
    /// store (no header).
    async fn tags_for(&self, job: &Job, meta: &ObjectMeta) -> Result<Option<Vec<(String, String)>>, EngineError> {
        match &self.tags {
            TagMode::None => Ok(None),
            TagMode::Set(tags) => Ok(Some(tags.clone())),
            TagMode::Copy if meta.tag_count == Some(0) => Ok(None),
            TagMode::Copy => match self.src.get_tags(&job.src.key, job.src.version.as_deref()).await {
                Ok(tags) => Ok((!tags.is_empty()).then_some(tags)),
                // A local directory or a store without tagging has none to copy.
                Err(StoreError::Unsupported { .. }) => Ok(None),
                Err(e) => Err(EngineError::Source(e)),
            },
        }
    }

    /// Sets the tags of an object written by a completion (`whole_copy`:
    /// by a server-side CopyObject) with PutObjectTagging, where the request
    /// that wrote it may not have: some stores (Ceph radosgw) ignore the
    /// tags of CreateMultipartUpload and CopyObject's tagging directive.
    /// One request for objects that get tags, one more to read the
    /// source's; none for a single PUT, whose header every store honours.
    pub(super) async fn tag_written(&self, job: &Job, whole_copy: bool) -> Result<(), EngineError> {
        if self.dst.local_path(&job.dest.key).is_some() {
            return Ok(());
        }
        let tags = match &self.tags {
            TagMode::Set(tags) => tags.clone(),
            TagMode::None if whole_copy => Vec::new(),
            TagMode::None => return Ok(()),
            TagMode::Copy if whole_copy => return Ok(()),
            TagMode::Copy => match self.src.get_tags(&job.src.key, job.src.version.as_deref()).await {
                Ok(t) if !t.is_empty() => t,
                Ok(_) | Err(StoreError::Unsupported { .. }) => return Ok(()),
                Err(e) => return Err(EngineError::Source(e)),
            },
        };
        match self.dst.put_tags(&job.dest.key, &tags).await {
            Ok(()) => Ok(()),
            Err(StoreError::Unsupported { .. }) => {
                Dropped::once(&self.dropped.tags, "Tags", "the destination keeps none");
                Ok(())
            }
            Err(e) => Err(EngineError::Dest(e)),
        }
    }

    /// The destination policy for a server-side CopyObject: the source's
    /// tags are kept by the copy itself unless the job says otherwise.
    pub(super) fn copy_policy(&self) -> PutOptions {
        let mut o = self.put.clone();
        o.tags = match &self.tags {
            TagMode::Copy => None,
            TagMode::None => Some(Vec::new()),
            TagMode::Set(tags) => Some(tags.clone()),
        };
        o
    }
}
