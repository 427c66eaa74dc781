//! The job queue seam.
//!
//! A [`JobQueue`] holds job messages (see [`crate::job`]) until a worker
//! acknowledges them. A received message is hidden for a lease; a message that
//! is not acknowledged before its lease ends is delivered again, and after a
//! configured number of deliveries it is parked as dead (the dead-letter queue)
//! with its last error. Backends: [`EmbeddedQueue`] (SQLite) and [`SqsQueue`].

#[cfg(any(test, feature = "testing"))]
#[allow(missing_docs)]
pub mod conformance;
mod embedded;
#[cfg(any(test, feature = "testing"))]
pub mod failing;
mod sqs;

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

pub use embedded::EmbeddedQueue;
pub use sqs::{Redrive, SqsQueue, SQS_MAX_BODY, SQS_MAX_HIDDEN};

use crate::db::DbError;

/// Errors of a queue call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The embedded database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The message's lease was lost: it was delivered to someone else or acknowledged.
    #[error("queue {queue}: the lease on message {receipt} was lost (delivered again elsewhere)")]
    LeaseLost {
        /// Queue description.
        queue: String,
        /// The receipt.
        receipt: String,
    },
    /// The queue service refused or failed a call.
    #[error("{queue}: {operation} failed: {message}")]
    Service {
        /// Queue description.
        queue: String,
        /// The call.
        operation: String,
        /// What the service said.
        message: String,
    },
    /// A receipt that this queue did not hand out.
    #[error("queue {queue}: malformed receipt {receipt:?}")]
    BadReceipt {
        /// Queue description.
        queue: String,
        /// The receipt.
        receipt: String,
    },
}

/// Why the queue refused one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendFailure {
    /// What kind of refusal: decides whether sending again can help.
    pub kind: SendFailureKind,
    /// What the queue said.
    pub message: String,
}

/// The kinds of [`SendFailure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailureKind {
    /// The message can never be sent as it is (too large, malformed):
    /// sending it again cannot help.
    Invalid,
    /// The queue could not take it now (throttling, an internal error).
    Transient,
}

impl SendFailure {
    /// A message the queue can never take as it is.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: SendFailureKind::Invalid,
            message: message.into(),
        }
    }

    /// A refusal that another try may not meet.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: SendFailureKind::Transient,
            message: message.into(),
        }
    }

    /// Whether sending the message again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind == SendFailureKind::Transient
    }
}

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Opaque handle for [`JobQueue::ack`], [`JobQueue::nack`] and [`JobQueue::extend`].
    pub receipt: String,
    /// A stable id of the message, for logs and lease names; kept when the
    /// message is requeued ([`JobQueue::requeue`]), so a requeued copy is
    /// known as the same message (not a duplicate) by the lease its
    /// predecessor's worker took.
    pub id: String,
    /// The body.
    pub body: String,
    /// How many times it has been delivered, this delivery included.
    pub receives: u32,
    /// When it was first sent, ms since the epoch, if the queue says.
    pub sent_at: Option<i64>,
}

/// Message counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Visible now.
    pub ready: u64,
    /// Hidden: leased to a worker or delayed after a failure.
    pub in_flight: u64,
    /// Parked as dead.
    pub dead: u64,
}

impl QueueStats {
    /// Messages that will still be delivered.
    pub fn live(&self) -> u64 {
        self.ready + self.in_flight
    }
}

/// A queue of job messages.
#[async_trait]
pub trait JobQueue: Send + Sync + Debug {
    /// A short description for messages.
    fn describe(&self) -> String;

    /// The most messages one [`send_batch`](Self::send_batch) accepts.
    fn max_batch(&self) -> usize;

    /// How long a message can stay hidden after it was received, at most;
    /// `None` when extensions are unlimited. The worker stops extending before
    /// this and lets the message be delivered again.
    fn max_hidden(&self) -> Option<Duration> {
        None
    }

    /// Deliveries after which the queue itself parks a message as dead
    /// (embedded: its setting; SQS: the redrive policy's `maxReceiveCount`,
    /// read once); `None` when the queue has no such limit.
    async fn max_receives(&self) -> Result<Option<u32>, QueueError>;

    /// Enqueues messages. The outer error means nothing is known to be sent;
    /// otherwise each entry reports its own outcome and the caller retries
    /// the failed ones that [`SendFailure::is_retryable`] allows.
    async fn send_batch(&self, bodies: &[String]) -> Result<Vec<Result<(), SendFailure>>, QueueError>;

    /// Receives up to `max` messages, waiting up to `wait` for the first one.
    /// Each is hidden from other receivers for `lease`.
    async fn receive(&self, max: usize, lease: Duration, wait: Duration) -> Result<Vec<Message>, QueueError>;

