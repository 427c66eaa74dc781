//! A destination reached through an upload gateway (`ferry-gateway`), for
//! machines that must hold no storage keys: `gateway+https://HOST/PREFIX`
//! with a bearer token (`--gateway-token-file`).
//!
//! Every [`ObjectStore`] call the engine makes on a destination maps to a
//! gateway call, and every byte goes straight to the store under a
//! presigned URL:
//!
//! * `list` and `head` read `GET /v1/objects?prefix=&after=` (pages of
//!   1,000; a key sorts first among the keys it prefixes, so `head` is one
//!   page of one key's prefix);
//! * `put` creates a whole upload (`"whole": true`) with the body's MD5
//!   declared, PUTs the body to its one URL (the store refuses other
//!   bytes), and completes it: the gateway checks size and MD5;
//! * `create_multipart` creates an upload of the engine's part size;
//!   `upload_part` asks for that part's URL bound to the MD5 just read
//!   (`POST /v1/uploads/{id}/parts/{n}`) and PUTs it; `list_parts` is the
//!   gateway's part list (`GET /v1/uploads/{id}`), which is how a killed
//!   transfer resumes; `complete_multipart` asks the gateway to complete
//!   and verify; `abort_multipart` is `DELETE`.
//!
//! A PUT the store refuses with 403 (the URL expired on the way) is asked
//! for a fresh URL and sent once more. The gateway reads no objects and
//! deletes none: `get`, `delete` and tagging are unsupported, and the
//! gateway's own sweeper aborts uploads a killed client leaves (so
//! `list_uploads` answers none). Metadata, storage class and encryption
//! are the gateway's to set: a client sends bytes only.

pub mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{
    Capabilities, GetOptions, GetResult, ObjectMeta, ObjectStore, PartInfo, PresignedUrl, PutOptions, Result,
    StoreError, UploadInfo, UploadShape,
};
use wire::{CreateUpload, PartRequest};

/// A gateway destination.
#[derive(Clone)]
pub struct GatewayStore {
    /// `https://HOST[:PORT]`, no trailing slash.
    base: String,
    token: String,
    http: reqwest::Client,
    /// The store answered a PUT as a bucket that encrypts with KMS or a
    /// customer key: its ETags are not MD5s (learnt from answers, never
    /// assumed).
    opaque_etags: Arc<AtomicBool>,
}

impl std::fmt::Debug for GatewayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GatewayStore({})", self.base)
    }
}

/// One object of `GET /v1/objects`.
#[derive(Debug, Deserialize)]
struct Listed {
    key: String,
    size: u64,
    etag: Option<String>,
    last_modified: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Page {
    objects: Vec<Listed>,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Held {
    number: u32,
    size: u64,
    etag: String,
}

/// An upload as `POST /v1/uploads` and `GET /v1/uploads/{id}` answer it.
#[derive(Debug, Deserialize)]
struct Upload {
    id: String,
    part_size: u64,
    whole: bool,
    #[serde(default)]
    held: Vec<Held>,
    #[serde(default)]
    /// The parts to send (their numbers and sizes are not needed here).
    parts: Vec<PresignedUrl>,
}

#[derive(Debug, Deserialize)]
struct Completed {
    etag: Option<String>,
}

/// A gateway's refusal (`{"error": reason}`).
#[derive(Debug, Deserialize)]
struct Refusal {
    error: String,
}

impl GatewayStore {
    /// A client of the gateway at `base` (`http(s)://HOST[:PORT]`) with `token`.
    pub fn new(base: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .expect("an HTTP client with the default TLS settings");
        GatewayStore {
            base: base.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            http,
            opaque_etags: Arc::default(),
        }
    }

    fn unreachable(&self, operation: &'static str, e: reqwest::Error) -> StoreError {
        StoreError::Unreachable {
            store: self.describe(),
            operation,
            message: error_chain(&e),
        }
    }

    /// One gateway call; a refusal becomes the error it says. `NoSuchUpload`
    /// is for 404 and 410 on an upload's own path.
    async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<T> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(operation, e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(operation, e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| self.backend(operation, status, e.to_string()));
        }
        let reason = serde_json::from_slice::<Refusal>(&bytes)
            .map(|r| r.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(300).collect());
        Err(self.backend(operation, status, reason))
    }

    fn backend(&self, operation: &'static str, status: StatusCode, message: String) -> StoreError {
        let retryable = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
        match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => StoreError::Throttled {
                store: self.describe(),
                operation,
                code: format!("{} {message}", status.as_u16()),
            },
            _ => StoreError::Backend {
                store: self.describe(),
                operation,
                code: status.as_u16().to_string(),
                message,
                retryable,
            },
        }
    }

