//! The finder's walk in process, over memory stores and the embedded queue
//! and state: a dry run plans without queueing, a run with in-process
//! workers copies what is missing or different and leaves what is identical,
//! a listing that fails mid-way is resumed by the retrying layer, and one
//! that keeps failing fails the run by name.

use std::sync::Arc;

use bytes::Bytes;
use ferry_cli::Backends;
use ferry_core::config::{JobConfig, Settings};
use ferry_core::etag;
use ferry_core::store::conformance::data;
use ferry_core::store::failing::{FailingStore, Fault, Op};
use ferry_core::store::{GetOptions, MemoryStore, ObjectStore, PutOptions, RetryingStore};
use ferry_finder::FinderOptions;
use ferry_worker::Worker;

struct Rig {
    dir: tempfile::TempDir,
    src: Arc<MemoryStore>,
    dst: Arc<MemoryStore>,
}

async fn put(store: &MemoryStore, key: &str, body: &Bytes) {
    store
        .put(key, body.clone(), etag::md5(body), &PutOptions::default())
        .await
        .unwrap();
}

/// Source: `a`, `b`, `c` (and `skip.tmp`); destination: `b` identical, `c`
/// different, `old` only there.
async fn rig() -> Rig {
    let (src, dst) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    for (k, seed) in [("a", 1), ("b", 2), ("c", 3), ("skip.tmp", 4)] {
        put(&src, k, &data(50_000 + seed as usize, seed)).await;
    }
    put(&dst, "b", &data(50_002, 2)).await;
    put(&dst, "c", &data(50_003, 9)).await;
    put(&dst, "old", &data(10, 5)).await;
    Rig {
        dir: tempfile::tempdir().unwrap(),
        src,
        dst,
    }
}

impl Rig {
    fn settings(&self) -> Settings {
        let mut cfg = JobConfig::default();
        cfg.source.url = Some("s3://src-bucket/".into());
        cfg.destination.url = Some("s3://dst-bucket/".into());
        cfg.state = Some(self.dir.path().join("state.sqlite").display().to_string());
        cfg.exclude = vec!["*.tmp".into()];
        // One lister: the tests count the source's listing requests.
        cfg.list_ranges = Some(1);
        cfg.build().unwrap()
    }

    /// The backends over the memory stores, the source listing through `src`.
    fn backends(&self, src: Arc<dyn ObjectStore>) -> Backends {
        let dst = RetryingStore::wrap(self.dst.clone(), 3);
        common::backends(self.dir.path(), RetryingStore::wrap(src, 3), dst)
    }
}

mod common;
use common::no_stop;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_and_queues_nothing() {
    let r = rig().await;
    let b = r.backends(r.src.clone());
    let report = ferry_finder::dry_run(&r.settings(), &b, no_stop()).await.unwrap();
    assert_eq!(report.counters.found, 3, "a, b, c (skip.tmp excluded)");
    assert_eq!(report.counters.identical, 1, "b");
    assert_eq!(report.planned_bytes, 50_001 + 50_003, "a and c");
    assert_eq!(b.queue.stats().await.unwrap().live(), 0, "nothing queued");
    assert!(r.dst.head("a").await.unwrap().is_none(), "nothing copied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_copies_what_differs_through_a_listing_that_fails_mid_way() {
    let r = rig().await;
    let failing = Arc::new(FailingStore::new(r.src.clone()));
    // The source listing drops once after two keys: resumed after the last one.
    failing.inject(Fault::retryable(Op::List).after(2).times(1));
    let settings = r.settings();
    let b = r.backends(failing.clone());
    let worker = Worker::new(&settings, &b, None).await.unwrap();
    let opts = FinderOptions {
        workers: 2,
        progress: false,
    };
    let report = ferry_finder::run(&settings, &b, &worker, &opts, no_stop())
        .await
        .unwrap();

    assert!(report.drained && !report.interrupted, "{report:?}");
    assert_eq!((report.counters.found, report.counters.identical), (3, 1));
    assert_eq!((report.counters.enqueued, report.counters.done), (2, 2), "a and c");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    for k in ["a", "b", "c"] {
        let want = r.src.get(k, &GetOptions::default()).await.unwrap().body;
        assert_eq!(r.dst.get(k, &GetOptions::default()).await.unwrap().body, want, "{k}");
    }
    assert!(r.dst.head("skip.tmp").await.unwrap().is_none(), "excluded");
    assert!(r.dst.head("old").await.unwrap().is_some(), "kept without delete sync");
    assert_eq!(failing.calls(Op::List), 2, "the listing and its resumption");
    assert_eq!(b.queue.stats().await.unwrap().live(), 0);

    // A second run finds everything identical and queues nothing.
    let again = ferry_finder::run(&settings, &b, &worker, &opts, no_stop())
        .await
        .unwrap();
    assert_eq!(
        (again.counters.found, again.counters.identical, again.counters.enqueued),
        (3, 3, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_keeps_failing_fails_the_run_by_name() {
    let r = rig().await;
    let failing = Arc::new(FailingStore::new(r.src.clone()));
    failing.inject(Fault::fatal(Op::List).after(1).times(u32::MAX));
    let settings = r.settings();
    let b = r.backends(failing);
    let worker = Worker::new(&settings, &b, None).await.unwrap();
    let opts = FinderOptions {
        workers: 1,
        progress: false,
    };
    let err = ferry_finder::run(&settings, &b, &worker, &opts, no_stop())
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("listing failed") && text.contains("injected"), "{text}");
}
