//! The command-line argument groups every binary shares, and the settings
//! layer they make.
//!
//! Each group is a clap struct whose fields carry their flag and their
//! `FERRY_*` environment variable (clap is the one reader of both), and
//! serialize under the job file's own key names: the command line becomes a
//! table of the job file's shape, merged over the file by
//! [`ferry_core::config::JobConfig::from_layers`]. A setting is therefore
//! named twice — in the file schema and in its flag — and nowhere else.
//!
//! Keys are read from the environment only where a flag would leak them
//! (access keys): those arguments are hidden, and [`crate::parse`] refuses
//! them on the command line.

use std::path::PathBuf;

use bytesize::ByteSize;
use clap::Args;
use ferry_core::config::{ConfigError, JobConfig, Secret};
use serde::{Serialize, Serializer};

/// Serializes a layer (any `Serialize` struct of the job file's shape) as a table.
pub fn layer(v: &impl Serialize) -> toml::Table {
    toml::Table::try_from(v).expect("argument groups serialize as tables")
}

fn bytes<S: Serializer>(v: &Option<ByteSize>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_i64(b.as_u64() as i64),
        None => s.serialize_none(),
    }
}

fn duration<S: Serializer>(v: &Option<humantime::Duration>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_str(&d.to_string()),
        None => s.serialize_none(),
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The source and destination of a job, as positional arguments.
#[derive(Debug, Clone, Default, Args)]
pub struct Locations {
    /// Source: s3://BUCKET/PREFIX, file:///DIR, /DIR or ./DIR (or [source] url in --config)
    #[arg(env = "FERRY_SRC_URL", value_name = "SRC")]
    pub src: Option<String>,
    /// Destination: s3://BUCKET/PREFIX, file:///DIR, /DIR or ./DIR, or an upload gateway:
    /// gateway+https://HOST/PREFIX with --gateway-token-file (or [destination] url in --config)
    #[arg(env = "FERRY_DEST_URL", value_name = "DEST")]
    pub dest: Option<String>,
}

impl Locations {
    /// The locations as a settings layer.
    pub fn layer(&self) -> toml::Table {
        let side = |url: &Option<String>| {
            let mut t = toml::Table::new();
            if let Some(u) = url {
                t.insert("url".into(), u.clone().into());
            }
            t
        };
        let mut t = toml::Table::new();
        t.insert("source".into(), side(&self.src).into());
        t.insert("destination".into(), side(&self.dest).into());
        t
    }
}

/// The ids of the arguments [`crate::parse`] refuses on the command line
/// (each is read from `FERRY_<ID>` only).
pub const ENV_ONLY: &[&str] = &[
    "bridge_token",
    "src_access_key_id",
    "src_secret_access_key",
    "src_session_token",
    "dest_access_key_id",
    "dest_secret_access_key",
    "dest_session_token",
];

macro_rules! side_args {
    ($name:ident, $p:literal, $env:literal, $title:literal) => {
        /// Connection settings of one side.
        #[derive(Debug, Clone, Default, Args, Serialize)]
        #[command(next_help_heading = $title)]
        pub struct $name {
            /// Vendor preset: aws, aliyun-oss, tencent-cos, huawei-obs, ksyun-ks3, ctyun-xos, qiniu-kodo, google-gcs, minio, custom [default: aws, or custom with an endpoint]
            #[arg(id = concat!($p, "_vendor"), long = concat!($p, "-vendor"), env = concat!($env, "_VENDOR"), value_name = "VENDOR")]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub vendor: Option<String>,
            /// Endpoint URL (overrides the vendor preset), e.g. https://oss-cn-hangzhou.aliyuncs.com
            #[arg(id = concat!($p, "_endpoint"), long = concat!($p, "-endpoint"), env = concat!($env, "_ENDPOINT"), value_name = "URL")]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub endpoint: Option<String>,
            /// Region (signing region; forms the endpoint of vendor presets)
            #[arg(id = concat!($p, "_region"), long = concat!($p, "-region"), env = concat!($env, "_REGION"), value_name = "REGION")]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub region: Option<String>,
            /// Named profile of the shared AWS config files
            #[arg(id = concat!($p, "_profile"), long = concat!($p, "-profile"), env = concat!($env, "_PROFILE"), value_name = "NAME")]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub profile: Option<String>,
            /// Path-style addressing (endpoint/bucket/key) instead of virtual-hosted
            #[arg(id = concat!($p, "_path_style"), long = concat!($p, "-path-style"), env = concat!($env, "_PATH_STYLE"))]
            #[serde(skip_serializing_if = "is_false")]
            pub path_style: bool,
            /// Send unsigned requests (public buckets)
            #[arg(id = concat!($p, "_anonymous"), long = concat!($p, "-anonymous"), env = concat!($env, "_ANONYMOUS"))]
            #[serde(skip_serializing_if = "is_false")]
            pub anonymous: bool,
            /// Send x-amz-request-payer: requester
            #[arg(id = concat!($p, "_requester_pays"), long = concat!($p, "-requester-pays"), env = concat!($env, "_REQUESTER_PAYS"))]
            #[serde(skip_serializing_if = "is_false")]
            pub requester_pays: bool,
            /// Sign request bodies with SHA-256 as well as Content-MD5, for stores that refuse unsigned payloads
            #[arg(id = concat!($p, "_sign_payload"), long = concat!($p, "-sign-payload"), env = concat!($env, "_SIGN_PAYLOAD"))]
            #[serde(skip_serializing_if = "is_false")]
            pub sign_payload: bool,
            /// Send CRC-64/NVME checksums with uploads, checked and kept by the store [default: on for Amazon S3, off for other endpoints]
            #[arg(id = concat!($p, "_crc64nvme"), long = concat!($p, "-crc64nvme"), env = concat!($env, "_CRC64NVME"), value_name = "BOOL")]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub crc64nvme: Option<bool>,
            /// AWS Secrets Manager secret (name or ARN) with the keys as JSON {"access_key_id": "...", "secret_access_key": "..."}
            #[arg(id = concat!($p, "_secret"), long = concat!($p, "-secret"), env = concat!($env, "_SECRET"), value_name = "NAME")]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub secret: Option<String>,
            /// Static access key id (environment only)
            #[arg(id = concat!($p, "_access_key_id"), long = concat!($p, "-access-key-id"), env = concat!($env, "_ACCESS_KEY_ID"), hide = true)]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub access_key_id: Option<Secret>,
            /// Static secret access key (environment only)
            #[arg(id = concat!($p, "_secret_access_key"), long = concat!($p, "-secret-access-key"), env = concat!($env, "_SECRET_ACCESS_KEY"), hide = true)]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub secret_access_key: Option<Secret>,
            /// Session token of temporary keys (environment only)
            #[arg(id = concat!($p, "_session_token"), long = concat!($p, "-session-token"), env = concat!($env, "_SESSION_TOKEN"), hide = true)]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub session_token: Option<Secret>,
        }
    };
}

side_args!(SrcArgs, "src", "FERRY_SRC", "Source");
side_args!(DestArgs, "dest", "FERRY_DEST", "Destination");

/// How the destination is written.
#[derive(Debug, Clone, Default, Args, Serialize)]
#[command(next_help_heading = "Destination")]
pub struct WriteArgs {
    /// Destination storage class, e.g. STANDARD_IA, GLACIER_IR
    #[arg(long = "dest-storage-class", env = "FERRY_DEST_STORAGE_CLASS", value_name = "CLASS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Destination canned ACL, e.g. bucket-owner-full-control
    #[arg(long = "dest-acl", env = "FERRY_DEST_ACL", value_name = "ACL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl: Option<String>,
    /// Destination server-side encryption: AES256 or aws:kms
    #[arg(long = "dest-sse", env = "FERRY_DEST_SSE", value_name = "SSE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sse: Option<String>,
    /// KMS key id for --dest-sse aws:kms
    #[arg(long = "dest-sse-kms-key-id", env = "FERRY_DEST_SSE_KMS_KEY_ID", value_name = "KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sse_kms_key_id: Option<String>,
    /// Tags of the objects written: copy (the source object's; one GetObjectTagging per object that
    /// has any), none, or KEY=VALUE pairs separated by commas [default: copy]
    #[arg(long = "tags", env = "FERRY_TAGS", value_name = "copy|none|K=V,…")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<String>,
    /// Local destination: do not sync files to disk before renaming them
    /// into place. Faster; a power failure (not a killed process) may leave
    /// copied files with lost bytes. For scratch copies
    #[arg(long = "dest-no-fsync", env = "FERRY_DEST_NO_FSYNC")]
    #[serde(skip_serializing_if = "is_false")]
    pub no_fsync: bool,
    /// Gateway destination (DEST = gateway+https://HOST/PREFIX): the file holding the bearer token
    /// issued by `ferry-gateway token issue`. Uploads go through presigned URLs; this machine holds
    /// no storage keys
    #[arg(long = "gateway-token-file", env = "FERRY_GATEWAY_TOKEN_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_token_file: Option<PathBuf>,
}

/// Engine and runner settings (`[transfer]` in the job file).
#[derive(Debug, Clone, Default, Args, Serialize)]
#[command(next_help_heading = "Transfer")]
pub struct TransferArgs {
    /// Part size for multipart uploads; grows automatically past 10,000 parts [default: 16MiB]
    #[arg(long, env = "FERRY_PART_SIZE", value_name = "SIZE")]
    #[serde(serialize_with = "bytes", skip_serializing_if = "Option::is_none")]
    pub part_size: Option<ByteSize>,
    /// Objects larger than this are uploaded in parts [default: 64MiB]
    #[arg(long, env = "FERRY_MULTIPART_THRESHOLD", value_name = "SIZE")]
    #[serde(serialize_with = "bytes", skip_serializing_if = "Option::is_none")]
    pub multipart_threshold: Option<ByteSize>,
    /// Parts of one object in flight at once [default: 8]
    #[arg(long, env = "FERRY_CONCURRENCY", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
    /// Bytes held in memory by all transfers at once [default: 256MiB]
    #[arg(long, env = "FERRY_MAX_IN_FLIGHT", value_name = "SIZE")]
    #[serde(serialize_with = "bytes", skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<ByteSize>,
    /// Tries per store request for retryable errors [default: 5]
    #[arg(long, env = "FERRY_RETRIES", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
    /// Failed attempts of a job, counted in the ledger, before it is given up and dead-lettered [default: 5]
    #[arg(long, env = "FERRY_MAX_ATTEMPTS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    /// Deliveries before the embedded queue parks a message as dead: a backstop, messages whose deliveries
    /// were spent by workers that died are requeued fresh (SQS: the queue's redrive policy) [default: 10]
    #[arg(long, env = "FERRY_MAX_RECEIVES", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_receives: Option<u64>,
    /// Lease on a job and its object, renewed while it runs [default: 60s]
    #[arg(long, env = "FERRY_LEASE", value_name = "DURATION")]
    #[serde(serialize_with = "duration", skip_serializing_if = "Option::is_none")]
    pub lease: Option<humantime::Duration>,
    /// Copy inside the store, with no byte through this machine: auto (when both sides are buckets of
    /// the same endpoint; streams instead, saying why, when the store refuses), always (a refusal is
    /// an error), never [default: auto]
    #[arg(long, env = "FERRY_SERVER_SIDE", value_name = "MODE", value_parser = ["auto", "always", "never"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_side: Option<String>,
    /// Objects larger than this are copied by every worker of the queue: the first plans the upload
    /// and queues one job per span of parts; the worker that records the last span completes it
    /// [default: 8GiB]
    #[arg(long, env = "FERRY_GIANT_THRESHOLD", value_name = "SIZE")]
    #[serde(serialize_with = "bytes", skip_serializing_if = "Option::is_none")]
    pub giant_threshold: Option<ByteSize>,
    /// Bytes of one span of a giant object, in whole parts [default: 1GiB]
    #[arg(long, env = "FERRY_GIANT_SPAN", value_name = "SIZE")]
    #[serde(serialize_with = "bytes", skip_serializing_if = "Option::is_none")]
    pub giant_span: Option<ByteSize>,
    /// Bandwidth limit of this process's reads from the source: a rate (10M, 512k; bytes per second in
    /// powers of 1024, KiB without a unit) or a timetable like rclone's, e.g. "08:00,512k 12:00,10M
    /// Sat-00:00,off" (local time; each entry holds until the next). A limit shared by every worker of
    /// the queue is set with `ferry-finder bwlimit` [default: none]
    #[arg(long, env = "FERRY_BWLIMIT", value_name = "LIMIT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bwlimit: Option<String>,
    /// On SIGTERM/SIGINT, time given to running jobs before they are stopped and released [default: 25s]
    #[arg(long, env = "FERRY_SHUTDOWN_GRACE", value_name = "DURATION")]
    #[serde(serialize_with = "duration", skip_serializing_if = "Option::is_none")]
    pub shutdown_grace: Option<humantime::Duration>,
}

/// Settings shared by every binary: the job file, the ledger, both sides and
/// the transfer. Flags win over their environment variables, which win over
/// the `--config` file, which wins over the defaults.
#[derive(Debug, Clone, Default, Args, Serialize)]
pub struct JobArgs {
    /// Job file (TOML) carrying any of these settings; flags win
    #[arg(long, env = "FERRY_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Progress records: dynamodb://TABLE, or the embedded state file [default: one file per source/destination pair under ~/.local/state/ferry]
    #[arg(long, env = "FERRY_STATE", value_name = "PATH|dynamodb://TABLE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Job queue: an SQS queue URL, or an embedded state file [default: the embedded state file]
    #[arg(long, env = "FERRY_QUEUE", value_name = "URL|PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// How existing objects are compared: mtime (size and modification time), checksum (size and
    /// content: MD5, CRC-64/NVME or CRC-64/ECMA; local files hashed once, kept in the state file),
    /// size-etag (size, and ETags where comparable, else the ledger or checksums), size, none
    /// (existence) [default: auto: mtime when a side is local, size-etag between stores]
    #[arg(long, env = "FERRY_COMPARE", value_name = "MODE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare: Option<String>,
    /// Delete destination keys that have no source counterpart (delete sync; also applies ObjectRemoved events)
    #[arg(long, env = "FERRY_DELETE")]
    #[serde(skip_serializing_if = "is_false")]
    pub delete: bool,
    /// Which versions of each source key are copied: latest (the current version), or all (the
    /// history, replayed to a versioned destination bucket oldest first, delete markers included;
    /// a rerun copies only versions not replayed yet) [default: latest]
    #[arg(long, env = "FERRY_VERSIONS", value_name = "MODE", value_parser = ["latest", "all"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<String>,
    /// Replay the history from this time on: the version current then, and every later one
    /// (2026-11-30 or 2026-11-30T08:00:00Z, UTC). Implies --versions all
    #[arg(long, env = "FERRY_VERSIONS_AT", value_name = "TIME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions_at: Option<String>,

    #[command(flatten)]
    #[serde(rename = "source")]
    pub src: SrcArgs,
    #[command(flatten)]
    #[serde(skip)]
    pub dest: DestArgs,
    #[command(flatten)]
    #[serde(skip)]
    pub write: WriteArgs,
    #[command(flatten)]
    #[serde(rename = "transfer")]
    pub transfer: TransferArgs,
}

impl JobArgs {
    /// The flag layer (flags and their environment variables) as a table.
    pub fn layer(&self) -> toml::Table {
        let mut t = layer(self);
        let mut dest = layer(&self.dest);
        dest.extend(layer(&self.write));
        t.insert("destination".into(), dest.into());
        t
    }

    /// The job file (if any) with `layers` merged over it, in order, and this
    /// group's own flags last.
    pub fn load(&self, layers: impl IntoIterator<Item = toml::Table>) -> Result<JobConfig, ConfigError> {
        let file = match &self.config {
            Some(p) => JobConfig::from_file(p)?,
            None => toml::Table::new(),
        };
        let origin = self
            .config
            .as_ref()
            .map(|p| format!("--config {}", p.display()))
            .unwrap_or_else(|| "settings".into());
        let all = std::iter::once(file).chain(layers).chain([self.layer()]);
        JobConfig::from_layers(all, &origin)
    }
}

/// Every `FERRY_*` variable the shared argument groups read, with its flag
/// (hidden ones included): the one list, taken from the arguments themselves.
pub fn env_names() -> Vec<(String, String)> {
    let cmd = <JobArgs as Args>::augment_args(clap::Command::new("ferry"));
    let cmd = <Locations as Args>::augment_args(cmd);
    cmd.get_arguments()
        .filter_map(|a| {
            let var = a.get_env()?.to_str()?.to_string();
            let flag = a
                .get_long()
                .map(|l| format!("--{l}"))
                .unwrap_or_else(|| a.get_id().to_string());
            Some((var, flag))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        locations: Locations,
        #[command(flatten)]
        job: JobArgs,
    }

    fn settings(args: &[&str]) -> JobConfig {
        let cli = Cli::try_parse_from(std::iter::once("ferry").chain(args.iter().copied())).unwrap();
        cli.job.load([cli.locations.layer()]).unwrap()
    }

    #[test]
    fn flags_win_over_the_environment_which_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("job.toml");
        std::fs::write(
            &file,
            "[source]\nurl = \"/from/file\"\n[transfer]\nconcurrency = 2\nretries = 7\npart_size = \"8 MiB\"\n",
        )
        .unwrap();
        std::env::set_var("FERRY_RETRIES", "9");
        std::env::set_var("FERRY_DEST_ACCESS_KEY_ID", "AKIDENV");
        std::env::set_var("FERRY_DEST_SECRET_ACCESS_KEY", "SECRETENV");
        let cfg = settings(&[
            "--config",
            file.to_str().unwrap(),
            "/from/flag",
            "s3://bucket/p/",
            "--concurrency",
            "3",
            "--part-size",
            "32MiB",
            "--lease",
            "2m",
            "--dest-path-style",
            "--src-sign-payload",
            "--dest-storage-class",
            "STANDARD_IA",
        ]);
        assert_eq!(cfg.source.url.as_deref(), Some("/from/flag"));
        assert_eq!(cfg.transfer.concurrency, 3, "the flag wins over the file");
        assert_eq!(cfg.transfer.retries, 9, "the environment wins over the file");
        assert_eq!(cfg.transfer.part_size, ByteSize::mib(32));
        assert_eq!(cfg.transfer.lease, std::time::Duration::from_secs(120));
        assert_eq!(cfg.destination.path_style, Some(true));
        assert!(cfg.source.sign_payload && !cfg.destination.sign_payload);
        assert_eq!(cfg.destination.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(
            cfg.destination.access_key_id.as_ref().map(|s| s.0.as_str()),
            Some("AKIDENV")
        );
        assert!(cfg.source.path_style.is_none(), "an unset flag leaves the file's value");
        let built = cfg.build().unwrap();
        assert!(built.source.is_local());
    }

    #[test]
    fn no_fsync_is_a_local_destination_setting() {
        let cfg = settings(&["s3://bucket/p/", "/to/dir", "--dest-no-fsync"]);
        assert!(cfg.destination.no_fsync && !cfg.source.no_fsync);
        let built = cfg.build().unwrap();
        assert!(matches!(
            built.destination,
            ferry_core::config::Side::Local { fsync: false, .. }
        ));
        let err = settings(&["/from", "s3://bucket/p/", "--dest-no-fsync"])
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("--dest-no-fsync"), "{err}");
    }

    #[test]
    fn every_job_file_key_has_an_environment_variable() {
        let names = env_names();
        let var_of = |path: &str| -> String {
            let (section, key) = path.split_once('.').unwrap_or(("", path));
            let prefix = match section {
                "source" => "FERRY_SRC_",
                "destination" => "FERRY_DEST_",
                _ => "FERRY_",
            };
            format!("{prefix}{}", key.to_uppercase())
        };
        let full = JobConfig::default();
        let t = toml::Table::try_from(&full).unwrap();
        // Keys that only the finder (or the worker) reads have their flags there.
        let elsewhere = [
            "include",
            "exclude",
            "prefix_list",
            "schedule",
            "health_addr",
            "max_delete",
            "transfer.workers",
        ];
        let mut keys: Vec<String> = Vec::new();
        for (k, v) in &t {
            match v {
                toml::Value::Table(sub) => keys.extend(sub.keys().map(|k2| format!("{k}.{k2}"))),
                _ => keys.push(k.clone()),
            }
        }
        for side in ["source", "destination"] {
            for k in [
                "url",
                "vendor",
                "endpoint",
                "region",
                "profile",
                "secret",
                "access_key_id",
            ] {
                keys.push(format!("{side}.{k}"));
            }
        }
        for path in keys.iter().filter(|p| !elsewhere.contains(&p.as_str())) {
            let var = var_of(path)
                .replace("FERRY_TRANSFER.", "FERRY_")
                .replace("TRANSFER.", "");
            let var = match path.strip_prefix("transfer.") {
                Some(k) => format!("FERRY_{}", k.to_uppercase()),
                None => var,
            };
            assert!(names.iter().any(|(v, _)| *v == var), "{path}: no argument reads {var}");
        }
    }
}
