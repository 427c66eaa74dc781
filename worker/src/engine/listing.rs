//! List jobs: a fleet lists a bucket, a key range per job (`--list-jobs`).
//!
//! The finder splits the source's key space into ranges and queues a list
//! job per range; any worker takes one like a copy job. What a list job
//! does — list its range on both sides, diff it, queue the copy and delete
//! jobs, and split off the rest of a range that turns out huge — is the
//! finder's walk, handed to the engine as a [`RangeLister`] by the
//! composition root. The engine keeps what every job has: the lease and
//! the ledger.
//!
//! **Records.** Every range has a record (bucket `DEST#lists`, key
//! `RUN#PREFIX#AFTER`, run `RUN#lists`, apart from the run's objects). It
//! is written *pending* (in progress, no lease: [`Engine::pend_lists`]) by
//! the finder before it queues its ranges, and by a worker right after it
//! queues the ranges it splits off, before its own range ends; it ends done (or failed, when
//! given up) once the range's jobs are queued. A worker claims the record
//! like an object's, so one worker lists a range at a time, and a job
//! whose record is done already (a redelivery, a duplicate) ends at once.
//!
//! **The end of the listing.** A range's record is still pending while
//! the ranges split off it are written, so the run's listing has ended
//! exactly when no list record of the run is in progress. The worker that
//! ends a list job looks ([`Engine::listing_over`]) and marks the run
//! listed. Killed mid-range, a worker leaves its lease to lapse; the range
//! is listed again from its start, and the jobs queued twice end at once
//! as duplicates.

use async_trait::async_trait;
use ferry_core::job::Job;
use ferry_core::lease::LeaseHolder;
use ferry_core::state::{Claim, Outcome, RecordKey, Status};

use super::{Engine, EngineError, JobOutcome};

/// The run the records of `run`'s list jobs name: `RUN#lists`, apart from
/// its objects (whose records `status` counts).
pub fn lists_of(run: &str) -> String {
    format!("{run}#lists")
}

/// The ledger record of the list job that lists `range_after` under
/// `src_prefix` for `run`, at destination bucket `dest_bucket`.
pub fn list_record(dest_bucket: &str, job: &Job) -> RecordKey {
    let after = job.list.as_ref().and_then(|l| l.range.after.as_deref()).unwrap_or("");
    RecordKey {
        bucket: format!("{dest_bucket}#lists"),
        key: format!("{}#{}#{after}", job.run, job.src.key),
    }
}

/// Lists one key range of a list job and queues its jobs.
#[async_trait]
pub trait RangeLister: Send + Sync + std::fmt::Debug {
    /// Diffs the job's range, queues the jobs it finds and adds them to the
    /// run's counters; answers the list jobs of the ranges split off its
    /// rest (not queued yet), none when the whole range was listed.
    async fn list(&self, job: &Job) -> anyhow::Result<Vec<Job>>;
}

/// Who writes pending list records.
const PENDING: &str = "pending";

impl Engine {
    /// Runs list jobs with `lister`, queueing the ranges split off on `queue`.
    pub fn with_lister(
        mut self,
        lister: std::sync::Arc<dyn RangeLister>,
        queue: std::sync::Arc<dyn ferry_core::queue::JobQueue>,
    ) -> Self {
        self.lister = Some(lister);
        self.list_queue = Some(queue);
        self
    }

    /// The ledger record of a list job.
    pub(super) fn list_key(&self, job: &Job) -> RecordKey {
        list_record(&self.dest_bucket, job)
    }

