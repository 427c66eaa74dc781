//! A counting HTTP proxy for tests: listens on 127.0.0.1, forwards every
//! byte to one upstream server unchanged (so SigV4 signatures, which cover
//! the Host header the client sent, still verify), and records each request's
//! method, path, query and `X-Amz-Target` header.
//!
//! Requests are delimited by their Content-Length (the AWS SDK always sends
//! one here); a chunked request body fails the test loudly. Responses are
//! copied through without parsing.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
#[derive(Debug, Clone)]
pub struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Requests whose operation is in `ops` wait this long before they are forwarded.
#[derive(Debug, Clone, Default)]
pub struct Delay {
    /// Operations to slow down (see [`Seen::operation`]).
    pub ops: Vec<&'static str>,
    /// How long.
    pub by: std::time::Duration,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`http://HOST:PORT`) on a free port.
    pub async fn start(upstream: &str) -> Proxy {
        Self::start_slow(upstream, Delay::default()).await
    }

    /// Starts a proxy that delays some operations (to catch a transfer midway).
    pub async fn start_slow(upstream: &str, delay: Delay) -> Proxy {
        let target = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, log, delay) = (target.clone(), log.clone(), delay.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        relay(client, server, log, delay).await;
                    }
                });
            }
        });
        Proxy { endpoint, seen }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Forgets the requests so far.
    pub fn reset(&self) {
        self.seen.lock().unwrap().clear();
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

async fn relay(client: TcpStream, server: TcpStream, log: Arc<Mutex<Vec<Seen>>>, delay: Delay) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    });
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
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
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_string();
        let uri = first.next().unwrap_or("").to_string();
        let (path, query) = uri.split_once('?').unwrap_or((uri.as_str(), ""));
        let mut length = 0usize;
        let mut target = String::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => length = v.parse().unwrap_or(0),
                    "x-amz-target" => target = v.to_string(),
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
        };
        let slow = delay.ops.contains(&seen.operation().as_str());
        log.lock().unwrap().push(seen);
        if slow {
            tokio::time::sleep(delay.by).await;
        }
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
            if sw.write_all(&buf[..n]).await.is_err() {
                break 'requests;
            }
            buf.drain(..n);
            left -= n;
        }
    }
    let _ = sw.shutdown().await;
    let _ = down.await;
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
