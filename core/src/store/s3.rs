//! [`S3Store`]: Amazon S3 and every S3-compatible store, on aws-sdk-s3.
//!
//! Settings that matter on non-AWS stores are fixed here for every endpoint:
//! flexible checksums are only computed or validated when an operation
//! requires them (`WhenRequired`), because many stores reject the
//! `aws-chunked` trailer encoding; integrity comes from the Content-MD5 that
//! ferry sends on every PUT and part instead. The SDK's own retry layer is off:
//! ferry's [`retry`](crate::retry) module owns every retry, so attempts are
//! never multiplied.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::aws::error_chain;
use crate::body::BodyBuf;
use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart, ObjectCannedAcl,
    RequestPayer, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use base64::Engine as _;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use super::s3_meta::{self, VendorHeaders};
use super::s3_region::RegionFollower;
use super::{
    Capabilities, CopySource, GetOptions, GetResult, ObjectAttributes, ObjectMeta, ObjectStore, PartInfo, PutOptions,
    Result, StoreError, UploadInfo, UploadShape, VersionMarker, VersionPage, Versioning,
};

/// Where an [`S3Store`]'s credentials come from. Secrets never come from a
/// command-line flag.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum S3Credentials {
    /// The SDK's default chain: environment, shared files, SSO, web identity, ECS, EC2.
    #[default]
    Default,
    /// A named profile of the shared config files.
    Profile(String),
    /// Static keys (from the job file or `FERRY_SRC_*`/`FERRY_DEST_*` environment variables).
    Static {
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: String,
        /// Optional session token.
        session_token: Option<String>,
    },
    /// Keys kept in an AWS Secrets Manager secret (name or ARN), read on first
    /// use and again after expiry or an access-denied answer.
    Secret(String),
    /// No credentials: unsigned requests to public buckets.
    Anonymous,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            S3Credentials::Default => f.write_str("Default"),
            S3Credentials::Profile(p) => write!(f, "Profile({p:?})"),
            S3Credentials::Static { access_key_id, .. } => {
                write!(f, "Static({}…)", &access_key_id.get(..4).unwrap_or(""))
            }
            S3Credentials::Secret(name) => write!(f, "Secret({name:?})"),
            S3Credentials::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// The resolved settings of one S3 endpoint and bucket.
#[derive(Debug, Clone, Default)]
pub struct S3StoreConfig {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL; `None` lets the SDK resolve AWS endpoints (China partition included).
    pub endpoint: Option<String>,
    /// Region used for signing and endpoint resolution; `None` takes the SDK's
    /// chain and falls back to `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual-hosted.
    pub path_style: bool,
    /// Credentials source.
    pub credentials: S3Credentials,
    /// Send `x-amz-request-payer: requester`.
    pub requester_pays: bool,
    /// Sign request bodies with SHA-256 too, for stores that refuse
    /// `UNSIGNED-PAYLOAD` (see [`S3Store`]).
    pub sign_payload: bool,
    /// Send CRC-64/NVME checksums with uploads (see `s3_crc`).
    pub crc64nvme: bool,
}

/// An S3 bucket as an object store.
#[derive(Debug, Clone)]
pub struct S3Store {
    sdk: RegionFollower,
    bucket: String,
    requester_pays: bool,
    /// PUT and UploadPart bodies are sent as `UNSIGNED-PAYLOAD`. Each carries
    /// Content-MD5, and that header is signed: the store rejects a body that
    /// does not match it, and nobody in between can change body and header
    /// together without breaking the signature. A SHA-256 pass over every byte
    /// would prove nothing more, so it is skipped unless the side asks for it.
    unsigned_payload: bool,
    desc: String,
    /// Credentials from Secrets Manager, forgotten after an access-denied answer.
    secret: Option<crate::secrets::SecretCredentials>,
    /// Set once an answer says SSE-KMS or SSE-C: from then on this bucket's
    /// ETags are not taken for MD5s (bucket default encryption applies to
    /// every object, and an opaque ETag must never fail a verification).
    opaque_etags: Arc<AtomicBool>,
    /// CRC-64/NVME checksums sent with uploads, when the side asks for them.
    crcs: Option<super::s3_crc::UploadCrcs>,
    /// HEADs ask for the object's checksums (`x-amz-checksum-mode`).
    checksum_mode: Arc<AtomicBool>,
}

