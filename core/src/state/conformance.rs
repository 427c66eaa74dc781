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
    // Long enough that the second claim comes within it on a loaded server
    // that serves one request at a time.
    let lease = Duration::from_secs(2);
    let started = crate::now_millis();
    assert!(matches!(
        s.claim(&key, "host:1#a", "run1", Some("\"e\""), lease).await.unwrap(),
        Claim::Acquired(_)
    ));
    match s.claim(&key, "host:1#b", "run1", Some("\"e\""), lease).await.unwrap() {
        Claim::Busy { worker, until, etag } => {
            assert_eq!(worker, "host:1#a");
            assert_eq!(etag.as_deref(), Some("\"e\""));
            assert!(until >= started + lease.as_millis() as i64, "the holder's lease end");
        }
        other => panic!("second claim must be busy: {other:?}"),
    }
    let other = RecordKey {
        bucket: bucket.into(),
        key: "other".into(),
    };
    let many = s.get_many(&[key.clone(), other]).await.unwrap();
    assert_eq!(many.len(), 2);
    let first = many[0].as_ref().expect("the claimed record");
    assert_eq!(first.worker.as_deref(), Some("host:1#a"));
    assert_eq!(first.lease_etag.as_deref(), Some("\"e\""));
    assert!(many[1].is_none());
    // The marker written before an upload is created: an empty id.
    let mut up = UploadRecord {
        upload_id: String::new(),
        part_size: 8,
        src_etag: Some("\"e\"".into()),
        src_size: 20,
    };
    s.begin_upload(&key, "host:1#a", &up).await.unwrap();
    let marked = s.get(&key).await.unwrap().unwrap().upload.expect("the marker");
    assert_eq!(marked.upload_id, "", "the marker reads back as an empty id");
    up.upload_id = "u1".into();
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
    let rec = match s.claim(&key, "host:1#b", "run2", None, lease).await.unwrap() {
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
        s.claim(&key, "host:1#c", "run2", Some("\"e\""), lease).await.unwrap(),
        Claim::Acquired(_)
    ));
    let done = Outcome {
        status: Status::Done,
        src_etag: Some("\"e\"".into()),
        dest_etag: Some("\"d\"".into()),
        error: None,
        event_seq: None,
        checksum: Some("crc64nvme:AAAAAAAAAAE=".into()),
        dest_version: Some("v-7".into()),
    };
    s.finish(&key, "host:1#c", &done).await.unwrap();
    let rec = s.get(&key).await.unwrap().unwrap();
    assert_eq!(rec.status, Status::Done);
    assert_eq!(
        rec.checksum.as_deref(),
        Some("crc64nvme:AAAAAAAAAAE="),
        "the checksum copied is kept"
    );
    assert_eq!(
        rec.dest_version.as_deref(),
        Some("v-7"),
        "the destination version is kept"
    );
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
    assert_eq!((c.counters.done, c.counters.bytes), (20, 200));
    assert!(!c.complete(), "a run whose listing has not ended is not complete");
    assert_eq!(s.run_get("nope").await.unwrap(), None);
}

