//! The object store seam.
//!
//! [`ObjectStore`] is the only way ferry touches objects. Its methods mirror
//! the S3 operations the transfer engine needs — listing in key byte order,
//! ranged and pinned reads, single PUT and the multipart protocol — so every
//! step of a transfer can be recorded and replayed after a crash. Backends:
//! [`S3Store`], [`LocalStore`] and [`MemoryStore`].

mod error;
#[cfg(any(test, feature = "testing"))]
pub mod failing;
pub mod gateway;
mod local;
mod memory;
mod retrying;
mod s3;
mod s3_crc;
mod s3_meta;
mod s3_region;
pub mod vendor;
pub mod versions;

#[cfg(any(test, feature = "testing"))]
#[allow(missing_docs)]
pub mod conformance;

use crate::etag::ETag;
use std::collections::BTreeMap;
use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use crate::checksum::Checksums;
pub use error::StoreError;
pub use gateway::GatewayStore;
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use retrying::{RetryingStore, LIST_TRIES};
pub use s3::presign::{Presign, PresignedUrl};
pub use s3::{S3Credentials, S3Store, S3StoreConfig};
pub use versions::{ObjectVersion, VersionMarker, VersionPage, Versioning};

/// Result of an object store call.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One object as a listing or HEAD reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The full key, bytes as stored.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The ETag as the store reports it (quoted), if any. Local files carry a
    /// weak token built from modification time and size.
    pub etag: Option<String>,
    /// Last modification, milliseconds since the epoch, if known (on S3, when
    /// the object was written).
    pub last_modified: Option<i64>,
    /// The modification time of the content, nanoseconds since the epoch: a
    /// local file's mtime; on S3 the `mtime` user metadata, which ferry and
    /// rclone write (HEAD and GET only: listings do not carry metadata).
    pub mtime_ns: Option<i64>,
    /// Full-object checksums the store reported (HEAD and GET only).
    pub checksums: Checksums,
    /// The store said the object is encrypted with SSE-KMS or SSE-C, so its
    /// ETag is not the MD5 of its bytes.
    pub encrypted: bool,
    /// The version id, on a versioned bucket (HEAD and GET only).
    pub version: Option<String>,
    /// How many tags the object has, when the store says (HEAD and GET only).
    pub tag_count: Option<u32>,
}

impl ObjectMeta {
    /// The content's modification time as rclone reads it: the recorded
    /// `mtime`, else when the object was written.
    pub fn modified_ns(&self) -> Option<i64> {
        self.mtime_ns
            .or_else(|| self.last_modified.and_then(|ms| ms.checked_mul(1_000_000)))
    }

    /// The MD5 of the bytes, when the ETag is one: a single-part ETag of an
    /// object that is not encrypted with KMS or a customer key.
    pub fn md5(&self) -> Option<[u8; 16]> {
        self.etag
            .as_deref()
            .filter(|_| !self.encrypted)
            .and_then(|t| ETag(t).md5())
    }

    /// Every full-object checksum known: the reported ones and the ETag's MD5.
    pub fn content_checksums(&self) -> Checksums {
        Checksums {
            md5: self.checksums.md5.or(self.md5()),
            ..self.checksums
        }
    }
}

/// Options of a read.
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    /// Byte range `start..end` (end exclusive). `None` reads the whole object.
    pub range: Option<std::ops::Range<u64>>,
    /// Fail with [`StoreError::PreconditionFailed`] unless the object still has this ETag.
    pub if_match: Option<String>,
    /// Read this version (S3 version id).
    pub version: Option<String>,
}

/// System and user metadata carried with an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAttributes {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// User metadata (`x-amz-meta-*`), names without the prefix.
    pub user: BTreeMap<String, String>,
}

/// How a destination object is written: metadata plus destination policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Metadata copied from the source (or guessed).
    pub attributes: ObjectAttributes,
    /// Storage class, e.g. `STANDARD_IA`.
    pub storage_class: Option<String>,
    /// Canned ACL, e.g. `bucket-owner-full-control`.
    pub acl: Option<String>,
    /// Server-side encryption: `AES256` or `aws:kms`.
    pub sse: Option<String>,
    /// KMS key id for `aws:kms`.
    pub sse_kms_key_id: Option<String>,
    /// Tags to give the object (`x-amz-tagging`). A server-side copy keeps
    /// the source's tags when this is `None`.
    pub tags: Option<Vec<(String, String)>>,
}

/// A read's body and what the store says about the whole object.
#[derive(Debug, Clone)]
pub struct GetResult {
    /// The bytes of the requested range.
    pub body: Bytes,
    /// The whole object's metadata.
    pub meta: ObjectMeta,
    /// The object's metadata attributes.
    pub attributes: ObjectAttributes,
}

/// A part already uploaded to a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    /// 1-based part number.
    pub number: u32,
    /// The part's ETag (quoted hex MD5 on S3).
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
}

