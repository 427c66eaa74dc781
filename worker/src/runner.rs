//! The worker loop: receive jobs, run them under leases, acknowledge.
//!
//! One receive loop feeds up to `workers` concurrent job tasks. Each task
//! keeps its queue message and its object lease alive with a heartbeat every
//! third of the lease, and acknowledges the message only after the engine has
//! completed, verified and recorded the object (or found it moot);
//! acknowledgements and run counters are written in batches
//! ([`crate::completions`]). A failed
//! job is given back with a backoff delay; once the ledger counts
//! `max_attempts` failed attempts of the job it is given up: its upload is
//! aborted, its record says failed with the error, and the worker moves its
//! message to the dead-letter queue itself. The queue's own delivery limit is
//! only a backstop: deliveries spent by workers that died, were stopped or
//! scaled in are not failures, so every redelivery is requeued fresh
//! ([`spent_by_churn`]). A message that is not a job is logged and
//! dead-lettered at once; an archived source ends as `restore_needed`. The loop ends when asked to stop, or — in drain mode, once the
//! producer says it is done — when the queue holds no live message.
//!
//! Stopping (SIGTERM from ECS or an Auto Scaling scale-in, or Ctrl-C): no new
//! message is received; running jobs get `grace` to finish; those still
//! running are then stopped, their object leases released and their messages
//! given back at once, so another worker resumes them from the recorded
//! parts without waiting for the leases to lapse.
//!
//! A queue may limit how long a message stays hidden (SQS: 12 hours after
//! the receive). The heartbeat stops extending the message just before that;
//! the job goes on under its object lease, and the redelivered message waits
//! for that lease (the object is then found done) or resumes the upload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::db::owner_id;
use ferry_core::events::{parse_message, EventContext, EVENTS_RUN};
use ferry_core::job::Job;
use ferry_core::metrics::Outcome as MetricOutcome;
use ferry_core::queue::{JobQueue, Message};
use ferry_core::state::{RecordKey, RunCounters, Status};
use ferry_core::telemetry::JobFailed;
use ferry_core::telemetry::{JobEnded, JobReceived};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::completions::Completions;
use crate::engine::{Engine, JobOutcome};
use tracing::Instrument as _;

/// How long an idle daemon long-polls the queue: one paid request per 5 s
/// when idle on SQS (about $0.20 a month per idle worker), and the longest a
/// stop waits for the poll in flight to come back (see [`run`]).
const IDLE_POLL: Duration = Duration::from_secs(5);

/// Runner settings.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Jobs at once.
    pub workers: usize,
    /// Message and object lease.
    pub lease: Duration,
    /// Deliveries before the queue itself parks a message as dead (a backstop:
    /// see [`spent_by_churn`]).
    pub max_receives: u32,
    /// Failed attempts, counted in the ledger, before a job is given up.
    pub max_attempts: u32,
    /// Time running jobs get to finish after a stop request.
    pub grace: Duration,
    /// How S3 event notifications on the queue map to jobs.
    pub events: EventContext,
}

/// What the loop did.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunnerSummary {
    /// Jobs acknowledged.
    pub acked: u64,
    /// Attempts that failed.
    pub failed_attempts: u64,
    /// Jobs given up.
    pub given_up: u64,
}

/// Stops the loop: `stop` ends it now; `drain` ends it once the queue is empty
/// and the producer has set `producer_done`.
#[derive(Debug, Clone)]
pub struct Control {
    /// Set to true to stop: running jobs get the configured grace, then are
    /// stopped and released; they resume later from their recorded parts.
    pub stop: watch::Receiver<bool>,
    /// Drain mode: end when the queue is empty after the producer is done.
    pub producer_done: Option<Arc<AtomicBool>>,
}

