//! Parallel listing end to end: a radosgw bucket of 3,000 keys, 1 % missing
//! and 1 % changed at the destination, planned with one lister and with
//! key ranges listed at once (seen at a proxy as listings starting at
//! several keys); both plans agree, and the ranged run copies exactly the
//! difference.

use std::collections::BTreeMap;

use aws_sdk_s3::Client;
use ferry_tests::proxy::Proxy;
use ferry_tests::*;

const N: usize = 3000;

fn key(i: usize) -> String {
    // Three layouts in one bucket: nested, flat and unicode names.
    match i % 3 {
        0 => format!("logs-{:02}/part-{i:05}.gz", i % 17),
        1 => format!("flat-{i:05}"),
        _ => format!("照片/{i:05}.jpg"),
    }
}

async fn seed(c: &Client, src: &str, dst: &str) {
    seed_with_difference(c, src, dst, N, key).await;
}

/// Every key with its size and ETag.
async fn listing(c: &Client, bucket: &str) -> BTreeMap<String, (i64, String)> {
    let mut out = BTreeMap::new();
    let mut pages = c.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        for o in page.expect("list").contents() {
            out.insert(
                o.key().unwrap().to_string(),
                (o.size().unwrap_or(0), o.e_tag().unwrap_or_default().to_string()),
            );
        }
    }
    out
}

fn plan_line(text: &str, label: &str) -> String {
    text.lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"))
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread")]
async fn key_ranges_listed_at_once_plan_and_copy_what_one_lister_does() {
    let rgw = rgw();
    let (src, dst) = (rgw.bucket("lst-src").await, rgw.bucket("lst-dst").await);
    let c = rgw.client();
    seed(&c, &src, &dst).await;
    let proxy = Proxy::start(&rgw.endpoint).await;
    let work = tempfile::tempdir().unwrap();
    let args = |ranges: &str, extra: &[&str]| {
        let mut a = vec![
            format!("s3://{src}/"),
            format!("s3://{dst}/"),
            "--state".into(),
            work.path().join(format!("s{ranges}.sqlite")).display().to_string(),
            "--src-endpoint".into(),
            proxy.endpoint.clone(),
            "--src-path-style".into(),
            "--list-ranges".into(),
            ranges.into(),
            "--server-side".into(),
            "never".into(),
        ];
        a.extend(rgw.flags("dest"));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let envs = [rgw.envs("src"), rgw.envs("dest")].concat();
    let mut plans = Vec::new();
    for ranges in ["1", "8"] {
        let before = proxy.seen().len();
        let out = run(finder(&args(ranges, &["--dry-run"]), &envs));
        let text = output_text(&out);
        assert!(out.status.success(), "{text}");
        plans.push(["new:", "changed:", "identical:"].map(|l| plan_line(&text, l)));
        let starts: std::collections::BTreeSet<String> = proxy.seen()[before..]
            .iter()
            .filter(|s| s.operation() == "ListObjects")
            .filter_map(|s| {
                s.query
                    .split('&')
                    .find(|p| p.starts_with("start-after="))
                    .map(str::to_string)
            })
            .collect();
        match ranges {
            "1" => assert!(starts.is_empty(), "one lister starts at the beginning: {starts:?}"),
            _ => assert!(starts.len() >= 4, "ranges start at several keys: {starts:?}"),
        }
    }
    assert_eq!(
        plans[0],
        ["new: 30", "changed: 30", "identical: 2940"].map(String::from)
    );
    assert_eq!(plans[1], plans[0], "the ranged plan is the single lister's");

    let out = run(finder(&args("8", &[]), &envs));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(ferry_tests::fleet::count(&text, "transferred"), 60, "{text}");
    assert_eq!(
        listing(&c, &dst).await,
        listing(&c, &src).await,
        "every key, size and ETag"
    );
}
