//! A counting HTTP proxy for tests: listens on 127.0.0.1, forwards every
//! byte to one upstream server unchanged (so SigV4 signatures, which cover
//! the Host header the client sent, still verify), and records each request's
//! method, path, query and `X-Amz-Target` header.
//!
//! Requests are delimited by their Content-Length (the AWS SDK always sends
//! one here); a chunked request body fails the test loudly. Responses are
//! copied through without parsing.
//!
//! It can also attack ([`Faults`]): by operation, every n-th request or a
//! seeded fraction of them is reset, stalled, answered 500 / 503 SlowDown /
//! 429, or has its answer cut short; each fault is logged to stderr and kept
//! ([`Proxy::faults`]) so a failing run can be read back.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "proxy_kms.rs"]
mod kms;
use tokio::net::{TcpListener, TcpStream};

/// One request seen by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Query string (may be empty).
    pub query: String,
    /// `X-Amz-Target` (JSON protocols: SQS, DynamoDB, Secrets Manager), or empty.
    pub target: String,
    /// The region of the SigV4 credential scope the request is signed for, or empty.
    pub signed_region: String,
    /// The request names a copy source (`x-amz-copy-source`): a server-side copy.
    pub copy_source: bool,
    /// The request body's length in bytes.
    pub body_len: u64,
    /// The `x-amz-*` headers that say how an object is written or read
    /// (storage class, ACL, encryption, requester pays…), names in lower
    /// case; the signature's own headers are left out.
    pub amz: Vec<(String, String)>,
}

impl Seen {
    /// The value of `x-amz-NAME` (`name` without the prefix), if sent.
    pub fn amz(&self, name: &str) -> Option<&str> {
        let full = format!("x-amz-{name}");
        self.amz.iter().find(|(k, _)| *k == full).map(|(_, v)| v.as_str())
    }
}

impl Seen {
    /// The operation name: the JSON target's operation, or an S3 operation
    /// told from method and query.
    pub fn operation(&self) -> String {
        if let Some((_, op)) = self.target.rsplit_once('.') {
            return op.to_string();
        }
        let q = |k: &str| self.query.split('&').any(|p| p == k || p.starts_with(&format!("{k}=")));
        let key_path = self
            .path
            .trim_start_matches('/')
            .split_once('/')
            .is_some_and(|(_, key)| !key.is_empty());
        match self.method.as_str() {
            "PUT" if q("tagging") => "PutObjectTagging".into(),
            "GET" if q("tagging") => "GetObjectTagging".into(),
            "GET" if q("versions") => "ListObjectVersions".into(),
            "GET" if q("versioning") => "GetBucketVersioning".into(),
            "PUT" if q("partNumber") && self.copy_source => "UploadPartCopy".into(),
            "PUT" if key_path && self.copy_source => "CopyObject".into(),
            "PUT" if q("partNumber") => "UploadPart".into(),
            "PUT" if key_path => "PutObject".into(),
            "PUT" => "CreateBucket".into(),
            "POST" if q("uploads") => "CreateMultipartUpload".into(),
            "POST" if q("uploadId") => "CompleteMultipartUpload".into(),
            "POST" if q("delete") => "DeleteObjects".into(),
            "GET" if q("uploadId") => "ListParts".into(),
            "GET" if q("uploads") => "ListMultipartUploads".into(),
            "GET" if key_path => "GetObject".into(),
            "GET" => "ListObjects".into(),
            "HEAD" => "HeadObject".into(),
            "DELETE" if q("uploadId") => "AbortMultipartUpload".into(),
            "DELETE" => "DeleteObject".into(),
            m => m.to_string(),
        }
    }
}

/// A running proxy.
#[derive(Clone)]
pub struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    injector: Arc<Mutex<Injector>>,
    crc_checked: Arc<std::sync::atomic::AtomicUsize>,
    /// Bytes of every answer relayed to clients (not counted by the
    /// rewriting proxy).
    bytes_down: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proxy({})", self.endpoint)
    }
}

/// Requests whose operation is in `ops` wait this long before they are forwarded.
#[derive(Debug, Clone, Default)]
pub struct Delay {
    /// Operations to slow down (see [`Seen::operation`]).
    pub ops: Vec<&'static str>,
    /// How long.
    pub by: std::time::Duration,
}

