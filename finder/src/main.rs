//! `ferry-finder`: the one command that syncs a source to a destination.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferry_cli::backends::LedgerBackends;
use ferry_cli::{Backends, JobArgs, Locations};
use ferry_core::config::QueueLocation;
use ferry_core::schedule::Schedule;
use ferry_finder::{FinderOptions, Interrupted};
use ferry_worker::Worker;
use serde::Serialize;

/// Freed part buffers go back to the system promptly (see ferry-worker).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Prints a line to stdout; a closed stdout (`| head`) is not an error.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// Copies what is missing or different from SRC to DEST, resumably and
/// verified, and exits 0 only when every object is done.
///
/// SRC and DEST are s3://BUCKET/PREFIX, file:///DIR, /DIR or ./DIR. Progress
/// and a resumable queue live in an embedded state file; run the same command
/// again after a crash or Ctrl-C to resume without resending finished parts.
///
/// Credentials: the AWS default chain, --src-profile/--dest-profile,
/// --src-secret/--dest-secret (AWS Secrets Manager), or
/// FERRY_SRC_ACCESS_KEY_ID/FERRY_SRC_SECRET_ACCESS_KEY (and FERRY_DEST_…).
///
/// In a fleet, the finder queues jobs to SQS (--queue URL) and records runs in
/// DynamoDB (--state dynamodb://TABLE); ferry-worker processes transfer them.
/// With --schedule it keeps running: rate:15m, or 'cron:0 */6 * * *' (UTC).
///
/// Examples:
///   ferry-finder ./photos s3://my-bucket/photos/
///   ferry-finder s3://src-bucket s3://dst-bucket --src-vendor aliyun-oss --src-region cn-hangzhou
///   ferry-finder s3://bucket/logs/ /backup/logs --dry-run
///   ferry-finder --config job.toml --queue https://sqs.../jobs --state dynamodb://ferry --schedule rate:1h
///   ferry-finder status --config job.toml --wait
#[derive(Debug, Parser)]
#[command(
    name = "ferry-finder",
    version,
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    locations: Locations,
    /// Worker tasks in this process; 0 only queues jobs for ferry-worker processes [default: 32, or 0 with an SQS queue]
    #[arg(long, env = "FERRY_FINDER_WORKERS")]
    workers: Option<u64>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// Create the SQS queue (with a dead-letter queue) and the DynamoDB table when missing (development)
    #[arg(long)]
    create_resources: bool,
    /// Print the plan (new / changed / identical counts, bytes, first keys) and copy nothing
    #[arg(long)]
    dry_run: bool,
    /// Plain log lines instead of a progress bar
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    job: JobArgs,
}

/// The finder's own settings, as a layer of the job file's shape.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
struct RunArgs {
    /// When to run: once, rate:DURATION (rate:15m) or cron:EXPRESSION (cron:0 */6 * * *, UTC) [default: once]
    #[arg(long, env = "FERRY_SCHEDULE", value_name = "SCHEDULE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<String>,
    /// With --delete: the most deletions one run makes; past it the rest are kept and the run exits 1
    #[arg(long, env = "FERRY_MAX_DELETE", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_delete: Option<u64>,
    /// File with one source prefix per line (relative to SRC's prefix)
    #[arg(long, env = "FERRY_PREFIX_LIST", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix_list: Option<std::path::PathBuf>,
    /// Fleet listing: queue N list jobs (key ranges of the source) for the workers to list and diff,
    /// instead of listing here; a range found large is split again by its worker. Progress shows in
    /// `status`. 0: the finder lists [default: 0]
    #[arg(long, env = "FERRY_LIST_JOBS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    list_jobs: Option<usize>,
    /// With --list-jobs: source keys one list job diffs before it splits the rest of its range off for
    /// other workers [default: 100000]
    #[arg(long, env = "FERRY_LIST_JOB_KEYS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    list_job_keys: Option<u64>,
    #[command(flatten)]
    #[serde(rename = "transfer")]
    transfer: DefaultWorkers,
}

/// The job file's `workers`, the default of the finder's --workers.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
struct DefaultWorkers {
    /// Objects at once per worker process (the job file's `workers`)
    #[arg(
        id = "transfer_workers",
        long = "transfer-workers",
        env = "FERRY_WORKERS",
        hide = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<u64>,
}

