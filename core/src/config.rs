//! The job configuration shared by the finder and the workers.
//!
//! Every setting can come from a TOML file (`--config job.toml`), from
//! environment variables and from flags; a flag wins over the environment,
//! which wins over the file, which wins over the defaults below. Unknown keys
//! in the file are errors. Secrets (access keys) come from the file or the
//! `FERRY_SRC_*` / `FERRY_DEST_*` environment variables, never from flags.
//! [`JobConfig::build`] validates everything and returns the runtime settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::diff::CompareMode;
use crate::location::Location;
use crate::store::vendor::Vendor;
use crate::store::{LocalStore, ObjectStore, PutOptions, S3Credentials, S3Store, S3StoreConfig};

/// A secret string: never printed by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

/// One side (source or destination).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SideConfig {
    /// `s3://bucket/prefix`, `file:///dir` or a path. Required.
    pub url: Option<String>,
    /// Vendor preset (`aws`, `aliyun-oss`, …). Default `aws`, or `custom` when an endpoint is given.
    pub vendor: Option<Vendor>,
    /// Endpoint URL; overrides the preset.
    pub endpoint: Option<String>,
    /// Region (signing region; forms the endpoint for presets).
    pub region: Option<String>,
    /// Named profile of the shared AWS config files.
    pub profile: Option<String>,
    /// Path-style addressing; default from the preset.
    pub path_style: Option<bool>,
    /// Unsigned requests. Default false.
    pub anonymous: bool,
    /// Send `x-amz-request-payer: requester`. Default false.
    pub requester_pays: bool,
    /// Sign request bodies with SHA-256 as well as Content-MD5, for stores
    /// that refuse unsigned payloads. Default false (bodies are bound to the
    /// signature by their signed Content-MD5 header).
    pub sign_payload: bool,
    /// Send CRC-64/NVME checksums with uploads (PutObject, UploadPart, and
    /// the full-object checksum at completion) so the store checks every body
    /// against them and keeps the object's checksum. Default: on for Amazon
    /// S3 (the `aws` preset without an endpoint), off elsewhere (many
    /// S3-compatible stores refuse `x-amz-checksum-*` headers).
    pub crc64nvme: Option<bool>,
    /// Static access key id (or env `FERRY_SRC_ACCESS_KEY_ID` / `FERRY_DEST_ACCESS_KEY_ID`).
    pub access_key_id: Option<Secret>,
    /// Static secret key (or env `FERRY_SRC_SECRET_ACCESS_KEY` / `FERRY_DEST_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<Secret>,
    /// Session token for temporary keys (or env `FERRY_SRC_SESSION_TOKEN` / `FERRY_DEST_SESSION_TOKEN`).
    pub session_token: Option<Secret>,
    /// AWS Secrets Manager secret (name or ARN) holding the keys as JSON
    /// `{"access_key_id": "...", "secret_access_key": "..."}` (optional `"session_token"`).
    pub secret: Option<String>,
    /// Destination only: storage class, e.g. `STANDARD_IA`.
    pub storage_class: Option<String>,
    /// Destination only: canned ACL, e.g. `bucket-owner-full-control`.
    pub acl: Option<String>,
    /// Destination only: server-side encryption, `AES256` or `aws:kms`.
    pub sse: Option<String>,
    /// Destination only: KMS key id for `aws:kms`.
    pub sse_kms_key_id: Option<String>,
}