/// The shape of a multipart upload, declared when it starts: the object's
/// size and the size of every part but the last, which holds the rest. A
/// store may place parts by it: a directory writes each part at its offset
/// in one pre-sized file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadShape {
    /// The object's size in bytes.
    pub size: u64,
    /// The size of every part but the last (non-zero).
    pub part_size: u64,
}

impl UploadShape {
    /// How many parts the object has (at least one).
    pub fn parts(&self) -> u32 {
        self.size.div_ceil(self.part_size.max(1)).max(1) as u32
    }

    /// The byte range of part `number` (1-based), or `None` past the last part.
    pub fn range(&self, number: u32) -> Option<std::ops::Range<u64>> {
        if number == 0 || number > self.parts() {
            return None;
        }
        let start = (number as u64 - 1) * self.part_size;
        Some(start..(start + self.part_size).min(self.size))
    }
}

/// An object to copy from, in a bucket of the same service as the store that
/// copies it (S3 CopyObject and UploadPartCopy): no byte leaves the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    /// The source bucket.
    pub bucket: String,
    /// The source key.
    pub key: String,
    /// Copy only while the source still has this ETag
    /// (`x-amz-copy-source-if-match`); otherwise [`StoreError::PreconditionFailed`].
    pub if_match: Option<String>,
    /// Copy this version (S3 version id).
    pub version: Option<String>,
}

/// An unfinished multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    /// Object key.
    pub key: String,
    /// Upload id.
    pub upload_id: String,
    /// When it was created, milliseconds since the epoch, if known.
    pub initiated: Option<i64>,
}

/// What a store guarantees about what it writes, which decides how the
/// engine proves a copy. Every store states its own: a wrapper says what it
/// forwards, it never inherits a default it does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The store hashes every body it is given, so a caller need not hash it
    /// first: [`ObjectStore::upload_part_unhashed`] costs one MD5 pass
    /// instead of two.
    pub hashes_bodies: bool,
    /// Content-MD5 is enforced and ETags are MD5 forms, so completed objects
    /// can be verified by ETag.
    pub etags_are_md5: bool,
}