/// Which keys a run or a verification covers.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
struct FilterArgs {
    /// Only keys matching this glob (relative to the source prefix; repeatable)
    #[arg(long, env = "FERRY_INCLUDE", value_name = "GLOB", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    include: Vec<String>,
    /// Skip keys matching this glob (repeatable)
    #[arg(long, env = "FERRY_EXCLUDE", value_name = "GLOB", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    exclude: Vec<String>,
    /// Only source objects modified at or after this time: 2026-11-30, 2026-11-30T08:00:00Z (UTC), or an
    /// age like 7d or 12h (that long before now)
    #[arg(long, env = "FERRY_MODIFIED_SINCE", value_name = "TIME|AGE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    modified_since: Option<String>,
    /// Ranges of the source's key space listed and diffed at once, found by sampling the listing (no
    /// prefix list needed); 1 lists with one lister [default: 8 for a bucket, 1 for a directory]
    #[arg(long, env = "FERRY_LIST_RANGES", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    list_ranges: Option<usize>,
    /// Prices of the estimate printed with the plan and the summary: aws (Amazon S3 Standard, us-east-1)
    /// or a TOML file with name, currency, put_per_1000, get_per_1000, egress_per_gb, sqs_per_million,
    /// dynamodb_write_per_million [default: aws]
    #[arg(long, env = "FERRY_PRICES", value_name = "aws|FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    prices: Option<String>,
    /// Take the source's listing from this S3 Inventory report instead of listing the bucket:
    /// s3://BUCKET/PATH/manifest.json (CSV or Parquet), read with the source's credentials. Objects
    /// written after the report are not seen; the destination is listed as usual
    #[arg(long, env = "FERRY_SOURCE_INVENTORY", value_name = "S3_URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    source_inventory: Option<String>,
    /// Only source objects modified before this time (same forms as --modified-since)
    #[arg(long, env = "FERRY_MODIFIED_BEFORE", value_name = "TIME|AGE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    modified_before: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compares SRC and DEST in full: every key at both, sizes, and ETags where
    /// they are comparable, else the MD5 of both bodies; lists missing, extra
    /// and different keys. With --compare checksum, full-object checksums
    /// (MD5, CRC-64/NVME, CRC-64/ECMA; local files hashed) decide first and
    /// bodies are read only where the sides share none. Exit code 0 when they
    /// match, 1 when they differ.
    Verify {
        #[command(flatten)]
        locations: Locations,
        /// Compare sizes (and comparable ETags) only; never read bodies
        #[arg(long, conflicts_with = "compare")]
        size_only: bool,
        #[command(flatten)]
        filter: FilterArgs,
        /// How many keys of each kind to list
        #[arg(long, default_value_t = 20)]
        show: usize,
        #[command(flatten)]
        job: JobArgs,
    },
    /// Shows the progress of a run (default: the latest) from the state store:
    /// found, queued, in flight, done, identical, failed with the top errors,
    /// bytes, rate and ETA; "complete" once every job of the run has ended.
    /// Exit codes: 0 complete without failures (or running, without --wait),
    /// 1 complete with failures, 3 --timeout passed.
    Status {
        #[command(flatten)]
        locations: Locations,
        /// Run id (as printed by the finder) [default: the latest run]
        #[arg(long)]
        run: Option<String>,
        /// Wait until the run is complete
        #[arg(long)]
        wait: bool,
        /// How often to look with --wait
        #[arg(long, default_value = "2s")]
        interval: humantime::Duration,
        /// Stop waiting after this long (exit code 3)
        #[arg(long)]
        timeout: Option<humantime::Duration>,
        #[command(flatten)]
        job: JobArgs,
    },
    /// Sends every dead-lettered job back to the queue (like SQS's DLQ
    /// redrive), for after the cause of the failures is fixed: the workers take
    /// them again, each with its full count of attempts. Uses --queue/--state
    /// (or --config) like status.
    Redrive {
        #[command(flatten)]
        locations: Locations,
        #[command(flatten)]
        job: JobArgs,
    },
    /// Shows or sets the bandwidth limit shared by every worker of the job's
    /// queue, kept in the state store (DynamoDB or the embedded file).
    /// Running workers read it again within 30 s; no restart. LIMIT is a rate
    /// (10M, 512k), a timetable like rclone's ("08:00,512k 12:00,10M
    /// Sat-00:00,off", local time), or `off` to remove it. Without LIMIT,
    /// shows the limit and the rate it gives now. Each process's own limit is
    /// --bwlimit. Uses --queue/--state (or --config) like status.
    Bwlimit {
        /// The new limit: RATE, "TIME,RATE …" or off
        limit: Option<String>,
        #[command(flatten)]
        locations: Locations,
        #[command(flatten)]
        job: JobArgs,
    },
    /// Aborts unfinished multipart uploads under a destination prefix (they
    /// cost storage until aborted). Uses the --dest-* connection flags.
    CleanUploads {
        /// s3://BUCKET/PREFIX or a local directory
        location: String,
        /// Only uploads started longer ago than this
        #[arg(long, default_value = "24h")]
        older_than: humantime::Duration,
        /// List what would be aborted
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        job: JobArgs,
    },
}

