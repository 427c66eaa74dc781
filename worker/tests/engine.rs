//! The engine's single-PUT path between in-memory stores: the source's MD5
//! ETag sent as Content-MD5 catches a damaged read at the destination, and a
//! store that hashes bodies itself (a local directory) is given unhashed
//! objects and parts and still ends with the right bytes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::db::Db;
use ferry_core::etag;
use ferry_core::job::{Job, SrcRef};
use ferry_core::lease::LeaseHolder;
use ferry_core::state::EmbeddedStateStore;
use ferry_core::store::{
    conformance::data, Capabilities, GetOptions, GetResult, LocalStore, MemoryStore, ObjectMeta, ObjectStore, PartInfo,
    PutOptions, Result, UploadInfo,
};
use ferry_worker::engine::{Engine, EngineConfig, EngineError, JobOutcome};
use futures::stream::BoxStream;

/// A source whose GETs flip one bit while `corrupt` is set.
#[derive(Debug)]
struct Flaky {
    inner: MemoryStore,
    corrupt: AtomicBool,
}

#[async_trait]
impl ObjectStore for Flaky {
    fn describe(&self) -> String {
        "flaky".into()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.inner.local_path(key)
    }
    async fn part_size(&self, key: &str, number: u32) -> Result<Option<(u64, u32)>> {
        self.inner.part_size(key, number).await
    }
    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix, start_after)
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn get(&self, key: &str, opts: &GetOptions) -> Result<GetResult> {
        let mut g = self.inner.get(key, opts).await?;
        if self.corrupt.load(Ordering::SeqCst) {
            let mut b = g.body.to_vec();
            b[0] ^= 1;
            g.body = Bytes::from(b);
        }
        Ok(g)
    }
    async fn put(&self, key: &str, body: Bytes, md5: [u8; 16], opts: &PutOptions) -> Result<Option<String>> {
        self.inner.put(key, body, md5, opts).await
    }
    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> Result<String> {
        self.inner.create_multipart(key, opts).await
    }
    async fn upload_part(&self, key: &str, id: &str, n: u32, body: Bytes, md5: [u8; 16]) -> Result<String> {
        self.inner.upload_part(key, id, n, body, md5).await
    }
    async fn list_parts(&self, key: &str, id: &str) -> Result<Vec<PartInfo>> {
        self.inner.list_parts(key, id).await
    }
    async fn complete_multipart(&self, key: &str, id: &str, parts: &[PartInfo]) -> Result<Option<String>> {
        self.inner.complete_multipart(key, id, parts).await
    }
    async fn abort_multipart(&self, key: &str, id: &str) -> Result<()> {
        self.inner.abort_multipart(key, id).await
    }
    async fn list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        self.inner.list_uploads(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }
}

fn engine(src: Arc<dyn ObjectStore>, dst: Arc<dyn ObjectStore>, dir: &std::path::Path) -> Engine {
    let db = Db::open(&dir.join("state.sqlite")).unwrap();
    Engine::new(
        src,
        dst,
        Arc::new(EmbeddedStateStore::new(db)),
        "dst".into(),
        PutOptions::default(),
        EngineConfig {
            multipart_threshold: 64 << 20,
            part_size: 16 << 20,
            concurrency: 4,
            max_in_flight: 256 << 20,
            lease: Duration::from_secs(60),
        },
    )
}

async fn job_for(src: &dyn ObjectStore, key: &str) -> Job {
    let h = src.head(key).await.unwrap().unwrap();
    Job::copy(
        "run",
        SrcRef {
            key: key.into(),
            size: h.size,
            etag: h.etag,
            version: None,
        },
        key.into(),
    )
}

#[tokio::test]
async fn a_damaged_read_is_refused_by_the_destination_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = Arc::new(Flaky {
        inner: MemoryStore::new(),
        corrupt: AtomicBool::new(true),
    });
    let body = data(100_000, 1);
    flaky
        .put("k", body.clone(), etag::md5(&body), &PutOptions::default())
        .await
        .unwrap();
    let dst = Arc::new(MemoryStore::new());
    let e = engine(flaky.clone(), dst.clone(), dir.path());
    let job = job_for(flaky.as_ref(), "k").await;

    match e.run_job(&job, &LeaseHolder::parse("w1")).await {
        Err(EngineError::Verify { what, .. }) => assert!(what.contains("read from the source"), "{what}"),
        other => panic!("a damaged read must fail verification, got {other:?}"),
    }
    assert!(dst.head("k").await.unwrap().is_none(), "nothing written");

    flaky.corrupt.store(false, Ordering::SeqCst);
    assert_eq!(
        e.run_job(&job, &LeaseHolder::parse("w1")).await.unwrap(),
        JobOutcome::Transferred {
            bytes: body.len() as u64
        }
    );
    assert_eq!(dst.get("k", &GetOptions::default()).await.unwrap().body, body);
}

#[tokio::test]
async fn a_local_destination_that_hashes_bodies_gets_whole_objects_and_parts() {
    let dir = tempfile::tempdir().unwrap();
    let src = Arc::new(MemoryStore::new());
    let small = data(3000, 2);
    let big = data((64 << 20) + 12345, 3);
    for (k, b) in [("small", &small), ("big", &big)] {
        src.put(k, b.clone(), etag::md5(b), &PutOptions::default())
            .await
            .unwrap();
    }
    let out = dir.path().join("out");
    let dst = Arc::new(LocalStore::new(&out));
    assert!(dst.hashes_bodies());
    let e = engine(src.clone(), dst, dir.path());
    for k in ["small", "big"] {
        let job = job_for(src.as_ref(), k).await;
        assert!(
            matches!(
                e.run_job(&job, &LeaseHolder::parse("w1")).await.unwrap(),
                JobOutcome::Transferred { .. }
            ),
            "{k}"
        );
    }
    assert!(std::fs::read(out.join("small")).unwrap() == small);
    assert!(std::fs::read(out.join("big")).unwrap() == big);
}
