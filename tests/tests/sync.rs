//! End to end: the binaries as processes against radosgw and moto, bytes
//! compared with an independent client.

use std::collections::BTreeMap;

use ferry_tests::*;

const MIB: usize = 1024 * 1024;

/// Keys that must round-trip exactly, valid as local paths too. One key is
/// 1,024 bytes long once the `prefix_len`-byte destination prefix is added.
fn tricky_files(prefix_len: usize) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    let keys = [
        "a-b",
        "a/b",
        "a0",
        "space name.txt",
        "plus+sign",
        "percent%20encoded%2F",
        "quote\"s and 'single'",
        "back\\slash",
        "ünïcödé/日本語/😀.bin",
        "empty-file",
    ];
    for (i, k) in keys.iter().enumerate() {
        let len = if *k == "empty-file" { 0 } else { 1000 + i * 37 };
        m.insert(k.to_string(), data(len, i as u64));
    }
    // A 1,024-byte key made of path segments (each under the 255-byte file-name limit).
    let seg = "s".repeat(200);
    let long = format!("{seg}/{seg}/{seg}/{seg}/{}", "t".repeat(1024 - prefix_len - 4 * 201));
    assert_eq!(long.len() + prefix_len, 1024);
    m.insert(long, data(10, 99));
    // Sizes around the 5 MiB threshold and part boundaries (part size 5 MiB).
    m.insert("sizes/at-threshold".into(), data(5 * MIB, 1));
    m.insert("sizes/threshold-plus-1".into(), data(5 * MIB + 1, 2));
    m.insert("sizes/two-parts-exactly".into(), data(10 * MIB, 3));
    m.insert("sizes/three-parts".into(), data(12 * MIB + 5, 4));
    m
}

fn small_parts() -> Vec<String> {
    ["--multipart-threshold", "5MiB", "--part-size", "5MiB", "--workers", "4"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn local_to_s3_then_s3_to_local_round_trips_every_key() {
    let rgw = rgw();
    let bucket = rgw.bucket("l2s").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let files = tricky_files("backup/".len());
    write_tree(&src, &files);
    let state = work.path().join("state.sqlite");

    let mut args = vec![src.display().to_string(), format!("s3://{bucket}/backup/")];
    args.extend(rgw.flags("dest"));
    args.extend(small_parts());
    args.extend(["--state".into(), state.display().to_string()]);
    let out = run(finder(&args, &rgw.envs("dest")));
    assert!(out.status.success(), "first sync failed");
    let got = rgw.read_all(&bucket, "backup/").await;
    let expect: BTreeMap<String, Vec<u8>> = files.iter().map(|(k, v)| (format!("backup/{k}"), v.clone())).collect();
    assert_same("local -> radosgw", &expect, &got);
    assert_eq!(rgw.uploads(&bucket).await, 0, "no unfinished uploads left");

    // Ordering: the listing the destination returns is in byte order with a-b < a/b < a0.
    let listed: Vec<String> = got.keys().cloned().collect();
    let pos = |k: &str| listed.iter().position(|x| x == &format!("backup/{k}")).unwrap();
    assert!(pos("a-b") < pos("a/b") && pos("a/b") < pos("a0"));

    let again = run(finder(&args, &rgw.envs("dest")));
    assert!(again.status.success());
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("Nothing to transfer"),
        "a second run transfers nothing: {stdout}"
    );

    // And back to a new local directory.
    let back = work.path().join("back");
    let mut args = vec![format!("s3://{bucket}/backup/"), back.display().to_string()];
    args.extend(rgw.flags("src"));
    args.extend(small_parts());
    args.extend([
        "--state".into(),
        work.path().join("state2.sqlite").display().to_string(),
    ]);
    let out = run(finder(&args, &rgw.envs("src")));
    assert!(out.status.success(), "radosgw -> local failed");
    assert_same("radosgw -> local", &files, &read_tree(&back));
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_to_s3_between_radosgw_and_moto_both_ways() {
    let (rgw, moto) = (rgw(), moto());
    let src_bucket = rgw.bucket("s2s-src").await;
    let mid_bucket = moto.bucket("s2s-mid").await;
    let back_bucket = rgw.bucket("s2s-back").await;
    let mut objects: BTreeMap<String, Vec<u8>> = tricky_files("p/".len())
        .into_iter()
        .map(|(k, v)| (format!("p/{k}"), v))
        .collect();
    // S3 keys that are not valid file names.
    objects.insert(format!("p/{}", "k".repeat(1022)), data(7, 7));
    objects.insert("p//double//slash".into(), data(8, 8));
    objects.insert("p/dir-marker/".into(), Vec::new());
    objects.insert("p/mixed/../dots".into(), data(9, 9));
    rgw.put_all(&src_bucket, &objects).await;
    let work = tempfile::tempdir().unwrap();

    let hop = |from: &Server, fb: &str, to: &Server, tb: &str, state: &str| {
        let mut args = vec![format!("s3://{fb}/p/"), format!("s3://{tb}/p/")];
        args.extend(from.flags("src"));
        args.extend(to.flags("dest"));
        args.extend(small_parts());
        args.extend(["--state".into(), work.path().join(state).display().to_string()]);
        let mut envs = from.envs("src");
        envs.extend(to.envs("dest"));
        (args, envs)
    };
    let (args, envs) = hop(&rgw, &src_bucket, &moto, &mid_bucket, "a.sqlite");
    assert!(run(finder(&args, &envs)).status.success(), "radosgw -> moto failed");
    assert_same("radosgw -> moto", &objects, &moto.read_all(&mid_bucket, "").await);
    let again = run(finder(&args, &envs));
    assert!(String::from_utf8_lossy(&again.stdout).contains("Nothing to transfer"));

    let (args, envs) = hop(&moto, &mid_bucket, &rgw, &back_bucket, "b.sqlite");
    assert!(run(finder(&args, &envs)).status.success(), "moto -> radosgw failed");
    assert_same("moto -> radosgw", &objects, &rgw.read_all(&back_bucket, "").await);
    assert_eq!(rgw.uploads(&back_bucket).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_plan_and_copies_nothing() {
    let rgw = rgw();
    let bucket = rgw.bucket("dry").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut files = BTreeMap::new();
    files.insert("one.txt".to_string(), data(10, 1));
    files.insert("two.txt".to_string(), data(20, 2));
    write_tree(&src, &files);
    rgw.put_all(&bucket, &[("two.txt".to_string(), data(21, 2))].into_iter().collect())
        .await;
    let mut args = vec![src.display().to_string(), format!("s3://{bucket}/"), "--dry-run".into()];
    args.extend(rgw.flags("dest"));
    let out = run(finder(&args, &rgw.envs("dest")));
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("new:              1 objects"), "{s}");
    assert!(s.contains("changed:          1 objects"), "{s}");
    assert!(s.contains("one.txt") && s.contains("two.txt"));
    assert_eq!(rgw.read_all(&bucket, "").await.len(), 1, "nothing copied");
}
