//! Server-side copies: CopyObject and UploadPartCopy, sent to the
//! destination bucket's store and naming the source as
//! `x-amz-copy-source: BUCKET/KEY[?versionId=V]`, so the service copies its
//! own bytes and none reach the caller.
//!
//! Both are pinned to the source's ETag (`x-amz-copy-source-if-match`): a
//! source changed since it was listed is [`StoreError::PreconditionFailed`],
//! never a copy of other bytes. CopyObject keeps the source's metadata
//! (`MetadataDirective: COPY`) and applies the destination's policy
//! (storage class, ACL, encryption). Some stores (Ceph radosgw) answer the
//! copy's ETag without quotes; it is quoted here like every other ETag.

use aws_sdk_s3::types::{MetadataDirective, ObjectCannedAcl, ServerSideEncryption, StorageClass, TaggingDirective};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{nonempty, S3Store};
use crate::store::{CopySource, PutOptions, Result, StoreError};

/// Bytes kept as they are in a copy source: RFC 3986's unreserved set and
/// the `/` between bucket and key (and inside keys).
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The `x-amz-copy-source` value: URL-encoded `bucket/key`, with the version.
pub(crate) fn copy_source_header(src: &CopySource) -> String {
    let path = format!("{}/{}", src.bucket, src.key);
    let mut v = utf8_percent_encode(&path, COPY_SOURCE).to_string();
    if let Some(version) = &src.version {
        v.push_str("?versionId=");
        v.extend(utf8_percent_encode(version, NON_ALPHANUMERIC));
    }
    v
}

/// Says that the copy request has an empty body: the SDK sends no
/// `Content-Length` with one, and Ceph radosgw refuses a PUT without it
/// (`MissingContentLength`).
fn empty_body(req: &mut aws_smithy_runtime_api::http::Request) {
    req.headers_mut().insert("content-length", "0");
}

/// An ETag in the quoted form every listing uses.
fn quoted(tag: &str) -> String {
    match tag.starts_with('"') {
        true => tag.to_string(),
        false => format!("\"{tag}\""),
    }
}

/// A copy refused because the source is not what was pinned: the store
/// answers 412 (`PreconditionFailed`) for an ETag that no longer matches.
fn pinned(e: StoreError, src: &CopySource) -> StoreError {
    match e {
        StoreError::PreconditionFailed { store, .. } => StoreError::PreconditionFailed {
            store,
            key: src.key.clone(),
            expected: src.if_match.clone().unwrap_or_default(),
        },
        StoreError::NotFound { store, .. } => StoreError::NotFound {
            store,
            key: src.key.clone(),
        },
        other => other,
    }
}

impl S3Store {
    /// CopyObject (see [`crate::store::ObjectStore::copy_object`]).
    pub(super) async fn copy_whole(&self, src: &CopySource, key: &str, opts: &PutOptions) -> Result<Option<String>> {
        let r = self
            .sdk()
            .await
            .copy_object()
            .bucket(&self.bucket)
            .key(key)
            .copy_source(copy_source_header(src))
            .set_copy_source_if_match(src.if_match.clone())
            .metadata_directive(MetadataDirective::Copy)
            .set_tagging_directive(opts.tags.as_ref().map(|_| TaggingDirective::Replace))
            .set_tagging(opts.tags.as_deref().map(super::versions::tagging_header))
            .set_storage_class(opts.storage_class.as_deref().map(StorageClass::from))
            .set_acl(opts.acl.as_deref().map(ObjectCannedAcl::from))
            .set_server_side_encryption(opts.sse.as_deref().map(ServerSideEncryption::from))
            .set_ssekms_key_id(opts.sse_kms_key_id.clone())
            .set_request_payer(self.payer())
            .customize()
            .mutate_request(empty_body)
            .send()
            .await
            .map_err(|e| pinned(self.err("CopyObject", key, e), src))?;
        self.note_sse(r.server_side_encryption(), r.sse_customer_algorithm());
        Ok(nonempty(r.copy_object_result().and_then(|c| c.e_tag())).map(|t| quoted(&t)))
    }

    /// UploadPartCopy (see [`crate::store::ObjectStore::upload_part_copy`]).
    pub(super) async fn copy_part(
        &self,
        src: &CopySource,
        key: &str,
        upload_id: &str,
        number: u32,
        range: std::ops::Range<u64>,
    ) -> Result<String> {
        let len = range.end - range.start;
        let r = self
            .sdk()
            .await
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number as i32)
            .copy_source(copy_source_header(src))
            .copy_source_range(format!("bytes={}-{}", range.start, range.end.saturating_sub(1)))
            .set_copy_source_if_match(src.if_match.clone())
            .set_request_payer(self.payer())
            .customize()
            .mutate_request(empty_body)
            .send()
            .await
            .map_err(|e| pinned(self.upload_err("UploadPartCopy", key, upload_id, e), src))?;
        self.note_sse(r.server_side_encryption(), r.sse_customer_algorithm());
        let result = r.copy_part_result();
        let crc = result
            .and_then(|c| c.checksum_crc64_nvme())
            .and_then(crate::checksum::crc64_from_base64);
        if let (Some(crcs), Some(crc)) = (&self.crcs, crc) {
            crcs.sent(upload_id, number, crc, len);
        }
        nonempty(result.and_then(|c| c.e_tag()))
            .map(|t| quoted(&t))
            .ok_or_else(|| StoreError::Backend {
                store: self.desc.clone(),
                operation: "UploadPartCopy",
                code: "NoETag".into(),
                message: format!("part {number} was copied without an ETag"),
                retryable: true,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_are_encoded_with_their_slashes_and_versions() {
        let src = |key: &str, version: Option<&str>| CopySource {
            bucket: "b".into(),
            key: key.into(),
            if_match: None,
            version: version.map(str::to_string),
        };
        assert_eq!(copy_source_header(&src("a/b c+d%é", None)), "b/a/b%20c%2Bd%25%C3%A9");
        assert_eq!(
            copy_source_header(&src("/lead/", Some("v1+x"))),
            "b//lead/?versionId=v1%2Bx"
        );
        assert_eq!(quoted("abc"), "\"abc\"");
        assert_eq!(quoted("\"abc\""), "\"abc\"");
    }
}
