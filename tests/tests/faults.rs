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
    use ferry_tests::fleet::stop;
    let (rgw, moto) = (rgw(), moto());
    let (slow, fleet, worker) = mid_multipart("vanish").await;
    let (state, rk) = (fleet.state(), slow.record());
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
    assert_eq!(ferry_tests::fleet::count(&report, "source gone"), 1, "{report}");
    assert_eq!(state.get(&rk).await.unwrap().unwrap().status, Status::SourceGone);
    assert!(
        moto.read_all(&slow.dst_bucket, "").await.is_empty(),
        "no partial object"
    );
    assert_eq!(moto.uploads(&slow.dst_bucket).await, 0, "the begun upload is aborted");
}

/// A copy through a proxy that flips a bit in the first three GET answers;
/// returns the proxy (for its fault log).
async fn copy_through_flips(from: &Server, to: &Server, a: &str, b: &str, state: &std::path::Path) -> Proxy {
    let proxy = Proxy::start_faulty(
        &from.endpoint,
        Faults {
            ops: vec!["GetObject"],
            every: 1,
            kinds: vec![FaultKind::FlipResponseBit],
            limit: 3,
            ..Default::default()
        },
    )
    .await;
    let mut args = vec![
        format!("s3://{a}/"),
        format!("s3://{b}/"),
        "--state".into(),
        state.display().to_string(),
        "--src-endpoint".into(),
        proxy.endpoint.clone(),
        "--src-path-style".into(),
        "--max-receives".into(),
        "20".into(),
        "--part-size".into(),
        "5MiB".into(),
        "--multipart-threshold".into(),
        "12MiB".into(),
    ];
    args.extend(to.flags("dest"));
    let mut envs = from.envs("src");
    envs.extend(to.envs("dest"));
    let out = run(finder(&args, &envs));
    assert!(out.status.success(), "damaged parts are read again");
    proxy
}

