//! What a copy carries besides the bytes, end to end: tags (`--tags copy`,
//! `none`, `K=V`) and metadata (Content-* headers, user metadata) from
//! radosgw to moto when streamed, inside radosgw when copied server-side,
//! and from a source answering as Aliyun OSS's own API does
//! (`x-oss-meta-*`, `x-oss-tagging-count`) through the `oss://` preset.

use std::collections::BTreeMap;

use aws_sdk_s3::Client;
use ferry_tests::proxy::{Answers, Proxy};
use ferry_tests::*;

const MIB: usize = 1024 * 1024;

/// An object of the test: bytes, tags and user metadata.
struct Obj {
    key: &'static str,
    body: Vec<u8>,
    tags: &'static str,
    meta: &'static [(&'static str, &'static str)],
}

fn objects() -> Vec<Obj> {
    vec![
        Obj {
            key: "tagged.txt",
            body: data(3000, 61),
            tags: "team=data&tier=hot%20path",
            meta: &[("owner", "ops")],
        },
        Obj {
            key: "big.bin",
            body: data(7 * MIB + 11, 62),
            tags: "size=big",
            meta: &[("owner", "ml"), ("source", "camera 7")],
        },
        Obj {
            key: "plain.txt",
            body: data(500, 63),
            tags: "",
            meta: &[],
        },
    ]
}

/// Writes the objects with their tags, metadata, content type and cache control.
async fn seed(server: &Server, bucket: &str) {
    let c = server.client();
    for o in objects() {
        if o.body.len() > 5 * MIB {
            seed_in_parts(&c, bucket, &o).await;
            continue;
        }
        let mut req = c
            .put_object()
            .bucket(bucket)
            .key(o.key)
            .body(o.body.clone().into())
            .content_type("text/x-ferry")
            .cache_control("max-age=60");
        if !o.tags.is_empty() {
            req = req.tagging(o.tags);
        }
        for (k, v) in o.meta {
            req = req.metadata(*k, *v);
        }
        req.send().await.expect("seed");
    }
}

/// Writes a large object in two parts, so a server-side copy copies it in parts too.
async fn seed_in_parts(c: &Client, bucket: &str, o: &Obj) {
    let mut req = c
        .create_multipart_upload()
        .bucket(bucket)
        .key(o.key)
        .content_type("text/x-ferry")
        .cache_control("max-age=60")
        .tagging(o.tags);
    for (k, v) in o.meta {
        req = req.metadata(*k, *v);
    }
    let id = req.send().await.expect("create").upload_id().unwrap().to_string();
    let mut done = Vec::new();
    for (i, chunk) in o.body.chunks(5 * MIB).enumerate() {
        let n = i as i32 + 1;
        let up = c
            .upload_part()
            .bucket(bucket)
            .key(o.key)
            .upload_id(&id)
            .part_number(n)
            .body(chunk.to_vec().into())
            .send()
            .await
            .expect("part");
        done.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n)
                .e_tag(up.e_tag().unwrap())
                .build(),
        );
    }
    c.complete_multipart_upload()
        .bucket(bucket)
        .key(o.key)
        .upload_id(&id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .expect("complete");
    // radosgw keeps no tags given to CreateMultipartUpload: set them after.
    let mut set = aws_sdk_s3::types::Tagging::builder();
    for pair in o.tags.split('&') {
        let (k, v) = pair.split_once('=').unwrap();
        set = set.tag_set(aws_sdk_s3::types::Tag::builder().key(k).value(v).build().unwrap());
    }
    c.put_object_tagging()
        .bucket(bucket)
        .key(o.key)
        .tagging(set.build().unwrap())
        .send()
        .await
        .expect("tag");
}

async fn tags(c: &Client, bucket: &str, key: &str) -> Vec<(String, String)> {
    let out = match c.get_object_tagging().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        // radosgw answers an object without tags with an empty 200.
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 200) => return vec![],
        Err(e) => panic!("tags of {key}: {e:?}"),
    };
    let mut t: Vec<_> = out
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    t.sort();
    t
}

/// Tags, content type, cache control and user metadata of every object.
async fn carried(c: &Client, bucket: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for o in objects() {
        let h = c.head_object().bucket(bucket).key(o.key).send().await.expect("head");
        let meta: BTreeMap<_, _> = h.metadata().cloned().unwrap_or_default().into_iter().collect();
        let text = format!(
            "tags={:?} type={:?} cache={:?} meta={meta:?}",
            tags(c, bucket, o.key).await,
            h.content_type(),
            h.cache_control()
        );
        out.insert(o.key.to_string(), text);
    }
    out
}

