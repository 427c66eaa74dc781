//! [`EmbeddedQueue`]: the job queue in the embedded SQLite file.
//!
//! A message row is `ready` or `dead`. Receiving picks ready rows whose
//! `visible_at` has passed, increments `receives`, hides them for the lease and
//! records the receiving process (`host:pid`). A receipt is `id:receives`, so
//! only the latest delivery can acknowledge, extend or give back a message.
//! Claims held by a process of this host that no longer runs are released at
//! once, so a crashed process's jobs need not wait for their lease. A row
//! received `max_receives` times without acknowledgement becomes `dead`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, TransactionBehavior};

use super::{JobQueue, Message, QueueError, QueueStats, SendFailure};
use crate::db::{owner_id, owner_is_dead, Db};
use crate::now_millis;

/// The embedded queue. Clones share the file.
#[derive(Debug, Clone)]
pub struct EmbeddedQueue {
    db: Db,
    max_receives: u32,
    /// Wakes receivers of this process when jobs are sent or released here;
    /// other processes' sends are seen by polling.
    arrived: Arc<tokio::sync::Notify>,
}

impl EmbeddedQueue {
    /// A queue in `db` that parks a message as dead after `max_receives` deliveries.
    pub fn new(db: Db, max_receives: u32) -> Self {
        Self {
            db,
            max_receives: max_receives.max(1),
            arrived: Arc::default(),
        }
    }

