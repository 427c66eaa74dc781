//! The bill before the run, checked against a real one: a dry run's
//! estimate of requests by class, against the requests the run then sends,
//! counted at proxies in front of both stores (radosgw → moto).

use std::collections::BTreeMap;

use ferry_tests::proxy::Proxy;
use ferry_tests::*;

const MIB: usize = 1024 * 1024;

/// The counts of the "requests:" line: LIST, GET, HEAD, PUT, COPY, DELETE.
fn estimate(text: &str) -> [u64; 6] {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("requests:"))
        .unwrap_or_else(|| panic!("no requests line in:\n{text}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    nums[..6].try_into().unwrap()
}

/// The requests the proxies saw, by the same classes.
fn counted(proxies: &[&Proxy]) -> [u64; 6] {
    let mut c = [0u64; 6];
    for p in proxies {
        for s in p.seen() {
            let class = match s.operation().as_str() {
                "ListObjects" | "ListParts" | "ListMultipartUploads" => 0,
                "GetObject" | "GetObjectTagging" => 1,
                "HeadObject" => 2,
                "PutObject" | "UploadPart" | "CreateMultipartUpload" | "CompleteMultipartUpload" => 3,
                "CopyObject" | "UploadPartCopy" => 4,
                "DeleteObject" => 5,
                other => panic!("a request the estimate does not class: {other}"),
            };
            c[class] += 1;
        }
    }
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_runs_estimate_is_within_ten_percent_of_the_requests_sent() {
    let (rgw, moto) = (rgw(), moto());
    let (src, dst) = (rgw.bucket("cost-src").await, moto.bucket("cost-dst").await);
    let mut files: BTreeMap<String, Vec<u8>> = (0..40)
        .map(|i| (format!("small/{i:03}"), data(2000 + i, i as u64)))
        .collect();
    for i in 0..3 {
        files.insert(format!("big/{i}"), data(12 * MIB + i, 100 + i as u64));
    }
    rgw.put_all(&src, &files).await;
    // One uploaded in parts: its layout is read before it is copied.
    let parts = vec![data(5 * MIB, 200), data(3 * MIB, 201)];
    rgw.put_parts(&src, "parts/one", parts.clone()).await;
    files.insert("parts/one".into(), parts.concat());
    // Already at the destination: listed, compared, not copied.
    moto.put_all(
        &dst,
        &BTreeMap::from([("small/000".to_string(), files["small/000"].clone())]),
    )
    .await;
    let (sp, dp) = (Proxy::start(&rgw.endpoint).await, Proxy::start(&moto.endpoint).await);
    let work = tempfile::tempdir().unwrap();
    let args = |extra: &[&str]| {
        let mut a = vec![
            format!("s3://{src}/"),
            format!("s3://{dst}/"),
            "--state".into(),
            work.path().join("s.sqlite").display().to_string(),
            "--src-endpoint".into(),
            sp.endpoint.clone(),
            "--src-path-style".into(),
            "--dest-endpoint".into(),
            dp.endpoint.clone(),
            "--dest-path-style".into(),
            "--multipart-threshold".into(),
            "5MiB".into(),
            "--part-size".into(),
            "5MiB".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let envs = [rgw.envs("src"), moto.envs("dest")].concat();
    let out = run(finder(&args(&["--dry-run"]), &envs));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let planned = estimate(&text);
    assert!(
        text.contains("cost:") && text.contains("Amazon S3 Standard, us-east-1"),
        "{text}"
    );
    let listing = counted(&[&sp, &dp]);
    assert_eq!(
        planned[0], listing[0],
        "the dry run's own listing is the estimate's: {text}"
    );

    let out = run(finder(&args(&[]), &envs));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_same("copied", &files, &moto.read_all(&dst, "").await);
    let mut sent = counted(&[&sp, &dp]);
    for (a, b) in sent.iter_mut().zip(listing) {
        *a -= b;
    }
    for (i, class) in ["LIST", "GET", "HEAD", "PUT", "COPY", "DELETE"].iter().enumerate() {
        let (p, s) = (planned[i] as f64, sent[i] as f64);
        assert!(
            (p - s).abs() <= 0.1 * s.max(1.0),
            "{class}: estimated {p}, sent {s} (estimate {planned:?}, sent {sent:?})"
        );
    }
    assert_eq!(estimate(&text), planned, "the run's summary prints the same estimate");
}
