//! Retry as a layer: [`RetryingStore`] wraps any store and retries each of
//! its calls that fails with a retryable error ([`StoreError::is_retryable`]:
//! throttling, 5xx, dropped connections), with decorrelated-jitter backoff
//! ([`crate::retry`]). The composition root wraps every store once; nothing
//! below it retries a store call by itself.
//!
//! A listing is a stream of pages: when one fails mid-way, the listing is
//! resumed after the last key it yielded (`start_after`), so no key is lost
//! or yielded twice. A listing gets at least [`LIST_TRIES`] tries in a row:
//! one lost page would end a whole run.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use super::{
    Capabilities, CopySource, GetOptions, GetResult, ObjectAttributes, ObjectMeta, ObjectStore, PartInfo, PutOptions,
    Result, StoreError, UploadInfo, UploadShape, VersionMarker, VersionPage, Versioning,
};
use crate::retry::{retry, Backoff, BackoffConfig};

/// Consecutive failed pages a listing survives, whatever the store's tries.
pub const LIST_TRIES: u32 = 6;

/// A store whose calls are retried for retryable errors.
#[derive(Debug, Clone)]
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
    attempts: u32,
}

impl RetryingStore {
    /// Wraps `inner`; each call is tried at most `attempts` times (at least once).
    pub fn new(inner: Arc<dyn ObjectStore>, attempts: u32) -> Self {
        Self {
            inner,
            attempts: attempts.max(1),
        }
    }

    /// Wraps `inner` and returns it as a trait object.
    pub fn wrap(inner: Arc<dyn ObjectStore>, attempts: u32) -> Arc<dyn ObjectStore> {
        Arc::new(Self::new(inner, attempts))
    }
}

/// Where a resumable listing is.
struct Listing {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    /// The last key yielded (or the caller's `start_after`).
    after: Option<String>,
    pages: Option<BoxStream<'static, Result<ObjectMeta>>>,
    failures: u32,
    tries: u32,
    backoff: Backoff,
    done: bool,
}

impl Listing {
    async fn next(mut self) -> Option<(Result<ObjectMeta>, Self)> {
        loop {
            if self.done {
                return None;
            }
            let pages = match &mut self.pages {
                Some(p) => p,
                None => self.pages.insert(self.inner.list(&self.prefix, self.after.as_deref())),
            };
            match pages.next().await {
                None => return None,
                Some(Ok(meta)) => {
                    self.failures = 0;
                    self.after = Some(meta.key.clone());
                    return Some((Ok(meta), self));
                }
                Some(Err(e)) if e.is_retryable() && self.failures + 1 < self.tries => {
                    self.failures += 1;
                    let d = self.backoff.next_delay();
                    tracing::warn!(attempt = self.failures, delay_ms = d.as_millis() as u64, error = %e, "Retrying the listing.");
                    crate::metrics::retry(e.code());
                    tokio::time::sleep(d).await;
                    self.pages = None;
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some((Err(e), self));
                }
            }
        }
    }
}

macro_rules! retried {
    ($self:ident, $call:expr) => {
        retry($self.attempts, StoreError::is_retryable, || $call).await
    };
}

