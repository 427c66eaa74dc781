//! Bandwidth limits, timed end to end: one process under `--bwlimit`, and
//! two `ferry-worker` processes sharing a fleet-wide limit kept in DynamoDB
//! (set with `ferry-finder bwlimit`), each copying 44 MiB from radosgw. The
//! rate measured around the run (bytes over the wall time from start to the
//! last object) must be within 10 % of the limit, over at least 10 s.
//! (Timetables switching at a boundary are tested with a fake clock in
//! `ferry_core::bandwidth`.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry_tests::fleet::{stop, Fleet, S3Job};
use ferry_tests::*;

const MIB: usize = 1024 * 1024;
/// The limit, MiB per second.
const LIMIT: f64 = 4.0;
/// 11 objects of 4 MiB: 11 s at the limit.
const OBJECTS: usize = 11;

fn objects() -> BTreeMap<String, Vec<u8>> {
    (0..OBJECTS)
        .map(|i| (format!("o/{i:02}.bin"), data(4 * MIB, 300 + i as u64)))
        .collect()
}

/// Asserts that `bytes` in `took` is at most the limit plus 10 %, and at
/// least 80 % of it: the limit is a cap, while the time also holds the
/// workers' start and last completions, which stretch when the suite's
/// other tests load the machine.
fn assert_rate(what: &str, bytes: usize, took: Duration) {
    let rate = bytes as f64 / MIB as f64 / took.as_secs_f64();
    eprintln!("{what}: {bytes} bytes in {took:?}: {rate:.2} MiB/s (limit {LIMIT} MiB/s)");
    assert!(
        took >= Duration::from_secs(10),
        "{what}: the run lasts at least 10 s ({took:?})"
    );
    assert!(
        rate <= LIMIT * 1.10,
        "{what}: {rate:.2} MiB/s is over the limit of {LIMIT} MiB/s"
    );
    assert!(
        rate >= LIMIT * 0.80,
        "{what}: {rate:.2} MiB/s leaves much of the limit of {LIMIT} MiB/s unused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_process_holds_its_bwlimit() {
    let rgw = rgw();
    let bucket = rgw.bucket("bw-one").await;
    let files = objects();
    rgw.put_all(&bucket, &files).await;
    let work = tempfile::tempdir().unwrap();
    let dst = work.path().join("dst");
    let mut args = vec![
        format!("s3://{bucket}/"),
        dst.display().to_string(),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
        "--bwlimit".into(),
        "4M".into(),
    ];
    args.extend(rgw.flags("src"));
    let t0 = Instant::now();
    let out = run(finder(&args, &rgw.envs("src")));
    let took = t0.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same("limited copy", &files, &read_tree(&dst));
    assert_rate("one process", OBJECTS * 4 * MIB, took);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_share_one_fleet_limit() {
    let rgw = rgw();
    let (src, dst) = (rgw.bucket("bw-fleet-src").await, rgw.bucket("bw-fleet-dst").await);
    let files = objects();
    rgw.put_all(&src, &files).await;
    let fleet = Fleet::new("bw", true, 5).await;
    let job = S3Job::new(&src, &rgw.endpoint, &dst, &rgw.endpoint, &["--server-side", "never"]);
    let mut envs = rgw.envs("src");
    envs.extend(rgw.envs("dest"));

    let bwlimit = |limit: &str| {
        let mut c = std::process::Command::new(bin("ferry-finder"));
        c.args(["bwlimit", limit]).args(fleet.flags());
        isolate(&mut c);
        c.envs(fleet.envs());
        run(c)
    };
    let set = bwlimit("4M");
    let said = String::from_utf8_lossy(&set.stdout).to_string();
    assert!(set.status.success(), "{said}{}", String::from_utf8_lossy(&set.stderr));
    assert!(said.contains("4M; now 4.0 MiB/s"), "the limit is shown: {said}");
    let bad = bwlimit("25:00,1M");
    let text = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(
        !bad.status.success() && text.contains("25:00"),
        "a bad limit is refused: {text}"
    );

    let out = run(fleet.finder(&job.args, &envs));
    assert!(out.status.success(), "the finder queues the jobs");
    let t0 = Instant::now();
    let workers: Vec<_> = (0..2).map(|_| fleet.worker(&job.worker_args(), &envs)).collect();
    let status = run(fleet.status(None, "120s"));
    let took = t0.elapsed();
    let report = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(status.status.code(), Some(0), "{report}");
    assert!(
        report.contains("bandwidth limit (every worker together): 4M"),
        "{report}"
    );
    for w in workers {
        let (st, log) = stop(w);
        assert!(st.success(), "{log}");
    }
    assert_same("fleet-limited copy", &files, &rgw.read_all(&dst, "").await);
    assert_rate("two workers", OBJECTS * 4 * MIB, took);
}
