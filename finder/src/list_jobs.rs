//! Fleet listing (`--list-jobs N`): the fleet's workers list the bucket,
//! a key range per job, instead of the finder.
//!
//! **The finder** splits each prefix's key space into up to N ranges
//! ([`ferry_core::ranges::split`]: by directories, else by bisection),
//! counts them in the run's `lists`, and queues a list job per range on
//! the job queue. The job carries the finder's listing settings — globs,
//! modification window (ages resolved once, by the finder), comparison,
//! delete sync — so every worker selects exactly what the finder would.
//!
//! **A worker** that takes a list job ([`FleetLister`], run by the engine
//! under the job's lease: `ferry_worker::engine::listing`) lists the range
//! on both sides and diffs it in lock step ([`crate::walk::range_decisions`]),
//! plans what it finds as the finder's walk does ([`crate::walk::Planner`]:
//! filters, the judge for pairs the listings cannot decide, jobs queued in
//! batches of 500 leaving out objects being copied now), and adds its
//! counts to the run. A range that turns out huge is not listed to its end
//! by one worker: after `keys` source keys the worker cuts it at the last
//! key it planned (the diff is in key order, so everything up to that key
//! is planned and nothing after it), splits the rest into up to
//! [`FANOUT`] ranges by bisection ([`ferry_core::ranges::split_range`]),
//! and the engine queues them for the fleet. Each range has a record in
//! the ledger; the run is listed when none is in progress
//! (`ferry_worker::engine::listing`), and `ferry-finder status` counts them.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use ferry_cli::Backends;
use ferry_core::config::{ListJobs, Settings};
use ferry_core::diff::Decision;
use ferry_core::filter::KeyFilter;
use ferry_core::job::{Job, ListSpec};
use ferry_core::queue::{JobQueue, JobQueueExt};
use ferry_core::ranges::{self, KeyRange};
use ferry_core::state::StateStore;
use ferry_core::store::ObjectStore;
use ferry_worker::engine::listing::RangeLister;
use ferry_worker::engine::Engine;
use futures::StreamExt;

use crate::compare::Judge;
use crate::walk::{range_decisions, Planner, Sink, Walk};

/// Ranges the rest of a huge range is split into.
const FANOUT: usize = 4;

/// Queues the list jobs of a run: up to `lj.ranges` per prefix (see the
/// module docs), their records written pending first. Answers how many
/// were queued.
pub(crate) async fn queue_list_jobs(
    w: &Walk<'_>,
    prefixes: &[String],
    queue: &Arc<dyn JobQueue>,
    engine: &Engine,
    run: &str,
    lj: ListJobs,
) -> anyhow::Result<u64> {
    let (sp, dp) = (w.job.source.prefix(), w.job.destination.prefix());
    let mut jobs = Vec::new();
    for p in prefixes {
        let (src_prefix, dst_prefix) = (format!("{sp}{p}"), format!("{dp}{p}"));
        // A prefix list partitions the keys already; a directory lists fast.
        let split = p.is_empty() && w.src.local_path("").is_none();
        let found = match split {
            true => {
                ranges::split(w.src, &src_prefix, lj.ranges)
                    .await
                    .map_err(|e| anyhow::anyhow!("sampling the source's listing failed: {e}"))?
                    .0
            }
            false => vec![KeyRange::default()],
        };
        let spec = spec_of(w.job, lj);
        jobs.extend(found.into_iter().map(|range| {
            let spec = ListSpec { range, ..spec.clone() };
            Job::list(run, &src_prefix, &dst_prefix, spec)
        }));
    }
    engine.pend_lists(&jobs).await.context("recording the list jobs")?;
    let bodies = jobs.iter().map(Job::to_body).collect();
    queue.send_all(bodies, 5).await.map_err(anyhow::Error::msg)?;
    tracing::info!(
        run,
        lists = jobs.len(),
        "Queued the run's list jobs; workers list and diff their ranges."
    );
    Ok(jobs.len() as u64)
}

/// The listing settings a list job carries (its range left open).
fn spec_of(job: &Settings, lj: ListJobs) -> ListSpec {
    ListSpec {
        range: KeyRange::default(),
        keys: lj.keys_per_job,
        compare: job.compare_mode(),
        delete: job.delete,
        filter: job.filter.spec(),
    }
}

