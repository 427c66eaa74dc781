//! What a run prints: the plan of a dry run, and the summary at the end.

use crate::compare::Compared;
use crate::cost::{Prices, Requests};
use crate::walk::Plan;
use crate::{FinderOptions, Report};
use ferry_core::config::{QueueLocation, Settings, Side};

/// Prints a line to stdout; a closed stdout (`| head`) is not an error.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

pub(crate) fn print_comparisons(c: &Compared) {
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

/// The estimate of a plan's requests and their cost (see [`crate::cost`]).
pub(crate) fn print_requests(job: &Settings, r: &Requests) {
    out!(
        "  requests:    {} LIST, {} GET, {} HEAD, {} PUT, {} COPY, {} DELETE (estimated from ferry's request pattern)",
        r.list,
        r.get,
        r.head,
        r.put,
        r.copy,
        r.delete
    );
    let prices = match Prices::load(&job.prices) {
        Ok(p) => p,
        Err(e) => {
            out!("  cost:        not estimated: {e:#}");
            return;
        }
    };
    let egress = match (&job.source, &job.destination) {
        (Side::S3 { config: a, .. }, Side::S3 { config: b, .. }) => !a.same_service(b),
        (Side::S3 { .. }, Side::Local { .. }) => true,
        _ => false,
    };
    let fleet = matches!(job.ledger.queue, QueueLocation::Sqs { .. });
    let (requests, out, queue) = prices.cost(r, egress, fleet);
    let c = &prices.currency;
    let mut line = format!("  cost:        {c}{requests:.4} in requests");
    if egress {
        line.push_str(&format!(" + {c}{out:.4} data out of the source's cloud"));
    }
    if fleet {
        line.push_str(&format!(" + {c}{queue:.4} SQS and DynamoDB"));
    }
    out!("{line} ({})", prices.name);
}

pub(crate) fn print_plan(job: &Settings, plan: &Plan) {
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
    print_requests(job, &plan.requests);
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

/// Prints `  LABEL  N TEXT` when `n` is not zero (the summary's optional lines).
fn counted(label: &str, n: u64, text: &str) {
    if n > 0 {
        out!("  {label:<12} {n:>8} {text}");
    }
}

pub(crate) fn print_summary(job: &Settings, opts: &FinderOptions, r: &Report, elapsed: std::time::Duration) {
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
        counted(
            "server-side:",
            r.server_side,
            "of them copied inside the store (no bytes through this machine)",
        );
        counted(
            "versions:",
            r.versions,
            "source versions replayed, delete markers included (--versions all)",
        );
        counted("skipped:", c.skipped, "objects (found already done by a worker)");
        out!("  failed:      {:>8} objects", c.failed);
    }
    counted("source gone:", c.gone, "objects (deleted at the source during the run)");
    counted("deletions:", r.deletes, "destination-only keys queued for deletion");
    if r.deletes_over_cap > 0 {
        out!(
            "  --max-delete reached: {} more destination-only keys were kept; raise the limit after checking them (--dry-run lists them)",
            r.deletes_over_cap
        );
    }
    counted(
        "in progress:",
        r.leased,
        "objects being copied by workers of an earlier run (not queued again)",
    );
    counted(
        "skipped:",
        r.skipped_markers,
        "directory markers (keys ending in '/', not files)",
    );
    if job.list_jobs.is_some() {
        let l = &r.lists;
        match opts.workers {
            0 => out!(
                "  list jobs:   {:>8} queued: workers list and diff the key ranges and queue the copies",
                r.lists_queued
            ),
            _ => out!(
                "  list jobs:   {:>8} key ranges listed ({} split off large ranges, {} given up)",
                l.done,
                (l.done + l.failed).saturating_sub(r.lists_queued),
                l.failed
            ),
        }
    } else {
        print_requests(job, &r.requests);
    }
    print_comparisons(&r.compared);
    for (k, e) in &r.failures {
        out!("  FAILED {k}: {e}");
    }
    if c.enqueued == 0 && c.failed == 0 && (job.list_jobs.is_none() || opts.workers > 0) {
        match r.leased {
            0 => out!("Nothing to transfer: the destination is up to date."),
            n => out!(
                "Nothing new to queue: {n} object(s) are held by jobs of an earlier run (a killed run's are resumed by the next workers and counted under that run; `status` shows it)."
            ),
        }
    }
    if r.interrupted {
        out!(
            "Interrupted: run the same command again to resume (state: {}).",
            job.ledger.path.display()
        );
    } else if opts.workers == 0 {
        match &job.ledger.queue {
            QueueLocation::Embedded(p) => out!(
                "Jobs queued in {}; run ferry-worker --state {} to transfer them.",
                p.display(),
                p.display()
            ),
            QueueLocation::Sqs { url } => out!("Jobs queued in {url}."),
        }
        out!("Follow the run with: ferry-finder status --run '{}' --wait", r.run);
    }
}