    /// An upload's own call: a 404 or 410 (aborted, abandoned) is `NoSuchUpload`.
    async fn upload_call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        (key, id): (&str, &str),
        suffix: &str,
        body: Option<String>,
    ) -> Result<T> {
        let path = format!("/v1/uploads/{id}{suffix}");
        match self.call(operation, method, &path, body).await {
            Err(StoreError::Backend { code, .. }) if code == "404" || code == "410" => Err(StoreError::NoSuchUpload {
                store: self.describe(),
                key: key.to_string(),
                upload_id: id.to_string(),
            }),
            other => other,
        }
    }

    /// PUTs `body` under a presigned request; answers the store's ETag.
    /// `BadDigest` when the store says the body is not the one signed for.
    async fn send(&self, key: &str, operation: &'static str, url: &PresignedUrl, body: Bytes) -> Result<PutAnswer> {
        let method = Method::from_bytes(url.method.as_bytes()).unwrap_or(Method::PUT);
        // An empty body still says its length: stores refuse a PUT without one.
        let mut req = self
            .http
            .request(method, &url.url)
            .header("content-length", body.len())
            .body(body);
        for (k, v) in &url.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(operation, e))?;
        self.note_encryption(resp.headers());
        let status = resp.status();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.unwrap_or_default();
        match status {
            s if s.is_success() => Ok(PutAnswer::Stored(etag)),
            StatusCode::FORBIDDEN => Ok(PutAnswer::Forbidden(store_code(&text))),
            _ if text.contains("<Code>BadDigest</Code>") || text.contains("<Code>InvalidDigest</Code>") => {
                Err(StoreError::BadDigest {
                    store: self.describe(),
                    key: key.to_string(),
                })
            }
            s => Err(self.backend(operation, s, format!("the store answered: {}", store_code(&text)))),
        }
    }

    /// Notes a store answer's encryption: KMS or a customer key makes ETags opaque.
    fn note_encryption(&self, headers: &reqwest::header::HeaderMap) {
        let sse = headers
            .get("x-amz-server-side-encryption")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let opaque =
            sse.starts_with("aws:kms") || headers.contains_key("x-amz-server-side-encryption-customer-algorithm");
        if opaque && !self.opaque_etags.swap(true, Ordering::Relaxed) {
            tracing::info!(store = %self.describe(), "The gateway's bucket encrypts with KMS or a customer key: its ETags are not MD5s, so uploads are verified by Content-MD5 acknowledgements and sizes.");
        }
    }

    /// Sends a part or a whole object, asking `fresh` for a new URL once
    /// when the store refuses the first (it expired on the way).
    async fn send_renewing<F, Fut>(
        &self,
        key: &str,
        operation: &'static str,
        first: PresignedUrl,
        body: Bytes,
        fresh: F,
    ) -> Result<Option<String>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<PresignedUrl>>,
    {
        let code = match self.send(key, operation, &first, body.clone()).await? {
            PutAnswer::Stored(etag) => return Ok(etag),
            PutAnswer::Forbidden(code) => code,
        };
        tracing::debug!(key, code = %code, "The store refused a presigned URL; asking the gateway for a fresh one.");
        match self.send(key, operation, &fresh().await?, body).await? {
            PutAnswer::Stored(etag) => Ok(etag),
            PutAnswer::Forbidden(code) => Err(StoreError::AccessDenied {
                store: self.describe(),
                operation,
                code: format!("the store refused the gateway's presigned URL twice: {code}"),
            }),
        }
    }

    /// A part's URL bound to its MD5.
    async fn part_url(&self, key: &str, upload_id: &str, number: u32, md5: &[u8; 16]) -> Result<PresignedUrl> {
        let body = serde_json::to_string(&PartRequest { md5: hex::encode(md5) }).expect("JSON");
        let part: PresignedUrl = self
            .upload_call(
                "UploadPart (URL)",
                Method::POST,
                (key, upload_id),
                &format!("/parts/{number}"),
                Some(body),
            )
            .await?;
        Ok(part)
    }

    /// A whole upload's URL, asked again.
    async fn whole_url(&self, key: &str, id: &str) -> Result<PresignedUrl> {
        let up: Upload = self
            .upload_call("PutObject (URL)", Method::GET, (key, id), "", None)
            .await?;
        up.parts.into_iter().next().ok_or_else(|| StoreError::Backend {
            store: self.describe(),
            operation: "PutObject (URL)",
            code: "NoURL".into(),
            message: format!("the gateway gave no URL for {key:?}"),
            retryable: true,
        })
    }

    async fn create(&self, req: &CreateUpload) -> Result<Upload> {
        let body = serde_json::to_string(req).expect("JSON");
        self.call("CreateUpload", Method::POST, "/v1/uploads", Some(body)).await
    }

    async fn page(&self, prefix: &str, after: Option<&str>) -> Result<Page> {
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        let mut path = format!("/v1/objects?prefix={}", enc(prefix));
        if let Some(a) = after {
            path.push_str(&format!("&after={}", enc(a)));
        }
        self.call("ListObjects", Method::GET, &path, None).await
    }
}

