//! Command-line settings shared by `ferry-finder` and `ferry-worker`, and the
//! wiring from a validated job to running backends.
//!
//! Flags override environment variables (`FERRY_*`, shown in `--help`), which
//! override the `--config` file, which overrides the defaults.

use std::path::PathBuf;
use std::sync::Arc;

use bytesize::ByteSize;
use clap::Args;
use ferry_core::config::{Job, JobConfig, QueueLocation, StateLocation};
use ferry_core::db::Db;
use ferry_core::queue::{EmbeddedQueue, JobQueue, SqsQueue};
use ferry_core::state::{DynamoStateStore, EmbeddedStateStore, StateStore};

use crate::engine::{Engine, EngineConfig};
use crate::runner::RunnerConfig;

macro_rules! side_args {
    ($name:ident, $p:literal, $env:literal, $title:literal) => {
        /// Connection settings of one side.
        #[derive(Debug, Clone, Default, Args)]
        #[command(next_help_heading = $title)]
        pub struct $name {
            /// Vendor preset: aws, aliyun-oss, tencent-cos, huawei-obs, ksyun-ks3, ctyun-xos, qiniu-kodo, google-gcs, minio, custom [default: aws, or custom with an endpoint]
            #[arg(id = concat!($p, "_vendor"), long = concat!($p, "-vendor"), env = concat!($env, "_VENDOR"), value_name = "VENDOR")]
            pub vendor: Option<String>,
            /// Endpoint URL (overrides the vendor preset), e.g. https://oss-cn-hangzhou.aliyuncs.com
            #[arg(id = concat!($p, "_endpoint"), long = concat!($p, "-endpoint"), env = concat!($env, "_ENDPOINT"), value_name = "URL")]
            pub endpoint: Option<String>,
            /// Region (signing region; forms the endpoint of vendor presets)
            #[arg(id = concat!($p, "_region"), long = concat!($p, "-region"), env = concat!($env, "_REGION"), value_name = "REGION")]
            pub region: Option<String>,
            /// Named profile of the shared AWS config files
            #[arg(id = concat!($p, "_profile"), long = concat!($p, "-profile"), env = concat!($env, "_PROFILE"), value_name = "NAME")]
            pub profile: Option<String>,
            /// Path-style addressing (endpoint/bucket/key) instead of virtual-hosted
            #[arg(id = concat!($p, "_path_style"), long = concat!($p, "-path-style"), env = concat!($env, "_PATH_STYLE"))]
            pub path_style: bool,
            /// Send unsigned requests (public buckets)
            #[arg(id = concat!($p, "_anonymous"), long = concat!($p, "-anonymous"), env = concat!($env, "_ANONYMOUS"))]
            pub anonymous: bool,
            /// Send x-amz-request-payer: requester
            #[arg(id = concat!($p, "_requester_pays"), long = concat!($p, "-requester-pays"), env = concat!($env, "_REQUESTER_PAYS"))]
            pub requester_pays: bool,
            /// Send CRC-64/NVME checksums with uploads, checked and kept by the store [default: on for Amazon S3, off for other endpoints]
            #[arg(id = concat!($p, "_crc64nvme"), long = concat!($p, "-crc64nvme"), env = concat!($env, "_CRC64NVME"), value_name = "BOOL")]
            pub crc64nvme: Option<bool>,
            /// AWS Secrets Manager secret (name or ARN) with the keys as JSON {"access_key_id": "...", "secret_access_key": "..."}
            #[arg(id = concat!($p, "_secret"), long = concat!($p, "-secret"), env = concat!($env, "_SECRET"), value_name = "NAME")]
            pub secret: Option<String>,
        }

        impl $name {
            fn overrides(&self, t: &mut toml::Table) {
                put(t, "vendor", self.vendor.clone());
                put(t, "endpoint", self.endpoint.clone());
                put(t, "region", self.region.clone());
                put(t, "profile", self.profile.clone());
                put(t, "secret", self.secret.clone());
                if self.path_style {
                    t.insert("path_style".into(), true.into());
                }
                if self.anonymous {
                    t.insert("anonymous".into(), true.into());
                }
                if self.requester_pays {
                    t.insert("requester_pays".into(), true.into());
                }
                if let Some(on) = self.crc64nvme {
                    t.insert("crc64nvme".into(), on.into());
                }
            }
        }
    };
}

