//! The upload gateway end to end: `ferry-gateway serve` in front of a
//! radosgw bucket, and a client that holds no keys — raw HTTP to the
//! gateway and to the presigned URLs it hands out. Small, exactly-5-MiB
//! and multi-part objects arrive and are read back by the raw S3 client; a
//! client resumes from the gateway's part list; a tampered part is refused
//! by the store and the upload does not complete; expired URLs are renewed;
//! a token outside its prefix, over its uploads or bytes, unknown or
//! expired is refused and nothing is created; an abandoned upload is
//! aborted after its time.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ferry_tests::gateway::{command, issue, Gateway};
use ferry_tests::*;
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;

fn md5_hex(b: &[u8]) -> String {
    hex::encode(ferry_core::etag::md5(b))
}

/// PUTs `body` to a part's presigned request; answers the store's status.
fn put_part(part: &Value, body: &[u8]) -> u16 {
    let headers: Vec<(String, String)> = part["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_str().unwrap().to_string(), h[1].as_str().unwrap().to_string()))
        .collect();
    http_request("PUT", part["url"].as_str().unwrap(), &headers, body).0
}

fn slice<'a>(body: &'a [u8], part: &Value, part_size: u64) -> &'a [u8] {
    let n = part["number"].as_u64().unwrap();
    let start = ((n - 1) * part_size) as usize;
    &body[start..start + part["size"].as_u64().unwrap() as usize]
}

/// Creates an upload of `body` with its parts' MD5s declared.
fn create(g: &Gateway, token: &str, key: &str, body: &[u8], part_size: usize) -> (u16, Value) {
    let md5s: Vec<String> = if body.len() < 5 * MIB {
        vec![md5_hex(body)]
    } else {
        body.chunks(part_size).map(md5_hex).collect()
    };
    let req = json!({"key": key, "size": body.len(), "part_size": part_size, "md5s": md5s});
    g.call("POST", "/v1/uploads", token, Some(req))
}

