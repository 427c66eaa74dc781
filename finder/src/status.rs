//! `ferry-finder status`: the progress of a run, read from the ledger (the
//! state store's run record and object records) and the queue's counts.
//!
//! A run is complete when its listing has ended, as many jobs ended (done,
//! skipped as already done, source gone, failed) as were enqueued, no object
//! record of the run is still in progress, and the queue holds no message
//! waiting or in flight. The last two guard against counters that count a
//! redelivered job twice (see [`settled`]).
//! Rate and ETA come from the bytes done since the run started.

use std::time::Duration;

use anyhow::{bail, Context};
use ferry_core::config::{JobConfig, StateLocation};
use ferry_core::state::{RunRecord, Status};

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

fn size(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
}

/// Prints the status of a run; returns the exit code: 0 complete without
/// failures (or still running without `--wait`), 1 complete with failures,
/// 3 when `--timeout` passed first.
pub async fn status(cfg: &JobConfig, opts: &StatusOptions) -> anyhow::Result<u8> {
    let (state_loc, queue_loc, _) = cfg.ledger().context("invalid job settings")?;
    let (queue, state, _) = ferry_worker::cli::open_backends(&state_loc, &queue_loc, &cfg.transfer)
        .await
        .context("opening the job's queue and state")?;
    let where_ = describe(&state_loc);
    let run = match &opts.run {
        Some(r) => r.clone(),
        None => match state.latest_run().await? {
            Some(r) => r,
            None => bail!("no run is recorded in {where_}; start one with ferry-finder"),
        },
    };
    let started = std::time::Instant::now();
    loop {
        let Some(rec) = state.run_get(&run).await? else {
            bail!("run {run:?} is not recorded in {where_}");
        };
        let complete = rec.complete() && settled(&*state, &*queue, &run).await?;
        if complete || !opts.wait {
            print(&rec);
            if let Ok(q) = queue.stats().await {
                out!(
                    "  queue:       {} ready, {} in flight, {} dead ({})",
                    q.ready,
                    q.in_flight,
                    q.dead,
                    queue.describe()
                );
            }
            if rec.counters.failed > 0 {
                out!("Top errors:");
                for r in state.run_objects(&run, Status::Failed, 10).await? {
                    out!("  {}: {}", r.key.key, r.last_error.unwrap_or_default());
                }
            }
            out!("Status: {}", if complete { "complete" } else { "running" });
            return Ok(if complete && rec.counters.failed > 0 { 1 } else { 0 });
        }
        if opts.timeout.is_some_and(|t| started.elapsed() >= t) {
            print(&rec);
            out!("Status: running (gave up waiting)");
            return Ok(3);
        }
        tokio::time::sleep(opts.interval).await;
    }
}

/// Whether nothing of the run can still be under way: no record of the run
/// in progress and no message waiting or in flight. The counters alone can
/// over-count: a worker killed between writing a batch's counters and
/// acknowledging its messages has those jobs delivered, and counted, again.
async fn settled(
    state: &dyn ferry_core::state::StateStore,
    queue: &dyn ferry_core::queue::JobQueue,
    run: &str,
) -> anyhow::Result<bool> {
    if !state.run_objects(run, Status::InProgress, 1).await?.is_empty() {
        return Ok(false);
    }
    Ok(match queue.stats().await {
        Ok(q) => q.ready == 0 && q.in_flight == 0,
        // A queue whose counts cannot be read does not hold the answer back.
        Err(_) => true,
    })
}

fn describe(state: &StateLocation) -> String {
    match state {
        StateLocation::Embedded(p) => p.display().to_string(),
        StateLocation::Dynamo { table } => format!("dynamodb://{table}"),
    }
}

fn print(rec: &RunRecord) {
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
    let pending = c.enqueued.saturating_sub(c.ended());
    out!("  found:       {:>10} objects", c.found);
    out!(
        "  identical:   {:>10} objects (already at the destination)",
        c.identical + c.skipped
    );
    out!("  queued:      {:>10} objects, {}", c.enqueued, size(c.planned_bytes));
    out!("  in flight:   {:>10} objects (queued or running)", pending);
    out!(
        "  done:        {:>10} objects, {} ({}/s)",
        c.done,
        size(c.bytes),
        size((c.bytes as f64 / secs) as u64)
    );
    out!("  source gone: {:>10} objects", c.gone);
    out!("  failed:      {:>10} objects", c.failed);
    if !rec.complete() && c.bytes > 0 {
        let left = c.planned_bytes.saturating_sub(c.bytes);
        let eta = left as f64 / (c.bytes as f64 / secs);
        out!(
            "  ETA:         {}",
            humantime::format_duration(Duration::from_secs(eta as u64))
        );
    }
}
