//! Versioned sync end to end (`--versions all`): a radosgw bucket's history
//! (several versions of a key, multipart ones among them, and a delete
//! marker) replayed to a versioned moto bucket; the two ListObjectVersions
//! histories compared in order and bytes by the raw client; a rerun copies
//! nothing, and a version added later is the only one copied next.
//! `--versions-at` starts the history at the version current then; a
//! version written but not recorded by a killed run is adopted; an
//! unversioned destination is refused. Without `--versions all`, a copy in
//! parts of a versioned source reads the version listed, every part by its
//! version id, though the key is overwritten mid-copy.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use aws_sdk_s3::Client;
use ferry_tests::*;

const MIB: usize = 1024 * 1024;

/// One key's history as the raw client reads it: each version's bytes
/// (`None` for a delete marker), oldest first.
type History = BTreeMap<String, Vec<Option<Vec<u8>>>>;

async fn versioned(server: &Server, hint: &str) -> String {
    let bucket = server.bucket(hint).await;
    server
        .client()
        .put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning");
    bucket
}

/// Every key's history. Versions and markers come in two lists, each
/// newest first; they are merged by time, the latest first among equals.
async fn history(c: &Client, bucket: &str) -> History {
    let out = c
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .expect("list versions");
    assert!(
        !out.is_truncated().unwrap_or(false),
        "one page holds the test's history"
    );
    let mut all: Vec<(String, i64, bool, Option<String>)> = Vec::new();
    for v in out.versions() {
        let t = v.last_modified().unwrap().to_millis().unwrap();
        all.push((
            v.key().unwrap().into(),
            t,
            v.is_latest().unwrap_or(false),
            v.version_id().map(Into::into),
        ));
    }
    for m in out.delete_markers() {
        let t = m.last_modified().unwrap().to_millis().unwrap();
        all.push((m.key().unwrap().into(), t, m.is_latest().unwrap_or(false), None));
    }
    // Stable: each list keeps its own (true) order among equal times.
    all.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
    let mut h = History::new();
    for (key, _, _, version) in all.into_iter().rev() {
        let body = match version {
            Some(id) => {
                let o = c
                    .get_object()
                    .bucket(bucket)
                    .key(&key)
                    .version_id(id)
                    .send()
                    .await
                    .expect("get version");
                Some(o.body.collect().await.unwrap().into_bytes().to_vec())
            }
            None => None,
        };
        h.entry(key).or_default().push(body);
    }
    h
}

fn versions_replayed(stdout: &str) -> u64 {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with("versions:"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.parse().ok()))
        .unwrap_or(0)
}

/// A finder from radosgw bucket `src` to moto bucket `dst`, reached at
/// `dest_endpoint` (moto's, or a proxy's), with `extra` flags: its
/// arguments and environment.
fn sync(
    src: &str,
    dst: &str,
    dest_endpoint: &str,
    work: &std::path::Path,
    extra: &[&str],
) -> (Vec<String>, Vec<(String, String)>) {
    let (rgw, moto) = (rgw(), moto());
    let mut args = vec![
        format!("s3://{src}/"),
        format!("s3://{dst}/"),
        "--state".into(),
        work.join("s.sqlite").display().to_string(),
        "--dest-endpoint".into(),
        dest_endpoint.to_string(),
        "--dest-path-style".into(),
    ];
    args.extend(rgw.flags("src"));
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    (args, envs)
}

