//! The conformance suite every [`StateStore`] backend passes (behind `testing`).

use std::time::Duration;

use super::{Claim, Outcome, RecordKey, RunCounters, StateError, StateStore, Status, UploadRecord};
use crate::store::PartInfo;

/// Only one worker holds a lease; a lapsed lease can be taken over and keeps
/// the recorded upload and parts; writes without the lease fail.
pub async fn lease_is_exclusive(s: &dyn StateStore, bucket: &str) {
    let key = RecordKey {
        bucket: bucket.into(),
        key: "obj".into(),
    };
    let lease = Duration::from_millis(400);
    assert!(matches!(
        s.claim(&key, "host:1#a", "run1", lease).await.unwrap(),
        Claim::Acquired(_)
    ));
    match s.claim(&key, "host:1#b", "run1", lease).await.unwrap() {
        Claim::Busy { worker, .. } => assert_eq!(worker, "host:1#a"),
        other => panic!("second claim must be busy: {other:?}"),
    }
    let up = UploadRecord {
        upload_id: "u1".into(),
        part_size: 8,
        src_etag: Some("\"e\"".into()),
        src_size: 20,
    };
    s.begin_upload(&key, "host:1#a", &up).await.unwrap();
    s.part_done(
        &key,
        "host:1#a",
        "u1",
        &PartInfo {
            number: 1,
            etag: "\"p1\"".into(),
            size: 8,
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        s.part_done(
            &key,
            "host:1#b",
            "u1",
            &PartInfo {
                number: 2,
                etag: "\"p2\"".into(),
                size: 8
            }
        )
        .await,
        Err(StateError::LeaseLost { .. })
    ));
    tokio::time::sleep(lease * 2).await;
    let rec = match s.claim(&key, "host:1#b", "run2", lease).await.unwrap() {
        Claim::Acquired(rec) => rec,
        other => panic!("a lapsed lease can be taken over: {other:?}"),
    };
    assert_eq!(rec.upload.as_ref(), Some(&up));
    assert_eq!(rec.parts.len(), 1);
    assert!(matches!(
        s.renew(&key, "host:1#a", lease).await,
        Err(StateError::LeaseLost { .. })
    ));
    s.renew(&key, "host:1#b", lease).await.unwrap();
    s.release(&key, "host:1#b", Some("network down")).await.unwrap();
    let rec = s.get(&key).await.unwrap().unwrap();
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.last_error.as_deref(), Some("network down"));
    assert!(rec.upload.is_some(), "release keeps the upload for resume");
    assert!(matches!(
        s.claim(&key, "host:1#c", "run2", lease).await.unwrap(),
        Claim::Acquired(_)
    ));
    let done = Outcome {
        status: Status::Done,
        src_etag: Some("\"e\"".into()),
        dest_etag: Some("\"d\"".into()),
        error: None,
    };
    s.finish(&key, "host:1#c", &done).await.unwrap();
    let rec = s.get(&key).await.unwrap().unwrap();
    assert_eq!(rec.status, Status::Done);
    assert_eq!(rec.upload, None);
    assert!(rec.parts.is_empty());
    assert_eq!(rec.worker, None);
    assert_eq!(s.run_objects("run2", Status::Done, 10).await.unwrap().len(), 1);
}

/// Run counters add up atomically under concurrent updates.
pub async fn run_counters_add_up(s: &dyn StateStore) {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        tasks.push(s.run_add(
            "r",
            RunCounters {
                done: 1,
                bytes: 10,
                ..Default::default()
            },
        ));
    }
    for t in futures::future::join_all(tasks).await {
        t.unwrap();
    }
    let c = s.run_get("r").await.unwrap().unwrap();
    assert_eq!((c.done, c.bytes), (20, 200));
    assert_eq!(s.run_get("nope").await.unwrap(), None);
}