fn main() -> std::process::ExitCode {
    ferry_cli::main("ferry-finder", run)
}

async fn run() -> anyhow::Result<u8> {
    let cli: Cli = ferry_cli::parse();
    match cli.command {
        Some(command) => subcommand(command).await,
        None => sync(cli).await,
    }
}

async fn subcommand(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::CleanUploads {
            location,
            older_than,
            dry_run,
            job,
        } => clean_uploads(&location, older_than.into(), dry_run, &job).await,
        Command::Verify {
            locations,
            size_only,
            filter,
            show,
            job,
        } => {
            let cfg = job
                .load([locations.layer(), ferry_cli::args::layer(&filter)])
                .context("reading the job settings")?;
            let settings = cfg.build().context("invalid job settings")?;
            let checksums = settings.compare == ferry_core::diff::CompareMode::Checksum;
            let ledger = match checksums {
                true => LedgerBackends::open(&settings.ledger, &settings.transfer).await.ok(),
                false => None,
            };
            let backends = ferry_finder::verify::VerifyBackends {
                source: Backends::store(&settings.source, &settings.transfer).await,
                destination: Backends::store(&settings.destination, &settings.transfer).await,
                ledger: ledger.map(|l| l.state),
            };
            let opts = ferry_finder::verify::VerifyOptions {
                size_only,
                checksums,
                show,
            };
            let report = ferry_finder::verify::verify(&settings, &backends, &opts).await?;
            ferry_finder::verify::print(&report);
            Ok(if report.matches() { 0 } else { 1 })
        }
        Command::Status {
            locations,
            run,
            wait,
            interval,
            timeout,
            job,
        } => {
            let cfg = job.load([locations.layer()]).context("reading the job settings")?;
            let ledger = cfg.ledger().context("invalid job settings")?;
            let backends = LedgerBackends::open(&ledger, &cfg.transfer)
                .await
                .context("opening the job's queue and state")?;
            let opts = ferry_finder::status::StatusOptions {
                run,
                wait,
                interval: interval.into(),
                timeout: timeout.map(Into::into),
            };
            ferry_finder::status::status(&ledger, &backends, &opts).await
        }
        Command::Bwlimit { limit, locations, job } => {
            let cfg = job.load([locations.layer()]).context("reading the job settings")?;
            let ledger = cfg.ledger().context("invalid job settings")?;
            let backends = LedgerBackends::open(&ledger, &cfg.transfer)
                .await
                .context("opening the job's state")?;
            if let Some(text) = limit {
                let t: ferry_core::bandwidth::Timetable = text.parse().map_err(|e| anyhow::anyhow!("LIMIT: {e}"))?;
                let off = t.to_string().eq_ignore_ascii_case("off");
                let value = (!off).then(|| t.to_string());
                backends
                    .bandwidth
                    .set_fleet_limit(&ledger.queue.name(), value.as_deref())
                    .await
                    .context("saving the fleet's bandwidth limit")?;
            }
            ferry_finder::status::print_fleet_limit(&ledger, &backends).await?;
            Ok(0)
        }
        Command::Redrive { locations, job } => {
            let cfg = job.load([locations.layer()]).context("reading the job settings")?;
            let ledger = cfg.ledger().context("invalid job settings")?;
            let queue = LedgerBackends::open(&ledger, &cfg.transfer)
                .await
                .context("opening the job's queue")?
                .queue;
            let n = queue
                .redrive_dead()
                .await
                .with_context(|| format!("sending dead-lettered jobs back to {}", queue.describe()))?;
            out!("{n} dead-lettered job(s) sent back to {}", queue.describe());
            Ok(0)
        }
    }
}