async fn put(server: &Server, bucket: &str, key: &str, body: &[u8]) {
    server
        .put_all(bucket, &BTreeMap::from([(key.to_string(), body.to_vec())]))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_history_is_replayed_in_order_and_reruns_copy_only_new_versions() {
    let (rgw, moto) = (rgw(), moto());
    let (src, dst) = (versioned(&rgw, "ver-src").await, versioned(&moto, "ver-dst").await);
    put(&rgw, &src, "doc.txt", &data(1000, 1)).await;
    put(&rgw, &src, "doc.txt", &data(2000, 2)).await;
    put(&rgw, &src, "doc.txt", &data(7 * MIB + 3, 3)).await;
    put(&rgw, &src, "gone.txt", &data(500, 4)).await;
    rgw.client()
        .delete_object()
        .bucket(&src)
        .key("gone.txt")
        .send()
        .await
        .unwrap();
    put(&rgw, &src, "dir/one.bin", &data(6 * MIB, 5)).await;
    put(&rgw, &src, "doc.txt", &data(3000, 6)).await;

    let work = tempfile::tempdir().unwrap();
    let parts = [
        "--versions",
        "all",
        "--multipart-threshold",
        "5MiB",
        "--part-size",
        "5MiB",
    ];
    let (args, envs) = sync(&src, &dst, &moto.endpoint, work.path(), &parts);

    let out = run(finder(&args, &envs));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let source = history(&rgw.client(), &src).await;
    assert_eq!(source["doc.txt"].len(), 4, "the source has four versions of doc.txt");
    assert_eq!(
        source["gone.txt"].last(),
        Some(&None),
        "and a delete marker on gone.txt"
    );
    assert_eq!(
        history(&moto.client(), &dst).await,
        source,
        "histories match in order and bytes"
    );
    assert_eq!(versions_replayed(&text), 7, "four + two + one versions: {text}");

    let out = run(finder(&args, &envs));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(versions_replayed(&text), 0, "a rerun copies nothing: {text}");
    assert!(text.contains("Nothing to transfer"), "{text}");
    assert_eq!(history(&moto.client(), &dst).await, source, "and adds no version");

    put(&rgw, &src, "doc.txt", &data(4000, 7)).await;
    let out = run(finder(&args, &envs));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(versions_replayed(&text), 1, "only the new version: {text}");
    let source = history(&rgw.client(), &src).await;
    assert_eq!(source["doc.txt"].len(), 5);
    assert_eq!(history(&moto.client(), &dst).await, source, "histories match again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_history_from_a_point_in_time_starts_at_the_version_current_then() {
    let (rgw, moto) = (rgw(), moto());
    let (src, dst) = (versioned(&rgw, "verat-src").await, versioned(&moto, "verat-dst").await);
    put(&rgw, &src, "k", &data(100, 11)).await;
    put(&rgw, &src, "k", &data(200, 12)).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    put(&rgw, &src, "k", &data(300, 13)).await;

    let work = tempfile::tempdir().unwrap();
    let (args, envs) = sync(&src, &dst, &moto.endpoint, work.path(), &["--versions-at", &at]);
    let out = run(finder(&args, &envs));
    assert!(out.status.success(), "{}", output_text(&out));
    let copied = history(&moto.client(), &dst).await;
    assert_eq!(
        copied["k"],
        vec![Some(data(200, 12)), Some(data(300, 13))],
        "the version current at the time, then the later one"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_without_versioning_is_refused_before_anything_is_written() {
    let (rgw, moto) = (rgw(), moto());
    let (src, dst) = (versioned(&rgw, "vernv-src").await, moto.bucket("vernv-dst").await);
    put(&rgw, &src, "k", &data(100, 21)).await;
    let work = tempfile::tempdir().unwrap();
    let (args, envs) = sync(&src, &dst, &moto.endpoint, work.path(), &["--versions", "all"]);
    let out = run(finder(&args, &envs));
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("does not keep versions") && text.contains("enable versioning"),
        "{text}"
    );
    assert!(moto.read_all(&dst, "").await.is_empty(), "nothing written");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_written_but_not_recorded_by_a_killed_run_is_adopted_not_written_twice() {
    let (rgw, moto) = (rgw(), moto());
    let (src, dst) = (
        versioned(&rgw, "verkill-src").await,
        versioned(&moto, "verkill-dst").await,
    );
    for (i, len) in [1000, 2000, 3000].into_iter().enumerate() {
        put(&rgw, &src, "k", &data(len, 30 + i as u64)).await;
    }
    // The destination's version listing, which follows each write before
    // it is recorded, is held long enough to kill the run in between.
    let slow = ferry_tests::proxy::Proxy::start_slow(
        &moto.endpoint,
        ferry_tests::proxy::Delay {
            ops: vec!["ListObjectVersions"],
            by: std::time::Duration::from_secs(5),
        },
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let all = ["--versions", "all"];
    let (args, envs) = sync(&src, &dst, &slow.endpoint, work.path(), &all);
    let mut child = finder(&args, &envs).spawn().expect("start the finder");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let seen = slow.seen();
        let put = seen.iter().any(|s| s.operation() == "PutObject");
        let listings = seen.iter().filter(|s| s.operation() == "ListObjectVersions").count();
        // The first listing looks for an unrecorded write; the second follows the first PUT.
        if put && listings >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the run did not write: {seen:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    let written = history(&moto.client(), &dst).await;
    assert_eq!(written["k"].len(), 1, "one version written, its record not");

    let (args, envs) = sync(&src, &dst, &moto.endpoint, work.path(), &all);
    let out = run(finder(&args, &envs));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        versions_replayed(&text),
        2,
        "the adopted version is not written again: {text}"
    );
    assert_eq!(
        history(&moto.client(), &dst).await,
        history(&rgw.client(), &src).await,
        "no version twice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_versions_all_a_copy_in_parts_is_pinned_to_the_version_listed() {
    let rgw = rgw();
    let src = versioned(&rgw, "verpin-src").await;
    let (v1, v2) = (data(12 * MIB + 7, 41), data(12 * MIB + 9, 42));
    put(&rgw, &src, "big.bin", &v1).await;
    // Every read waits, so the object can be overwritten mid-copy.
    let slow = ferry_tests::proxy::Proxy::start_slow(
        &rgw.endpoint,
        ferry_tests::proxy::Delay {
            ops: vec!["GetObject"],
            by: std::time::Duration::from_millis(1500),
        },
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let dst = work.path().join("dst");
    let args = vec![
        format!("s3://{src}/"),
        dst.display().to_string(),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
        "--src-endpoint".into(),
        slow.endpoint.clone(),
        "--src-path-style".into(),
        "--multipart-threshold".into(),
        "5MiB".into(),
        "--part-size".into(),
        "5MiB".into(),
        "--concurrency".into(),
        "1".into(),
    ];
    let child = finder(&args, &rgw.envs("src")).spawn().expect("start the finder");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !slow.seen().iter().any(|s| s.operation() == "GetObject") {
        assert!(std::time::Instant::now() < deadline, "no read");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    put(&rgw, &src, "big.bin", &v2).await;
    let out = child.wait_with_output().expect("the finder ends");
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same(
        "the version listed, though overwritten during the copy",
        &BTreeMap::from([("big.bin".to_string(), v1)]),
        &read_tree(&dst),
    );
    let gets: Vec<_> = slow
        .seen()
        .into_iter()
        .filter(|s| s.operation() == "GetObject")
        .collect();
    assert_eq!(gets.len(), 3, "three parts, each read once: {gets:?}");
    assert!(
        gets.iter().all(|g| g.query.contains("versionId=")),
        "every read names the version: {gets:?}"
    );

    let out = run(finder(&args, &rgw.envs("src")));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same(
        "the next run copies the new version",
        &BTreeMap::from([("big.bin".to_string(), v2)]),
        &read_tree(&dst),
    );
}
