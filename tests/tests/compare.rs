//! Change detection end to end: same-size edits found in every direction,
//! modification times kept (and read back by rclone), second runs that
//! transfer, hash and ask nothing, `verify --compare checksum` finding a
//! damaged destination.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_tests::*;

const MIB: usize = 1024 * 1024;
/// 2020-09-13 12:26:40.123456789 UTC.
const T0: Duration = Duration::new(1_600_000_000, 123_456_789);

fn set_mtime(path: &Path, t: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(UNIX_EPOCH + t))
        .unwrap_or_else(|e| panic!("set the mtime of {}: {e}", path.display()));
}

fn mtime(path: &Path) -> Duration {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| t.duration_since(UNIX_EPOCH).unwrap())
        .unwrap_or_else(|e| panic!("mtime of {}: {e}", path.display()))
}

/// Rewrites a file with other bytes of the same size, keeping its length.
fn edit_same_size(path: &Path, seed: u64) {
    let len = std::fs::metadata(path).unwrap().len() as usize;
    std::fs::write(path, data(len, seed)).unwrap();
    // A time clearly after the first sync, whatever the file system's clock granularity.
    set_mtime(
        path,
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(2),
    );
}

fn files() -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        ("small.txt".to_string(), data(10_000, 1)),
        ("dir/multipart.bin".to_string(), data(6 * MIB + 3, 2)),
    ])
}

fn sync_args(src: String, dest: String, state: &Path, extra: &[String]) -> Vec<String> {
    let mut a = vec![src, dest, "--workers".into(), "4".into()];
    a.extend(["--multipart-threshold", "5MiB", "--part-size", "5MiB"].map(String::from));
    a.extend(["--state".into(), state.display().to_string()]);
    a.extend(extra.iter().cloned());
    a
}