/// Uploads `body` through the gateway: create, every part, complete.
fn upload(g: &Gateway, token: &str, key: &str, body: &[u8]) -> Value {
    let (status, up) = create(g, token, key, body, 5 * MIB);
    assert_eq!(status, 200, "{up}");
    let ps = up["part_size"].as_u64().unwrap();
    for part in up["parts"].as_array().unwrap() {
        assert_eq!(put_part(part, slice(body, part, ps)), 200, "part {}", part["number"]);
    }
    let (status, done) = g.call(
        "POST",
        &format!("/v1/uploads/{}/complete", up["id"].as_str().unwrap()),
        token,
        None,
    );
    assert_eq!(status, 200, "{done}");
    done
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tree_goes_through_presigned_urls_resumes_and_refuses_tampering() {
    let rgw = rgw();
    let bucket = rgw.bucket("gw").await;
    let dir = tempfile::tempdir().unwrap();
    let token = issue(dir.path(), &["--id", "dev-1"]);
    let g = Gateway::start(&rgw, &bucket, dir.path(), &[]);

    let tree: BTreeMap<String, Vec<u8>> = [
        ("small.txt", data(1000, 1)),
        ("exactly-5mib.bin", data(5 * MIB, 2)),
        ("parts/twelve.bin", data(12 * MIB + 7, 3)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in &tree {
        let done = upload(&g, &token, k, v);
        assert_eq!(done["size"], v.len(), "{done}");
    }
    let want: BTreeMap<String, Vec<u8>> = tree.iter().map(|(k, v)| (format!("up/{k}"), v.clone())).collect();
    assert_same("uploaded through the gateway", &want, &rgw.read_all(&bucket, "").await);
    let twelve = rgw
        .client()
        .head_object()
        .bucket(&bucket)
        .key("up/parts/twelve.bin")
        .send()
        .await
        .unwrap();
    assert!(
        twelve.e_tag().unwrap().ends_with("-3\""),
        "three parts: {:?}",
        twelve.e_tag()
    );

    // Resume: one part sent, the gateway lists it and signs the others again.
    let body = data(11 * MIB, 4);
    let (_, up) = create(&g, &token, "resumed.bin", &body, 5 * MIB);
    let (id, ps) = (up["id"].as_str().unwrap().to_string(), 5 * MIB as u64);
    assert_eq!(put_part(&up["parts"][0], slice(&body, &up["parts"][0], ps)), 200);
    let (status, again) = g.call("GET", &format!("/v1/uploads/{id}"), &token, None);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["held"].as_array().unwrap().len(), 1, "{again}");
    let rest = again["parts"].as_array().unwrap();
    assert_eq!(
        rest.iter().map(|p| p["number"].as_u64().unwrap()).collect::<Vec<_>>(),
        vec![2, 3]
    );
    for p in rest {
        assert_eq!(put_part(p, slice(&body, p, ps)), 200);
    }
    let (status, _) = g.call("POST", &format!("/v1/uploads/{id}/complete"), &token, None);
    assert_eq!(status, 200);
    assert_eq!(rgw.read_all(&bucket, "up/resumed").await["up/resumed.bin"], body);

    // Tampering: other bytes under a URL bound to the declared MD5.
    let body = data(6 * MIB, 5);
    let (_, up) = create(&g, &token, "tampered.bin", &body, 5 * MIB);
    let first = &up["parts"][0];
    let mut other = slice(&body, first, ps).to_vec();
    other[100] ^= 1;
    assert_ne!(
        put_part(first, &other),
        200,
        "the store refuses bytes that are not the declared part"
    );
    let mut headers: Vec<(String, String)> = vec![(
        "Content-MD5".into(),
        base64::engine::general_purpose::STANDARD.encode(ferry_core::etag::md5(&other)),
    )];
    headers.push(("Content-Type".into(), "application/octet-stream".into()));
    let (status, _) = http_request("PUT", first["url"].as_str().unwrap(), &headers, &other);
    assert_eq!(status, 403, "another MD5 breaks the URL's signature");
    assert_eq!(put_part(&up["parts"][1], slice(&body, &up["parts"][1], ps)), 200);
    let id = up["id"].as_str().unwrap();
    let (status, refused) = g.call("POST", &format!("/v1/uploads/{id}/complete"), &token, None);
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["missing"], json!([1]), "{refused}");
    assert!(!rgw
        .read_all(&bucket, "up/tampered")
        .await
        .contains_key("up/tampered.bin"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_limited_and_refusals_create_nothing() {
    let rgw = rgw();
    let bucket = rgw.bucket("gw-tokens").await;
    let dir = tempfile::tempdir().unwrap();
    let limited = issue(
        dir.path(),
        &[
            "--id",
            "limited",
            "--prefix",
            "dev1/",
            "--uploads",
            "2",
            "--bytes",
            "1MiB",
        ],
    );
    let brief = issue(dir.path(), &["--id", "brief", "--expires", "1s"]);
    let g = Gateway::start(&rgw, &bucket, dir.path(), &[]);
    let small = data(1000, 9);
    let refused = |status: u16, v: &Value, says: &str| {
        assert!(v["error"].as_str().is_some_and(|e| e.contains(says)), "{status}: {v}");
    };

    let (s, v) = create(&g, &limited, "elsewhere/a.txt", &small, 5 * MIB);
    assert_eq!(s, 403);
    refused(s, &v, "outside");
    let (s, v) = create(&g, &format!("{limited}x"), "dev1/a.txt", &small, 5 * MIB);
    assert_eq!(s, 401);
    refused(s, &v, "not one this gateway issued");
    let (s, v) = g.call("POST", "/v1/uploads", "", Some(json!({"key": "dev1/a", "size": 1})));
    assert_eq!(s, 401);
    refused(s, &v, "Bearer");
    let big = data(2 * MIB, 1);
    let (s, v) = create(&g, &limited, "dev1/big.bin", &big, 5 * MIB);
    assert_eq!(s, 413);
    refused(s, &v, "bytes");
    std::thread::sleep(Duration::from_millis(1100));
    let (s, v) = create(&g, &brief, "b.txt", &small, 5 * MIB);
    assert_eq!(s, 403);
    refused(s, &v, "expired");
    assert_eq!(rgw.uploads(&bucket).await, 0, "no upload was created for a refusal");

    upload(&g, &limited, "dev1/one.txt", &small);
    upload(&g, &limited, "dev1/two.txt", &small);
    let (s, v) = create(&g, &limited, "dev1/three.txt", &small, 5 * MIB);
    assert_eq!(s, 409);
    refused(s, &v, "2 upload(s)");
    let keys: Vec<String> = rgw.read_all(&bucket, "").await.into_keys().collect();
    assert_eq!(keys, vec!["up/dev1/one.txt", "up/dev1/two.txt"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_urls_are_renewed_and_abandoned_uploads_aborted() {
    let rgw = rgw();
    let bucket = rgw.bucket("gw-time").await;
    let dir = tempfile::tempdir().unwrap();
    let token = issue(dir.path(), &["--id", "t"]);
    let g = Gateway::start(&rgw, &bucket, dir.path(), &["--url-ttl", "1s", "--abort-after", "4s"]);
    let body = data(6 * MIB, 6);
    let ps = 5 * MIB as u64;

    let (_, up) = create(&g, &token, "late.bin", &body, 5 * MIB);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        put_part(&up["parts"][0], slice(&body, &up["parts"][0], ps)),
        403,
        "the URL expired"
    );
    let id = up["id"].as_str().unwrap();
    let (_, again) = g.call("GET", &format!("/v1/uploads/{id}"), &token, None);
    for p in again["parts"].as_array().unwrap() {
        assert_eq!(put_part(p, slice(&body, p, ps)), 200, "a renewed URL");
    }
    let (status, done) = g.call("POST", &format!("/v1/uploads/{id}/complete"), &token, None);
    assert_eq!(status, 200, "{done}");

    let (_, left) = create(&g, &token, "left.bin", &body, 5 * MIB);
    assert_eq!(put_part(&left["parts"][0], slice(&body, &left["parts"][0], ps)), 200);
    assert_eq!(rgw.uploads(&bucket).await, 1);
    let t = Instant::now();
    while rgw.uploads(&bucket).await > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the abandoned upload was not aborted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let id = left["id"].as_str().unwrap();
    let (status, v) = g.call("GET", &format!("/v1/uploads/{id}"), &token, None);
    assert_eq!(status, 410, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not completed within"), "{v}");
}

/// The documented walk-through (docs/GATEWAY.md, "One upload with curl"),
/// run as written with curl, split, md5sum and jq.
#[tokio::test(flavor = "multi_thread")]
async fn the_documented_curl_walk_through_uploads_a_file() {
    let rgw = rgw();
    let bucket = rgw.bucket("gw-curl").await;
    let dir = tempfile::tempdir().unwrap();
    let token = issue(dir.path(), &["--id", "field-7", "--prefix", "devices/7/"]);
    let g = Gateway::start(&rgw, &bucket, dir.path(), &[]);
    let doc = std::fs::read_to_string(root().join("docs/GATEWAY.md")).unwrap();
    let section = doc.split("## One upload with curl").nth(1).expect("the walk-through");
    let script = section
        .split("```sh")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .unwrap();
    let (first, rest) = script.trim_start().split_once('\n').unwrap();
    assert!(
        first.starts_with("GW="),
        "the walk-through starts by naming the gateway: {first}"
    );
    let body = data(12 * MIB + 7, 11);
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("a.bin"), &body).unwrap();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", rest])
        .current_dir(work.path())
        .env("GW", format!("http://{}", g.addr))
        .env("TOKEN", &token)
        .env("FILE", "a.bin")
        .output()
        .expect("bash");
    let printed = output_text(&out);
    assert!(
        out.status.success() && printed.contains("\"complete\":true"),
        "{printed}"
    );
    assert_eq!(rgw.read_all(&bucket, "up/devices/").await["up/devices/7/a.bin"], body);
}

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Tokens kept in a Secrets Manager secret (moto) instead of a file.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_can_live_in_a_secret() {
    let rgw = rgw();
    let bucket = rgw.bucket("gw-secret").await;
    let dir = tempfile::tempdir().unwrap();
    let token = issue(dir.path(), &["--id", "kept"]);
    let name = unique("gateway-tokens");
    let sm = aws_sdk_secretsmanager::Client::new(&aws_services().await);
    let json = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
    sm.create_secret().name(&name).secret_string(json).send().await.unwrap();
    std::fs::remove_file(dir.path().join("tokens.json")).unwrap();
    let g = Gateway::start(&rgw, &bucket, dir.path(), &["--tokens-secret", &name]);
    upload(&g, &token, "from-secret.txt", &data(2000, 3));
    let (s, _) = create(&g, &format!("{token}0"), "x.txt", &data(10, 1), 5 * MIB);
    assert_eq!(s, 401);
    assert!(rgw.read_all(&bucket, "").await.contains_key("up/from-secret.txt"));
}

/// As a function: the port comes from the platform (Function Compute's
/// FC_SERVER_PORT), no process sweeps, and `ferry-gateway sweep` run on a
/// schedule aborts what was abandoned.
#[tokio::test(flavor = "multi_thread")]
async fn as_a_function_the_platform_names_the_port_and_a_schedule_sweeps() {
    let rgw = rgw();
    let bucket = rgw.bucket("gw-fn").await;
    let dir = tempfile::tempdir().unwrap();
    let token = issue(dir.path(), &["--id", "fn"]);
    let addr = free_addr();
    let port = addr.rsplit_once(':').unwrap().1.to_string();
    let timing = ["--abort-after", "1s", "--sweep-every", "0"];
    let mut c = command("serve", &rgw, &bucket, dir.path(), &timing);
    c.env("FC_SERVER_PORT", &port);
    let g = Gateway::spawn(c, format!("127.0.0.1:{port}"));
    let body = data(6 * MIB, 8);
    let (_, up) = create(&g, &token, "left.bin", &body, 5 * MIB);
    assert_eq!(
        put_part(&up["parts"][0], slice(&body, &up["parts"][0], 5 * MIB as u64)),
        200
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(rgw.uploads(&bucket).await, 1, "no process sweeps with --sweep-every 0");
    let out = run(command("sweep", &rgw, &bucket, dir.path(), &["--abort-after", "1s"]));
    let printed = output_text(&out);
    assert!(
        out.status.success() && printed.contains("1 abandoned upload(s) aborted"),
        "{printed}"
    );
    assert_eq!(rgw.uploads(&bucket).await, 0);
}

/// A syncing client's calls: the objects it may see, in pages, and a URL
/// for a part bound to the MD5 it has just read (none declared up front);
/// another MD5 than a declared one is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_lists_its_objects_and_signs_parts_as_it_reads_them() {
    let rgw = rgw();
    let bucket = rgw.bucket("gw-client").await;
    let dir = tempfile::tempdir().unwrap();
    let token = issue(dir.path(), &["--id", "sync", "--prefix", "tree/"]);
    let g = Gateway::start(&rgw, &bucket, dir.path(), &[]);
    for i in 0..3 {
        upload(&g, &token, &format!("tree/{i} a+b.txt"), &data(100 + i, i as u64));
    }
    rgw.put_one(&bucket, "up/other/hidden.txt", b"not the token's").await;

    let (s, v) = g.call("GET", "/v1/objects?prefix=tree%2F", &token, None);
    assert_eq!(s, 200, "{v}");
    let keys: Vec<&str> = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["tree/0 a+b.txt", "tree/1 a+b.txt", "tree/2 a+b.txt"], "{v}");
    assert_eq!(v["objects"][1]["size"], 101);
    assert!(v["next"].is_null(), "one page: {v}");
    let (s, v) = g.call(
        "GET",
        "/v1/objects?prefix=tree%2F&after=tree%2F0%20a%2Bb.txt",
        &token,
        None,
    );
    assert_eq!((s, v["objects"].as_array().unwrap().len()), (200, 2), "{v}");
    let (s, v) = g.call("GET", "/v1/objects?prefix=other%2F", &token, None);
    assert_eq!(s, 403, "{v}");

    // Parts signed one by one, as they are read.
    let body = data(11 * MIB, 12);
    let req = json!({"key": "tree/big.bin", "size": body.len(), "part_size": 5 * MIB});
    let (s, up) = g.call("POST", "/v1/uploads", &token, Some(req));
    assert_eq!(s, 200, "{up}");
    let id = up["id"].as_str().unwrap();
    for (i, chunk) in body.chunks(5 * MIB).enumerate() {
        let path = format!("/v1/uploads/{id}/parts/{}", i + 1);
        let (s, part) = g.call("POST", &path, &token, Some(json!({"md5": md5_hex(chunk)})));
        assert_eq!(s, 200, "{part}");
        assert_eq!(put_part(&part, chunk), 200);
    }
    let (s, done) = g.call("POST", &format!("/v1/uploads/{id}/complete"), &token, None);
    assert_eq!(s, 200, "{done}");
    assert_eq!(rgw.read_all(&bucket, "up/tree/big").await["up/tree/big.bin"], body);

    // With the MD5s declared, another one is refused.
    let body = data(6 * MIB, 13);
    let (_, up) = create(&g, &token, "tree/declared.bin", &body, 5 * MIB);
    let path = format!("/v1/uploads/{}/parts/1", up["id"].as_str().unwrap());
    let (s, v) = g.call("POST", &path, &token, Some(json!({"md5": md5_hex(b"other")})));
    assert_eq!(s, 409, "{v}");
}
