//! ferry-finder: diff a source against a destination and queue a job per
//! object that needs work; with `--workers N`, also run the transfer in
//! process and report when everything is done.
//!
//! The diff lists both sides in key order and walks them in lock step
//! ([`ferry_core::diff`]), prefix by prefix when a prefix list is given, so
//! memory does not grow with the number of keys. Jobs are queued in batches
//! while the listing goes on, and the in-process workers start on the first
//! batch at once.
//!
//! A run never waits for the queue to drain: before a batch is queued, the
//! records of its objects are read (one batched read per 100 objects on
//! DynamoDB) and an object whose lease is live for the same source ETag —
//! a worker is copying exactly that version now — is left out. Duplicates
//! that still slip through (queued but not yet started) are harmless: the
//! worker that comes second finds the object done and skips it.

pub mod compare;
pub mod cost;
mod history;
pub mod inventory;
pub mod list_jobs;
pub mod progress;
pub mod status;
mod summary;
pub mod verify;
mod walk;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use ferry_cli::Backends;
use ferry_core::config::{Settings, Side};
use ferry_core::state::{RunCounters, StateStore, Status};
use ferry_worker::Worker;
use tokio::sync::watch;

pub use crate::compare::Compared;
use crate::progress::Progress;
pub use crate::walk::prefixes;
use crate::walk::{judge, walk, Sink, Walk};

/// The error of a run stopped by `stop` (Ctrl-C or SIGTERM) before it ended.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// How the finder runs.
#[derive(Debug, Clone)]
pub struct FinderOptions {
    /// Worker tasks in this process (0: only queue jobs).
    pub workers: usize,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Run id.
    pub run: String,
    /// Counters.
    pub counters: RunCounters,
    /// Bytes the plan covers.
    pub planned_bytes: u64,
    /// Keys skipped as directory markers for a local destination.
    pub skipped_markers: u64,
    /// Failed objects with their reasons.
    pub failures: Vec<(String, String)>,
    /// Objects left out because a worker holds a live lease on the same version.
    pub leased: u64,
    /// Destination-only keys queued for deletion (delete sync).
    pub deletes: u64,
    /// Destination-only keys kept because `max_delete` was reached.
    pub deletes_over_cap: u64,
    /// Whether Ctrl-C stopped the run.
    pub interrupted: bool,
    /// Whether the in-process workers drained the queue.
    pub drained: bool,
    /// Objects the in-process workers copied inside the store.
    pub server_side: u64,
    /// Source versions the in-process workers replayed (`--versions all`).
    pub versions: u64,
    /// How the pairs the listings could not decide were decided.
    pub compared: Compared,
    /// The requests the plan made or makes, estimated (see [`cost`]).
    pub requests: cost::Requests,
    /// List jobs the finder queued (`--list-jobs`).
    pub lists_queued: u64,
    /// The records of the run's key ranges by status (`--list-jobs`).
    pub lists: ferry_core::state::RunTally,
}

async fn check_source(side: &Side) -> anyhow::Result<()> {
    if let Some(dir) = side.local_dir() {
        let md =
            std::fs::metadata(dir).with_context(|| format!("source directory {}: cannot read it", dir.display()))?;
        if !md.is_dir() {
            bail!("source {} is not a directory", dir.display());
        }
    }
    Ok(())
}

/// A run id: UTC time and a random suffix, e.g. `2026-11-21T10:00:00Z#a1b2`.
pub fn new_run_id() -> String {
    format!(
        "{}#{:04x}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        rand::random::<u16>()
    )
}

/// Plans a run and prints the plan, queueing and copying nothing.
pub async fn dry_run(job: &Settings, backends: &Backends, stop: watch::Receiver<bool>) -> anyhow::Result<Report> {
    check_source(&job.source).await?;
    let prefixes = prefixes(job)?;
    let run_id = new_run_id();
    let inventory = load_inventory(job).await?;
    let judge = judge(job, &backends.source, &backends.destination, backends.state.clone())?;
    let w = Walk {
        job,
        src: &backends.source,
        dst: &backends.destination,
        judge: &judge,
        inventory: inventory.clone(),
    };
    let plan = walk(&w, &prefixes, None, &run_id, stop).await?;
    summary::print_plan(job, &plan);
    summary::print_comparisons(&judge.stats.snapshot());
    Ok(Report {
        run: run_id,
        counters: RunCounters {
            found: plan.new.0 + plan.changed.0 + plan.identical,
            identical: plan.identical,
            ..Default::default()
        },
        planned_bytes: plan.new.1 + plan.changed.1,
        ..Default::default()
    })
}

