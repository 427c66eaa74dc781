//! ferry as a gateway's client, end to end: `ferry-finder ./dir
//! gateway+http://HOST/PREFIX --gateway-token-file F` run as a process
//! holding no storage keys (no AWS or FERRY settings, an empty home),
//! `ferry-gateway` in front of a radosgw bucket, the bytes read back by the
//! raw S3 client. A tree with small, empty, exactly-5-MiB, multi-part and oddly
//! named files arrives and a second run finds it identical; a run killed with
//! SIGKILL mid-upload resumes from the gateway's part list and sends only the
//! parts the store does not hold (counted at a proxy in front of the store);
//! a URL that expires on its way is renewed by the client; a bucket that
//! encrypts with KMS (opaque ETags) is uploaded to and verified.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::gateway::{issue, Gateway};
use ferry_tests::proxy::{FaultKind, Faults, Proxy};
use ferry_tests::*;

const MIB: usize = 1024 * 1024;

/// `ferry-finder SRC gateway+http://ADDR/tree/` with the token in a file
/// and nothing else: no keys, no AWS settings, a home with no config.
fn client(g: &Gateway, dir: &Path, src: &Path, token: &str, extra: &[&str]) -> Command {
    client_of(g, "tree/", dir, src, token, extra)
}

/// [`client`] for the gateway's `prefix`.
fn client_of(g: &Gateway, prefix: &str, dir: &Path, src: &Path, token: &str, extra: &[&str]) -> Command {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut args = vec![
        src.display().to_string(),
        format!("gateway+http://{}/{prefix}", g.addr),
        "--gateway-token-file".into(),
        token_file.display().to_string(),
        "--state".into(),
        dir.join("client.db").display().to_string(),
        "--part-size".into(),
        "5MiB".into(),
        "--multipart-threshold".into(),
        "8MiB".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut c = finder(&args, &[]);
    c.env("HOME", &home)
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("none"))
        .env("AWS_CONFIG_FILE", home.join("none"));
    c
}

/// Runs the client to the end of its run, which must succeed; answers its output.
fn synced(g: &Gateway, dir: &Path, src: &Path, token: &str, extra: &[&str]) -> String {
    let out = run(client(g, dir, src, token, extra));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    text
}

/// Writes `files` under `src`; answers them as key → bytes.
fn seed(src: &Path, files: Vec<(&str, Vec<u8>)>) -> BTreeMap<String, Vec<u8>> {
    let tree: BTreeMap<String, Vec<u8>> = files.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    write_tree(src, &tree);
    tree
}

