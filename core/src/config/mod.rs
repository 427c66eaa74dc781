//! The job configuration shared by the finder, the workers and the events
//! bridge: the job file's schema ([`JobConfig`]) and the validated
//! [`Settings`] built from it.
//!
//! Settings come in layers: the TOML job file (`--config job.toml`), then the
//! command line, where clap reads each flag and its `FERRY_*` environment
//! variable (the flag wins). Each layer is a table of the job file's shape;
//! [`JobConfig::from_layers`] merges them key by key (later wins) and
//! deserializes the result once, so an unknown key or a wrong type is an
//! error naming it. [`JobConfig::build`] then validates and parses
//! everything into [`Settings`]. Secrets (access keys) come from the file or
//! the `FERRY_SRC_*` / `FERRY_DEST_*` environment variables, never from flags.

mod replica;
mod settings;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::diff::CompareMode;
use crate::store::vendor::Vendor;

pub use replica::{TagMode, VersionsMode};
pub use settings::{Ledger, ListJobs, QueueLocation, ServerSideCopy, Settings, Side, StateLocation};

/// A secret string: never printed by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

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
    /// Destination only: tags of the objects written: `copy` (the source's),
    /// `none`, or `KEY=VALUE,…`. Default `copy`.
    pub tags: Option<String>,
    /// Local destination only: write files without syncing them to disk.
    /// Faster; a power failure (not a killed process) may leave copied
    /// files with lost bytes. For scratch copies. Default false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_fsync: bool,
    /// Gateway destination only (`gateway+https://…`): the file holding the
    /// gateway's bearer token (`fgw_…`).
    pub gateway_token_file: Option<std::path::PathBuf>,
}

