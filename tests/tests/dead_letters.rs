//! Jobs that end without their object: given up after their own failures
//! (dead-lettered, named by `status`, their uploads aborted, sent back by
//! `ferry-finder redrive`), archived sources (`restore_needed`), and records
//! stranded with nothing left in the queue to end them. `status` counts each
//! object once from the ledger and a run with nothing left but these ends
//! with exit code 1.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use ferry_core::state::{RecordKey, StateStore, Status};
use ferry_tests::fleet::{count, Fleet, S3Job};
use ferry_tests::proxy::{FaultKind, Faults, Proxy};
use ferry_tests::*;

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn jobs_failing_by_themselves_are_given_up_named_aborted_and_redriven() {
    let rgw = rgw();
    let src_bucket = rgw.bucket("dl-src").await;
    let dst_bucket = rgw.bucket("dl-dst").await;
    let mut objects: BTreeMap<String, Vec<u8>> = (0..12)
        .map(|i| (format!("ok/{i:02}.txt"), data(3000 + i * 11, i as u64)))
        .collect();
    objects.insert("denied/small.txt".into(), data(5000, 99));
    objects.insert("denied/big.bin".into(), data(12 * MIB + 3, 98));
    rgw.put_all(&src_bucket, &objects).await;
    // The destination refuses every write under denied/ (a permission fixed later).
    let dst = Proxy::start_faulty(
        &rgw.endpoint,
        Faults {
            ops: vec!["PutObject", "UploadPart"],
            every: 1,
            kinds: vec![FaultKind::Status(403, "AccessDenied")],
            path_contains: Some("denied/"),
            ..Default::default()
        },
    )
    .await;
    let job = S3Job::new(
        &src_bucket,
        &rgw.endpoint,
        &dst_bucket,
        &dst.endpoint,
        &["--multipart-threshold", "5MiB", "--part-size", "5MiB", "--retries", "1"],
    );
    let fleet = Fleet::new("deadl", true, 10).await;
    let mut envs = rgw.envs("src");
    envs.extend(rgw.envs("dest"));
    let out = run(fleet.finder(&job.args, &envs));
    assert!(out.status.success(), "{}", output_text(&out));
    let mut wargs = job.worker_args();
    wargs.extend(["--max-attempts", "2", "--workers", "4"].map(String::from));
    let worker = fleet.worker(&wargs, &envs);

    let done = fleet.status(None, "120s").output().unwrap();
    let shown = output_text(&done);
    assert_eq!(
        done.status.code(),
        Some(1),
        "nothing left but dead letters ends the run: {shown}"
    );
    assert!(shown.contains("Status: complete"), "{shown}");
    assert_eq!(count(&shown, "failed"), 2, "{shown}");
    assert_eq!(count(&shown, "done"), 12, "{shown}");
    for key in ["denied/small.txt", "denied/big.bin"] {
        let line = shown
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("{key} named: {shown}"));
        assert!(line.contains("given up after 2 failed attempts"), "{line}");
    }
    assert!(
        shown
            .lines()
            .any(|l| l.contains("denied/small.txt") && l.contains("AccessDenied")),
        "the last error is named: {shown}"
    );
    assert!(
        shown.contains("2 dead"),
        "the queue line counts the dead letters: {shown}"
    );
    assert_eq!(
        rgw.uploads(&dst_bucket).await,
        0,
        "the upload of the job given up is aborted"
    );
    let rec = fleet
        .state()
        .get(&RecordKey {
            bucket: dst_bucket.clone(),
            key: "denied/big.bin".into(),
        })
        .await
        .unwrap()
        .expect("a record");
    assert_eq!(rec.status, Status::Failed);
    assert!(rec.upload.is_none());

    // The cause is fixed: the dead letters go back and arrive.
    dst.stop_faults();
    let mut redrive = Command::new(bin("ferry-finder"));
    redrive.arg("redrive").args(fleet.flags());
    isolate(&mut redrive);
    for (k, v) in fleet.envs() {
        redrive.env(k, v);
    }
    let out = run(redrive);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("2 dead-lettered job(s) sent back"),
        "{}",
        output_text(&out)
    );
    let done = fleet.status(None, "120s").output().unwrap();
    let shown = output_text(&done);
    let (_, log) = ferry_tests::fleet::stop(worker);
    assert_eq!(done.status.code(), Some(0), "{shown}\n{log}");
    assert_eq!(count(&shown, "done"), 14, "each object counted once: {shown}");
    assert_eq!(count(&shown, "failed"), 0, "{shown}");
    assert_same("after the redrive", &objects, &rgw.read_all(&dst_bucket, "").await);
    assert_eq!(rgw.uploads(&dst_bucket).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archived_source_ends_as_restore_needed_without_retries() {
    let rgw = rgw();
    let src_bucket = rgw.bucket("glacier").await;
    let objects: BTreeMap<String, Vec<u8>> = [
        ("live/a.txt".to_string(), data(2000, 1)),
        ("archived/old.txt".to_string(), data(3000, 2)),
    ]
    .into();
    rgw.put_all(&src_bucket, &objects).await;
    // S3 answers a GET of a Glacier or Deep Archive object 403 InvalidObjectState.
    let src = Proxy::start_faulty(
        &rgw.endpoint,
        Faults {
            ops: vec!["GetObject"],
            every: 1,
            kinds: vec![FaultKind::Status(403, "InvalidObjectState")],
            path_contains: Some("archived/"),
            ..Default::default()
        },
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dst");
    let state = work.path().join("state.sqlite").display().to_string();
    let mut args = vec![
        format!("s3://{src_bucket}/"),
        dest.display().to_string(),
        "--state".into(),
        state.clone(),
        "--src-endpoint".into(),
        src.endpoint.clone(),
        "--src-path-style".into(),
    ];
    args.extend(["--max-attempts", "4"].map(String::from));
    let out = run(finder(&args, &rgw.envs("src")));
    let shown = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("archived/old.txt"), "the key is named: {shown}");
    assert!(
        !shown.to_lowercase().contains("access denied"),
        "not a permission problem: {shown}"
    );
    assert_eq!(src.faults().len(), 1, "an archived source is not retried");
    assert_eq!(std::fs::read(dest.join("live/a.txt")).unwrap(), objects["live/a.txt"]);
    assert!(!dest.join("archived/old.txt").exists());

    let mut status = Command::new(bin("ferry-finder"));
    status.args(["status", "--state", &state]);
    isolate(&mut status);
    let out = run(status);
    let shown = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert_eq!(count(&shown, "restore needed"), 1, "{shown}");
    assert_eq!(count(&shown, "failed"), 0, "{shown}");
    assert!(
        shown.contains("Archived at the source") && shown.contains("archived/old.txt"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_stranded_with_nothing_queued_fails_the_run_by_name() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    write_tree(&src, &BTreeMap::from([("a.txt".to_string(), data(100, 1))]));
    let state = work.path().join("state.sqlite");
    let args = [
        src.display().to_string(),
        dst.display().to_string(),
        "--state".into(),
        state.display().to_string(),
    ];
    let out = run(finder(&args, &[]));
    assert!(out.status.success(), "{}", output_text(&out));
    // A worker claimed an object of the run and vanished with its message.
    let store = ferry_core::state::EmbeddedStateStore::new(ferry_core::db::Db::open(&state).unwrap());
    let run_id = store.latest_run().await.unwrap().unwrap();
    let rk = RecordKey {
        bucket: dst.display().to_string(),
        key: "lost.txt".into(),
    };
    store
        .claim(&rk, "gone:1#1@m", &run_id, Some("\"e\""), Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut status = Command::new(bin("ferry-finder"));
    status.args([
        "status",
        "--wait",
        "--timeout",
        "30s",
        "--state",
        &state.display().to_string(),
    ]);
    isolate(&mut status);
    let out = run(status);
    let shown = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("Status: complete"), "{shown}");
    assert_eq!(count(&shown, "stranded"), 1, "{shown}");
    assert!(shown.contains("Stranded") && shown.contains("lost.txt"), "{shown}");
}
