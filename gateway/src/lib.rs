//! ferry-gateway: uploads through presigned URLs for clients that must
//! never hold storage keys (field devices, partners' machines, browsers).
//!
//! The protocol (JSON over HTTP; every call carries `Authorization: Bearer
//! TOKEN`, see [`tokens`]):
//!
//! 1. `POST /v1/uploads` `{"key", "size", "part_size"?, "md5s"?}`. The
//!    gateway checks the token (prefix, uploads, bytes, expiry) before it
//!    creates anything, plans the parts with ferry's planner
//!    ([`ferry_core::plan`]), creates the multipart upload at the store
//!    and answers an upload id and one presigned `PUT` per part (SigV4,
//!    valid for the URL lifetime). With the parts' MD5s declared, each
//!    part's `Content-MD5` is signed into its URL: the store refuses other
//!    bytes under it. An object under the multipart minimum (5 MiB) gets
//!    one presigned PUT of the whole object, as does any object up to
//!    5 GiB whose client asks for it (`"whole": true`).
//! 2. The client PUTs the parts straight to the store, in parallel.
//! 3. `GET /v1/uploads/{id}`: the parts the store holds (ListParts) and
//!    fresh URLs for the rest — a client that crashed, or whose URLs
//!    expired, resumes.
//! 4. `POST /v1/uploads/{id}/complete`: the gateway lists the parts,
//!    checks their number, sizes and (when declared) MD5s against the
//!    plan, completes the upload, reads the object back (size, and the
//!    ETag as the MD5 of the parts' MD5s) and answers its ETag.
//!    `DELETE /v1/uploads/{id}` aborts.
//!
//! A syncing client also lists what it may see (`GET /v1/objects`) and
//! asks for one part's URL bound to an MD5 it learns only as it reads the
//! part (`POST /v1/uploads/{id}/parts/{n}`; see `client_calls`).
//!
//! Every upload is a record in the state store (embedded or DynamoDB):
//! bucket `DEST#gateway`, key the upload id, holding the store's upload
//! id, the plan, the declared MD5s (as its parts) and the ETag expected,
//! under a lease that ends when the upload is abandoned: [`Gateway::sweep`]
//! aborts uploads whose lease ended and records them failed. The upload id
//! names the token that created it and the object's key; only that token
//! may resume, complete or abort it.

pub mod server;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ferry_core::etag::ETag;
use ferry_core::plan;
use ferry_core::state::{Claim, ObjectRecord, Outcome, RecordKey, RunCounters, StateStore, Status, UploadRecord};
use ferry_core::store::{ObjectStore, PartInfo, Presign, PresignedUrl, PutOptions, UploadShape};
use serde::Serialize;
use serde_json::json;

use crate::tokens::{Token, Tokens};

/// The run under which upload records are kept (the sweeper reads them).
const UPLOADS_RUN: &str = "gateway";
/// The lease holder of upload records: any gateway process.
const HOLDER: &str = "ferry-gateway";

/// A gateway's settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The bucket records are kept under (the destination's).
    pub bucket: String,
    /// Key prefix of every upload (the destination URL's).
    pub prefix: String,
    /// How long a presigned URL is valid.
    pub url_ttl: Duration,
    /// An upload not completed this long after its creation (or its last
    /// resume) is aborted.
    pub abort_after: Duration,
    /// The part size asked for when the client names none (a floor: the
    /// planner grows it to fit 10,000 parts).
    pub part_size: u64,
}

/// The gateway: a store that signs, the ledger and the tokens.
#[derive(Debug)]
pub struct Gateway {
    store: Arc<dyn ObjectStore>,
    signer: Arc<dyn Presign>,
    state: Arc<dyn StateStore>,
    tokens: std::sync::RwLock<Arc<Tokens>>,
    cfg: GatewayConfig,
}

/// An answer: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: serde_json::Value,
}

impl Answer {
    fn ok(body: serde_json::Value) -> Self {
        Answer { status: 200, body }
    }

    /// A refusal: `{"error": reason}`.
    pub fn refuse(status: u16, reason: impl Into<String>) -> Self {
        Answer {
            status,
            body: json!({ "error": reason.into() }),
        }
    }
}

