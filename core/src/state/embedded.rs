//! [`EmbeddedStateStore`]: object records and run counters in the embedded
//! SQLite file. Claims run in an immediate transaction (read the holder, then
//! write), every later write is conditional on `worker = me`.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{
    Claim, ClaimFor, ObjectRecord, Outcome, RecordKey, RunCounters, RunRecord, RunTally, StateError, StateStore,
    Status, UploadRecord,
};
use crate::db::{owner_is_dead, Db};
use crate::now_millis;
use crate::store::PartInfo;

/// The embedded state store. Clones share the file.
#[derive(Debug, Clone)]
pub struct EmbeddedStateStore {
    db: Db,
}

impl EmbeddedStateStore {
    /// A store in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

const COLS: &str = "bucket, key, status, run, src_etag, src_size, upload_id, part_size, attempts, worker, lease_until, dest_etag, last_error, updated_at, lease_etag, event_seq, checksum, dest_version";

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectRecord> {
    let upload_id: Option<String> = r.get(6)?;
    let src_etag: Option<String> = r.get(4)?;
    let upload = upload_id.map(|upload_id| -> rusqlite::Result<UploadRecord> {
        Ok(UploadRecord {
            upload_id,
            part_size: r.get::<_, Option<i64>>(7)?.unwrap_or(0) as u64,
            src_etag: src_etag.clone(),
            src_size: r.get::<_, Option<i64>>(5)?.unwrap_or(0) as u64,
        })
    });
    Ok(ObjectRecord {
        key: RecordKey {
            bucket: r.get(0)?,
            key: r.get(1)?,
        },
        status: Status::parse(&r.get::<_, String>(2)?).unwrap_or(Status::Failed),
        run: r.get(3)?,
        upload: upload.transpose()?,
        src_etag,
        parts: Vec::new(),
        attempts: r.get::<_, i64>(8)? as u32,
        worker: r.get(9)?,
        lease_etag: r.get(14)?,
        event_seq: r.get(15)?,
        lease_until: r.get(10)?,
        dest_etag: r.get(11)?,
        checksum: r.get(16)?,
        dest_version: r.get(17)?,
        last_error: r.get(12)?,
        updated_at: r.get(13)?,
    })
}

fn load(c: &rusqlite::Connection, key: &RecordKey) -> rusqlite::Result<Option<ObjectRecord>> {
    let rec = c
        .query_row(
            &format!("SELECT {COLS} FROM objects WHERE bucket=?1 AND key=?2"),
            params![key.bucket, key.key],
            row_to_record,
        )
        .optional()?;
    let Some(mut rec) = rec else { return Ok(None) };
    if let Some(up) = &rec.upload {
        let mut st = c.prepare_cached(
            "SELECT number, etag, size FROM parts WHERE bucket=?1 AND key=?2 AND upload_id=?3 ORDER BY number",
        )?;
        rec.parts = st
            .query_map(params![key.bucket, key.key, up.upload_id], |r| {
                Ok(PartInfo {
                    number: r.get::<_, i64>(0)? as u32,
                    etag: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(Some(rec))
}

impl EmbeddedStateStore {
    /// Runs a write that must be made while `worker` holds the lease.
    async fn owned<F>(&self, key: &RecordKey, worker: &str, f: F) -> Result<(), StateError>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()> + Send + 'static,
    {
        let (k, w) = (key.clone(), worker.to_string());
        let holder = self
            .db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let holder: Option<Option<String>> = tx
                    .query_row(
                        "SELECT worker FROM objects WHERE bucket=?1 AND key=?2",
                        params![k.bucket, k.key],
                        |r| r.get(0),
                    )
                    .optional()?;
                match holder {
                    Some(Some(h)) if h == w => {
                        f(&tx)?;
                        tx.commit()?;
                        Ok(None)
                    }
                    other => Ok(Some(other.flatten().unwrap_or_else(|| "nobody".into()))),
                }
            })
            .await?;
        match holder {
            None => Ok(()),
            Some(holder) => Err(StateError::LeaseLost {
                bucket: key.bucket.clone(),
                key: key.key.clone(),
                holder,
            }),
        }
    }
}

#[async_trait]
impl StateStore for EmbeddedStateStore {
    /// A claim, recording `done` in the same transaction when given.
    async fn claim_with(&self, key: &RecordKey, to: ClaimFor<'_>, done: Option<&Outcome>) -> Result<Claim, StateError> {
        let (worker, run, src_etag, lease) = (to.worker, to.run, to.src_etag, to.lease);
        let done = done.cloned();
        let (k, w, run) = (key.clone(), worker.to_string(), run.to_string());
        let etag = src_etag.map(str::to_string);
        let lease_ms = lease.as_millis() as i64;
        Ok(self
            .db
            .call(move |c| {
                let now = now_millis();
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let before = load(&tx, &k)?;
                if let Some(rec) = &before {
                    if let (Some(h), Some(until)) = (&rec.worker, rec.lease_until) {
                        if h != &w && until > now && !owner_is_dead(h) {
                            return Ok(Claim::Busy {
                                worker: h.clone(),
                                until,
                                etag: rec.lease_etag.clone(),
                            });
                        }
                    }
                }
                tx.prepare_cached(
                    "INSERT INTO objects(bucket, key, status, run, worker, lease_until, lease_etag, created_at, updated_at) \
                     VALUES (?1, ?2, 'in_progress', ?3, ?4, ?5, ?7, ?6, ?6) \
                     ON CONFLICT(bucket, key) DO UPDATE SET run=?3, worker=?4, lease_until=?5, lease_etag=?7, updated_at=?6",
                )?
                .execute(params![k.bucket, k.key, run, w, now + lease_ms, now, etag])?;
                if let Some(o) = &done {
                    tx.prepare_cached("DELETE FROM parts WHERE bucket=?1 AND key=?2")?
                        .execute(params![k.bucket, k.key])?;
                    tx.prepare_cached(
                        "UPDATE objects SET status=?1, src_etag=?2, dest_etag=?3, last_error=NULL, checksum=?7, dest_version=?8, \
                         upload_id=NULL, part_size=NULL, event_seq=COALESCE(?6, event_seq) WHERE bucket=?4 AND key=?5",
                    )?
                    .execute(params![
                        o.status.as_str(),
                        o.src_etag,
                        o.dest_etag,
                        k.bucket,
                        k.key,
                        o.event_seq,
                        o.checksum,
                        o.dest_version
                    ])?;
                }
                tx.commit()?;
                let rec = before.unwrap_or(ObjectRecord::new(k, &run, now));
                Ok(Claim::Acquired(Box::new(rec)))
            })
            .await?)
    }

    async fn renew(&self, key: &RecordKey, worker: &str, lease: Duration) -> Result<(), StateError> {
        let k = key.clone();
        let until = now_millis() + lease.as_millis() as i64;
        self.owned(key, worker, move |tx| {
            tx.prepare_cached("UPDATE objects SET lease_until=?1 WHERE bucket=?2 AND key=?3")?
                .execute(params![until, k.bucket, k.key])
                .map(|_| ())
        })
        .await
    }

    async fn begin_upload(&self, key: &RecordKey, worker: &str, upload: &UploadRecord) -> Result<(), StateError> {
        let (k, u) = (key.clone(), upload.clone());
        self.owned(key, worker, move |tx| {
            tx.prepare_cached("DELETE FROM parts WHERE bucket=?1 AND key=?2")?.execute( params![k.bucket, k.key])?;
            tx.prepare_cached("UPDATE objects SET status='in_progress', upload_id=?1, part_size=?2, src_etag=?3, src_size=?4, updated_at=?5 \
                 WHERE bucket=?6 AND key=?7")?.execute(
                params![u.upload_id, u.part_size as i64, u.src_etag, u.src_size as i64, now_millis(), k.bucket, k.key],
            )?;
            Ok(())
        })
        .await
    }

    async fn part_done(&self, key: &RecordKey, worker: &str, upload: &str, part: &PartInfo) -> Result<(), StateError> {
        let (k, id, p) = (key.clone(), upload.to_string(), part.clone());
        self.owned(key, worker, move |tx| {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO parts(bucket, key, upload_id, number, etag, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![k.bucket, k.key, id, p.number as i64, p.etag, p.size as i64])?;
            Ok(())
        })
        .await
    }

    async fn clear_upload(&self, key: &RecordKey, worker: &str) -> Result<(), StateError> {
        let k = key.clone();
        self.owned(key, worker, move |tx| {
            tx.prepare_cached("DELETE FROM parts WHERE bucket=?1 AND key=?2")?
                .execute(params![k.bucket, k.key])?;
            tx.prepare_cached(
                "UPDATE objects SET upload_id=NULL, part_size=NULL, updated_at=?1 WHERE bucket=?2 AND key=?3",
            )?
            .execute(params![now_millis(), k.bucket, k.key])?;
            Ok(())
        })
        .await
    }

    async fn finish(&self, key: &RecordKey, worker: &str, outcome: &Outcome) -> Result<(), StateError> {
        let (k, o) = (key.clone(), outcome.clone());
        self.owned(key, worker, move |tx| {
            // Every status finish records is final (a given-up job's upload is
            // aborted by the caller): the upload is forgotten and the attempts
            // start again from zero, should the job be sent again.
            tx.prepare_cached("DELETE FROM parts WHERE bucket=?1 AND key=?2")?
                .execute(params![k.bucket, k.key])?;
            tx.prepare_cached(
                "UPDATE objects SET status=?1, src_etag=COALESCE(?2, src_etag), dest_etag=?3, last_error=?4, \
                 worker=NULL, lease_until=NULL, lease_etag=NULL, updated_at=?5, \
                 upload_id=NULL, attempts=0, event_seq=COALESCE(?8, event_seq), checksum=?9, dest_version=?10 \
                 WHERE bucket=?6 AND key=?7",
            )?
            .execute(params![
                o.status.as_str(),
                o.src_etag,
                o.dest_etag,
                o.error,
                now_millis(),
                k.bucket,
                k.key,
                o.event_seq,
                o.checksum,
                o.dest_version
            ])?;
            Ok(())
        })
        .await
    }

    async fn release(&self, key: &RecordKey, worker: &str, error: Option<&str>) -> Result<(), StateError> {
        let (k, e) = (key.clone(), error.map(str::to_string));
        self.owned(key, worker, move |tx| {
            tx.prepare_cached("UPDATE objects SET status=CASE WHEN ?2 IS NULL THEN status ELSE 'in_progress' END, worker=NULL, lease_until=NULL, lease_etag=NULL, attempts=attempts + ?1, last_error=COALESCE(?2, last_error), \
                 updated_at=?3 WHERE bucket=?4 AND key=?5")?.execute(
                params![e.is_some() as i64, e, now_millis(), k.bucket, k.key],
            )?;
            Ok(())
        })
        .await
    }

    async fn get(&self, key: &RecordKey) -> Result<Option<ObjectRecord>, StateError> {
        let k = key.clone();
        Ok(self.db.call(move |c| load(c, &k)).await?)
    }

    async fn get_many(&self, keys: &[RecordKey]) -> Result<Vec<Option<ObjectRecord>>, StateError> {
        let keys = keys.to_vec();
        Ok(self
            .db
            .call(move |c| {
                let mut st = c.prepare_cached(&format!("SELECT {COLS} FROM objects WHERE bucket=?1 AND key=?2"))?;
                keys.iter()
                    .map(|k| st.query_row(params![k.bucket, k.key], row_to_record).optional())
                    .collect()
            })
            .await?)
    }

    async fn run_start(&self, run: &str) -> Result<(), StateError> {
        self.run_add(run, RunCounters::default()).await?;
        let run = run.to_string();
        self.db
            .call(move |c| {
                c.prepare_cached("UPDATE runs SET begun=1 WHERE id=?1")?
                    .execute(params![run])
            })
            .await?;
        Ok(())
    }

    async fn run_listed(&self, run: &str) -> Result<(), StateError> {
        let run = run.to_string();
        self.db
            .call(move |c| {
                c.prepare_cached("UPDATE runs SET listed_at=?1 WHERE id=?2")?
                    .execute(params![now_millis(), run])
            })
            .await?;
        Ok(())
    }

    async fn run_add(&self, run: &str, d: RunCounters) -> Result<(), StateError> {
        let run = run.to_string();
        self.db
            .call(move |c| {
                c.prepare_cached(
                    "INSERT INTO runs(id, started_at, found, enqueued, planned_bytes, identical, skipped, done, gone, failed, bytes) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT(id) DO UPDATE SET \
                     found=found+?3, enqueued=enqueued+?4, planned_bytes=planned_bytes+?5, identical=identical+?6, \
                     skipped=skipped+?7, done=done+?8, gone=gone+?9, failed=failed+?10, bytes=bytes+?11",
                )?
                .execute(params![
                    run,
                    now_millis(),
                    d.found as i64,
                    d.enqueued as i64,
                    d.planned_bytes as i64,
                    d.identical as i64,
                    d.skipped as i64,
                    d.done as i64,
                    d.gone as i64,
                    d.failed as i64,
                    d.bytes as i64
                ])
            })
            .await?;
        Ok(())
    }

    async fn run_get(&self, run: &str) -> Result<Option<RunRecord>, StateError> {
        let run = run.to_string();
        Ok(self
            .db
            .call(move |c| {
                c.prepare_cached(
                    "SELECT found, enqueued, planned_bytes, identical, skipped, done, gone, failed, bytes, \
                     started_at, listed_at FROM runs WHERE id=?1",
                )?
                .query_row([&run], |r| {
                    let mut counters = RunCounters::default();
                    for (i, (name, _)) in RunCounters::default().fields().iter().enumerate() {
                        counters.set(name, r.get::<_, i64>(i)? as u64);
                    }
                    Ok(RunRecord {
                        id: run.clone(),
                        counters,
                        started_at: r.get(9)?,
                        listed_at: r.get(10)?,
                    })
                })
                .optional()
            })
            .await?)
    }

    async fn latest_run(&self) -> Result<Option<String>, StateError> {
        Ok(self
            .db
            .call(|c| {
                c.prepare_cached("SELECT id FROM runs ORDER BY begun DESC, started_at DESC, id DESC LIMIT 1")?
                    .query_row([], |r| r.get(0))
                    .optional()
            })
            .await?)
    }

    async fn run_objects(&self, run: &str, status: Status, limit: usize) -> Result<Vec<ObjectRecord>, StateError> {
        let run = run.to_string();
        Ok(self
            .db
            .call(move |c| {
                let mut st = c.prepare(&format!(
                    "SELECT {COLS} FROM objects WHERE run=?1 AND status=?2 ORDER BY bucket, key LIMIT ?3"
                ))?;
                let rows = st.query_map(params![run, status.as_str(), limit as i64], row_to_record)?;
                rows.collect()
            })
            .await?)
    }

    async fn run_tally(&self, run: &str) -> Result<RunTally, StateError> {
        let run = run.to_string();
        let rows: Vec<(String, i64)> = self
            .db
            .call(move |c| {
                let mut st = c.prepare_cached("SELECT status, COUNT(*) FROM objects WHERE run=?1 GROUP BY status")?;
                let rows = st.query_map([run], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            })
            .await?;
        let mut t = RunTally::default();
        for (status, n) in rows {
            if let Some(s) = Status::parse(&status) {
                t.set(s, n as u64);
            }
        }
        Ok(t)
    }
}

/// A fleet-wide bandwidth limit in the embedded file: one row per queue
/// name, every reservation one immediate transaction.
#[async_trait]
impl crate::bandwidth::SharedBandwidth for EmbeddedStateStore {
    async fn fleet_limit(&self, name: &str) -> Result<Option<String>, StateError> {
        let name = name.to_string();
        let v = self
            .db
            .call(move |c| {
                c.query_row("SELECT limit_text FROM bandwidth WHERE name=?1", params![name], |r| {
                    r.get::<_, Option<String>>(0)
                })
                .optional()
            })
            .await?;
        Ok(v.flatten())
    }

    async fn set_fleet_limit(&self, name: &str, limit: Option<&str>) -> Result<(), StateError> {
        let (name, limit) = (name.to_string(), limit.map(str::to_string));
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO bandwidth(name, limit_text) VALUES(?1, ?2)
                     ON CONFLICT(name) DO UPDATE SET limit_text=excluded.limit_text",
                    params![name, limit],
                )
            })
            .await?;
        Ok(())
    }

    async fn reserve(&self, name: &str, bytes: u64, rate: u64, now_us: i64) -> Result<i64, StateError> {
        let name = name.to_string();
        let cost = crate::bandwidth::cost_us(bytes, rate);
        let tat = self
            .db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let was: i64 = tx
                    .query_row("SELECT tat_us FROM bandwidth WHERE name=?1", params![name], |r| {
                        r.get(0)
                    })
                    .optional()?
                    .unwrap_or(0);
                let tat = was.max(now_us).saturating_add(cost);
                tx.execute(
                    "INSERT INTO bandwidth(name, tat_us) VALUES(?1, ?2)
                     ON CONFLICT(name) DO UPDATE SET tat_us=excluded.tat_us",
                    params![name, tat],
                )?;
                tx.commit()?;
                Ok(tat)
            })
            .await?;
        Ok(tat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::conformance;

    #[tokio::test]
    async fn conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStateStore::new(Db::open(&dir.path().join("s.sqlite")).unwrap());
        conformance::lease_is_exclusive(&s, "bkt").await;
        conformance::run_counters_add_up(&s).await;
        conformance::runs_complete(&s).await;
        conformance::claim_done_records_under_the_lease(&s, "bkt").await;
        conformance::run_tally_counts_each_object_once(&s, "bkt").await;
        conformance::fleet_bandwidth_is_shared(&s).await;
    }
}
