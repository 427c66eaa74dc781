//! Resume into a local folder: `kill -9` in the middle of a multipart copy
//! from radosgw writing parts at their offsets in one staging file; the next
//! run keeps every part journaled before the kill (their bytes are read back
//! and still match), fetches only the rest (GETs counted in radosgw's request
//! log), and the file is byte-identical with nothing staged left behind.
//! `--dest-no-fsync` writes the same way without syncing.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_core::db::Db;
use ferry_core::state::{EmbeddedStateStore, RecordKey, StateStore};
use ferry_tests::*;

const MIB: usize = 1024 * 1024;
const PARTS: usize = 24;

/// Lines of the staging journals under `dir` (parts written so far).
fn journaled(dir: &Path) -> usize {
    let Ok(uploads) = std::fs::read_dir(dir.join(".ferry-uploads")) else {
        return 0;
    };
    uploads
        .flatten()
        .filter_map(|u| std::fs::read_to_string(u.path().join("parts")).ok())
        .map(|t| t.lines().count())
        .sum()
}

/// Successful GETs of `key` in the request log after byte `from`.
fn gets(log: &str, from: usize, bucket: &str, key: &str) -> usize {
    let text = std::fs::read(log).unwrap_or_else(|e| panic!("radosgw request log {log}: {e}"));
    let text = String::from_utf8_lossy(&text[from.min(text.len())..]).into_owned();
    let needle = format!("\"GET /{bucket}/{key} ");
    text.lines()
        .filter(|l| l.contains(&needle) && (l.contains("\" 206 ") || l.contains("\" 200 ")))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_mid_download_then_resume_fetches_only_missing_parts() {
    let rgw = rgw();
    let log = std::env::var("FERRY_TEST_RGW_LOG").expect("FERRY_TEST_RGW_LOG: run with tests/run.sh");
    let bucket = rgw.bucket("local-resume").await;
    let body = data(PARTS * 5 * MIB - 12345, 77);
    rgw.put_one(&bucket, "big.bin", &body).await;
    let work = tempfile::tempdir().unwrap();
    let dst = work.path().join("dst");
    let state = work.path().join("state.sqlite");
    let mut args = vec![
        format!("s3://{bucket}/"),
        dst.display().to_string(),
        "--state".into(),
        state.display().to_string(),
    ];
    args.extend(rgw.flags("src"));
    for a in [
        "--part-size",
        "5MiB",
        "--multipart-threshold",
        "5MiB",
        "--concurrency",
        "2",
        "--workers",
        "1",
    ] {
        args.push(a.into());
    }

    let mut child = finder(&args, &rgw.envs("src"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while journaled(&dst) < 8 {
        assert!(t0.elapsed() < Duration::from_secs(120), "the transfer did not progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!dst.join("big.bin").exists(), "no partial file at the key");

    let rec = EmbeddedStateStore::new(Db::open(&state).unwrap())
        .get(&RecordKey {
            bucket: dst.display().to_string(),
            key: "big.bin".into(),
        })
        .await
        .unwrap()
        .expect("a record of the interrupted copy");
    let recorded = rec.parts.len();
    assert!(recorded >= 6, "parts recorded before the kill: {recorded}");

    let from = std::fs::metadata(&log).unwrap().len() as usize;
    let mut envs = rgw.envs("src");
    envs.push(("RUST_LOG".into(), "info".into()));
    let out = run(finder(&args, &envs));
    assert!(out.status.success(), "the resumed run failed");
    let text = without_colours(&format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ));
    assert!(
        text.contains(&format!("resumed_parts={recorded}")),
        "every recorded part is kept on resume ({recorded}): {text}"
    );
    let fetched = gets(&log, from, &bucket, "big.bin");
    assert!(
        fetched <= PARTS - recorded + 2,
        "{fetched} GETs after resuming with {recorded} of {PARTS} parts done"
    );
    assert!(
        std::fs::read(dst.join("big.bin")).unwrap() == body,
        "resumed file differs"
    );
    assert!(!dst.join(".ferry-uploads").exists(), "nothing staged is left behind");
}

/// `--dest-no-fsync` copies a tree (a multipart object included) from
/// radosgw byte for byte, and is refused, naming the flag, for a bucket.
#[tokio::test(flavor = "multi_thread")]
async fn no_fsync_copies_into_a_folder_and_is_refused_for_a_bucket() {
    let rgw = rgw();
    let bucket = rgw.bucket("no-fsync").await;
    let files: std::collections::BTreeMap<String, Vec<u8>> = [
        ("small.txt".to_string(), data(1000, 1)),
        ("dir/big.bin".to_string(), data(12 * MIB + 7, 2)),
    ]
    .into_iter()
    .collect();
    rgw.put_all(&bucket, &files).await;
    let work = tempfile::tempdir().unwrap();
    let dst = work.path().join("dst");
    let mut args = vec![
        format!("s3://{bucket}/"),
        dst.display().to_string(),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
        "--dest-no-fsync".into(),
        "--part-size".into(),
        "5MiB".into(),
        "--multipart-threshold".into(),
        "5MiB".into(),
    ];
    args.extend(rgw.flags("src"));
    let out = run(finder(&args, &rgw.envs("src")));
    assert!(out.status.success(), "the copy succeeds");
    assert_same("copied without fsync", &files, &read_tree(&dst));
    assert!(!dst.join(".ferry-uploads").exists(), "nothing staged is left behind");

    let src = work.path().join("src");
    write_tree(&src, &files);
    let mut to_bucket = vec![
        src.display().to_string(),
        format!("s3://{bucket}/again/"),
        "--dest-no-fsync".into(),
    ];
    to_bucket.extend(rgw.flags("dest"));
    let out = run(finder(&to_bucket, &rgw.envs("dest")));
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "refused for a bucket");
    assert!(text.contains("--dest-no-fsync"), "the error names the flag: {text}");
    assert!(rgw.read_all(&bucket, "again/").await.is_empty(), "nothing was written");
}
