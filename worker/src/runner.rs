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
//! ([`task::spent_by_churn`]). A message that is not a job is logged and
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

mod task;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::events::{parse_message, EventContext};
use ferry_core::lease::LeaseHolder;
use ferry_core::queue::{JobQueue, Message};
use ferry_core::retry::{Backoff, BackoffConfig};
use ferry_core::state::RecordKey;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::completions::Completions;
use crate::engine::Engine;
use task::{Task, TaskEnd};

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
    /// see [`task::spent_by_churn`]).
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
pub async fn run(engine: Arc<Engine>, queue: Arc<dyn JobQueue>, cfg: RunnerConfig, control: Control) -> RunnerSummary {
    let done = Completions::new(queue.clone(), engine.state().clone());
    let flusher = tokio::spawn(done.clone().run());
    let mut l = Loop {
        task: Task {
            engine,
            queue,
            done,
            cfg,
        },
        control,
        tasks: JoinSet::new(),
        running: HashMap::new(),
        summary: RunnerSummary::default(),
        next_slot: 0,
        idle_backoff: Duration::from_millis(50),
        receive_backoff: Backoff::new(receive_backoff()),
    };
    while !*l.control.stop.borrow() {
        l.reap();
        if !l.has_room() {
            l.wait_one().await;
            continue;
        }
        if l.drained().await {
            break;
        }
        l.receive().await;
    }
    l.stop().await;
    // Flush first: it waits for a flush the flusher has under way, which an
    // abort would cut between taking the receipts and acknowledging them.
    // Nothing is pushed after this, so the flusher has nothing left to lose.
    l.task.done.flush().await;
    flusher.abort();
    if !l.running.is_empty() {
        let stopped = l.running.into_values().collect();
        release(&l.task.engine, &l.task.queue, stopped).await;
    }
    l.summary
}

/// Backoff of a failing receive: from 1 s up to 20 s.
fn receive_backoff() -> BackoffConfig {
    BackoffConfig {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(20),
    }
}

/// The loop's state: running job tasks and what to release if they stop.
struct Loop {
    task: Task,
    control: Control,
    tasks: JoinSet<TaskEnd>,
    running: HashMap<tokio::task::Id, Running>,
    summary: RunnerSummary,
    next_slot: u64,
    idle_backoff: Duration,
    receive_backoff: Backoff,
}

impl Loop {
    /// Accounts for the tasks that ended.
    fn reap(&mut self) {
        while let Some(r) = self.tasks.try_join_next_with_id() {
            account(&mut self.summary, &mut self.running, r);
        }
    }

    /// Whether a receive is worth making: while jobs run, only once a whole
    /// batch fits (each receive is a paid request on SQS, and a few free
    /// slots would take a few messages per request).
    fn has_room(&self) -> bool {
        let free = self.free();
        let batch = self.task.queue.max_batch().clamp(1, 10).min(self.task.cfg.workers);
        free > 0 && (self.tasks.is_empty() || free >= batch)
    }

    fn free(&self) -> usize {
        self.task.cfg.workers.saturating_sub(self.tasks.len())
    }

    /// Waits for a task to end, or for a stop.
    async fn wait_one(&mut self) {
        tokio::select! {
            r = self.tasks.join_next_with_id() => if let Some(r) = r { account(&mut self.summary, &mut self.running, r) },
            _ = self.control.stop.changed() => {}
        }
    }

    /// In drain mode, whether everything was queued and no job is left: the
    /// loop ends as soon as it is, without waiting out a receive.
    async fn drained(&mut self) -> bool {
        let producer_done = self
            .control
            .producer_done
            .as_ref()
            .is_some_and(|d| d.load(Ordering::SeqCst));
        if !producer_done || !self.tasks.is_empty() {
            return false;
        }
        self.task.done.flush().await;
        match self.task.queue.stats().await {
            Ok(s) => s.live() == 0,
            Err(e) => {
                tracing::warn!(error = %e, "Could not read the queue's counts.");
                false
            }
        }
    }

    /// How long a receive waits for its first message: long when idle as a
    /// daemon, briefly while a producer lists (its end is noticed within one
    /// short wait), not at all while jobs run.
    fn receive_wait(&self) -> Duration {
        match (self.tasks.is_empty(), self.control.producer_done.is_some()) {
            (false, _) => Duration::ZERO,
            (true, false) => IDLE_POLL,
            (true, true) => Duration::from_millis(100),
        }
    }