/// When objects are copied inside the store instead of through the worker
/// (`--server-side`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerSideMode {
    /// Always stream the bytes through the worker.
    Never,
    /// Copy server-side when both sides are buckets of the same endpoint;
    /// stream instead, with a log line, when the store refuses.
    #[default]
    Auto,
    /// Copy server-side whatever the endpoints; a refusal is an error.
    Always,
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
    /// Server-side copy: `never`, `auto` (same endpoint on both sides, with
    /// a fallback to streaming when the store refuses) or `always`. Default auto.
    pub server_side: ServerSideMode,
    /// Objects larger than this are copied by the whole fleet: the first
    /// worker plans the upload and queues one job per span of parts. Default 8 GiB.
    pub giant_threshold: ByteSize,
    /// The size of one span of a giant object (whole parts, at least one).
    /// Default 1 GiB.
    pub giant_span: ByteSize,
    /// Bandwidth limit of each process's reads from the source: a rate
    /// (`10M`, `512k`, `off`) or a timetable like rclone's
    /// (`"08:00,512k 12:00,10M Sat-00:00,off"`). Default: none.
    pub bwlimit: Option<String>,
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
            server_side: ServerSideMode::Auto,
            giant_threshold: ByteSize::gib(8),
            giant_span: ByteSize::gib(1),
            bwlimit: None,
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
    /// How existing destination objects are compared. Default `auto`.
    pub compare: CompareMode,
    /// Globs a relative key must match (any). Default: all keys.
    pub include: Vec<String>,
    /// Globs that exclude a relative key.
    pub exclude: Vec<String>,
    /// Only source objects modified at or after this time: RFC 3339, a date
    /// (UTC), or an age like `7d` (that long before the run starts).
    pub modified_since: Option<String>,
    /// Only source objects modified before this time (same forms).
    pub modified_before: Option<String>,
    /// Ranges of the source's key space listed (and diffed) at once by the
    /// finder, found without a prefix list (see `ferry_core::ranges`); 1
    /// lists sequentially. Default 8 for a bucket, 1 for a directory.
    pub list_ranges: Option<usize>,
    /// Fleet listing: the finder queues this many list jobs (key ranges of
    /// the source) and the workers list and diff them (see
    /// `ferry_worker::engine::listing`). Default (and 0): the finder lists.
    pub list_jobs: Option<usize>,
    /// Source keys a list job diffs before it splits the rest of its range
    /// off for other workers. Default 100000.
    pub list_job_keys: Option<u64>,
    /// Prices of the estimate a run prints: `aws` (Amazon S3 Standard in
    /// us-east-1) or a TOML file of prices. Default `aws`.
    pub prices: Option<String>,
    /// An S3 Inventory report that replaces the source's listing:
    /// `s3://BUCKET/PATH/manifest.json` (CSV or Parquet), read with the
    /// source's credentials and endpoint.
    pub source_inventory: Option<String>,
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
    /// Which versions of each key are copied: `latest` (the current one,
    /// reads pinned to its version id) or `all` (the history, replayed to a
    /// versioned destination oldest first, delete markers included).
    /// Default `latest`.
    pub versions: Option<String>,
    /// Replay the history from this time on (RFC 3339 or a date, UTC): the
    /// version current then and every later one. Implies `versions = "all"`.
    pub versions_at: Option<String>,
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

    /// Merges `layers` (the job file first, the command line last: later
    /// wins, key by key) and deserializes the result; `origin` names the
    /// settings in errors.
    pub fn from_layers(layers: impl IntoIterator<Item = toml::Table>, origin: &str) -> Result<Self, ConfigError> {
        let mut merged = toml::Table::new();
        for layer in layers {
            merge(&mut merged, layer);
        }
        toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| cfg_err(origin, e.message().to_string()))
    }
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

    /// A job from `[source]` and `[destination]` TOML lines.
    fn job(src: &str, dest: &str) -> JobConfig {
        let text = format!("[source]\n{src}\n[destination]\n{dest}\n");
        JobConfig::from_layers([text.parse::<toml::Table>().unwrap()], "test").unwrap()
    }

    #[test]
    fn a_gateway_destination_takes_its_token_and_refuses_store_settings() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "fgw_site_0123abcd\n").unwrap();
        let t = token.display();
        let gw = format!("url = \"gateway+https://up.example.com/site/\"\ngateway_token_file = \"{t}\"");
        let built = job("url = \"/data\"", &gw).build().unwrap();
        let Side::Gateway {
            url,
            prefix,
            token: secret,
        } = &built.destination
        else {
            panic!("a gateway destination")
        };
        assert_eq!(
            (url.as_str(), prefix.as_str(), secret.0.as_str()),
            ("https://up.example.com", "site/", "fgw_site_0123abcd")
        );
        assert!(!format!("{built:?}").contains("0123abcd"), "the token is never printed");

        let refused = |src: &str, dest: &str| job(src, dest).build().unwrap_err().to_string();
        let e = refused("url = \"gateway+https://h/p/\"", "url = \"/out\"");
        assert!(e.contains("SRC") && e.contains("not the source"), "{e}");
        let e = refused("url = \"/data\"", "url = \"gateway+https://h/p/\"");
        assert!(e.contains("--gateway-token-file") && e.contains("token issue"), "{e}");
        let e = refused("url = \"/data\"", &format!("{gw}\nsse = \"AES256\""));
        assert!(e.contains("--dest-sse") && e.contains("drop"), "{e}");
        let e = refused(
            "url = \"/data\"",
            &format!("url = \"s3://bkt/p/\"\ngateway_token_file = \"{t}\""),
        );
        assert!(e.contains("--gateway-token-file") && e.contains("not a gateway"), "{e}");
        std::fs::write(&token, "  \n").unwrap();
        let e = refused("url = \"/data\"", &gw);
        assert!(e.contains("one token"), "{e}");
        std::fs::write(&token, "fgw_site_0123abcd").unwrap();
        let mut deletes = job("url = \"/data\"", &gw);
        deletes.delete = true;
        let e = deletes.build().unwrap_err().to_string();
        assert!(e.contains("--delete") && e.contains("deletes nothing"), "{e}");
        let missing = gw.replace(&t.to_string(), "/nonexistent/token");
        let e = refused("url = \"/data\"", &missing);
        assert!(e.contains("/nonexistent/token"), "{e}");
    }

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
        let cfg = JobConfig::from_layers([file, over], "test").unwrap();
        assert_eq!(cfg.transfer.workers, 3);
        assert_eq!(cfg.transfer.part_size, ByteSize::mib(16));
        assert_eq!(cfg.transfer.lease, Duration::from_secs(120));
        let job = cfg.build().unwrap();
        let Side::S3 { config: s3, prefix } = job.source else {
            panic!("an S3 source")
        };
        assert_eq!(prefix, "p/");
        assert_eq!(s3.endpoint.as_deref(), Some("https://oss-cn-hangzhou.aliyuncs.com"));
        assert!(!s3.path_style);
        assert!(job.destination.is_local());

        let bad: toml::Table = "[source]\nurl='x'\nendpont='y'\n".parse().unwrap();
        let e = JobConfig::from_layers([bad], "job.toml").unwrap_err();
        assert!(e.to_string().contains("endpont"), "{e}");

        let mut cfg = JobConfig::default();
        cfg.source.url = Some("s3://bkt".into());
        cfg.source.vendor = Some(Vendor::AliyunOss);
        cfg.destination.url = Some("/tmp/d".into());
        assert!(cfg.build().unwrap_err().to_string().contains("--src-region"));
    }

    #[test]
    fn settings_are_parsed_once() {
        let mut cfg = JobConfig::default();
        cfg.source.url = Some("/tmp/s".into());
        cfg.destination.url = Some("s3://bucket/p/".into());
        cfg.include = vec!["*.jpg".into()];
        cfg.schedule = Some("rate:15m".into());
        cfg.health_addr = Some("127.0.0.1:8080".into());
        let s = cfg.build().unwrap();
        assert!(s.filter.matches("a/b.jpg") && !s.filter.matches("a/b.png"));
        assert!(matches!(s.schedule, crate::schedule::Schedule::Rate(d) if d == Duration::from_secs(900)));
        assert_eq!(s.health_addr.unwrap().port(), 8080);
        assert_eq!(s.compare_mode(), CompareMode::Mtime);
        assert_eq!(s.file_hashes_path, s.ledger.path);
        cfg.include = vec!["[".into()];
        assert!(cfg.build().unwrap_err().to_string().contains("--include"));
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
            job.ledger.state,
            StateLocation::Dynamo {
                table: "ferry-state".into()
            }
        );
        assert_eq!(job.ledger.queue.name(), "ferry-jobs");
        assert!(job.ledger.path.as_os_str().is_empty());
        assert_eq!(job.file_hashes_path, default_state_path("/tmp/s", "/tmp/d"));
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
    fn server_side_copy_applies_to_one_service_only() {
        let job = |src: &str, src_ep: Option<&str>, dst: &str, dst_ep: Option<&str>, mode: ServerSideMode| {
            let mut cfg = JobConfig::default();
            cfg.source.url = Some(src.into());
            cfg.source.endpoint = src_ep.map(str::to_string);
            cfg.destination.url = Some(dst.into());
            cfg.destination.endpoint = dst_ep.map(str::to_string);
            cfg.transfer.server_side = mode;
            cfg.build()
        };
        let (a, b) = (Some("http://127.0.0.1:7480"), Some("http://127.0.0.1:7480/"));
        let ss = job("s3://src/p/", a, "s3://dst/", b, ServerSideMode::Auto)
            .unwrap()
            .server_side;
        let ss = ss.expect("the same endpoint copies server-side");
        assert_eq!(
            (ss.src_bucket.as_str(), ss.always, ss.max_copy_object),
            ("src", false, 5 << 30)
        );
        let other = Some("http://127.0.0.1:5055");
        assert!(job("s3://src/", a, "s3://dst/", other, ServerSideMode::Auto)
            .unwrap()
            .server_side
            .is_none());
        assert!(
            job("s3://src/", a, "s3://dst/", other, ServerSideMode::Always)
                .unwrap()
                .server_side
                .unwrap()
                .always
        );
        assert!(job("s3://src/", a, "s3://dst/", b, ServerSideMode::Never)
            .unwrap()
            .server_side
            .is_none());
        assert!(job("s3://src/", None, "s3://dst/", None, ServerSideMode::Auto)
            .unwrap()
            .server_side
            .is_some());
        assert!(job("s3://src/", a, "/tmp/d", None, ServerSideMode::Auto)
            .unwrap()
            .server_side
            .is_none());
        let e = job("s3://src/", a, "/tmp/d", None, ServerSideMode::Always)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--server-side"), "{e}");

        let mut cfg = JobConfig::default();
        cfg.source.url = Some("s3://src/".into());
        cfg.source.region = Some("cn-north-1".into());
        cfg.destination.url = Some("s3://dst/".into());
        cfg.destination.region = Some("us-east-1".into());
        assert!(cfg.build().unwrap().server_side.is_none(), "not across partitions");
        cfg.destination.region = Some("cn-northwest-1".into());
        assert!(
            cfg.build().unwrap().server_side.is_some(),
            "across regions of one partition"
        );
        cfg.transfer.bwlimit = Some("08:00,1M 25:00,off".into());
        let e = cfg.build().unwrap_err().to_string();
        assert!(e.contains("--bwlimit") && e.contains("25:00"), "{e}");
    }

    #[test]
    fn vendor_schemes_select_their_preset() {
        let mut cfg = JobConfig::default();
        cfg.source.url = Some("oss://src-bkt/p/".into());
        cfg.source.region = Some("cn-hangzhou".into());
        cfg.destination.url = Some("oss://dst-bkt/".into());
        cfg.destination.region = Some("cn-hangzhou".into());
        let s = cfg.build().unwrap();
        let Side::S3 { config, prefix } = &s.source else {
            panic!("a bucket")
        };
        assert_eq!(config.endpoint.as_deref(), Some("https://oss-cn-hangzhou.aliyuncs.com"));
        assert!(!config.path_style, "OSS is virtual-hosted");
        assert_eq!(prefix, "p/");
        let ss = s.server_side.expect("one region of OSS copies server-side");
        assert_eq!(ss.max_copy_object, 1 << 30, "OSS's CopyObject limit, from the scheme");
        cfg.destination.storage_class = Some("IA".into());
        let put = cfg.build().unwrap().put;
        assert_eq!(put.storage_class.as_deref(), Some("STANDARD_IA"), "OSS's name, in S3's");
        cfg.destination.storage_class = None;

        cfg.source.region = None;
        let e = cfg.build().unwrap_err().to_string();
        assert!(e.contains("--src-region"), "{e}");
        cfg.source.region = Some("cn-hangzhou".into());
        cfg.source.vendor = Some(Vendor::TencentCos);
        let e = cfg.build().unwrap_err().to_string();
        assert!(e.contains("--src-vendor") && e.contains("aliyun-oss"), "{e}");
        cfg.source.vendor = Some(Vendor::AliyunOss);
        assert!(cfg.build().is_ok(), "the flag may say the same");

        cfg.source.url = Some("cos://bkt-1250000000/".into());
        cfg.source.vendor = None;
        cfg.source.region = Some("ap-guangzhou".into());
        let Side::S3 { config, .. } = cfg.build().unwrap().source else {
            panic!("a bucket")
        };
        assert_eq!(
            config.endpoint.as_deref(),
            Some("https://cos.ap-guangzhou.myqcloud.com")
        );
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
