//! Options that change how objects are written or read, end to end, seen
//! on the wire at a proxy and recorded by the servers: the destination's
//! storage class, canned ACL and SSE-KMS key on single PUTs and multipart
//! uploads (moto keeps all three); requester pays on every request to the
//! source; anonymous reads of a public bucket; a vendor's scheme
//! (`oss://`) selecting its preset, pointed at radosgw; virtual-hosted
//! addressing (`BUCKET.localhost`), as the OSS and AWS presets use it.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{ObjectCannedAcl, Permission, Type};
use ferry_tests::proxy::Proxy;
use ferry_tests::*;

const MIB: usize = 1024 * 1024;

/// A copy of bucket `src`, read through `proxy`, into `work/dst` with `flag`.
fn to_dir(src: &str, proxy: &Proxy, work: &std::path::Path, flag: &str) -> Vec<String> {
    let mut args = vec![
        format!("s3://{src}/"),
        work.join("dst").display().to_string(),
        "--state".into(),
    ];
    args.push(work.join("s.sqlite").display().to_string());
    args.extend([
        "--src-endpoint".into(),
        proxy.endpoint.clone(),
        "--src-path-style".into(),
    ]);
    args.extend([flag, "--multipart-threshold", "5MiB"].map(String::from));
    args
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_class_acl_and_kms_key_are_applied_to_puts_and_uploads() {
    let (rgw, moto) = (rgw(), moto());
    let (src, dst) = (rgw.bucket("opt-src").await, moto.bucket("opt-dst").await);
    let files = BTreeMap::from([
        ("small.txt".to_string(), data(1000, 41)),
        ("big.bin".to_string(), data(12 * MIB + 5, 42)),
    ]);
    rgw.put_all(&src, &files).await;
    let proxy = Proxy::start(&moto.endpoint).await;
    let work = tempfile::tempdir().unwrap();
    let mut args = vec![
        format!("s3://{src}/"),
        format!("s3://{dst}/"),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
    ];
    args.extend(rgw.flags("src"));
    args.extend([
        "--dest-endpoint".into(),
        proxy.endpoint.clone(),
        "--dest-path-style".into(),
    ]);
    for a in [
        "--dest-storage-class",
        "STANDARD_IA",
        "--dest-acl",
        "public-read",
        "--dest-sse",
        "aws:kms",
        "--dest-sse-kms-key-id",
        "ferry-test-key",
        "--multipart-threshold",
        "5MiB",
        "--part-size",
        "5MiB",
    ] {
        args.push(a.into());
    }
    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    let out = run(finder(&args, &envs));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same("written with the options", &files, &moto.read_all(&dst, "").await);

    for op in ["PutObject", "CreateMultipartUpload"] {
        let seen = proxy.seen().into_iter().find(|s| s.operation() == op).expect(op);
        assert_eq!(seen.amz("storage-class"), Some("STANDARD_IA"), "{op}: {:?}", seen.amz);
        assert_eq!(seen.amz("acl"), Some("public-read"), "{op}");
        assert_eq!(seen.amz("server-side-encryption"), Some("aws:kms"), "{op}");
        assert_eq!(
            seen.amz("server-side-encryption-aws-kms-key-id"),
            Some("ferry-test-key"),
            "{op}"
        );
    }
    let c = moto.client();
    for key in files.keys() {
        let head = c.head_object().bucket(&dst).key(key).send().await.unwrap();
        assert_eq!(head.storage_class().map(|s| s.as_str()), Some("STANDARD_IA"), "{key}");
        assert_eq!(head.ssekms_key_id(), Some("ferry-test-key"), "{key}");
        let acl = c.get_object_acl().bucket(&dst).key(key).send().await.unwrap();
        let public = acl.grants().iter().any(|g| {
            g.permission() == Some(&Permission::Read)
                && g.grantee().is_some_and(|who| {
                    who.r#type() == &Type::Group && who.uri().is_some_and(|u| u.ends_with("AllUsers"))
                })
        });
        assert!(public, "{key}: public-read grants READ to AllUsers: {:?}", acl.grants());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requester_pays_is_sent_with_every_request_to_the_source() {
    let rgw = rgw();
    let src = rgw.bucket("opt-payer").await;
    let files = BTreeMap::from([
        ("a.txt".to_string(), data(2000, 43)),
        ("b.bin".to_string(), data(7 * MIB, 44)),
    ]);
    rgw.put_all(&src, &files).await;
    let proxy = Proxy::start(&rgw.endpoint).await;
    let work = tempfile::tempdir().unwrap();
    let dst = work.path().join("dst");
    let args = to_dir(&src, &proxy, work.path(), "--src-requester-pays");
    let out = run(finder(&args, &rgw.envs("src")));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same("read with requester pays", &files, &read_tree(&dst));
    let seen = proxy.seen();
    assert!(seen.iter().any(|s| s.operation() == "GetObject"), "objects were read");
    for s in &seen {
        assert_eq!(
            s.amz("request-payer"),
            Some("requester"),
            "{} {}?{} without x-amz-request-payer",
            s.method,
            s.path,
            s.query
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_bucket_is_read_anonymously() {
    let rgw = rgw();
    let src = rgw.bucket("opt-public").await;
    let c = rgw.client();
    c.put_bucket_acl()
        .bucket(&src)
        .acl(aws_sdk_s3::types::BucketCannedAcl::PublicRead)
        .send()
        .await
        .expect("a public-read bucket");
    let files = BTreeMap::from([
        ("pub/one.txt".to_string(), data(3000, 45)),
        ("pub/two.bin".to_string(), data(6 * MIB + 1, 46)),
    ]);
    for (k, v) in &files {
        c.put_object()
            .bucket(&src)
            .key(k)
            .acl(ObjectCannedAcl::PublicRead)
            .body(v.clone().into())
            .send()
            .await
            .unwrap();
    }
    let proxy = Proxy::start(&rgw.endpoint).await;
    let work = tempfile::tempdir().unwrap();
    let dst = work.path().join("dst");
    let args = to_dir(&src, &proxy, work.path(), "--src-anonymous");
    // No keys in the environment at all.
    let out = run(finder(&args, &[]));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same("read anonymously", &files, &read_tree(&dst));
    let signed = proxy.seen().into_iter().filter(|s| !s.signed_region.is_empty()).count();
    assert_eq!(signed, 0, "no request was signed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oss_url_selects_the_preset_and_copies() {
    let rgw = rgw();
    let src = rgw.bucket("opt-oss").await;
    let files = BTreeMap::from([("k/one.txt".to_string(), data(1500, 47))]);
    rgw.put_all(&src, &files).await;
    let work = tempfile::tempdir().unwrap();
    let dst = work.path().join("dst");
    // The preset's endpoint (oss-cn-hangzhou.aliyuncs.com) is replaced by
    // radosgw's; OSS's virtual-hosted addressing by path style.
    let mut args = vec![
        format!("oss://{src}/k/"),
        dst.display().to_string(),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
        "--src-region".into(),
        "cn-hangzhou".into(),
    ];
    args.extend(rgw.flags("src"));
    let out = run(finder(&args, &rgw.envs("src")));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same(
        "copied from an oss:// URL",
        &BTreeMap::from([("one.txt".to_string(), files["k/one.txt"].clone())]),
        &read_tree(&dst),
    );
    let clash = vec![
        format!("oss://{src}/"),
        dst.display().to_string(),
        "--src-vendor".into(),
        "tencent-cos".into(),
    ];
    let out = run(finder(&clash, &[]));
    assert!(!out.status.success());
    assert!(output_text(&out).contains("--src-vendor"), "{}", output_text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn virtual_hosted_addressing_names_the_bucket_in_the_host() {
    let rgw = rgw();
    let bucket = std::env::var("FERRY_TEST_VHOST_BUCKET")
        .expect("FERRY_TEST_VHOST_BUCKET is set by tests/servers/start.sh (source its servers.env)");
    let host = format!("{bucket}.localhost");
    assert!(
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 80)).is_ok_and(|mut a| a.next().is_some()),
        "{host} does not resolve: tests/servers/start.sh adds it to /etc/hosts (as root)"
    );
    let c = rgw.client();
    if c.head_bucket().bucket(&bucket).send().await.is_err() {
        c.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create the virtual-hosted bucket");
    }
    let prefix = unique("vh");
    let files = BTreeMap::from([
        (format!("{prefix}/a.txt"), data(1500, 71)),
        (format!("{prefix}/b.bin"), data(6 * MIB, 72)),
    ]);
    rgw.put_all(&bucket, &files).await;
    let proxy = Proxy::start(&rgw.endpoint).await;
    // `localhost`, not 127.0.0.1: the bucket's host name is BUCKET.localhost.
    let endpoint = proxy.endpoint.replace("127.0.0.1", "localhost");
    let work = tempfile::tempdir().unwrap();
    let presets: [(String, &[&str]); 2] = [
        (format!("oss://{bucket}/{prefix}/"), &["--src-region", "cn-hangzhou"]),
        (
            format!("s3://{bucket}/{prefix}/"),
            &["--src-vendor", "aws", "--src-region", "us-east-1"],
        ),
    ];
    for (i, (url, flags)) in presets.iter().enumerate() {
        let dst = work.path().join(format!("dst{i}"));
        let mut args = vec![
            url.clone(),
            dst.display().to_string(),
            "--state".into(),
            work.path().join(format!("s{i}.sqlite")).display().to_string(),
            "--src-endpoint".into(),
            endpoint.clone(),
            "--multipart-threshold".into(),
            "5MiB".into(),
        ];
        args.extend(flags.iter().map(|s| s.to_string()));
        let out = run(finder(&args, &rgw.envs("src")));
        assert!(out.status.success(), "{url}: {}", output_text(&out));
        let want: BTreeMap<String, Vec<u8>> = files
            .iter()
            .map(|(k, v)| (k.trim_start_matches(&format!("{prefix}/")).to_string(), v.clone()))
            .collect();
        assert_same(url, &want, &read_tree(&dst));
    }
    let seen = proxy.seen();
    assert!(
        seen.len() >= 6,
        "listings and reads of both runs went through the proxy: {seen:?}"
    );
    for s in &seen {
        assert!(
            !s.path.starts_with(&format!("/{bucket}")),
            "the bucket is named by the host, not the path: {} {}",
            s.method,
            s.path
        );
    }
}