/// Transfer engine settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    /// Objects larger than this use multipart upload. Default 64 MiB: one request
    /// per object below it, and no hashing at all for S3 sources whose ETag is
    /// the MD5 (see the engine). Lower it on slow, lossy links, where a failed
    /// PUT costs the whole object again.
    pub multipart_threshold: ByteSize,
    /// Part size; grown automatically so no object needs more than 10,000
    /// parts, and kept within 5 MiB..5 GiB. Default 16 MiB.
    pub part_size: ByteSize,
    /// Parts of one object in flight at once. Default 8.
    pub concurrency: usize,
    /// Budget of bytes held in memory by all transfers of a process. Default 256 MiB.
    /// Raised to one part size when smaller.
    pub max_in_flight: ByteSize,
    /// Objects transferred at once by a process (`--workers`). Default 32: small
    /// objects are bound by round trips, and the byte budget, not this, bounds
    /// memory for large ones.
    pub workers: usize,
    /// Tries of one store call when it fails with a retryable error. Default 5.
    pub retries: u32,
    /// Failed attempts of a job, counted in the ledger, before it is given up
    /// (its upload aborted, its message dead-lettered, `status` naming it).
    /// Default 5. Attempts cut short by a worker that died or stopped are not
    /// failures and are not counted.
    pub max_attempts: u32,
    /// Deliveries of a message before the embedded queue parks it as dead (on
    /// SQS the queue's redrive policy says). A backstop only: a message whose
    /// deliveries were spent by workers that died or stopped is requeued
    /// fresh before it reaches the limit. Default 10.
    pub max_receives: u32,
    /// Lease on a job and an object, extended while the job runs. Default 60 s.
    #[serde(with = "humantime_serde_compat")]
    pub lease: Duration,
    /// On SIGTERM/SIGINT, how long a worker lets running jobs finish before it
    /// stops them, releases their leases and exits. Default 25 s (ECS waits
    /// 30 s before SIGKILL).
    #[serde(with = "humantime_serde_compat")]
    pub shutdown_grace: Duration,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            multipart_threshold: ByteSize::mib(64),
            part_size: ByteSize::mib(16),
            concurrency: 8,
            max_in_flight: ByteSize::mib(256),
            workers: 32,
            retries: 5,
            max_attempts: 5,
            max_receives: 10,
            lease: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(25),
        }
    }
}

mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration like 60s or 5m: {e}")))
    }
}

/// The whole job file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobConfig {
    /// Where objects come from.
    pub source: SideConfig,
    /// Where they go.
    pub destination: SideConfig,
    /// How existing destination objects are compared. Default `size-etag`.
    pub compare: CompareMode,
    /// Globs a relative key must match (any). Default: all keys.
    pub include: Vec<String>,
    /// Globs that exclude a relative key.
    pub exclude: Vec<String>,
    /// A file with one source prefix per line (relative to the source URL's prefix).
    pub prefix_list: Option<PathBuf>,
    /// Where progress records live: `dynamodb://TABLE`, or a path to the
    /// embedded state file. Default: one file per source/destination pair
    /// under `$XDG_STATE_HOME/ferry` (or `~/.local/state/ferry`).
    pub state: Option<String>,
    /// Where jobs wait: an SQS queue URL, or a path to an embedded state file.
    /// Default: the embedded state file.
    pub queue: Option<String>,
    /// Finder schedule: `once`, `rate:15m` or `cron:MIN HOUR DOM MON DOW`. Default `once`.
    pub schedule: Option<String>,
    /// Worker health endpoint address, e.g. `0.0.0.0:8080` (`GET /healthz`). Default: none.
    pub health_addr: Option<String>,
    /// Delete sync: the finder deletes destination keys that have no source
    /// counterpart, and ObjectRemoved events delete at the destination.
    /// Default false.
    pub delete: bool,
    /// With `delete`: the most deletions one finder run queues; past it the
    /// run stops queueing deletions and fails. Default: no limit.
    pub max_delete: Option<u64>,
    /// Engine settings.
    pub transfer: TransferConfig,
}

/// A configuration error: names the setting and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// The setting, as a flag or file key.
    pub setting: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn cfg_err(setting: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.into(),
        message: message.into(),
    }
}

/// A side, validated.
#[derive(Debug, Clone)]
pub struct Side {
    /// The parsed location.
    pub location: Location,
    /// S3 settings, for S3 locations.
    pub s3: Option<S3StoreConfig>,
}

impl Side {
    /// The key prefix inside the store (empty for local directories).
    pub fn prefix(&self) -> &str {
        match &self.location {
            Location::S3 { prefix, .. } => prefix,
            Location::Local { .. } => "",
        }
    }

    /// The bucket (or directory) name used in state records.
    pub fn bucket(&self) -> String {
        match &self.location {
            Location::S3 { bucket, .. } => bucket.clone(),
            Location::Local { dir } => dir.display().to_string(),
        }
    }

    /// Opens the store.
    pub async fn open(&self) -> Arc<dyn ObjectStore> {
        match (&self.location, &self.s3) {
            (Location::S3 { .. }, Some(cfg)) => Arc::new(S3Store::new(cfg.clone()).await),
            (Location::Local { dir }, _) => Arc::new(LocalStore::new(dir.clone())),
            (Location::S3 { bucket, .. }, None) => Arc::new(
                S3Store::new(S3StoreConfig {
                    bucket: bucket.clone(),
                    ..Default::default()
                })
                .await,
            ),
        }
    }
}

