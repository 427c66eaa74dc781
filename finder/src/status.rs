//! `ferry-finder status`: the progress of a run, read from the ledger and the
//! queue's counts.
//!
//! Objects are counted from the ledger's records of the run, each object
//! once by its status ([`StateStore::run_tally`]): redeliveries and crashes
//! between two writes cannot count a job twice. The finder's own counters
//! (found, identical, queued, planned bytes) have one writer and are shown as
//! they are; bytes copied come from the workers' counters.
//!
//! A run is complete when its listing has ended and the queue holds no
//! message waiting or in flight: nothing can still change its records. A
//! record still in progress then is *stranded* (claimed, never ended, nothing
//! left to end it) and counts as failed, like jobs given up (whose messages
//! the workers dead-lettered) and archived sources (`restore_needed`). A
//! complete run with any of those exits 1; their keys and last errors are
//! named. The queue's dead letters are shown as counted: the dead-letter
//! queue is shared by every run and holds poison messages, no run's job, so
//! it does not decide the exit code; each job of the run that was
//! dead-lettered is counted by its record already.

use std::time::Duration;

use anyhow::{bail, Context};
use ferry_cli::backends::LedgerBackends;
use ferry_core::config::{Ledger, StateLocation};
use ferry_core::queue::{JobQueue, QueueStats};
use ferry_core::state::{ObjectRecord, RunRecord, RunTally, StateStore, Status};

/// Prints a line to stdout; a closed stdout (`| head`) is not an error.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// What `status` reports and how it exits.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// The run; default the latest.
    pub run: Option<String>,
    /// Block until the run is complete.
    pub wait: bool,
    /// Poll interval with `wait`.
    pub interval: Duration,
    /// Give up waiting after this long (`None`: wait for ever).
    pub timeout: Option<Duration>,
}

/// How many keys of each kind of failure are named.
const NAMED: usize = 10;
/// In-progress records read to find the stranded ones.
const SCANNED: usize = 10_000;

fn size(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
}

/// One look at a run.
struct View {
    rec: RunRecord,
    tally: RunTally,
    queue: Option<QueueStats>,
    /// In-progress records with no live lease, when the queue is empty.
    stranded: Vec<ObjectRecord>,
    /// The records of the run's key ranges, by status (`--list-jobs`).
    lists: RunTally,
    /// List jobs given up: their key ranges were not listed.
    failed_lists: Vec<ObjectRecord>,
}

impl View {
    async fn read(state: &dyn StateStore, queue: &dyn JobQueue, run: &str, where_: &str) -> anyhow::Result<View> {
        let Some(rec) = state.run_get(run).await? else {
            bail!("run {run:?} is not recorded in {where_}");
        };
        let tally = state.run_tally(run).await?;
        let queue = match queue.stats().await {
            Ok(q) => Some(q),
            Err(e) => {
                tracing::warn!(error = %e, "Could not read the queue's counts.");
                None
            }
        };
        let mut stranded = Vec::new();
        if queue.is_some_and(|q| q.live() == 0) && tally.in_progress > 0 {
            let now = ferry_core::now_millis();
            stranded = state
                .run_objects(run, Status::InProgress, SCANNED)
                .await?
                .into_iter()
                .filter(|r| r.lease_until.is_none_or(|t| t < now))
                .collect();
        }
        let lists_run = ferry_worker::engine::listing::lists_of(run);
        let lists = state.run_tally(&lists_run).await?;
        let mut failed_lists = Vec::new();
        if lists.failed > 0 {
            failed_lists = state.run_objects(&lists_run, Status::Failed, NAMED).await?;
        }
        Ok(View {
            rec,
            tally,
            queue,
            stranded,
            lists,
            failed_lists,
        })
    }

    /// Nothing can still change the run's records.
    fn complete(&self) -> bool {
        self.rec.listed_at.is_some()
            && self.queue.is_some_and(|q| q.live() == 0)
            && self.tally.in_progress == self.stranded.len() as u64
    }

    /// Objects that did not arrive and will not without help.
    fn failed(&self) -> u64 {
        self.tally.failed + self.tally.restore_needed + self.stranded.len() as u64 + self.lists.failed
    }
}

/// Prints the status of a run; returns the exit code: 0 complete without
/// failures (or still running without `--wait`), 1 complete with failures
/// (given up, archived, stranded or dead-lettered jobs), 3 when `--timeout`
/// passed first.
pub async fn status(ledger: &Ledger, backends: &LedgerBackends, opts: &StatusOptions) -> anyhow::Result<u8> {
    let (queue, state) = (&*backends.queue, &*backends.state);
    let where_ = describe(&ledger.state);
    let run = match &opts.run {
        Some(r) => r.clone(),
        None => match state.latest_run().await? {
            Some(r) => r,
            None => bail!("no run is recorded in {where_}; start one with ferry-finder"),
        },
    };
    let started = std::time::Instant::now();
    loop {
        let view = View::read(state, queue, &run, &where_).await?;
        let complete = view.complete();
        if complete || !opts.wait {
            print(&view, queue);
            print_fleet_limit(ledger, backends).await?;
            name_failures(&view, state, &run).await?;
            out!("Status: {}", if complete { "complete" } else { "running" });
            return Ok(if complete && view.failed() > 0 { 1 } else { 0 });
        }
        if opts.timeout.is_some_and(|t| started.elapsed() >= t) {
            print(&view, queue);
            out!("Status: running (gave up waiting)");
            return Ok(3);
        }
        tokio::time::sleep(opts.interval).await;
    }
}

