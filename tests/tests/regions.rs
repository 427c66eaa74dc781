//! Buckets in other regions just work: an AWS bucket named without a region
//! is followed to its region. S3's answers to a request signed for the wrong
//! region (301 PermanentRedirect with `x-amz-bucket-region`, 400
//! AuthorizationHeaderMalformed naming the region in its body) are simulated
//! by the test proxy in front of radosgw, which ignores regions itself. The
//! endpoint comes from `AWS_ENDPOINT_URL`, as the SDK's own endpoint
//! override, so ferry treats the bucket as an AWS bucket.

use std::collections::BTreeMap;

use ferry_tests::proxy::{Faults, Proxy};
use ferry_tests::*;

async fn in_region(region: &'static str, status: u16) -> Proxy {
    Proxy::start_faulty(
        &rgw().endpoint,
        Faults {
            bucket_region: Some((region, status)),
            ..Default::default()
        },
    )
    .await
}

/// The keys and AWS-style endpoint of one side, with no region given.
fn aws_side(side: &str, proxy: &Proxy) -> Vec<(String, String)> {
    let p = if side == "src" { "FERRY_SRC" } else { "FERRY_DEST" };
    let mut env = rgw().envs(side);
    env.push(("AWS_ENDPOINT_URL".into(), proxy.endpoint.clone()));
    env.push((format!("{p}_PATH_STYLE"), "true".into()));
    env
}

fn signed_for(proxy: &Proxy, region: &str) -> usize {
    proxy.seen().iter().filter(|s| s.signed_region == region).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_bucket_in_another_region_is_followed() {
    let (rgw, work) = (rgw(), tempfile::tempdir().unwrap());
    let bucket = rgw.bucket("eu-dst").await;
    let src = work.path().join("src");
    let files: BTreeMap<String, Vec<u8>> = (0..5)
        .map(|i| (format!("f{i}.bin"), data(3000 + i * 7, i as u64)))
        .chain([("big.bin".to_string(), data(7 * 1024 * 1024, 9))])
        .collect();
    write_tree(&src, &files);
    let proxy = in_region("eu-west-1", 301).await;
    let args = [
        src.display().to_string(),
        format!("s3://{bucket}/"),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
        "--multipart-threshold".into(),
        "5MiB".into(),
        "--part-size".into(),
        "5MiB".into(),
    ];
    let out = run(finder(&args, &aws_side("dest", &proxy)));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same("into eu-west-1", &files, &rgw.read_all(&bucket, "").await);
    let redirects = proxy.faults().len();
    assert!(redirects >= 1, "the redirect was met");
    assert!(
        redirects <= 3,
        "the region is asked once per store, not per request: {redirects}"
    );
    assert!(
        signed_for(&proxy, "eu-west-1") > files.len(),
        "requests go to the bucket's region"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_bucket_in_a_china_region_is_followed_from_a_malformed_authorization_answer() {
    let (rgw, work) = (rgw(), tempfile::tempdir().unwrap());
    let bucket = rgw.bucket("cn-src").await;
    let files: BTreeMap<String, Vec<u8>> = (0..4)
        .map(|i| (format!("d/{i}.txt"), data(2000 + i, i as u64)))
        .collect();
    rgw.put_all(&bucket, &files).await;
    // 400 AuthorizationHeaderMalformed names the region in the body only; a
    // HEAD has no body, so the first ask learns nothing and a later answer does.
    let proxy = in_region("cn-northwest-1", 400).await;
    let dest = work.path().join("dst");
    let args = [
        format!("s3://{bucket}/"),
        dest.display().to_string(),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
    ];
    let out = run(finder(&args, &aws_side("src", &proxy)));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same("from cn-northwest-1", &files, &read_tree(&dest));
    assert!(signed_for(&proxy, "cn-northwest-1") >= files.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_region_wins_and_a_wrong_one_says_which_is_right() {
    let (rgw, work) = (rgw(), tempfile::tempdir().unwrap());
    let bucket = rgw.bucket("pinned").await;
    rgw.put_all(&bucket, &BTreeMap::from([("a.txt".to_string(), data(100, 1))]))
        .await;
    let proxy = in_region("eu-west-1", 301).await;
    let args = [
        format!("s3://{bucket}/"),
        work.path().join("dst").display().to_string(),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
        "--src-region".into(),
        "us-west-2".into(),
    ];
    let out = run(finder(&args, &aws_side("src", &proxy)));
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        said.contains("eu-west-1"),
        "the error names the bucket's region: {said}"
    );
    assert_eq!(
        signed_for(&proxy, "eu-west-1"),
        0,
        "the user's region is never overridden"
    );
}