/// Runs the worker loop until `control` ends it.
pub async fn run(
    engine: Arc<Engine>,
    queue: Arc<dyn JobQueue>,
    cfg: RunnerConfig,
    mut control: Control,
) -> RunnerSummary {
    let mut tasks: JoinSet<TaskResult> = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, Running> = HashMap::new();
    let mut summary = RunnerSummary::default();
    let mut next_id = 0u64;
    let mut idle_backoff = Duration::from_millis(50);
    let done = Completions::new(queue.clone(), engine.state().clone());
    let flusher = tokio::spawn(done.clone().run());
    loop {
        if *control.stop.borrow() {
            break;
        }
        while let Some(r) = tasks.try_join_next_with_id() {
            account(&mut summary, &mut running, r);
        }
        let free = cfg.workers.saturating_sub(tasks.len());
        // While jobs run, receive only once a whole batch fits: each receive
        // is a paid request on SQS, and a few free slots would take a few
        // messages per request.
        let batch = queue.max_batch().clamp(1, 10).min(cfg.workers);
        if free == 0 || (!tasks.is_empty() && free < batch) {
            tokio::select! {
                r = tasks.join_next_with_id() => if let Some(r) = r { account(&mut summary, &mut running, r) },
                _ = control.stop.changed() => {}
            }
            continue;
        }
        let producer_done = control.producer_done.as_ref().is_some_and(|d| d.load(Ordering::SeqCst));
        if producer_done && tasks.is_empty() {
            // Everything was queued and nothing runs here: end as soon as no
            // job is left, without waiting out a receive.
            done.flush().await;
            match queue.stats().await {
                Ok(s) if s.live() == 0 => break,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "Could not read the queue's counts."),
            }
        }
        // While the producer lists, poll briefly: its end is noticed within
        // one short wait, not one long one.
        let wait = if tasks.is_empty() {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        let wait = if control.producer_done.is_none() && tasks.is_empty() {
            IDLE_POLL
        } else {
            wait
        };
        let asked = tokio::time::Instant::now();
        let receive = queue.receive(free, cfg.lease, wait);
        tokio::pin!(receive);
        let msgs = tokio::select! {
            m = &mut receive => m,
            _ = control.stop.changed() => {
                // A receive dropped mid-poll may still take messages on the server,
                // hidden for a lease and counted as delivered, unseen by any worker.
                // Finish it and give back what it took.
                if let Ok(got) = receive.await {
                    give_back(&queue, got).await;
                }
                continue;
            }
        };
        match msgs {
            Ok(msgs) if !msgs.is_empty() => {
                idle_backoff = Duration::from_millis(50);
                for m in msgs {
                    next_id += 1;
                    // The message id is part of the name: a lease held under this very
                    // message (by a worker that died) is not a duplicate's (see `Engine`).
                    let worker = format!("{}#{next_id}@{}", owner_id(), m.id);
                    let record = parse_message(&m.body, &cfg.events)
                        .ok()
                        .and_then(|p| p.jobs.first().map(|j| engine.record_key(&j.dest.key)));
                    let delivered = m.clone();
                    let h = tasks.spawn(handle(
                        engine.clone(),
                        queue.clone(),
                        done.clone(),
                        cfg.clone(),
                        m,
                        worker.clone(),
                    ));
                    running.insert(
                        h.id(),
                        Running {
                            msg: delivered,
                            record,
                            worker,
                        },
                    );
                }
            }
            Ok(_) => {
                if tasks.is_empty() && asked.elapsed() < wait / 2 {
                    // A queue that answers at once (SQS rounds short waits
                    // down to no wait) is not asked again in a tight loop.
                    tokio::time::sleep(wait / 2).await;
                } else if !tasks.is_empty() {
                    tokio::select! {
                        r = tasks.join_next_with_id() => if let Some(r) = r { account(&mut summary, &mut running, r) },
                        _ = tokio::time::sleep(idle_backoff) => {}
                        _ = control.stop.changed() => {}
                    }
                    idle_backoff = (idle_backoff * 2).min(Duration::from_millis(500));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Receiving from the queue failed; retrying.");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    if *control.stop.borrow() && !tasks.is_empty() {
        if !cfg.grace.is_zero() {
            tracing::info!(
                jobs = tasks.len(),
                grace_s = cfg.grace.as_secs_f64(),
                "Stopping: letting running jobs finish."
            );
        }
        let deadline = tokio::time::sleep(cfg.grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                r = tasks.join_next_with_id() => match r {
                    Some(r) => account(&mut summary, &mut running, r),
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        tasks.abort_all();
    }
    while let Some(r) = tasks.join_next_with_id().await {
        account(&mut summary, &mut running, r);
    }
    // Flush first: it waits for a flush the flusher has under way, which an
    // abort would cut between taking the receipts and acknowledging them.
    // Nothing is pushed after this, so the flusher has nothing left to lose.
    done.flush().await;
    flusher.abort();
    if !running.is_empty() {
        release(&engine, &queue, running.into_values().collect()).await;
    }
    summary
}

/// A job task in flight: what to release if it is stopped.
struct Running {
    msg: Message,
    record: Option<RecordKey>,
    worker: String,
}

/// Releases the object leases of stopped jobs and gives their messages back.
async fn release(engine: &Engine, queue: &Arc<dyn JobQueue>, stopped: Vec<Running>) {
    tracing::info!(
        jobs = stopped.len(),
        "Stopped unfinished jobs; their leases are released and they resume from their recorded parts."
    );
    for r in &stopped {
        if let Some(rk) = &r.record {
            // Not yet claimed, or already released: nothing to do.
            let _ = engine.state().release(rk, &r.worker, None).await;
        }
    }
    give_back(queue, stopped.into_iter().map(|r| r.msg).collect()).await;
}

/// Gives messages back at once as fresh ones (their delivery here is not
/// counted against them, see [`spent_by_churn`]); a message that cannot be
/// requeued is made visible again instead.
async fn give_back(queue: &Arc<dyn JobQueue>, msgs: Vec<Message>) {
    let mut left = Vec::new();
    for m in msgs {
        if let Err(e) = queue.requeue(&m).await {
            tracing::debug!(message_id = %m.id, error = %e, "Could not requeue a message at stop; making it visible instead.");
            left.push(m.receipt);
        }
    }
    if !left.is_empty() {
        queue.release_many(&left).await;
    }
}

enum TaskResult {
    Acked,
    Failed { given_up: bool },
    Other,
}

fn account(
    s: &mut RunnerSummary,
    running: &mut HashMap<tokio::task::Id, Running>,
    r: Result<(tokio::task::Id, TaskResult), tokio::task::JoinError>,
) {
    match r {
        Ok((id, result)) => {
            running.remove(&id);
            match result {
                TaskResult::Acked => s.acked += 1,
                TaskResult::Failed { given_up } => {
                    s.failed_attempts += 1;
                    s.given_up += given_up as u64;
                }
                TaskResult::Other => {}
            }
        }
        Err(e) if e.is_panic() => {
            running.remove(&e.id());
            tracing::error!(error = %e, "A job task panicked; its message will be delivered again.")
        }
        // Cancelled at shutdown: stays in `running` to be released.
        Err(_) => {}
    }
}

async fn handle(
    engine: Arc<Engine>,
    queue: Arc<dyn JobQueue>,
    done: Arc<Completions>,
    cfg: RunnerConfig,
    msg: Message,
    worker: String,
) -> TaskResult {
    let parsed = match parse_message(&msg.body, &cfg.events) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(message_id = %msg.id, error = %e, "Poison message: not a job; moved to the dead-letter queue.");
            if let Err(qe) = queue.dead_letter(&msg, &e.to_string()).await {
                tracing::warn!(message_id = %msg.id, error = %qe, "Could not dead-letter a poison message; the queue's redrive policy will.");
            }
            return TaskResult::Other;
        }
    };
    tracing::debug!(message_id = %msg.id, receives = msg.receives, jobs = parsed.jobs.len(), "Message received.");
    if spent_by_churn(msg.receives, cfg.max_receives) {
        if let Some(job) = parsed.jobs.first() {
            if requeue_spent(&engine, &queue, &msg, job).await {
                return TaskResult::Other;
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
    let current: Arc<std::sync::Mutex<Option<RecordKey>>> = Arc::default();
    let heartbeat = spawn_heartbeat(&engine, &queue, &msg.receipt, &worker, cfg.lease, current.clone());
    let mut delta = RunCounters::default();
    let mut run = parsed
        .jobs
        .first()
        .map(|j| j.run.clone())
        .unwrap_or_else(|| EVENTS_RUN.into());
    for job in &parsed.jobs {
        *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(engine.record_key(&job.dest.key));
        let span = tracing::info_span!("job", run = %job.run, key = %job.dest.key, op = ?job.op);
        let result = engine.run_job(job, &worker).instrument(span).await;
        match result {
            Ok(JobOutcome::Busy {
                duplicate: false,
                until,
            }) => {
                heartbeat.abort();
                // Another version is being copied, or this message's own earlier
                // delivery still holds the lease: look again soon (the holder
                // renews its lease while it works).
                tracing::debug!(message_id = %msg.id, key = %job.dest.key, "The object's lease is held; the message is given back until it ends.");
                let wait = Duration::from_millis((until - ferry_core::now_millis()).clamp(1000, 30_000) as u64);
                let _ = queue
                    .nack(&msg.receipt, wait, "another worker holds the object's lease")
                    .await;
                return TaskResult::Other;
            }
            Ok(outcome) => {
                if let JobOutcome::Busy { .. } = outcome {
                    // Another worker copies this very version under its own message,
                    // which stays queued until that copy is done: this one is a duplicate.
                    tracing::debug!(key = %job.dest.key, "Duplicate of a job in progress elsewhere; dropped.");
                }
                delta.add(&counters(&outcome));
                JobEnded {
                    outcome: outcome_metric(&outcome),
                }
                .emit();
                run = job.run.clone();
            }
            Err(e) => {
                heartbeat.abort();
                return failed(&engine, &queue, &cfg, &msg, &worker, job, e).await;
            }
        }
    }
    heartbeat.abort();
    done.push(msg.receipt.clone(), &run, delta);
    TaskResult::Acked
}

/// The metric outcome of a job's outcome.
fn outcome_metric(outcome: &JobOutcome) -> MetricOutcome {
    match outcome {
        JobOutcome::Transferred { .. } => MetricOutcome::Transferred,
        JobOutcome::Identical => MetricOutcome::Identical,
        JobOutcome::Busy { .. } => MetricOutcome::Skipped,
        JobOutcome::Stale => MetricOutcome::Stale,
        JobOutcome::Deleted => MetricOutcome::Deleted,
        JobOutcome::SourceGone => MetricOutcome::SourceGone,
    }
}

/// The run counters of a job's outcome.
fn counters(outcome: &JobOutcome) -> RunCounters {
    let mut c = RunCounters::default();
    match outcome {
        JobOutcome::Transferred { bytes } => {
            c.done = 1;
            c.bytes = *bytes;
        }
        JobOutcome::Deleted => c.done = 1,
        JobOutcome::Identical | JobOutcome::Stale | JobOutcome::Busy { .. } => c.skipped = 1,
        JobOutcome::SourceGone => c.gone = 1,
    }
    c
}

/// Keeps the message hidden and the current object leased while a message's jobs run.
fn spawn_heartbeat(
    engine: &Arc<Engine>,
    queue: &Arc<dyn JobQueue>,
    receipt: &str,
    worker: &str,
    lease: Duration,
    current: Arc<std::sync::Mutex<Option<RecordKey>>>,
) -> tokio::task::JoinHandle<()> {
    let (queue, engine, receipt, worker) = (queue.clone(), engine.clone(), receipt.to_string(), worker.to_string());
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
/// `max_attempts` failed attempts (attempts cut short by a worker that died
/// or stopped are not counted) — given up: its upload aborted, its record
/// failed with the error, its message dead-lettered. An archived source ends
/// at once as `restore_needed` and its message is acknowledged.
async fn failed(
    engine: &Arc<Engine>,
    queue: &Arc<dyn JobQueue>,
    cfg: &RunnerConfig,
    msg: &Message,
    worker: &str,
    job: &Job,
    e: crate::engine::EngineError,
) -> TaskResult {
    let rk = engine.record_key(&job.dest.key);
    let text = e.to_string();
    let restore = e.code() == "restore_needed";
    // The engine released the lease with the error, which counted the attempt.
    let attempts = match engine.state().get(&rk).await {
        Ok(r) => r.map_or(1, |r| r.attempts),
        Err(se) => {
            tracing::warn!(error = %se, "Could not read the failed attempts from the ledger.");
            0
        }
    };
    let given_up = restore || attempts >= cfg.max_attempts;
    JobFailed {
        key: &job.dest.key,
        error_code: e.code(),
        will_retry: !given_up,
        error: &text,
    }
    .emit();
    if given_up {
        let (status, why) = if restore {
            (Status::RestoreNeeded, text.clone())
        } else {
            (
                Status::Failed,
                format!("given up after {attempts} failed attempts: {text}"),
            )
        };
        match engine.give_up(job, worker, status, &why).await {
            Ok(true) => {
                engine.stats.failed.fetch_add(1, Ordering::Relaxed);
                JobEnded {
                    outcome: if restore {
                        MetricOutcome::RestoreNeeded
                    } else {
                        MetricOutcome::Failed
                    },
                }
                .emit();
                let _ = engine
                    .state()
                    .run_add(
                        &job.run,
                        RunCounters {
                            failed: 1,
                            ..Default::default()
                        },
                    )
                    .await;
                let ended = if restore {
                    queue.ack(&msg.receipt).await
                } else {
                    queue.dead_letter(msg, &why).await
                };
                if let Err(qe) = ended {
                    tracing::warn!(key = %job.dest.key, error = %qe, "Could not take the message of a job given up off the queue; it comes back and ends the same way.");
                }
                return TaskResult::Failed { given_up: true };
            }
            // Another worker took the object meanwhile: it decides.
            Ok(false) => {}
            Err(ge) => {
                tracing::warn!(key = %job.dest.key, error = %ge, "Could not record a job given up; it will be tried again.")
            }
        }
    }
    let delay = Duration::from_millis((500u64 << attempts.min(7)).min(60_000));
    let _ = queue.nack(&msg.receipt, delay, &text).await;
    TaskResult::Failed { given_up: false }
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
fn spent_by_churn(receives: u32, max_receives: u32) -> bool {
    max_receives >= 3 && receives >= 2
}

/// Requeues a redelivered message as a fresh one (same id),
/// when the ledger answers (so the job's own failures are still counted and
/// it is given up by them); returns whether it did. When the ledger cannot be
/// read, the message is worked on as it is and the queue's limit stays the
/// backstop.
async fn requeue_spent(engine: &Arc<Engine>, queue: &Arc<dyn JobQueue>, msg: &Message, job: &Job) -> bool {
    let rk = engine.record_key(&job.dest.key);
    let attempts = match engine.state().get(&rk).await {
        Ok(r) => r.map_or(0, |r| r.attempts),
        Err(e) => {
            tracing::warn!(error = %e, "The ledger cannot be read: the message is worked on as delivered.");
            return false;
        }
    };
    match queue.requeue(msg).await {
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

/// How far to extend a message's lease now, `received_for` after it was
/// received: the lease, cut so the message stays within the queue's limit
/// (with a minute to spare); `None` once nothing is left.
fn message_extension(max_hidden: Option<Duration>, received_for: Duration, lease: Duration) -> Option<Duration> {
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
