//! Fleet listing end to end (`ferry-finder --list-jobs`): the finder queues
//! key ranges on SQS, three `ferry-worker` processes list and diff them
//! (the ranges larger than a list job's share are split mid-way and queued
//! again), one worker is killed with SIGKILL while it lists a range, and
//! the run still ends complete with the destination equal to the source,
//! compared by the raw client. The finder's filter travels with the list
//! jobs: the workers are not given it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use ferry_core::state::{StateStore, Status};
use ferry_tests::fleet::{count, run_id, Fleet, S3Job};
use ferry_tests::proxy::{Delay, Proxy};
use ferry_tests::*;

const N: usize = 2_000;

fn key(i: usize) -> String {
    match i % 3 {
        0 => format!("logs-{:02}/part-{i:05}.gz", i % 11),
        1 => format!("flat-{i:05}"),
        _ => format!("照片/{i:05}.jpg"),
    }
}

/// The listing case's keys, and one the finder's filter leaves out.
async fn seed(c: &Client, src: &str, dst: &str) {
    seed_with_difference(c, src, dst, N, key).await;
    c.put_object()
        .bucket(src)
        .key("left-out.skip")
        .body(b"x".to_vec().into())
        .send()
        .await
        .expect("seed");
}

/// The pid in a lease holder `HOST:PID#SLOT@MESSAGE`.
fn pid_of(holder: &str) -> Option<u32> {
    holder.split('#').next()?.rsplit_once(':')?.1.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_list_split_and_survive_a_kill() {
    let rgw = rgw();
    let (src_bucket, dst_bucket) = (rgw.bucket("lj-src").await, rgw.bucket("lj-dst").await);
    seed(&rgw.client(), &src_bucket, &dst_bucket).await;
    // Every listing of the source is held, so a worker is caught mid-range.
    let slow = Delay {
        ops: vec!["ListObjects"],
        by: Duration::from_millis(300),
    };
    let src_proxy = Proxy::start_slow(&rgw.endpoint, slow).await;
    let fleet = Fleet::new("listjobs", true, 10).await;
    let job = S3Job::new(&src_bucket, &src_proxy.endpoint, &dst_bucket, &rgw.endpoint, &[]);
    let mut envs = rgw.envs("src");
    envs.extend(rgw.envs("dest"));

    let mut args = job.args.clone();
    args.extend(["--list-jobs", "3", "--list-job-keys", "250", "--exclude", "*.skip"].map(String::from));
    let out = run(fleet.finder(&args, &envs));
    let stdout = output_text(&out);
    assert!(out.status.success(), "{stdout}");
    let run_of = run_id(&stdout);
    let queued = count(&stdout, "list jobs");
    assert!(queued >= 2, "the finder split the bucket into ranges:\n{stdout}");

    let mut wargs = job.worker_args();
    wargs.extend(["--workers", "3", "--lease", "8s"].map(String::from));
    let mut workers: Vec<_> = (0..3).map(|_| fleet.worker(&wargs, &envs)).collect();

    // Kill the worker that holds a range's lease as soon as one does.
    let (state, started) = (fleet.state(), Instant::now());
    let lists = ferry_worker::engine::listing::lists_of(&run_of);
    let victim = loop {
        assert!(started.elapsed() < Duration::from_secs(90), "no worker took a range");
        let open = state.run_objects(&lists, Status::InProgress, 50).await.unwrap();
        let holders: Vec<u32> = open
            .iter()
            .filter_map(|r| r.worker.as_deref().and_then(pid_of))
            .collect();
        if let Some(i) = workers.iter().position(|w| holders.contains(&w.child.id())) {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    workers[victim].kill_nine();

    let status = run(fleet.status(Some(&run_of), "300s"));
    let report = output_text(&status);
    assert_eq!(status.status.code(), Some(0), "complete without failures:\n{report}");
    assert!(report.contains("Status: complete"), "{report}");
    let listing = report
        .lines()
        .find(|l| l.trim_start().starts_with("listing:"))
        .unwrap_or_else(|| panic!("no listing line:\n{report}"));
    let ranges: Vec<u64> = listing
        .split_whitespace()
        .filter_map(|w| w.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .collect();
    assert_eq!(ranges[0], ranges[1], "every range listed: {listing}");
    assert!(
        ranges[1] > queued,
        "ranges larger than 250 keys were split mid-way by their workers: {listing}"
    );
    assert_eq!(ranges[2], 0, "none given up: {listing}");
    assert_eq!(count(&report, "failed"), 0, "{report}");

    let mut want: BTreeMap<String, Vec<u8>> = rgw.read_all(&src_bucket, "").await;
    want.remove("left-out.skip");
    let got = rgw.read_all(&dst_bucket, "").await;
    assert_same("the destination after the fleet's listing", &want, &got);
    for w in workers.iter_mut() {
        w.kill_nine();
    }
}
