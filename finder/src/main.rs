//! `ferry-finder`: the one command that syncs a source to a destination.

use std::time::{Duration, SystemTime};

use ferry_core::config::QueueLocation;
use ferry_core::schedule::Schedule;

/// Prints a line to stdout; a closed stdout (`| head`) is not an error.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferry_finder::FinderOptions;
use ferry_worker::cli::{self, JobArgs};

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
    /// Source: s3://BUCKET/PREFIX, file:///DIR, /DIR or ./DIR (or [source] url in --config)
    src: Option<String>,
    /// Destination: s3://BUCKET/PREFIX, file:///DIR, /DIR or ./DIR (or [destination] url in --config)
    dest: Option<String>,
    /// Worker tasks in this process; 0 only queues jobs for ferry-worker processes [default: 32, or 0 with an SQS queue]
    #[arg(long, env = "FERRY_FINDER_WORKERS")]
    workers: Option<u64>,
    /// When to run: once, rate:DURATION (rate:15m) or cron:EXPRESSION (cron:0 */6 * * *, UTC) [default: once]
    #[arg(long, env = "FERRY_SCHEDULE", value_name = "SCHEDULE")]
    schedule: Option<String>,
    /// Delete destination keys that have no source counterpart (delete sync; also applies ObjectRemoved events)
    #[arg(long, env = "FERRY_DELETE")]
    delete: bool,
    /// With --delete: the most deletions one run makes; past it the rest are kept and the run exits 1
    #[arg(long, env = "FERRY_MAX_DELETE", value_name = "N")]
    max_delete: Option<u64>,
    /// Create the SQS queue (with a dead-letter queue) and the DynamoDB table when missing (development)
    #[arg(long)]
    create_resources: bool,
    /// Print the plan (new / changed / identical counts, bytes, first keys) and copy nothing
    #[arg(long)]
    dry_run: bool,
    /// How existing objects are compared: mtime (size and modification time), checksum (size and
    /// content: MD5, CRC-64/NVME or CRC-64/ECMA; local files hashed once, kept in the state file),
    /// size-etag (size, and ETags where comparable, else the ledger or checksums), size, none
    /// (existence) [default: auto: mtime when a side is local, size-etag between stores]
    #[arg(long, env = "FERRY_COMPARE", value_name = "MODE")]
    compare: Option<String>,
    /// Only keys matching this glob (relative to the source prefix; repeatable)
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Skip keys matching this glob (repeatable)
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// File with one source prefix per line (relative to SRC's prefix)
    #[arg(long, env = "FERRY_PREFIX_LIST", value_name = "FILE")]
    prefix_list: Option<std::path::PathBuf>,
    /// Plain log lines instead of a progress bar
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    job: JobArgs,
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
        /// Source: s3://BUCKET/PREFIX, file:///DIR, /DIR or ./DIR
        src: Option<String>,
        /// Destination: s3://BUCKET/PREFIX, file:///DIR, /DIR or ./DIR
        dest: Option<String>,
        /// Compare sizes (and comparable ETags) only; never read bodies
        #[arg(long, conflicts_with = "compare")]
        size_only: bool,
        /// checksum: compare full-object checksums before reading bodies [default: ETags, then bodies]
        #[arg(long, value_name = "MODE", value_parser = ["checksum"])]
        compare: Option<String>,
        /// Only keys matching this glob (repeatable)
        #[arg(long, value_name = "GLOB")]
        include: Vec<String>,
        /// Skip keys matching this glob (repeatable)
        #[arg(long, value_name = "GLOB")]
        exclude: Vec<String>,
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
    cli::main("ferry-finder", run)
}