/// Where progress records live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// The embedded SQLite file.
    Embedded(PathBuf),
    /// A DynamoDB table.
    Dynamo {
        /// Table name.
        table: String,
    },
}

/// Where jobs wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueLocation {
    /// The embedded SQLite file.
    Embedded(PathBuf),
    /// An SQS queue.
    Sqs {
        /// Queue URL.
        url: String,
    },
}

impl QueueLocation {
    /// The queue name (the last segment of an SQS URL).
    pub fn name(&self) -> String {
        match self {
            QueueLocation::Embedded(p) => p.display().to_string(),
            QueueLocation::Sqs { url } => url.trim_end_matches('/').rsplit('/').next().unwrap_or("").to_string(),
        }
    }
}

fn parse_state(v: &str) -> Result<StateLocation, ConfigError> {
    if let Some(table) = v.strip_prefix("dynamodb://") {
        let ok = (3..=255).contains(&table.len())
            && table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            return Err(cfg_err(
                "--state",
                format!("{table:?} is not a DynamoDB table name (3 to 255 of A-Z a-z 0-9 _ - .)"),
            ));
        }
        return Ok(StateLocation::Dynamo { table: table.into() });
    }
    if v.contains("://") {
        return Err(cfg_err(
            "--state",
            format!("{v:?}: expected dynamodb://TABLE or a file path"),
        ));
    }
    Ok(StateLocation::Embedded(PathBuf::from(v)))
}

fn parse_queue(v: &str) -> Result<QueueLocation, ConfigError> {
    if v.starts_with("https://") || v.starts_with("http://") {
        let segments = v.trim_end_matches('/').split('/').count();
        if segments < 5 {
            return Err(cfg_err(
                "--queue",
                format!("{v:?} is not an SQS queue URL like https://sqs.REGION.amazonaws.com/ACCOUNT/NAME"),
            ));
        }
        return Ok(QueueLocation::Sqs { url: v.into() });
    }
    if v.contains("://") {
        return Err(cfg_err(
            "--queue",
            format!("{v:?}: expected an SQS queue URL (https://…) or a file path"),
        ));
    }
    Ok(QueueLocation::Embedded(PathBuf::from(v)))
}

/// The validated job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Source.
    pub source: Side,
    /// Destination.
    pub destination: Side,
    /// How the destination is written.
    pub put: PutOptions,
    /// The file as given.
    pub raw: JobConfig,
    /// The embedded state file (used when the queue or the state is embedded).
    pub state_path: PathBuf,
    /// Where progress records live.
    pub state: StateLocation,
    /// Where jobs wait.
    pub queue: QueueLocation,
}

