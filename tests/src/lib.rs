//! Helpers for ferry's end-to-end tests: the local servers' endpoints (from
//! the environment `tests/servers/start.sh` writes), an independent S3 client
//! (the raw SDK) to set up and check buckets, and the binaries as processes.
//!
//! A test that needs a server fails when the server is not configured or not
//! answering; nothing is skipped.

pub mod fleet;
pub mod gateway;
pub mod proxy;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

/// One S3 server under test.
#[derive(Debug, Clone)]
pub struct Server {
    /// Name for messages.
    pub name: &'static str,
    /// Endpoint URL.
    pub endpoint: String,
    /// Access key.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the end-to-end tests need the local servers; run them with tests/run.sh")
    })
}

/// The Ceph RADOS Gateway.
pub fn rgw() -> Server {
    Server {
        name: "radosgw",
        endpoint: env("FERRY_TEST_RGW"),
        access_key: env("FERRY_TEST_RGW_ACCESS_KEY"),
        secret_key: env("FERRY_TEST_RGW_SECRET_KEY"),
    }
}

/// moto server's S3.
pub fn moto() -> Server {
    Server {
        name: "moto",
        endpoint: env("FERRY_TEST_MOTO"),
        access_key: "testing".into(),
        secret_key: "testing".into(),
    }
}

/// The moto that enforces IAM, with the keys of its admin user (created by
/// `tests/servers/start.sh` with the server's unauthenticated requests).
pub fn moto_iam() -> Server {
    Server {
        name: "moto (IAM enforced)",
        endpoint: env("FERRY_TEST_MOTO_IAM"),
        access_key: env("FERRY_TEST_MOTO_IAM_ADMIN_KEY"),
        secret_key: env("FERRY_TEST_MOTO_IAM_ADMIN_SECRET"),
    }
}

/// The Python of the moto installation (boto3 included), for the test helpers in `tests/stack/`.
pub fn moto_python() -> PathBuf {
    PathBuf::from(env("FERRY_TEST_MOTO_PYTHON"))
}