    /// Runs a list job (see the module docs).
    pub(super) async fn run_list(&self, job: &Job, holder: &LeaseHolder) -> Result<JobOutcome, EngineError> {
        let Some(lister) = self.lister.clone() else {
            return Err(EngineError::Listing(
                "this process cannot run list jobs (it was built without the finder's lister)".into(),
            ));
        };
        let worker = holder.as_str();
        let lk = self.list_key(job);
        let lists = lists_of(&job.run);
        match self.state.claim(&lk, worker, &lists, None, self.cfg.lease).await? {
            Claim::Busy { until, .. } => {
                return Ok(JobOutcome::Busy {
                    until,
                    duplicate: false,
                })
            }
            Claim::Acquired(rec) if rec.status == Status::Done => {
                self.state.finish(&lk, worker, &Outcome::bare(Status::Done)).await?;
                self.mark_listed(&job.run).await?;
                return Ok(JobOutcome::Listed { split: 0 });
            }
            Claim::Acquired(_) => {}
        }
        let rest = match lister.list(job).await {
            Ok(rest) => rest,
            Err(e) => {
                let e = EngineError::Listing(format!("{e:#}"));
                self.state.release(&lk, worker, Some(&e.to_string())).await?;
                return Err(e);
            }
        };
        let split = rest.len();
        self.queue_lists(&rest).await?;
        self.pend_lists(&rest).await?;
        self.state.finish(&lk, worker, &Outcome::bare(Status::Done)).await?;
        self.mark_listed(&job.run).await?;
        Ok(JobOutcome::Listed { split })
    }

    /// Writes the records of list jobs about to be queued as pending (in
    /// progress, no lease), so the run's listing does not look over while
    /// they wait; a record that exists keeps its status.
    pub async fn pend_lists(&self, jobs: &[Job]) -> Result<(), EngineError> {
        for job in jobs {
            let lk = self.list_key(job);
            let lists = lists_of(&job.run);
            if let Claim::Acquired(_) = self.state.claim(&lk, PENDING, &lists, None, self.cfg.lease).await? {
                self.state.release(&lk, PENDING, None).await?;
            }
        }
        Ok(())
    }

    /// Queues list jobs split off a range.
    async fn queue_lists(&self, jobs: &[Job]) -> Result<(), EngineError> {
        let Some(queue) = &self.list_queue else {
            return Err(EngineError::Listing("no queue to send the split ranges to".into()));
        };
        if jobs.is_empty() {
            return Ok(());
        }
        let bodies = jobs.iter().map(Job::to_body).collect();
        ferry_core::queue::JobQueueExt::send_all(&**queue, bodies, 5)
            .await
            .map_err(EngineError::Listing)
    }

    /// Marks the run listed when no list record of it is in progress.
    async fn mark_listed(&self, run: &str) -> Result<(), EngineError> {
        if self.listing_over(run).await? {
            self.state.run_listed(run).await?;
            tracing::info!(run, "Every key range of the run is listed.");
        }
        Ok(())
    }

    /// Whether no list record of `run` is in progress. The records found
    /// by the run's index (which may lag, on DynamoDB) are read again
    /// consistently before they count.
    pub async fn listing_over(&self, run: &str) -> Result<bool, EngineError> {
        const LOOK: usize = 25;
        let open = self.state.run_objects(&lists_of(run), Status::InProgress, LOOK).await?;
        for r in &open {
            if self
                .state
                .get(&r.key)
                .await?
                .is_some_and(|r| r.status == Status::InProgress)
            {
                return Ok(false);
            }
        }
        Ok(open.len() < LOOK)
    }

    /// Gives a list job up: its record says failed with `error` (its range
    /// was not listed; `status` names it).
    pub(super) async fn give_up_list(&self, job: &Job, worker: &str, error: &str) -> Result<bool, EngineError> {
        let lk = self.list_key(job);
        if let Claim::Busy { .. } = self
            .state
            .claim(&lk, worker, &lists_of(&job.run), None, self.cfg.lease)
            .await?
        {
            return Ok(false);
        }
        let outcome = Outcome {
            error: Some(error.to_string()),
            ..Outcome::bare(Status::Failed)
        };
        self.state.finish(&lk, worker, &outcome).await?;
        self.mark_listed(&job.run).await?;
        Ok(true)
    }
}
