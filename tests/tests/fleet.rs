//! The fleet end to end: `ferry-finder` → SQS → `ferry-worker` processes →
//! destination, with progress in DynamoDB (SQS and DynamoDB on moto; the
//! source on radosgw, the destination on moto's S3), every request counted by
//! proxies in between.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry_core::job::{Job, SrcRef};
use ferry_core::queue::JobQueue;
use ferry_core::state::StateStore;
use ferry_tests::fleet::{count, run_id, stop, Fleet, S3Job, SlowMultipart};
use ferry_tests::proxy::Proxy;
use ferry_tests::*;

const MIB: usize = 1024 * 1024;

fn keys_envs(src: &Server, dest: &Server) -> Vec<(String, String)> {
    let mut e = src.envs("src");
    e.extend(dest.envs("dest"));
    e
}

fn small_objects(n: usize, seed: u64) -> BTreeMap<String, Vec<u8>> {
    (0..n)
        .map(|i| {
            let key = match i % 3 {
                0 => format!("small/{i:04} a b+c.txt"),
                1 => format!("small/ünï/{i:04}%.bin"),
                _ => format!("small/{i:04}"),
            };
            (key, data(1000 + (i * 37) % 20_000, seed + i as u64))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn finder_sqs_three_workers_dynamodb_status_complete() {
    let (rgw, moto) = (rgw(), moto());
    let (src_bucket, dst_bucket) = (rgw.bucket("fleet-src").await, moto.bucket("fleet-dst").await);
    let mut objects = small_objects(40, 1);
    objects.insert("big/one.bin".into(), data(12 * MIB, 7));
    objects.insert("big/two.bin".into(), data(11 * MIB + 3, 8));
    rgw.put_all(&src_bucket, &objects).await;
    let src_proxy = Proxy::start(&rgw.endpoint).await;
    let dst_proxy = Proxy::start(&moto.endpoint).await;
    let fleet = Fleet::new("e2e", false, 5).await;

    let job = S3Job::new(
        &src_bucket,
        &src_proxy.endpoint,
        &dst_bucket,
        &dst_proxy.endpoint,
        &["--part-size", "5MiB", "--multipart-threshold", "5MiB"],
    );
    let envs = keys_envs(&rgw, &moto);
    let mut args = job.args.clone();
    args.push("--create-resources".into());
    let out = run(fleet.finder(&args, &envs));
    assert!(out.status.success(), "the finder queues the jobs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(count(&stdout, "queued"), 42);
    let run_of = run_id(&stdout);
    assert!(
        moto.read_all(&dst_bucket, "").await.is_empty(),
        "with an SQS queue the finder only queues by default"
    );
    let mut worker_args = job.worker_args();
    worker_args.extend(["--workers".to_string(), "4".into()]);
    let workers: Vec<_> = (0..3).map(|_| fleet.worker(&worker_args, &envs)).collect();

    let status = run(fleet.status(Some(&run_of), "180s"));
    let report = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(
        status.status.code(),
        Some(0),
        "status --wait ends complete without failures"
    );
    assert!(report.contains("Status: complete"), "{report}");
    assert_eq!(count(&report, "found"), 42);
    assert_eq!(count(&report, "queued"), 42);
    assert_eq!(count(&report, "done"), 42);
    assert_eq!(count(&report, "failed"), 0);
    assert_eq!(count(&report, "in flight"), 0);

    for w in workers {
        let (st, log) = stop(w);
        assert!(st.success(), "SIGTERM ends a worker with exit 0: {st:?}\n{log}");
    }
    assert_same("fleet", &objects, &moto.read_all(&dst_bucket, "").await);
    assert_eq!(dst_proxy.count("PutObject"), 40, "each small object sent once");
    assert_eq!(dst_proxy.count("UploadPart"), 3 + 3, "each part sent once");
    let q = fleet.queue().stats().await.unwrap();
    assert_eq!((q.ready, q.dead), (0, 0));
}

/// Requests per small object end to end, by service (the figure in
/// docs/OPERATIONS.md): one worker, 200 objects. Status polling (GetItem,
/// Query, GetQueueAttributes) is not per object and not counted.
#[tokio::test(flavor = "multi_thread")]
async fn request_counts_per_small_object() {
    const N: usize = 200;
    let (rgw, moto) = (rgw(), moto());
    let (src_bucket, dst_bucket) = (rgw.bucket("count-src").await, moto.bucket("count-dst").await);
    let objects = small_objects(N, 50);
    rgw.put_all(&src_bucket, &objects).await;
    let src_proxy = Proxy::start(&rgw.endpoint).await;
    let dst_proxy = Proxy::start(&moto.endpoint).await;
    let fleet = Fleet::new("count", true, 5).await;
    let job = S3Job::new(&src_bucket, &src_proxy.endpoint, &dst_bucket, &dst_proxy.endpoint, &[]);
    let (args, wargs) = (job.args.clone(), job.worker_args());
    let envs = keys_envs(&rgw, &moto);
    let worker = fleet.worker(&wargs, &envs);
    let out = run(fleet.finder(&args, &envs));
    assert!(out.status.success());
    let status = run(fleet.status(None, "180s"));
    assert_eq!(status.status.code(), Some(0));
    let (st, _) = stop(worker);
    assert!(st.success());
    assert_same("counted", &objects, &moto.read_all(&dst_bucket, "").await);

    let per = |n: usize| n as f64 / N as f64;
    let sqs = fleet.sqs.by_operation();
    let ddb = fleet.dynamo.by_operation();
    let (s3_src, s3_dst) = (src_proxy.by_operation(), dst_proxy.by_operation());
    let total = |m: &BTreeMap<String, usize>| m.values().sum::<usize>();
    // Idle polling is not per object: a worker long-polls once per 20 s when idle.
    let sqs_work: usize = sqs
        .iter()
        .filter(|(k, _)| *k != "GetQueueAttributes")
        .map(|(_, v)| v)
        .sum();
    eprintln!("requests for {N} small objects (finder, one worker, status):");
    eprintln!("  SQS:       {sqs:?}");
    eprintln!("  DynamoDB:  {ddb:?}");
    eprintln!("  S3 source: {s3_src:?}");
    eprintln!("  S3 dest:   {s3_dst:?}");
    let s3 = per(total(&s3_src) + total(&s3_dst));
    let dynamo_writes = per(ddb.get("UpdateItem").copied().unwrap_or(0) + ddb.get("PutItem").copied().unwrap_or(0));
    eprintln!(
        "per object: S3 {s3:.2}, SQS {:.2}, DynamoDB {:.2} ({dynamo_writes:.2} writes)",
        per(sqs_work),
        per(total(&ddb))
    );
    assert_eq!(s3_src.get("GetObject"), Some(&N), "one GET per object");
    assert_eq!(s3_dst.get("PutObject"), Some(&N), "one PUT per object");
    assert!(s3 <= 2.05, "S3 requests per object: {s3:.2}");
    assert!(per(sqs_work) <= 0.5, "SQS requests per object: {:.2}", per(sqs_work));
    assert!(dynamo_writes <= 1.15, "DynamoDB writes per object: {dynamo_writes:.2}");
    let dynamo_work: usize = ddb
        .iter()
        .filter(|(k, _)| *k != "GetItem" && *k != "Query")
        .map(|(_, v)| v)
        .sum();
    let paid = s3 + per(sqs_work) + per(dynamo_work);
    eprintln!("paid requests per small object: {paid:.2}");
    assert!(paid <= 4.0, "at most 4 paid requests per small object, found {paid:.2}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_worker_mid_multipart_another_takes_over_from_recorded_parts() {
    let (rgw, moto) = (rgw(), moto());
    // 8 parts, one at a time, each held 400 ms at the proxy.
    let slow = SlowMultipart::new("takeover", 40, &["--lease", "3s"]).await;
    let (dst_bucket, body, dst_proxy) = (slow.dst_bucket.clone(), slow.body.clone(), slow.dst_proxy.clone());
    let fleet = Fleet::new("takeover", true, 10).await;
    let envs = keys_envs(&rgw, &moto);
    let out = run(fleet.finder(&slow.job.args, &envs));
    assert!(out.status.success());
    let wargs = slow.job.worker_args();

    let mut first = fleet.worker(&wargs, &envs);
    let rk = slow.record();
    let state = fleet.state();
    let started = Instant::now();
    let recorded = loop {
        let parts = state.get(&rk).await.unwrap().map(|r| r.parts.len()).unwrap_or(0);
        if parts >= 3 {
            break parts;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no parts recorded in 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill_nine(); // No release: the lease has to lapse.
    let recorded = state.get(&rk).await.unwrap().unwrap().parts.len().max(recorded);
    dst_proxy.reset();

    let second = fleet.worker(&wargs, &envs);
    let status = run(fleet.status(None, "120s"));
    assert_eq!(status.status.code(), Some(0));
    let (st, _) = stop(second);
    assert!(st.success());
    assert_same(
        "taken over",
        &BTreeMap::from([("big.bin".to_string(), body)]),
        &moto.read_all(&dst_bucket, "").await,
    );
    assert_eq!(
        dst_proxy.count("UploadPart"),
        8 - recorded,
        "the second worker sends only the parts not recorded ({recorded} were)"
    );
    assert_eq!(
        dst_proxy.count("CreateMultipartUpload"),
        0,
        "the recorded upload is resumed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_job_delivered_twice_at_once_is_transferred_once() {
    let (rgw, moto) = (rgw(), moto());
    let (src_bucket, dst_bucket) = (rgw.bucket("twice-src").await, moto.bucket("twice-dst").await);
    let body = data(300_000, 5);
    let etag = rgw.put_one(&src_bucket, "k", &body).await;
    let dst_proxy = Proxy::start(&moto.endpoint).await;
    let fleet = Fleet::new("twice", true, 5).await;
    let run_of = "2026-11-22T00:00:00Z#0002";
    let message = Job::copy(
        run_of,
        SrcRef {
            key: "k".into(),
            size: body.len() as u64,
            etag,
            version: None,
        },
        "k".into(),
    )
    .to_body();
    let sent = fleet.queue().send_batch(&[message.clone(), message]).await.unwrap();
    assert!(sent.iter().all(|r| r.is_ok()));
    let job = S3Job::new(
        &src_bucket,
        &rgw.endpoint,
        &dst_bucket,
        &dst_proxy.endpoint,
        &["--workers", "4"],
    );
    let wargs = job.worker_args();
    let mut envs = keys_envs(&rgw, &moto);
    envs.push(("RUST_LOG".into(), "debug,aws=info,hyper=info,h2=info".into()));
    let worker = fleet.worker(&wargs, &envs);
    let counters = fleet.counters_until(run_of, |c| c.done + c.skipped >= 2).await;
    let (st, _) = stop(worker);
    assert!(st.success());
    assert_eq!(
        (counters.done, counters.skipped),
        (1, 1),
        "one transfer, one found done: {counters:?}"
    );
    assert_eq!(dst_proxy.count("PutObject"), 1, "one transfer");
    assert_same(
        "twice",
        &BTreeMap::from([("k".to_string(), body)]),
        &moto.read_all(&dst_bucket, "").await,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_whose_worker_died_holding_its_lease_is_not_dropped_as_a_duplicate() {
    use ferry_core::state::RecordKey;
    let (rgw, moto) = (rgw(), moto());
    let (src_bucket, dst_bucket) = (rgw.bucket("orphan-src").await, moto.bucket("orphan-dst").await);
    let body = data(200_000, 6);
    let etag = rgw.put_one(&src_bucket, "k", &body).await;
    let fleet = Fleet::new("orphan", true, 5).await;
    let run_of = "2026-11-22T00:00:00Z#0003";
    let src = SrcRef {
        key: "k".into(),
        size: body.len() as u64,
        etag: etag.clone(),
        version: None,
    };
    let queue = fleet.queue();
    queue
        .send_batch(&[Job::copy(run_of, src, "k".into()).to_body()])
        .await
        .unwrap();
    // A worker receives the message, claims the object under it and dies: its
    // message comes back after 2 s while its object lease lives 6 s.
    let got = queue
        .receive(1, Duration::from_secs(2), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let rk = RecordKey {
        bucket: dst_bucket.clone(),
        key: "k".into(),
    };
    let dead = format!("elsewhere:1#1@{}", got[0].id);
    let state = fleet.state();
    let claim = state
        .claim(&rk, &dead, run_of, etag.as_deref(), Duration::from_secs(6))
        .await
        .unwrap();
    assert!(matches!(claim, ferry_core::state::Claim::Acquired(_)));

    let job = S3Job::new(&src_bucket, &rgw.endpoint, &dst_bucket, &moto.endpoint, &[]);
    let worker = fleet.worker(&job.worker_args(), &keys_envs(&rgw, &moto));
    let counters = fleet.counters_until(run_of, |c| c.done + c.skipped >= 1).await;
    let (st, _) = stop(worker);
    assert!(st.success());
    assert_eq!(
        (counters.done, counters.skipped),
        (1, 0),
        "the dead delivery's own message is copied once its lease lapses, not dropped: {counters:?}"
    );
    assert_same(
        "after a dead delivery",
        &BTreeMap::from([("k".to_string(), body)]),
        &moto.read_all(&dst_bucket, "").await,
    );
}