impl Server {
    /// An independent raw SDK client (path-style, static keys, no retries hidden).
    pub fn client(&self) -> Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(&self.access_key, &self.secret_key, None, None, "test"))
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
            .build();
        Client::from_conf(conf)
    }

    /// Creates a bucket with a unique name starting with `hint`.
    pub async fn bucket(&self, hint: &str) -> String {
        let name = format!("{hint}-{:08x}", rand::random::<u32>());
        self.client()
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} at {}: cannot create bucket {name}: {e:?}", self.name, self.endpoint));
        name
    }

    /// Deletes every object in a bucket (frees a test's space on the server).
    pub async fn empty(&self, bucket: &str) {
        let c = self.client();
        loop {
            let r = c.list_objects_v2().bucket(bucket).send().await.expect("list");
            if r.contents().is_empty() {
                break;
            }
            for o in r.contents() {
                c.delete_object()
                    .bucket(bucket)
                    .key(o.key().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }

    /// Writes one object with the raw client; returns its ETag.
    pub async fn put_one(&self, bucket: &str, key: &str, body: &[u8]) -> Option<String> {
        self.put_all(bucket, &BTreeMap::from([(key.to_string(), body.to_vec())]))
            .await;
        let head = self.client().head_object().bucket(bucket).key(key).send().await;
        head.expect("head after put").e_tag().map(str::to_string)
    }

    /// Writes objects with the raw client.
    pub async fn put_all(&self, bucket: &str, objects: &BTreeMap<String, Vec<u8>>) {
        let c = self.client();
        for (k, v) in objects {
            c.put_object()
                .bucket(bucket)
                .key(k)
                .body(ByteStream::from(v.clone()))
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {k:?}: {e:?}"));
        }
    }

    /// Writes one object with the raw client as a multipart upload, its parts
    /// of the `parts` sizes in turn (the last repeated); returns its ETag.
    pub async fn put_multipart(&self, bucket: &str, key: &str, body: &[u8], parts: &[usize]) -> String {
        let mut chunks = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let len = parts[chunks.len().min(parts.len() - 1)].min(rest.len());
            let (a, b) = rest.split_at(len);
            chunks.push(a.to_vec());
            rest = b;
        }
        self.put_parts(bucket, key, chunks).await
    }

    /// Writes one object with the raw client as a multipart upload of these
    /// parts, made one at a time (an object larger than memory can be
    /// written); returns its ETag.
    pub async fn put_parts(&self, bucket: &str, key: &str, parts: impl IntoIterator<Item = Vec<u8>>) -> String {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let c = self.client();
        let up = c
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        let id = up.upload_id().unwrap().to_string();
        let mut done = Vec::new();
        for (i, chunk) in parts.into_iter().enumerate() {
            let n = i as i32 + 1;
            let r = c
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await
                .unwrap_or_else(|e| panic!("part {n} of {key:?}: {e:?}"));
            done.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(r.e_tag().unwrap())
                    .build(),
            );
        }
        let r = c
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
            .send()
            .await
            .unwrap_or_else(|e| panic!("complete {key:?}: {e:?}"));
        r.e_tag().unwrap().to_string()
    }

    /// Reads every object under `prefix` with the raw client: key → bytes.
    pub async fn read_all(&self, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        let c = self.client();
        let mut out = BTreeMap::new();
        let mut token = None;
        loop {
            let r = c
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list");
            for o in r.contents() {
                let k = o.key().unwrap().to_string();
                let body = c
                    .get_object()
                    .bucket(bucket)
                    .key(&k)
                    .send()
                    .await
                    .expect("get")
                    .body
                    .collect()
                    .await
                    .expect("body");
                out.insert(k, body.into_bytes().to_vec());
            }
            token = r.next_continuation_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out
    }

    /// Unfinished multipart uploads in a bucket.
    pub async fn uploads(&self, bucket: &str) -> usize {
        self.client()
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .expect("list uploads")
            .uploads()
            .len()
    }

    /// The flags that point one side of ferry at this server.
    pub fn flags(&self, side: &str) -> Vec<String> {
        vec![
            format!("--{side}-endpoint"),
            self.endpoint.clone(),
            format!("--{side}-path-style"),
        ]
    }

    /// The environment variables that give one side of ferry this server's keys.
    pub fn envs(&self, side: &str) -> Vec<(String, String)> {
        let p = if side == "src" { "FERRY_SRC" } else { "FERRY_DEST" };
        vec![
            (format!("{p}_ACCESS_KEY_ID"), self.access_key.clone()),
            (format!("{p}_SECRET_ACCESS_KEY"), self.secret_key.clone()),
        ]
    }
}

/// The SDK configuration for moto's SQS, DynamoDB and Secrets Manager:
/// static test keys, a fixed region, moto's endpoint.
pub async fn aws_services() -> aws_config::SdkConfig {
    aws_services_at(&env("FERRY_TEST_MOTO")).await
}

/// The SDK configuration for moto's DynamoDB (the moto that serves one
/// request at a time, so conditional writes are atomic as in DynamoDB).
pub async fn dynamodb_service() -> aws_config::SdkConfig {
    aws_services_at(&env("FERRY_TEST_MOTO_DYNAMODB")).await
}

async fn aws_services_at(endpoint: &str) -> aws_config::SdkConfig {
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

/// A unique name for a queue, table or secret.
pub fn unique(hint: &str) -> String {
    format!("{hint}-{:08x}", rand::random::<u32>())
}

/// The path of a workspace binary (built by `cargo build --bins`, which tests/run.sh does).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build it with `cargo build --bins` (tests/run.sh does)",
        p.display()
    );
    let built = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
    if let (Some(built), Some((newest, source))) = (built, newest_source(name)) {
        assert!(
            built >= newest,
            "{} is older than {}: rebuild with `cargo build --workspace --bins` (tests/run.sh does); \
             a test run alone does not rebuild the binaries it runs",
            p.display(),
            source.display()
        );
    }
    p
}

/// The most recently modified source file the binary `name` is built from.
fn newest_source(name: &str) -> Option<(std::time::SystemTime, PathBuf)> {
    let crates: &[&str] = match name {
        "ferry-finder" => &["core/src", "cli/src", "worker/src", "finder/src"],
        "ferry-worker" => &["core/src", "cli/src", "worker/src", "finder/src"],
        "ferry-events-bridge" => &["core/src", "cli/src", "events-bridge/src"],
        "ferry-gateway" => &["core/src", "cli/src", "gateway/src"],
        _ => return None,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.to_path_buf();
    let mut stack: Vec<PathBuf> = crates.iter().map(|d| root.join(d)).collect();
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                    newest = Some((t, path));
                }
            }
        }
    }
    newest
}

/// A `ferry-finder` command with an isolated environment: no AWS settings from
/// the host, metadata lookups off, plain output.
pub fn finder(args: &[String], envs: &[(String, String)]) -> Command {
    let mut c = Command::new(bin("ferry-finder"));
    c.args(args).arg("--no-progress");
    isolate(&mut c);
    for (k, v) in envs {
        c.env(k, v);
    }
    c
}

