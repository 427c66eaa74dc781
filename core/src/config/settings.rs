//! Validated settings: what [`JobConfig::build`] makes of the merged layers.
//!
//! Everything is parsed here, once — sides, filters, schedule, health
//! address, ledger locations — so no caller reads the raw file again. A
//! setting that cannot be parsed is a [`ConfigError`] naming the flag or key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::{cfg_err, default_state_path, ConfigError, JobConfig, ServerSideMode, SideConfig, TransferConfig};
use crate::diff::CompareMode;
use crate::events::EventContext;
use crate::filter::KeyFilter;
use crate::location::Location;
use crate::schedule::Schedule;
use crate::store::vendor::Vendor;
use crate::store::{GatewayStore, LocalStore, ObjectStore, PutOptions, S3Credentials, S3Store, S3StoreConfig};

/// One side of a job, validated: an S3-compatible bucket or a local directory.
#[derive(Debug, Clone)]
pub enum Side {
    /// A bucket of an S3-compatible store.
    S3 {
        /// Key prefix inside the bucket.
        prefix: String,
        /// How the store is reached (the bucket included).
        config: S3StoreConfig,
    },
    /// A local directory.
    Local {
        /// The directory.
        dir: PathBuf,
        /// Whether written files are synced before they are renamed into place.
        fsync: bool,
    },
    /// An upload gateway (destination only): objects go through presigned
    /// URLs, with no storage keys here.
    Gateway {
        /// `http(s)://HOST[:PORT]`.
        url: String,
        /// Key prefix, relative to the gateway's.
        prefix: String,
        /// The bearer token.
        token: super::Secret,
    },
}

impl Side {
    /// The key prefix inside the store (empty for local directories).
    pub fn prefix(&self) -> &str {
        match self {
            Side::S3 { prefix, .. } | Side::Gateway { prefix, .. } => prefix,
            Side::Local { .. } => "",
        }
    }

    /// The bucket (or directory) name used in state records.
    pub fn bucket(&self) -> String {
        match self {
            Side::S3 { config, .. } => config.bucket.clone(),
            Side::Local { dir, .. } => dir.display().to_string(),
            Side::Gateway { url, .. } => format!("gateway+{url}"),
        }
    }

    /// The directory, for a local side.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        match self {
            Side::Local { dir, .. } => Some(dir),
            Side::S3 { .. } | Side::Gateway { .. } => None,
        }
    }

    /// Whether the side is a local directory.
    pub fn is_local(&self) -> bool {
        self.local_dir().is_some()
    }

    /// Opens the store.
    pub async fn open(&self) -> Arc<dyn ObjectStore> {
        match self {
            Side::S3 { config, .. } => Arc::new(S3Store::new(config.clone()).await),
            Side::Local { dir, fsync: true } => Arc::new(LocalStore::new(dir.clone())),
            Side::Local { dir, fsync: false } => Arc::new(LocalStore::new(dir.clone()).without_fsync()),
            Side::Gateway { url, token, .. } => Arc::new(GatewayStore::new(url, &token.0)),
        }
    }
}

/// Server-side copy as a job uses it: the destination's store copies from
/// the source bucket (see `--server-side`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSideCopy {
    /// The source bucket, as the destination's store names it.
    pub src_bucket: String,
    /// `--server-side always`: a refusal is an error, never a fallback.
    pub always: bool,
    /// The largest object the destination copies in one CopyObject.
    pub max_copy_object: u64,
}