side_args!(SrcArgs, "src", "FERRY_SRC", "Source");
side_args!(DestArgs, "dest", "FERRY_DEST", "Destination");

fn put(t: &mut toml::Table, k: &str, v: Option<String>) {
    if let Some(v) = v {
        t.insert(k.into(), v.into());
    }
}

fn put_size(t: &mut toml::Table, k: &str, v: Option<ByteSize>) {
    if let Some(v) = v {
        t.insert(k.into(), (v.as_u64() as i64).into());
    }
}

fn put_int(t: &mut toml::Table, k: &str, v: Option<u64>) {
    if let Some(v) = v {
        t.insert(k.into(), (v as i64).into());
    }
}

/// Settings shared by the finder and the worker.
#[derive(Debug, Clone, Default, Args)]
pub struct JobArgs {
    /// Job file (TOML) carrying any of these settings; flags win
    #[arg(long, env = "FERRY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Progress records: dynamodb://TABLE, or the embedded state file [default: one file per source/destination pair under ~/.local/state/ferry]
    #[arg(long, env = "FERRY_STATE", value_name = "PATH|dynamodb://TABLE")]
    pub state: Option<String>,
    /// Job queue: an SQS queue URL, or an embedded state file [default: the embedded state file]
    #[arg(long, env = "FERRY_QUEUE", value_name = "URL|PATH")]
    pub queue: Option<String>,

    #[command(flatten)]
    pub src: SrcArgs,
    #[command(flatten)]
    pub dest: DestArgs,

    /// Destination storage class, e.g. STANDARD_IA, GLACIER_IR
    #[arg(
        long,
        env = "FERRY_DEST_STORAGE_CLASS",
        value_name = "CLASS",
        help_heading = "Destination"
    )]
    pub dest_storage_class: Option<String>,
    /// Destination canned ACL, e.g. bucket-owner-full-control
    #[arg(long, env = "FERRY_DEST_ACL", value_name = "ACL", help_heading = "Destination")]
    pub dest_acl: Option<String>,
    /// Destination server-side encryption: AES256 or aws:kms
    #[arg(long, env = "FERRY_DEST_SSE", value_name = "SSE", help_heading = "Destination")]
    pub dest_sse: Option<String>,
    /// KMS key id for --dest-sse aws:kms
    #[arg(
        long,
        env = "FERRY_DEST_SSE_KMS_KEY_ID",
        value_name = "KEY",
        help_heading = "Destination"
    )]
    pub dest_sse_kms_key_id: Option<String>,

    /// Part size for multipart uploads; grows automatically past 10,000 parts [default: 16MiB]
    #[arg(long, env = "FERRY_PART_SIZE", value_name = "SIZE", help_heading = "Transfer")]
    pub part_size: Option<ByteSize>,
    /// Objects larger than this are uploaded in parts [default: 64MiB]
    #[arg(
        long,
        env = "FERRY_MULTIPART_THRESHOLD",
        value_name = "SIZE",
        help_heading = "Transfer"
    )]
    pub multipart_threshold: Option<ByteSize>,
    /// Parts of one object in flight at once [default: 8]
    #[arg(long, env = "FERRY_CONCURRENCY", value_name = "N", help_heading = "Transfer")]
    pub concurrency: Option<u64>,
    /// Bytes held in memory by all transfers at once [default: 256MiB]
    #[arg(long, env = "FERRY_MAX_IN_FLIGHT", value_name = "SIZE", help_heading = "Transfer")]
    pub max_in_flight: Option<ByteSize>,
    /// Tries per store request for retryable errors [default: 5]
    #[arg(long, env = "FERRY_RETRIES", value_name = "N", help_heading = "Transfer")]
    pub retries: Option<u64>,
    /// Failed attempts of a job, counted in the ledger, before it is given up and dead-lettered [default: 5]
    #[arg(long, env = "FERRY_MAX_ATTEMPTS", value_name = "N", help_heading = "Transfer")]
    pub max_attempts: Option<u64>,
    /// Deliveries before the embedded queue parks a message as dead: a backstop, messages whose deliveries
    /// were spent by workers that died are requeued fresh (SQS: the queue's redrive policy) [default: 10]
    #[arg(long, env = "FERRY_MAX_RECEIVES", value_name = "N", help_heading = "Transfer")]
    pub max_receives: Option<u64>,
    /// Lease on a job and its object, renewed while it runs [default: 60s]
    #[arg(long, env = "FERRY_LEASE", value_name = "DURATION", help_heading = "Transfer")]
    pub lease: Option<humantime::Duration>,
    /// On SIGTERM/SIGINT, time given to running jobs before they are stopped and released [default: 25s]
    #[arg(
        long,
        env = "FERRY_SHUTDOWN_GRACE",
        value_name = "DURATION",
        help_heading = "Transfer"
    )]
    pub shutdown_grace: Option<humantime::Duration>,
}

