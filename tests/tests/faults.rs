//! Faults on the wire: a proxy between ferry and radosgw resets, stalls,
//! truncates and answers 500 / 503 SlowDown / 429 to every 5th request, on
//! the way to the store (uploads, multipart, listings) and back from it
//! (downloads). Each run must end with every object byte-identical, no extra
//! keys, and no unfinished multipart upload left behind.

use std::collections::BTreeMap;

use ferry_tests::proxy::{FaultKind, Faults, Proxy};
use ferry_tests::*;

const MIB: usize = 1024 * 1024;

/// A local → radosgw sync through `proxy` in 5 MiB parts, with room for retried jobs.
fn upload_args(src: &std::path::Path, bucket: &str, state: &std::path::Path, proxy: &Proxy) -> Vec<String> {
    let mut args = vec![
        src.display().to_string(),
        format!("s3://{bucket}/"),
        "--state".into(),
        state.display().to_string(),
        "--dest-endpoint".into(),
        proxy.endpoint.clone(),
        "--dest-path-style".into(),
    ];
    args.extend(
        [
            "--part-size",
            "5MiB",
            "--multipart-threshold",
            "5MiB",
            "--max-receives",
            "10",
        ]
        .map(String::from),
    );
    args
}

fn kinds_seen(p: &Proxy) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (_, k) in p.faults() {
        *m.entry(k.name()).or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fault_kind_on_the_way_to_and_from_the_store_loses_nothing() {
    let rgw = rgw();
    let bucket = rgw.bucket("faults").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut files: BTreeMap<String, Vec<u8>> = (0..40)
        .map(|i| (format!("small/{i:02}"), data(500 + i * 300, i as u64)))
        .collect();
    files.insert("big/a.bin".into(), data(12 * MIB, 1));
    files.insert("big/b.bin".into(), data(11 * MIB + 7, 2));
    write_tree(&src, &files);

    let faults = || Faults {
        every: 5,
        kinds: FaultKind::all(),
        ..Default::default()
    };
    let up = Proxy::start_faulty(&rgw.endpoint, faults()).await;
    let mut args = upload_args(&src, &bucket, &work.path().join("up.sqlite"), &up);
    args.extend(["--workers".to_string(), "4".into()]);
    let out = run(finder(&args, &rgw.envs("dest")));
    assert!(out.status.success(), "the upload completes despite the faults");
    assert_same("uploaded through faults", &files, &rgw.read_all(&bucket, "").await);
    assert_eq!(rgw.uploads(&bucket).await, 0, "no unfinished multipart upload left");

    let down = Proxy::start_faulty(&rgw.endpoint, faults()).await;
    let dst = work.path().join("dst");
    let mut args = vec![
        format!("s3://{bucket}/"),
        dst.display().to_string(),
        "--state".into(),
        work.path().join("down.sqlite").display().to_string(),
        "--src-endpoint".into(),
        down.endpoint.clone(),
        "--src-path-style".into(),
        "--workers".into(),
        "4".into(),
        "--max-receives".into(),
        "10".into(),
    ];
    args.extend(["--part-size", "5MiB", "--multipart-threshold", "5MiB"].map(String::from));
    let out = run(finder(&args, &rgw.envs("src")));
    assert!(out.status.success(), "the download completes despite the faults");
    assert_same("downloaded through faults", &files, &read_tree(&dst));

    // An independent check straight against the store.
    let mut verify = std::process::Command::new(bin("ferry-finder"));
    verify
        .args(["verify", &src.display().to_string(), &format!("s3://{bucket}/")])
        .args(rgw.flags("dest"));
    isolate(&mut verify);
    for (k, v) in rgw.envs("dest") {
        verify.env(k, v);
    }
    assert!(run(verify).status.success());

    let (up_kinds, down_kinds) = (kinds_seen(&up), kinds_seen(&down));
    eprintln!(
        "faults injected: upload {} {up_kinds:?}; download {} {down_kinds:?}; objects verified {}, bytes {}",
        up.faults().len(),
        down.faults().len(),
        files.len(),
        files.values().map(Vec::len).sum::<usize>()
    );
    for kind in FaultKind::all() {
        assert!(
            up_kinds.contains_key(&kind.name()) && down_kinds.contains_key(&kind.name()),
            "every kind was injected both ways: {up_kinds:?} {down_kinds:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bits_flipped_on_the_way_to_the_store_are_refused_and_sent_again() {
    let rgw = rgw();
    let bucket = rgw.bucket("flips").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut files: BTreeMap<String, Vec<u8>> = (0..15)
        .map(|i| (format!("f/{i:02}"), data(2000 + i * 700, 70 + i as u64)))
        .collect();
    files.insert("f/big.bin".into(), data(16 * MIB, 3));
    write_tree(&src, &files);
    // Every 3rd PutObject or UploadPart reaches radosgw with one bit flipped:
    // its Content-MD5 no longer matches, radosgw answers BadDigest.
    let proxy = Proxy::start_faulty(
        &rgw.endpoint,
        Faults {
            ops: vec!["PutObject", "UploadPart"],
            every: 3,
            kinds: vec![FaultKind::FlipRequestBit],
            ..Default::default()
        },
    )
    .await;
    let args = upload_args(&src, &bucket, &work.path().join("s.sqlite"), &proxy);
    let out = run(finder(&args, &rgw.envs("dest")));
    assert!(out.status.success(), "every damaged body is refused and sent again");
    assert!(proxy.faults().len() >= 5, "{} bodies damaged", proxy.faults().len());
    eprintln!("request bodies damaged on the way: {}", proxy.faults().len());
    assert_same("after damaged bodies", &files, &rgw.read_all(&bucket, "").await);
    assert_eq!(rgw.uploads(&bucket).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bits_flipped_on_the_way_from_the_source_are_noticed_before_writing() {
    let rgw = rgw();
    let (a, b) = (rgw.bucket("flip-src").await, rgw.bucket("flip-dst").await);
    let objects: BTreeMap<String, Vec<u8>> = (0..15)
        .map(|i| (format!("g/{i:02}"), data(3000 + i * 900, 90 + i as u64)))
        .collect();
    rgw.put_all(&a, &objects).await;
    // Every 3rd GET answer comes back with one bit flipped. The source's ETag
    // is its MD5 and goes out as the PUT's Content-MD5, so radosgw refuses
    // the damaged copy; ferry tells a damaged read from damage on the way out
    // and reads again.
    let proxy = Proxy::start_faulty(
        &rgw.endpoint,
        Faults {
            ops: vec!["GetObject"],
            every: 3,
            kinds: vec![FaultKind::FlipResponseBit],
            ..Default::default()
        },
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let mut args = vec![
        format!("s3://{a}/"),
        format!("s3://{b}/"),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
        "--src-endpoint".into(),
        proxy.endpoint.clone(),
        "--src-path-style".into(),
        "--max-receives".into(),
        "10".into(),
    ];
    args.extend(rgw.flags("dest"));
    let mut envs = rgw.envs("src");
    envs.extend(rgw.envs("dest"));
    let out = run(finder(&args, &envs));
    assert!(out.status.success(), "damaged reads are read again");
    assert!(proxy.faults().len() >= 5, "{} reads damaged", proxy.faults().len());
    eprintln!("GET answers damaged on the way: {}", proxy.faults().len());
    assert_same("after damaged reads", &objects, &rgw.read_all(&b, "").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_deleted_mid_transfer_ends_as_source_gone_without_leftovers() {
    use ferry_core::state::{StateStore, Status};
    use ferry_tests::fleet::{stop, Fleet, SlowMultipart};
    let (rgw, moto) = (rgw(), moto());
    let slow = SlowMultipart::new("vanish", 40, &[]).await;
    let fleet = Fleet::new("vanish", true, 5).await;
    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    assert!(run(fleet.finder(&slow.job.args, &envs)).status.success());
    let worker = fleet.worker(&slow.job.worker_args(), &envs);
    let (state, rk) = (fleet.state(), slow.record());
    let t = std::time::Instant::now();
    while state.get(&rk).await.unwrap().map(|r| r.parts.len()).unwrap_or(0) < 2 {
        assert!(t.elapsed() < std::time::Duration::from_secs(60), "no parts recorded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    rgw.client()
        .delete_object()
        .bucket(&slow.src_bucket)
        .key("big.bin")
        .send()
        .await
        .unwrap();
    let status = run(fleet.status(None, "60s"));
    let (st, _) = stop(worker);
    assert!(st.success());
    let report = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(status.status.code(), Some(0), "{report}");
    assert!(report.contains("source gone:          1"), "{report}");
    assert_eq!(state.get(&rk).await.unwrap().unwrap().status, Status::SourceGone);
    assert!(
        moto.read_all(&slow.dst_bucket, "").await.is_empty(),
        "no partial object"
    );
    assert_eq!(moto.uploads(&slow.dst_bucket).await, 0, "the begun upload is aborted");
}
