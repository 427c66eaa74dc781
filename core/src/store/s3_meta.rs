//! What S3 answers say about an object beyond size and ETag: its encryption
//! (an SSE-KMS or SSE-C object's ETag is not the MD5 of its bytes), the
//! modification time rclone and ferry keep in user metadata, and full-object
//! checksums, S3's own (`x-amz-checksum-crc64nvme`) and the CRC-64/ECMA that
//! Aliyun OSS and Tencent COS send in headers of their own, which the SDK
//! does not model: [`VendorCrc`] reads those off the raw answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::types::{ChecksumType, ServerSideEncryption};
use aws_smithy_runtime_api::box_error::BoxError;

use crate::checksum::{self, Checksums};

/// Headers in which vendors report the CRC-64/ECMA of a whole object, in decimal.
const VENDOR_CRC_HEADERS: [&str; 2] = ["x-oss-hash-crc64ecma", "x-cos-hash-crc64ecma"];

/// Whether an answer's encryption headers make the ETag opaque: SSE-KMS
/// (`aws:kms`, `aws:kms:dsse`) or a customer key (SSE-C).
pub(super) fn opaque_etag(sse: Option<&ServerSideEncryption>, customer_algorithm: Option<&str>) -> bool {
    let kms = sse.is_some_and(|s| s.as_str().starts_with("aws:kms"));
    kms || customer_algorithm.is_some_and(|a| !a.is_empty())
}

/// The modification time in an object's user metadata, if any.
pub(super) fn mtime(metadata: Option<&HashMap<String, String>>) -> Option<i64> {
    let m = metadata?;
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

/// Reads a vendor's CRC-64/ECMA header off one call's raw answer.
#[derive(Debug, Clone, Default)]
pub(super) struct VendorCrc(Arc<Mutex<Option<u64>>>);

impl VendorCrc {
    /// The CRC the answer carried, if any.
    pub(super) fn get(&self) -> Option<u64> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Intercept for VendorCrc {
    fn name(&self) -> &'static str {
        "VendorCrc"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let headers = context.response().headers();
        let crc = VENDOR_CRC_HEADERS
            .iter()
            .find_map(|h| headers.get(*h))
            .and_then(|v| v.trim().parse::<u64>().ok());
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = crc;
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
