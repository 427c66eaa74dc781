//! Event-driven replication: S3 event notifications on the queue drive the
//! worker (keys decoded as S3 encodes them, test events dropped, deletes
//! applied in event order), and the finder's delete sync with its cap.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry_core::queue::JobQueue;
use ferry_core::state::StateStore;
use ferry_tests::fleet::{stop, Fleet, S3Job};
use ferry_tests::*;

fn s3_event(bucket: &str, name: &str, key: &str, size: u64, etag: &str, sequencer: &str) -> String {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T10:00:00.000Z", "eventName": name,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key, "size": size, "eTag": etag, "sequencer": sequencer}}
    }]})
    .to_string()
}

async fn wait_until<F, Fut>(what: &str, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while !ok().await {
        assert!(t.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_event_notifications_copy_decoded_keys_and_delete_in_event_order() {
    let (rgw, moto) = (rgw(), moto());
    let (src_bucket, dst_bucket) = (rgw.bucket("ev-src").await, moto.bucket("ev-dst").await);
    let body = data(5000, 9);
    rgw.put_all(&src_bucket, &BTreeMap::from([("a b+c".to_string(), body.clone())]))
        .await;
    let etag = hex::encode(ferry_core::etag::md5(&body));
    let fleet = Fleet::new("events", true, 5).await;
    let q = fleet.queue();
    let test_event =
        serde_json::json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": src_bucket}).to_string();
    let created = s3_event(
        &src_bucket,
        "ObjectCreated:Put",
        "a+b%2Bc",
        5000,
        &etag,
        "0055AED6DCD90281A1",
    );
    assert!(q
        .send_batch(&[test_event, created])
        .await
        .unwrap()
        .iter()
        .all(|r| r.is_ok()));
    let job = S3Job::new(&src_bucket, &rgw.endpoint, &dst_bucket, &moto.endpoint, &[]);
    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    envs.push(("FERRY_DELETE".into(), "true".into()));
    let worker = fleet.worker(&job.worker_args(), &envs);
    wait_until("the created object", || async {
        moto.read_all(&dst_bucket, "").await.get("a b+c") == Some(&body)
    })
    .await;

    // A delete older than the create that was applied: recorded and dropped.
    let stale = s3_event(
        &src_bucket,
        "ObjectRemoved:Delete",
        "a+b%2Bc",
        0,
        "",
        "0055AED6DCD902819F",
    );
    q.send_batch(&[stale]).await.unwrap();
    let state = fleet.state();
    wait_until("the stale delete to be dropped", || async {
        let c = state.run_get("events").await.unwrap().unwrap_or_default().counters;
        c.skipped >= 1
    })
    .await;
    assert_eq!(
        moto.read_all(&dst_bucket, "").await.get("a b+c"),
        Some(&body),
        "an older delete does not undo a newer create"
    );

    // A newer delete applies.
    let newer = s3_event(
        &src_bucket,
        "ObjectRemoved:Delete",
        "a+b%2Bc",
        0,
        "",
        "0055AED6DCD90281B0",
    );
    q.send_batch(&[newer]).await.unwrap();
    // Listing only: reading the bodies would race the delete.
    let client = moto.client();
    wait_until("the newer delete", || async {
        let listed = client.list_objects_v2().bucket(&dst_bucket).send().await.unwrap();
        listed.contents().is_empty()
    })
    .await;
    let (st, _) = stop(worker);
    assert!(st.success());
    let c = state.run_get("events").await.unwrap().unwrap().counters;
    assert_eq!(
        (c.done, c.skipped),
        (2, 1),
        "one copy and one delete done, one stale event: {c:?}"
    );
    let s = q.stats().await.unwrap();
    assert_eq!(
        (s.ready, s.in_flight, s.dead),
        (0, 0, 0),
        "the test event was acknowledged too"
    );
}

#[test]
fn finder_delete_removes_exactly_the_destination_only_keys_up_to_max_delete() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    let source: BTreeMap<String, Vec<u8>> = (0..4).map(|i| (format!("keep/{i}"), data(100 + i, i as u64))).collect();
    write_tree(&src, &source);
    let mut dest = source.clone();
    for k in ["gone/x", "gone/y", "gone/z"] {
        dest.insert(k.to_string(), data(10, 1));
    }
    write_tree(&dst, &dest);
    let state = work.path().join("s.sqlite").display().to_string();
    let args = |extra: &[&str]| {
        let mut a = vec![
            src.display().to_string(),
            dst.display().to_string(),
            "--state".into(),
            state.clone(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    let plan = run(finder(&args(&["--delete", "--dry-run"]), &[]));
    let text = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(plan.status.success());
    assert!(text.contains("only at destination (would delete): 3"), "{text}");
    assert_eq!(read_tree(&dst), dest, "a dry run deletes nothing");

    let kept = run(finder(&args(&[]), &[]));
    assert!(kept.status.success());
    assert_eq!(read_tree(&dst), dest, "without --delete nothing is deleted");

    let capped = run(finder(&args(&["--delete", "--max-delete", "2"]), &[]));
    let text = String::from_utf8_lossy(&capped.stdout).to_string();
    assert_eq!(
        capped.status.code(),
        Some(1),
        "reaching --max-delete fails the run: {text}"
    );
    assert!(text.contains("--max-delete reached: 1 more"), "{text}");
    let after = read_tree(&dst);
    assert_eq!(after.len(), source.len() + 1, "exactly two deleted");
    assert!(
        source.iter().all(|(k, v)| after.get(k) == Some(v)),
        "source keys untouched"
    );

    let all = run(finder(&args(&["--delete"]), &[]));
    assert!(all.status.success());
    assert_eq!(read_tree(&dst), source, "the destination now mirrors the source");
}