#[tokio::test(flavor = "multi_thread")]
async fn bits_flipped_in_parts_read_from_the_source_are_noticed_before_completion() {
    let (rgw, moto) = (rgw(), moto());
    // A multipart source (moto answers HEAD ?partNumber=): the parts mirror its
    // layout and their MD5-of-MD5s must equal its ETag.
    let (a, b) = (moto.bucket("flipmp-src").await, rgw.bucket("flipmp-dst").await);
    let big = data(17 * MIB + 5, 31);
    let src_tag = moto.put_multipart(&a, "mp/big.bin", &big, &[6 * MIB]).await;

    let work = tempfile::tempdir().unwrap();
    let proxy = copy_through_flips(&moto, &rgw, &a, &b, &work.path().join("a.sqlite")).await;
    let flipped = proxy.faults().len();
    assert!(flipped >= 2, "{flipped} part reads damaged");
    let expected = BTreeMap::from([("mp/big.bin".to_string(), big)]);
    assert_same(
        "multipart source after damaged reads",
        &expected,
        &rgw.read_all(&b, "").await,
    );
    let head = rgw
        .client()
        .head_object()
        .bucket(&b)
        .key("mp/big.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.e_tag(),
        Some(src_tag.as_str()),
        "the destination mirrors the source's parts"
    );
    assert_eq!(rgw.uploads(&b).await, 0, "damaged uploads are aborted");

    // A multipart source under the threshold is read whole; its parts' MD5s
    // are recomputed from memory.
    let (e, f) = (moto.bucket("flipsmall-src").await, rgw.bucket("flipsmall-dst").await);
    let small = BTreeMap::from([("mp/small.bin".to_string(), data(11 * MIB, 33))]);
    moto.put_multipart(&e, "mp/small.bin", &small["mp/small.bin"], &[6 * MIB])
        .await;
    let proxy = copy_through_flips(&moto, &rgw, &e, &f, &work.path().join("c.sqlite")).await;
    let flipped_small = proxy.faults().len();
    assert!(flipped_small >= 2, "{flipped_small} whole reads damaged");
    assert_same(
        "small multipart source after damaged reads",
        &small,
        &rgw.read_all(&f, "").await,
    );

    // A single-part source larger than a part: its ETag is the whole MD5,
    // checked by hashing the parts in order.
    let (c, d) = (rgw.bucket("flipwhole-src").await, moto.bucket("flipwhole-dst").await);
    let objects = BTreeMap::from([("w/whole.bin".to_string(), data(13 * MIB + 3, 32))]);
    rgw.put_all(&c, &objects).await;
    let proxy = copy_through_flips(&rgw, &moto, &c, &d, &work.path().join("b.sqlite")).await;
    assert!(proxy.faults().len() >= 2, "{} part reads damaged", proxy.faults().len());
    assert_same(
        "whole-MD5 source after damaged reads",
        &objects,
        &moto.read_all(&d, "").await,
    );
    assert_eq!(moto.uploads(&d).await, 0);
    eprintln!(
        "GET answers damaged: {flipped} (parts, mirrored layout), {flipped_small} (multipart source read whole), {} (parts, whole MD5)",
        proxy.faults().len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_with_parts_of_unequal_size_is_copied_without_a_mirrored_check() {
    let (rgw, moto) = (rgw(), moto());
    let (a, b) = (moto.bucket("uneven-src").await, rgw.bucket("uneven-dst").await);
    // 6, 5 and 6.5 MiB: three parts of the first one's size would also make
    // the object, so only the failed check reveals the uneven layout.
    let body = data(17 * MIB + MIB / 2, 41);
    moto.put_multipart(&a, "u.bin", &body, &[6 * MIB, 5 * MIB, 7 * MIB])
        .await;
    let work = tempfile::tempdir().unwrap();
    let mut args = vec![
        format!("s3://{a}/"),
        format!("s3://{b}/"),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
    ];
    args.extend(moto.flags("src"));
    args.extend(rgw.flags("dest"));
    let mut envs = moto.envs("src");
    envs.extend(rgw.envs("dest"));
    // Read whole (under the threshold) and in parts.
    for (i, threshold) in ["64MiB", "5MiB"].into_iter().enumerate() {
        let mut args = args.clone();
        args[3] = work.path().join(format!("s{i}.sqlite")).display().to_string();
        args.extend([
            "--multipart-threshold".into(),
            threshold.into(),
            "--part-size".into(),
            "5MiB".into(),
        ]);
        let out = run(finder(&args, &envs));
        assert!(out.status.success(), "an uneven source is still copied");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("parts differ in size"),
            "the weaker check is reported"
        );
        let expected = BTreeMap::from([("u.bin".to_string(), body.clone())]);
        assert_same("uneven layout", &expected, &rgw.read_all(&b, "").await);
        assert_eq!(rgw.uploads(&b).await, 0);
        rgw.client()
            .delete_object()
            .bucket(&b)
            .key("u.bin")
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_overwritten_mid_transfer_ends_whole_in_its_new_version() {
    use ferry_core::state::StateStore;
    use ferry_tests::fleet::stop;
    let (rgw, moto) = (rgw(), moto());
    let (slow, fleet, worker) = mid_multipart("overwrite").await;
    let (state, rk) = (fleet.state(), slow.record());
    // A new version of another size, written while parts of the old one are uploaded.
    let new = data(23 * MIB + 11, 77);
    rgw.put_all(
        &slow.src_bucket,
        &BTreeMap::from([("big.bin".to_string(), new.clone())]),
    )
    .await;
    let status = run(fleet.status(None, "120s"));
    let (st, log) = stop(worker);
    assert!(st.success());
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    assert_same(
        "after the overwrite",
        &BTreeMap::from([("big.bin".to_string(), new)]),
        &moto.read_all(&slow.dst_bucket, "").await,
    );
    assert_eq!(
        moto.uploads(&slow.dst_bucket).await,
        0,
        "the old version's upload is aborted"
    );
    assert!(
        slow.dst_proxy.count("CompleteMultipartUpload") == 1,
        "only the new version is completed: {log}"
    );
    let rec = state.get(&rk).await.unwrap().unwrap();
    let new_tag = rgw
        .client()
        .head_object()
        .bucket(&slow.src_bucket)
        .key("big.bin")
        .send()
        .await
        .unwrap()
        .e_tag()
        .map(str::to_string);
    assert_eq!(rec.src_etag, new_tag, "the record names the version copied");
}

/// A slow multipart copy (radosgw → moto) on a fleet, with its worker running
/// and two parts recorded.
async fn mid_multipart(
    hint: &str,
) -> (
    ferry_tests::fleet::SlowMultipart,
    ferry_tests::fleet::Fleet,
    ferry_tests::fleet::Worker,
) {
    use ferry_tests::fleet::{Fleet, SlowMultipart};
    let (rgw, moto) = (rgw(), moto());
    let slow = SlowMultipart::new(hint, 40, &[]).await;
    let fleet = Fleet::new(hint, true, 5).await;
    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    assert!(run(fleet.finder(&slow.job.args, &envs)).status.success());
    let worker = fleet.worker(&slow.job.worker_args(), &envs);
    slow.wait_for_parts(&fleet.state(), 2).await;
    (slow, fleet, worker)
}