/// How a rewriting proxy changes the store's answers.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// Answer as an SSE-KMS bucket: opaque ETags, the KMS header.
    pub kms: bool,
    /// Send `x-oss-hash-crc64ecma: VALUE` with the GET and HEAD answers of
    /// these request paths (`/bucket/key`), as Aliyun OSS does.
    pub crc64ecma: std::collections::HashMap<String, u64>,
    /// Send `x-amz-checksum-crc64nvme` (full-object type) with the HEAD
    /// answers of these request paths, as S3 does for new objects.
    pub crc64nvme: std::collections::HashMap<String, u64>,
    /// Check `x-amz-checksum-crc64nvme` as S3 does: a PUT or part whose body
    /// does not match is refused (400 BadDigest), a completion whose
    /// full-object CRC is not the parts' combined is refused, and the CRC of
    /// an object written with one is sent with its HEAD answers.
    pub check_crc64nvme: bool,
    /// Answer user metadata and the tag count under this vendor's names
    /// (`oss` answers `x-oss-meta-*` and `x-oss-tagging-count`), as a
    /// vendor's own API does.
    pub vendor: Option<&'static str>,
}

/// A fault the proxy can inject into one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Close the connection without an answer.
    Reset,
    /// Hold the request this long before forwarding it.
    Stall(std::time::Duration),
    /// Forward the request, then cut the answer after a few hundred bytes.
    Truncate,
    /// Answer this status with this S3 error code instead of forwarding.
    Status(u16, &'static str),
    /// Flip one bit of the request body on its way to the store.
    FlipRequestBit,
    /// Flip one bit of the answer's body on its way back.
    FlipResponseBit,
    /// Answer as S3 does a request signed for a region other than the
    /// bucket's: 301 PermanentRedirect with the `x-amz-bucket-region` header,
    /// or 400 AuthorizationHeaderMalformed naming the region in the body only.
    WrongRegion {
        /// The bucket's region.
        region: &'static str,
        /// 301 or 400.
        status: u16,
    },
}

impl FaultKind {
    /// Every kind, with the stall and statuses S3 clients must survive.
    pub fn all() -> Vec<FaultKind> {
        vec![
            FaultKind::Reset,
            FaultKind::Stall(std::time::Duration::from_millis(1500)),
            FaultKind::Truncate,
            FaultKind::Status(500, "InternalError"),
            FaultKind::Status(503, "SlowDown"),
            FaultKind::Status(429, "TooManyRequests"),
        ]
    }

    /// A short name for logs and counts.
    pub fn name(&self) -> String {
        match self {
            FaultKind::Reset => "reset".into(),
            FaultKind::Stall(_) => "stall".into(),
            FaultKind::Truncate => "truncate".into(),
            FaultKind::Status(code, _) => format!("{code}"),
            FaultKind::FlipRequestBit => "flip-request".into(),
            FaultKind::FlipResponseBit => "flip-response".into(),
            FaultKind::WrongRegion { status, .. } => format!("wrong-region-{status}"),
        }
    }
}

/// Which requests get faults: every `every`-th request whose operation is in
/// `ops` (all when empty), or, with `every == 0`, each with probability
/// `rate` from a generator seeded with `seed`. The kinds are used in turn.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Operations to fault (see [`Seen::operation`]); empty: all.
    pub ops: Vec<&'static str>,
    /// Fault every n-th matching request (0: use `rate`).
    pub every: usize,
    /// Fraction of matching requests faulted when `every` is 0.
    pub rate: f64,
    /// Seed of the generator for `rate`.
    pub seed: u64,
    /// Kinds, used in turn.
    pub kinds: Vec<FaultKind>,
    /// Most faults injected in all (0: no limit).
    pub limit: usize,
    /// Only requests whose path contains this (URL-encoded as sent).
    pub path_contains: Option<&'static str>,
    /// The bucket lives in this region: every request signed for another
    /// gets S3's wrong-region answer (301 or 400), before any other fault.
    pub bucket_region: Option<(&'static str, u16)>,
}

/// What a faulting proxy decides, shared by its connections.
struct Injector {
    faults: Faults,
    matched: usize,
    injected: usize,
    rng: rand::rngs::StdRng,
    log: Vec<(Seen, FaultKind)>,
}