impl SideConfig {
    fn build(&self, which: &str, env_prefix: &str) -> Result<Side, ConfigError> {
        let flag = |name: &str| format!("--{which}-{name}");
        let url = self
            .url
            .as_deref()
            .ok_or_else(|| cfg_err(if which == "src" { "SRC" } else { "DEST" }, "is required"))?;
        let location = Location::parse(url).map_err(|m| cfg_err(if which == "src" { "SRC" } else { "DEST" }, m))?;
        let s3 = match &location {
            Location::Local { .. } => {
                if self.endpoint.is_some() || self.vendor.is_some() {
                    return Err(cfg_err(
                        flag("endpoint"),
                        format!("{url} is a local directory; endpoint and vendor apply to s3:// locations"),
                    ));
                }
                None
            }
            Location::S3 { bucket, .. } => {
                let vendor = self.vendor.unwrap_or(if self.endpoint.is_some() {
                    Vendor::Custom
                } else {
                    Vendor::Aws
                });
                let region = self
                    .region
                    .clone()
                    .or_else(|| vendor.default_region().map(str::to_string));
                let endpoint = match (&self.endpoint, vendor) {
                    (Some(ep), _) => Some(ep.clone()),
                    (None, v) if v.needs_endpoint() => {
                        return Err(cfg_err(
                            flag("endpoint"),
                            format!("vendor {v} needs an endpoint URL, e.g. --{which}-endpoint https://HOST:PORT"),
                        ))
                    }
                    (None, v) => match (&region, v.needs_region()) {
                        (None, true) => {
                            return Err(cfg_err(
                                flag("region"),
                                format!(
                                    "vendor {v} needs a region to form its endpoint, e.g. --{which}-region cn-hangzhou"
                                ),
                            ))
                        }
                        (Some(r), _) => v.endpoint(r),
                        (None, false) => v.endpoint(""),
                    },
                };
                if let Some(ep) = &endpoint {
                    if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                        return Err(cfg_err(
                            flag("endpoint"),
                            format!("{ep:?} is not a URL; write it as https://HOST[:PORT]"),
                        ));
                    }
                }
                let env = |n: &str| {
                    std::env::var(format!("{env_prefix}_{n}"))
                        .ok()
                        .filter(|v| !v.is_empty())
                };
                let ak = self
                    .access_key_id
                    .as_ref()
                    .map(|s| s.0.clone())
                    .or_else(|| env("ACCESS_KEY_ID"));
                let sk = self
                    .secret_access_key
                    .as_ref()
                    .map(|s| s.0.clone())
                    .or_else(|| env("SECRET_ACCESS_KEY"));
                let token = self
                    .session_token
                    .as_ref()
                    .map(|s| s.0.clone())
                    .or_else(|| env("SESSION_TOKEN"));
                if let Some(secret) = &self.secret {
                    if self.anonymous || self.profile.is_some() || ak.is_some() || sk.is_some() {
                        return Err(cfg_err(
                            flag("secret"),
                            "cannot be combined with static keys, a profile or anonymous access: choose one",
                        ));
                    }
                    if secret.trim().is_empty() {
                        return Err(cfg_err(flag("secret"), "the secret name is empty"));
                    }
                }
                let credentials = match (self.anonymous, &self.profile, ak, sk) {
                    _ if self.secret.is_some() => S3Credentials::Secret(self.secret.clone().unwrap_or_default()),
                    (true, Some(_), _, _) => {
                        return Err(cfg_err(
                            flag("anonymous"),
                            format!("cannot be combined with --{which}-profile"),
                        ))
                    }
                    (true, _, _, _) => S3Credentials::Anonymous,
                    (false, _, Some(access_key_id), Some(secret_access_key)) => S3Credentials::Static {
                        access_key_id,
                        secret_access_key,
                        session_token: token,
                    },
                    (false, _, Some(_), None) | (false, _, None, Some(_)) => {
                        return Err(cfg_err(
                            format!("{env_prefix}_ACCESS_KEY_ID / {env_prefix}_SECRET_ACCESS_KEY"),
                            "give both the access key id and the secret access key, or neither",
                        ))
                    }
                    (false, Some(p), None, None) => S3Credentials::Profile(p.clone()),
                    (false, None, None, None) => S3Credentials::Default,
                };
                Some(S3StoreConfig {
                    bucket: bucket.clone(),
                    endpoint,
                    region,
                    path_style: self.path_style.unwrap_or(vendor.path_style()),
                    credentials,
                    requester_pays: self.requester_pays,
                    sign_payload: self.sign_payload,
                    crc64nvme: self
                        .crc64nvme
                        .unwrap_or(vendor == Vendor::Aws && self.endpoint.is_none()),
                })
            }
        };
        Ok(Side { location, s3 })
    }
}

impl Job {
    /// How S3 event notifications and forwarded events map to this job's jobs.
    pub fn event_context(&self) -> crate::events::EventContext {
        crate::events::EventContext {
            src_bucket: self.source.bucket(),
            src_prefix: self.source.prefix().to_string(),
            dest_prefix: self.destination.prefix().to_string(),
            delete: self.raw.delete,
        }
    }

    /// Whether a side is a local directory.
    pub fn has_local_side(&self) -> bool {
        let local = |s: &Side| matches!(s.location, Location::Local { .. });
        local(&self.source) || local(&self.destination)
    }

    /// The compare mode, `auto` resolved for the job's sides.
    pub fn compare_mode(&self) -> CompareMode {
        self.raw.compare.resolve(self.has_local_side())
    }

    /// The SQLite file that keeps local files' checksums: the state file, or
    /// the pair's default one when the ledger is in DynamoDB.
    pub fn file_hashes_path(&self) -> PathBuf {
        if self.state_path.as_os_str().is_empty() {
            default_state_path(
                self.raw.source.url.as_deref().unwrap_or_default(),
                self.raw.destination.url.as_deref().unwrap_or_default(),
            )
        } else {
            self.state_path.clone()
        }
    }
}