impl S3StoreConfig {
    /// Whether two sides are served by the same service, so one can copy
    /// from the other: the same endpoint URL, or, for Amazon S3 endpoints
    /// the SDK resolves, the same partition (copies cross regions there;
    /// not between the global and China partitions).
    pub fn same_service(&self, other: &S3StoreConfig) -> bool {
        let norm = |e: &str| e.trim_end_matches('/').to_ascii_lowercase();
        let china = |c: &S3StoreConfig| c.region.as_deref().is_some_and(|r| r.starts_with("cn-"));
        match (&self.endpoint, &other.endpoint) {
            (Some(a), Some(b)) => norm(a) == norm(b),
            (None, None) => china(self) == china(other),
            _ => false,
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

/// Where a job's queue and progress records are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    /// Where progress records live.
    pub state: StateLocation,
    /// Where jobs wait.
    pub queue: QueueLocation,
    /// The embedded state file, when the queue or the state is embedded
    /// (empty otherwise).
    pub path: PathBuf,
}

pub(super) fn parse_state(v: &str) -> Result<StateLocation, ConfigError> {
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

pub(super) fn parse_queue(v: &str) -> Result<QueueLocation, ConfigError> {
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

/// Fleet listing (`--list-jobs`): the source's key space as list jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListJobs {
    /// List jobs the finder queues for one prefix.
    pub ranges: usize,
    /// Source keys a list job diffs before it splits off the rest.
    pub keys_per_job: u64,
}

/// The validated settings of a job: what the finder, the workers and the
/// events bridge run with. (A [`crate::job::Job`] is one queued message.)
#[derive(Debug, Clone)]
pub struct Settings {
    /// Source.
    pub source: Side,
    /// Destination.
    pub destination: Side,
    /// How the destination is written.
    pub put: PutOptions,
    /// Engine and runner settings.
    pub transfer: TransferConfig,
    /// How existing objects are compared, as configured (see [`Settings::compare_mode`]).
    pub compare: CompareMode,
    /// Which relative keys are selected.
    pub filter: KeyFilter,
    /// A file with one source prefix per line.
    pub prefix_list: Option<PathBuf>,
    /// When the finder runs.
    pub schedule: Schedule,
    /// Where a worker serves `GET /healthz`.
    pub health_addr: Option<SocketAddr>,
    /// Delete sync.
    pub delete: bool,
    /// With `delete`: the most deletions one finder run queues.
    pub max_delete: Option<u64>,
    /// Where the queue and the progress records are.
    pub ledger: Ledger,
    /// The SQLite file that keeps local files' checksums: the state file, or
    /// the pair's default one when the ledger is in DynamoDB.
    pub file_hashes_path: PathBuf,
    /// Server-side copy, when the job uses it (`--server-side`).
    pub server_side: Option<ServerSideCopy>,
    /// The bandwidth limit of each process (`--bwlimit`).
    pub bwlimit: Option<crate::bandwidth::Timetable>,
    /// Which versions are copied (`--versions`, `--versions-at`).
    pub versions: super::VersionsMode,
    /// Which tags destination objects get (`--tags`).
    pub tags: super::TagMode,
    /// Ranges of the source's key space the finder lists at once.
    pub list_ranges: usize,
    /// Fleet listing by list jobs, when asked for (`--list-jobs`).
    pub list_jobs: Option<ListJobs>,
    /// The price table of the run's estimate: `aws` or a file.
    pub prices: String,
    /// An S3 Inventory manifest that replaces the source's listing.
    pub source_inventory: Option<String>,
}

impl Settings {
    /// How S3 event notifications and forwarded events map to this job's jobs.
    pub fn event_context(&self) -> EventContext {
        EventContext {
            src_bucket: self.source.bucket(),
            src_prefix: self.source.prefix().to_string(),
            dest_prefix: self.destination.prefix().to_string(),
            delete: self.delete,
        }
    }

    /// Whether a side is a local directory.
    pub fn has_local_side(&self) -> bool {
        self.source.is_local() || self.destination.is_local()
    }

    /// The compare mode, `auto` resolved for the job's sides.
    pub fn compare_mode(&self) -> CompareMode {
        self.compare.resolve(self.has_local_side())
    }
}

/// The role of a side: names its flags, environment variables and errors.
#[derive(Clone, Copy)]
struct Role {
    /// `src` or `dest`: the flag prefix.
    flag: &'static str,
    /// `SRC` or `DEST`: the positional argument.
    arg: &'static str,
    /// `FERRY_SRC` or `FERRY_DEST`: the environment prefix.
    env: &'static str,
}

const SOURCE: Role = Role {
    flag: "src",
    arg: "SRC",
    env: "FERRY_SRC",
};
const DESTINATION: Role = Role {
    flag: "dest",
    arg: "DEST",
    env: "FERRY_DEST",
};

impl Role {
    fn flag(&self, name: &str) -> String {
        format!("--{}-{name}", self.flag)
    }
}

impl SideConfig {
    fn build(&self, role: Role) -> Result<Side, ConfigError> {
        let url = self.url.as_deref().ok_or_else(|| cfg_err(role.arg, "is required"))?;
        if self.no_fsync && role.flag != DESTINATION.flag {
            return Err(cfg_err("source.no_fsync", "applies to the destination only"));
        }
        match Location::parse(url).map_err(|m| cfg_err(role.arg, m))? {
            Location::Local { dir } => {
                if self.endpoint.is_some() || self.vendor.is_some() {
                    return Err(cfg_err(
                        role.flag("endpoint"),
                        format!("{url} is a local directory; endpoint and vendor apply to s3:// locations"),
                    ));
                }
                Ok(Side::Local {
                    dir,
                    fsync: !self.no_fsync,
                })
            }
            Location::Gateway { .. } if role.flag != DESTINATION.flag => Err(cfg_err(
                role.arg,
                format!("{url}: a gateway takes uploads only, so it can be the destination but not the source"),
            )),
            Location::Gateway { url: gw, prefix } => self.gateway(url, gw, prefix),
            _ if self.gateway_token_file.is_some() => Err(cfg_err(
                "--gateway-token-file",
                format!("{url} is not a gateway; the token applies to a gateway+https:// destination"),
            )),
            Location::S3 { .. } if self.no_fsync => Err(cfg_err(
                "--dest-no-fsync",
                format!("{url} is a bucket; the option applies to a local destination directory"),
            )),
            Location::S3 { bucket, prefix, vendor } => Ok(Side::S3 {
                prefix,
                config: self.s3_config(bucket, role, self.scheme_vendor(vendor, url, role)?)?,
            }),
        }
    }

    /// A gateway destination: its token read from `--gateway-token-file`;
    /// the settings of buckets and directories refused by name.
    fn gateway(&self, written: &str, url: String, prefix: String) -> Result<Side, ConfigError> {
        let given = [
            ("--dest-endpoint", self.endpoint.is_some()),
            ("--dest-vendor", self.vendor.is_some()),
            ("--dest-region", self.region.is_some()),
            ("--dest-profile", self.profile.is_some()),
            ("--dest-path-style", self.path_style.is_some()),
            ("--dest-anonymous", self.anonymous),
            ("--dest-requester-pays", self.requester_pays),
            ("--dest-sign-payload", self.sign_payload),
            ("--dest-crc64nvme", self.crc64nvme.is_some()),
            ("--dest-secret", self.secret.is_some()),
            ("FERRY_DEST_ACCESS_KEY_ID", self.access_key_id.is_some()),
            ("FERRY_DEST_SECRET_ACCESS_KEY", self.secret_access_key.is_some()),
            ("--dest-storage-class", self.storage_class.is_some()),
            ("--dest-acl", self.acl.is_some()),
            ("--dest-sse", self.sse.is_some()),
            ("--dest-sse-kms-key-id", self.sse_kms_key_id.is_some()),
            ("--tags", self.tags.as_deref().is_some_and(|t| t != "none")),
            ("--dest-no-fsync", self.no_fsync),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
            return Err(cfg_err(
                *flag,
                format!("{written} is a gateway: it holds the store's keys and settings, so drop {flag}"),
            ));
        }
        let file = self.gateway_token_file.as_ref().ok_or_else(|| {
            cfg_err(
                "--gateway-token-file",
                format!("{written} is a gateway: give the file holding its token (fgw_…), issued by `ferry-gateway token issue`"),
            )
        })?;
        let token = std::fs::read_to_string(file)
            .map_err(|e| cfg_err("--gateway-token-file", format!("{}: {e}", file.display())))?;
        let token = token.trim();
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err(cfg_err(
                "--gateway-token-file",
                format!("{}: expected one token (fgw_…) on one line", file.display()),
            ));
        }
        Ok(Side::Gateway {
            url,
            prefix,
            token: super::Secret(token.to_string()),
        })
    }

    /// The preset: the flag's, else the one the URL's scheme selects (the
    /// two must agree), else `custom` with an endpoint and `aws` without.
    fn scheme_vendor(&self, scheme: Option<Vendor>, url: &str, role: Role) -> Result<Option<Vendor>, ConfigError> {
        match (self.vendor, scheme) {
            (Some(flag), Some(s)) if flag != s => Err(cfg_err(
                role.flag("vendor"),
                format!("{url} selects the {s} preset, but the vendor given is {flag}: drop one of them"),
            )),
            (flag, s) => Ok(flag.or(s)),
        }
    }

    fn s3_config(&self, bucket: String, role: Role, vendor: Option<Vendor>) -> Result<S3StoreConfig, ConfigError> {
        let vendor = vendor.unwrap_or(if self.endpoint.is_some() {
            Vendor::Custom
        } else {
            Vendor::Aws
        });
        let region = self
            .region
            .clone()
            .or_else(|| vendor.default_region().map(str::to_string));
        Ok(S3StoreConfig {
            bucket,
            endpoint: self.endpoint(vendor, region.as_deref(), role)?,
            region,
            path_style: self.path_style.unwrap_or(vendor.path_style()),
            credentials: self.credentials(role)?,
            requester_pays: self.requester_pays,
            sign_payload: self.sign_payload,
            crc64nvme: self
                .crc64nvme
                .unwrap_or(vendor == Vendor::Aws && self.endpoint.is_none()),
        })
    }

    fn endpoint(&self, vendor: Vendor, region: Option<&str>, role: Role) -> Result<Option<String>, ConfigError> {
        let endpoint = match (&self.endpoint, vendor) {
            (Some(ep), _) => Some(ep.clone()),
            (None, v) if v.needs_endpoint() => {
                return Err(cfg_err(
                    role.flag("endpoint"),
                    format!(
                        "vendor {v} needs an endpoint URL, e.g. {} https://HOST:PORT",
                        role.flag("endpoint")
                    ),
                ))
            }
            (None, v) => match (region, v.needs_region()) {
                (None, true) => {
                    return Err(cfg_err(
                        role.flag("region"),
                        format!(
                            "vendor {v} needs a region to form its endpoint, e.g. {} cn-hangzhou",
                            role.flag("region")
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
                    role.flag("endpoint"),
                    format!("{ep:?} is not a URL; write it as https://HOST[:PORT]"),
                ));
            }
        }
        Ok(endpoint)
    }

    fn credentials(&self, role: Role) -> Result<S3Credentials, ConfigError> {
        let reveal = |s: &Option<super::Secret>| s.as_ref().map(|s| s.0.clone());
        let (ak, sk) = (reveal(&self.access_key_id), reveal(&self.secret_access_key));
        if let Some(secret) = &self.secret {
            if self.anonymous || self.profile.is_some() || ak.is_some() || sk.is_some() {
                return Err(cfg_err(
                    role.flag("secret"),
                    "cannot be combined with static keys, a profile or anonymous access: choose one",
                ));
            }
            if secret.trim().is_empty() {
                return Err(cfg_err(role.flag("secret"), "the secret name is empty"));
            }
            return Ok(S3Credentials::Secret(secret.clone()));
        }
        Ok(match (self.anonymous, &self.profile, ak, sk) {
            (true, Some(_), _, _) => {
                return Err(cfg_err(
                    role.flag("anonymous"),
                    format!("cannot be combined with {}", role.flag("profile")),
                ))
            }
            (true, _, _, _) => S3Credentials::Anonymous,
            (false, _, Some(access_key_id), Some(secret_access_key)) => S3Credentials::Static {
                access_key_id,
                secret_access_key,
                session_token: reveal(&self.session_token),
            },
            (false, _, Some(_), None) | (false, _, None, Some(_)) => {
                return Err(cfg_err(
                    format!("{0}_ACCESS_KEY_ID / {0}_SECRET_ACCESS_KEY", role.env),
                    "give both the access key id and the secret access key, or neither",
                ))
            }
            (false, Some(p), None, None) => S3Credentials::Profile(p.clone()),
            (false, None, None, None) => S3Credentials::Default,
        })
    }
}

impl JobConfig {
    /// Where the job's progress records and queue are; needs no source or
    /// destination when `state` is given.
    pub fn ledger(&self) -> Result<Ledger, ConfigError> {
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
        let path = match (&state, &queue) {
            (StateLocation::Embedded(p), _) | (_, QueueLocation::Embedded(p)) => p.clone(),
            _ => PathBuf::new(),
        };
        Ok(Ledger { state, queue, path })
    }

    /// Validates the configuration, resolves defaults and parses every setting.
    pub fn build(&self) -> Result<Settings, ConfigError> {
        let source = self.source.build(SOURCE)?;
        let destination = self.destination.build(DESTINATION)?;
        self.transfer.validate()?;
        let mut put = self.destination.put_options()?;
        let vendor = self.destination_vendor();
        put.storage_class = put.storage_class.map(|c| vendor.storage_class(&c));
        let filter = KeyFilter::new(&self.include, &self.exclude)
            .map_err(|m| cfg_err("--include/--exclude", m))?
            .modified_in(self.modified_window()?);
        let ledger = self.ledger()?;
        let schedule = match &self.schedule {
            Some(s) => Schedule::parse(s).map_err(|m| cfg_err("--schedule", m))?,
            None => Schedule::Once,
        };
        let health_addr = match &self.health_addr {
            Some(a) => Some(
                a.parse::<SocketAddr>()
                    .map_err(|_| cfg_err("--health-addr", format!("{a:?} is not an address like 0.0.0.0:8080")))?,
            ),
            None => None,
        };
        let file_hashes_path = if ledger.path.as_os_str().is_empty() {
            default_state_path(
                self.source.url.as_deref().unwrap_or_default(),
                self.destination.url.as_deref().unwrap_or_default(),
            )
        } else {
            ledger.path.clone()
        };
        let server_side = self.server_side(&source, &destination)?;
        let bwlimit = match &self.transfer.bwlimit {
            Some(t) => Some(t.parse().map_err(|m| cfg_err("--bwlimit", m))?),
            None => None,
        };
        let versions = super::VersionsMode::parse(self.versions.as_deref(), self.versions_at.as_deref())?;
        if versions.replays() && self.delete {
            return Err(cfg_err(
                "--delete",
                "a replayed history carries the source's deletes as delete markers: drop --delete with --versions all",
            ));
        }
        if let Side::Gateway { .. } = &destination {
            if self.delete {
                return Err(cfg_err(
                    "--delete",
                    "a gateway deletes nothing: it takes uploads only; drop --delete",
                ));
            }
        }
        let gateway = matches!(destination, Side::Gateway { .. });
        if versions.replays() && (source.is_local() || destination.is_local() || gateway) {
            return Err(cfg_err(
                "--versions",
                "a history is replayed between versioned buckets: both sides must be buckets",
            ));
        }
        Ok(Settings {
            server_side,
            bwlimit,
            versions,
            tags: super::TagMode::parse(self.destination.tags.as_deref())?,
            prices: self.prices.clone().unwrap_or_else(|| "aws".into()),
            source_inventory: match (&self.source_inventory, &source) {
                (Some(_), Side::Local { .. }) => {
                    return Err(cfg_err(
                        "--source-inventory",
                        "lists a bucket: the source is a directory",
                    ))
                }
                (Some(_), _) if versions.replays() => {
                    return Err(cfg_err(
                        "--source-inventory",
                        "holds no history to replay: drop --versions all",
                    ))
                }
                (i, _) => i.clone(),
            },
            list_jobs: self.list_jobs_settings(&versions)?,
            list_ranges: match self.list_ranges {
                Some(n @ 1..=256) => n,
                Some(n) => return Err(cfg_err("--list-ranges", format!("{n}: give 1 (one lister) to 256"))),
                None if source.is_local() => 1,
                None => 8,
            },
            source,
            destination,
            put,
            transfer: self.transfer.clone(),
            compare: self.compare,
            filter,
            prefix_list: self.prefix_list.clone(),
            schedule,
            health_addr,
            delete: self.delete,
            max_delete: self.max_delete,
            ledger,
            file_hashes_path,
        })
    }
}

impl JobConfig {
    /// `--list-jobs` and `--list-job-keys`, refused with what list jobs cannot do.
    fn list_jobs_settings(&self, versions: &super::VersionsMode) -> Result<Option<ListJobs>, ConfigError> {
        let Some(ranges) = self.list_jobs.filter(|n| *n > 0) else {
            if self.list_job_keys.is_some() {
                return Err(cfg_err("--list-job-keys", "sizes list jobs: give --list-jobs N too"));
            }
            return Ok(None);
        };
        if !(1..=10_000).contains(&ranges) {
            return Err(cfg_err(
                "--list-jobs",
                format!("{ranges}: give 1 to 10000 list jobs (0: the finder lists)"),
            ));
        }
        let refuse = |what: &str| Err(cfg_err("--list-jobs", format!("cannot be used with {what}")));
        if versions.replays() {
            return refuse("--versions all (histories are listed by the finder)");
        }
        if self.source_inventory.is_some() {
            return refuse("--source-inventory (the report is read by the finder)");
        }
        if self.delete && self.max_delete.is_some() {
            return refuse(
                "--delete and --max-delete (a cap over all ranges needs one lister; drop the cap or list jobs)",
            );
        }
        let keys_per_job = match self.list_job_keys {
            Some(n) if n < 100 => return Err(cfg_err("--list-job-keys", format!("{n}: give at least 100"))),
            Some(n) => n,
            None => 100_000,
        };
        Ok(Some(ListJobs { ranges, keys_per_job }))
    }

    /// `--modified-since` and `--modified-before`.
    fn modified_window(&self) -> Result<crate::filter::TimeWindow, ConfigError> {
        let parse = |setting: &str, v: &Option<String>| {
            v.as_deref()
                .map(|t| super::replica::parse_time(setting, t, true))
                .transpose()
        };
        let w = crate::filter::TimeWindow {
            since: parse("--modified-since", &self.modified_since)?,
            before: parse("--modified-before", &self.modified_before)?,
        };
        if let (Some(s), Some(b)) = (w.since, w.before) {
            if s >= b {
                return Err(cfg_err(
                    "--modified-before",
                    "is not after --modified-since: no object could be selected",
                ));
            }
        }
        Ok(w)
    }

    /// The destination's preset: the flag's, else its URL scheme's.
    fn destination_vendor(&self) -> Vendor {
        let scheme = match self.destination.url.as_deref().map(Location::parse) {
            Some(Ok(Location::S3 { vendor, .. })) => vendor,
            _ => None,
        };
        self.destination.vendor.or(scheme).unwrap_or_default()
    }

    /// Whether objects are copied inside the store: both sides buckets, and
    /// of the same service unless the user forces it.
    fn server_side(&self, source: &Side, destination: &Side) -> Result<Option<ServerSideCopy>, ConfigError> {
        let mode = self.transfer.server_side;
        Ok(match (source, destination) {
            _ if mode == ServerSideMode::Never => None,
            (Side::S3 { config: s, .. }, Side::S3 { config: d, .. })
                if mode == ServerSideMode::Always || s.same_service(d) =>
            {
                Some(ServerSideCopy {
                    src_bucket: s.bucket.clone(),
                    always: mode == ServerSideMode::Always,
                    max_copy_object: self.destination_vendor().max_copy_object(),
                })
            }
            _ if mode == ServerSideMode::Always => {
                return Err(cfg_err(
                    "--server-side",
                    "always copies inside a store, so SRC and DEST must both be buckets (s3://…); use auto or never",
                ))
            }
            _ => None,
        })
    }
}

impl TransferConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        const MIB: u64 = 1024 * 1024;
        if self.concurrency == 0 {
            return Err(cfg_err("--concurrency", "must be at least 1"));
        }
        if self.part_size.as_u64() < 5 * MIB || self.part_size.as_u64() > 5 * 1024 * MIB {
            return Err(cfg_err(
                "--part-size",
                format!("{} is outside S3's limits of 5 MiB to 5 GiB", self.part_size),
            ));
        }
        if self.multipart_threshold.as_u64() > 5 * 1024 * MIB {
            return Err(cfg_err(
                "--multipart-threshold",
                "a single PUT is limited to 5 GiB; use a smaller threshold",
            ));
        }
        if self.giant_span.as_u64() == 0 {
            return Err(cfg_err("--giant-span", "must be at least one part (e.g. 1GiB)"));
        }
        if self.max_in_flight.as_u64() < MIB {
            return Err(cfg_err("--max-in-flight", "must be at least 1 MiB"));
        }
        Ok(())
    }
}

impl SideConfig {
    /// How the destination is written (storage class, ACL, encryption).
    fn put_options(&self) -> Result<PutOptions, ConfigError> {
        if let (Some(sse), None) = (&self.sse, &self.sse_kms_key_id) {
            if sse != "AES256" && sse != "aws:kms" {
                return Err(cfg_err("--dest-sse", format!("{sse:?}: expected AES256 or aws:kms")));
            }
        }
        if self.sse_kms_key_id.is_some() && self.sse.as_deref() != Some("aws:kms") {
            return Err(cfg_err("--dest-sse-kms-key-id", "needs --dest-sse aws:kms"));
        }
        Ok(PutOptions {
            attributes: Default::default(),
            storage_class: self.storage_class.clone(),
            acl: self.acl.clone(),
            sse: self.sse.clone(),
            sse_kms_key_id: self.sse_kms_key_id.clone(),
            tags: None,
        })
    }
}
