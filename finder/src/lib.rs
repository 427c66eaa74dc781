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
pub mod progress;
pub mod status;
pub mod verify;

/// Prints a line to stdout; a closed stdout (`| head`) is not an error.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use ferry_core::config::{Job as JobSettings, Side};
use ferry_core::diff::{self, Decision, Entry};
use ferry_core::filter::KeyFilter;
use ferry_core::job::{Job, SrcRef};
use ferry_core::location::Location;
use ferry_core::queue::{JobQueue, JobQueueExt};
use ferry_core::state::{RecordKey, RunCounters, StateStore, Status};
use ferry_core::store::ObjectStore;
use futures::StreamExt;
use tokio::sync::watch;

use crate::compare::{Compared, Judge, Pair};
use crate::progress::Progress;

/// How the finder runs.
#[derive(Debug, Clone)]
pub struct FinderOptions {
    /// Print the plan; queue and copy nothing.
    pub dry_run: bool,
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
    /// How the pairs the listings could not decide were decided.
    pub compared: Compared,
}

#[derive(Debug, Default)]
struct Plan {
    new: (u64, u64, Vec<String>),
    changed: (u64, u64, Vec<String>),
    identical: u64,
    extra: (u64, Vec<String>),
    /// Deletions queued (with delete sync) and those left out by `max_delete`.
    deletes: (u64, u64),
    skipped: u64,
}

fn remember(v: &mut Vec<String>, k: &str) {
    if v.len() < 10 {
        v.push(k.to_string());
    }
}