impl JobArgs {
    /// The flag layer as a TOML table, with the positional locations and
    /// extra top-level settings of the caller.
    pub fn overrides(&self, src: Option<&str>, dest: Option<&str>, workers: Option<u64>) -> toml::Table {
        let mut source = toml::Table::new();
        put(&mut source, "url", src.map(str::to_string));
        self.src.overrides(&mut source);
        let mut destination = toml::Table::new();
        put(&mut destination, "url", dest.map(str::to_string));
        self.dest.overrides(&mut destination);
        put(&mut destination, "storage_class", self.dest_storage_class.clone());
        put(&mut destination, "acl", self.dest_acl.clone());
        put(&mut destination, "sse", self.dest_sse.clone());
        put(&mut destination, "sse_kms_key_id", self.dest_sse_kms_key_id.clone());
        let mut transfer = toml::Table::new();
        put_size(&mut transfer, "part_size", self.part_size);
        put_size(&mut transfer, "multipart_threshold", self.multipart_threshold);
        put_size(&mut transfer, "max_in_flight", self.max_in_flight);
        put_int(&mut transfer, "concurrency", self.concurrency);
        put_int(&mut transfer, "retries", self.retries);
        put_int(&mut transfer, "max_attempts", self.max_attempts);
        put_int(&mut transfer, "max_receives", self.max_receives);
        put_int(&mut transfer, "workers", workers);
        put(&mut transfer, "lease", self.lease.map(|d| d.to_string()));
        put(
            &mut transfer,
            "shutdown_grace",
            self.shutdown_grace.map(|d| d.to_string()),
        );
        let mut t = toml::Table::new();
        t.insert("source".into(), source.into());
        t.insert("destination".into(), destination.into());
        t.insert("transfer".into(), transfer.into());
        put(&mut t, "state", self.state.clone());
        put(&mut t, "queue", self.queue.clone());
        t
    }

    /// Reads the config file (if any) and applies `overrides` on top.
    pub fn load(&self, overrides: toml::Table) -> Result<JobConfig, ferry_core::config::ConfigError> {
        let file = match &self.config {
            Some(p) => JobConfig::from_file(p)?,
            None => toml::Table::new(),
        };
        let origin = self
            .config
            .as_ref()
            .map(|p| format!("--config {}", p.display()))
            .unwrap_or_else(|| "settings".into());
        JobConfig::from_layers(file, overrides, &origin)
    }
}

/// The running pieces of a job: engine, queue, state store and runner settings.
pub struct Runtime {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The job queue.
    pub queue: Arc<dyn JobQueue>,
    /// The state store.
    pub state: Arc<dyn StateStore>,
    /// Runner settings.
    pub runner: RunnerConfig,
}

