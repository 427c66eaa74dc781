//! Resume: `kill -9` in the middle of a 200 MiB multipart transfer to
//! radosgw; the next run completes it byte-identical without sending again
//! the parts recorded before the kill (counted in radosgw's request log).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ferry_core::db::Db;
use ferry_core::state::{EmbeddedStateStore, RecordKey, StateStore};
use ferry_tests::*;

const MIB: usize = 1024 * 1024;

/// Part numbers of UploadPart requests for `key` that radosgw answered 200, in log bytes `from..`.
fn uploaded_parts(log: &str, from: usize, bucket: &str, key: &str) -> Vec<u32> {
    let text = std::fs::read(log).unwrap_or_else(|e| panic!("radosgw request log {log}: {e}"));
    let text = String::from_utf8_lossy(&text[from.min(text.len())..]).into_owned();
    let needle = format!("\"PUT /{bucket}/{key}?");
    text.lines()
        .filter(|l| l.contains(&needle) && l.contains("\" 200 "))
        .filter_map(|l| {
            let q = l.split(&needle).nth(1)?;
            let n = q.split(['&', ' ']).find_map(|kv| kv.strip_prefix("partNumber="))?;
            n.parse().ok()
        })
        .collect()
}

/// A bucket, a local source with one file of `mib` MiB, and the finder arguments
/// for a 5 MiB-part transfer with `concurrency` parts in flight.
async fn setup(
    rgw: &Server,
    hint: &str,
    name: &str,
    mib: usize,
    concurrency: &str,
) -> (tempfile::TempDir, String, Vec<String>, Vec<u8>) {
    let bucket = rgw.bucket(hint).await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let body = data(mib * MIB, mib as u64);
    std::fs::write(src.join(name), &body).unwrap();
    let state = work.path().join("state.sqlite");
    let mut args = vec![
        src.display().to_string(),
        format!("s3://{bucket}/"),
        "--state".into(),
        state.display().to_string(),
    ];
    args.extend(rgw.flags("dest"));
    args.extend(
        [
            "--part-size",
            "5MiB",
            "--multipart-threshold",
            "5MiB",
            "--concurrency",
            concurrency,
            "--workers",
            "1",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    (work, bucket, args, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_mid_transfer_then_resume_sends_no_recorded_part_again() {
    let rgw = rgw();
    let log = std::env::var("FERRY_TEST_RGW_LOG").expect("FERRY_TEST_RGW_LOG: run with tests/run.sh");
    let (work, bucket, args, body) = setup(&rgw, "resume", "big.bin", 200, "2").await;
    let state = work.path().join("state.sqlite");

    let log_start = std::fs::metadata(&log).map(|m| m.len() as usize).unwrap_or(0);
    let mut child = finder(&args, &rgw.envs("dest"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while uploaded_parts(&log, log_start, &bucket, "big.bin").len() < 12 {
        assert!(t0.elapsed() < Duration::from_secs(120), "the transfer did not progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let db = Db::open(&state).unwrap();
    let rec = EmbeddedStateStore::new(db)
        .get(&RecordKey {
            bucket: bucket.clone(),
            key: "big.bin".into(),
        })
        .await
        .unwrap()
        .expect("a record of the interrupted upload");
    let recorded: BTreeSet<u32> = rec.parts.iter().map(|p| p.number).collect();
    assert!(recorded.len() >= 8, "parts recorded before the kill: {recorded:?}");
    assert!(rec.upload.is_some());
    assert_eq!(rgw.read_all(&bucket, "").await.len(), 0, "no partial object is visible");

    let second_start = std::fs::metadata(&log).unwrap().len() as usize;
    let out = run(finder(&args, &rgw.envs("dest")));
    assert!(out.status.success(), "the resumed run failed");
    let resent: Vec<u32> = uploaded_parts(&log, second_start, &bucket, "big.bin");
    let again: Vec<u32> = resent.iter().copied().filter(|n| recorded.contains(n)).collect();
    assert!(
        again.is_empty(),
        "parts recorded before the kill were sent again: {again:?}"
    );
    let total = 200 / 5;
    let all: BTreeSet<u32> = resent.iter().copied().chain(recorded.iter().copied()).collect();
    assert_eq!(all.len(), total, "every part uploaded once across both runs");
    assert!(
        resent.len() <= total - recorded.len() + 2,
        "at most the in-flight parts are repeated: {}",
        resent.len()
    );

    let got = rgw.read_all(&bucket, "").await;
    assert!(got["big.bin"] == body, "resumed object differs");
    assert_eq!(rgw.uploads(&bucket).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_cleanly_and_the_next_run_resumes() {
    let rgw = rgw();
    let log = std::env::var("FERRY_TEST_RGW_LOG").expect("FERRY_TEST_RGW_LOG: run with tests/run.sh");
    let (_work, bucket, args, body) = setup(&rgw, "sigint", "mid.bin", 60, "1").await;
    let log_start = std::fs::metadata(&log).map(|m| m.len() as usize).unwrap_or(0);
    let child = finder(&args, &rgw.envs("dest"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while uploaded_parts(&log, log_start, &bucket, "mid.bin").len() < 3 {
        assert!(t0.elapsed() < Duration::from_secs(60), "the transfer did not progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "interrupted runs exit 130: {stdout}");
    assert!(stdout.contains("run the same command again to resume"), "{stdout}");
    assert_eq!(rgw.read_all(&bucket, "").await.len(), 0, "no partial object is visible");
    let out = run(finder(&args, &rgw.envs("dest")));
    assert!(out.status.success());
    assert!(rgw.read_all(&bucket, "").await["mid.bin"] == body);
    assert_eq!(rgw.uploads(&bucket).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_created_but_never_recorded_is_aborted_by_the_next_attempt() {
    use ferry_core::state::{Claim, UploadRecord};
    let rgw = rgw();
    let bucket = rgw.bucket("unrecorded").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let files = std::collections::BTreeMap::from([("big.bin".to_string(), data(12 * 1024 * 1024 + 5, 61))]);
    write_tree(&src, &files);
    let state_path = work.path().join("s.sqlite");
    // An attempt that claimed the object, wrote its marker, created an upload
    // and died before recording the upload's id.
    let state = EmbeddedStateStore::new(Db::open(&state_path).unwrap());
    let rk = RecordKey {
        bucket: bucket.clone(),
        key: "big.bin".into(),
    };
    let dead = "elsewhere:1#1@m1";
    let claim = state
        .claim(&rk, dead, "earlier", None, Duration::from_millis(10))
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Acquired(_)));
    let marker = UploadRecord {
        upload_id: String::new(),
        part_size: 5 * 1024 * 1024,
        src_etag: None,
        src_size: files["big.bin"].len() as u64,
    };
    state.begin_upload(&rk, dead, &marker).await.unwrap();
    rgw.client()
        .create_multipart_upload()
        .bucket(&bucket)
        .key("big.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(rgw.uploads(&bucket).await, 1);
    tokio::time::sleep(Duration::from_millis(20)).await;

    let mut args = vec![
        src.display().to_string(),
        format!("s3://{bucket}/"),
        "--state".into(),
        state_path.display().to_string(),
        "--part-size".into(),
        "5MiB".into(),
        "--multipart-threshold".into(),
        "5MiB".into(),
    ];
    args.extend(rgw.flags("dest"));
    let out = run(finder(&args, &rgw.envs("dest")));
    assert!(out.status.success());
    assert_same("after the dead attempt", &files, &rgw.read_all(&bucket, "").await);
    assert_eq!(rgw.uploads(&bucket).await, 0, "the unrecorded upload is aborted");
}