/// One part to send: its number, size and presigned request.
#[derive(Debug, Clone, Serialize)]
pub struct PartUrl {
    /// Part number (1-based; 1 for an object sent whole).
    pub number: u32,
    /// Bytes of the part.
    pub size: u64,
    /// The presigned request.
    #[serde(flatten)]
    pub request: PresignedUrl,
}

/// Why a call failed inside the gateway (answered as 500/502).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] ferry_core::store::StoreError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] ferry_core::state::StateError),
}

impl From<GatewayError> for Answer {
    fn from(e: GatewayError) -> Self {
        tracing::warn!(error = %e, "A gateway call failed.");
        Answer::refuse(502, e.to_string())
    }
}

/// An upload id: `RANDOM.TOKEN.KEY` (key in base64url).
struct UploadId {
    token: String,
    key: String,
}

impl UploadId {
    fn make(token: &str, key: &str) -> String {
        let r: [u8; 12] = rand::random();
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
        format!("{}.{token}.{k}", hex::encode(r))
    }

    fn parse(id: &str) -> Option<Self> {
        let mut it = id.splitn(3, '.');
        let (_, token, k) = (it.next()?, it.next()?, it.next()?);
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(k).ok()?;
        Some(UploadId {
            token: token.to_string(),
            key: String::from_utf8(key).ok()?,
        })
    }
}

fn parse_md5(s: &str) -> Option<[u8; 16]> {
    let bytes = match s.len() {
        32 => hex::decode(s).ok()?,
        _ => base64::engine::general_purpose::STANDARD.decode(s).ok()?,
    };
    bytes.try_into().ok()
}

/// Whether an upload goes in one PUT: asked for, or under the multipart minimum.
fn whole(req: &CreateUpload) -> bool {
    req.whole || req.size < plan::MIN_PART
}

/// Whether a recorded upload is an object sent in one PUT (no store upload id).
fn sent_whole(up: &UploadRecord) -> bool {
    up.upload_id.is_empty()
}

