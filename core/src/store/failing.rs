//! A store that fails on purpose, for tests: [`FailingStore`] wraps any
//! store and makes chosen calls fail — retryable or not, after a number of
//! calls (or, for a listing, of keys), a number of times, for keys with a
//! given part — or return damaged bytes, and counts every call by operation. Engine, runner and
//! finder tests drive their failure paths through it instead of
//! hand-written wrappers, so each wrapper's capabilities are the inner
//! store's unless a test says otherwise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

use super::{
    Capabilities, GetOptions, GetResult, ObjectMeta, ObjectStore, PartInfo, PutOptions, Result, StoreError, UploadInfo,
    UploadShape,
};

/// A store operation, named as the trait method it stands for.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    List,
    Head,
    Get,
    Put,
    CreateMultipart,
    UploadPart,
    PartSize,
    ListParts,
    CompleteMultipart,
    AbortMultipart,
    ListUploads,
    Delete,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Fails the call with a retryable error.
    Retryable,
    /// Fails the call with an error no retry cures.
    Fatal,
    /// Lets a read succeed with one bit of its body flipped.
    Corrupt,
}

/// One injected failure rule.
#[derive(Debug, Clone)]
pub struct Fault {
    op: Op,
    effect: Effect,
    key: Option<String>,
    after: u32,
    times: u32,
}

impl Fault {
    /// A retryable failure (like throttling or a 503) of `op`, once.
    pub fn retryable(op: Op) -> Self {
        Self {
            op,
            effect: Effect::Retryable,
            key: None,
            after: 0,
            times: 1,
        }
    }

    /// A failure of `op` that no retry cures (like a 400), once.
    pub fn fatal(op: Op) -> Self {
        Self {
            effect: Effect::Fatal,
            ..Self::retryable(op)
        }
    }

    /// A read ([`Op::Get`]) that succeeds with the first bit of its body
    /// flipped, as damage on the way from the store would, once.
    pub fn corrupt() -> Self {
        Self {
            effect: Effect::Corrupt,
            ..Self::retryable(Op::Get)
        }
    }

    /// Lets `n` matching calls pass first (a listing: `n` keys).
    pub fn after(mut self, n: u32) -> Self {
        self.after = n;
        self
    }

    /// Fails `n` times (`u32::MAX`: always).
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }

    /// Only for keys (or listing prefixes) containing `part`.
    pub fn on_key(mut self, part: &str) -> Self {
        self.key = Some(part.to_string());
        self
    }
}

#[derive(Debug, Default)]
struct Faults {
    rules: Vec<Fault>,
    calls: HashMap<Op, u32>,
}

impl Faults {
    /// Counts a call and says what befalls it (a listing counts per key).
    fn fail(&mut self, op: Op, key: &str, count: bool) -> Option<Effect> {
        if count {
            *self.calls.entry(op).or_default() += 1;
        }
        let rule = self
            .rules
            .iter_mut()
            .find(|f| f.op == op && f.times > 0 && f.key.as_deref().is_none_or(|k| key.contains(k)))?;
        if rule.after > 0 {
            rule.after -= 1;
            return None;
        }
        rule.times -= 1;
        Some(rule.effect)
    }
}

/// A store that fails as told (see the module docs).
#[derive(Debug)]
pub struct FailingStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Mutex<Faults>>,
    capabilities: Option<Capabilities>,
}

impl FailingStore {
    /// Wraps `inner`, failing nothing until told.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            faults: Arc::default(),
            capabilities: None,
        }
    }

    /// Reports `c` instead of the inner store's capabilities.
    pub fn with_capabilities(mut self, c: Capabilities) -> Self {
        self.capabilities = Some(c);
        self
    }

    /// Adds a failure rule (rules are tried in the order they were added).
    pub fn inject(&self, fault: Fault) {
        self.lock().rules.push(fault);
    }

    /// Drops every rule: the store works again.
    pub fn heal(&self) {
        self.lock().rules.clear();
    }

    /// How many times `op` was called (a listing: once per listing).
    pub fn calls(&self, op: Op) -> u32 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a call; fails it when a rule says so. `Ok(true)`: corrupt what it returns.
    fn check(&self, op: Op, key: &str) -> Result<bool> {
        match self.lock().fail(op, key, true) {
            None => Ok(false),
            Some(Effect::Corrupt) => Ok(true),
            Some(e) => Err(injected(&self.inner.describe(), op, key, e == Effect::Retryable)),
        }
    }
}

fn injected(store: &str, op: Op, key: &str, retryable: bool) -> StoreError {
    StoreError::Backend {
        store: store.to_string(),
        operation: "injected",
        code: if retryable { "SlowDown" } else { "InvalidRequest" }.into(),
        message: format!("an injected {op:?} failure on {key:?}"),
        retryable,
    }
}