/// An object store. Keys are opaque strings; every method documents its contract.
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// A short human description for messages, e.g. `s3://bucket` or `/data`.
    fn describe(&self) -> String;

    /// What the store guarantees (see [`Capabilities`]).
    fn capabilities(&self) -> Capabilities;

    /// Whether the store hashes every body it is given ([`Capabilities::hashes_bodies`]).
    fn hashes_bodies(&self) -> bool {
        self.capabilities().hashes_bodies
    }

    /// Whether ETags are MD5 forms ([`Capabilities::etags_are_md5`]).
    fn etags_are_md5(&self) -> bool {
        self.capabilities().etags_are_md5
    }

    /// Lists the objects whose key starts with `prefix` and is strictly greater
    /// than `start_after`, in ascending order of key bytes (S3 order:
    /// `a-b` < `a/b` < `a0`). The stream ends after the last key.
    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>>;

    /// Metadata of one object; `Ok(None)` when there is no such key.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// Reads an object or a byte range of it. A missing key is
    /// [`StoreError::NotFound`]; an ETag that no longer matches `if_match` is
    /// [`StoreError::PreconditionFailed`].
    async fn get(&self, key: &str, opts: &GetOptions) -> Result<GetResult>;

    /// Writes a whole object atomically: readers see the old object or the new
    /// one, never a part. `md5` is sent as Content-MD5 and a store that checks
    /// it answers [`StoreError::BadDigest`] on mismatch. Returns the ETag.
    async fn put(&self, key: &str, body: Bytes, md5: [u8; 16], opts: &PutOptions) -> Result<Option<String>>;

    /// Starts a multipart upload of the given shape; nothing is visible until
    /// [`complete_multipart`](Self::complete_multipart). Every part sent must
    /// fit the shape, and completion names every part of it. Returns the
    /// upload id.
    async fn create_multipart(&self, key: &str, opts: &PutOptions, shape: UploadShape) -> Result<String>;

    /// Uploads one part (1-based `number`) with Content-MD5. Uploading the same
    /// number again replaces it. Returns the part ETag.
    async fn upload_part(&self, key: &str, upload_id: &str, number: u32, body: Bytes, md5: [u8; 16]) -> Result<String>;

    /// Writes a whole object the caller did not hash; returns its ETag (the MD5 form).
    async fn put_unhashed(&self, key: &str, body: Bytes, opts: &PutOptions) -> Result<String> {
        let md5 = crate::etag::md5(&body);
        let tag = self.put(key, body, md5, opts).await?;
        Ok(tag.unwrap_or_else(|| ETag::of_md5(&md5)))
    }

    /// Uploads a part the caller did not hash; returns its ETag (the MD5 form).
    async fn upload_part_unhashed(&self, key: &str, upload_id: &str, number: u32, body: Bytes) -> Result<String> {
        let md5 = crate::etag::md5(&body);
        self.upload_part(key, upload_id, number, body, md5).await
    }

    /// Copies `src`, an object of another bucket of the same service, to
    /// `key` inside the store (one request, objects up to 5 GiB). The copy
    /// keeps the source's metadata and Content-* headers; `opts` gives the
    /// destination policy (storage class, ACL, encryption), its attributes
    /// are not used. A source that changed is
    /// [`StoreError::PreconditionFailed`], a missing one
    /// [`StoreError::NotFound`]; a store that cannot copy is
    /// [`StoreError::Unsupported`]. Returns the new object's ETag.
    async fn copy_object(&self, src: &CopySource, key: &str, opts: &PutOptions) -> Result<Option<String>> {
        let _ = (src, key, opts);
        Err(StoreError::Unsupported {
            store: self.describe(),
            operation: "CopyObject",
        })
    }

    /// Copies bytes `range` of `src` into part `number` of an upload, as
    /// [`copy_object`](Self::copy_object) does a whole object. Returns the
    /// part's ETag.
    async fn upload_part_copy(
        &self,
        src: &CopySource,
        key: &str,
        upload_id: &str,
        number: u32,
        range: std::ops::Range<u64>,
    ) -> Result<String> {
        let _ = (src, key, upload_id, number, range);
        Err(StoreError::Unsupported {
            store: self.describe(),
            operation: "UploadPartCopy",
        })
    }

    /// An object's metadata with its attributes (Content-* headers and user
    /// metadata), without reading its bytes; `Ok(None)` when there is no
    /// such key. Stores that serve server-side copies implement it.
    async fn head_attributes(&self, key: &str) -> Result<Option<(ObjectMeta, ObjectAttributes)>> {
        let _ = key;
        Err(StoreError::Unsupported {
            store: self.describe(),
            operation: "HeadObject (attributes)",
        })
    }

    /// The size of part `number` of an object, and its part count, as the store reports them (S3: `HEAD ?partNumber=`).
    /// `Ok(None)` when the store does not say: it ignores the parameter, the
    /// object was not uploaded in parts, or the store has no such notion.
    async fn part_size(&self, key: &str, number: u32) -> Result<Option<(u64, u32)>>;

    /// The parts the store holds for an upload, ascending by number. An upload
    /// that no longer exists is [`StoreError::NoSuchUpload`].
    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>>;

    /// Makes the object visible from these parts (ascending numbers). Returns the
    /// ETag if the store reports one.
    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[PartInfo]) -> Result<Option<String>>;

    /// Abandons an upload and frees its parts. Aborting an upload that does not
    /// exist is not an error.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()>;

    /// Unfinished multipart uploads under a prefix.
    async fn list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>>;

    /// Deletes an object; deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// One page of the versions and delete markers under `prefix`, after
    /// `after` (see [`versions`]). A store without versions is
    /// [`StoreError::Unsupported`].
    async fn list_versions_page(&self, prefix: &str, after: Option<&VersionMarker>) -> Result<VersionPage> {
        let _ = (prefix, after);
        Err(StoreError::Unsupported {
            store: self.describe(),
            operation: "ListObjectVersions",
        })
    }

    /// Whether the bucket keeps versions.
    async fn versioning(&self) -> Result<Versioning> {
        Err(StoreError::Unsupported {
            store: self.describe(),
            operation: "GetBucketVersioning",
        })
    }

    /// The object's tags, in order (`version`: of that version).
    async fn get_tags(&self, key: &str, version: Option<&str>) -> Result<Vec<(String, String)>> {
        let _ = (key, version);
        Err(StoreError::Unsupported {
            store: self.describe(),
            operation: "GetObjectTagging",
        })
    }

    /// The "directories" one level below `prefix`: the common prefixes of a
    /// listing with delimiter `/`, ascending, at most `max` of them. A
    /// store without them is [`StoreError::Unsupported`].
    async fn list_dirs(&self, prefix: &str, max: usize) -> Result<Vec<String>> {
        let _ = (prefix, max);
        Err(StoreError::Unsupported {
            store: self.describe(),
            operation: "ListObjectsV2 (delimiter)",
        })
    }

    /// Sets the object's tags (PutObjectTagging; none: DeleteObjectTagging).
    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> Result<()> {
        let _ = (key, tags);
        Err(StoreError::Unsupported {
            store: self.describe(),
            operation: "PutObjectTagging",
        })
    }

    /// The file that holds `key`, for a store that is a local directory. Its
    /// listings carry modification-time tokens, not content ETags: the
    /// caller hashes the file itself when it needs the content.
    fn local_path(&self, key: &str) -> Option<std::path::PathBuf>;
}