/// The arguments and environment of a sync between two servers.
fn between(
    from: (&Server, String),
    to: (&Server, String),
    state: &Path,
    more: &[&str],
) -> (Vec<String>, Vec<(String, String)>) {
    let mut extra = from.0.flags("src");
    extra.extend(to.0.flags("dest"));
    extra.extend(more.iter().map(|s| s.to_string()));
    let mut envs = from.0.envs("src");
    envs.extend(to.0.envs("dest"));
    (sync_args(from.1, to.1, state, &extra), envs)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The number before `label` in the finder's summary (`queued: 3 objects`).
fn count(out: &str, label: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"));
    line[line.find(label).unwrap() + label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count on {line:?}"))
}

/// The summary's `N files hashed` figure (0 when nothing needed comparing).
fn hashed(out: &str) -> u64 {
    out.lines()
        .find_map(|l| {
            l.split_once(" files hashed")
                .map(|(n, _)| n.trim().parse::<u64>().unwrap())
        })
        .unwrap_or(0)
}

/// `rclone lsl` of a bucket prefix on `server`: key → the time rclone reads.
fn rclone_times(server: &Server, bucket: &str) -> BTreeMap<String, String> {
    let mut rclone = std::process::Command::new("rclone");
    isolate(&mut rclone);
    let out = rclone
        .args(["lsl", &format!("t:{bucket}")])
        .env("TZ", "UTC")
        .env("RCLONE_CONFIG_T_TYPE", "s3")
        .env("RCLONE_CONFIG_T_PROVIDER", "Other")
        .env("RCLONE_CONFIG_T_ENDPOINT", &server.endpoint)
        .env("RCLONE_CONFIG_T_ACCESS_KEY_ID", &server.access_key)
        .env("RCLONE_CONFIG_T_SECRET_ACCESS_KEY", &server.secret_key)
        .env("RCLONE_CONFIG_T_FORCE_PATH_STYLE", "true")
        .output()
        .expect("rclone is installed by tests/servers/start.sh");
    assert!(
        out.status.success(),
        "rclone lsl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[3..].join(" "), format!("{} {}", f[1], f[2]))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn local_to_s3_finds_same_size_edits_keeps_mtimes_and_asks_nothing_twice() {
    let rgw = rgw();
    let bucket = rgw.bucket("cmp-l2s").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let files = files();
    write_tree(&src, &files);
    for k in files.keys() {
        set_mtime(&src.join(k), T0);
    }
    let state = work.path().join("state.sqlite");
    let args = sync_args(
        src.display().to_string(),
        format!("s3://{bucket}/"),
        &state,
        &rgw.flags("dest"),
    );
    let out = run(finder(&args, &rgw.envs("dest")));
    assert!(out.status.success());
    assert_same("first sync", &files, &rgw.read_all(&bucket, "").await);

    // rclone reads the source's time from the objects ferry wrote.
    let times = rclone_times(&rgw, &bucket);
    for k in files.keys() {
        let t = times.get(k).unwrap_or_else(|| panic!("rclone lists {k}: {times:?}"));
        assert!(t.starts_with("2020-09-13 12:26:40.123456"), "{k}: rclone reads {t}");
    }

    // Unchanged: the ledger decides, nothing is hashed or asked of the store.
    let again = stdout(&run(finder(&args, &rgw.envs("dest"))));
    assert!(again.contains("Nothing to transfer"), "{again}");
    assert!(again.contains("2 by the ledger"), "{again}");
    assert!(again.contains("0 HEAD requests"), "{again}");
    assert_eq!(hashed(&again), 0);

    // A same-size edit of each file is found and copied.
    for (i, k) in files.keys().enumerate() {
        edit_same_size(&src.join(k), 100 + i as u64);
    }
    let third = stdout(&run(finder(&args, &rgw.envs("dest"))));
    assert_eq!(count(&third, "queued:"), 2, "{third}");
    assert_same(
        "after same-size edits",
        &read_tree(&src),
        &rgw.read_all(&bucket, "").await,
    );

    // Without the ledger (a new state file) the objects' mtime metadata decides.
    let fresh = work.path().join("fresh.sqlite");
    let args = sync_args(
        src.display().to_string(),
        format!("s3://{bucket}/"),
        &fresh,
        &rgw.flags("dest"),
    );
    let fourth = stdout(&run(finder(&args, &rgw.envs("dest"))));
    assert!(fourth.contains("Nothing to transfer"), "{fourth}");
    assert!(fourth.contains("2 by modification time"), "{fourth}");
    assert_eq!(hashed(&fourth), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_to_local_finds_same_size_overwrites_and_keeps_the_sources_time() {
    let rgw = rgw();
    let bucket = rgw.bucket("cmp-s2l").await;
    let objects = files();
    rgw.put_all(&bucket, &objects).await;
    // An object written by rclone or ferry carries its source's time.
    rgw.client()
        .put_object()
        .bucket(&bucket)
        .key("with-mtime")
        .metadata("mtime", "1600000000.123456789")
        .body(data(100, 5).into())
        .send()
        .await
        .expect("put with metadata");
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    let state = work.path().join("state.sqlite");
    let args = sync_args(
        format!("s3://{bucket}/"),
        dest.display().to_string(),
        &state,
        &rgw.flags("src"),
    );
    assert!(run(finder(&args, &rgw.envs("src"))).status.success());
    let mut expect = objects.clone();
    expect.insert("with-mtime".into(), data(100, 5));
    assert_same("first sync", &expect, &read_tree(&dest));
    assert_eq!(mtime(&dest.join("with-mtime")), T0, "the recorded mtime is the file's");
    let head = rgw
        .client()
        .head_object()
        .bucket(&bucket)
        .key("small.txt")
        .send()
        .await
        .unwrap();
    let written = head.last_modified().unwrap().secs() as u64;
    assert_eq!(
        mtime(&dest.join("small.txt")).as_secs(),
        written,
        "else when the object was written"
    );

    let again = stdout(&run(finder(&args, &rgw.envs("src"))));
    assert!(again.contains("Nothing to transfer"), "{again}");
    assert!(again.contains("0 HEAD requests"), "{again}");

    // The source overwritten with other bytes of the same size.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    rgw.put_one(&bucket, "small.txt", &data(10_000, 77)).await;
    let third = stdout(&run(finder(&args, &rgw.envs("src"))));
    assert_eq!(count(&third, "queued:"), 1, "{third}");
    expect.insert("small.txt".into(), data(10_000, 77));
    assert_same("after the overwrite", &expect, &read_tree(&dest));

    // A new state file: the files' times match the sources', nothing is copied.
    let fresh = work.path().join("fresh.sqlite");
    let args = sync_args(
        format!("s3://{bucket}/"),
        dest.display().to_string(),
        &fresh,
        &rgw.flags("src"),
    );
    let fourth = stdout(&run(finder(&args, &rgw.envs("src"))));
    assert!(fourth.contains("Nothing to transfer"), "{fourth}");
    assert!(fourth.contains("3 by modification time"), "{fourth}");
}

#[tokio::test(flavor = "multi_thread")]
async fn local_to_local_finds_same_size_edits_and_keeps_mtimes() {
    let work = tempfile::tempdir().unwrap();
    let (src, dest) = (work.path().join("src"), work.path().join("dest"));
    let files = files();
    write_tree(&src, &files);
    set_mtime(&src.join("small.txt"), T0);
    let state = work.path().join("state.sqlite");
    let args = sync_args(src.display().to_string(), dest.display().to_string(), &state, &[]);
    assert!(run(finder(&args, &[])).status.success());
    assert_same("first sync", &files, &read_tree(&dest));
    for k in files.keys() {
        assert_eq!(mtime(&dest.join(k)), mtime(&src.join(k)), "{k} keeps its time");
    }
    let again = stdout(&run(finder(&args, &[])));
    assert!(again.contains("Nothing to transfer"), "{again}");
    edit_same_size(&src.join("small.txt"), 9);
    let third = stdout(&run(finder(&args, &[])));
    assert_eq!(count(&third, "queued:"), 1, "{third}");
    assert_same("after the edit", &read_tree(&src), &read_tree(&dest));
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_to_s3_finds_a_same_size_overwrite() {
    let (rgw, moto) = (rgw(), moto());
    let src_bucket = rgw.bucket("cmp-s2s").await;
    let dst_bucket = moto.bucket("cmp-s2s").await;
    let objects = files();
    rgw.put_all(&src_bucket, &objects).await;
    let work = tempfile::tempdir().unwrap();
    let (args, envs) = between(
        (&rgw, format!("s3://{src_bucket}/")),
        (&moto, format!("s3://{dst_bucket}/")),
        &work.path().join("state.sqlite"),
        &[],
    );
    assert!(run(finder(&args, &envs)).status.success());
    assert_same("first sync", &objects, &moto.read_all(&dst_bucket, "").await);
    assert!(stdout(&run(finder(&args, &envs))).contains("Nothing to transfer"));
    rgw.put_one(&src_bucket, "small.txt", &data(10_000, 55)).await;
    let third = stdout(&run(finder(&args, &envs)));
    assert_eq!(count(&third, "queued:"), 1, "{third}");
    assert_same(
        "after the overwrite",
        &rgw.read_all(&src_bucket, "").await,
        &moto.read_all(&dst_bucket, "").await,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn checksum_mode_hashes_each_file_once_and_verify_finds_damage() {
    let rgw = rgw();
    let bucket = rgw.bucket("cmp-sum").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut files = files();
    for i in 0..20 {
        files.insert(format!("many/{i:03}"), data(1000 + i, i as u64));
    }
    write_tree(&src, &files);
    let state = work.path().join("state.sqlite");
    let mut extra = rgw.flags("dest");
    extra.extend(["--compare".into(), "checksum".into()]);
    let args = sync_args(src.display().to_string(), format!("s3://{bucket}/"), &state, &extra);
    assert!(run(finder(&args, &rgw.envs("dest"))).status.success());
    assert_same("first sync", &files, &rgw.read_all(&bucket, "").await);

    // The copy kept each file's checksums (or multipart ETag): comparing reads none.
    for round in ["second", "third"] {
        let out = stdout(&run(finder(&args, &rgw.envs("dest"))));
        assert!(out.contains("Nothing to transfer"), "{round}: {out}");
        assert_eq!(hashed(&out), 0, "{round}: {out}");
        assert!(
            out.contains(&format!("{} checksums from the state file", files.len())),
            "{round}: {out}"
        );
    }

    // A same-size edit that keeps the file's time is content: checksum mode finds it.
    let path = src.join("many/007");
    let before = mtime(&path);
    std::fs::write(&path, data(1007, 999)).unwrap();
    set_mtime(&path, before + Duration::from_secs(1));
    let fourth = stdout(&run(finder(&args, &rgw.envs("dest"))));
    assert_eq!(count(&fourth, "queued:"), 1, "{fourth}");
    assert_eq!(hashed(&fourth), 1, "only the edited file is read: {fourth}");

    // Damage at the destination, same size: verify by checksums names it.
    rgw.put_one(&bucket, "many/003", &data(1003, 12345)).await;
    let mut verify = std::process::Command::new(bin("ferry-finder"));
    verify
        .args(["verify", &src.display().to_string(), &format!("s3://{bucket}/")])
        .args(["--compare", "checksum"])
        .args(rgw.flags("dest"));
    isolate(&mut verify);
    verify.envs(rgw.envs("dest"));
    let out = run(verify);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("different many/003: checksums md5="), "{text}");
    assert!(
        text.contains(&format!(
            "md5={}",
            hex::encode(ferry_core::etag::md5(&files["many/003"]))
        )),
        "{text}"
    );
    assert!(text.contains("different:        1 objects"), "{text}");
    assert!(text.contains("(0 compared by content)"), "no body was read: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kms_encrypted_destinations_are_verified_without_a_flag() {
    let (rgw, moto) = (rgw(), moto());
    let bucket = moto.bucket("cmp-kms").await;
    let proxy = ferry_tests::proxy::Proxy::start_encrypting(&moto.endpoint).await;
    let kms = Server {
        name: "moto as an SSE-KMS bucket",
        endpoint: proxy.endpoint.clone(),
        ..moto.clone()
    };
    // The simulation is on: ETags are not the MD5s, and the header says KMS.
    let probe = kms
        .client()
        .put_object()
        .bucket(&bucket)
        .key("probe")
        .body(b"abc".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_ne!(
        probe.e_tag().unwrap().trim_matches('"'),
        hex::encode(ferry_core::etag::md5(b"abc"))
    );
    assert_eq!(probe.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"));
    kms.client()
        .delete_object()
        .bucket(&bucket)
        .key("probe")
        .send()
        .await
        .unwrap();

    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let files = files();
    write_tree(&src, &files);
    let state = work.path().join("state.sqlite");
    let args = sync_args(
        src.display().to_string(),
        format!("s3://{bucket}/up/"),
        &state,
        &kms.flags("dest"),
    );
    let out = run(finder(&args, &kms.envs("dest")));
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(count(&text, "failed:"), 0, "{text}");
    let expect: BTreeMap<String, Vec<u8>> = files.iter().map(|(k, v)| (format!("up/{k}"), v.clone())).collect();
    assert_same("local -> KMS bucket", &expect, &moto.read_all(&bucket, "up/").await);
    let again = stdout(&run(finder(&args, &kms.envs("dest"))));
    assert!(again.contains("Nothing to transfer"), "{again}");

    // S3 -> KMS bucket: MD5 ETags at the source, opaque ones at the destination.
    let src_bucket = rgw.bucket("cmp-kms-src").await;
    rgw.put_all(&src_bucket, &files).await;
    let (args, envs) = between(
        (&rgw, format!("s3://{src_bucket}/")),
        (&kms, format!("s3://{bucket}/copy/")),
        &work.path().join("s3.sqlite"),
        &[],
    );
    let out = run(finder(&args, &envs));
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(count(&text, "failed:"), 0, "{text}");
    let expect: BTreeMap<String, Vec<u8>> = files.iter().map(|(k, v)| (format!("copy/{k}"), v.clone())).collect();
    assert_same("radosgw -> KMS bucket", &expect, &moto.read_all(&bucket, "copy/").await);
    let again = stdout(&run(finder(&args, &envs)));
    assert!(again.contains("Nothing to transfer"), "{again}");
    assert!(again.contains("2 by the ledger"), "{again}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oss_style_crc_proves_what_was_read_end_to_end() {
    use ferry_tests::proxy::{Answers, Proxy};
    let rgw = rgw();
    let bucket = rgw.bucket("cmp-crc").await;
    let objects = files();
    rgw.put_all(&bucket, &objects).await;
    let crcs: std::collections::HashMap<String, u64> = objects
        .iter()
        .map(|(k, v)| (format!("/{bucket}/{k}"), ferry_core::checksum::crc64ecma(v)))
        .collect();
    let work = tempfile::tempdir().unwrap();
    let copy = |proxy: &Proxy, dir: &str| {
        let oss = Server {
            name: "radosgw answering as OSS",
            endpoint: proxy.endpoint.clone(),
            ..rgw.clone()
        };
        let dest = work.path().join(dir);
        let mut extra = oss.flags("src");
        extra.extend(["--max-attempts".into(), "1".into()]);
        let state = work.path().join(format!("{dir}.sqlite"));
        let args = sync_args(format!("s3://{bucket}/"), dest.display().to_string(), &state, &extra);
        (run(finder(&args, &oss.envs("src"))), dest)
    };

    // The CRCs OSS would send: both objects (one read in parts) arrive.
    let honest = Proxy::start_rewriting(
        &rgw.endpoint,
        Answers {
            crc64ecma: crcs.clone(),
            ..Default::default()
        },
    )
    .await;
    let (out, dest) = copy(&honest, "good");
    assert!(out.status.success(), "{}", stdout(&out));
    assert_same("read with CRCs", &objects, &read_tree(&dest));

    // Bytes that do not match the store's CRC are never written.
    let lying = Proxy::start_rewriting(
        &rgw.endpoint,
        Answers {
            crc64ecma: crcs.into_iter().map(|(k, v)| (k, v ^ 1)).collect(),
            ..Default::default()
        },
    )
    .await;
    let (out, dest) = copy(&lying, "bad");
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert_eq!(count(&text, "failed:"), 2, "{text}");
    assert!(text.contains("CRC-64/ECMA of the bytes read from the source"), "{text}");
    let written = if dest.exists() {
        read_tree(&dest)
    } else {
        BTreeMap::new()
    };
    assert!(written.is_empty(), "nothing written: {:?}", written.keys());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_crc64nvme_s3_keeps_must_match_the_bytes_sent() {
    use ferry_tests::proxy::{Answers, Proxy};
    let rgw = rgw();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let files = files();
    write_tree(&src, &files);
    let sync = |proxy: &Proxy, bucket: &str, state: &str| {
        let s3 = Server {
            name: "radosgw answering with CRC-64/NVME",
            endpoint: proxy.endpoint.clone(),
            ..rgw.clone()
        };
        let mut extra = s3.flags("dest");
        extra.extend(["--max-attempts".into(), "1".into()]);
        let args = sync_args(
            src.display().to_string(),
            format!("s3://{bucket}/"),
            &work.path().join(state),
            &extra,
        );
        run(finder(&args, &s3.envs("dest")))
    };
    let answers = |bucket: &str, flip: u64| Answers {
        crc64nvme: files
            .iter()
            .map(|(k, v)| (format!("/{bucket}/{k}"), ferry_core::checksum::crc64nvme(v) ^ flip))
            .collect(),
        ..Default::default()
    };

    let good = rgw.bucket("cmp-nvme").await;
    let honest = Proxy::start_rewriting(&rgw.endpoint, answers(&good, 0)).await;
    let out = sync(&honest, &good, "good.sqlite");
    assert!(out.status.success(), "{}", stdout(&out));
    assert_same("CRC-64/NVME agrees", &files, &rgw.read_all(&good, "").await);

    // The store keeps a CRC that is not the one of the bytes sent: the
    // multipart object (checked after completion) fails, the job is not done.
    let bad = rgw.bucket("cmp-nvme-bad").await;
    let lying = Proxy::start_rewriting(&rgw.endpoint, answers(&bad, 1)).await;
    let out = sync(&lying, &bad, "bad.sqlite");
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAILED dir/multipart.bin"), "{text}");
    assert!(text.contains("destination CRC-64/NVME"), "{text}");
}

/// moto behind a proxy that checks `x-amz-checksum-crc64nvme` as S3 does
/// (moto ignores the header), and the server as ferry reaches it.
async fn checking_crc64nvme(moto: &Server) -> (ferry_tests::proxy::Proxy, Server) {
    let answers = ferry_tests::proxy::Answers {
        check_crc64nvme: true,
        ..Default::default()
    };
    let proxy = ferry_tests::proxy::Proxy::start_rewriting(&moto.endpoint, answers).await;
    let s3 = Server {
        name: "moto checking CRC-64/NVME",
        endpoint: proxy.endpoint.clone(),
        ..moto.clone()
    };
    (proxy, s3)
}

#[tokio::test(flavor = "multi_thread")]
async fn crc64nvme_is_sent_with_uploads_and_kept_by_the_store() {
    let moto = moto();
    let bucket = moto.bucket("cmp-send-nvme").await;
    let (proxy, s3) = checking_crc64nvme(&moto).await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let files = files();
    write_tree(&src, &files);
    let mut extra = s3.flags("dest");
    extra.extend(["--dest-crc64nvme".into(), "true".into()]);
    let args = sync_args(
        src.display().to_string(),
        format!("s3://{bucket}/"),
        &work.path().join("s.sqlite"),
        &extra,
    );
    let out = run(finder(&args, &s3.envs("dest")));
    assert!(out.status.success(), "{}", stdout(&out));
    assert_same("sent with CRCs", &files, &moto.read_all(&bucket, "").await);
    // One PUT, two parts and one completion carried a CRC the proxy verified.
    assert_eq!(proxy.crc_checked(), 4);
    for (k, v) in &files {
        let head = s3
            .client()
            .head_object()
            .bucket(&bucket)
            .key(k)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let kept = head
            .checksum_crc64_nvme()
            .and_then(ferry_core::checksum::crc64_from_base64);
        assert_eq!(kept, Some(ferry_core::checksum::crc64nvme(v)), "{k}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_by_checksum_uses_the_ledgers_crc_of_objects_sent_in_parts() {
    let (rgw, moto) = (rgw(), moto());
    let src_bucket = rgw.bucket("cmp-ledger-src").await;
    let body = data(6 * MIB + 3, 8);
    rgw.put_multipart(&src_bucket, "big", &body, &[5 * MIB, MIB + 3]).await;
    let dst_bucket = moto.bucket("cmp-ledger-dst").await;
    let (_proxy, s3) = checking_crc64nvme(&moto).await;
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("s.sqlite");
    let (args, envs) = between(
        (&rgw, format!("s3://{src_bucket}/")),
        (&s3, format!("s3://{dst_bucket}/")),
        &state,
        &["--dest-crc64nvme", "true"],
    );
    assert!(run(finder(&args, &envs)).status.success());

    // radosgw keeps no CRC and its multipart ETag is no MD5: only the ledger's
    // record of the CRC sent, against the one the destination keeps, avoids
    // reading both bodies.
    let mut verify = std::process::Command::new(bin("ferry-finder"));
    verify
        .args(["verify", &format!("s3://{src_bucket}/"), &format!("s3://{dst_bucket}/")])
        .args(["--compare", "checksum", "--state", &state.display().to_string()])
        .args(rgw.flags("src"))
        .args(s3.flags("dest"));
    isolate(&mut verify);
    verify.envs(envs.clone());
    let out = run(verify);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("identical:        1 objects"), "{text}");
    assert!(text.contains("(0 compared by content)"), "no body read: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_tools_part_layout_does_not_make_equal_content_differ() {
    let rgw = rgw();
    let bucket = rgw.bucket("cmp-layout").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let body = data(9 * MIB + 7, 21);
    let files = BTreeMap::from([("big.bin".to_string(), body.clone())]);
    write_tree(&src, &files);
    // Uploaded by another tool in 8 MiB parts; ferry's own would be 5 MiB, and
    // radosgw does not say (it ignores `partNumber`).
    rgw.put_multipart(&bucket, "big.bin", &body, &[8 * MIB, MIB + 7]).await;
    let args = sync_args(
        src.display().to_string(),
        format!("s3://{bucket}/"),
        &work.path().join("s.sqlite"),
        &[rgw.flags("dest"), vec!["--compare".into(), "checksum".into()]].concat(),
    );
    let out = stdout(&run(finder(&args, &rgw.envs("dest"))));
    assert!(out.contains("Nothing to transfer"), "{out}");
    assert!(out.contains("1 by content"), "{out}");
    // ferry's own 5 MiB layout is tried first, then 8 MiB matches.
    assert_eq!(hashed(&out), 2, "{out}");
    // The layout that matched is remembered: the next run reads nothing.
    let out = stdout(&run(finder(&args, &rgw.envs("dest"))));
    assert!(out.contains("Nothing to transfer"), "{out}");
    assert_eq!(hashed(&out), 0, "{out}");
    // A same-size edit under the same layout is a difference.
    let edited = data(9 * MIB + 7, 22);
    std::fs::write(src.join("big.bin"), &edited).unwrap();
    let out = stdout(&run(finder(&args, &rgw.envs("dest"))));
    assert_eq!(count(&out, "queued:"), 1, "{out}");
    assert_same("after the edit", &read_tree(&src), &rgw.read_all(&bucket, "").await);
}