/// Errors of opening a job's queue and state store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The embedded state file.
    #[error(transparent)]
    Db(#[from] ferry_core::db::DbError),
    /// The SQS queue.
    #[error(transparent)]
    Queue(#[from] ferry_core::queue::QueueError),
    /// The DynamoDB table.
    #[error(transparent)]
    State(#[from] ferry_core::state::StateError),
}

/// Opens the queue and the state store of a job (SQS and DynamoDB through
/// the AWS SDK's default chain, which honours `AWS_ENDPOINT_URL_SQS` and
/// `AWS_ENDPOINT_URL_DYNAMODB`).
pub async fn open_backends(
    state: &StateLocation,
    queue: &QueueLocation,
    t: &ferry_core::config::TransferConfig,
) -> Result<(Arc<dyn JobQueue>, Arc<dyn StateStore>), OpenError> {
    let mut db: Option<Db> = None;
    let mut embedded = |path: &std::path::Path| -> Result<Db, OpenError> {
        match &db {
            Some(d) if d.path() == path => Ok(d.clone()),
            _ => {
                let d = Db::open(path)?;
                db = Some(d.clone());
                Ok(d)
            }
        }
    };
    let needs_aws = matches!(state, StateLocation::Dynamo { .. }) || matches!(queue, QueueLocation::Sqs { .. });
    let sdk = if needs_aws {
        Some(ferry_core::aws::sdk_config(None).await)
    } else {
        None
    };
    let state: Arc<dyn StateStore> = match state {
        StateLocation::Embedded(p) => Arc::new(EmbeddedStateStore::new(embedded(p)?)),
        StateLocation::Dynamo { table } => Arc::new(DynamoStateStore::new(sdk.as_ref().expect("loaded"), table)),
    };
    let queue: Arc<dyn JobQueue> = match queue {
        QueueLocation::Embedded(p) => Arc::new(EmbeddedQueue::new(embedded(p)?, t.max_receives)),
        QueueLocation::Sqs { url } => Arc::new(SqsQueue::new(sdk.as_ref().expect("loaded"), url)),
    };
    Ok((queue, state))
}

/// The queue's own delivery limit, with a warning when it leaves churn room
/// to push healthy jobs into the dead-letter queue, or when there is none.
async fn delivery_limit(queue: &dyn JobQueue) -> Result<Option<u32>, OpenError> {
    let limit = queue.max_receives().await?;
    match limit {
        Some(n) if n < 3 => tracing::warn!(
            queue = %queue.describe(),
            max_receives = n,
            "The queue parks a message as dead after fewer than 3 deliveries: a worker that dies or stops can push a healthy job into the dead-letter queue. Raise maxReceiveCount (infra/ uses 10)."
        ),
        Some(_) => {}
        None => tracing::warn!(
            queue = %queue.describe(),
            "The queue has no redrive policy: jobs given up are kept in the ledger only (status names them). Give it a dead-letter queue (infra/, or ferry-finder --create-resources)."
        ),
    }
    Ok(limit)
}

/// Creates the SQS queue (with its dead-letter queue) and the DynamoDB table
/// of a job when they are missing; embedded ones need nothing. For trying the
/// fleet against local servers; production resources come from `infra/`.
pub async fn create_resources(job: &Job) -> Result<Vec<String>, OpenError> {
    let mut made = Vec::new();
    let sdk = ferry_core::aws::sdk_config(None).await;
    if let QueueLocation::Sqs { .. } = &job.queue {
        let name = job.queue.name();
        let url = SqsQueue::create(&sdk, &name, job.raw.transfer.max_receives).await?;
        made.push(format!("queue {url} (dead-letter queue {name}-dlq)"));
    }
    if let StateLocation::Dynamo { table } = &job.state {
        DynamoStateStore::create_table(&sdk, table).await?;
        made.push(format!("DynamoDB table {table}"));
    }
    Ok(made)
}

/// Opens the stores, the queue and the state store of a validated job.
pub async fn open(job: &Job) -> Result<Runtime, OpenError> {
    let t = &job.raw.transfer;
    let (queue, state) = open_backends(&job.state, &job.queue, t).await?;
    let max_receives = delivery_limit(&*queue).await?;
    let src = job.source.open().await;
    let dst = job.destination.open().await;
    let cfg = EngineConfig {
        multipart_threshold: t.multipart_threshold.as_u64(),
        part_size: t.part_size.as_u64(),
        concurrency: t.concurrency,
        max_in_flight: t.max_in_flight.as_u64(),
        retries: t.retries.max(1),
        lease: t.lease,
    };
    let mut engine = Engine::new(src, dst, state.clone(), job.destination.bucket(), job.put.clone(), cfg);
    let local_source = matches!(job.source.location, ferry_core::location::Location::Local { .. });
    if local_source && job.compare_mode() == ferry_core::diff::CompareMode::Checksum {
        engine = engine.keep_checksums_in(ferry_core::file_hashes::FileHashes::new(Db::open(
            &job.file_hashes_path(),
        )?));
    }
    let engine = Arc::new(engine);
    let runner = RunnerConfig {
        workers: t.workers.max(1),
        lease: t.lease,
        max_receives: max_receives.unwrap_or(u32::MAX),
        max_attempts: t.max_attempts.max(1),
        grace: t.shutdown_grace,
        events: job.event_context(),
    };
    Ok(Runtime {
        engine,
        queue,
        state,
        runner,
    })
}

/// The log filter: `RUST_LOG`, or `default` when unset or invalid.
///
/// The AWS SDK's own crates stay at `info` unless `RUST_LOG` names them: their
/// debug output prints request identities, access key ids included.
pub fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| default.to_string());
    tracing_subscriber::EnvFilter::try_new(sdk_capped(&spec))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(sdk_capped(default)))
}