/// Runs the finder over `backends`: walks both sides and queues a job per
/// object that needs work, while `opts.workers` tasks of `worker` transfer
/// them in-process (none: the jobs wait for `ferry-worker` processes).
/// `stop` set to true interrupts ([`Interrupted`]).
pub async fn run(
    job: &Settings,
    backends: &Backends,
    worker: &Worker,
    opts: &FinderOptions,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Report> {
    check_source(&job.source).await?;
    let prefixes = prefixes(job)?;
    let run_id = new_run_id();
    let state = &backends.state;
    state.run_start(&run_id).await.context("recording the run")?;
    let started = Instant::now();
    let producer_done = Arc::new(AtomicBool::new(false));
    let progress = Progress::start(
        opts.progress,
        worker.engine.stats.clone(),
        worker.engine.pacing().clone(),
    );
    let runner = (opts.workers > 0).then(|| {
        let mut cfg = worker.runner.clone();
        cfg.workers = opts.workers;
        // Ctrl-C at a terminal stops at once; parts are recorded and resume.
        cfg.grace = std::time::Duration::ZERO;
        let control = ferry_worker::runner::Control {
            stop: stop.clone(),
            producer_done: Some(producer_done.clone()),
        };
        tokio::spawn(ferry_worker::runner::run(
            worker.engine.clone(),
            backends.queue.clone(),
            cfg,
            control,
        ))
    });
    let sink = Sink {
        queue: backends.queue.clone(),
        state: state.clone(),
        progress: Some(progress.clone()),
        dest_bucket: job.destination.bucket(),
        leased: std::sync::atomic::AtomicU64::new(0),
    };
    let inventory = load_inventory(job).await?;
    let judge = judge(job, &backends.source, &backends.destination, state.clone())?;
    let w = Walk {
        job,
        src: &backends.source,
        dst: &backends.destination,
        judge: &judge,
        inventory: inventory.clone(),
    };
    let walked = match job.list_jobs {
        Some(lj) => list_jobs::queue_list_jobs(&w, &prefixes, &backends.queue, &worker.engine, &run_id, lj)
            .await
            .map(|n| walk::Plan {
                lists: n,
                ..Default::default()
            }),
        None => walk(&w, &prefixes, Some(&sink), &run_id, stop.clone()).await,
    };
    producer_done.store(true, Ordering::SeqCst);
    let plan = match walked {
        Ok(p) => p,
        Err(e) => {
            if let Some(r) = runner {
                r.abort();
            }
            progress.finish();
            return Err(e);
        }
    };
    if job.list_jobs.is_none() {
        // List jobs mark the run listed when the last of them ends.
        state.run_listed(&run_id).await.context("recording the run")?;
        progress.set_listing_done();
    }
    let mut drained = false;
    if let Some(r) = runner {
        r.await.context("the worker tasks stopped unexpectedly")?;
        drained = !*stop.borrow();
    }
    progress.finish();
    let report = Report {
        run: run_id.clone(),
        counters: state.run_get(&run_id).await?.unwrap_or_default().counters,
        planned_bytes: plan.new.1 + plan.changed.1,
        skipped_markers: plan.skipped,
        failures: failures(&**state, &run_id).await?,
        leased: sink.leased.load(Ordering::Relaxed),
        deletes: plan.deletes.0,
        deletes_over_cap: plan.deletes.1,
        interrupted: *stop.borrow(),
        drained,
        server_side: worker.engine.stats.server_side.load(Ordering::Relaxed),
        versions: worker.engine.stats.versions.load(Ordering::Relaxed),
        compared: judge.stats.snapshot(),
        requests: plan.requests,
        lists_queued: plan.lists,
        lists: match job.list_jobs {
            Some(_) => {
                state
                    .run_tally(&ferry_worker::engine::listing::lists_of(&run_id))
                    .await?
            }
            None => Default::default(),
        },
    };
    summary::print_summary(job, opts, &report, started.elapsed());
    Ok(report)
}

/// The inventory report that replaces the source's listing, read and
/// sorted (see [`inventory`]), when the job names one.
async fn load_inventory(job: &Settings) -> anyhow::Result<Option<Arc<inventory::Inventory>>> {
    let Some(url) = &job.source_inventory else {
        return Ok(None);
    };
    let Side::S3 { config, prefix } = &job.source else {
        bail!("--source-inventory: the source must be a bucket");
    };
    let (bucket, _) = inventory::parse_url(url)?;
    let mut cfg = config.clone();
    cfg.bucket = bucket;
    let store = ferry_core::store::RetryingStore::wrap(
        Arc::new(ferry_core::store::S3Store::new(cfg).await),
        job.transfer.retries,
    );
    let inv = inventory::Inventory::load(store, url, &config.bucket, prefix).await?;
    tracing::info!(manifest = %url, keys = inv.keys, "The source's listing comes from its inventory report.");
    Ok(Some(Arc::new(inv)))
}

/// The objects of a run that failed or wait for a restore, with their errors.
async fn failures(state: &dyn StateStore, run: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut failures = Vec::new();
    for status in [Status::Failed, Status::RestoreNeeded] {
        let named = state.run_objects(run, status, 50).await?;
        failures.extend(named.into_iter().map(|r| (r.key.key, r.last_error.unwrap_or_default())));
    }
    let lists = ferry_worker::engine::listing::lists_of(run);
    for r in state.run_objects(&lists, Status::Failed, 50).await? {
        let why = r.last_error.unwrap_or_default();
        failures.push((format!("list job {}", r.key.key), why));
    }
    Ok(failures)
}

/// Whether progress bars make sense (stderr is a terminal).
pub fn is_tty() -> bool {
    std::io::stderr().is_terminal()
}