/// Where the state file of a source/destination pair lives by default.
pub fn default_state_path(src: &str, dest: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    let digest = crate::etag::md5(format!("{src}\n{dest}").as_bytes());
    base.join("ferry")
        .join(format!("{}.sqlite", &hex::encode(digest)[..16]))
}

impl JobConfig {
    /// Reads a TOML job file.
    pub fn from_file(path: &Path) -> Result<toml::Table, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| cfg_err(format!("--config {}", path.display()), e.to_string()))?;
        text.parse::<toml::Table>()
            .map_err(|e| cfg_err(format!("--config {}", path.display()), e.to_string()))
    }

    /// Builds a config from a file table with the environment layer
    /// ([`env_layer`]) and then `overrides` applied on top (deep merge).
    pub fn from_layers(file: toml::Table, overrides: toml::Table, origin: &str) -> Result<Self, ConfigError> {
        let mut merged = file;
        merge(&mut merged, env_layer()?);
        merge(&mut merged, overrides);
        toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| cfg_err(origin, e.message().to_string()))
    }

    /// Where the job's progress records and queue are, and the embedded
    /// file's path; needs no source or destination when `state` is given.
    pub fn ledger(&self) -> Result<(StateLocation, QueueLocation, PathBuf), ConfigError> {
        let default_path = || -> Result<PathBuf, ConfigError> {
            match (&self.source.url, &self.destination.url) {
                (Some(s), Some(d)) => Ok(default_state_path(s, d)),
                _ => Err(cfg_err(
                    "--state",
                    "is required here (or the --config of the job, or its SRC and DEST): the default state file is named after them",
                )),
            }
        };
        let state = match &self.state {
            Some(v) => parse_state(v)?,
            None => StateLocation::Embedded(default_path()?),
        };
        let queue = match &self.queue {
            Some(v) => parse_queue(v)?,
            None => QueueLocation::Embedded(match &state {
                StateLocation::Embedded(p) => p.clone(),
                StateLocation::Dynamo { .. } => default_path()?,
            }),
        };
        let state_path = match (&state, &queue) {
            (StateLocation::Embedded(p), _) | (_, QueueLocation::Embedded(p)) => p.clone(),
            _ => PathBuf::new(),
        };
        Ok((state, queue, state_path))
    }

    /// Validates the configuration and resolves defaults.
    pub fn build(&self) -> Result<Job, ConfigError> {
        let source = self.source.build("src", "FERRY_SRC")?;
        let destination = self.destination.build("dest", "FERRY_DEST")?;
        let t = &self.transfer;
        if t.concurrency == 0 {
            return Err(cfg_err("--concurrency", "must be at least 1"));
        }
        if t.part_size.as_u64() < 5 * 1024 * 1024 || t.part_size.as_u64() > 5 * 1024 * 1024 * 1024 {
            return Err(cfg_err(
                "--part-size",
                format!("{} is outside S3's limits of 5 MiB to 5 GiB", t.part_size),
            ));
        }
        if t.multipart_threshold.as_u64() > 5 * 1024 * 1024 * 1024 {
            return Err(cfg_err(
                "--multipart-threshold",
                "a single PUT is limited to 5 GiB; use a smaller threshold",
            ));
        }
        if t.max_in_flight.as_u64() < 1024 * 1024 {
            return Err(cfg_err("--max-in-flight", "must be at least 1 MiB"));
        }
        if let (Some(sse), None) = (&self.destination.sse, &self.destination.sse_kms_key_id) {
            if sse != "AES256" && sse != "aws:kms" {
                return Err(cfg_err("--dest-sse", format!("{sse:?}: expected AES256 or aws:kms")));
            }
        }
        if self.destination.sse_kms_key_id.is_some() && self.destination.sse.as_deref() != Some("aws:kms") {
            return Err(cfg_err("--dest-sse-kms-key-id", "needs --dest-sse aws:kms"));
        }
        crate::filter::KeyFilter::new(&self.include, &self.exclude).map_err(|m| cfg_err("--include/--exclude", m))?;
        let put = PutOptions {
            attributes: Default::default(),
            storage_class: self.destination.storage_class.clone(),
            acl: self.destination.acl.clone(),
            sse: self.destination.sse.clone(),
            sse_kms_key_id: self.destination.sse_kms_key_id.clone(),
        };
        let (state, queue, state_path) = self.ledger()?;
        if let Some(s) = &self.schedule {
            crate::schedule::Schedule::parse(s).map_err(|m| cfg_err("--schedule", m))?;
        }
        if let Some(a) = &self.health_addr {
            a.parse::<std::net::SocketAddr>()
                .map_err(|_| cfg_err("--health-addr", format!("{a:?} is not an address like 0.0.0.0:8080")))?;
        }
        Ok(Job {
            source,
            destination,
            put,
            raw: self.clone(),
            state_path,
            state,
            queue,
        })
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Int,
    List,
}