/// The sync: once, or on a schedule until stopped.
async fn sync(cli: Cli) -> anyhow::Result<u8> {
    let layers = [
        cli.locations.layer(),
        ferry_cli::args::layer(&cli.run),
        ferry_cli::args::layer(&cli.filter),
    ];
    let cfg = cli.job.load(layers).context("reading the job settings")?;
    let job = cfg.build().context("invalid job settings")?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let scheduled = !matches!(job.schedule, Schedule::Once);
    tokio::spawn(async move {
        ferry_cli::shutdown_signal().await;
        if scheduled {
            tracing::info!("Stopping the finder.");
        } else {
            eprintln!("ferry-finder: stopping; run the same command again to resume.");
        }
        let _ = stop_tx.send(true);
    });
    if cli.create_resources {
        for made in ferry_cli::backends::create_resources(&job)
            .await
            .context("--create-resources")?
        {
            tracing::info!("Ready: {made}.");
        }
    }
    let backends = Backends::open(&job)
        .await
        .context("opening the job's queue and state")?;
    if cli.dry_run {
        return finish(ferry_finder::dry_run(&job, &backends, stop).await);
    }
    let lister = ferry_finder::list_jobs::FleetLister::new(&job, &backends)?;
    let worker = Worker::new(&job, &backends, Some(Arc::new(lister)))
        .await
        .context("opening the job's queue and state")?;
    let opts = FinderOptions {
        workers: match (cli.workers, &job.ledger.queue) {
            (Some(n), _) => n as usize,
            (None, QueueLocation::Sqs { .. }) => 0,
            (None, QueueLocation::Embedded(_)) => job.transfer.workers,
        },
        progress: !cli.no_progress && ferry_finder::is_tty(),
    };
    let run = || ferry_finder::run(&job, &backends, &worker, &opts, stop.clone());
    if let Schedule::Once = job.schedule {
        return finish(run().await);
    }
    tracing::info!(schedule = %job.schedule, "Finder started.");
    let mut stop = stop.clone();
    loop {
        let started = SystemTime::now();
        match run().await {
            Ok(r) if r.interrupted => return Ok(0),
            Ok(r) => tracing::info!(
                run = %r.run,
                found = r.counters.found,
                enqueued = r.counters.enqueued,
                "Run finished."
            ),
            Err(e) if *stop.borrow() => {
                tracing::debug!(error = %e, "Run interrupted.");
                return Ok(0);
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "Run failed; trying again at the next scheduled time."
            ),
        }
        let Some(next) = job.schedule.next(started, SystemTime::now()) else {
            return Ok(0);
        };
        let wait = next.duration_since(SystemTime::now()).unwrap_or_default();
        tracing::info!(next_in = %humantime::format_duration(Duration::from_secs(wait.as_secs())), "Waiting for the next run.");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return Ok(0),
        }
    }
}

fn finish(r: anyhow::Result<ferry_finder::Report>) -> anyhow::Result<u8> {
    match r {
        Ok(r) if r.interrupted => Ok(130),
        Ok(r) if r.counters.failed > 0 || !r.failures.is_empty() || r.deletes_over_cap > 0 => Ok(1),
        Ok(_) => Ok(0),
        Err(e) if e.is::<Interrupted>() => Ok(130),
        Err(e) => Err(e),
    }
}

async fn clean_uploads(location: &str, older_than: Duration, dry_run: bool, job: &JobArgs) -> anyhow::Result<u8> {
    let locations = Locations {
        src: Some(".".into()),
        dest: Some(location.into()),
    };
    let cfg = job.load([locations.layer()]).context("reading the job settings")?;
    let settings = cfg.build().context("invalid settings")?;
    let store = Backends::store(&settings.destination, &settings.transfer).await;
    let prefix = settings.destination.prefix().to_string();
    let cutoff = ferry_core::now_millis() - older_than.as_millis() as i64;
    let uploads = store
        .list_uploads(&prefix)
        .await
        .with_context(|| format!("listing unfinished uploads in {location}"))?;
    let mut n = 0;
    for u in uploads.iter().filter(|u| u.initiated.is_none_or(|t| t <= cutoff)) {
        if dry_run {
            out!("would abort {} (upload {})", u.key, u.upload_id);
        } else {
            store
                .abort_multipart(&u.key, &u.upload_id)
                .await
                .with_context(|| format!("aborting the upload of {:?}", u.key))?;
            out!("aborted {} (upload {})", u.key, u.upload_id);
        }
        n += 1;
    }
    out!(
        "{n} unfinished upload(s) {} ({} newer ones kept)",
        if dry_run { "found" } else { "aborted" },
        uploads.len() - n
    );
    Ok(0)
}

#[cfg(test)]
#[test]
fn the_command_line_is_well_formed() {
    <Cli as clap::CommandFactory>::command().debug_assert();
}