/// The fleet's bandwidth limit, when one is set, and the rate it gives now.
pub async fn print_fleet_limit(ledger: &Ledger, backends: &LedgerBackends) -> anyhow::Result<()> {
    let name = ledger.queue.name();
    let text = backends
        .bandwidth
        .fleet_limit(&name)
        .await
        .with_context(|| format!("reading the fleet's bandwidth limit from {}", describe(&ledger.state)))?;
    match text.as_deref().map(str::parse::<ferry_core::bandwidth::Timetable>) {
        Some(Ok(t)) => {
            let now = t.rate_now();
            out!(
                "  bandwidth limit (every worker together): {t}; now {}",
                ferry_core::bandwidth::format_rate(now)
            );
        }
        Some(Err(e)) => out!("  bandwidth limit (every worker together): unreadable ({e}); not applied"),
        None => out!("  bandwidth limit (every worker together): none"),
    }
    Ok(())
}

/// Names the keys that did not arrive, with their last errors.
async fn name_failures(view: &View, state: &dyn StateStore, run: &str) -> anyhow::Result<()> {
    if view.tally.failed > 0 {
        out!("Given up (send them again with `ferry-finder redrive` once the cause is fixed):");
        for r in state.run_objects(run, Status::Failed, NAMED).await? {
            out!("  {}: {}", r.key.key, r.last_error.unwrap_or_default());
        }
    }
    if view.tally.restore_needed > 0 {
        out!("Archived at the source (restore them, then run again):");
        for r in state.run_objects(run, Status::RestoreNeeded, NAMED).await? {
            out!("  {}", r.key.key);
        }
    }
    if !view.failed_lists.is_empty() {
        out!("List jobs given up (their key ranges were not listed; run the finder again):");
        for r in &view.failed_lists {
            out!(
                "  {}: {}",
                r.key.key,
                r.last_error.as_deref().unwrap_or("no error recorded")
            );
        }
    }
    if !view.stranded.is_empty() {
        out!("Stranded (claimed, never ended, no message left to end them; run the finder again):");
        for r in view.stranded.iter().take(NAMED) {
            out!(
                "  {}: {}",
                r.key.key,
                r.last_error.as_deref().unwrap_or("no error recorded")
            );
        }
    }
    Ok(())
}

fn describe(state: &StateLocation) -> String {
    match state {
        StateLocation::Embedded(p) => p.display().to_string(),
        StateLocation::Dynamo { table } => format!("dynamodb://{table}"),
    }
}

fn print(view: &View, queue: &dyn JobQueue) {
    let (rec, t) = (&view.rec, &view.tally);
    let c = &rec.counters;
    let now = ferry_core::now_millis();
    let secs = ((now - rec.started_at).max(1) as f64) / 1000.0;
    out!(
        "Run {} (started {} ago{})",
        rec.id,
        humantime::format_duration(Duration::from_secs(secs as u64)),
        if rec.listed_at.is_some() {
            "; listing finished"
        } else {
            "; listing"
        }
    );
    let ended = t.done + t.failed + t.source_gone + t.deleted + t.restore_needed;
    let l = &view.lists;
    if l.done + l.in_progress + l.failed > 0 {
        out!(
            "  listing:        {:>10} of {} key ranges listed by workers ({} given up)",
            l.done,
            l.done + l.in_progress + l.failed,
            l.failed
        );
    }
    out!("  found:          {:>10} objects", c.found);
    out!(
        "  identical:      {:>10} objects (already at the destination)",
        c.identical
    );
    out!(
        "  queued:         {:>10} objects, {}",
        c.enqueued,
        size(c.planned_bytes)
    );
    out!(
        "  in flight:      {:>10} objects (queued or running)",
        c.enqueued
            .saturating_sub(ended)
            .max(t.in_progress - view.stranded.len() as u64)
    );
    out!(
        "  done:           {:>10} objects, {} ({}/s)",
        t.done + t.deleted,
        size(c.bytes),
        size((c.bytes as f64 / secs) as u64)
    );
    out!("  source gone:    {:>10} objects", t.source_gone);
    out!("  failed:         {:>10} objects (given up)", t.failed);
    if t.restore_needed > 0 {
        out!(
            "  restore needed: {:>10} objects (archived at the source)",
            t.restore_needed
        );
    }
    if !view.stranded.is_empty() {
        out!(
            "  stranded:       {:>10} objects (counted as failed)",
            view.stranded.len()
        );
    }
    if let Some(q) = view.queue {
        out!(
            "  queue:          {} ready, {} in flight, {} dead ({})",
            q.ready,
            q.in_flight,
            q.dead,
            queue.describe()
        );
    }
    if !view.complete() && c.bytes > 0 {
        let left = c.planned_bytes.saturating_sub(c.bytes);
        let eta = left as f64 / (c.bytes as f64 / secs);
        out!(
            "  ETA:            {}",
            humantime::format_duration(Duration::from_secs(eta as u64))
        );
    }
}
