//! One job task: a delivered message's jobs, run under leases kept alive by
//! a heartbeat, then acknowledged (in batches, [`crate::completions`]),
//! given back with a delay, or given up.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_core::events::{parse_message, Parsed as ParsedMessage, EVENTS_RUN};
use ferry_core::job::Job;
use ferry_core::lease::LeaseHolder;
use ferry_core::queue::{JobQueue, JobQueueExt, Message};
use ferry_core::state::{RecordKey, RunCounters};
use ferry_core::telemetry::{JobEnded, JobFailed, JobReceived};
use tracing::Instrument as _;

use super::RunnerConfig;
use crate::completions::Completions;
use crate::engine::{Engine, EngineError, JobOutcome};

/// How a job task ended, for the loop's summary.
pub(super) enum TaskEnd {
    /// Every job of the message ended; the message is acknowledged.
    Acked,
    /// A job failed: given back, or given up for good.
    Failed { given_up: bool },
    /// Given back or requeued without a verdict (a busy lease, a poison
    /// message, a redelivery requeued fresh).
    GivenBack,
}

/// What a job task needs.
#[derive(Clone)]
pub(super) struct Task {
    pub(super) engine: Arc<Engine>,
    pub(super) queue: Arc<dyn JobQueue>,
    pub(super) done: Arc<Completions>,
    pub(super) cfg: RunnerConfig,
}