impl S3Store {
    /// Builds the client. Nothing is sent until the first call.
    pub async fn new(cfg: S3StoreConfig) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        let mut secret = None;
        match &cfg.credentials {
            S3Credentials::Default => {}
            S3Credentials::Profile(p) => loader = loader.profile_name(p),
            S3Credentials::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                loader = loader.credentials_provider(Credentials::new(
                    access_key_id,
                    secret_access_key,
                    session_token.clone(),
                    None,
                    "ferry-static",
                ))
            }
            S3Credentials::Secret(name) => {
                let p = crate::secrets::SecretCredentials::new(name);
                loader = loader.credentials_provider(p.clone());
                secret = Some(p);
            }
            S3Credentials::Anonymous => loader = loader.no_credentials(),
        }
        if let Some(r) = &cfg.region {
            loader = loader.region(Region::new(r.clone()));
        }
        let shared = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(cfg.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            );
        if shared.region().is_none() {
            b = b.region(Region::new("us-east-1"));
        }
        if secret.is_some() {
            // The provider caches the secret itself and must be asked again
            // after an access-denied answer, which the SDK's cache would not do.
            b = b.identity_cache(aws_sdk_s3::config::IdentityCache::no_cache());
        }
        if let Some(ep) = &cfg.endpoint {
            b = b.endpoint_url(ep);
        }
        let desc = match &cfg.endpoint {
            Some(ep) => format!("s3://{} at {}", cfg.bucket, ep),
            None => format!("s3://{}", cfg.bucket),
        };
        // An AWS bucket named without a region is followed to its region.
        let follow = cfg.endpoint.is_none() && cfg.region.is_none();
        Self {
            sdk: RegionFollower::new(Client::from_conf(b.build()), &cfg.bucket, follow),
            bucket: cfg.bucket,
            requester_pays: cfg.requester_pays,
            unsigned_payload: !cfg.sign_payload,
            desc,
            secret,
            opaque_etags: Arc::default(),
            crcs: cfg.crc64nvme.then(Default::default),
            checksum_mode: Arc::new(AtomicBool::new(cfg.crc64nvme)),
        }
    }

    /// Notes an answer's encryption; true when it makes the ETag opaque.
    fn note_sse(&self, sse: Option<&ServerSideEncryption>, customer_algorithm: Option<&str>) -> bool {
        let opaque = s3_meta::opaque_etag(sse, customer_algorithm);
        if opaque && !self.opaque_etags.swap(true, Ordering::Relaxed) {
            tracing::info!(store = %self.desc, "The bucket encrypts with KMS or a customer key: its ETags are not MD5s, so transfers are verified by Content-MD5 acknowledgements, sizes and checksums.");
        }
        opaque
    }

    /// The underlying SDK client (for tools built on ferry-core).
    pub fn client(&self) -> Client {
        self.sdk.current()
    }

    /// The client, following the bucket to its region first (`s3_region`).
    async fn sdk(&self) -> Client {
        self.sdk.client().await
    }

    /// The CRC-64/NVME of a body, where CRC-64/NVME is in use.
    async fn crc_of(&self, body: &Bytes) -> Option<u64> {
        match &self.crcs {
            Some(_) => Some(super::s3_crc::crc_of(body).await),
            None => None,
        }
    }

    fn payer(&self) -> Option<RequestPayer> {
        self.requester_pays.then_some(RequestPayer::Requester)
    }

    fn err<E>(&self, operation: &'static str, key: &str, e: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let store = self.desc.clone();
        let (status, code, message) = match &e {
            SdkError::ServiceError(se) => (
                se.raw().status().as_u16(),
                se.err().code().unwrap_or("").to_string(),
                se.err().message().unwrap_or("").to_string(),
            ),
            SdkError::ResponseError(r) => (r.raw().status().as_u16(), String::new(), error_chain(&e)),
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                return StoreError::Unreachable {
                    store,
                    operation,
                    message: error_chain(&e),
                }
            }
            _ => {
                return StoreError::Backend {
                    store,
                    operation,
                    code: "client".into(),
                    message: error_chain(&e),
                    retryable: false,
                }
            }
        };
        if let SdkError::ServiceError(se) = &e {
            if matches!(status, 301 | 400) || code == "PermanentRedirect" {
                if let Some(region) = self.sdk.follow_answer(se.raw()) {
                    return StoreError::Backend {
                        store,
                        operation,
                        code: code.clone(),
                        message: format!("the bucket is in {region}; trying there"),
                        retryable: true,
                    };
                }
                if let Some(region) = super::s3_region::region_of(se.raw()).filter(|_| status == 301) {
                    return StoreError::Backend {
                        store,
                        operation,
                        code: if code.is_empty() { "PermanentRedirect".into() } else { code },
                        message: format!("the bucket is in region {region}: give that region (--src-region / --dest-region {region}) or leave the region unset"),
                        retryable: false,
                    };
                }
            }
        }
        let key = key.to_string();
        match (status, code.as_str()) {
            (_, "NoSuchKey") | (404, "NotFound") | (404, "") => StoreError::NotFound { store, key },
            (_, "NoSuchBucket") => StoreError::NoSuchBucket {
                store,
                bucket: self.bucket.clone(),
            },
            (_, "NoSuchUpload") => StoreError::NoSuchUpload {
                store,
                key,
                upload_id: String::new(),
            },
            (412, _) | (_, "PreconditionFailed") => StoreError::PreconditionFailed {
                store,
                key,
                expected: String::new(),
            },
            (_, "BadDigest") | (_, "InvalidDigest") => StoreError::BadDigest { store, key },
            // S3 answers 403 InvalidObjectState for archived objects: not a permission problem.
            (_, "InvalidObjectState" | "ObjectArchived" | "ObjectNotRestored") => {
                StoreError::RestoreNeeded { store, key, code }
            }
            (_, "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" | "InvalidToken")
            | (401 | 403, _) => {
                if let Some(s) = &self.secret {
                    tracing::info!(secret = %s.name(), "Access denied: the secret will be read again.");
                    s.invalidate();
                }
                StoreError::AccessDenied {
                    store,
                    operation,
                    code: if code.is_empty() { status.to_string() } else { code },
                }
            }
            (429, _) | (503, _) | (_, "SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded") => {
                StoreError::Throttled {
                    store,
                    operation,
                    code: if code.is_empty() { status.to_string() } else { code },
                }
            }
            _ => StoreError::Backend {
                store,
                operation,
                // 501 Not Implemented is the store's lasting answer, not a fault.
                retryable: (status >= 500 && status != 501)
                    || status == 408
                    || code == "RequestTimeout"
                    || (code.is_empty() && status != 501),
                code: if code.is_empty() {
                    format!("HTTP {status}")
                } else {
                    code
                },
                message,
            },
        }
    }
}