    /// Extends a message's lease to `lease` from now.
    async fn extend(&self, receipt: &str, lease: Duration) -> Result<(), QueueError>;

    /// Deletes a message after its work is durably done. A receipt whose lease
    /// was lost is [`QueueError::LeaseLost`] and the message stays.
    async fn ack(&self, receipt: &str) -> Result<(), QueueError>;

    /// Acknowledges several messages; one result per receipt, in order.
    /// Backends override it with one round trip.
    async fn ack_many(&self, receipts: &[String]) -> Vec<Result<(), QueueError>> {
        let mut out = Vec::with_capacity(receipts.len());
        for r in receipts {
            out.push(self.ack(r).await);
        }
        out
    }

    /// Gives a message back, visible again after `delay`, recording `error`.
    async fn nack(&self, receipt: &str, delay: Duration, error: &str) -> Result<(), QueueError>;

    /// Gives messages back at once without counting a failure (shutdown).
    async fn release_many(&self, receipts: &[String]) {
        for r in receipts {
            if let Err(e) = self.nack(r, Duration::ZERO, "worker stopped").await {
                tracing::warn!(error = %e, "Could not give a message back; it returns when its lease ends.");
            }
        }
    }

    /// Sends the message again as a new one, delivered at once with its
    /// receive count back at zero and the same [`Message::id`], then deletes
    /// this delivery. For a message
    /// whose deliveries were spent by workers that died or stopped, not by its
    /// own failures: the queue's delivery limit then never parks it as dead.
    /// A crash between the two steps leaves a duplicate, which is harmless.
    async fn requeue(&self, msg: &Message) -> Result<(), QueueError>;

    /// Parks the message as dead now, with `error` (the worker decided to
    /// give its job up), where [`redrive_dead`](Self::redrive_dead) finds it.
    async fn dead_letter(&self, msg: &Message, error: &str) -> Result<(), QueueError>;

    /// Sends every dead message back to the queue, as new messages; returns
    /// how many. For after the cause of the failures is fixed.
    async fn redrive_dead(&self) -> Result<u64, QueueError>;

    /// Current counts.
    async fn stats(&self) -> Result<QueueStats, QueueError>;
}

/// Batches [`JobQueueExt::send_all`] keeps in flight at once.
pub const SEND_BATCHES_IN_FLIGHT: usize = 16;

/// Conveniences over any [`JobQueue`].
#[async_trait]
pub trait JobQueueExt: JobQueue {
    /// Sends every body, in batches of [`max_batch`](JobQueue::max_batch),
    /// [`SEND_BATCHES_IN_FLIGHT`] batches at once, retrying every entry
    /// refused for a transient reason with backoff (none is dropped); fails
    /// when an entry can never be sent (too large), or still fails after
    /// `attempts` tries, naming the error.
    async fn send_all(&self, bodies: Vec<String>, attempts: u32) -> Result<(), String> {
        use futures::stream::{self, StreamExt};
        let mut pending = bodies;
        let mut backoff = crate::retry::Backoff::new(crate::retry::BackoffConfig::default());
        for attempt in 1..=attempts.max(1) {
            let chunks: Vec<Vec<String>> = pending
                .chunks(self.max_batch().max(1))
                .map(<[String]>::to_vec)
                .collect();
            type Sent = Result<Vec<Result<(), SendFailure>>, QueueError>;
            let outcomes: Vec<(Vec<String>, Sent)> = stream::iter(chunks)
                .map(|chunk| async move {
                    let r = self.send_batch(&chunk).await;
                    (chunk, r)
                })
                .buffer_unordered(SEND_BATCHES_IN_FLIGHT)
                .collect()
                .await;
            let mut failed = Vec::new();
            let mut last = String::new();
            for (chunk, outcome) in outcomes {
                match outcome {
                    Ok(results) => {
                        for (body, r) in chunk.iter().zip(results) {
                            match r {
                                Ok(()) => {}
                                Err(e) if !e.is_retryable() => {
                                    return Err(format!("{}: a message could not be queued: {e}", self.describe()))
                                }
                                Err(e) => {
                                    last = e.message;
                                    failed.push(body.clone());
                                }
                            }
                        }
                    }
                    Err(e) => {
                        last = e.to_string();
                        failed.extend(chunk.iter().cloned());
                    }
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            if attempt == attempts.max(1) {
                return Err(format!(
                    "{}: {} message(s) could not be queued: {last}",
                    self.describe(),
                    failed.len()
                ));
            }
            tracing::warn!(count = failed.len(), error = %last, "Retrying messages the queue refused.");
            tokio::time::sleep(backoff.next_delay()).await;
            pending = failed;
        }
        Ok(())
    }
}

impl<T: JobQueue + ?Sized> JobQueueExt for T {}