/// The source prefixes to walk, relative to the source URL's prefix: the prefix
/// list's lines (sorted, those covered by another removed) or the empty prefix.
pub fn prefixes(job: &JobSettings) -> anyhow::Result<Vec<String>> {
    let Some(path) = &job.raw.prefix_list else {
        return Ok(vec![String::new()]);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--prefix-list {}: cannot read the file", path.display()))?;
    let mut list: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if list.is_empty() {
        bail!("--prefix-list {}: the file lists no prefix", path.display());
    }
    list.sort();
    let mut out: Vec<String> = Vec::new();
    for p in list {
        if !out.last().is_some_and(|last| p.starts_with(last.as_str())) {
            out.push(p);
        }
    }
    Ok(out)
}

async fn check_source(side: &Side) -> anyhow::Result<()> {
    if let Location::Local { dir } = &side.location {
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

/// Runs the finder (and in-process workers). `stop` set to true interrupts.
pub async fn run(job: &JobSettings, opts: &FinderOptions, stop: watch::Receiver<bool>) -> anyhow::Result<Report> {
    check_source(&job.source).await?;
    let filter = KeyFilter::new(&job.raw.include, &job.raw.exclude).map_err(anyhow::Error::msg)?;
    let prefixes = prefixes(job)?;
    let src = job.source.open().await;
    let dst = job.destination.open().await;
    let run_id = new_run_id();
    if opts.dry_run {
        let (_, state) = ferry_worker::cli::open_backends(&job.state, &job.queue, &job.raw.transfer)
            .await
            .context("opening the job's state")?;
        let judge = judge(job, &src, &dst, state)?;
        let plan = walk(job, &src, &dst, &prefixes, &filter, &judge, None, &run_id, stop).await?;
        print_plan(&plan);
        print_comparisons(&judge.stats.snapshot());
        return Ok(Report {
            run: run_id,
            counters: RunCounters {
                found: plan.new.0 + plan.changed.0 + plan.identical,
                identical: plan.identical,
                ..Default::default()
            },
            planned_bytes: plan.new.1 + plan.changed.1,
            ..Default::default()
        });
    }
    let rt = ferry_worker::cli::open(job)
        .await
        .context("opening the job's queue and state")?;
    rt.state.run_start(&run_id).await.context("recording the run")?;
    let started = Instant::now();
    let producer_done = Arc::new(AtomicBool::new(false));
    let progress = Progress::start(opts.progress, rt.engine.stats.clone());
    let runner = (opts.workers > 0).then(|| {
        let mut cfg = rt.runner.clone();
        cfg.workers = opts.workers;
        // Ctrl-C at a terminal stops at once; parts are recorded and resume.
        cfg.grace = std::time::Duration::ZERO;
        let control = ferry_worker::runner::Control {
            stop: stop.clone(),
            producer_done: Some(producer_done.clone()),
        };
        tokio::spawn(ferry_worker::runner::run(
            rt.engine.clone(),
            rt.queue.clone(),
            cfg,
            control,
        ))
    });
    let sink = Sink {
        queue: rt.queue.clone(),
        state: rt.state.clone(),
        progress: progress.clone(),
        dest_bucket: job.destination.bucket(),
        leased: std::sync::atomic::AtomicU64::new(0),
    };
    let judge = judge(job, &src, &dst, rt.state.clone())?;
    let walked = walk(
        job,
        &src,
        &dst,
        &prefixes,
        &filter,
        &judge,
        Some(&sink),
        &run_id,
        stop.clone(),
    )
    .await;
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
    rt.state.run_listed(&run_id).await.context("recording the run")?;
    progress.set_listing_done();
    let mut drained = false;
    if let Some(r) = runner {
        r.await.context("the worker tasks stopped unexpectedly")?;
        drained = !*stop.borrow();
    }
    progress.finish();
    let counters = rt.state.run_get(&run_id).await?.unwrap_or_default().counters;
    let mut failures = Vec::new();
    for status in [Status::Failed, Status::RestoreNeeded] {
        let named = rt.state.run_objects(&run_id, status, 50).await?;
        failures.extend(named.into_iter().map(|r| (r.key.key, r.last_error.unwrap_or_default())));
    }
    let report = Report {
        run: run_id,
        counters,
        planned_bytes: plan.new.1 + plan.changed.1,
        skipped_markers: plan.skipped,
        failures,
        leased: sink.leased.load(Ordering::Relaxed),
        deletes: plan.deletes.0,
        deletes_over_cap: plan.deletes.1,
        interrupted: *stop.borrow(),
        drained,
        compared: judge.stats.snapshot(),
    };
    print_summary(job, opts, &report, started.elapsed());
    Ok(report)
}

struct Sink {
    queue: Arc<dyn JobQueue>,
    state: Arc<dyn StateStore>,
    progress: Progress,
    dest_bucket: String,
    leased: std::sync::atomic::AtomicU64,
}

impl Sink {
    /// Queues a batch, leaving out objects a worker is copying now (live
    /// lease on the same source ETag), and adds the counters.
    async fn flush(&self, run: &str, batch: &mut Vec<Job>, delta: &mut RunCounters) -> anyhow::Result<()> {
        if !batch.is_empty() {
            let keys: Vec<RecordKey> = batch
                .iter()
                .map(|j| RecordKey {
                    bucket: self.dest_bucket.clone(),
                    key: j.dest.key.clone(),
                })
                .collect();
            let records = self.state.get_many(&keys).await?;
            let now = ferry_core::now_millis();
            let mut bodies = Vec::with_capacity(batch.len());
            for (job, rec) in batch.drain(..).zip(records) {
                let busy = rec.is_some_and(|r| {
                    r.worker.is_some()
                        && r.lease_until.is_some_and(|u| u > now)
                        && r.lease_etag.is_some()
                        && r.lease_etag == job.src.etag
                });
                if busy {
                    self.leased.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                delta.enqueued += 1;
                delta.planned_bytes += job.src.size;
                bodies.push(job.to_body());
            }
            self.queue.send_all(bodies, 5).await.map_err(anyhow::Error::msg)?;
        }
        self.state.run_add(run, *delta).await?;
        self.progress
            .add_planned(delta.enqueued, delta.planned_bytes, delta.identical);
        *delta = RunCounters::default();
        Ok(())
    }
}

/// The plan being built as the walk goes: counts, and the batch of jobs not yet queued.
struct Planner<'a> {
    sink: Option<&'a Sink>,
    run: &'a str,
    dp: String,
    local_dest: bool,
    delete: bool,
    max_delete: Option<u64>,
    plan: Plan,
    batch: Vec<Job>,
    delta: RunCounters,
}

impl Planner<'_> {
    fn identical(&mut self) {
        self.plan.identical += 1;
        self.delta.found += 1;
        self.delta.identical += 1;
    }

    /// Queues the batch when it is full (a dry run only counts).
    async fn push(&mut self, job: Job) -> anyhow::Result<()> {
        self.batch.push(job);
        if self.batch.len() >= 500 {
            match self.sink {
                Some(sink) => sink.flush(self.run, &mut self.batch, &mut self.delta).await?,
                None => self.batch.clear(),
            }
        }
        Ok(())
    }

    async fn copy(&mut self, entry: Entry, changed: bool) -> anyhow::Result<()> {
        if self.local_dest && entry.rel.ends_with('/') && entry.meta.size == 0 {
            self.plan.skipped += 1;
            return Ok(());
        }
        let slot = if changed {
            &mut self.plan.changed
        } else {
            &mut self.plan.new
        };
        slot.0 += 1;
        slot.1 += entry.meta.size;
        remember(&mut slot.2, &entry.rel);
        self.delta.found += 1;
        let dest_key = format!("{}{}", self.dp, entry.rel);
        let src_ref = SrcRef {
            key: entry.meta.key,
            size: entry.meta.size,
            etag: entry.meta.etag,
            version: None,
        };
        self.push(Job::copy(self.run, src_ref, dest_key)).await
    }

    async fn extra(&mut self, e: Entry) -> anyhow::Result<()> {
        self.plan.extra.0 += 1;
        remember(&mut self.plan.extra.1, &e.rel);
        if !self.delete {
            return Ok(());
        }
        if self.max_delete.is_some_and(|max| self.plan.deletes.0 >= max) {
            self.plan.deletes.1 += 1;
            return Ok(());
        }
        self.plan.deletes.0 += 1;
        let job = Job::delete(self.run, format!("{}{}", self.dp, e.rel));
        self.push(job).await
    }

    /// Decides the pairs the listings could not, and plans them.
    async fn settle(&mut self, judge: &Judge, pending: &mut Vec<Pair>) -> anyhow::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        for (pair, same) in judge.settle(std::mem::take(pending)).await? {
            if same {
                self.identical();
            } else {
                self.copy(pair.src, true).await?;
            }
        }
        Ok(())
    }
}

/// Pairs settled together (one ledger read, HEADs and hashes in parallel).
const SETTLE_BATCH: usize = 256;

#[allow(clippy::too_many_arguments)]
async fn walk(
    job: &JobSettings,
    src: &Arc<dyn ObjectStore>,
    dst: &Arc<dyn ObjectStore>,
    prefixes: &[String],
    filter: &KeyFilter,
    judge: &Judge,
    sink: Option<&Sink>,
    run: &str,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Plan> {
    let (sp, dp) = (job.source.prefix().to_string(), job.destination.prefix().to_string());
    let mode = job.compare_mode();
    let mut planner = Planner {
        sink,
        run,
        dp: dp.clone(),
        local_dest: matches!(job.destination.location, Location::Local { .. }),
        delete: job.raw.delete,
        max_delete: job.raw.max_delete,
        plan: Plan::default(),
        batch: Vec::new(),
        delta: RunCounters::default(),
    };
    let mut pending: Vec<Pair> = Vec::new();
    for p in prefixes {
        let listed = src.list(&format!("{sp}{p}"), None).inspect(|r| {
            if r.is_ok() {
                ferry_core::telemetry::SourceListed { objects: 1 }.emit();
            }
        });
        let s = diff::relative(Box::pin(listed), sp.clone());
        let d = diff::relative(dst.list(&format!("{dp}{p}"), None), dp.clone());
        let mut decisions = Box::pin(diff::diff(s, d, mode));
        loop {
            let next = tokio::select! {
                n = decisions.next() => n,
                _ = stop.changed() => bail!("interrupted"),
            };
            let Some(decision) = next else { break };
            let decision = decision.map_err(|e| anyhow::anyhow!("listing failed: {e}"))?;
            let rel = match &decision {
                Decision::New(e) | Decision::Extra(e) => &e.rel,
                Decision::Changed { src, .. } | Decision::Identical { src, .. } | Decision::Unsure { src, .. } => {
                    &src.rel
                }
            };
            if !filter.matches(rel) {
                continue;
            }
            match decision {
                Decision::New(e) => planner.copy(e, false).await?,
                Decision::Changed { src, .. } => planner.copy(src, true).await?,
                Decision::Identical { .. } => planner.identical(),
                Decision::Extra(e) => planner.extra(e).await?,
                Decision::Unsure { src, dst, evidence } => {
                    pending.push(Pair::new(src, dst, evidence));
                    if pending.len() >= SETTLE_BATCH {
                        planner.settle(judge, &mut pending).await?;
                    }
                }
            }
        }
    }
    planner.settle(judge, &mut pending).await?;
    if let Some(sink) = sink {
        sink.flush(run, &mut planner.batch, &mut planner.delta).await?;
    }
    Ok(planner.plan)
}

/// The judge of a run: the ledger, and the checksum cache in the state file
/// when a side is a local directory.
fn judge(
    job: &JobSettings,
    src: &Arc<dyn ObjectStore>,
    dst: &Arc<dyn ObjectStore>,
    state: Arc<dyn StateStore>,
) -> anyhow::Result<Judge> {
    let hashes = if job.has_local_side() {
        let db = ferry_core::db::Db::open(&job.file_hashes_path()).context("opening the checksum cache")?;
        Some(ferry_core::file_hashes::FileHashes::new(db))
    } else {
        None
    };
    Ok(Judge::new(
        src.clone(),
        dst.clone(),
        Some(state),
        hashes,
        job.destination.bucket(),
        job.raw.transfer.part_size.as_u64(),
    ))
}

fn print_comparisons(c: &Compared) {
    if c.by_ledger + c.by_mtime + c.by_content + c.undecided == 0 {
        return;
    }
    let b = |n: u64| bytesize::ByteSize(n).display().iec().to_string();
    out!(
        "  compared:    {} by the ledger, {} by modification time, {} by content, {} without evidence (copied)",
        c.by_ledger,
        c.by_mtime,
        c.by_content,
        c.undecided
    );
    out!(
        "               {} files hashed ({}), {} checksums from the state file, {} HEAD requests",
        c.hashed,
        b(c.hashed_bytes),
        c.cached,
        c.heads
    );
}

fn print_plan(plan: &Plan) {
    let b = |n: u64| bytesize::ByteSize(n).display().iec().to_string();
    out!("Plan (dry run, nothing copied):");
    out!("  new:       {:>8} objects, {}", plan.new.0, b(plan.new.1));
    out!("  changed:   {:>8} objects, {}", plan.changed.0, b(plan.changed.1));
    out!("  identical: {:>8} objects", plan.identical);
    if plan.deletes.0 + plan.deletes.1 > 0 {
        out!("  only at destination (would delete): {}", plan.deletes.0);
        if plan.deletes.1 > 0 {
            out!(
                "  --max-delete reached: {} more destination-only keys would be kept",
                plan.deletes.1
            );
        }
    } else {
        out!("  only at destination (kept; --delete removes them): {}", plan.extra.0);
    }
    for (label, keys) in [
        ("new", &plan.new.2),
        ("changed", &plan.changed.2),
        ("only at destination", &plan.extra.1),
    ] {
        if !keys.is_empty() {
            out!("  first {label}:");
            for k in keys {
                out!("    {k}");
            }
        }
    }
}

fn print_summary(job: &JobSettings, opts: &FinderOptions, r: &Report, elapsed: std::time::Duration) {
    let b = |n: u64| bytesize::ByteSize(n).display().iec().to_string();
    let c = &r.counters;
    let secs = elapsed.as_secs_f64().max(0.001);
    out!("Run {} finished in {:.1}s", r.run, secs);
    out!("  found:       {:>8} objects", c.found);
    out!("  identical:   {:>8} objects", c.identical);
    out!("  queued:      {:>8} objects, {}", c.enqueued, b(r.planned_bytes));
    if opts.workers > 0 {
        out!(
            "  transferred: {:>8} objects, {} ({}/s)",
            c.done,
            b(c.bytes),
            b((c.bytes as f64 / secs) as u64)
        );
        if c.skipped > 0 {
            out!(
                "  skipped:     {:>8} objects (found already done by a worker)",
                c.skipped
            );
        }
        out!("  failed:      {:>8} objects", c.failed);
    }
    if c.gone > 0 {
        out!(
            "  source gone: {:>8} objects (deleted at the source during the run)",
            c.gone
        );
    }
    if r.deletes > 0 {
        out!(
            "  deletions:   {:>8} destination-only keys queued for deletion",
            r.deletes
        );
    }
    if r.deletes_over_cap > 0 {
        out!(
            "  --max-delete reached: {} more destination-only keys were kept; raise the limit after checking them (--dry-run lists them)",
            r.deletes_over_cap
        );
    }
    if r.leased > 0 {
        out!(
            "  in progress: {:>8} objects being copied by workers of an earlier run (not queued again)",
            r.leased
        );
    }
    if r.skipped_markers > 0 {
        out!(
            "  skipped:     {:>8} directory markers (keys ending in '/', not files)",
            r.skipped_markers
        );
    }
    print_comparisons(&r.compared);
    for (k, e) in &r.failures {
        out!("  FAILED {k}: {e}");
    }
    if c.enqueued == 0 && c.failed == 0 {
        out!("Nothing to transfer: the destination is up to date.");
    }
    if r.interrupted {
        out!(
            "Interrupted: run the same command again to resume (state: {}).",
            job.state_path.display()
        );
    } else if opts.workers == 0 {
        match &job.queue {
            ferry_core::config::QueueLocation::Embedded(p) => out!(
                "Jobs queued in {}; run ferry-worker --state {} to transfer them.",
                p.display(),
                p.display()
            ),
            ferry_core::config::QueueLocation::Sqs { url } => out!("Jobs queued in {url}."),
        }
        out!("Follow the run with: ferry-finder status --run '{}' --wait", r.run);
    }
}

/// Whether progress bars make sense (stderr is a terminal).
pub fn is_tty() -> bool {
    std::io::stderr().is_terminal()
}