/// Runs: the latest one is found (only `run_start` makes it); a run is
/// complete once listed and every enqueued job ended.
pub async fn runs_complete(s: &dyn StateStore) {
    s.run_start("2026-01-01T00:00:00Z#0001").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    s.run_start("2026-01-01T00:00:01Z#0002").await.unwrap();
    assert_eq!(
        s.latest_run().await.unwrap().as_deref(),
        Some("2026-01-01T00:00:01Z#0002")
    );
    // Counters of a run never begun (a gateway token's usage) are not a run.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    s.run_add(
        "gateway:site-1",
        RunCounters {
            enqueued: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        s.latest_run().await.unwrap().as_deref(),
        Some("2026-01-01T00:00:01Z#0002"),
        "only run_start makes the latest run"
    );
    let run = "2026-01-01T00:00:01Z#0002";
    let queued = RunCounters {
        found: 3,
        enqueued: 2,
        planned_bytes: 30,
        identical: 1,
        ..Default::default()
    };
    s.run_add(run, queued).await.unwrap();
    s.run_add(
        run,
        RunCounters {
            done: 1,
            bytes: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.run_add(
        run,
        RunCounters {
            failed: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let r = s.run_get(run).await.unwrap().unwrap();
    assert!(r.started_at > 0);
    assert!(!r.complete(), "not complete before the listing ended");
    s.run_listed(run).await.unwrap();
    let r = s.run_get(run).await.unwrap().unwrap();
    assert_eq!(r.counters.ended(), 2);
    assert_eq!(r.counters.planned_bytes, 30);
    assert!(r.complete());
}

/// A claim that records the outcome in the same write: the record reads done
/// under a live lease (another worker is busy, told the ETag); a release sets
/// it back to in progress; the claim returns the record as it was before.
pub async fn claim_done_records_under_the_lease(s: &dyn StateStore, bucket: &str) {
    let key = RecordKey {
        bucket: bucket.into(),
        key: "small".into(),
    };
    let lease = Duration::from_secs(30);
    let done = Outcome {
        status: Status::Done,
        src_etag: Some("\"s1\"".into()),
        dest_etag: Some("\"s1\"".into()),
        error: None,
        event_seq: None,
        checksum: None,
        dest_version: None,
    };
    match s.claim_done(&key, "w:1#a", "r", &done, lease).await.unwrap() {
        Claim::Acquired(before) => assert_eq!(before.status, Status::InProgress, "a new record"),
        other => panic!("{other:?}"),
    }
    let rec = s.get(&key).await.unwrap().unwrap();
    assert_eq!(rec.status, Status::Done);
    assert_eq!(rec.src_etag.as_deref(), Some("\"s1\""));
    assert_eq!(rec.dest_etag.as_deref(), Some("\"s1\""));
    assert_eq!(rec.worker.as_deref(), Some("w:1#a"));
    match s.claim(&key, "w:1#b", "r", Some("\"s1\""), lease).await.unwrap() {
        Claim::Busy { etag, .. } => assert_eq!(etag.as_deref(), Some("\"s1\"")),
        other => panic!("the lease is live: {other:?}"),
    }
    s.release(&key, "w:1#a", Some("PUT failed")).await.unwrap();
    let rec = s.get(&key).await.unwrap().unwrap();
    assert_eq!(rec.status, Status::InProgress, "a failed attempt is not done");
    assert_eq!(rec.attempts, 1);
    let before = match s.claim_done(&key, "w:1#b", "r", &done, lease).await.unwrap() {
        Claim::Acquired(b) => b,
        other => panic!("{other:?}"),
    };
    assert_eq!(before.last_error.as_deref(), Some("PUT failed"));
    let rec = s.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.attempts, rec.last_error),
        (Status::Done, 1, None),
        "the failed attempt stays counted until the job ends"
    );
    s.finish(&key, "w:1#b", &done).await.unwrap();
    assert_eq!(
        s.get(&key).await.unwrap().unwrap().attempts,
        0,
        "finish resets the count"
    );
}

/// The tally of a run counts each object once, by its record's status: an
/// object finished twice (a redelivery after a crash) is one object; a job
/// given up forgets its upload and its attempts start again.
pub async fn run_tally_counts_each_object_once(s: &dyn StateStore, bucket: &str) {
    let run = "2026-01-02T00:00:00Z#tally";
    let lease = Duration::from_secs(30);
    let rk = |k: &str| RecordKey {
        bucket: bucket.into(),
        key: format!("tally/{k}"),
    };
    let end = |k: &'static str, status: Status| async move {
        let key = rk(k);
        assert!(matches!(
            s.claim(&key, "h:1#1", run, Some("\"e\""), lease).await.unwrap(),
            Claim::Acquired(_)
        ));
        s.finish(&key, "h:1#1", &Outcome::bare(status)).await.unwrap();
    };
    end("a", Status::Done).await;
    end("a", Status::Done).await;
    end("b", Status::Done).await;
    end("c", Status::RestoreNeeded).await;
    // A job that failed twice, then was given up: its upload is forgotten.
    let f = rk("f");
    s.claim(&f, "h:1#2", run, Some("\"e\""), lease).await.unwrap();
    let up = UploadRecord {
        upload_id: "u1".into(),
        part_size: 5 << 20,
        src_etag: Some("\"e\"".into()),
        src_size: 10 << 20,
    };
    s.begin_upload(&f, "h:1#2", &up).await.unwrap();
    s.release(&f, "h:1#2", Some("boom")).await.unwrap();
    s.claim(&f, "h:1#3", run, Some("\"e\""), lease).await.unwrap();
    s.release(&f, "h:1#3", Some("boom")).await.unwrap();
    assert_eq!(
        s.get(&f).await.unwrap().unwrap().attempts,
        2,
        "failed attempts are counted"
    );
    // A single-PUT claim records done up front and keeps the count: its PUT may still fail.
    s.claim_done(&f, "h:1#3b", run, &Outcome::bare(Status::Done), lease)
        .await
        .unwrap();
    assert_eq!(
        s.get(&f).await.unwrap().unwrap().attempts,
        2,
        "claim_done keeps the failed attempts"
    );
    s.release(&f, "h:1#3b", Some("boom")).await.unwrap();
    assert_eq!(s.get(&f).await.unwrap().unwrap().attempts, 3);
    s.claim(&f, "h:1#4", run, Some("\"e\""), lease).await.unwrap();
    let given_up = Outcome {
        error: Some("given up".into()),
        ..Outcome::bare(Status::Failed)
    };
    s.finish(&f, "h:1#4", &given_up).await.unwrap();
    let rec = s.get(&f).await.unwrap().unwrap();
    assert_eq!(rec.status, Status::Failed);
    assert_eq!(rec.attempts, 0, "a job sent again gets its full count of attempts");
    assert!(rec.upload.is_none(), "a given-up upload is forgotten");
    assert_eq!(rec.last_error.as_deref(), Some("given up"));
    // Claimed and never ended.
    s.claim(&rk("g"), "h:1#5", run, Some("\"e\""), lease).await.unwrap();
    let t = s.run_tally(run).await.unwrap();
    assert_eq!(
        t,
        super::RunTally {
            in_progress: 1,
            done: 2,
            failed: 1,
            source_gone: 0,
            deleted: 0,
            restore_needed: 1,
        }
    );
    assert_eq!(s.run_tally("no-such-run").await.unwrap(), super::RunTally::default());
}

/// A fleet's bandwidth limit round-trips, and concurrent reservations each
/// move the shared pacing time: none is lost, none saves credit.
pub async fn fleet_bandwidth_is_shared(s: &(dyn crate::bandwidth::SharedBandwidth + Sync)) {
    let name = format!("queue-{}", rand::random::<u32>());
    assert_eq!(s.fleet_limit(&name).await.unwrap(), None);
    s.set_fleet_limit(&name, Some("08:00,1M 18:00,off")).await.unwrap();
    assert_eq!(
        s.fleet_limit(&name).await.unwrap().as_deref(),
        Some("08:00,1M 18:00,off")
    );
    s.set_fleet_limit(&name, None).await.unwrap();
    assert_eq!(s.fleet_limit(&name).await.unwrap(), None, "removed");

    const MIB: u64 = 1 << 20;
    let now = 1_000_000_000_000_000i64;
    let tats = futures::future::join_all((0..12).map(|_| s.reserve(&name, MIB / 2, MIB, now))).await;
    let mut tats: Vec<i64> = tats.into_iter().map(|t| t.unwrap()).collect();
    tats.sort();
    let want: Vec<i64> = (1..=12).map(|k| now + k * 500_000).collect();
    assert_eq!(tats, want, "each reservation takes its own half second");
    let later = now + 100_000_000;
    assert_eq!(
        s.reserve(&name, MIB, MIB, later).await.unwrap(),
        later + 1_000_000,
        "an idle fleet saves no credit"
    );
    assert_eq!(s.fleet_limit(&name).await.unwrap(), None, "reserving sets no limit");
}
