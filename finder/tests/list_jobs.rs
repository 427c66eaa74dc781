//! Fleet listing in process (`--list-jobs`), over memory stores and the
//! embedded queue and state: the finder queues key ranges, the in-process
//! workers list and diff them, split the ranges that are larger than a list
//! job's share, and copy exactly the difference; the run is marked listed by
//! the last range; a rerun finds everything identical.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use ferry_core::config::{JobConfig, Settings};
use ferry_core::etag;
use ferry_core::store::{MemoryStore, ObjectStore, PutOptions};
use ferry_finder::list_jobs::FleetLister;
use ferry_finder::FinderOptions;
use ferry_worker::Worker;
use futures::StreamExt;

const N: usize = 2_400;

fn key(i: usize) -> String {
    match i % 3 {
        0 => format!("logs-{:02}/part-{i:05}.gz", i % 7),
        1 => format!("flat-{i:05}"),
        _ => format!("照片/{i:05}.jpg"),
    }
}

async fn put(store: &MemoryStore, key: &str, body: &[u8]) {
    let body = Bytes::copy_from_slice(body);
    let md5 = etag::md5(&body);
    store.put(key, body, md5, &PutOptions::default()).await.unwrap();
}

async fn keys(store: &MemoryStore) -> BTreeSet<(String, Option<String>)> {
    store
        .list("", None)
        .map(|o| {
            let o = o.unwrap();
            (o.key, o.etag)
        })
        .collect()
        .await
}

fn settings(dir: &std::path::Path, delete: bool) -> Settings {
    let mut cfg = JobConfig::default();
    cfg.source.url = Some("s3://src-bucket/".into());
    cfg.destination.url = Some("s3://dst-bucket/".into());
    cfg.state = Some(dir.join("state.sqlite").display().to_string());
    cfg.exclude = vec!["*.skip".into()];
    cfg.delete = delete;
    cfg.list_jobs = Some(3);
    cfg.list_job_keys = Some(250);
    cfg.build().unwrap()
}

mod common;
use common::no_stop;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_jobs_split_large_ranges_and_copy_exactly_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    for i in 0..N {
        let body = format!("object {i}");
        put(&src, &key(i), body.as_bytes()).await;
        match i % 100 {
            1 => {}
            2 => put(&dst, &key(i), b"changed").await,
            _ => put(&dst, &key(i), body.as_bytes()).await,
        }
    }
    put(&src, "a.skip", b"excluded").await;
    put(&dst, "zz-only-at-destination", b"extra").await;
    let s = settings(dir.path(), true);
    let b = common::backends(dir.path(), src.clone(), dst.clone());
    let lister = Arc::new(FleetLister::new(&s, &b).unwrap());
    let worker = Worker::new(&s, &b, Some(lister)).await.unwrap();
    let opts = FinderOptions {
        workers: 4,
        progress: false,
    };
    let report = ferry_finder::run(&s, &b, &worker, &opts, no_stop()).await.unwrap();

    assert!(report.drained && report.failures.is_empty(), "{report:?}");
    assert!(report.lists_queued >= 2, "the finder split the bucket: {report:?}");
    assert_eq!(report.lists.failed + report.lists.in_progress, 0, "{:?}", report.lists);
    assert!(
        report.lists.done > report.lists_queued,
        "ranges of more than 250 keys were split by their workers: {:?}",
        report.lists
    );
    let c = report.counters;
    assert_eq!(c.found, N as u64, "every selected source key once");
    assert_eq!(c.identical, N as u64 - 2 * (N as u64 / 100));
    assert_eq!(
        c.enqueued,
        2 * (N as u64 / 100) + 1,
        "missing, changed, and the deletion"
    );
    assert_eq!(c.done, c.enqueued);
    let mut want = keys(&src).await;
    want.retain(|(k, _)| !k.ends_with(".skip"));
    assert_eq!(keys(&dst).await, want, "the destination holds the source, no more");
    let run = b.state.run_get(&report.run).await.unwrap().unwrap();
    assert!(run.listed_at.is_some(), "the last range marked the run listed");

    let again = ferry_finder::run(&s, &b, &worker, &opts, no_stop()).await.unwrap();
    assert_eq!((again.counters.found, again.counters.identical), (N as u64, N as u64));
    assert_eq!(again.counters.enqueued, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_jobs_refuse_what_needs_one_lister() {
    let mut cfg = JobConfig::default();
    cfg.source.url = Some("s3://src-bucket/".into());
    cfg.destination.url = Some("s3://dst-bucket/".into());
    cfg.list_jobs = Some(4);
    cfg.delete = true;
    cfg.max_delete = Some(10);
    let e = cfg.build().unwrap_err().to_string();
    assert!(e.contains("--list-jobs") && e.contains("--max-delete"), "{e}");
    cfg.delete = false;
    assert!(
        cfg.build().unwrap().list_jobs.is_some(),
        "a cap without delete sync caps nothing"
    );
    cfg.list_jobs = Some(0);
    assert!(cfg.build().unwrap().list_jobs.is_none(), "0: the finder lists");
    cfg.list_jobs = None;
    cfg.list_job_keys = Some(1000);
    let e = cfg.build().unwrap_err().to_string();
    assert!(e.contains("--list-job-keys") && e.contains("--list-jobs"), "{e}");
}