/// Waits (20 s at most) until `addr` accepts connections; a process that
/// does not listen fails the test with its log (`what`: its name).
pub fn wait_listening(addr: &str, what: &str, log: &Path) {
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{what} did not listen: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Removes AWS settings of the host from a command's environment.
pub fn isolate(c: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("FERRY_") && !k.starts_with("FERRY_TEST") {
            c.env_remove(&k);
        }
    }
    c.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("RUST_LOG", "warn");
}

/// Runs a command and returns its output, printing it for failing tests.
pub fn run(mut c: Command) -> Output {
    let out = c.output().expect("spawn");
    eprintln!(
        "--- {:?}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
        c,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Deterministic bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    ferry_core::store::conformance::data(len, seed).to_vec()
}

/// Writes a tree of files (keys split on `/`).
pub fn write_tree(root: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (k, v) in files {
        let p = root.join(k);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, v).unwrap();
    }
}

/// Reads a tree of files back into key → bytes, skipping ferry's staging directory.
pub fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if e.file_name() != ".ferry-uploads" {
                    walk(base, &p, out);
                }
            } else {
                let k = p.strip_prefix(base).unwrap().to_str().unwrap().to_string();
                out.insert(k, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Asserts two key → bytes maps are equal, naming the first difference.
pub fn assert_same(what: &str, expected: &BTreeMap<String, Vec<u8>>, got: &BTreeMap<String, Vec<u8>>) {
    let ek: Vec<_> = expected.keys().collect();
    let gk: Vec<_> = got.keys().collect();
    assert_eq!(ek, gk, "{what}: keys differ");
    for (k, v) in expected {
        assert!(
            got[k] == *v,
            "{what}: bytes of {k:?} differ ({} vs {} bytes)",
            v.len(),
            got[k].len()
        );
    }
}

/// Seeds a listing case: `n` keys named by `key` in bucket `src`
/// (bodies `object I`), and at `dst` the same but 1 % missing (I % 100 ==
/// 1) and 1 % with other bytes (I % 100 == 2).
pub async fn seed_with_difference(c: &Client, src: &str, dst: &str, n: usize, key: fn(usize) -> String) {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(0..n)
        .map(|i| async move {
            let (k, body) = (key(i), format!("object {i}"));
            c.put_object()
                .bucket(src)
                .key(&k)
                .body(body.clone().into_bytes().into())
                .send()
                .await?;
            let at_dest = match i % 100 {
                1 => None,
                2 => Some("changed".to_string()),
                _ => Some(body),
            };
            if let Some(b) = at_dest {
                c.put_object()
                    .bucket(dst)
                    .key(&k)
                    .body(b.into_bytes().into())
                    .send()
                    .await?;
            }
            Ok::<_, aws_sdk_s3::Error>(())
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("seed");
}

/// A raw HTTP/1.1 POST to `addr`; returns the status and the body.
pub fn http_post(addr: &str, path: &str, headers: &[(&str, String)], body: &str) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).unwrap();
    c.write_all(body.as_bytes()).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let text = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, text)
}

/// A raw HTTP/1.1 request to `url` (`http://HOST:PORT/PATH?QUERY`), as a
/// client with no keys and no SDK sends it; returns the status and the body.
pub fn http_request(method: &str, url: &str, headers: &[(String, String)], body: &[u8]) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut c = std::net::TcpStream::connect(host).expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    // A store may answer (and close) before the body is sent: its answer is read all the same.
    let _ = c.write_all(req.as_bytes()).and_then(|()| c.write_all(body));
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, out[split..].to_vec())
}

/// The settings an EC2 launch template's user data gives a binary: the
/// `NAME=value` lines of the environment file it writes (between `<<'ENV'`
/// and `ENV`), and the `ExecStart=` command of its systemd unit.
pub fn user_data_settings(script: &str) -> (BTreeMap<String, String>, String) {
    let mut env = BTreeMap::new();
    let mut inside = false;
    let mut exec = String::new();
    for line in script.lines().map(str::trim) {
        if line.ends_with("<<'ENV'") {
            inside = true;
        } else if line == "ENV" {
            inside = false;
        } else if inside {
            if let Some((k, v)) = line.split_once('=') {
                env.insert(k.to_string(), v.to_string());
            }
        } else if let Some(cmd) = line.strip_prefix("ExecStart=") {
            exec = cmd.to_string();
        }
    }
    (env, exec)
}

/// `127.0.0.1:PORT` with a port free right now, for a server a test starts.
pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("127.0.0.1:{port}")
}

/// The text without its terminal colour sequences (`ESC [ … m`).
pub fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// What a finished process printed: stdout then stderr, colours removed.
pub fn output_text(out: &std::process::Output) -> String {
    without_colours(&format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
