//! A queue that fails on purpose, for tests: [`FailingQueue`] wraps any
//! queue and makes chosen calls fail a number of times, counting every call
//! by operation (the shape of [`crate::store::failing`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{JobQueue, Message, QueueError, QueueStats, SendFailure};

/// A queue operation, named as the trait method it stands for.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueOp {
    Send,
    Receive,
    Extend,
    Ack,
    Nack,
    Requeue,
    DeadLetter,
    Stats,
}

/// A queue that fails as told.
#[derive(Debug)]
pub struct FailingQueue {
    inner: Arc<dyn JobQueue>,
    state: Mutex<(HashMap<QueueOp, u32>, HashMap<QueueOp, u32>)>,
}

impl FailingQueue {
    /// Wraps `inner`, failing nothing until told.
    pub fn new(inner: Arc<dyn JobQueue>) -> Self {
        Self {
            inner,
            state: Mutex::default(),
        }
    }

    /// Makes the next `times` calls of `op` fail with a service error.
    pub fn fail(&self, op: QueueOp, times: u32) {
        *self.lock().1.entry(op).or_default() += times;
    }

    /// How many times `op` was called.
    pub fn calls(&self, op: QueueOp) -> u32 {
        self.lock().0.get(&op).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<QueueOp, u32>, HashMap<QueueOp, u32>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self, op: QueueOp) -> Result<(), QueueError> {
        let mut st = self.lock();
        *st.0.entry(op).or_default() += 1;
        match st.1.get_mut(&op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Err(QueueError::Service {
                    queue: self.inner.describe(),
                    operation: format!("{op:?}"),
                    message: "an injected failure".into(),
                })
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl JobQueue for FailingQueue {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }

    fn max_hidden(&self) -> Option<Duration> {
        self.inner.max_hidden()
    }

    async fn max_receives(&self) -> Result<Option<u32>, QueueError> {
        self.inner.max_receives().await
    }

    async fn send_batch(&self, bodies: &[String]) -> Result<Vec<Result<(), SendFailure>>, QueueError> {
        self.check(QueueOp::Send)?;
        self.inner.send_batch(bodies).await
    }

    async fn receive(&self, max: usize, lease: Duration, wait: Duration) -> Result<Vec<Message>, QueueError> {
        self.check(QueueOp::Receive)?;
        self.inner.receive(max, lease, wait).await
    }

    async fn extend(&self, receipt: &str, lease: Duration) -> Result<(), QueueError> {
        self.check(QueueOp::Extend)?;
        self.inner.extend(receipt, lease).await
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.check(QueueOp::Ack)?;
        self.inner.ack(receipt).await
    }

    async fn ack_many(&self, receipts: &[String]) -> Vec<Result<(), QueueError>> {
        if let Err(e) = self.check(QueueOp::Ack) {
            let msg = e.to_string();
            return receipts
                .iter()
                .map(|_| {
                    Err(QueueError::Service {
                        queue: self.inner.describe(),
                        operation: "Ack".into(),
                        message: msg.clone(),
                    })
                })
                .collect();
        }
        self.inner.ack_many(receipts).await
    }

    async fn nack(&self, receipt: &str, delay: Duration, error: &str) -> Result<(), QueueError> {
        self.check(QueueOp::Nack)?;
        self.inner.nack(receipt, delay, error).await
    }

    async fn release_many(&self, receipts: &[String]) {
        self.inner.release_many(receipts).await
    }

    async fn requeue(&self, msg: &Message) -> Result<(), QueueError> {
        self.check(QueueOp::Requeue)?;
        self.inner.requeue(msg).await
    }

    async fn dead_letter(&self, msg: &Message, error: &str) -> Result<(), QueueError> {
        self.check(QueueOp::DeadLetter)?;
        self.inner.dead_letter(msg, error).await
    }

    async fn redrive_dead(&self) -> Result<u64, QueueError> {
        self.inner.redrive_dead().await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.check(QueueOp::Stats)?;
        self.inner.stats().await
    }
}
