//! What S3 answers say about an object beyond size and ETag: its encryption
//! (an SSE-KMS or SSE-C object's ETag is not the MD5 of its bytes), the
//! modification time rclone and ferry keep in user metadata, and full-object
//! checksums, S3's own (`x-amz-checksum-crc64nvme`) and the CRC-64/ECMA that
//! Aliyun OSS and Tencent COS send in headers of their own, which the SDK
//! does not model: [`VendorHeaders`] reads those off the raw answer, with
//! the user metadata and tag count a vendor may answer under its own
//! prefix (`x-oss-meta-*`, `x-cos-meta-*`, `x-obs-meta-*`,
//! `x-oss-tagging-count`…) where S3 says `x-amz-meta-*`.

use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::types::{ChecksumType, ServerSideEncryption};
use aws_smithy_runtime_api::box_error::BoxError;

use crate::checksum::{self, Checksums};

/// Headers in which vendors report the CRC-64/ECMA of a whole object, in decimal.
const VENDOR_CRC_HEADERS: [&str; 2] = ["x-oss-hash-crc64ecma", "x-cos-hash-crc64ecma"];

/// The prefixes under which vendors answer user metadata in their own name.
pub(crate) const VENDOR_META_PREFIXES: [&str; 3] = ["x-oss-meta-", "x-cos-meta-", "x-obs-meta-"];

/// Headers in which vendors answer how many tags an object has.
const VENDOR_TAG_COUNT_HEADERS: [&str; 3] = ["x-oss-tagging-count", "x-cos-tagging-count", "x-obs-tagging-count"];

/// Whether an answer's encryption headers make the ETag opaque: SSE-KMS
/// (`aws:kms`, `aws:kms:dsse`) or a customer key (SSE-C).
pub(super) fn opaque_etag(sse: Option<&ServerSideEncryption>, customer_algorithm: Option<&str>) -> bool {
    let kms = sse.is_some_and(|s| s.as_str().starts_with("aws:kms"));
    kms || customer_algorithm.is_some_and(|a| !a.is_empty())
}

/// The modification time in an object's user metadata, if any.
pub(super) fn mtime(m: &std::collections::BTreeMap<String, String>) -> Option<i64> {
    let v = m
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(checksum::MTIME_META))
        .map(|(_, v)| v)?;
    checksum::parse_mtime(v)
}

/// The full-object checksums of a HEAD answer: S3's CRC-64/NVME (always a
/// full-object checksum, whatever the upload's layout) and a vendor's CRC-64/ECMA.
pub(super) fn checksums(crc64nvme: Option<&str>, kind: Option<&ChecksumType>, vendor: Option<u64>) -> Checksums {
    let full = kind.is_none_or(|k| *k == ChecksumType::FullObject);
    Checksums {
        md5: None,
        crc64nvme: crc64nvme.filter(|_| full).and_then(checksum::crc64_from_base64),
        crc64ecma: vendor,
    }
}

/// What a vendor answered in headers of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Answered {
    /// The whole object's CRC-64/ECMA.
    pub(super) crc: Option<u64>,
    /// User metadata under a vendor's prefix, names without it.
    pub(super) user: Vec<(String, String)>,
    /// The tag count under a vendor's name.
    pub(super) tag_count: Option<u32>,
}

impl Answered {
    /// Adds the vendor's user metadata to `user` where S3's own headers did
    /// not name it.
    pub(super) fn merge_user(&self, user: &mut std::collections::BTreeMap<String, String>) {
        for (k, v) in &self.user {
            user.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// Reads a vendor's own headers off one call's raw answer.
#[derive(Debug, Clone, Default)]
pub(super) struct VendorHeaders(Arc<Mutex<Answered>>);

impl VendorHeaders {
    /// What the answer carried.
    pub(super) fn get(&self) -> Answered {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Reads vendor headers from an answer's header list.
pub(super) fn answered<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>) -> Answered {
    let mut a = Answered::default();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if VENDOR_CRC_HEADERS.contains(&lower.as_str()) {
            a.crc = a.crc.or(value.trim().parse::<u64>().ok());
        } else if VENDOR_TAG_COUNT_HEADERS.contains(&lower.as_str()) {
            a.tag_count = a.tag_count.or(value.trim().parse::<u32>().ok());
        } else if let Some(rest) = VENDOR_META_PREFIXES.iter().find_map(|p| lower.strip_prefix(p)) {
            a.user.push((rest.to_string(), value.to_string()));
        }
    }
    a
}

impl Intercept for VendorHeaders {
    fn name(&self) -> &'static str {
        "VendorHeaders"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let a = answered(context.response().headers().iter());
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = a;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_and_customer_keys_make_etags_opaque() {
        assert!(opaque_etag(Some(&ServerSideEncryption::AwsKms), None));
        assert!(opaque_etag(Some(&ServerSideEncryption::from("aws:kms:dsse")), None));
        assert!(opaque_etag(Some(&ServerSideEncryption::Aes256), Some("AES256")));
        assert!(!opaque_etag(Some(&ServerSideEncryption::Aes256), None));
        assert!(!opaque_etag(None, None));
    }

    #[test]
    fn vendor_headers_are_read_under_their_own_names() {
        let a = answered(
            [
                ("x-oss-hash-crc64ecma", "42"),
                ("X-Oss-Meta-Owner", "ops"),
                ("x-cos-meta-mtime", "1700000000.5"),
                ("x-oss-tagging-count", "2"),
                ("x-amz-meta-kept", "s3"),
            ]
            .into_iter(),
        );
        assert_eq!(a.crc, Some(42));
        assert_eq!(a.tag_count, Some(2));
        assert_eq!(
            a.user,
            vec![
                ("owner".to_string(), "ops".to_string()),
                ("mtime".into(), "1700000000.5".into())
            ]
        );
        let mut user = std::collections::BTreeMap::from([("owner".to_string(), "s3 wins".to_string())]);
        a.merge_user(&mut user);
        assert_eq!(user["owner"], "s3 wins");
        assert_eq!(user["mtime"], "1700000000.5");
    }

    #[test]
    fn composite_checksums_are_not_full_object_ones() {
        let b64 = checksum::crc64_base64(42);
        assert_eq!(checksums(Some(&b64), None, None).crc64nvme, Some(42));
        assert_eq!(
            checksums(Some(&b64), Some(&ChecksumType::Composite), Some(7)),
            Checksums {
                md5: None,
                crc64nvme: None,
                crc64ecma: Some(7)
            }
        );
    }
}