impl Injector {
    fn decide(&mut self, seen: &Seen) -> Option<FaultKind> {
        if let Some((region, status)) = self.faults.bucket_region {
            if seen.signed_region != region {
                let kind = FaultKind::WrongRegion { region, status };
                self.log.push((seen.clone(), kind));
                return Some(kind);
            }
        }
        if self.faults.kinds.is_empty() || self.faults.limit > 0 && self.injected >= self.faults.limit {
            return None;
        }
        let op = seen.operation();
        if !self.faults.ops.is_empty() && !self.faults.ops.contains(&op.as_str()) {
            return None;
        }
        if self.faults.path_contains.is_some_and(|p| !seen.path.contains(p)) {
            return None;
        }
        self.matched += 1;
        let hit = if self.faults.every > 0 {
            self.matched.is_multiple_of(self.faults.every)
        } else {
            rand::Rng::random_bool(&mut self.rng, self.faults.rate.clamp(0.0, 1.0))
        };
        if !hit {
            return None;
        }
        let kind = self.faults.kinds[self.injected % self.faults.kinds.len()];
        self.injected += 1;
        eprintln!(
            "[proxy] fault {} on {} {}?{}",
            kind.name(),
            seen.method,
            seen.path,
            seen.query
        );
        self.log.push((seen.clone(), kind));
        Some(kind)
    }
}

impl Proxy {
    /// Starts a proxy to `upstream` (`http://HOST:PORT`) on a free port.
    pub async fn start(upstream: &str) -> Proxy {
        Self::start_slow(upstream, Delay::default()).await
    }

    /// Starts a proxy that delays some operations (to catch a transfer midway).
    pub async fn start_slow(upstream: &str, delay: Delay) -> Proxy {
        Self::start_with(upstream, delay, Faults::default()).await
    }

    /// Starts a proxy that injects `faults` (and logs each to stderr).
    pub async fn start_faulty(upstream: &str, faults: Faults) -> Proxy {
        Self::start_with(upstream, Delay::default(), faults).await
    }

    /// Starts a proxy that answers as a bucket with SSE-KMS default
    /// encryption does (see [`kms`]): the local servers return MD5 ETags
    /// whatever the bucket's encryption, real S3 does not.
    pub async fn start_encrypting(upstream: &str) -> Proxy {
        Self::start_rewriting(
            upstream,
            Answers {
                kms: true,
                ..Default::default()
            },
        )
        .await
    }

