//! The fleet with awkward messages and credentials: poison messages reach the
//! dead-letter queue, a second finder run over a backlog transfers nothing
//! twice, and store keys kept in Secrets Manager drive a transfer without
//! ever reaching a log.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry_core::queue::JobQueue;
use ferry_core::store::{ObjectStore, S3Credentials, S3Store, S3StoreConfig, StoreError};
use ferry_tests::fleet::{count, run_id, stop, Fleet, S3Job};
use ferry_tests::proxy::Proxy;
use ferry_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn poison_messages_reach_the_dead_letter_queue_and_disturb_nothing() {
    let (rgw, moto) = (rgw(), moto());
    let (src_bucket, dst_bucket) = (rgw.bucket("poison-src").await, moto.bucket("poison-dst").await);
    let good: BTreeMap<String, Vec<u8>> = (0..5).map(|i| (format!("ok/{i}"), data(5000 + i, i as u64))).collect();
    rgw.put_all(&src_bucket, &good).await;
    let fleet = Fleet::new("poison", true, 2).await;
    let q = fleet.queue();
    let poison = [
        "this is not JSON".to_string(),
        r#"{"v":9,"op":"copy","run":"r","src":{"key":"ok/0","size":1,"etag":null},"dest":{"key":"x"}}"#.into(),
        r#"{"v":1,"op":"copy","run":"r"}"#.into(),
    ];
    assert!(q.send_batch(&poison).await.unwrap().iter().all(|r| r.is_ok()));
    let job = S3Job::new(&src_bucket, &rgw.endpoint, &dst_bucket, &moto.endpoint, &[]);
    let (args, wargs) = (job.args.clone(), job.worker_args());
    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    let worker = fleet.worker(&wargs, &envs);
    let out = run(fleet.finder(&args, &envs));
    assert!(out.status.success());
    let status = run(fleet.status(None, "120s"));
    assert_eq!(
        status.status.code(),
        Some(0),
        "the good jobs complete; the poison messages are no job of the run"
    );
    let started = Instant::now();
    loop {
        let s = q.stats().await.unwrap();
        if s.dead == 3 && s.live() == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "poison parked: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (st, log) = stop(worker);
    assert!(st.success());
    assert_same("beside poison", &good, &moto.read_all(&dst_bucket, "").await);
    assert_eq!(
        log.matches("Poison message").count(),
        3,
        "each poison message is logged once:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_finder_run_over_a_backlog_transfers_nothing_twice() {
    let (rgw, moto) = (rgw(), moto());
    let (src_bucket, dst_bucket) = (rgw.bucket("backlog-src").await, moto.bucket("backlog-dst").await);
    let objects: BTreeMap<String, Vec<u8>> = (0..30)
        .map(|i| (format!("b/{i:02}"), data(3000 + i * 11, 100 + i as u64)))
        .collect();
    rgw.put_all(&src_bucket, &objects).await;
    let dst_proxy = Proxy::start(&moto.endpoint).await;
    let fleet = Fleet::new("backlog", true, 5).await;
    let job = S3Job::new(&src_bucket, &rgw.endpoint, &dst_bucket, &dst_proxy.endpoint, &[]);
    let (args, wargs) = (job.args.clone(), job.worker_args());
    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    let first = run(fleet.finder(&args, &envs));
    assert!(first.status.success());
    let second = run(fleet.finder(&args, &envs));
    assert!(second.status.success(), "a finder runs while a backlog exists");
    let (run1, run2) = (
        run_id(&String::from_utf8_lossy(&first.stdout)),
        run_id(&String::from_utf8_lossy(&second.stdout)),
    );
    assert_eq!(fleet.queue().stats().await.unwrap().ready, 60, "both runs queued");

    let worker = fleet.worker(&wargs, &envs);
    let codes: Vec<_> = [&run1, &run2]
        .iter()
        .map(|r| run(fleet.status(Some(r), "120s")).status.code())
        .collect();
    let (st, _) = stop(worker);
    assert_eq!(codes, [Some(0), Some(0)], "both runs complete");
    assert!(st.success());
    assert_same("backlog", &objects, &moto.read_all(&dst_bucket, "").await);
    assert_eq!(dst_proxy.count("PutObject"), 30, "no object transferred twice");
    let s2 = run(fleet.status(Some(&run2), "10s"));
    let s1 = run(fleet.status(Some(&run1), "10s"));
    let (s1, s2) = (
        String::from_utf8_lossy(&s1.stdout).to_string(),
        String::from_utf8_lossy(&s2.stdout).to_string(),
    );
    assert_eq!(count(&s1, "done") + count(&s2, "done"), 30, "{s1}\n{s2}");
    assert_eq!(
        count(&s1, "identical") + count(&s2, "identical"),
        0,
        "both runs listed before anything was copied; the duplicates found done count once, as done"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_drives_the_source_credentials_and_never_reaches_a_log() {
    let (rgw, moto) = (rgw(), moto());
    let (src_bucket, dst_bucket) = (rgw.bucket("secret-src").await, moto.bucket("secret-dst").await);
    let objects: BTreeMap<String, Vec<u8>> = (0..8).map(|i| (format!("s/{i}"), data(4000 + i, i as u64))).collect();
    rgw.put_all(&src_bucket, &objects).await;
    let fleet = Fleet::new("secret", true, 5).await;
    let name = unique("ferry/src-keys");
    let value = serde_json::json!({"access_key_id": rgw.access_key, "secret_access_key": rgw.secret_key}).to_string();
    fleet.put_secret(&name, &value).await;

    let job = S3Job::new(
        &src_bucket,
        &rgw.endpoint,
        &dst_bucket,
        &moto.endpoint,
        &["--src-secret", &name],
    );
    let (args, wargs) = (job.args.clone(), job.worker_args());
    let envs = moto.envs("dest");
    let debug = vec![("RUST_LOG".to_string(), "debug".to_string())];
    let mut all_envs = envs.clone();
    all_envs.extend(debug.clone());
    let out = run(fleet.finder(&args, &all_envs));
    assert!(
        out.status.success(),
        "the finder lists the source with the secret's keys"
    );
    let worker = fleet.worker(&wargs, &all_envs);
    let status = run(fleet.status(None, "120s"));
    let (st, log) = stop(worker);
    assert_eq!(status.status.code(), Some(0));
    assert!(st.success());
    assert_same("with a secret", &objects, &moto.read_all(&dst_bucket, "").await);
    let logs = format!(
        "{}{}{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(logs.contains("Secrets Manager"), "debug logs are on:\n{log}");
    assert!(!logs.contains(&rgw.secret_key), "the secret key reached a log");
    assert!(!logs.contains(&rgw.access_key), "the access key id reached a log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_secret_is_read_again_after_access_denied() {
    let rgw = rgw();
    let bucket = rgw.bucket("rotate").await;
    rgw.put_all(&bucket, &BTreeMap::from([("k".to_string(), data(100, 1))]))
        .await;
    let fleet = Fleet::new("rotate", false, 5).await;
    let name = unique("ferry/rotating");
    let wrong = serde_json::json!({"access_key_id": rgw.access_key, "secret_access_key": "not-the-key"}).to_string();
    fleet.put_secret(&name, &wrong).await;
    std::env::set_var(
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        std::env::var("FERRY_TEST_MOTO").unwrap(),
    );
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_REGION", "us-east-1");
    let store = S3Store::new(S3StoreConfig {
        bucket: bucket.clone(),
        endpoint: Some(rgw.endpoint.clone()),
        region: Some("us-east-1".into()),
        path_style: true,
        credentials: S3Credentials::Secret(name.clone()),
        requester_pays: false,
        sign_payload: false,
        crc64nvme: false,
    })
    .await;
    let e = store.head("k").await.unwrap_err();
    assert!(matches!(e, StoreError::AccessDenied { .. }), "{e:?}");
    let right = serde_json::json!({"access_key_id": rgw.access_key, "secret_access_key": rgw.secret_key}).to_string();
    fleet.put_secret(&name, &right).await;
    let head = store.head("k").await.expect("the rotated secret is read again");
    assert_eq!(head.map(|h| h.size), Some(100));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_wait_exits_non_zero_and_names_the_errors_when_a_job_fails() {
    let rgw = rgw();
    let (src_bucket, dst_bucket) = (rgw.bucket("fails-src").await, rgw.bucket("fails-dst").await);
    rgw.put_all(&src_bucket, &BTreeMap::from([("ok".to_string(), data(1000, 3))]))
        .await;
    // Given up after one failed attempt of its own (the queue's limit is a backstop).
    let fleet = Fleet::new("fails", true, 10).await;
    let run_of = "2026-11-22T01:00:00Z#00ff";
    let state = fleet.state();
    use ferry_core::state::{RunCounters, StateStore};
    state.run_start(run_of).await.unwrap();
    state
        .run_add(
            run_of,
            RunCounters {
                found: 2,
                enqueued: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    state.run_listed(run_of).await.unwrap();
    let job = |key: &str, dest: String| {
        ferry_core::job::Job::copy(
            run_of,
            ferry_core::job::SrcRef {
                key: key.into(),
                size: 1000,
                etag: None,
                version: None,
            },
            dest,
        )
        .to_body()
    };
    // radosgw refuses keys over 1,024 bytes (moto does not): that job can never succeed.
    let too_long = "k".repeat(1100);
    let sent = fleet
        .queue()
        .send_batch(&[job("ok", "ok".into()), job("ok", too_long.clone())])
        .await
        .unwrap();
    assert!(sent.iter().all(|r| r.is_ok()));
    let s3job = S3Job::new(&src_bucket, &rgw.endpoint, &dst_bucket, &rgw.endpoint, &[]);
    let mut envs = rgw.envs("src");
    envs.extend(rgw.envs("dest"));
    let mut wargs = s3job.worker_args();
    wargs.extend(["--max-attempts".to_string(), "1".to_string()]);
    let worker = fleet.worker(&wargs, &envs);
    let status = run(fleet.status(Some(run_of), "60s"));
    let (st, _) = stop(worker);
    assert!(st.success());
    let report = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(
        status.status.code(),
        Some(1),
        "complete with a failure: exit 1\n{report}"
    );
    assert!(report.contains("Status: complete"), "{report}");
    assert_eq!((count(&report, "done"), count(&report, "failed")), (1, 1), "{report}");
    assert!(
        report.contains("Given up") && report.contains(&too_long[..100]),
        "{report}"
    );
    assert_eq!(
        fleet.queue().stats().await.unwrap().dead,
        1,
        "the failed job is in the dead-letter queue"
    );
}

/// Runs `radosgw-admin` against the test cluster.
fn radosgw_admin(args: &[&str]) {
    let dir = std::env::var("FERRY_TEST_DIR").unwrap_or_else(|_| "/tmp/ferry-test-servers".into());
    let out = std::process::Command::new("radosgw-admin")
        .arg("-c")
        .arg(format!("{dir}/ceph.conf"))
        .args(args)
        .output()
        .expect("run radosgw-admin");
    assert!(
        out.status.success(),
        "radosgw-admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_rotated_mid_run_are_read_again_and_the_run_completes() {
    use ferry_core::state::StateStore;
    let (rgw, moto) = (rgw(), moto());
    let (src_bucket, dst_bucket) = (rgw.bucket("rotate-src").await, moto.bucket("rotate-dst").await);
    let objects: BTreeMap<String, Vec<u8>> = (0..40)
        .map(|i| (format!("r/{i:02}"), data(2000 + i * 50, 300 + i as u64)))
        .collect();
    rgw.put_all(&src_bucket, &objects).await;
    // The secret starts with a second key pair of the radosgw user.
    let tag: String = unique("k").chars().filter(char::is_ascii_alphanumeric).collect();
    let (old_key, old_secret) = (format!("OLD{}", tag.to_uppercase()), format!("old-secret-{tag}"));
    let (new_key, new_secret) = (format!("NEW{}", tag.to_uppercase()), format!("new-secret-{tag}"));
    radosgw_admin(&[
        "key",
        "create",
        "--uid=test",
        "--key-type=s3",
        "--access-key",
        &old_key,
        "--secret-key",
        &old_secret,
    ]);
    let fleet = Fleet::new("rotate", true, 10).await;
    let name = unique("ferry/rotate-keys");
    let keys = |k: &str, s: &str| serde_json::json!({"access_key_id": k, "secret_access_key": s}).to_string();
    fleet.put_secret(&name, &keys(&old_key, &old_secret)).await;
    // Each PutObject held 150 ms so the run is still going when the keys change.
    let slow = Proxy::start_slow(
        &moto.endpoint,
        ferry_tests::proxy::Delay {
            ops: vec!["PutObject"],
            by: Duration::from_millis(150),
        },
    )
    .await;
    let job = S3Job::new(
        &src_bucket,
        &rgw.endpoint,
        &dst_bucket,
        &slow.endpoint,
        &["--src-secret", &name],
    );
    let out = run(fleet.finder(&job.args, &moto.envs("dest")));
    assert!(out.status.success());
    let run_of = run_id(&String::from_utf8_lossy(&out.stdout));
    let mut wargs = job.worker_args();
    wargs.extend(["--workers".to_string(), "2".to_string()]);
    let mut envs = moto.envs("dest");
    envs.push(("RUST_LOG".into(), "info".into()));
    let worker = fleet.worker(&wargs, &envs);
    let state = fleet.state();
    let t = std::time::Instant::now();
    while state
        .run_get(&run_of)
        .await
        .unwrap()
        .map(|r| r.counters.done)
        .unwrap_or(0)
        < 5
    {
        assert!(t.elapsed() < Duration::from_secs(60), "nothing copied");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Rotation: the new pair is created and stored, the old one revoked.
    radosgw_admin(&[
        "key",
        "create",
        "--uid=test",
        "--key-type=s3",
        "--access-key",
        &new_key,
        "--secret-key",
        &new_secret,
    ]);
    fleet.put_secret(&name, &keys(&new_key, &new_secret)).await;
    radosgw_admin(&["key", "rm", "--uid=test", "--key-type=s3", "--access-key", &old_key]);
    let done_before = state.run_get(&run_of).await.unwrap().unwrap().counters.done;
    let status = run(fleet.status(Some(&run_of), "120s"));
    let (st, log) = stop(worker);
    assert!(st.success());
    assert_eq!(status.status.code(), Some(0), "the run completes after the rotation");
    assert!(done_before < objects.len() as u64, "the keys changed mid-run");
    assert_same("after a rotation", &objects, &moto.read_all(&dst_bucket, "").await);
    for s in [&old_secret, &new_secret] {
        assert!(!log.contains(s.as_str()), "a secret reached the log");
    }
    radosgw_admin(&["key", "rm", "--uid=test", "--key-type=s3", "--access-key", &new_key]);
}
