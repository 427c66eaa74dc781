//! A giant object copied by a fleet: three `ferry-worker` processes on SQS
//! and DynamoDB (moto) share one 2 GiB object from radosgw in spans of
//! parts; one worker is killed with SIGKILL mid-way. The object arrives
//! byte for byte (compared part by part with the raw client), every span's
//! record is done, the parts sent at the destination (counted at a proxy)
//! are the object's parts plus at most those the killed worker had in
//! flight, and no upload is left open. (The test server keeps objects in
//! memory: both copies are deleted at the end.)

use std::time::{Duration, Instant};

use ferry_core::state::{RecordKey, StateStore, Status};
use ferry_tests::fleet::{stop, Fleet, S3Job};
use ferry_tests::proxy::Proxy;
use ferry_tests::*;

const MIB: usize = 1024 * 1024;
/// The source's own parts: 32 of 64 MiB and one of 1 MiB.
const SRC_PART: usize = 64 * MIB;
const SIZE: usize = 2048 * MIB + MIB;

/// The bytes of source part `i` (0-based).
fn chunk(i: usize) -> Vec<u8> {
    data(SRC_PART.min(SIZE - i * SRC_PART), 700 + i as u64)
}

/// Whether the copy holds the source's bytes, range by range.
async fn same_as_source(rgw: &Server, bucket: &str, key: &str) -> bool {
    let c = rgw.client();
    for i in 0..SIZE.div_ceil(SRC_PART) {
        let want = chunk(i);
        let start = i * SRC_PART;
        let got = c
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes={start}-{}", start + want.len() - 1))
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        if got != want {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_share_a_giant_object_and_one_is_killed() {
    let rgw = rgw();
    let (src, dst) = (rgw.bucket("giant-src").await, rgw.bucket("giant-dst").await);
    // Written part by part, never held whole.
    rgw.put_parts(&src, "big.bin", (0..SIZE.div_ceil(SRC_PART)).map(chunk))
        .await;
    let dst_proxy = Proxy::start(&rgw.endpoint).await;
    let fleet = Fleet::new("giant", true, 10).await;
    let flags = [
        "--server-side",
        "never",
        "--giant-threshold",
        "1GiB",
        "--giant-span",
        "256MiB",
        "--part-size",
        "32MiB",
        "--lease",
        "10s",
    ];
    let job = S3Job::new(&src, &rgw.endpoint, &dst, &dst_proxy.endpoint, &flags);
    let mut envs = rgw.envs("src");
    envs.extend(rgw.envs("dest"));
    let out = run(fleet.finder(&job.args, &envs));
    assert!(out.status.success(), "the finder queues the object");

    envs.push(("RUST_LOG".into(), "info".into()));
    let mut wargs = job.worker_args();
    wargs.extend(["--workers", "2", "--concurrency", "4"].map(String::from));
    let started = Instant::now();
    let mut workers: Vec<_> = (0..3).map(|_| fleet.worker(&wargs, &envs)).collect();
    while dst_proxy.count("UploadPart") < 16 {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the copy did not progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    workers[0].kill_nine();
    let status = run(fleet.status(None, "300s"));
    let took = started.elapsed();
    let report = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(status.status.code(), Some(0), "{report}");
    eprintln!("2 GiB with 3 workers, one killed: {took:?}");

    let survivors: Vec<String> = workers.drain(1..).map(|w| stop(w).1).collect();
    for log in &survivors {
        assert!(
            log.contains("A span of a giant object is copied"),
            "every worker took spans:\n{log}"
        );
    }
    assert!(
        same_as_source(&rgw, &dst, "big.bin").await,
        "the copy differs from the source"
    );
    let parts = SIZE.div_ceil(32 * MIB);
    let per = 256 / 32;
    let state = fleet.state();
    for first in (1..=parts).step_by(per) {
        let key = format!("big.bin#parts-{first}-{}", (first + per - 1).min(parts));
        let span = state
            .get(&RecordKey {
                bucket: format!("{dst}#spans"),
                key: key.clone(),
            })
            .await
            .unwrap();
        assert_eq!(span.map(|s| s.status), Some(Status::Done), "span {key} is done");
    }
    let object = state
        .get(&RecordKey {
            bucket: dst.clone(),
            key: "big.bin".into(),
        })
        .await
        .unwrap()
        .expect("the object's record");
    assert_eq!(object.status, Status::Done);
    let sent = dst_proxy.count("UploadPart");
    assert!(
        (parts..=parts + 2 * 4).contains(&sent),
        "{sent} parts sent for {parts}: each span once, but for the parts in flight in the killed worker"
    );
    assert_eq!(dst_proxy.count("CompleteMultipartUpload"), 1, "completed once");
    assert_eq!(rgw.uploads(&dst).await, 0, "no upload is left open");
    // 4 GiB of the test server's memory back for the other tests.
    for b in [&src, &dst] {
        rgw.client()
            .delete_object()
            .bucket(b)
            .key("big.bin")
            .send()
            .await
            .unwrap();
    }
}