/// What the store answered a presigned PUT.
enum PutAnswer {
    Stored(Option<String>),
    Forbidden(String),
}

/// The `<Code>` (and `<Message>`) of an S3 error body, or its start.
fn store_code(xml: &str) -> String {
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let start = xml.find(&open)? + open.len();
        let end = xml[start..].find(&format!("</{t}>"))? + start;
        Some(xml[start..end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) if !m.is_empty() => format!("{c}: {m}"),
        (Some(c), _) => c,
        _ => xml.chars().take(200).collect(),
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

fn to_meta(o: Listed, encrypted: bool) -> ObjectMeta {
    ObjectMeta {
        key: o.key,
        size: o.size,
        etag: o.etag,
        last_modified: o.last_modified,
        encrypted,
        ..Default::default()
    }
}

#[async_trait]
impl ObjectStore for GatewayStore {
    fn describe(&self) -> String {
        format!("gateway+{}", self.base)
    }

    fn capabilities(&self) -> Capabilities {
        // Parts and whole objects are sent with their Content-MD5 signed
        // into the URL, and the gateway reads back the MD5-of-MD5s ETag
        // (unless the bucket's encryption makes ETags opaque).
        Capabilities {
            hashes_bodies: false,
            etags_are_md5: !self.opaque_etags.load(Ordering::Relaxed),
        }
    }

    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>> {
        let state = (self.clone(), prefix.to_string(), start_after.map(str::to_string), false);
        futures::stream::try_unfold(state, |(this, prefix, after, done)| async move {
            if done {
                return Ok(None);
            }
            let page = this.page(&prefix, after.as_deref()).await?;
            let done = page.next.is_none();
            let opaque = this.opaque_etags.load(Ordering::Relaxed);
            let objects = page.objects.into_iter().map(move |o| Ok(to_meta(o, opaque)));
            Ok(Some((futures::stream::iter(objects), (this, prefix, page.next, done))))
        })
        .try_flatten()
        .boxed()
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        // `key` sorts first among the keys it prefixes.
        let page = self.page(key, None).await?;
        let opaque = self.opaque_etags.load(Ordering::Relaxed);
        Ok(page
            .objects
            .into_iter()
            .next()
            .filter(|o| o.key == key)
            .map(|o| to_meta(o, opaque)))
    }

    async fn get(&self, key: &str, _opts: &GetOptions) -> Result<GetResult> {
        let _ = key;
        Err(StoreError::Unsupported {
            store: self.describe(),
            operation: "GetObject (a gateway takes uploads only)",
        })
    }

    async fn put(&self, key: &str, body: Bytes, md5: [u8; 16], _opts: &PutOptions) -> Result<Option<String>> {
        let req = CreateUpload {
            key: key.to_string(),
            size: body.len() as u64,
            md5s: Some(vec![hex::encode(md5)]),
            whole: true,
            ..Default::default()
        };
        let up = self.create(&req).await?;
        let Some(first) = up.parts.into_iter().next().filter(|_| up.whole) else {
            let _ = self.abort_multipart(key, &up.id).await;
            return Err(StoreError::Backend {
                store: self.describe(),
                operation: "PutObject",
                code: "NotWhole".into(),
                message: "the gateway did not offer one PUT for a whole object (is it older than this client?)".into(),
                retryable: false,
            });
        };
        let id = up.id.clone();
        self.send_renewing(key, "PutObject", first, body, || self.whole_url(key, &id))
            .await?;
        let done: Completed = self
            .upload_call("PutObject (complete)", Method::POST, (key, &up.id), "/complete", None)
            .await?;
        Ok(done.etag)
    }

    async fn create_multipart(&self, key: &str, _opts: &PutOptions, shape: UploadShape) -> Result<String> {
        let req = CreateUpload {
            key: key.to_string(),
            size: shape.size,
            part_size: Some(shape.part_size),
            ..Default::default()
        };
        let up = self.create(&req).await?;
        if up.whole || up.part_size != shape.part_size {
            let _ = self.abort_multipart(key, &up.id).await;
            return Err(StoreError::Backend {
                store: self.describe(),
                operation: "CreateMultipartUpload",
                code: "PartSize".into(),
                message: format!(
                    "the gateway planned parts of {} bytes{} for {key:?}; this transfer cuts {}: set --part-size to a size it accepts",
                    up.part_size,
                    if up.whole { " (one PUT)" } else { "" },
                    shape.part_size
                ),
                retryable: false,
            });
        }
        Ok(up.id)
    }

    async fn upload_part(&self, key: &str, upload_id: &str, number: u32, body: Bytes, md5: [u8; 16]) -> Result<String> {
        let url = self.part_url(key, upload_id, number, &md5).await?;
        let etag = self
            .send_renewing(key, "UploadPart", url, body, || {
                self.part_url(key, upload_id, number, &md5)
            })
            .await?;
        Ok(etag.unwrap_or_else(|| crate::etag::ETag::of_md5(&md5)))
    }

    async fn part_size(&self, _key: &str, _number: u32) -> Result<Option<(u64, u32)>> {
        Ok(None)
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        let up: Upload = self
            .upload_call("ListParts", Method::GET, (key, upload_id), "", None)
            .await?;
        Ok(up
            .held
            .into_iter()
            .map(|h| PartInfo {
                number: h.number,
                etag: h.etag,
                size: h.size,
            })
            .collect())
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, _parts: &[PartInfo]) -> Result<Option<String>> {
        let done: Completed = self
            .upload_call(
                "CompleteMultipartUpload",
                Method::POST,
                (key, upload_id),
                "/complete",
                None,
            )
            .await?;
        Ok(done.etag)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let r: Result<serde_json::Value> = self
            .upload_call("AbortMultipartUpload", Method::DELETE, (key, upload_id), "", None)
            .await;
        match r {
            Ok(_) | Err(StoreError::NoSuchUpload { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list_uploads(&self, _prefix: &str) -> Result<Vec<UploadInfo>> {
        // The gateway aborts the uploads its clients leave (`--abort-after`).
        Ok(Vec::new())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let _ = key;
        Err(StoreError::Unsupported {
            store: self.describe(),
            operation: "DeleteObject (a gateway deletes nothing)",
        })
    }

    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }
}
