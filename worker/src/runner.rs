//! The worker loop: receive jobs, run them under leases, acknowledge.
//!
//! One receive loop feeds up to `workers` concurrent job tasks. Each task
//! keeps its queue message and its object lease alive with a heartbeat every
//! third of the lease, and acknowledges the message only after the engine has
//! completed, verified and recorded the object (or found it moot);
//! acknowledgements and run counters are written in batches
//! ([`crate::completions`]). A failed
//! job is given back with a backoff delay; once the queue's delivery limit is
//! reached the failure is recorded and the queue parks the message as dead.
//! A message that is not a job is logged once and left to the dead-letter
//! queue. The loop ends when asked to stop, or — in drain mode, once the
//! producer says it is done — when the queue holds no live message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::db::owner_id;
use ferry_core::job::Job;
use ferry_core::queue::{JobQueue, Message};
use ferry_core::state::{Outcome, RunCounters, Status};
use ferry_core::telemetry::JobFailed;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::completions::Completions;
use crate::engine::{Engine, JobOutcome};

/// Runner settings.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Jobs at once.
    pub workers: usize,
    /// Message and object lease.
    pub lease: Duration,
    /// Deliveries before the queue parks a message as dead.
    pub max_receives: u32,
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
    /// Set to true to stop (in-flight jobs are abandoned; their leases lapse
    /// or are taken over, and they resume later).
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
    let mut summary = RunnerSummary::default();
    let mut next_id = 0u64;
    let mut idle_backoff = Duration::from_millis(50);
    let done = Completions::new(queue.clone(), engine.state().clone());
    let flusher = tokio::spawn(done.clone().run());
    loop {
        if *control.stop.borrow() {
            tasks.abort_all();
            break;
        }
        while let Some(r) = tasks.try_join_next() {
            account(&mut summary, r);
        }
        let free = cfg.workers.saturating_sub(tasks.len());
        if free == 0 {
            tokio::select! {
                r = tasks.join_next() => if let Some(r) = r { account(&mut summary, r) },
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
        let wait = if tasks.is_empty() {
            Duration::from_millis(500)
        } else {
            Duration::ZERO
        };
        let msgs = tokio::select! {
            m = queue.receive(free, cfg.lease, wait) => m,
            _ = control.stop.changed() => continue,
        };
        match msgs {
            Ok(msgs) if !msgs.is_empty() => {
                idle_backoff = Duration::from_millis(50);
                for m in msgs {
                    next_id += 1;
                    let worker = format!("{}#{next_id}", owner_id());
                    tasks.spawn(handle(
                        engine.clone(),
                        queue.clone(),
                        done.clone(),
                        cfg.clone(),
                        m,
                        worker,
                    ));
                }
            }
            Ok(_) => {
                if !tasks.is_empty() {
                    tokio::select! {
                        r = tasks.join_next() => if let Some(r) = r { account(&mut summary, r) },
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
    while let Some(r) = tasks.join_next().await {
        account(&mut summary, r);
    }
    flusher.abort();
    done.flush().await;
    summary
}

enum TaskResult {
    Acked,
    Failed { given_up: bool },
    Other,
}

fn account(s: &mut RunnerSummary, r: Result<TaskResult, tokio::task::JoinError>) {
    match r {
        Ok(TaskResult::Acked) => s.acked += 1,
        Ok(TaskResult::Failed { given_up }) => {
            s.failed_attempts += 1;
            s.given_up += given_up as u64;
        }
        Ok(TaskResult::Other) => {}
        Err(e) if e.is_panic() => {
            tracing::error!(error = %e, "A job task panicked; its message will be delivered again.")
        }
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
    let job = match Job::parse(&msg.body) {
        Ok(j) => j,
        Err(e) => {
            if msg.receives == 1 {
                tracing::error!(message_id = %msg.id, error = %e, "Poison message: not a job; leaving it to the dead-letter queue.");
            }
            let _ = queue.nack(&msg.receipt, Duration::ZERO, &e.to_string()).await;
            return TaskResult::Other;
        }
    };
    let rk = engine.record_key(&job.dest.key);
    let heartbeat = {
        let (queue, engine, receipt, rk, worker) = (
            queue.clone(),
            engine.clone(),
            msg.receipt.clone(),
            rk.clone(),
            worker.clone(),
        );
        let lease = cfg.lease;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                if let Err(e) = queue.extend(&receipt, lease).await {
                    tracing::warn!(error = %e, "Could not extend the message lease.");
                }
                // The object lease exists only once claimed; a lost lease surfaces in the engine.
                let _ = engine.state().renew(&rk, &worker, lease).await;
            }
        })
    };
    let result = engine.run_job(&job, &worker).await;
    heartbeat.abort();
    let state = engine.state().clone();
    match result {
        Ok(JobOutcome::Busy { until }) => {
            let wait = Duration::from_millis((until - ferry_core::now_millis()).clamp(1000, 60_000) as u64);
            let _ = queue
                .nack(&msg.receipt, wait, "another worker holds the object's lease")
                .await;
            TaskResult::Other
        }
        Ok(outcome) => {
            let delta = match outcome {
                JobOutcome::Transferred { bytes } => RunCounters {
                    done: 1,
                    bytes,
                    ..Default::default()
                },
                JobOutcome::Identical => RunCounters {
                    identical: 1,
                    ..Default::default()
                },
                JobOutcome::Deleted => RunCounters {
                    done: 1,
                    ..Default::default()
                },
                _ => RunCounters::default(),
            };
            done.push(msg.receipt.clone(), &job.run, delta);
            TaskResult::Acked
        }
        Err(e) => {
            let text = e.to_string();
            let given_up = msg.receives >= cfg.max_receives;
            JobFailed {
                key: &job.dest.key,
                error_code: e.code(),
                will_retry: !given_up,
                error: &text,
            }
            .emit();
            if given_up {
                engine.stats.failed.fetch_add(1, Ordering::Relaxed);
                let fail = Outcome {
                    status: Status::Failed,
                    src_etag: None,
                    dest_etag: None,
                    error: Some(text.clone()),
                };
                if let ferry_core::state::Claim::Acquired(_) = state
                    .claim(&rk, &worker, &job.run, cfg.lease)
                    .await
                    .unwrap_or(ferry_core::state::Claim::Busy {
                        worker: String::new(),
                        until: 0,
                    })
                {
                    let _ = state.finish(&rk, &worker, &fail).await;
                }
                let _ = state
                    .run_add(
                        &job.run,
                        RunCounters {
                            failed: 1,
                            ..Default::default()
                        },
                    )
                    .await;
            }
            let delay = if e.is_retryable() && !given_up {
                Duration::from_millis((500u64 << msg.receives.min(7)).min(60_000))
            } else {
                Duration::ZERO
            };
            let _ = queue.nack(&msg.receipt, delay, &text).await;
            TaskResult::Failed { given_up }
        }
    }
}