fn md5_header(md5: &[u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5)
}

pub(super) fn nonempty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

pub(super) fn millis(t: Option<&aws_smithy_types::DateTime>) -> Option<i64> {
    t.and_then(|d| d.to_millis().ok())
}

/// A request on one object of the store's bucket.
macro_rules! object_request {
    ($self:expr, $req:expr, $key:expr) => {
        $req.bucket(&$self.bucket).key($key)
    };
}

/// A request on one multipart upload of the store's bucket.
macro_rules! upload_request {
    ($self:expr, $req:expr, $key:expr, $upload_id:expr) => {
        object_request!($self, $req, $key).upload_id($upload_id)
    };
}

/// A request with its payload signed only when the store asks for it
/// (`sign_payload`): bodies are bound to the signature by Content-MD5.
macro_rules! signed_as_configured {
    ($self:expr, $req:expr) => {{
        let req = $req;
        if $self.unsigned_payload {
            req.disable_payload_signing()
        } else {
            req
        }
    }};
}

macro_rules! with_put_options {
    ($req:expr, $opts:expr) => {{
        let a = &$opts.attributes;
        let mut r = $req
            .set_content_type(a.content_type.clone())
            .set_content_encoding(a.content_encoding.clone())
            .set_content_disposition(a.content_disposition.clone())
            .set_content_language(a.content_language.clone())
            .set_cache_control(a.cache_control.clone())
            .set_storage_class($opts.storage_class.as_deref().map(StorageClass::from))
            .set_acl($opts.acl.as_deref().map(ObjectCannedAcl::from))
            .set_server_side_encryption($opts.sse.as_deref().map(ServerSideEncryption::from))
            .set_ssekms_key_id($opts.sse_kms_key_id.clone())
            .set_tagging(
                $opts
                    .tags
                    .as_deref()
                    .filter(|t| !t.is_empty())
                    .map(versions::tagging_header),
            );
        if !a.user.is_empty() {
            r = r.set_metadata(Some(a.user.iter().map(|(k, v)| (k.clone(), v.clone())).collect()));
        }
        r
    }};
}