impl Task {
    /// Runs the jobs of `msg` as `holder`.
    pub(super) async fn handle(self, msg: Message, holder: LeaseHolder) -> TaskEnd {
        let Some(parsed) = self.accept(&msg).await else {
            return TaskEnd::GivenBack;
        };
        let current: Arc<Mutex<Option<RecordKey>>> = Arc::default();
        let heartbeat = self.spawn_heartbeat(&msg.receipt, &holder, current.clone());
        let mut delta = RunCounters::default();
        let mut run = parsed
            .jobs
            .first()
            .map(|j| j.run.clone())
            .unwrap_or_else(|| EVENTS_RUN.into());
        for job in &parsed.jobs {
            *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.engine.lease_key(job));
            let span = tracing::info_span!("job", run = %job.run, key = %job.dest.key, op = ?job.op);
            let result = self.engine.run_job(job, &holder).instrument(span).await;
            match result {
                Ok(JobOutcome::Busy {
                    duplicate: false,
                    until,
                }) => {
                    heartbeat.abort();
                    self.wait_for_lease(&msg, job, until).await;
                    return TaskEnd::GivenBack;
                }
                Ok(JobOutcome::Split { spans }) => {
                    if !self.queue_more(&msg, spans).await {
                        heartbeat.abort();
                        return TaskEnd::GivenBack;
                    }
                    JobEnded {
                        outcome: ferry_core::metrics::Outcome::Split,
                    }
                    .emit();
                }
                Ok(JobOutcome::Replan { job: again }) => {
                    if !self.queue_more(&msg, vec![*again]).await {
                        heartbeat.abort();
                        return TaskEnd::GivenBack;
                    }
                    JobEnded {
                        outcome: ferry_core::metrics::Outcome::Split,
                    }
                    .emit();
                }
                Ok(outcome) => {
                    if let JobOutcome::Busy { .. } = outcome {
                        // Another worker copies this very version under its own message,
                        // which stays queued until that copy is done: this one is a duplicate.
                        tracing::debug!(key = %job.dest.key, "Duplicate of a job in progress elsewhere; dropped.");
                    }
                    delta.add(&outcome.counters());
                    JobEnded {
                        outcome: outcome.metric(),
                    }
                    .emit();
                    run = job.run.clone();
                }
                Err(e) => {
                    heartbeat.abort();
                    return self.failed(&msg, &holder, job, e).await;
                }
            }
        }
        heartbeat.abort();
        self.done.push(msg.receipt.clone(), &run, delta);
        TaskEnd::Acked
    }

    /// The message's jobs, or `None` when the message is not worked on here:
    /// a poison message (dead-lettered at once) or a redelivery requeued
    /// fresh ([`spent_by_churn`]).
    async fn accept(&self, msg: &Message) -> Option<ParsedMessage> {
        let parsed = match parse_message(&msg.body, &self.cfg.events) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(message_id = %msg.id, error = %e, "Poison message: not a job; moved to the dead-letter queue.");
                if let Err(qe) = self.queue.dead_letter(msg, &e.to_string()).await {
                    tracing::warn!(message_id = %msg.id, error = %qe, "Could not dead-letter a poison message; the queue's redrive policy will.");
                }
                return None;
            }
        };
        tracing::debug!(message_id = %msg.id, receives = msg.receives, jobs = parsed.jobs.len(), "Message received.");
        if spent_by_churn(msg.receives, self.cfg.max_receives) {
            if let Some(job) = parsed.jobs.first() {
                if self.requeue_spent(msg, job).await {
                    return None;
                }
            }
        }
        if parsed.ignored > 0 {
            tracing::debug!(
                message_id = %msg.id,
                ignored = parsed.ignored,
                "Event records outside this job (other bucket or prefix, deletes without delete sync, test events) ignored."
            );
        }
        if let Some(sent) = msg.sent_at.filter(|_| msg.receives == 1) {
            JobReceived {
                lag: Duration::from_millis((ferry_core::now_millis() - sent).max(0) as u64),
            }
            .emit();
        }
        Some(parsed)
    }

    /// Queues the jobs a job left (a giant object's spans, or the object
    /// planned again); false when the queue refused them, and the message
    /// is given back to be worked on again (the spans queued by then are
    /// duplicates that end at once).
    async fn queue_more(&self, msg: &Message, jobs: Vec<Job>) -> bool {
        let bodies: Vec<String> = jobs.iter().map(Job::to_body).collect();
        match self.queue.send_all(bodies, 3).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "Could not queue the spans of a giant object; its job is given back.");
                let _ = self.queue.nack(&msg.receipt, Duration::from_secs(5), &e).await;
                false
            }
        }
    }

    /// Gives the message back until another holder's lease ends: another
    /// version is being copied, or this message's own earlier delivery still
    /// holds the lease (the holder renews it while it works).
    async fn wait_for_lease(&self, msg: &Message, job: &Job, until: i64) {
        tracing::debug!(message_id = %msg.id, key = %job.dest.key, "The object's lease is held; the message is given back until it ends.");
        let wait = Duration::from_millis((until - ferry_core::now_millis()).clamp(1000, 30_000) as u64);
        let _ = self
            .queue
            .nack(&msg.receipt, wait, "another worker holds the object's lease")
            .await;
    }

    /// Keeps the message hidden and the current object leased while a message's jobs run.
    fn spawn_heartbeat(
        &self,
        receipt: &str,
        holder: &LeaseHolder,
        current: Arc<Mutex<Option<RecordKey>>>,
    ) -> tokio::task::JoinHandle<()> {
        let (queue, engine) = (self.queue.clone(), self.engine.clone());
        let (receipt, worker, lease) = (receipt.to_string(), holder.as_str().to_string(), self.cfg.lease);
        let received = Instant::now();
        tokio::spawn(async move {
            let mut at_limit = false;
            loop {
                tokio::time::sleep(lease / 3).await;
                match message_extension(queue.max_hidden(), received.elapsed(), lease) {
                    Some(ext) => {
                        if let Err(e) = queue.extend(&receipt, ext).await {
                            tracing::warn!(error = %e, "Could not extend the message lease.");
                        }
                    }
                    None if !at_limit => {
                        at_limit = true;
                        tracing::info!(
                            "The queue's limit on hiding a message is near: the message will be delivered again while this job goes on under its object lease (progress is recorded; the redelivery waits for this worker or resumes)."
                        );
                    }
                    None => {}
                }
                let rk = current.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some(rk) = rk {
                    // The object lease exists only once claimed; a lost lease surfaces in the engine.
                    let _ = engine.state().renew(&rk, &worker, lease).await;
                }
            }
        })
    }

    /// A failed job: given back with a delay, or — once the ledger counts
    /// `max_attempts` failed attempts (attempts cut short by a worker that
    /// died or stopped are not counted) — given up: its upload aborted, its
    /// record failed with the error, its message dead-lettered. An archived
    /// source ends at once as `restore_needed` and its message is
    /// acknowledged.
    async fn failed(&self, msg: &Message, holder: &LeaseHolder, job: &Job, e: EngineError) -> TaskEnd {
        let text = e.to_string();
        // The engine released the lease with the error, which counted the attempt.
        let attempts = match self.engine.attempts(job).await {
            Ok(n) => n.max(1),
            Err(se) => {
                tracing::warn!(error = %se, "Could not read the failed attempts from the ledger.");
                0
            }
        };
        let restore = e.final_status() == ferry_core::state::Status::RestoreNeeded;
        let given_up = restore || attempts >= self.cfg.max_attempts;
        JobFailed {
            key: &job.dest.key,
            error_code: e.code(),
            will_retry: !given_up,
            error: &text,
        }
        .emit();
        if given_up && self.give_up(msg, holder, job, &e, attempts).await {
            return TaskEnd::Failed { given_up: true };
        }
        let delay = ferry_core::retry::redelivery_delay(attempts);
        let _ = self.queue.nack(&msg.receipt, delay, &text).await;
        TaskEnd::Failed { given_up: false }
    }

    /// Ends a job for good (see [`Task::failed`]); false when another
    /// worker took the object meanwhile (it decides) or the ledger failed.
    async fn give_up(&self, msg: &Message, holder: &LeaseHolder, job: &Job, e: &EngineError, attempts: u32) -> bool {
        let status = e.final_status();
        let restore = status == ferry_core::state::Status::RestoreNeeded;
        let why = match restore {
            true => e.to_string(),
            false => format!("given up after {attempts} failed attempts: {e}"),
        };
        match self.engine.give_up(job, holder.as_str(), status, &why).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(ge) => {
                tracing::warn!(key = %job.dest.key, error = %ge, "Could not record a job given up; it will be tried again.");
                return false;
            }
        }
        self.engine.stats.failed.fetch_add(1, Ordering::Relaxed);
        JobEnded { outcome: e.metric() }.emit();
        let failed = RunCounters {
            failed: 1,
            ..Default::default()
        };
        let _ = self.engine.state().run_add(&job.run, failed).await;
        let ended = match restore {
            true => self.queue.ack(&msg.receipt).await,
            false => self.queue.dead_letter(msg, &why).await,
        };
        if let Err(qe) = ended {
            tracing::warn!(key = %job.dest.key, error = %qe, "Could not take the message of a job given up off the queue; it comes back and ends the same way.");
        }
        true
    }

    /// Requeues a redelivered message as a fresh one (same id), when the
    /// ledger answers (so the job's own failures are still counted and it is
    /// given up by them); returns whether it did. When the ledger cannot be
    /// read, the message is worked on as it is and the queue's limit stays
    /// the backstop.
    async fn requeue_spent(&self, msg: &Message, job: &Job) -> bool {
        let attempts = match self.engine.attempts(job).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "The ledger cannot be read: the message is worked on as delivered.");
                return false;
            }
        };
        match self.queue.requeue(msg).await {
            Ok(()) => {
                tracing::info!(
                    message_id = %msg.id,
                    receives = msg.receives,
                    failed_attempts = attempts,
                    "Requeued a redelivered message with a fresh delivery count; its failures are counted in the ledger."
                );
                true
            }
            Err(e) => {
                tracing::warn!(message_id = %msg.id, error = %e, "Could not requeue a message near the queue's delivery limit.");
                false
            }
        }
    }
}