/// Lists the ranges of list jobs in a worker (see the module docs).
#[derive(Debug)]
pub struct FleetLister {
    settings: Settings,
    src: Arc<dyn ObjectStore>,
    dst: Arc<dyn ObjectStore>,
    queue: Arc<dyn JobQueue>,
    state: Arc<dyn StateStore>,
    judge: Judge,
}

impl FleetLister {
    /// A lister over a job's backends.
    pub fn new(settings: &Settings, backends: &Backends) -> anyhow::Result<Self> {
        let judge = crate::walk::judge(
            settings,
            &backends.source,
            &backends.destination,
            backends.state.clone(),
        )?;
        Ok(FleetLister {
            settings: settings.clone(),
            src: backends.source.clone(),
            dst: backends.destination.clone(),
            queue: backends.queue.clone(),
            state: backends.state.clone(),
            judge,
        })
    }

    /// This worker's settings with the finder's listing settings of `spec`.
    fn settings_of(&self, spec: &ListSpec) -> anyhow::Result<Settings> {
        let mut s = self.settings.clone();
        s.filter = KeyFilter::from_spec(&spec.filter).map_err(anyhow::Error::msg)?;
        s.compare = spec.compare;
        s.delete = spec.delete;
        s.max_delete = None;
        Ok(s)
    }
}

/// The relative key a decision is about.
fn rel_of(d: &Decision) -> &str {
    match d {
        Decision::Extra(e) | Decision::New(e) => &e.rel,
        Decision::Changed { src, .. } | Decision::Identical { src, .. } | Decision::Unsure { src, .. } => &src.rel,
    }
}

#[async_trait]
impl RangeLister for FleetLister {
    async fn list(&self, job: &Job) -> anyhow::Result<Vec<Job>> {
        let spec = job.list.as_ref().context("a list job without its range")?;
        let settings = self.settings_of(spec)?;
        let w = Walk {
            job: &settings,
            src: &self.src,
            dst: &self.dst,
            judge: &self.judge,
            inventory: None,
        };
        let sink = Sink {
            queue: self.queue.clone(),
            state: self.state.clone(),
            progress: None,
            dest_bucket: settings.destination.bucket(),
            leased: AtomicU64::new(0),
        };
        let mut planner = Planner::new(&settings, Some(&sink), &job.run);
        let mut decisions = range_decisions(&w, &job.src.key, &job.dest.key, spec.range.clone());
        let (mut pending, mut n, mut cut) = (Vec::new(), 0u64, None);
        while let Some(d) = decisions.next().await {
            let d = d.map_err(|e| anyhow::anyhow!("listing failed: {e}"))?;
            n += 1;
            let rel = (n >= spec.keys).then(|| rel_of(&d).to_string());
            planner.decide(d, &settings.filter, &self.judge, &mut pending).await?;
            if rel.is_some() {
                cut = rel;
                break;
            }
        }
        planner.settle(&self.judge, &mut pending).await?;
        let plan = planner.finish().await?;
        tracing::info!(
            prefix = %job.src.key,
            after = spec.range.after.as_deref().unwrap_or(""),
            listed = n,
            new = plan.new.0,
            changed = plan.changed.0,
            identical = plan.identical,
            "Listed a key range."
        );
        let Some(rel) = cut else { return Ok(Vec::new()) };
        let rest = KeyRange {
            after: Some(format!("{}{rel}", settings.source.prefix())),
            until: spec.range.until.clone(),
        };
        self.split_rest(job, spec, rest).await
    }
}

impl FleetLister {
    /// Splits the rest of a huge range: the list jobs that list it.
    async fn split_rest(&self, job: &Job, spec: &ListSpec, rest: KeyRange) -> anyhow::Result<Vec<Job>> {
        let pieces = match ranges::split_range(&self.src, &job.src.key, rest.clone(), FANOUT).await {
            Ok((pieces, _)) => pieces,
            Err(e) => {
                tracing::debug!(error = %e, "Sampling the rest of a range failed; it is queued whole.");
                vec![rest]
            }
        };
        tracing::info!(prefix = %job.src.key, pieces = pieces.len(), "A large key range: its rest is split off for other workers.");
        Ok(pieces
            .into_iter()
            .map(|range| {
                let spec = ListSpec { range, ..spec.clone() };
                Job::list(&job.run, &job.src.key, &job.dest.key, spec)
            })
            .collect())
    }
}
