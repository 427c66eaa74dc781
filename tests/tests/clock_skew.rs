//! A worker whose clock is three minutes ahead of the others (libfaketime),
//! sharing a fleet (SQS, DynamoDB) with a worker on the true time, while a
//! second finder run queues every object again. Leases are written and read
//! by clocks that disagree by far more than the lease (3 s). The run must end
//! with every object whole, no unfinished upload, and complete counts.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_core::job::{Job, SrcRef};
use ferry_core::queue::JobQueue;
use ferry_core::state::{RecordKey, StateStore};
use ferry_tests::fleet::{run_id, stop, Fleet, S3Job};
use ferry_tests::proxy::{Delay, Proxy};
use ferry_tests::*;

const MIB: usize = 1024 * 1024;

/// The multithreaded libfaketime preload library of the `faketime` package.
fn libfaketime() -> String {
    for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"] {
        let p = format!("{dir}/faketime/libfaketimeMT.so.1");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    panic!("libfaketime not found: install the faketime package (tests/servers/start.sh does)");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_minutes_ahead_of_the_others_loses_and_corrupts_nothing() {
    let (rgw, moto) = (rgw(), moto());
    let (src, dst) = (rgw.bucket("skew-src").await, moto.bucket("skew-dst").await);
    let mut objects: BTreeMap<String, Vec<u8>> = (0..20)
        .map(|i| (format!("small/{i:02}"), data(3000 + i * 101, 900 + i as u64)))
        .collect();
    for i in 0..3 {
        objects.insert(format!("big/{i}.bin"), data(40 * MIB + i, 950 + i as u64));
    }
    rgw.put_all(&src, &objects).await;
    let slow = Proxy::start_slow(
        &moto.endpoint,
        Delay {
            ops: vec!["UploadPart"],
            by: Duration::from_millis(300),
        },
    )
    .await;
    let job = S3Job::new(
        &src,
        &rgw.endpoint,
        &dst,
        &slow.endpoint,
        &[
            "--part-size",
            "5MiB",
            "--multipart-threshold",
            "5MiB",
            "--concurrency",
            "1",
            "--lease",
            "3s",
        ],
    );
    let fleet = Fleet::new("skew", true, 20).await;
    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    let first = run(fleet.finder(&job.args, &envs));
    assert!(first.status.success());
    let first_run = run_id(&String::from_utf8_lossy(&first.stdout));

    let mut info = envs.clone();
    info.push(("RUST_LOG".into(), "info".into()));
    let mut wargs = job.worker_args();
    wargs.extend(["--workers".to_string(), "4".to_string()]);
    let true_time = fleet.worker(&wargs, &info);
    // The worker on the true time holds the large objects first.
    let state = fleet.state();
    let t = std::time::Instant::now();
    for i in 0..3 {
        let rk = RecordKey {
            bucket: dst.clone(),
            key: format!("big/{i}.bin"),
        };
        while state.get(&rk).await.unwrap().is_none() {
            assert!(t.elapsed() < Duration::from_secs(60), "big/{i}.bin not claimed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut ahead_env = info.clone();
    ahead_env.extend([
        ("LD_PRELOAD".to_string(), libfaketime()),
        ("FAKETIME".to_string(), "+180s".to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".to_string(), "1".to_string()),
    ]);
    let ahead = fleet.worker(&wargs, &ahead_env);
    // The large objects again, twice, while the first copies are under way:
    // duplicates meet leases written by the other clock.
    let mut again = Vec::new();
    for i in 0..3 {
        let key = format!("big/{i}.bin");
        let head = rgw.client().head_object().bucket(&src).key(&key).send().await.unwrap();
        let src_ref = SrcRef {
            key: key.clone(),
            size: objects[&key].len() as u64,
            etag: head.e_tag().map(str::to_string),
            version: None,
        };
        let body = Job::copy(&first_run, src_ref, key).to_body();
        again.extend([body.clone(), body]);
    }
    let sent = fleet.queue().send_batch(&again).await.unwrap();
    assert!(sent.iter().all(|r| r.is_ok()));

    let done = run(fleet.status(Some(&first_run), "240s"));
    let (st_true, log_true) = stop(true_time);
    let (st_ahead, log_ahead) = stop(ahead);
    assert!(st_true.success() && st_ahead.success());
    assert_eq!(done.status.code(), Some(0), "the run completes");
    eprintln!(
        "UploadPart requests: {} for 27 parts; CreateMultipartUpload: {}",
        slow.count("UploadPart"),
        slow.count("CreateMultipartUpload")
    );
    // The preload really moved that worker's clock: its log lines are dated ahead.
    let now = chrono::Utc::now();
    assert!(
        log_ahead
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|t| chrono::DateTime::parse_from_rfc3339(strip_ansi(t).as_str()).ok())
            .any(|t| t.with_timezone(&chrono::Utc) > now + chrono::Duration::seconds(100)),
        "the skewed worker's clock is ahead:\n{log_ahead}"
    );
    // Whether the true-time worker meets one of the far-ahead leases (and
    // warns) depends on which worker gets the redeliveries; report it.
    eprintln!(
        "skew warning from the true-time worker: {}",
        log_true.contains("clock may be ahead")
    );
    assert_same("with skewed clocks", &objects, &moto.read_all(&dst, "").await);
    assert_eq!(moto.uploads(&dst).await, 0, "no unfinished multipart upload left");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}