fn sync(
    src_url: String,
    dst: &str,
    src_endpoint: &str,
    dest: &Server,
    work: &std::path::Path,
    extra: &[&str],
) -> Vec<String> {
    let mut args = vec![
        src_url,
        format!("s3://{dst}/"),
        "--state".into(),
        work.join(format!("{dst}.sqlite")).display().to_string(),
        "--src-endpoint".into(),
        src_endpoint.to_string(),
        "--src-path-style".into(),
        "--multipart-threshold".into(),
        "5MiB".into(),
        "--part-size".into(),
        "5MiB".into(),
    ];
    args.extend(dest.flags("dest"));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_and_metadata_round_trip_between_stores() {
    let (rgw, moto) = (rgw(), moto());
    let (src, dst) = (rgw.bucket("tag-src").await, moto.bucket("tag-dst").await);
    seed(&rgw, &src).await;
    let proxy = Proxy::start(&rgw.endpoint).await;
    let work = tempfile::tempdir().unwrap();
    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    let args = sync(format!("s3://{src}/"), &dst, &proxy.endpoint, &moto, work.path(), &[]);
    let out = run(finder(&args, &envs));
    assert!(out.status.success(), "{}", output_text(&out));

    let want = carried(&rgw.client(), &src).await;
    assert!(want["tagged.txt"].contains("(\"tier\", \"hot path\")"), "{want:?}");
    assert!(want["big.bin"].contains("(\"size\", \"big\")"), "{want:?}");
    assert_eq!(carried(&moto.client(), &dst).await, want, "tags and metadata kept");
    let asked = proxy
        .seen()
        .iter()
        .filter(|s| s.operation() == "GetObjectTagging")
        .count();
    // Once for each object with tags, once more after the upload in parts.
    assert_eq!(asked, 3, "tags are asked for only where the GET said there are some");
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_can_be_dropped_or_set() {
    let (rgw, moto) = (rgw(), moto());
    let src = rgw.bucket("tagset-src").await;
    let (none, set) = (moto.bucket("tagset-none").await, moto.bucket("tagset-set").await);
    seed(&rgw, &src).await;
    let work = tempfile::tempdir().unwrap();
    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    for (dst, flag) in [(&none, "none"), (&set, "env=prod,owner=ferry")] {
        let args = sync(
            format!("s3://{src}/"),
            dst,
            &rgw.endpoint,
            &moto,
            work.path(),
            &["--tags", flag],
        );
        let out = run(finder(&args, &envs));
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let c = moto.client();
    let pairs = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    for o in objects() {
        assert_eq!(tags(&c, &none, o.key).await, vec![], "{}: --tags none", o.key);
        assert_eq!(
            tags(&c, &set, o.key).await,
            pairs(&[("env", "prod"), ("owner", "ferry")]),
            "{}: --tags K=V",
            o.key
        );
    }
    let bad = sync(
        format!("s3://{src}/"),
        &set,
        &rgw.endpoint,
        &moto,
        work.path(),
        &["--tags", "env"],
    );
    let out = run(finder(&bad, &envs));
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("--tags: \"env\": expected copy, none, or KEY=VALUE"),
        "{}",
        output_text(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_side_copy_keeps_or_replaces_tags() {
    let rgw = rgw();
    let src = rgw.bucket("tagss-src").await;
    let (kept, replaced) = (rgw.bucket("tagss-kept").await, rgw.bucket("tagss-repl").await);
    seed(&rgw, &src).await;
    let proxy = Proxy::start(&rgw.endpoint).await;
    let work = tempfile::tempdir().unwrap();
    let envs = [rgw.envs("src"), rgw.envs("dest")].concat();
    for (dst, extra) in [(&kept, vec![]), (&replaced, vec!["--tags", "copied=server-side"])] {
        let mut args = sync(format!("s3://{src}/"), dst, &proxy.endpoint, &rgw, work.path(), &extra);
        // Both sides at the same endpoint: copied inside the store.
        let at = args.iter().position(|a| a == "--dest-endpoint").unwrap();
        args[at + 1] = proxy.endpoint.clone();
        let out = run(finder(&args, &envs));
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let ops: Vec<String> = proxy.seen().iter().map(|s| s.operation()).collect();
    assert!(
        !ops.iter().any(|o| o == "GetObject"),
        "copied inside the store: {ops:?}"
    );
    assert!(
        ops.iter().any(|o| o == "UploadPartCopy"),
        "the big object in parts: {ops:?}"
    );
    let c = rgw.client();
    assert_eq!(
        carried(&c, &kept).await,
        carried(&c, &src).await,
        "tags and metadata kept"
    );
    for o in objects() {
        assert_eq!(
            tags(&c, &replaced, o.key).await,
            vec![("copied".to_string(), "server-side".to_string())],
            "{}",
            o.key
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_and_tags_answered_under_oss_names_are_carried() {
    let (rgw, moto) = (rgw(), moto());
    let (src, dst) = (rgw.bucket("tagoss-src").await, moto.bucket("tagoss-dst").await);
    seed(&rgw, &src).await;
    let proxy = Proxy::start_rewriting(
        &rgw.endpoint,
        Answers {
            vendor: Some("oss"),
            ..Default::default()
        },
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    let args = sync(
        format!("oss://{src}/"),
        &dst,
        &proxy.endpoint,
        &moto,
        work.path(),
        &["--src-region", "cn-hangzhou"],
    );
    let out = run(finder(&args, &envs));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        carried(&moto.client(), &dst).await,
        carried(&rgw.client(), &src).await,
        "x-oss-meta-* and x-oss-tagging-count read as S3's own"
    );
}