async fn run() -> anyhow::Result<u8> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CleanUploads {
            location,
            older_than,
            dry_run,
            job,
        }) => return clean_uploads(&location, older_than.into(), dry_run, &job).await,
        Some(Command::Verify {
            src,
            dest,
            size_only,
            compare,
            include,
            exclude,
            show,
            job,
        }) => {
            let mut overrides = job.overrides(src.as_deref(), dest.as_deref(), None);
            if !include.is_empty() {
                overrides.insert("include".into(), include.into());
            }
            if !exclude.is_empty() {
                overrides.insert("exclude".into(), exclude.into());
            }
            let cfg = job.load(overrides).context("reading the job settings")?;
            let settings = cfg.build().context("invalid job settings")?;
            let opts = ferry_finder::verify::VerifyOptions {
                size_only,
                checksums: compare.is_some(),
                show,
            };
            let report = ferry_finder::verify::verify(&settings, &opts).await?;
            ferry_finder::verify::print(&report);
            return Ok(if report.matches() { 0 } else { 1 });
        }
        Some(Command::Status {
            run,
            wait,
            interval,
            timeout,
            job,
        }) => {
            let cfg = job
                .load(job.overrides(None, None, None))
                .context("reading the job settings")?;
            let opts = ferry_finder::status::StatusOptions {
                run,
                wait,
                interval: interval.into(),
                timeout: timeout.map(Into::into),
            };
            return ferry_finder::status::status(&cfg, &opts).await;
        }
        Some(Command::Redrive { job }) => {
            let cfg = job
                .load(job.overrides(None, None, None))
                .context("reading the job settings")?;
            let (state, queue, _) = cfg.ledger().context("invalid job settings")?;
            let (queue, _) = cli::open_backends(&state, &queue, &cfg.transfer)
                .await
                .context("opening the job's queue")?;
            let n = queue
                .redrive_dead()
                .await
                .with_context(|| format!("sending dead-lettered jobs back to {}", queue.describe()))?;
            out!("{n} dead-lettered job(s) sent back to {}", queue.describe());
            return Ok(0);
        }
        None => {}
    }
    let mut overrides = cli.job.overrides(cli.src.as_deref(), cli.dest.as_deref(), None);
    if let Some(s) = &cli.schedule {
        overrides.insert("schedule".into(), s.clone().into());
    }
    if cli.delete {
        overrides.insert("delete".into(), true.into());
    }
    if let Some(n) = cli.max_delete {
        overrides.insert("max_delete".into(), (n as i64).into());
    }
    if let Some(c) = &cli.compare {
        overrides.insert("compare".into(), c.clone().into());
    }
    if !cli.include.is_empty() {
        overrides.insert("include".into(), cli.include.clone().into());
    }
    if !cli.exclude.is_empty() {
        overrides.insert("exclude".into(), cli.exclude.clone().into());
    }
    if let Some(p) = &cli.prefix_list {
        overrides.insert("prefix_list".into(), p.display().to_string().into());
    }
    let cfg = cli.job.load(overrides).context("reading the job settings")?;
    let job = cfg.build().context("invalid job settings")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduled = job.raw.schedule.as_deref().is_some_and(|s| s.trim() != "once");
    tokio::spawn(async move {
        cli::shutdown_signal().await;
        if scheduled {
            tracing::info!("Stopping the finder.");
        } else {
            eprintln!("ferry-finder: stopping; run the same command again to resume.");
        }
        let _ = stop_tx.send(true);
    });
    if cli.create_resources {
        for made in ferry_worker::cli::create_resources(&job)
            .await
            .context("--create-resources")?
        {
            tracing::info!("Ready: {made}.");
        }
    }
    let workers = match (cli.workers, &job.queue) {
        (Some(n), _) => n as usize,
        (None, QueueLocation::Sqs { .. }) => 0,
        (None, QueueLocation::Embedded(_)) => job.raw.transfer.workers,
    };
    let opts = FinderOptions {
        dry_run: cli.dry_run,
        workers,
        progress: !cli.no_progress && ferry_finder::is_tty(),
    };
    let schedule = Schedule::parse(job.raw.schedule.as_deref().unwrap_or("once")).map_err(anyhow::Error::msg)?;
    if let Schedule::Once = schedule {
        return finish(ferry_finder::run(&job, &opts, stop_rx).await);
    }
    tracing::info!(%schedule, "Finder started.");
    let mut stop = stop_rx;
    loop {
        let started = SystemTime::now();
        match ferry_finder::run(&job, &opts, stop.clone()).await {
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
        let Some(next) = schedule.next(started, SystemTime::now()) else {
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
        Err(e) if e.to_string() == "interrupted" => Ok(130),
        Err(e) => Err(e),
    }
}

async fn clean_uploads(location: &str, older_than: Duration, dry_run: bool, job: &JobArgs) -> anyhow::Result<u8> {
    let overrides = job.overrides(Some("."), Some(location), None);
    let cfg = job.load(overrides).context("reading the job settings")?;
    let settings = cfg.build().context("invalid settings")?;
    let store = settings.destination.open().await;
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