/// Whether a delivery is a redelivery to requeue fresh ([`requeue_spent`]):
/// any delivery after the first. The job's own failures are counted in the
/// ledger, so the queue's receive count need not grow at all: every
/// redelivery we see (after a failure's delay, a busy lease, a worker that
/// died or was stopped) starts the count again. Only deliveries nobody sees
/// (a long poll of a process killed mid-poll takes a message on the server)
/// still count, and `max_receives - 1` of them in a row would be needed to
/// reach the queue's limit. Queues that park a message after fewer than 3
/// deliveries are left alone.
pub(super) fn spent_by_churn(receives: u32, max_receives: u32) -> bool {
    max_receives >= 3 && receives >= 2
}

/// How far to extend a message's lease now, `received_for` after it was
/// received: the lease, cut so the message stays within the queue's limit
/// (with a minute to spare); `None` once nothing is left.
pub(super) fn message_extension(
    max_hidden: Option<Duration>,
    received_for: Duration,
    lease: Duration,
) -> Option<Duration> {
    let Some(max) = max_hidden else {
        return Some(lease);
    };
    let left = max.checked_sub(received_for + Duration::from_secs(60))?;
    (!left.is_zero()).then(|| left.min(lease))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redeliveries_are_requeued() {
        assert!(!spent_by_churn(1, 10), "a first delivery is worked on");
        assert!(spent_by_churn(2, 10));
        assert!(spent_by_churn(9, 10));
        assert!(spent_by_churn(12, 10), "an approximate count past the limit");
        assert!(spent_by_churn(2, 3));
        assert!(!spent_by_churn(1, 3));
        assert!(!spent_by_churn(2, 2), "too few deliveries to leave any to the job");
        assert!(!spent_by_churn(5, 1));
    }

    #[test]
    fn extensions_stay_within_the_queue_limit() {
        let lease = Duration::from_secs(60);
        let h12 = Duration::from_secs(12 * 3600);
        assert_eq!(message_extension(None, h12 * 2, lease), Some(lease));
        assert_eq!(
            message_extension(Some(h12), Duration::from_secs(10), lease),
            Some(lease)
        );
        assert_eq!(
            message_extension(Some(h12), h12 - Duration::from_secs(90), lease),
            Some(Duration::from_secs(30))
        );
        assert_eq!(message_extension(Some(h12), h12 - Duration::from_secs(60), lease), None);
        assert_eq!(message_extension(Some(h12), h12 + Duration::from_secs(1), lease), None);
    }
}
