//! Resume into a local folder: `kill -9` in the middle of a multipart copy
//! from radosgw writing parts at their offsets in one staging file; the next
//! run keeps every part journaled before the kill (their bytes are read back
//! and still match), fetches only the rest (GETs counted in radosgw's request
//! log), and the file is byte-identical with nothing staged left behind.

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

/// The text without its terminal colour sequences (`ESC [ … m`).
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            out.push(c);
        }
    }
    out
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