impl Gateway {
    /// A gateway over a destination `store` (and its signer), the ledger and the tokens.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        signer: Arc<dyn Presign>,
        state: Arc<dyn StateStore>,
        tokens: Tokens,
        cfg: GatewayConfig,
    ) -> Self {
        Gateway {
            store,
            signer,
            state,
            tokens: std::sync::RwLock::new(Arc::new(tokens)),
            cfg,
        }
    }

    /// The token of an `Authorization` header, or the refusal.
    /// Replaces the tokens accepted (a reload); calls under way keep the old ones.
    pub fn set_tokens(&self, tokens: Tokens) {
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tokens);
    }

    /// The tokens accepted now.
    pub fn tokens(&self) -> Arc<Tokens> {
        self.tokens.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn authorize(&self, authorization: Option<&str>) -> Result<Token, Answer> {
        let Some(presented) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
            return Err(Answer::refuse(401, "send Authorization: Bearer TOKEN"));
        };
        let Some(t) = self.tokens().find(presented.trim()).cloned() else {
            return Err(Answer::refuse(401, "the token is not one this gateway issued"));
        };
        if t.expires_at.is_some_and(|e| e <= ferry_core::now_millis()) {
            return Err(Answer::refuse(403, format!("token {} has expired", t.id)));
        }
        Ok(t)
    }

    fn record_key(&self, id: &str) -> RecordKey {
        RecordKey {
            bucket: format!("{}#gateway", self.cfg.bucket),
            key: id.to_string(),
        }
    }

    /// `POST /v1/uploads`.
    pub async fn create(&self, authorization: Option<&str>, req: CreateUpload) -> Answer {
        let token = match self.authorize(authorization) {
            Ok(t) => t,
            Err(a) => return a,
        };
        let plan = match self.check(&token, &req).await {
            Ok(p) => p,
            Err(a) => return a,
        };
        match self.start(&token, &req, plan).await {
            Ok(a) => a,
            Err(e) => e.into(),
        }
    }

    /// Every check of a new upload, before anything is created: its key,
    /// size, part size and MD5s, and the token's limits. Answers the plan.
    async fn check(&self, token: &Token, req: &CreateUpload) -> Result<Plan, Answer> {
        if req.key.is_empty() || req.key.len() > 1024 {
            return Err(Answer::refuse(400, "key: give 1 to 1024 bytes"));
        }
        if !req.key.starts_with(&token.prefix) {
            return Err(Answer::refuse(
                403,
                format!(
                    "key {:?} is outside token {}'s prefix {:?}",
                    req.key, token.id, token.prefix
                ),
            ));
        }
        if req.size > plan::MAX_PARTS * plan::MAX_PART {
            return Err(Answer::refuse(413, "size: an object holds at most 5 TiB"));
        }
        if req.part_size.is_some_and(|p| p < plan::MIN_PART) {
            return Err(Answer::refuse(400, "part_size: at least 5 MiB (5242880)"));
        }
        let part_size = plan::part_size(req.size, req.part_size.unwrap_or(self.cfg.part_size));
        if req.whole && req.size > plan::MAX_PART {
            return Err(Answer::refuse(
                413,
                "whole: one PUT holds at most 5 GiB; send the object in parts",
            ));
        }
        let n = if whole(req) {
            1
        } else {
            plan::parts(req.size, part_size).count()
        };
        let md5s = match &req.md5s {
            None => None,
            Some(list) if list.len() != n => {
                return Err(Answer::refuse(
                    400,
                    format!(
                        "md5s: {} given, the upload has {n} part(s) of {part_size} bytes",
                        list.len()
                    ),
                ))
            }
            Some(list) => {
                let parsed: Option<Vec<[u8; 16]>> = list.iter().map(|m| parse_md5(m)).collect();
                Some(parsed.ok_or_else(|| Answer::refuse(400, "md5s: each is 32 hex digits or 24 base64 characters"))?)
            }
        };
        self.within_limits(token, req.size).await?;
        Ok(Plan { part_size, md5s })
    }

    /// The token's uploads and bytes so far, against its limits.
    async fn within_limits(&self, token: &Token, size: u64) -> Result<(), Answer> {
        if token.max_uploads.is_none() && token.max_bytes.is_none() {
            return Ok(());
        }
        let used = match self.state.run_get(&usage_run(&token.id)).await {
            Ok(r) => r.map(|r| r.counters).unwrap_or_default(),
            Err(e) => return Err(GatewayError::from(e).into()),
        };
        if let Some(max) = token.max_uploads.filter(|m| used.enqueued >= *m) {
            return Err(Answer::refuse(
                409,
                format!("token {} has made its {max} upload(s)", token.id),
            ));
        }
        if let Some(max) = token.max_bytes.filter(|m| used.planned_bytes + size > *m) {
            return Err(Answer::refuse(
                413,
                format!(
                    "token {} may upload {max} bytes in all; {} are used and this upload needs {size}",
                    token.id, used.planned_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Creates the upload at the store and in the ledger, counts it
    /// against the token, and answers its URLs.
    async fn start(&self, token: &Token, req: &CreateUpload, plan: Plan) -> Result<Answer, GatewayError> {
        let id = UploadId::make(&token.id, &req.key);
        let key = format!("{}{}", self.cfg.prefix, req.key);
        let upload_id = match whole(req) {
            true => String::new(),
            false => {
                let shape = UploadShape {
                    size: req.size,
                    part_size: plan.part_size,
                };
                self.store.create_multipart(&key, &PutOptions::default(), shape).await?
            }
        };
        let expected = plan.md5s.as_ref().map(|m| match whole(req) {
            true => ETag::of_md5(&m[0]),
            false => ETag::of_parts(m.iter()),
        });
        let rk = self.record_key(&id);
        let recorded = self.record(&rk, req.size, &upload_id, &plan, expected).await;
        if let Err(e) = recorded {
            if !upload_id.is_empty() {
                let _ = self.store.abort_multipart(&key, &upload_id).await;
            }
            return Err(e);
        }
        let usage = RunCounters {
            enqueued: 1,
            planned_bytes: req.size,
            ..Default::default()
        };
        self.state.run_add(&usage_run(&token.id), usage).await?;
        tracing::info!(token = %token.id, key = %key, size = req.size, "Upload created.");
        let rec = self
            .state
            .get(&rk)
            .await?
            .unwrap_or_else(|| ObjectRecord::new(rk.clone(), UPLOADS_RUN, 0));
        self.describe(&id, &key, &rec, &[]).await
    }

    /// Writes an upload's record: claimed by the gateway until it is
    /// abandoned, its plan, and its declared MD5s as parts.
    async fn record(
        &self,
        rk: &RecordKey,
        size: u64,
        upload_id: &str,
        plan: &Plan,
        expected: Option<String>,
    ) -> Result<(), GatewayError> {
        let claim = self
            .state
            .claim(rk, HOLDER, UPLOADS_RUN, expected.as_deref(), self.cfg.abort_after)
            .await?;
        if let Claim::Busy { .. } = claim {
            return Err(GatewayError::State(ferry_core::state::StateError::LeaseLost {
                bucket: rk.bucket.clone(),
                key: rk.key.clone(),
                holder: "another upload".into(),
            }));
        }
        let up = UploadRecord {
            upload_id: upload_id.to_string(),
            part_size: plan.part_size,
            src_etag: expected,
            src_size: size,
        };
        self.state.begin_upload(rk, HOLDER, &up).await?;
        for (i, m) in plan.md5s.iter().flatten().enumerate() {
            let part = PartInfo {
                number: i as u32 + 1,
                etag: ETag::of_md5(m),
                size: 0,
            };
            self.state.part_done(rk, HOLDER, upload_id, &part).await?;
        }
        Ok(())
    }

    /// The upload as the client sees it: the parts the store holds and a
    /// fresh URL for each other part.
    async fn describe(
        &self,
        id: &str,
        key: &str,
        rec: &ObjectRecord,
        held: &[PartInfo],
    ) -> Result<Answer, GatewayError> {
        let up = rec.upload.as_ref();
        let size = up.map_or(0, |u| u.src_size);
        let part_size = up.map_or(0, |u| u.part_size);
        let declared = |n: u32| {
            rec.parts
                .iter()
                .find(|p| p.number == n)
                .and_then(|p| ETag(&p.etag).md5())
        };
        let mut urls = Vec::new();
        let whole = up.is_none_or(sent_whole);
        let planned: Vec<(u32, u64)> = match whole {
            true => vec![(1, size)],
            false => plan::parts(size, part_size)
                .map(|(n, r)| (n, r.end - r.start))
                .collect(),
        };
        for (n, len) in planned {
            if held.iter().any(|p| p.number == n && p.size == len) {
                continue;
            }
            let request = match up.map(|u| u.upload_id.as_str()).filter(|u| !u.is_empty()) {
                None => self.signer.presign_put(key, declared(n), self.cfg.url_ttl).await?,
                Some(u) => {
                    self.signer
                        .presign_part(key, u, n, declared(n), self.cfg.url_ttl)
                        .await?
                }
            };
            urls.push(PartUrl {
                number: n,
                size: len,
                request,
            });
        }
        let expires = ferry_core::now_millis() + self.cfg.url_ttl.as_millis() as i64;
        Ok(Answer::ok(json!({
            "id": id,
            "key": key,
            "size": size,
            "part_size": part_size,
            "whole": whole,
            "held": held.iter().map(|p| json!({"number": p.number, "size": p.size, "etag": p.etag})).collect::<Vec<_>>(),
            "parts": urls,
            "urls_expire_at": expires,
            "abandoned_at": rec.lease_until,
        })))
    }

    /// The record of an upload id the token may use, or the refusal.
    async fn upload_of(
        &self,
        authorization: Option<&str>,
        id: &str,
    ) -> Result<(String, RecordKey, ObjectRecord), Answer> {
        let token = self.authorize(authorization)?;
        let parsed = UploadId::parse(id).ok_or_else(|| Answer::refuse(404, format!("no upload {id:?}")))?;
        if parsed.token != token.id {
            return Err(Answer::refuse(403, format!("upload {id} belongs to another token")));
        }
        let rk = self.record_key(id);
        match self.state.get(&rk).await {
            Ok(Some(rec)) => Ok((format!("{}{}", self.cfg.prefix, parsed.key), rk, rec)),
            Ok(None) => Err(Answer::refuse(404, format!("no upload {id:?}"))),
            Err(e) => Err(GatewayError::from(e).into()),
        }
    }

    /// `GET /v1/uploads/{id}`: what the store holds and URLs for the rest.
    pub async fn resume(&self, authorization: Option<&str>, id: &str) -> Answer {
        let (key, _, rec) = match self.upload_of(authorization, id).await {
            Ok(u) => u,
            Err(a) => return a,
        };
        if let Some(a) = ended(&rec) {
            return a;
        }
        let held = match self.held(&key, &rec).await {
            Ok(h) => h,
            Err(e) => return e.into(),
        };
        // A client that comes back keeps its upload from being abandoned.
        let rk = self.record_key(id);
        if let Err(e) = self.state.renew(&rk, HOLDER, self.cfg.abort_after).await {
            tracing::debug!(error = %e, "Could not extend an upload's time.");
        }
        self.describe(id, &key, &rec, &held).await.unwrap_or_else(Answer::from)
    }

    /// The parts of an upload the store holds (none for an object sent whole).
    async fn held(&self, key: &str, rec: &ObjectRecord) -> Result<Vec<PartInfo>, GatewayError> {
        match rec
            .upload
            .as_ref()
            .map(|u| u.upload_id.as_str())
            .filter(|u| !u.is_empty())
        {
            Some(u) => Ok(self.store.list_parts(key, u).await?),
            None => Ok(Vec::new()),
        }
    }

    /// `DELETE /v1/uploads/{id}`: aborts the upload.
    pub async fn abort(&self, authorization: Option<&str>, id: &str) -> Answer {
        let (key, rk, rec) = match self.upload_of(authorization, id).await {
            Ok(u) => u,
            Err(a) => return a,
        };
        if let Some(a) = ended(&rec) {
            return a;
        }
        match self.end_abandoned(&key, &rk, &rec, "aborted by the client").await {
            Ok(()) => Answer::ok(json!({"id": id, "aborted": true})),
            Err(e) => e.into(),
        }
    }

    /// Aborts an upload at the store and records it failed with `why`.
    async fn end_abandoned(
        &self,
        key: &str,
        rk: &RecordKey,
        rec: &ObjectRecord,
        why: &str,
    ) -> Result<(), GatewayError> {
        if let Some(u) = rec
            .upload
            .as_ref()
            .map(|u| u.upload_id.as_str())
            .filter(|u| !u.is_empty())
        {
            match self.store.abort_multipart(key, u).await {
                Ok(()) | Err(ferry_core::store::StoreError::NoSuchUpload { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Claim::Busy { .. } = self
            .state
            .claim(rk, HOLDER, UPLOADS_RUN, None, self.cfg.abort_after)
            .await?
        {
            return Ok(());
        }
        let outcome = Outcome {
            error: Some(why.to_string()),
            ..Outcome::bare(Status::Failed)
        };
        self.state.finish(rk, HOLDER, &outcome).await?;
        Ok(())
    }

    /// Aborts every upload whose time ran out (see [`GatewayConfig::abort_after`]);
    /// answers how many.
    pub async fn sweep(&self) -> Result<usize, GatewayError> {
        let now = ferry_core::now_millis();
        let open = self.state.run_objects(UPLOADS_RUN, Status::InProgress, 1000).await?;
        let mut n = 0;
        for rec in open.into_iter().filter(|r| r.lease_until.is_some_and(|t| t < now)) {
            let Some(parsed) = UploadId::parse(&rec.key.key) else {
                continue;
            };
            let key = format!("{}{}", self.cfg.prefix, parsed.key);
            let why = format!(
                "aborted: not completed within {}",
                humantime::format_duration(self.cfg.abort_after)
            );
            self.end_abandoned(&key, &rec.key, &rec, &why).await?;
            tracing::info!(key = %key, upload = %rec.key.key, "An abandoned upload was aborted.");
            n += 1;
        }
        Ok(n)
    }
}

mod client_calls;
mod complete;

pub use ferry_core::store::gateway::wire::{CreateUpload, PartRequest};

/// The answer for an upload that has ended, if it has.
fn ended(rec: &ObjectRecord) -> Option<Answer> {
    match rec.status {
        Status::Done => Some(Answer::ok(json!({
            "id": rec.key.key,
            "complete": true,
            "etag": rec.dest_etag,
        }))),
        Status::InProgress => None,
        _ => Some(Answer::refuse(
            410,
            rec.last_error.clone().unwrap_or_else(|| "the upload has ended".into()),
        )),
    }
}

/// The counters of a token's usage.
fn usage_run(token: &str) -> String {
    format!("gateway:{token}")
}

/// A new upload's plan.
struct Plan {
    part_size: u64,
    md5s: Option<Vec<[u8; 16]>>,
}
