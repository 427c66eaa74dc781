//! `ferry-finder verify`: after a sync it reports a match (by content where
//! ETags are not comparable, by ETag where they are); after the destination
//! is tampered with it lists exactly the missing, extra and different keys
//! and exits 1.

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;
use ferry_tests::*;

fn verify(args: &[String], envs: &[(String, String)]) -> (Option<i32>, String) {
    let mut all = vec!["verify".to_string()];
    all.extend(args.iter().cloned());
    let mut c = std::process::Command::new(bin("ferry-finder"));
    c.args(&all);
    isolate(&mut c);
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = run(c);
    (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_matches_after_a_sync_and_names_every_difference() {
    let rgw = rgw();
    let bucket = rgw.bucket("verify").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let files: BTreeMap<String, Vec<u8>> = (0..12)
        .map(|i| (format!("v/{i:02} x+y.bin"), data(1000 + i * 500, i as u64)))
        .collect();
    write_tree(&src, &files);
    let state = work.path().join("s.sqlite").display().to_string();
    let mut sync = vec![
        src.display().to_string(),
        format!("s3://{bucket}/"),
        "--state".into(),
        state,
    ];
    sync.extend(rgw.flags("dest"));
    assert!(run(finder(&sync, &rgw.envs("dest"))).status.success());

    let mut args = vec![src.display().to_string(), format!("s3://{bucket}/")];
    args.extend(rgw.flags("dest"));
    let (code, report) = verify(&args, &rgw.envs("dest"));
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("identical:       12 objects"), "{report}");
    assert!(
        report.contains("(12 compared by content)"),
        "local files have no MD5 ETag: {report}"
    );
    assert!(report.contains("Verified"), "{report}");

    // Tamper: one missing, one extra, one with the same size and other bytes.
    let client = rgw.client();
    client
        .delete_object()
        .bucket(&bucket)
        .key("v/00 x+y.bin")
        .send()
        .await
        .unwrap();
    client
        .put_object()
        .bucket(&bucket)
        .key("v/zz-extra")
        .body(ByteStream::from(b"extra".to_vec()))
        .send()
        .await
        .unwrap();
    let mut bad = files["v/05 x+y.bin"].clone();
    bad[100] ^= 1;
    client
        .put_object()
        .bucket(&bucket)
        .key("v/05 x+y.bin")
        .body(ByteStream::from(bad))
        .send()
        .await
        .unwrap();
    let (code, report) = verify(&args, &rgw.envs("dest"));
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("missing:          1") && report.contains("missing v/00 x+y.bin"),
        "{report}"
    );
    assert!(
        report.contains("extra:            1") && report.contains("extra v/zz-extra"),
        "{report}"
    );
    assert!(
        report.contains("different:        1") && report.contains("different v/05 x+y.bin: content MD5"),
        "{report}"
    );
    assert!(report.contains("identical:       10 objects"), "{report}");

    // --size-only cannot see the flipped bit.
    let mut size_only = args.clone();
    size_only.push("--size-only".into());
    let (_, report) = verify(&size_only, &rgw.envs("dest"));
    assert!(report.contains("different:        0"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_between_two_stores_compares_etags() {
    let (rgw, moto) = (rgw(), moto());
    let (a, b) = (rgw.bucket("va").await, moto.bucket("vb").await);
    let objects: BTreeMap<String, Vec<u8>> = (0..5)
        .map(|i| (format!("k{i}"), data(4000 + i, 50 + i as u64)))
        .collect();
    rgw.put_all(&a, &objects).await;
    moto.put_all(&b, &objects).await;
    let mut args = vec![format!("s3://{a}/"), format!("s3://{b}/")];
    args.extend(rgw.flags("src"));
    args.extend(moto.flags("dest"));
    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    let (code, report) = verify(&args, &envs);
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.contains("(0 compared by content)"),
        "single-part MD5 ETags compare: {report}"
    );
}