/// The Content-* headers and user metadata of a GetObject or HeadObject answer.
macro_rules! attributes_of {
    ($o:expr) => {
        ObjectAttributes {
            content_type: $o.content_type().map(str::to_string),
            content_encoding: $o.content_encoding().map(str::to_string),
            content_disposition: $o.content_disposition().map(str::to_string),
            content_language: $o.content_language().map(str::to_string),
            cache_control: $o.cache_control().map(str::to_string),
            user: $o
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        }
    };
}

#[async_trait]
impl ObjectStore for S3Store {
    /// S3 checks Content-MD5 and names objects by MD5 ETags, unless they are
    /// encrypted (SSE-KMS, SSE-C): seen once, every ETag is taken as opaque.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            hashes_bodies: false,
            etags_are_md5: !self.opaque_etags.load(Ordering::Relaxed),
        }
    }

    fn describe(&self) -> String {
        self.desc.clone()
    }

    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>> {
        struct St {
            store: S3Store,
            prefix: String,
            start_after: Option<String>,
            token: Option<String>,
            done: bool,
        }
        let st = St {
            store: self.clone(),
            prefix: prefix.to_string(),
            start_after: start_after.map(str::to_string),
            token: None,
            done: false,
        };
        stream::unfold(st, |mut st| async move {
            if st.done {
                return None;
            }
            // A failed page ends the stream with its error; the retrying layer
            // ([`super::RetryingStore`]) resumes the listing after the last key.
            let token = st.token.take();
            let resp = st
                .store
                .sdk()
                .await
                .list_objects_v2()
                .bucket(&st.store.bucket)
                .prefix(&st.prefix)
                .set_start_after(st.start_after.clone())
                .set_continuation_token(token)
                .set_request_payer(st.store.payer())
                .send()
                .await
                .map_err(|e| st.store.err("ListObjectsV2", &st.prefix, e));
            let page: Vec<Result<ObjectMeta>> = match resp {
                Err(e) => {
                    st.done = true;
                    vec![Err(e)]
                }
                Ok(out) => {
                    st.token = nonempty(out.next_continuation_token());
                    st.done = !out.is_truncated().unwrap_or(false) || st.token.is_none();
                    out.contents()
                        .iter()
                        .filter_map(|o| {
                            Some(Ok(ObjectMeta {
                                key: o.key()?.to_string(),
                                size: o.size().unwrap_or(0).max(0) as u64,
                                etag: nonempty(o.e_tag()),
                                last_modified: millis(o.last_modified()),
                                ..Default::default()
                            }))
                        })
                        .collect()
                }
            };
            Some((stream::iter(page), st))
        })
        .flatten()
        .boxed()
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        Ok(self.head_attributes(key).await?.map(|(meta, _)| meta))
    }

    async fn copy_object(&self, src: &CopySource, key: &str, opts: &PutOptions) -> Result<Option<String>> {
        self.copy_whole(src, key, opts).await
    }

    async fn upload_part_copy(
        &self,
        src: &CopySource,
        key: &str,
        upload_id: &str,
        number: u32,
        range: std::ops::Range<u64>,
    ) -> Result<String> {
        self.copy_part(src, key, upload_id, number, range).await
    }

    async fn head_attributes(&self, key: &str) -> Result<Option<(ObjectMeta, ObjectAttributes)>> {
        // S3's checksum is asked for where CRC-64/NVME is in use (Amazon S3
        // by default). Reading it from a KMS-encrypted object needs
        // kms:Decrypt: a role without it gets its HEADs without checksums.
        let checksums = self.checksum_mode.load(Ordering::Relaxed);
        let vendor = VendorHeaders::default();
        let r = object_request!(self, self.sdk().await.head_object(), key)
            .set_checksum_mode(checksums.then_some(ChecksumMode::Enabled))
            .set_request_payer(self.payer())
            .customize()
            .interceptor(vendor.clone())
            .send()
            .await;
        if let Err(e) = &r {
            let denied = matches!(e, SdkError::ServiceError(se) if se.raw().status().as_u16() == 403);
            if checksums && denied && self.checksum_mode.swap(false, Ordering::Relaxed) {
                tracing::info!(store = %self.desc, "HEAD with checksums was refused (kms:Decrypt is needed for KMS objects); asking without them.");
                return Box::pin(self.head_attributes(key)).await;
            }
        }
        match r {
            Ok(o) => {
                let answered = vendor.get();
                let mut attributes = attributes_of!(o);
                answered.merge_user(&mut attributes.user);
                let meta = ObjectMeta {
                    key: key.to_string(),
                    size: o.content_length().unwrap_or(0).max(0) as u64,
                    etag: nonempty(o.e_tag()),
                    last_modified: millis(o.last_modified()),
                    mtime_ns: s3_meta::mtime(&attributes.user),
                    checksums: s3_meta::checksums(o.checksum_crc64_nvme(), o.checksum_type(), answered.crc),
                    encrypted: self.note_sse(o.server_side_encryption(), o.sse_customer_algorithm()),
                    version: nonempty(o.version_id()),
                    // S3 does not answer the tag count to a HEAD.
                    tag_count: answered.tag_count,
                };
                Ok(Some((meta, attributes)))
            }
            Err(e) => match self.err("HeadObject", key, e) {
                StoreError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn part_size(&self, key: &str, number: u32) -> Result<Option<(u64, u32)>> {
        let r = object_request!(self, self.sdk().await.head_object(), key)
            .part_number(number.min(i32::MAX as u32) as i32)
            .set_request_payer(self.payer())
            .send()
            .await;
        match r {
            // An encrypted object's part ETags are not MD5s: no layout to mirror.
            Ok(o) if self.note_sse(o.server_side_encryption(), o.sse_customer_algorithm()) => Ok(None),
            // A store that ignores `partNumber` sends no part count.
            Ok(o) => Ok(o
                .parts_count()
                .filter(|&n| n >= 1)
                .map(|n| (o.content_length().unwrap_or(0).max(0) as u64, n as u32))),
            Err(e) => Err(self.err("HeadObject", key, e)),
        }
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> Result<GetResult> {
        let range = opts
            .range
            .as_ref()
            .map(|r| format!("bytes={}-{}", r.start, r.end.saturating_sub(1)));
        let vendor = VendorHeaders::default();
        let r = object_request!(self, self.sdk().await.get_object(), key)
            .set_range(range)
            .set_if_match(opts.if_match.clone())
            .set_version_id(opts.version.clone())
            .set_request_payer(self.payer())
            .customize()
            .interceptor(vendor.clone())
            .send()
            .await;
        let o = r.map_err(|e| match self.err("GetObject", key, e) {
            StoreError::PreconditionFailed { store, key, .. } => StoreError::PreconditionFailed {
                store,
                key,
                expected: opts.if_match.clone().unwrap_or_default(),
            },
            other => other,
        })?;
        let total = match o
            .content_range()
            .and_then(|cr| cr.rsplit_once('/'))
            .and_then(|(_, t)| t.parse::<u64>().ok())
        {
            Some(t) => t,
            None => o.content_length().unwrap_or(0).max(0) as u64,
        };
        let answered = vendor.get();
        let mut attributes = attributes_of!(o);
        answered.merge_user(&mut attributes.user);
        let tags = o.tag_count().map(|n| n.max(0) as u32).or(answered.tag_count);
        let meta = ObjectMeta {
            key: key.to_string(),
            size: total,
            etag: nonempty(o.e_tag()),
            last_modified: millis(o.last_modified()),
            mtime_ns: s3_meta::mtime(&attributes.user),
            // OSS and COS send the whole object's CRC-64/ECMA with every read.
            checksums: s3_meta::checksums(None, None, answered.crc),
            encrypted: self.note_sse(o.server_side_encryption(), o.sse_customer_algorithm()),
            version: nonempty(o.version_id()),
            // S3 sends the count only when there are tags.
            tag_count: Some(tags.unwrap_or(0)),
        };
        let expected = o.content_length().unwrap_or(0).max(0) as usize;
        Ok(GetResult {
            body: self.read_body(key, o.body, expected).await?,
            meta,
            attributes,
        })
    }

    async fn put(&self, key: &str, body: Bytes, md5: [u8; 16], opts: &PutOptions) -> Result<Option<String>> {
        let (len, crc) = (body.len() as i64, self.crc_of(&body).await);
        let req = self.sdk().await.put_object().bucket(&self.bucket).key(key);
        let req = req
            .content_length(len)
            .content_md5(md5_header(&md5))
            .set_checksum_crc64_nvme(crc.map(crate::checksum::crc64_base64))
            .body(ByteStream::from(body))
            .set_request_payer(self.payer());
        let req = signed_as_configured!(self, with_put_options!(req, opts).customize());
        let r = req.send().await.map_err(|e| self.err("PutObject", key, e))?;
        self.note_sse(r.server_side_encryption(), r.sse_customer_algorithm());
        Ok(nonempty(r.e_tag()))
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions, _shape: UploadShape) -> Result<String> {
        let mut req =
            object_request!(self, self.sdk().await.create_multipart_upload(), key).set_request_payer(self.payer());
        if self.crcs.is_some() {
            req = req
                .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
                .checksum_type(ChecksumType::FullObject);
        }
        let r = with_put_options!(req, opts)
            .send()
            .await
            .map_err(|e| self.err("CreateMultipartUpload", key, e))?;
        self.note_sse(r.server_side_encryption(), r.sse_customer_algorithm());
        r.upload_id().map(str::to_string).ok_or_else(|| StoreError::Backend {
            store: self.desc.clone(),
            operation: "CreateMultipartUpload",
            code: "NoUploadId".into(),
            message: "the store answered without an upload id".into(),
            retryable: true,
        })
    }

    async fn upload_part(&self, key: &str, upload_id: &str, number: u32, body: Bytes, md5: [u8; 16]) -> Result<String> {
        let (len, crc) = (body.len() as i64, self.crc_of(&body).await);
        let req = self.sdk().await.upload_part().bucket(&self.bucket).key(key);
        let req = req
            .upload_id(upload_id)
            .part_number(number as i32)
            .content_length(len)
            .content_md5(md5_header(&md5))
            .set_checksum_crc64_nvme(crc.map(crate::checksum::crc64_base64))
            .body(ByteStream::from(body))
            .set_request_payer(self.payer());
        let req = signed_as_configured!(self, req.customize());
        let r = req
            .send()
            .await
            .map_err(|e| self.upload_err("UploadPart", key, upload_id, e))?;
        self.note_sse(r.server_side_encryption(), r.sse_customer_algorithm());
        if let (Some(crcs), Some(crc)) = (&self.crcs, crc) {
            crcs.sent(upload_id, number, crc, len as u64);
        }
        nonempty(r.e_tag()).ok_or_else(|| StoreError::Backend {
            store: self.desc.clone(),
            operation: "UploadPart",
            code: "NoETag".into(),
            message: format!("part {number} was accepted without an ETag"),
            retryable: true,
        })
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let r = upload_request!(self, self.sdk().await.list_parts(), key, upload_id)
                .set_part_number_marker(marker.take())
                .set_request_payer(self.payer())
                .send()
                .await
                .map_err(|e| match self.upload_err("ListParts", key, upload_id, e) {
                    // An upload id that does not belong to this key is "no such upload" for this
                    // key; Ceph-based stores answer NoSuchKey there.
                    StoreError::NotFound { store, key } => StoreError::NoSuchUpload {
                        store,
                        key,
                        upload_id: upload_id.to_string(),
                    },
                    other => other,
                })?;
            for p in r.parts() {
                let number = p.part_number().unwrap_or(0).max(0) as u32;
                let size = p.size().unwrap_or(0).max(0) as u64;
                let crc = p.checksum_crc64_nvme().and_then(crate::checksum::crc64_from_base64);
                if let (Some(crcs), Some(crc)) = (&self.crcs, crc) {
                    crcs.sent(upload_id, number, crc, size);
                }
                out.push(PartInfo {
                    number,
                    etag: p.e_tag().unwrap_or("").to_string(),
                    size,
                });
            }
            marker = nonempty(r.next_part_number_marker());
            if !r.is_truncated().unwrap_or(false) || marker.is_none() {
                break;
            }
        }
        out.sort_by_key(|p| p.number);
        Ok(out)
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[PartInfo]) -> Result<Option<String>> {
        // The parts' CRC-64/NVMEs (those sent by this process, else as the
        // store lists them) and the whole object's, combined in order.
        let crcs = match &self.crcs {
            Some(c) => c.for_completion(self, key, upload_id, parts).await?,
            None => None,
        };
        let b64 = crate::checksum::crc64_base64;
        let completed: Vec<CompletedPart> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                CompletedPart::builder()
                    .part_number(p.number as i32)
                    .e_tag(&p.etag)
                    .set_checksum_crc64_nvme(crcs.as_ref().map(|c| b64(c.parts[i])))
                    .build()
            })
            .collect();
        let mut req = upload_request!(self, self.sdk().await.complete_multipart_upload(), key, upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
            .set_request_payer(self.payer());
        if let Some(c) = &crcs {
            req = req
                .checksum_crc64_nvme(b64(c.whole))
                .checksum_type(ChecksumType::FullObject);
        }
        let r = req
            .send()
            .await
            .map_err(|e| self.upload_err("CompleteMultipartUpload", key, upload_id, e))?;
        if let Some(c) = &self.crcs {
            c.forget(upload_id);
        }
        self.note_sse(r.server_side_encryption(), None);
        Ok(nonempty(r.e_tag()))
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let r = upload_request!(self, self.sdk().await.abort_multipart_upload(), key, upload_id)
            .set_request_payer(self.payer())
            .send()
            .await;
        if let Some(c) = &self.crcs {
            c.forget(upload_id);
        }
        match r {
            Ok(_) => Ok(()),
            Err(e) => match self.upload_err("AbortMultipartUpload", key, upload_id, e) {
                StoreError::NoSuchUpload { .. } | StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let r = self
                .sdk()
                .await
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .set_request_payer(self.payer())
                .send()
                .await
                .map_err(|e| self.err("ListMultipartUploads", prefix, e))?;
            for u in r.uploads() {
                if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                    out.push(UploadInfo {
                        key: k.into(),
                        upload_id: id.into(),
                        initiated: millis(u.initiated()),
                    });
                }
            }
            key_marker = nonempty(r.next_key_marker());
            id_marker = nonempty(r.next_upload_id_marker());
            if !r.is_truncated().unwrap_or(false) || key_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn list_versions_page(&self, prefix: &str, after: Option<&VersionMarker>) -> Result<VersionPage> {
        self.versions_page(prefix, after).await
    }

    async fn versioning(&self) -> Result<Versioning> {
        self.bucket_versioning().await
    }

    async fn get_tags(&self, key: &str, version: Option<&str>) -> Result<Vec<(String, String)>> {
        self.tags(key, version).await
    }

    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> Result<()> {
        self.set_tags(key, tags).await
    }

    async fn list_dirs(&self, prefix: &str, max: usize) -> Result<Vec<String>> {
        self.dirs(prefix, max).await
    }

    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.sdk()
            .await
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .set_request_payer(self.payer())
            .send()
            .await
            .map_err(|e| self.err("DeleteObject", key, e))?;
        Ok(())
    }
}

impl S3Store {
    /// Reads a body into one buffer of the announced length, filled as the
    /// chunks arrive: copied once, never held twice, and a large body is a
    /// memory map of its own (see `crate::body`). A body longer or shorter
    /// than announced is a cut connection, retried like one.
    async fn read_body(&self, key: &str, mut stream: ByteStream, expected: usize) -> Result<Bytes> {
        let cut = |message: String| StoreError::Unreachable {
            store: self.desc.clone(),
            operation: "GetObject",
            message,
        };
        let mut buf = BodyBuf::with_capacity(expected);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| cut(format!("reading the body of {key:?}: {}", error_chain(&e))))?;
            if !buf.push(&chunk) {
                return Err(cut(format!(
                    "the body of {key:?} runs past its Content-Length {expected}"
                )));
            }
        }
        if buf.len() != expected {
            let got = buf.len();
            return Err(cut(format!(
                "the body of {key:?} ended after {got} of {expected} bytes"
            )));
        }
        Ok(buf.freeze())
    }

    fn upload_err<E>(
        &self,
        operation: &'static str,
        key: &str,
        upload_id: &str,
        e: SdkError<E, HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match self.err(operation, key, e) {
            StoreError::NoSuchUpload { store, key, .. } => StoreError::NoSuchUpload {
                store,
                key,
                upload_id: upload_id.into(),
            },
            other => other,
        }
    }
}

#[path = "s3_copy.rs"]
mod copy;
#[path = "s3_presign.rs"]
pub mod presign;
#[path = "s3_versions.rs"]
mod versions;