#[async_trait]
impl ObjectStore for RetryingStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.inner.local_path(key)
    }

    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>> {
        let listing = Listing {
            inner: self.inner.clone(),
            prefix: prefix.to_string(),
            after: start_after.map(str::to_string),
            pages: None,
            failures: 0,
            tries: self.attempts.max(LIST_TRIES),
            backoff: Backoff::new(BackoffConfig::default()),
            done: false,
        };
        stream::unfold(listing, Listing::next).boxed()
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        retried!(self, self.inner.head(key))
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> Result<GetResult> {
        retried!(self, self.inner.get(key, opts))
    }

    async fn put(&self, key: &str, body: Bytes, md5: [u8; 16], opts: &PutOptions) -> Result<Option<String>> {
        retried!(self, self.inner.put(key, body.clone(), md5, opts))
    }

    async fn put_unhashed(&self, key: &str, body: Bytes, opts: &PutOptions) -> Result<String> {
        retried!(self, self.inner.put_unhashed(key, body.clone(), opts))
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions, shape: UploadShape) -> Result<String> {
        retried!(self, self.inner.create_multipart(key, opts, shape))
    }

    async fn upload_part(&self, key: &str, upload_id: &str, number: u32, body: Bytes, md5: [u8; 16]) -> Result<String> {
        retried!(self, self.inner.upload_part(key, upload_id, number, body.clone(), md5))
    }

    async fn upload_part_unhashed(&self, key: &str, upload_id: &str, number: u32, body: Bytes) -> Result<String> {
        retried!(
            self,
            self.inner.upload_part_unhashed(key, upload_id, number, body.clone())
        )
    }

    async fn copy_object(&self, src: &CopySource, key: &str, opts: &PutOptions) -> Result<Option<String>> {
        retried!(self, self.inner.copy_object(src, key, opts))
    }

    async fn upload_part_copy(
        &self,
        src: &CopySource,
        key: &str,
        upload_id: &str,
        number: u32,
        range: std::ops::Range<u64>,
    ) -> Result<String> {
        retried!(
            self,
            self.inner.upload_part_copy(src, key, upload_id, number, range.clone())
        )
    }

    async fn head_attributes(&self, key: &str) -> Result<Option<(ObjectMeta, ObjectAttributes)>> {
        retried!(self, self.inner.head_attributes(key))
    }

    async fn part_size(&self, key: &str, number: u32) -> Result<Option<(u64, u32)>> {
        retried!(self, self.inner.part_size(key, number))
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        retried!(self, self.inner.list_parts(key, upload_id))
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[PartInfo]) -> Result<Option<String>> {
        retried!(self, self.inner.complete_multipart(key, upload_id, parts))
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        retried!(self, self.inner.abort_multipart(key, upload_id))
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        retried!(self, self.inner.list_uploads(prefix))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        retried!(self, self.inner.delete(key))
    }

    async fn list_versions_page(&self, prefix: &str, after: Option<&VersionMarker>) -> Result<VersionPage> {
        retried!(self, self.inner.list_versions_page(prefix, after))
    }

    async fn versioning(&self) -> Result<Versioning> {
        retried!(self, self.inner.versioning())
    }

    async fn get_tags(&self, key: &str, version: Option<&str>) -> Result<Vec<(String, String)>> {
        retried!(self, self.inner.get_tags(key, version))
    }

    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> Result<()> {
        retried!(self, self.inner.put_tags(key, tags))
    }

    async fn list_dirs(&self, prefix: &str, max: usize) -> Result<Vec<String>> {
        retried!(self, self.inner.list_dirs(prefix, max))
    }
}

#[cfg(test)]
mod tests {
    use super::super::failing::{FailingStore, Fault, Op};
    use super::super::MemoryStore;
    use super::*;

    async fn seeded(n: usize) -> Arc<MemoryStore> {
        let mem = Arc::new(MemoryStore::new());
        for i in 0..n {
            let body = Bytes::from(format!("body {i}"));
            let md5 = crate::etag::md5(&body);
            mem.put(&format!("k{i:03}"), body, md5, &PutOptions::default())
                .await
                .unwrap();
        }
        mem
    }

    #[tokio::test]
    async fn a_listing_that_fails_mid_way_resumes_after_the_last_key() {
        let failing = Arc::new(FailingStore::new(seeded(10).await));
        failing.inject(Fault::retryable(Op::List).after(4).times(2));
        let store = RetryingStore::new(failing.clone(), 3);
        let keys: Vec<String> = store.list("", None).map(|r| r.unwrap().key).collect().await;
        let want: Vec<String> = (0..10).map(|i| format!("k{i:03}")).collect();
        assert_eq!(keys, want, "every key once, in order");
        assert_eq!(failing.calls(Op::List), 3, "the first listing and two resumptions");
    }

    #[tokio::test]
    async fn calls_are_retried_for_retryable_errors_only() {
        let failing = Arc::new(FailingStore::new(seeded(1).await));
        failing.inject(Fault::retryable(Op::Head).times(2));
        let store = RetryingStore::new(failing.clone(), 3);
        assert!(store.head("k000").await.unwrap().is_some());
        assert_eq!(failing.calls(Op::Head), 3);

        failing.inject(Fault::fatal(Op::Delete).times(1));
        assert!(store.delete("k000").await.is_err());
        assert_eq!(failing.calls(Op::Delete), 1, "a fatal error is not retried");

        failing.inject(Fault::retryable(Op::Head).times(5));
        assert!(store.head("k000").await.is_err(), "tries run out");
        assert_eq!(failing.calls(Op::Head), 6);
    }
}
