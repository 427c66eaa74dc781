//! The walk: both listings in key order, diffed in lock step
//! ([`ferry_core::diff`]), prefix by prefix, into a plan. A bucket without a
//! prefix list is split into key ranges ([`ferry_core::ranges`]) listed and
//! diffed at once, each in lock step on both sides; the pairs the
//! listings cannot decide go to the judge in batches ([`crate::compare`]),
//! and the jobs to the queue in batches of 500 ([`Sink`]), leaving out
//! objects a worker is copying now.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context};
use ferry_core::config::Settings;
use ferry_core::diff::{self, Decision, Entry};
use ferry_core::job::{Job, SrcRef};
use ferry_core::queue::{JobQueue, JobQueueExt};
use ferry_core::ranges::{self, KeyRange};
use ferry_core::state::{RecordKey, RunCounters, StateStore};
use ferry_core::store::{ObjectMeta, ObjectStore, StoreError};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::watch;

use crate::compare::{Judge, Pair};
use crate::cost::{Model, Requests};
use crate::progress::Progress;
use crate::Interrupted;

/// What a walk found: counts, bytes and the first keys of each kind.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) new: (u64, u64, Vec<String>),
    pub(crate) changed: (u64, u64, Vec<String>),
    pub(crate) identical: u64,
    pub(crate) extra: (u64, Vec<String>),
    /// Deletions queued (with delete sync) and those left out by `max_delete`.
    pub(crate) deletes: (u64, u64),
    pub(crate) skipped: u64,
    /// The requests the plan makes (see [`crate::cost`]).
    pub(crate) requests: Requests,
    /// List jobs queued instead of walking (`--list-jobs`).
    pub(crate) lists: u64,
}

fn remember(v: &mut Vec<String>, k: &str) {
    if v.len() < 10 {
        v.push(k.to_string());
    }
}

/// The source prefixes to walk, relative to the source URL's prefix: the prefix
/// list's lines (sorted, those covered by another removed) or the empty prefix.
pub fn prefixes(job: &Settings) -> anyhow::Result<Vec<String>> {
    let Some(path) = &job.prefix_list else {
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

/// Where a walk's jobs go: the queue, after the ledger says no worker holds them.
pub(crate) struct Sink {
    pub(crate) queue: Arc<dyn JobQueue>,
    pub(crate) state: Arc<dyn StateStore>,
    /// The progress display, in the finder (a list job has none).
    pub(crate) progress: Option<Progress>,
    pub(crate) dest_bucket: String,
    pub(crate) leased: std::sync::atomic::AtomicU64,
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
        if let Some(p) = &self.progress {
            p.add_planned(delta.enqueued, delta.planned_bytes, delta.identical);
        }
        *delta = RunCounters::default();
        Ok(())
    }
}

/// The plan being built as the walk goes: counts, and the batch of jobs not yet queued.
pub(crate) struct Planner<'a> {
    sink: Option<&'a Sink>,
    model: Model,
    run: &'a str,
    dp: String,
    local_dest: bool,
    delete: bool,
    max_delete: Option<u64>,
    pub(crate) plan: Plan,
    batch: Vec<Job>,
    delta: RunCounters,
}

impl<'a> Planner<'a> {
    pub(crate) fn new(job: &Settings, sink: Option<&'a Sink>, run: &'a str) -> Self {
        Planner {
            sink,
            model: Model {
                threshold: job.transfer.multipart_threshold.as_u64(),
                part_size: job.transfer.part_size.as_u64(),
                server_side: job.server_side.is_some(),
                local_src: job.source.is_local(),
                local_dst: job.destination.is_local(),
                tags_copy: job.tags == ferry_core::config::TagMode::Copy,
            },
            run,
            dp: job.destination.prefix().to_string(),
            local_dest: job.destination.is_local(),
            delete: job.delete,
            max_delete: job.max_delete,
            plan: Plan::default(),
            batch: Vec::new(),
            delta: RunCounters::default(),
        }
    }

    /// Queues what is left in the batch.
    pub(crate) async fn finish(mut self) -> anyhow::Result<Plan> {
        if let Some(sink) = self.sink {
            sink.flush(self.run, &mut self.batch, &mut self.delta).await?;
        }
        Ok(self.plan)
    }

    /// Plans a replay of a key's history (`--versions all`): `replayed` says
    /// whether the key was replayed before (changed) or never (new).
    pub(crate) async fn replay(&mut self, job: Job, rel: &str, replayed: bool) -> anyhow::Result<()> {
        let slot = match replayed {
            true => &mut self.plan.changed,
            false => &mut self.plan.new,
        };
        slot.0 += 1;
        slot.1 += job.src.size;
        remember(&mut slot.2, rel);
        self.delta.found += 1;
        self.push(job).await
    }