const SIDE_KEYS: &[(&str, Kind)] = &[
    ("url", Kind::Str),
    ("vendor", Kind::Str),
    ("endpoint", Kind::Str),
    ("region", Kind::Str),
    ("profile", Kind::Str),
    ("path_style", Kind::Bool),
    ("anonymous", Kind::Bool),
    ("requester_pays", Kind::Bool),
    ("sign_payload", Kind::Bool),
    ("crc64nvme", Kind::Bool),
    ("access_key_id", Kind::Str),
    ("secret_access_key", Kind::Str),
    ("session_token", Kind::Str),
    ("secret", Kind::Str),
];

const DEST_KEYS: &[&str] = &["storage_class", "acl", "sse", "sse_kms_key_id"];

const TOP_KEYS: &[(&str, Kind)] = &[
    ("compare", Kind::Str),
    ("include", Kind::List),
    ("exclude", Kind::List),
    ("prefix_list", Kind::Str),
    ("state", Kind::Str),
    ("queue", Kind::Str),
    ("schedule", Kind::Str),
    ("health_addr", Kind::Str),
    ("delete", Kind::Bool),
    ("max_delete", Kind::Int),
];

const TRANSFER_KEYS: &[(&str, Kind)] = &[
    ("multipart_threshold", Kind::Str),
    ("part_size", Kind::Str),
    ("concurrency", Kind::Int),
    ("max_in_flight", Kind::Str),
    ("workers", Kind::Int),
    ("retries", Kind::Int),
    ("max_attempts", Kind::Int),
    ("max_receives", Kind::Int),
    ("lease", Kind::Str),
    ("shutdown_grace", Kind::Str),
];

/// Every job-file key with the environment variable that sets it:
/// `FERRY_<KEY>` for top-level and `[transfer]` keys, `FERRY_SRC_<KEY>` for
/// `[source]`, `FERRY_DEST_<KEY>` for `[destination]` (upper case).
pub fn env_names() -> Vec<(String, String)> {
    env_keys()
        .into_iter()
        .map(|(var, path, _)| (var, path.join(".")))
        .collect()
}

fn env_keys() -> Vec<(String, Vec<&'static str>, Kind)> {
    let mut out = Vec::new();
    for (k, kind) in TOP_KEYS {
        out.push((format!("FERRY_{}", k.to_uppercase()), vec![*k], *kind));
    }
    for (k, kind) in TRANSFER_KEYS {
        out.push((format!("FERRY_{}", k.to_uppercase()), vec!["transfer", *k], *kind));
    }
    for (section, prefix) in [("source", "FERRY_SRC"), ("destination", "FERRY_DEST")] {
        for (k, kind) in SIDE_KEYS {
            out.push((format!("{prefix}_{}", k.to_uppercase()), vec![section, *k], *kind));
        }
    }
    for k in DEST_KEYS {
        out.push((
            format!("FERRY_DEST_{}", k.to_uppercase()),
            vec!["destination", *k],
            Kind::Str,
        ));
    }
    out
}

/// The environment layer: every `FERRY_*` variable of [`env_names`] that is
/// set and not empty, as a job-file table.
pub fn env_layer() -> Result<toml::Table, ConfigError> {
    let mut t = toml::Table::new();
    for (var, path, kind) in env_keys() {
        let Some(v) = std::env::var(&var).ok().filter(|v| !v.is_empty()) else {
            continue;
        };
        let value: toml::Value = match kind {
            Kind::Str => v.into(),
            Kind::Bool => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true.into(),
                "0" | "false" | "no" | "off" => false.into(),
                _ => return Err(cfg_err(var, format!("{v:?} is not a boolean (true or false)"))),
            },
            Kind::Int => v
                .trim()
                .parse::<i64>()
                .map_err(|_| cfg_err(var.clone(), format!("{v:?} is not a whole number")))?
                .into(),
            Kind::List => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::from(s.to_string()))
                .collect::<Vec<_>>()
                .into(),
        };
        let mut cur = &mut t;
        for seg in &path[..path.len() - 1] {
            cur = cur
                .entry(seg.to_string())
                .or_insert_with(|| toml::Table::new().into())
                .as_table_mut()
                .expect("sections are tables");
        }
        cur.insert(path[path.len() - 1].to_string(), value);
    }
    Ok(t)
}