    /// Starts a proxy that rewrites answers as `answers` says (see [`kms`]).
    pub async fn start_rewriting(upstream: &str, answers: Answers) -> Proxy {
        let target = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let tags = kms::Tags::default();
        let log = seen.clone();
        let answers = Arc::new(answers);
        let crcs = kms::Crcs::default();
        let crc_checked = crcs.checked.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, log, tags, answers, crcs) =
                    (target.clone(), log.clone(), tags.clone(), answers.clone(), crcs.clone());
                tokio::spawn(async move { kms::relay(client, &target, log, tags, &answers, &crcs).await });
            }
        });
        Proxy {
            endpoint,
            seen,
            injector: Arc::new(Mutex::new(Injector {
                rng: rand::SeedableRng::seed_from_u64(0),
                faults: Faults::default(),
                matched: 0,
                injected: 0,
                log: Vec::new(),
            })),
            crc_checked,
            bytes_down: Arc::default(),
        }
    }

    /// Requests whose `x-amz-checksum-crc64nvme` a checking proxy verified.
    pub fn crc_checked(&self) -> usize {
        self.crc_checked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Injects no more faults from now on (the cause is "fixed").
    pub fn stop_faults(&self) {
        self.injector.lock().unwrap().faults.kinds.clear();
    }

    /// The faults injected so far, with their requests.
    pub fn faults(&self) -> Vec<(Seen, FaultKind)> {
        self.injector.lock().unwrap().log.clone()
    }

    async fn start_with(upstream: &str, delay: Delay, faults: Faults) -> Proxy {
        let target = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let injector = Arc::new(Mutex::new(Injector {
            rng: rand::SeedableRng::seed_from_u64(faults.seed),
            faults,
            matched: 0,
            injected: 0,
            log: Vec::new(),
        }));
        let inj = injector.clone();
        let bytes_down: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let down = bytes_down.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, log, delay, inj, down) =
                    (target.clone(), log.clone(), delay.clone(), inj.clone(), down.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        relay(client, server, log, delay, inj, down).await;
                    }
                });
            }
        });
        Proxy {
            endpoint,
            seen,
            injector,
            crc_checked: Arc::default(),
            bytes_down,
        }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Forgets the requests so far (and the bytes counted).
    pub fn reset(&self) {
        self.seen.lock().unwrap().clear();
        self.bytes_down.store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// Bytes of request bodies sent through the proxy.
    pub fn bytes_up(&self) -> u64 {
        self.seen().iter().map(|s| s.body_len).sum()
    }

    /// Bytes of answers (heads and bodies) relayed back to clients.
    pub fn bytes_down(&self) -> u64 {
        self.bytes_down.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many requests had operation `op`.
    pub fn count(&self, op: &str) -> usize {
        self.seen().iter().filter(|s| s.operation() == op).count()
    }

    /// Requests per operation, sorted by name.
    pub fn by_operation(&self) -> std::collections::BTreeMap<String, usize> {
        let mut m = std::collections::BTreeMap::new();
        for s in self.seen() {
            *m.entry(s.operation()).or_insert(0) += 1;
        }
        m
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    log: Arc<Mutex<Vec<Seen>>>,
    delay: Delay,
    injector: Arc<Mutex<Injector>>,
    bytes_down: Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::{AtomicI64, Ordering};
    let (mut cr, cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let cw = Arc::new(tokio::sync::Mutex::new(cw));
    // Bytes of the answer still allowed through; negative: no limit.
    let budget = Arc::new(AtomicI64::new(-1));
    let flip_answer = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let down = {
        let (cw, budget, flip_answer) = (cw.clone(), budget.clone(), flip_answer.clone());
        tokio::spawn(async move {
            let mut b = vec![0u8; 64 * 1024];
            let mut head_done = false;
            loop {
                let n = match sr.read(&mut b).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if flip_answer.load(Ordering::SeqCst) {
                    // Flip the first body byte: in this chunk when the head ends
                    // inside it, else at the start of the next (servers often write
                    // the head and the body separately).
                    let at = if head_done {
                        Some(0)
                    } else {
                        b[..n].windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
                    };
                    match at {
                        Some(i) if i < n => {
                            b[i] ^= 0x01;
                            flip_answer.store(false, Ordering::SeqCst);
                            head_done = false;
                        }
                        Some(_) => head_done = true,
                        None => {}
                    }
                }
                let allowed = budget.load(Ordering::SeqCst);
                let n = if allowed >= 0 { n.min(allowed as usize) } else { n };
                let mut w = cw.lock().await;
                if n > 0 && w.write_all(&b[..n]).await.is_err() {
                    break;
                }
                bytes_down.fetch_add(n as u64, Ordering::SeqCst);
                if allowed >= 0 && budget.fetch_sub(n as i64, Ordering::SeqCst) - n as i64 <= 0 {
                    break;
                }
            }
            let _ = cw.lock().await.shutdown().await;
        })
    };
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut cut = false;
    'requests: loop {
        // Read a whole request head.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match cr.read(&mut chunk).await {
                Ok(0) | Err(_) => break 'requests,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let (seen, length) = parse_head(&buf[..head_end]);
        let seen_head = seen.method == "HEAD";
        let slow = delay.ops.contains(&seen.operation().as_str());
        let fault = injector.lock().unwrap().decide(&seen);
        log.lock().unwrap().push(seen);
        if slow {
            tokio::time::sleep(delay.by).await;
        }
        match fault {
            Some(FaultKind::Reset) => {
                cut = true;
                break 'requests;
            }
            Some(FaultKind::Status(code, error)) => {
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{error}</Code><Message>injected by the test proxy</Message></Error>"
                );
                answer(&cw, code, "Injected", "", &body).await;
                cut = true;
                break 'requests;
            }
            Some(FaultKind::Stall(d)) => tokio::time::sleep(d).await,
            Some(FaultKind::Truncate) => budget.store(200, Ordering::SeqCst),
            Some(FaultKind::FlipResponseBit) => flip_answer.store(true, Ordering::SeqCst),
            Some(FaultKind::WrongRegion { region, status }) => {
                let (reason, body, header) = if status == 301 {
                    (
                        "Moved Permanently",
                        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Endpoint>s3.{region}.amazonaws.com</Endpoint></Error>"),
                        format!("x-amz-bucket-region: {region}\r\n"),
                    )
                } else {
                    (
                        "Bad Request",
                        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is malformed; the region is wrong.</Message><Region>{region}</Region></Error>"),
                        String::new(),
                    )
                };
                let body = if seen_head { String::new() } else { body };
                answer(&cw, status, reason, &header, &body).await;
                cut = true;
                break 'requests;
            }
            Some(FaultKind::FlipRequestBit) | None => {}
        }
        let mut flip_body = fault == Some(FaultKind::FlipRequestBit) && length > 0;
        // Forward the head at once (a client may wait for "100 Continue"), then the body.
        if sw.write_all(&buf[..head_end]).await.is_err() {
            break;
        }
        buf.drain(..head_end);
        let mut left = length;
        while left > 0 {
            if buf.is_empty() {
                match cr.read(&mut chunk).await {
                    Ok(0) | Err(_) => break 'requests,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let n = left.min(buf.len());
            if flip_body {
                buf[n / 2] ^= 0x01;
                flip_body = false;
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break 'requests;
            }
            buf.drain(..n);
            left -= n;
        }
    }
    let _ = sw.shutdown().await;
    if cut {
        down.abort();
    }
    let _ = down.await;
    let _ = cw.lock().await.shutdown().await;
}

/// The request line and headers: what was asked, and the body's length.
/// Answers in the proxy's place (`headers`: whole lines, each ending in
/// `\r\n`) and closes the connection.
async fn answer(
    client: &tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>,
    status: u16,
    reason: &str,
    headers: &str,
    body: &str,
) {
    let text = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut w = client.lock().await;
    let _ = w.write_all(text.as_bytes()).await;
    let _ = w.shutdown().await;
}

pub(crate) fn parse_head(head: &[u8]) -> (Seen, usize) {
    let head = String::from_utf8_lossy(head).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let uri = first.next().unwrap_or("").to_string();
    let (path, query) = uri.split_once('?').unwrap_or((uri.as_str(), ""));
    let mut length = 0usize;
    let mut target = String::new();
    let mut signed_region = String::new();
    let mut copy_source = false;
    let mut amz = Vec::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => length = v.parse().unwrap_or(0),
                "x-amz-target" => target = v.to_string(),
                "x-amz-copy-source" => copy_source = true,
                "x-amz-date" | "x-amz-content-sha256" | "x-amz-security-token" | "x-amz-user-agent" => {}
                k if k.starts_with("x-amz-") => amz.push((k.to_string(), v.to_string())),
                // AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, …
                "authorization" => {
                    if let Some(scope) = v.split("Credential=").nth(1) {
                        signed_region = scope.split('/').nth(2).unwrap_or("").to_string();
                    }
                }
                "transfer-encoding" if v.contains("chunked") => {
                    panic!("the test proxy does not read chunked request bodies ({method} {uri})")
                }
                _ => {}
            }
        }
    }
    let seen = Seen {
        method,
        path: path.to_string(),
        query: query.to_string(),
        target,
        signed_region,
        copy_source,
        body_len: length as u64,
        amz,
    };
    (seen, length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations() {
        let s = |m: &str, p: &str, q: &str| Seen {
            method: m.into(),
            path: p.into(),
            query: q.into(),
            target: String::new(),
            signed_region: String::new(),
            copy_source: false,
            body_len: 0,
            amz: Vec::new(),
        };
        assert_eq!(s("PUT", "/b/k", "partNumber=1&uploadId=x").operation(), "UploadPart");
        assert_eq!(s("PUT", "/b/dir/k", "").operation(), "PutObject");
        assert_eq!(s("GET", "/b", "list-type=2").operation(), "ListObjects");
        assert_eq!(s("GET", "/b/k", "").operation(), "GetObject");
        let mut t = s("POST", "/", "");
        t.target = "AmazonSQS.SendMessageBatch".into();
        assert_eq!(t.operation(), "SendMessageBatch");
    }
}