    fn parse(&self, receipt: &str) -> Result<(i64, i64), QueueError> {
        receipt
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| QueueError::BadReceipt {
                queue: self.describe(),
                receipt: receipt.into(),
            })
    }

    fn lost(&self, receipt: &str) -> QueueError {
        QueueError::LeaseLost {
            queue: self.describe(),
            receipt: receipt.into(),
        }
    }

    /// Dead messages with their last error, oldest first.
    pub async fn dead(&self, limit: usize) -> Result<Vec<(String, Option<String>)>, QueueError> {
        Ok(self
            .db
            .call(move |c| {
                let mut st =
                    c.prepare_cached("SELECT body, last_error FROM jobs WHERE state='dead' ORDER BY id LIMIT ?1")?;
                let rows = st.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            })
            .await?)
    }

    /// Deletes every dead message; returns how many.
    pub async fn purge_dead(&self) -> Result<usize, QueueError> {
        Ok(self
            .db
            .call(|c| c.prepare_cached("DELETE FROM jobs WHERE state='dead'")?.execute([]))
            .await?)
    }

    async fn receive_once(&self, max: usize, lease: Duration) -> Result<Vec<Message>, QueueError> {
        let max_receives = self.max_receives as i64;
        let lease_ms = lease.as_millis() as i64;
        let me = owner_id();
        Ok(self
            .db
            .call(move |c| {
                let now = now_millis();
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let owners: Vec<String> = {
                    let mut st = tx.prepare_cached(
                        "SELECT DISTINCT owner FROM jobs WHERE state='ready' AND owner IS NOT NULL AND visible_at > ?1",
                    )?;
                    let rows = st.query_map([now], |r| r.get(0))?;
                    rows.collect::<rusqlite::Result<_>>()?
                };
                for o in owners.iter().filter(|o| owner_is_dead(o)) {
                    tx.prepare_cached("UPDATE jobs SET visible_at=?1, owner=NULL WHERE owner=?2 AND state='ready'")?.execute( params![now, o])?;
                }
                let mut out = Vec::new();
                {
                    let mut st = tx.prepare_cached(
                        "SELECT id, body, receives, enqueued_at FROM jobs WHERE state='ready' AND visible_at <= ?1 ORDER BY visible_at, id LIMIT ?2",
                    )?;
                    type Row = (i64, String, i64, Option<i64>);
                    let rows: Vec<Row> = st
                        .query_map(params![now, (max * 2) as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                        .collect::<rusqlite::Result<_>>()?;
                    for (id, body, receives, sent_at) in rows {
                        if out.len() >= max {
                            break;
                        }
                        if receives >= max_receives {
                            tx.prepare_cached("UPDATE jobs SET state='dead', owner=NULL WHERE id=?1")?.execute( [id])?;
                            continue;
                        }
                        let n = receives + 1;
                        tx.prepare_cached("UPDATE jobs SET receives=?1, visible_at=?2, owner=?3 WHERE id=?4")?.execute(
                            params![n, now + lease_ms, me, id],
                        )?;
                        out.push(Message { receipt: format!("{id}:{n}"), id: id.to_string(), body, receives: n as u32, sent_at });
                    }
                }
                tx.commit()?;
                Ok(out)
            })
            .await?)
    }

    async fn update(&self, receipt: &str, sql: &'static str, a: i64, b: Option<String>) -> Result<(), QueueError> {
        let (id, n) = self.parse(receipt)?;
        let changed = self
            .db
            .call(move |c| c.prepare_cached(sql)?.execute(params![a, b, id, n]))
            .await?;
        if changed == 0 {
            return Err(self.lost(receipt));
        }
        Ok(())
    }
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    fn describe(&self) -> String {
        format!("embedded queue {}", self.db.path().display())
    }

    fn max_batch(&self) -> usize {
        1000
    }

    async fn max_receives(&self) -> Result<Option<u32>, QueueError> {
        Ok(Some(self.max_receives))
    }

    async fn send_batch(&self, bodies: &[String]) -> Result<Vec<Result<(), SendFailure>>, QueueError> {
        let bodies = bodies.to_vec();
        let n = bodies.len();
        self.db
            .call(move |c| {
                let now = now_millis();
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut st =
                        tx.prepare_cached("INSERT INTO jobs(body, visible_at, enqueued_at) VALUES (?1, ?2, ?2)")?;
                    for b in &bodies {
                        st.execute(params![b, now])?;
                    }
                }
                tx.commit()
            })
            .await?;
        self.arrived.notify_waiters();
        Ok(vec![Ok(()); n])
    }

    async fn receive(&self, max: usize, lease: Duration, wait: Duration) -> Result<Vec<Message>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got = self.receive_once(max, lease).await?;
            if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(got);
            }
            let nap = Duration::from_millis(50).min(deadline - tokio::time::Instant::now());
            tokio::select! {
                _ = self.arrived.notified() => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn extend(&self, receipt: &str, lease: Duration) -> Result<(), QueueError> {
        let until = now_millis() + lease.as_millis() as i64;
        self.update(
            receipt,
            "UPDATE jobs SET visible_at=?1, last_error=COALESCE(?2, last_error) WHERE id=?3 AND receives=?4 AND state='ready'",
            until,
            None,
        )
        .await
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        let (id, n) = self.parse(receipt)?;
        let changed = self
            .db
            .call(move |c| {
                c.prepare_cached("DELETE FROM jobs WHERE id=?1 AND receives=?2")?
                    .execute(params![id, n])
            })
            .await?;
        if changed == 0 {
            return Err(self.lost(receipt));
        }
        Ok(())
    }

    async fn ack_many(&self, receipts: &[String]) -> Vec<Result<(), QueueError>> {
        let parsed: Vec<Result<(i64, i64), QueueError>> = receipts.iter().map(|r| self.parse(r)).collect();
        let ids: Vec<Option<(i64, i64)>> = parsed.iter().map(|p| p.as_ref().ok().copied()).collect();
        let changed = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                let mut changed = Vec::with_capacity(ids.len());
                {
                    let mut st = tx.prepare_cached("DELETE FROM jobs WHERE id=?1 AND receives=?2")?;
                    for id in &ids {
                        changed.push(match id {
                            Some((id, n)) => st.execute(params![id, n])?,
                            None => 0,
                        });
                    }
                }
                tx.commit()?;
                Ok(changed)
            })
            .await;
        match changed {
            Ok(changed) => parsed
                .into_iter()
                .zip(changed)
                .zip(receipts)
                .map(|((p, n), r)| match p {
                    Err(e) => Err(e),
                    Ok(_) if n == 0 => Err(self.lost(r)),
                    Ok(_) => Ok(()),
                })
                .collect(),
            // The batch failed as a whole: one by one, each with its own answer.
            Err(_) => {
                let mut out = Vec::with_capacity(receipts.len());
                for r in receipts {
                    out.push(self.ack(r).await);
                }
                out
            }
        }
    }

    async fn nack(&self, receipt: &str, delay: Duration, error: &str) -> Result<(), QueueError> {
        let at = now_millis() + delay.as_millis() as i64;
        self.update(
            receipt,
            "UPDATE jobs SET visible_at=?1, owner=NULL, last_error=?2 WHERE id=?3 AND receives=?4 AND state='ready'",
            at,
            Some(error.to_string()),
        )
        .await
    }

    async fn requeue(&self, msg: &Message) -> Result<(), QueueError> {
        self.update(
            &msg.receipt,
            "UPDATE jobs SET receives=0, visible_at=?1, owner=NULL, last_error=COALESCE(?2, last_error) WHERE id=?3 AND receives=?4 AND state='ready'",
            now_millis(),
            None,
        )
        .await?;
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn dead_letter(&self, msg: &Message, error: &str) -> Result<(), QueueError> {
        self.update(
            &msg.receipt,
            "UPDATE jobs SET state='dead', visible_at=?1, owner=NULL, last_error=?2 WHERE id=?3 AND receives=?4 AND state='ready'",
            now_millis(),
            Some(error.to_string()),
        )
        .await
    }

    async fn redrive_dead(&self) -> Result<u64, QueueError> {
        let n = self
            .db
            .call(|c| {
                c.prepare_cached(
                    "UPDATE jobs SET state='ready', receives=0, visible_at=?1, owner=NULL WHERE state='dead'",
                )?
                .execute([now_millis()])
            })
            .await?;
        self.arrived.notify_waiters();
        Ok(n as u64)
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        Ok(self
            .db
            .call(|c| {
                let now = now_millis();
                c.prepare_cached("SELECT COALESCE(SUM(state='ready' AND visible_at<=?1),0), COALESCE(SUM(state='ready' AND visible_at>?1),0), \
                     COALESCE(SUM(state='dead'),0) FROM jobs")?.query_row(
                    [now],
                    |r| Ok(QueueStats { ready: r.get::<_, i64>(0)? as u64, in_flight: r.get::<_, i64>(1)? as u64, dead: r.get::<_, i64>(2)? as u64 }),
                )
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::conformance;

    #[tokio::test]
    async fn conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let q = EmbeddedQueue::new(Db::open(&dir.path().join("q.sqlite")).unwrap(), 3);
        conformance::queue_redelivery(&q, true).await;
        let q = EmbeddedQueue::new(Db::open(&dir.path().join("q2.sqlite")).unwrap(), 3);
        conformance::queue_dead_letter(&q, 3).await;
        let q = EmbeddedQueue::new(Db::open(&dir.path().join("q3.sqlite")).unwrap(), 3);
        conformance::queue_batches(&q).await;
        let q = EmbeddedQueue::new(Db::open(&dir.path().join("q4.sqlite")).unwrap(), 3);
        conformance::queue_requeue_and_redrive(&q, 3).await;
    }

    #[tokio::test]
    async fn claims_of_a_dead_process_are_released_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("q.sqlite")).unwrap();
        let q = EmbeddedQueue::new(db.clone(), 3);
        q.send_batch(&["x".into()]).await.unwrap();
        let got = q.receive(1, Duration::from_secs(3600), Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        // Pretend the claim belongs to a process of this host that has exited.
        let host = owner_id().rsplit_once(':').unwrap().0.to_string();
        db.call(move |c| {
            c.prepare_cached("UPDATE jobs SET owner=?1")?
                .execute([format!("{host}:999999999")])
        })
        .await
        .unwrap();
        let again = q.receive(1, Duration::from_secs(60), Duration::ZERO).await.unwrap();
        assert_eq!(again.len(), 1, "a dead owner's claim is released");
    }
}
