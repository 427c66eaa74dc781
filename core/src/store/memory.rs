//! An in-memory object store for unit tests. It checks Content-MD5 and forms
//! ETags exactly as S3 does, so engine tests see S3's behaviour.

use crate::etag::ETag;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use super::{
    Capabilities, GetOptions, GetResult, ObjectAttributes, ObjectMeta, ObjectStore, PartInfo, PutOptions, Result,
    StoreError, UploadInfo, UploadShape,
};
use crate::etag;

#[derive(Debug, Clone)]
struct Object {
    data: Bytes,
    etag: String,
    attributes: ObjectAttributes,
    modified: i64,
}

#[derive(Debug)]
struct Upload {
    key: String,
    parts: BTreeMap<u32, (Bytes, [u8; 16])>,
    attributes: ObjectAttributes,
    initiated: i64,
}

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<String, Object>,
    uploads: HashMap<String, Upload>,
    next_upload: u64,
}

/// An object store held in memory. Clones share the same contents.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn not_found(key: &str) -> StoreError {
        StoreError::NotFound {
            store: "memory".into(),
            key: key.into(),
        }
    }
}

fn upload_of<'a>(inner: &'a mut Inner, key: &str, upload_id: &str) -> Result<&'a mut Upload> {
    inner
        .uploads
        .get_mut(upload_id)
        .filter(|u| u.key == key)
        .ok_or_else(|| StoreError::NoSuchUpload {
            store: "memory".into(),
            key: key.into(),
            upload_id: upload_id.into(),
        })
}

fn meta(key: &str, o: &Object) -> ObjectMeta {
    ObjectMeta {
        key: key.to_string(),
        size: o.data.len() as u64,
        etag: Some(o.etag.clone()),
        last_modified: Some(o.modified),
        mtime_ns: o
            .attributes
            .user
            .get(crate::checksum::MTIME_META)
            .and_then(|m| crate::checksum::parse_mtime(m)),
        ..Default::default()
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            hashes_bodies: false,
            etags_are_md5: true,
        }
    }

    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }

    async fn part_size(&self, _key: &str, _number: u32) -> Result<Option<(u64, u32)>> {
        Ok(None)
    }

    fn describe(&self) -> String {
        "memory".into()
    }

    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = self.lock();
        let items: Vec<Result<ObjectMeta>> = inner
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| start_after.is_none_or(|s| k.as_str() > s))
            .map(|(k, o)| Ok(meta(k, o)))
            .collect();
        stream::iter(items).boxed()
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        Ok(self.lock().objects.get(key).map(|o| meta(key, o)))
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> Result<GetResult> {
        let inner = self.lock();
        let o = inner.objects.get(key).ok_or_else(|| Self::not_found(key))?;
        if let Some(expected) = &opts.if_match {
            if !ETag(expected).same(&o.etag) {
                return Err(StoreError::PreconditionFailed {
                    store: "memory".into(),
                    key: key.into(),
                    expected: expected.clone(),
                });
            }
        }
        let body = match &opts.range {
            Some(r) => {
                let end = (r.end as usize).min(o.data.len());
                let start = (r.start as usize).min(end);
                o.data.slice(start..end)
            }
            None => o.data.clone(),
        };
        Ok(GetResult {
            body,
            meta: meta(key, o),
            attributes: o.attributes.clone(),
        })
    }

    async fn put(&self, key: &str, body: Bytes, md5: [u8; 16], opts: &PutOptions) -> Result<Option<String>> {
        if etag::md5(&body) != md5 {
            return Err(StoreError::BadDigest {
                store: "memory".into(),
                key: key.into(),
            });
        }
        let tag = ETag::of_md5(&md5);
        let o = Object {
            data: body,
            etag: tag.clone(),
            attributes: opts.attributes.clone(),
            modified: crate::now_millis(),
        };
        self.lock().objects.insert(key.to_string(), o);
        Ok(Some(tag))
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions, _shape: UploadShape) -> Result<String> {
        let mut inner = self.lock();
        inner.next_upload += 1;
        let id = format!("mem-{}", inner.next_upload);
        let up = Upload {
            key: key.into(),
            parts: BTreeMap::new(),
            attributes: opts.attributes.clone(),
            initiated: crate::now_millis(),
        };
        inner.uploads.insert(id.clone(), up);
        Ok(id)
    }

    async fn upload_part(&self, key: &str, upload_id: &str, number: u32, body: Bytes, md5: [u8; 16]) -> Result<String> {
        if etag::md5(&body) != md5 {
            return Err(StoreError::BadDigest {
                store: "memory".into(),
                key: key.into(),
            });
        }
        let mut inner = self.lock();
        upload_of(&mut inner, key, upload_id)?.parts.insert(number, (body, md5));
        Ok(ETag::of_md5(&md5))
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        let mut inner = self.lock();
        Ok(upload_of(&mut inner, key, upload_id)?
            .parts
            .iter()
            .map(|(n, (b, m))| PartInfo {
                number: *n,
                etag: ETag::of_md5(m),
                size: b.len() as u64,
            })
            .collect())
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[PartInfo]) -> Result<Option<String>> {
        let mut inner = self.lock();
        let no_upload = || StoreError::NoSuchUpload {
            store: "memory".into(),
            key: key.into(),
            upload_id: upload_id.into(),
        };
        let up = inner
            .uploads
            .get(upload_id)
            .filter(|u| u.key == key)
            .ok_or_else(no_upload)?;
        let mut data = Vec::new();
        let mut md5s = Vec::new();
        for p in parts {
            let (b, m) = up.parts.get(&p.number).ok_or_else(|| StoreError::Backend {
                store: "memory".into(),
                operation: "CompleteMultipartUpload",
                code: "InvalidPart".into(),
                message: format!("part {} was not uploaded", p.number),
                retryable: false,
            })?;
            if !ETag(&p.etag).same(&ETag::of_md5(m)) {
                return Err(StoreError::Backend {
                    store: "memory".into(),
                    operation: "CompleteMultipartUpload",
                    code: "InvalidPart".into(),
                    message: format!("part {} ETag mismatch", p.number),
                    retryable: false,
                });
            }
            data.extend_from_slice(b);
            md5s.push(*m);
        }
        let tag = ETag::of_parts(md5s.iter());
        let attributes = up.attributes.clone();
        inner.uploads.remove(upload_id);
        let o = Object {
            data: data.into(),
            etag: tag.clone(),
            attributes,
            modified: crate::now_millis(),
        };
        inner.objects.insert(key.to_string(), o);
        Ok(Some(tag))
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> Result<()> {
        self.lock().uploads.remove(upload_id);
        Ok(())
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        let inner = self.lock();
        let mut v: Vec<UploadInfo> = inner
            .uploads
            .iter()
            .filter(|(_, u)| u.key.starts_with(prefix))
            .map(|(id, u)| UploadInfo {
                key: u.key.clone(),
                upload_id: id.clone(),
                initiated: Some(u.initiated),
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key).then(a.upload_id.cmp(&b.upload_id)));
        Ok(v)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.lock().objects.remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    #[tokio::test]
    async fn conformance_suite() {
        let s = MemoryStore::new();
        conformance::put_get_list_delete(&s, "p/").await;
        conformance::bad_digest_rejected(&s, "p/").await;
        conformance::multipart_resume(&s, "p/").await;
        conformance::unhashed_writes(&s, "u/").await;
    }
}