/// A binary's `main`: forgets empty `FERRY_*` variables while the process
/// has one thread ([`unset_empty_env`]), starts the async runtime and the
/// telemetry of `name`, runs `run`, and turns its result into the exit code
/// ([`exit_code`]).
pub fn main<F>(name: &'static str, run: impl FnOnce() -> F) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<u8>>,
{
    unset_empty_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts");
    runtime.block_on(async {
        let telemetry = crate::otel::Telemetry::init(name, "info");
        let result = run().await;
        telemetry.shutdown().await;
        exit_code(name, result)
    })
}

/// Forgets every `FERRY_*` variable that is set but empty, before the flags
/// are parsed: an empty variable means "not set", as it does in the job-file
/// layer ([`ferry_core::config::env_layer`]). Templates set every variable
/// and leave the unused ones empty (`FERRY_SRC_ENDPOINT=`), which clap would
/// otherwise take as the value "". [`main`] calls it first, while the
/// process has one thread.
fn unset_empty_env() {
    for (k, v) in std::env::vars_os() {
        if v.is_empty() && k.to_str().is_some_and(|k| k.starts_with("FERRY_")) {
            std::env::remove_var(&k);
        }
    }
}

/// The exit code of a binary's `run`: its own code, or 2 after printing the
/// error with its causes as `NAME: error: …`.
pub fn exit_code(name: &str, r: anyhow::Result<u8>) -> std::process::ExitCode {
    match r {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Log targets of the AWS SDK that are capped at `info` unless named.
const SDK_TARGETS: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_sdk_",
    "aws_config",
    "aws_sigv4",
];

fn sdk_capped(spec: &str) -> String {
    let mut out = spec.to_string();
    for t in SDK_TARGETS {
        if !spec.contains(t) {
            let t = t.trim_end_matches('_');
            for target in if t == "aws_sdk" {
                vec![
                    "aws_sdk_s3",
                    "aws_sdk_sqs",
                    "aws_sdk_dynamodb",
                    "aws_sdk_secretsmanager",
                ]
            } else {
                vec![t]
            } {
                out.push_str(&format!(",{target}=info"));
            }
        }
    }
    out
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM (what ECS and Auto Scaling send).
pub async fn shutdown_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
