//! Server-side copy between two buckets of one radosgw, every request
//! counted at a proxy in front of it: no object byte passes through the
//! finder's workers (no GetObject, PutObject or UploadPart; the bytes
//! relayed either way are a small fraction of one object), metadata is
//! kept, a multipart source keeps its ETag, and the copy is byte-identical
//! when read back by the raw client. Also: `kill -9` in the middle of a
//! copy in parts and the resumed run copying only the missing parts; a
//! store that refuses copies (501 NotImplemented at the proxy) streams
//! instead under `auto` and fails clearly under `always`; `never` streams.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry_core::db::Db;
use ferry_core::state::{EmbeddedStateStore, RecordKey, StateStore};
use ferry_tests::fleet::count;
use ferry_tests::proxy::{Delay, FaultKind, Faults, Proxy};
use ferry_tests::*;

const MIB: usize = 1024 * 1024;

/// The finder's arguments for a copy from `src` to `dst` through `endpoint`.
fn args(src: &str, dst: &str, endpoint: &str, state: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        format!("s3://{src}/"),
        format!("s3://{dst}/"),
        "--state".into(),
        state.display().to_string(),
    ];
    for side in ["src", "dest"] {
        a.extend([
            format!("--{side}-endpoint"),
            endpoint.to_string(),
            format!("--{side}-path-style"),
        ]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn envs(rgw: &Server) -> Vec<(String, String)> {
    let mut e = rgw.envs("src");
    e.extend(rgw.envs("dest"));
    e.push(("RUST_LOG".into(), "info".into()));
    e
}

/// Source objects: a 210 MiB object uploaded in 7 MiB parts, a 20 MiB one
/// in one part, and a small one with metadata.
async fn seed(rgw: &Server, bucket: &str) -> (BTreeMap<String, Vec<u8>>, String) {
    let big = data(210 * MIB + 4321, 91);
    let big_etag = rgw.put_multipart(bucket, "dir/big.bin", &big, &[7 * MIB]).await;
    let mut files = BTreeMap::from([
        ("dir/big.bin".to_string(), big),
        ("medium.bin".to_string(), data(20 * MIB + 1, 92)),
    ]);
    rgw.put_all(
        bucket,
        &BTreeMap::from([("medium.bin".to_string(), files["medium.bin"].clone())]),
    )
    .await;
    let small = b"hello, server-side".to_vec();
    rgw.client()
        .put_object()
        .bucket(bucket)
        .key("a b+c.txt")
        .content_type("text/x-ferry")
        .metadata("origin", "lab")
        .body(small.clone().into())
        .send()
        .await
        .expect("put the small object");
    files.insert("a b+c.txt".into(), small);
    (files, big_etag)
}

#[tokio::test(flavor = "multi_thread")]
async fn same_endpoint_copies_move_no_object_bytes_and_keep_etags_and_metadata() {
    let rgw = rgw();
    let (src, dst) = (rgw.bucket("ss-src").await, rgw.bucket("ss-dst").await);
    let (files, big_etag) = seed(&rgw, &src).await;
    let proxy = Proxy::start(&rgw.endpoint).await;
    let work = tempfile::tempdir().unwrap();
    let a = args(&src, &dst, &proxy.endpoint, &work.path().join("s.sqlite"), &[]);
    let out = run(finder(&a, &envs(&rgw)));
    assert!(out.status.success(), "the copy succeeds: {}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(count(&stdout, "server-side"), 3, "the summary says so: {stdout}");

    let ops = proxy.by_operation();
    for op in ["GetObject", "PutObject", "UploadPart"] {
        assert_eq!(ops.get(op), None, "no {op} for a server-side copy: {ops:?}");
    }
    assert_eq!(ops.get("CopyObject"), Some(&2), "two objects in one copy each: {ops:?}");
    // radosgw does not tell a part's size (HEAD ?partNumber=), so the layout
    // is planned: 16 MiB parts.
    assert_eq!(ops.get("UploadPartCopy"), Some(&14), "the big one in 14 parts: {ops:?}");
    let relayed = proxy.bytes_up() + proxy.bytes_down();
    assert!(
        relayed < 2 * MIB as u64,
        "{relayed} bytes passed through the proxy for {} bytes copied",
        files.values().map(Vec::len).sum::<usize>()
    );

    assert_same("copied server-side", &files, &rgw.read_all(&dst, "").await);
    let c = rgw.client();
    let head = c.head_object().bucket(&dst).key("dir/big.bin").send().await.unwrap();
    let tag = head.e_tag().unwrap_or_default();
    assert!(tag.ends_with("-14\""), "a copy in 14 parts: {tag} (source {big_etag})");
    let head = c.head_object().bucket(&dst).key("a b+c.txt").send().await.unwrap();
    assert_eq!(head.content_type(), Some("text/x-ferry"));
    assert_eq!(
        head.metadata().and_then(|m| m.get("origin")).map(String::as_str),
        Some("lab")
    );

    proxy.reset();
    let out = run(finder(&a, &envs(&rgw)));
    assert!(out.status.success(), "the rerun succeeds: {}", output_text(&out));
    let copies = proxy.count("CopyObject") + proxy.count("UploadPartCopy");
    assert_eq!(copies, 0, "a rerun copies nothing: {:?}", proxy.by_operation());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_mid_copy_then_resume_copies_only_missing_parts() {
    let rgw = rgw();
    let (src, dst) = (rgw.bucket("ss-kill-src").await, rgw.bucket("ss-kill-dst").await);
    let body = data(200 * MIB + 77, 93);
    let etag = rgw.put_multipart(&src, "big.bin", &body, &[5 * MIB]).await;
    let parts = (200 * MIB + 77).div_ceil(5 * MIB);
    let slow = Proxy::start_slow(
        &rgw.endpoint,
        Delay {
            ops: vec!["UploadPartCopy"],
            by: Duration::from_millis(300),
        },
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("s.sqlite");
    let extra = ["--concurrency", "2", "--workers", "1", "--part-size", "5MiB"];
    let mut child = finder(&args(&src, &dst, &slow.endpoint, &state, &extra), &envs(&rgw))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while slow.count("UploadPartCopy") < 10 {
        assert!(t0.elapsed() < Duration::from_secs(120), "the copy did not progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let c = rgw.client();
    assert!(
        c.head_object().bucket(&dst).key("big.bin").send().await.is_err(),
        "nothing visible at the key"
    );
    let rec = EmbeddedStateStore::new(Db::open(&state).unwrap())
        .get(&RecordKey {
            bucket: dst.clone(),
            key: "big.bin".into(),
        })
        .await
        .unwrap()
        .expect("a record of the interrupted copy");
    let recorded = rec.parts.len();
    assert!(recorded >= 5, "parts recorded before the kill: {recorded}");

    let proxy = Proxy::start(&rgw.endpoint).await;
    let out = run(finder(&args(&src, &dst, &proxy.endpoint, &state, &extra), &envs(&rgw)));
    let text = output_text(&out);
    assert!(out.status.success(), "the resumed run succeeds: {text}");
    assert!(
        text.contains(&format!("resumed_parts={recorded}")),
        "every recorded part ({recorded}) is kept: {text}"
    );
    assert_eq!(
        proxy.count("UploadPartCopy"),
        parts - recorded,
        "only the missing parts are copied: {:?}",
        proxy.by_operation()
    );
    assert_eq!(proxy.count("GetObject"), 0, "no byte is read");
    let head = c.head_object().bucket(&dst).key("big.bin").send().await.unwrap();
    let tag = head.e_tag().unwrap_or_default();
    assert!(
        tag.ends_with(&format!("-{parts}\"")),
        "{tag}: the copy in {parts} parts (source {etag})"
    );
    assert!(rgw.read_all(&dst, "").await["big.bin"] == body, "the copy differs");
    assert_eq!(rgw.uploads(&dst).await, 0, "no upload is left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_refuses_copies_is_streamed_under_auto_and_fails_under_always() {
    let rgw = rgw();
    let (src, dst) = (rgw.bucket("ss-no-src").await, rgw.bucket("ss-no-dst").await);
    let files = BTreeMap::from([
        ("one.bin".to_string(), data(3 * MIB, 94)),
        ("two.bin".to_string(), data(12 * MIB + 3, 95)),
    ]);
    rgw.put_all(&src, &files).await;
    let refusing = Faults {
        ops: vec!["CopyObject", "UploadPartCopy"],
        every: 1,
        kinds: vec![FaultKind::Status(501, "NotImplemented")],
        ..Default::default()
    };
    let work = tempfile::tempdir().unwrap();

    let proxy = Proxy::start_faulty(&rgw.endpoint, refusing.clone()).await;
    let extra = [
        "--server-side",
        "always",
        "--max-attempts",
        "1",
        "--multipart-threshold",
        "5MiB",
    ];
    let out = run(finder(
        &args(&src, &dst, &proxy.endpoint, &work.path().join("a.sqlite"), &extra),
        &envs(&rgw),
    ));
    let text = output_text(&out);
    assert!(!out.status.success(), "always: a refusal is an error: {text}");
    assert!(
        text.contains("NotImplemented"),
        "the error says what the store answered: {text}"
    );
    assert!(rgw.read_all(&dst, "").await.is_empty(), "nothing was written");
    assert_eq!(proxy.count("GetObject"), 0, "always never streams");

    let proxy = Proxy::start_faulty(&rgw.endpoint, refusing).await;
    let extra = ["--multipart-threshold", "5MiB", "--part-size", "5MiB"];
    let out = run(finder(
        &args(&src, &dst, &proxy.endpoint, &work.path().join("b.sqlite"), &extra),
        &envs(&rgw),
    ));
    let text = output_text(&out);
    assert!(out.status.success(), "auto falls back to streaming: {text}");
    assert!(
        text.contains("refused a server-side copy"),
        "a log line says why: {text}"
    );
    assert!(
        proxy.count("GetObject") >= 2,
        "the bytes were streamed: {:?}",
        proxy.by_operation()
    );
    assert_same("streamed after the refusal", &files, &rgw.read_all(&dst, "").await);
    assert_eq!(rgw.uploads(&dst).await, 0, "no upload is left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn never_streams_and_always_needs_two_buckets() {
    let rgw = rgw();
    let (src, dst) = (rgw.bucket("ss-never-src").await, rgw.bucket("ss-never-dst").await);
    let files = BTreeMap::from([("k.bin".to_string(), data(MIB, 96))]);
    rgw.put_all(&src, &files).await;
    let proxy = Proxy::start(&rgw.endpoint).await;
    let work = tempfile::tempdir().unwrap();
    let a = args(
        &src,
        &dst,
        &proxy.endpoint,
        &work.path().join("s.sqlite"),
        &["--server-side", "never"],
    );
    let out = run(finder(&a, &envs(&rgw)));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(proxy.count("CopyObject"), 0);
    assert_eq!(proxy.count("GetObject"), 1);
    assert_same("streamed", &files, &rgw.read_all(&dst, "").await);

    let mut a = vec![
        format!("s3://{src}/"),
        work.path().join("local").display().to_string(),
        "--server-side".into(),
        "always".into(),
    ];
    a.extend(rgw.flags("src"));
    let out = run(finder(&a, &rgw.envs("src")));
    let text = output_text(&out);
    assert!(!out.status.success(), "always with a local side is refused");
    assert!(text.contains("--server-side"), "the error names the flag: {text}");
    assert!(
        !text.contains("ConfigError"),
        "one readable line, no Debug dump: {text}"
    );
}