    /// Receives messages into the free slots and starts their tasks.
    async fn receive(&mut self) {
        let wait = self.receive_wait();
        let asked = tokio::time::Instant::now();
        let queue = self.task.queue.clone();
        let receive = queue.receive(self.free(), self.task.cfg.lease, wait);
        tokio::pin!(receive);
        let msgs = tokio::select! {
            m = &mut receive => m,
            _ = self.control.stop.changed() => {
                // A receive dropped mid-poll may still take messages on the server,
                // hidden for a lease and counted as delivered, unseen by any worker.
                // Finish it and give back what it took.
                if let Ok(got) = receive.await {
                    give_back(&queue, got).await;
                }
                return;
            }
        };
        match msgs {
            Ok(msgs) if !msgs.is_empty() => {
                self.idle_backoff = Duration::from_millis(50);
                self.receive_backoff = Backoff::new(receive_backoff());
                for m in msgs {
                    self.start(m);
                }
            }
            Ok(_) => self.idle(asked, wait).await,
            Err(e) => {
                let d = self.receive_backoff.next_delay();
                tracing::warn!(error = %e, delay_ms = d.as_millis() as u64, "Receiving from the queue failed; retrying.");
                tokio::time::sleep(d).await;
            }
        }
    }

    /// Starts the task of one message.
    fn start(&mut self, m: Message) {
        self.next_slot += 1;
        // The message id is part of the holder: a lease held under this very
        // message (by a worker that died) is not a duplicate's (see `Engine`).
        let holder = LeaseHolder::new(self.next_slot, &m.id);
        let record = parse_message(&m.body, &self.task.cfg.events)
            .ok()
            .and_then(|p| p.jobs.first().map(|j| self.task.engine.record_key(&j.dest.key)));
        let delivered = m.clone();
        let h = self.tasks.spawn(self.task.clone().handle(m, holder.clone()));
        self.running.insert(
            h.id(),
            Running {
                msg: delivered,
                record,
                holder,
            },
        );
    }

    /// After an empty receive: a queue that answers at once (SQS rounds
    /// short waits down to no wait) is not asked again in a tight loop, and
    /// while jobs run the loop waits for one of them a growing while.
    async fn idle(&mut self, asked: tokio::time::Instant, wait: Duration) {
        if self.tasks.is_empty() {
            if asked.elapsed() < wait / 2 {
                tokio::time::sleep(wait / 2).await;
            }
            return;
        }
        tokio::select! {
            r = self.tasks.join_next_with_id() => if let Some(r) = r { account(&mut self.summary, &mut self.running, r) },
            _ = tokio::time::sleep(self.idle_backoff) => {}
            _ = self.control.stop.changed() => {}
        }
        self.idle_backoff = (self.idle_backoff * 2).min(Duration::from_millis(500));
    }

    /// On a stop: running jobs get the grace to finish, then are stopped
    /// (they stay in `running`, to be released).
    async fn stop(&mut self) {
        if *self.control.stop.borrow() && !self.tasks.is_empty() {
            let grace = self.task.cfg.grace;
            if !grace.is_zero() {
                tracing::info!(
                    jobs = self.tasks.len(),
                    grace_s = grace.as_secs_f64(),
                    "Stopping: letting running jobs finish."
                );
            }
            let deadline = tokio::time::sleep(grace);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    r = self.tasks.join_next_with_id() => match r {
                        Some(r) => account(&mut self.summary, &mut self.running, r),
                        None => break,
                    },
                    _ = &mut deadline => break,
                }
            }
            self.tasks.abort_all();
        }
        while let Some(r) = self.tasks.join_next_with_id().await {
            account(&mut self.summary, &mut self.running, r);
        }
    }
}

/// A job task in flight: what to release if it is stopped.
struct Running {
    msg: Message,
    record: Option<RecordKey>,
    holder: LeaseHolder,
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
            let _ = engine.state().release(rk, r.holder.as_str(), None).await;
        }
    }
    give_back(queue, stopped.into_iter().map(|r| r.msg).collect()).await;
}

/// Gives messages back at once as fresh ones (their delivery here is not
/// counted against them, see [`task::spent_by_churn`]); a message that cannot be
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

fn account(
    s: &mut RunnerSummary,
    running: &mut HashMap<tokio::task::Id, Running>,
    r: Result<(tokio::task::Id, TaskEnd), tokio::task::JoinError>,
) {
    match r {
        Ok((id, end)) => {
            running.remove(&id);
            match end {
                TaskEnd::Acked => s.acked += 1,
                TaskEnd::Failed { given_up } => {
                    s.failed_attempts += 1;
                    s.given_up += given_up as u64;
                }
                TaskEnd::GivenBack => {}
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
