//! The engine's single-PUT path between in-memory stores: the source's MD5
//! ETag sent as Content-MD5 catches a damaged read at the destination, and a
//! store that hashes bodies itself (a local directory) is given unhashed
//! objects and parts and still ends with the right bytes.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::db::Db;
use ferry_core::etag;
use ferry_core::job::{Job, SrcRef};
use ferry_core::lease::LeaseHolder;
use ferry_core::state::EmbeddedStateStore;
use ferry_core::store::conformance::data;
use ferry_core::store::failing::{FailingStore, Fault};
use ferry_core::store::{GetOptions, LocalStore, MemoryStore, ObjectStore, PutOptions};
use ferry_worker::engine::{Engine, EngineConfig, EngineError, JobOutcome};

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
            giant_threshold: u64::MAX,
            giant_span: 1 << 30,
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
    let mem = Arc::new(MemoryStore::new());
    let body = data(100_000, 1);
    mem.put("k", body.clone(), etag::md5(&body), &PutOptions::default())
        .await
        .unwrap();
    // A source whose reads come back with one bit flipped, until healed.
    let flaky = Arc::new(FailingStore::new(mem));
    flaky.inject(Fault::corrupt().times(u32::MAX));
    let dst = Arc::new(MemoryStore::new());
    let e = engine(flaky.clone(), dst.clone(), dir.path());
    let job = job_for(flaky.as_ref(), "k").await;

    match e.run_job(&job, &LeaseHolder::parse("w1")).await {
        Err(EngineError::Verify { what, .. }) => assert!(what.contains("read from the source"), "{what}"),
        other => panic!("a damaged read must fail verification, got {other:?}"),
    }
    assert!(dst.head("k").await.unwrap().is_none(), "nothing written");

    flaky.heal();
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
