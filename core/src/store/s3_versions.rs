//! Versions, tags and directories on S3: ListObjectVersions,
//! GetBucketVersioning, GetObjectTagging and PutObjectTagging, and
//! ListObjectsV2 with a delimiter (the directories below a prefix).
//!
//! ListObjectVersions answers versions and delete markers in two lists; each
//! is in S3 order (keys ascending, newest first within a key), and they are
//! merged back into one by key, then by time, newest first. Where a version
//! and a marker of one key carry the same time, the answer's `IsLatest`
//! flag puts the current one first.

use aws_sdk_s3::types::{BucketVersioningStatus, Tag, Tagging};

use super::{millis, nonempty, S3Store};
use crate::store::versions::{ObjectVersion, VersionMarker, VersionPage, Versioning};
use crate::store::{Result, StoreError};

/// Encodes tags as the `x-amz-tagging` header wants them: a URL query.
pub(crate) fn tagging_header(tags: &[(String, String)]) -> String {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    tags.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Versions in S3 order: keys ascending, each key newest first.
fn s3_order(a: &ObjectVersion, b: &ObjectVersion) -> std::cmp::Ordering {
    a.key
        .as_bytes()
        .cmp(b.key.as_bytes())
        .then(b.last_modified.cmp(&a.last_modified))
        .then(b.latest.cmp(&a.latest))
}

impl S3Store {
    /// One page of ListObjectVersions.
    pub(super) async fn versions_page(&self, prefix: &str, after: Option<&VersionMarker>) -> Result<VersionPage> {
        let out = self
            .sdk()
            .await
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_key_marker(after.map(|m| m.key.clone()))
            .set_version_id_marker(after.map(|m| m.version.clone()))
            .set_request_payer(self.payer())
            .send()
            .await
            .map_err(|e| self.err("ListObjectVersions", prefix, e))?;
        let mut versions: Vec<ObjectVersion> = out
            .versions()
            .iter()
            .filter_map(|v| {
                Some(ObjectVersion {
                    key: v.key()?.to_string(),
                    version: v.version_id().unwrap_or("null").to_string(),
                    latest: v.is_latest().unwrap_or(false),
                    delete_marker: false,
                    size: v.size().unwrap_or(0).max(0) as u64,
                    etag: nonempty(v.e_tag()),
                    last_modified: millis(v.last_modified()),
                })
            })
            .collect();
        versions.extend(out.delete_markers().iter().filter_map(|m| {
            Some(ObjectVersion {
                key: m.key()?.to_string(),
                version: m.version_id().unwrap_or("null").to_string(),
                latest: m.is_latest().unwrap_or(false),
                delete_marker: true,
                size: 0,
                etag: None,
                last_modified: millis(m.last_modified()),
            })
        }));
        versions.sort_by(s3_order);
        let truncated = out.is_truncated().unwrap_or(false);
        let next = match (nonempty(out.next_key_marker()), truncated) {
            (Some(key), true) => Some(VersionMarker {
                key,
                version: out.next_version_id_marker().unwrap_or("null").to_string(),
            }),
            _ => None,
        };
        Ok(VersionPage { versions, next })
    }

    /// The common prefixes one level below `prefix` (delimiter `/`), page
    /// after page, until `max` are found.
    pub(super) async fn dirs(&self, prefix: &str, max: usize) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .sdk()
                .await
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .delimiter("/")
                .set_continuation_token(token)
                .set_request_payer(self.payer())
                .send()
                .await
                .map_err(|e| self.err("ListObjectsV2", prefix, e))?;
            out.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            token = nonempty(page.next_continuation_token());
            if out.len() >= max || !page.is_truncated().unwrap_or(false) || token.is_none() {
                out.truncate(max);
                return Ok(out);
            }
        }
    }

    /// GetBucketVersioning.
    pub(super) async fn bucket_versioning(&self) -> Result<Versioning> {
        let out = self
            .sdk()
            .await
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| self.err("GetBucketVersioning", "", e))?;
        Ok(match out.status() {
            Some(BucketVersioningStatus::Enabled) => Versioning::Enabled,
            Some(BucketVersioningStatus::Suspended) => Versioning::Suspended,
            _ => Versioning::Off,
        })
    }

    /// PutObjectTagging, or DeleteObjectTagging for no tags.
    pub(super) async fn set_tags(&self, key: &str, tags: &[(String, String)]) -> Result<()> {
        let sdk = self.sdk().await;
        if tags.is_empty() {
            sdk.delete_object_tagging()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| self.err("DeleteObjectTagging", key, e))?;
            return Ok(());
        }
        let set: Vec<Tag> = tags
            .iter()
            .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
            .collect();
        let tagging = Tagging::builder()
            .set_tag_set(Some(set))
            .build()
            .map_err(|e| StoreError::Backend {
                store: self.desc.clone(),
                operation: "PutObjectTagging",
                code: "client".into(),
                message: e.to_string(),
                retryable: false,
            })?;
        sdk.put_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .tagging(tagging)
            .set_request_payer(self.payer())
            .send()
            .await
            .map_err(|e| self.err("PutObjectTagging", key, e))?;
        Ok(())
    }

    /// GetObjectTagging.
    pub(super) async fn tags(&self, key: &str, version: Option<&str>) -> Result<Vec<(String, String)>> {
        let out = self
            .sdk()
            .await
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .set_request_payer(self.payer())
            .send()
            .await;
        // Ceph radosgw answers an object without tags with an empty 200.
        let empty_ok = |e: &aws_sdk_s3::error::SdkError<_, aws_smithy_runtime_api::http::Response>| {
            e.raw_response()
                .is_some_and(|r: &aws_smithy_runtime_api::http::Response| {
                    r.status().as_u16() == 200 && r.body().bytes().is_some_and(|b| b.is_empty())
                })
        };
        let out = match out {
            Err(e) if empty_ok(&e) => return Ok(Vec::new()),
            r => r.map_err(|e| self.err("GetObjectTagging", key, e))?,
        };
        Ok(out
            .tag_set()
            .iter()
            .map(|t: &Tag| (t.key().to_string(), t.value().to_string()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_encoded_as_a_query() {
        let tags = vec![("team".to_string(), "data eng".to_string()), ("a&b".into(), "=".into())];
        assert_eq!(tagging_header(&tags), "team=data%20eng&a%26b=%3D");
    }

    #[test]
    fn markers_and_versions_merge_in_s3_order() {
        let v = |key: &str, t: i64, latest: bool| ObjectVersion {
            key: key.into(),
            version: format!("{key}{t}"),
            latest,
            delete_marker: false,
            size: 0,
            etag: None,
            last_modified: Some(t),
        };
        let mut all = [
            v("b", 1, true),
            v("a", 1, false),
            v("a", 3, true),
            v("a", 2, false),
            v("a", 3, false),
        ];
        all.sort_by(s3_order);
        let order: Vec<_> = all
            .iter()
            .map(|v| (v.key.as_str(), v.last_modified.unwrap(), v.latest))
            .collect();
        assert_eq!(
            order,
            vec![
                ("a", 3, true),
                ("a", 3, false),
                ("a", 2, false),
                ("a", 1, false),
                ("b", 1, true)
            ]
        );
    }
}