#[async_trait]
impl ObjectStore for FailingStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities.unwrap_or_else(|| self.inner.capabilities())
    }

    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.inner.local_path(key)
    }

    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>> {
        let faults = self.faults.clone();
        let store = self.inner.describe();
        let prefix_owned = prefix.to_string();
        faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .calls
            .entry(Op::List)
            .and_modify(|n| *n += 1)
            .or_insert(1);
        let mut failed = false;
        self.inner
            .list(prefix, start_after)
            .map(move |item| {
                let fail = faults
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .fail(Op::List, &prefix_owned, false);
                match fail {
                    Some(Effect::Corrupt) | None => item,
                    Some(e) => Err(injected(&store, Op::List, &prefix_owned, e == Effect::Retryable)),
                }
            })
            .take_while(move |r| {
                let go = !failed;
                failed |= r.is_err();
                futures::future::ready(go)
            })
            .boxed()
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.check(Op::Head, key)?;
        self.inner.head(key).await
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> Result<GetResult> {
        let corrupt = self.check(Op::Get, key)?;
        let mut got = self.inner.get(key, opts).await?;
        if corrupt && !got.body.is_empty() {
            let mut b = got.body.to_vec();
            b[0] ^= 1;
            got.body = Bytes::from(b);
        }
        Ok(got)
    }

    async fn put(&self, key: &str, body: Bytes, md5: [u8; 16], opts: &PutOptions) -> Result<Option<String>> {
        self.check(Op::Put, key)?;
        self.inner.put(key, body, md5, opts).await
    }

    async fn put_unhashed(&self, key: &str, body: Bytes, opts: &PutOptions) -> Result<String> {
        self.check(Op::Put, key)?;
        self.inner.put_unhashed(key, body, opts).await
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions, shape: UploadShape) -> Result<String> {
        self.check(Op::CreateMultipart, key)?;
        self.inner.create_multipart(key, opts, shape).await
    }

    async fn upload_part(&self, key: &str, upload_id: &str, number: u32, body: Bytes, md5: [u8; 16]) -> Result<String> {
        self.check(Op::UploadPart, key)?;
        self.inner.upload_part(key, upload_id, number, body, md5).await
    }

    async fn upload_part_unhashed(&self, key: &str, upload_id: &str, number: u32, body: Bytes) -> Result<String> {
        self.check(Op::UploadPart, key)?;
        self.inner.upload_part_unhashed(key, upload_id, number, body).await
    }

    async fn copy_object(&self, src: &super::CopySource, key: &str, opts: &PutOptions) -> Result<Option<String>> {
        self.check(Op::Put, key)?;
        self.inner.copy_object(src, key, opts).await
    }

    async fn upload_part_copy(
        &self,
        src: &super::CopySource,
        key: &str,
        upload_id: &str,
        number: u32,
        range: std::ops::Range<u64>,
    ) -> Result<String> {
        self.check(Op::UploadPart, key)?;
        self.inner.upload_part_copy(src, key, upload_id, number, range).await
    }

    async fn head_attributes(&self, key: &str) -> Result<Option<(ObjectMeta, super::ObjectAttributes)>> {
        self.check(Op::Head, key)?;
        self.inner.head_attributes(key).await
    }

    async fn part_size(&self, key: &str, number: u32) -> Result<Option<(u64, u32)>> {
        self.check(Op::PartSize, key)?;
        self.inner.part_size(key, number).await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        self.check(Op::ListParts, key)?;
        self.inner.list_parts(key, upload_id).await
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[PartInfo]) -> Result<Option<String>> {
        self.check(Op::CompleteMultipart, key)?;
        self.inner.complete_multipart(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.check(Op::AbortMultipart, key)?;
        self.inner.abort_multipart(key, upload_id).await
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        self.check(Op::ListUploads, prefix)?;
        self.inner.list_uploads(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.check(Op::Delete, key)?;
        self.inner.delete(key).await
    }

    async fn list_versions_page(
        &self,
        prefix: &str,
        after: Option<&super::VersionMarker>,
    ) -> Result<super::VersionPage> {
        self.check(Op::List, prefix)?;
        self.inner.list_versions_page(prefix, after).await
    }

    async fn versioning(&self) -> Result<super::Versioning> {
        self.inner.versioning().await
    }

    async fn get_tags(&self, key: &str, version: Option<&str>) -> Result<Vec<(String, String)>> {
        self.check(Op::Head, key)?;
        self.inner.get_tags(key, version).await
    }

    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> Result<()> {
        self.check(Op::Put, key)?;
        self.inner.put_tags(key, tags).await
    }

    async fn list_dirs(&self, prefix: &str, max: usize) -> Result<Vec<String>> {
        self.check(Op::List, prefix)?;
        self.inner.list_dirs(prefix, max).await
    }
}