    /// The run the plan queues jobs for.
    pub(crate) fn run(&self) -> &'a str {
        self.run
    }

    /// The destination key of a relative key.
    pub(crate) fn dest_key(&self, rel: &str) -> String {
        format!("{}{}", self.dp, rel)
    }

    pub(crate) fn identical(&mut self) {
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
        let in_parts = entry.meta.etag.as_deref().is_some_and(|t| {
            matches!(
                ferry_core::etag::ETag(t).kind(),
                ferry_core::etag::ETagKind::Multipart(_)
            )
        });
        self.plan.requests.copy(&self.model, entry.meta.size, in_parts);
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
        self.plan.requests.delete += 1;
        let job = Job::delete(self.run, format!("{}{}", self.dp, e.rel));
        self.push(job).await
    }

    /// Plans one decision of the listings, when the filter selects it;
    /// pairs the listings cannot decide wait in `pending` for the judge.
    pub(crate) async fn decide(
        &mut self,
        decision: Decision,
        filter: &ferry_core::filter::KeyFilter,
        judge: &Judge,
        pending: &mut Vec<Pair>,
    ) -> anyhow::Result<()> {
        let selected = match &decision {
            Decision::Extra(e) => filter.matches(&e.rel),
            Decision::New(src)
            | Decision::Changed { src, .. }
            | Decision::Identical { src, .. }
            | Decision::Unsure { src, .. } => filter.selects(&src.rel, &src.meta),
        };
        if !selected {
            return Ok(());
        }
        match decision {
            Decision::New(e) => self.copy(e, false).await?,
            Decision::Changed { src, .. } => self.copy(src, true).await?,
            Decision::Identical { .. } => self.identical(),
            Decision::Extra(e) => self.extra(e).await?,
            Decision::Unsure { src, dst, evidence } => {
                pending.push(Pair::new(src, dst, evidence));
                if pending.len() >= SETTLE_BATCH {
                    self.settle(judge, pending).await?;
                }
            }
        }
        Ok(())
    }

    /// Decides the pairs the listings could not, and plans them.
    pub(crate) async fn settle(&mut self, judge: &Judge, pending: &mut Vec<Pair>) -> anyhow::Result<()> {
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

/// The decisions of one prefix, its ranges ([`ferry_core::ranges`]) listed
/// and diffed at once: each range in lock step on both sides, the ranges'
/// decisions interleaved as they come.
async fn ranged_decisions(w: &Walk<'_>, p: &str) -> anyhow::Result<(Decisions, (u64, u64))> {
    let (sp, dp) = (
        w.job.source.prefix().to_string(),
        w.job.destination.prefix().to_string(),
    );
    let (src_prefix, dst_prefix) = (format!("{sp}{p}"), format!("{dp}{p}"));
    if let Some(inv) = &w.inventory {
        let under = src_prefix.clone();
        let s = inv
            .list(None)
            .filter(move |o| std::future::ready(o.as_ref().map_or(true, |o| o.key.starts_with(&under))))
            .boxed();
        let s = diff::relative(s, sp.clone());
        let d = diff::relative(w.dst.list(&dst_prefix, None), dp.clone());
        let one = diff::diff(s, d, w.job.compare_mode()).boxed();
        return Ok((futures::stream::select_all([one]), (1, 0)));
    }
    // A prefix list partitions the keys already; a directory lists fast.
    let one_prefix = p.is_empty();
    let (ranges, requests) = match w.job.list_ranges {
        n if n > 1 && one_prefix && w.src.local_path("").is_none() => ranges::split(w.src, &src_prefix, n)
            .await
            .map_err(|e| anyhow::anyhow!("sampling the source's listing failed: {e}"))?,
        _ => (vec![KeyRange::default()], 0),
    };
    let found = (ranges.len() as u64, requests);
    if ranges.len() > 1 {
        tracing::info!(prefix = %src_prefix, ranges = ranges.len(), "Listing the source in ranges at once.");
    }
    let streams = ranges
        .into_iter()
        .map(|r| range_decisions(w, &src_prefix, &dst_prefix, r));
    Ok((futures::stream::select_all(streams), found))
}

/// The decisions of one key range of the source (absolute keys under
/// `src_prefix`) and the same range of the destination under `dst_prefix`,
/// in lock step, in key order.
pub(crate) fn range_decisions(
    w: &Walk<'_>,
    src_prefix: &str,
    dst_prefix: &str,
    r: KeyRange,
) -> BoxStream<'static, Result<Decision, StoreError>> {
    let (sp, dp) = (w.job.source.prefix(), w.job.destination.prefix());
    let d = r.moved(sp, dp);
    let listed = within(w.src.list(src_prefix, r.after.as_deref()), r).inspect(|r| {
        if r.is_ok() {
            ferry_core::telemetry::SourceListed { objects: 1 }.emit();
        }
    });
    let s = diff::relative(listed.boxed(), sp.to_string());
    let d = diff::relative(within(w.dst.list(dst_prefix, d.after.as_deref()), d), dp.to_string());
    diff::diff(s, d, w.job.compare_mode()).boxed()
}