fn summary_count(out: &str, label: &str) -> u64 {
    ferry_tests::fleet::count(&without_colours(out), label)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tree_goes_through_the_gateway_from_a_machine_without_keys() {
    let rgw = rgw();
    let bucket = rgw.bucket("gw-sync").await;
    let dir = tempfile::tempdir().unwrap();
    let token = issue(dir.path(), &["--id", "field-1", "--prefix", "tree/"]);
    let g = Gateway::start(&rgw, &bucket, dir.path(), &[]);
    let src = dir.path().join("src");
    let tree = seed(
        &src,
        vec![
            ("small.txt", data(1000, 1)),
            ("empty.txt", Vec::new()),
            ("exactly-5mib.bin", data(5 * MIB, 2)),
            ("sub/twelve.bin", data(12 * MIB + 7, 3)),
            // Keys are opaque: spaces, '+', '%', '&', '=' and unicode round-trip.
            ("odd/a b+c%20d&e=f ü.txt", data(700, 4)),
        ],
    );

    let text = synced(&g, dir.path(), &src, &token, &[]);
    assert_eq!(summary_count(&text, "transferred"), 5, "{text}");
    assert_eq!(summary_count(&text, "failed"), 0, "{text}");
    let want: BTreeMap<String, Vec<u8>> = tree.iter().map(|(k, v)| (format!("up/tree/{k}"), v.clone())).collect();
    assert_same("uploaded by the client", &want, &rgw.read_all(&bucket, "").await);
    let twelve = rgw
        .client()
        .head_object()
        .bucket(&bucket)
        .key("up/tree/sub/twelve.bin")
        .send()
        .await
        .unwrap();
    assert!(twelve.e_tag().unwrap().ends_with("-3\""), "{:?}", twelve.e_tag());
    assert_eq!(rgw.uploads(&bucket).await, 0, "no upload left open");

    let text = synced(&g, dir.path(), &src, &token, &[]);
    assert_eq!(summary_count(&text, "identical"), 5, "{text}");
    assert_eq!(summary_count(&text, "transferred"), 0, "{text}");

    std::fs::write(src.join("small.txt"), data(1500, 9)).unwrap();
    let text = synced(&g, dir.path(), &src, &token, &[]);
    assert_eq!(summary_count(&text, "transferred"), 1, "{text}");
    assert_eq!(
        rgw.read_all(&bucket, "up/tree/small").await["up/tree/small.txt"],
        data(1500, 9)
    );

    // Outside the token's prefix: refused, with the gateway's reason.
    let other = run(client_of(&g, "elsewhere/", dir.path(), &src, &token, &[]));
    let text = output_text(&other);
    assert!(!other.status.success(), "{text}");
    assert!(text.contains("outside token field-1's prefix"), "{text}");
}

/// The parts of the store's one open upload of `key`.
async fn held_parts(rgw: &Server, bucket: &str, key: &str) -> Vec<i32> {
    let c = rgw.client();
    let uploads = c.list_multipart_uploads().bucket(bucket).send().await.unwrap();
    let Some(up) = uploads.uploads().iter().find(|u| u.key() == Some(key)) else {
        return Vec::new();
    };
    let parts = c
        .list_parts()
        .bucket(bucket)
        .key(key)
        .upload_id(up.upload_id().unwrap())
        .send()
        .await
        .unwrap();
    parts.parts().iter().filter_map(|p| p.part_number()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_client_resumes_and_sends_only_the_missing_parts() {
    let rgw = rgw();
    let bucket = rgw.bucket("gw-resume").await;
    let store = Proxy::start(&rgw.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let token = issue(dir.path(), &["--id", "field-2", "--prefix", "tree/"]);
    let g = Gateway::start_at(&rgw, &store.endpoint, &bucket, dir.path(), &[]);
    let src = dir.path().join("src");
    let body = data(40 * MIB + 3, 21);
    write_tree(&src, &BTreeMap::from([("big.bin".to_string(), body.clone())]));
    let slow = ["--concurrency", "1", "--bwlimit", "5M"];

    let mut first = client(&g, dir.path(), &src, &token, &slow)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while held_parts(&rgw, &bucket, "up/tree/big.bin").await.len() < 3 {
        assert!(t.elapsed() < Duration::from_secs(60), "3 parts were not sent in time");
        assert!(
            first.try_wait().unwrap().is_none(),
            "the client ended before it was killed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let held = held_parts(&rgw, &bucket, "up/tree/big.bin").await;
    assert!(held.len() < 9, "killed mid-upload: {held:?}");
    store.reset();

    // The killed run's job is resumed by this run's worker, under that run.
    let text = synced(&g, dir.path(), &src, &token, &[]);
    assert_eq!(summary_count(&text, "in progress"), 1, "{text}");
    assert!(!text.contains("up to date"), "{text}");
    let sent = store.count("UploadPart");
    assert_eq!(
        sent,
        9 - held.len(),
        "only the parts not held ({held:?}) are sent again"
    );
    assert_eq!(
        store.count("CreateMultipartUpload"),
        0,
        "the upload is resumed, not made again"
    );
    assert_eq!(rgw.read_all(&bucket, "up/tree/").await["up/tree/big.bin"], body);
    assert_eq!(rgw.uploads(&bucket).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_url_that_expires_on_its_way_is_renewed() {
    let rgw = rgw();
    let bucket = rgw.bucket("gw-expiry").await;
    let faults = Faults {
        ops: vec!["UploadPart"],
        every: 1,
        limit: 1,
        kinds: vec![FaultKind::Stall(Duration::from_millis(4500))],
        ..Default::default()
    };
    let store = Proxy::start_faulty(&rgw.endpoint, faults).await;
    let dir = tempfile::tempdir().unwrap();
    let token = issue(dir.path(), &["--id", "field-3", "--prefix", "tree/"]);
    // Signatures date to the second: a 3 s URL lives 2 to 3 s.
    let g = Gateway::start_at(&rgw, &store.endpoint, &bucket, dir.path(), &["--url-ttl", "3s"]);
    let src = dir.path().join("src");
    let body = data(11 * MIB, 31);
    write_tree(&src, &BTreeMap::from([("late.bin".to_string(), body.clone())]));

    synced(&g, dir.path(), &src, &token, &["--concurrency", "1"]);
    assert_eq!(store.faults().len(), 1, "one part was held past its URL's life");
    assert_eq!(store.count("UploadPart"), 4, "3 parts, one of them sent again");
    assert_eq!(rgw.read_all(&bucket, "up/tree/").await["up/tree/late.bin"], body);
}

/// A bucket that encrypts with KMS answers opaque ETags (moto behind a
/// proxy that answers as S3 does for such a bucket): the gateway and its
/// client learn it from the store's answers and prove uploads by the
/// signed Content-MD5 the store accepted, and sizes.
#[tokio::test(flavor = "multi_thread")]
async fn an_encrypting_bucket_is_uploaded_to_without_md5_etags() {
    // moto as the store: the proxy rewrites the part list of a completion,
    // which only a server that does not sign-check bodies accepts.
    let moto = moto();
    let bucket = moto.bucket("gw-kms").await;
    let store = Proxy::start_encrypting(&moto.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let token = issue(dir.path(), &["--id", "field-4", "--prefix", "tree/"]);
    let g = Gateway::start_at(&moto, &store.endpoint, &bucket, dir.path(), &[]);
    let src = dir.path().join("src");
    let tree = seed(
        &src,
        vec![("small.txt", data(2000, 51)), ("big.bin", data(12 * MIB + 9, 52))],
    );

    let text = synced(&g, dir.path(), &src, &token, &[]);
    assert_eq!(summary_count(&text, "transferred"), 2, "{text}");
    let want: BTreeMap<String, Vec<u8>> = tree.iter().map(|(k, v)| (format!("up/tree/{k}"), v.clone())).collect();
    assert_same(
        "uploaded to an encrypting bucket",
        &want,
        &moto.read_all(&bucket, "").await,
    );
    let text = synced(&g, dir.path(), &src, &token, &[]);
    assert_eq!(summary_count(&text, "identical"), 2, "{text}");
}