/// Merges `over` into `base`: tables key by key, any other value replaced.
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_and_validation() {
        let file: toml::Table = r#"
            compare = "size"
            [source]
            url = "s3://src-bucket/p/"
            vendor = "aliyun-oss"
            region = "cn-hangzhou"
            [destination]
            url = "/tmp/x"
            [transfer]
            part_size = "16 MiB"
            lease = "2m"
        "#
        .parse()
        .unwrap();
        let over: toml::Table = "[transfer]\nworkers = 3\n".parse().unwrap();
        let cfg = JobConfig::from_layers(file, over, "test").unwrap();
        assert_eq!(cfg.transfer.workers, 3);
        assert_eq!(cfg.transfer.part_size, ByteSize::mib(16));
        assert_eq!(cfg.transfer.lease, Duration::from_secs(120));
        let job = cfg.build().unwrap();
        let s3 = job.source.s3.unwrap();
        assert_eq!(s3.endpoint.as_deref(), Some("https://oss-cn-hangzhou.aliyuncs.com"));
        assert!(!s3.path_style);

        let bad: toml::Table = "[source]\nurl='x'\nendpont='y'\n".parse().unwrap();
        let e = JobConfig::from_layers(bad, toml::Table::new(), "job.toml").unwrap_err();
        assert!(e.to_string().contains("endpont"), "{e}");

        let mut cfg = JobConfig::default();
        cfg.source.url = Some("s3://bkt".into());
        cfg.source.vendor = Some(Vendor::AliyunOss);
        cfg.destination.url = Some("/tmp/d".into());
        assert!(cfg.build().unwrap_err().to_string().contains("--src-region"));
    }

    #[test]
    fn every_key_has_an_environment_variable() {
        let names = env_names();
        let find = |var: &str| names.iter().find(|(v, _)| v == var).map(|(_, p)| p.clone());
        assert_eq!(find("FERRY_PART_SIZE").as_deref(), Some("transfer.part_size"));
        assert_eq!(find("FERRY_SRC_SIGN_PAYLOAD").as_deref(), Some("source.sign_payload"));
        assert_eq!(find("FERRY_DEST_SECRET").as_deref(), Some("destination.secret"));
        assert_eq!(find("FERRY_QUEUE").as_deref(), Some("queue"));
        // Every key of a full job file is covered.
        let full = JobConfig {
            source: SideConfig {
                url: Some("s3://a".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let t = toml::Table::try_from(&full).unwrap();
        for (k, v) in &t {
            if let toml::Value::Table(sub) = v {
                for k2 in sub.keys() {
                    let path = format!("{k}.{k2}");
                    assert!(
                        names.iter().any(|(_, p)| *p == path),
                        "{path} has no environment variable"
                    );
                }
            } else {
                assert!(names.iter().any(|(_, p)| p == k), "{k} has no environment variable");
            }
        }
    }

    #[test]
    fn locations_parse() {
        let mut cfg = JobConfig::default();
        cfg.source.url = Some("/tmp/s".into());
        cfg.destination.url = Some("/tmp/d".into());
        cfg.state = Some("dynamodb://ferry-state".into());
        cfg.queue = Some("https://sqs.us-east-1.amazonaws.com/123456789012/ferry-jobs".into());
        let job = cfg.build().unwrap();
        assert_eq!(
            job.state,
            StateLocation::Dynamo {
                table: "ferry-state".into()
            }
        );
        assert_eq!(job.queue.name(), "ferry-jobs");
        cfg.state = Some("dynamodb://x".into());
        assert!(cfg.build().unwrap_err().to_string().contains("--state"));
        cfg.state = None;
        cfg.queue = Some("https://example.com".into());
        assert!(cfg.build().unwrap_err().to_string().contains("--queue"));
        cfg.queue = None;
        cfg.schedule = Some("cron:bad".into());
        assert!(cfg.build().unwrap_err().to_string().contains("--schedule"));
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let s = SideConfig {
            secret_access_key: Some(Secret("TOPSECRET".into())),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("TOPSECRET"));
    }
}