/// The decisions of a prefix's ranges, as they come.
type Decisions = futures::stream::SelectAll<BoxStream<'static, Result<Decision, StoreError>>>;

/// A listing cut at the end of its range.
fn within(
    list: BoxStream<'static, Result<ObjectMeta, StoreError>>,
    r: KeyRange,
) -> BoxStream<'static, Result<ObjectMeta, StoreError>> {
    list.take_while(move |o| std::future::ready(o.as_ref().map_or(true, |o| r.holds_up_to(&o.key))))
        .boxed()
}

/// Pairs settled together (one ledger read, HEADs and hashes in parallel).
const SETTLE_BATCH: usize = 256;

/// A walk's inputs: the settings, both stores and the judge.
pub(crate) struct Walk<'a> {
    pub(crate) job: &'a Settings,
    pub(crate) src: &'a Arc<dyn ObjectStore>,
    pub(crate) dst: &'a Arc<dyn ObjectStore>,
    pub(crate) judge: &'a Judge,
    /// The source's listing, when an inventory report replaces it.
    pub(crate) inventory: Option<Arc<crate::inventory::Inventory>>,
}

/// Walks every prefix, queueing through `sink` (a dry run has none).
pub(crate) async fn walk(
    w: &Walk<'_>,
    prefixes: &[String],
    sink: Option<&Sink>,
    run: &str,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Plan> {
    if w.job.versions.replays() {
        return crate::history::walk(w, prefixes, sink, run, stop).await;
    }
    let Walk { job, judge, .. } = *w;
    let filter = &job.filter;
    let mut planner = Planner::new(job, sink, run);
    let mut pending: Vec<Pair> = Vec::new();
    let mut listed = Listed::default();
    for p in prefixes {
        let (mut decisions, ranges) = ranged_decisions(w, p).await?;
        listed.ranges = (listed.ranges.0 + ranges.0, listed.ranges.1 + ranges.1);
        loop {
            let next = tokio::select! {
                n = decisions.next() => n,
                _ = stop.changed() => bail!(Interrupted),
            };
            let Some(decision) = next else { break };
            let decision = decision.map_err(|e| anyhow::anyhow!("listing failed: {e}"))?;
            listed.count(&decision);
            planner.decide(decision, filter, judge, &mut pending).await?;
        }
    }
    planner.settle(judge, &mut pending).await?;
    listed.into(&mut planner.plan.requests, job);
    planner.finish().await
}

/// Keys each side listed, for the listing's requests.
#[derive(Default)]
struct Listed {
    src: u64,
    dst: u64,
    /// Ranges listed, and the requests that found them.
    ranges: (u64, u64),
}

impl Listed {
    fn count(&mut self, d: &Decision) {
        let (s, t) = match d {
            Decision::New(_) => (1, 0),
            Decision::Extra(_) => (0, 1),
            _ => (1, 1),
        };
        (self.src, self.dst) = (self.src + s, self.dst + t);
    }

    /// Adds the listing's requests: on each side a page per 1,000 keys,
    /// and one more per range (each range ends with a partial page), and
    /// the requests that found the ranges.
    fn into(self, r: &mut Requests, job: &Settings) {
        let ranges = self.ranges.0.max(1);
        if !job.source.is_local() {
            r.list += ranges + self.src / 1000;
        }
        if !job.destination.is_local() {
            r.list += ranges + self.dst / 1000;
        }
        r.list += self.ranges.1;
    }
}

/// The judge of a run: the ledger, and the checksum cache in the state file
/// when a side is a local directory.
pub(crate) fn judge(
    job: &Settings,
    src: &Arc<dyn ObjectStore>,
    dst: &Arc<dyn ObjectStore>,
    state: Arc<dyn StateStore>,
) -> anyhow::Result<Judge> {
    let hashes = if job.has_local_side() {
        let db = ferry_core::db::Db::open(&job.file_hashes_path).context("opening the checksum cache")?;
        Some(ferry_core::file_hashes::FileHashes::new(db))
    } else {
        None
    };
    let part_size = job.transfer.part_size.as_u64();
    Ok(
        Judge::new(src.clone(), dst.clone(), job.destination.bucket(), part_size)
            .with_ledger(Some(state))
            .with_hashes(hashes),
    )
}
