//! Versioned sync: a source key's history replayed to a versioned
//! destination, oldest first, delete markers included (`--versions all`).
//!
//! A replay job names a key. Its worker:
//!
//! 1. lists the key's versions at the source (ListObjectVersions), from the
//!    version current at the job's `since` on;
//! 2. reads the ledger's record of each: bucket `DEST#versions`, key
//!    `KEY#v=VERSION`, holding the destination version it became. With
//!    every version recorded the job ends as identical;
//! 3. claims the object's lease, so one worker replays a key at a time;
//! 4. adopts a write an earlier attempt made but did not record: versions
//!    are recorded one by one right after they are written, so at most one
//!    can be unrecorded, and it is the destination's newest version. When
//!    that version is recorded for no source version and matches the next
//!    one to replay (a delete marker for a marker; otherwise the same size,
//!    and the same ETag where both are MD5s), it is recorded as that one;
//! 5. writes each version not recorded, in order: a delete marker by a
//!    DELETE, a version by the usual copy pinned to its version id
//!    (server-side when the job copies inside the store, else one PUT or
//!    parts, verified as any copy); then reads the destination's newest
//!    version and records the pair.
//!
//! A rerun therefore copies only versions added since, and a killed run
//! resumes at the version it was writing (its parts too, from the object's
//! record). The object's own record ends as for any copy: done with the
//! newest version's ETag, or deleted when the history ends in a marker.

use std::sync::atomic::Ordering;

use ferry_core::etag::ETag;
use ferry_core::job::{Job, Op};
use ferry_core::lease::LeaseHolder;
use ferry_core::state::{Claim, Outcome, RecordKey, Status};
use ferry_core::store::versions::{self, from_since, ObjectVersion};
use ferry_core::store::StoreError;

use super::multipart::Target;
use super::{server_side, Engine, EngineError, JobOutcome};

/// Whether a destination version holds what a source version does.
fn same_version(src: &ObjectVersion, dst: &ObjectVersion) -> bool {
    if src.delete_marker || dst.delete_marker {
        return src.delete_marker == dst.delete_marker;
    }
    let etags = match (src.etag.as_deref(), dst.etag.as_deref()) {
        (Some(a), Some(b)) if ETag(a).md5().is_some() && ETag(b).md5().is_some() => ETag(a).same(b),
        _ => true,
    };
    src.size == dst.size && etags
}

impl Engine {
    /// Runs a replay job (see the module docs).
    pub(super) async fn replay(&self, job: &Job, holder: &LeaseHolder) -> Result<JobOutcome, EngineError> {
        let worker = holder.as_str();
        let history = versions::history(self.src.clone(), &job.src.key)
            .await
            .map_err(EngineError::Source)?;
        let history = from_since(history, job.since);
        let vks: Vec<RecordKey> = history
            .iter()
            .map(|v| RecordKey::of_version(&self.dest_bucket, &job.dest.key, &v.version))
            .collect();
        let records = self.state.get_many(&vks).await?;
        let mut mapped: Vec<Option<String>> = records
            .into_iter()
            .map(|r| r.filter(|r| r.status == Status::Done).and_then(|r| r.dest_version))
            .collect();
        if mapped.iter().all(Option::is_some) {
            self.stats.identical.fetch_add(1, Ordering::Relaxed);
            return Ok(JobOutcome::Identical);
        }
        let rk = self.record_key(&job.dest.key);
        let newest_etag = history.last().and_then(|v| v.etag.clone());
        match self
            .state
            .claim(&rk, worker, &job.run, newest_etag.as_deref(), self.cfg.lease)
            .await?
        {
            Claim::Busy {
                until,
                etag,
                worker: other,
            } => return Ok(self.busy(job, holder, until, etag, &other)),
            Claim::Acquired(_) => {}
        }
        let r = self.replay_claimed(job, worker, &history, &vks, &mut mapped).await;
        match &r {
            Ok(_) => {
                let last = history.last();
                let o = match last.is_some_and(|v| v.delete_marker) {
                    true => Outcome::bare(Status::Deleted),
                    false => Outcome::done(newest_etag, last.and_then(|v| v.etag.clone())),
                };
                self.state.finish(&rk, worker, &o).await?;
            }
            Err(e) => {
                if let Err(se) = self.state.release(&rk, worker, Some(&e.to_string())).await {
                    tracing::warn!(error = %se, "Could not release the object lease after a failure.");
                }
            }
        }
        r
    }

    /// Steps 4 and 5, under the object's lease.
    async fn replay_claimed(
        &self,
        job: &Job,
        worker: &str,
        history: &[ObjectVersion],
        vks: &[RecordKey],
        mapped: &mut [Option<String>],
    ) -> Result<JobOutcome, EngineError> {
        let dkey = &job.dest.key;
        if let (Some(next), Some(newest)) = (mapped.iter().position(Option::is_none), self.dest_newest(dkey).await?) {
            let recorded = mapped.iter().flatten().any(|d| *d == newest.version);
            if !recorded && same_version(&history[next], &newest) {
                tracing::info!(key = %dkey, version = %history[next].version, "Adopting a version an earlier attempt wrote but did not record.");
                self.record_version(job, worker, &vks[next], &history[next], &newest)
                    .await?;
                mapped[next] = Some(newest.version);
            }
        }
        let mut bytes = 0;
        for (i, v) in history.iter().enumerate() {
            if mapped[i].is_some() {
                continue;
            }
            match self.write_version(job, worker, v).await {
                Ok(()) => {}
                Err(EngineError::Source(StoreError::NotFound { .. })) => {
                    tracing::info!(key = %job.src.key, version = %v.version, "A source version was deleted before it was replayed; skipped.");
                    continue;
                }
                Err(e) => return Err(e),
            }
            let written = self.dest_newest(dkey).await?.ok_or_else(|| EngineError::Verify {
                key: dkey.clone(),
                what: "destination version after a write",
                expected: v.version.clone(),
                found: "no version".into(),
            })?;
            if !same_version(v, &written) {
                return Err(EngineError::Verify {
                    key: dkey.clone(),
                    what: "newest destination version",
                    expected: format!("{} bytes (marker: {})", v.size, v.delete_marker),
                    found: format!("{} bytes (marker: {})", written.size, written.delete_marker),
                });
            }
            self.record_version(job, worker, &vks[i], v, &written).await?;
            mapped[i] = Some(written.version);
            bytes += v.size;
            self.stats.versions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(JobOutcome::Transferred { bytes })
    }

    /// Writes one source version as the destination's newest.
    async fn write_version(&self, job: &Job, worker: &str, v: &ObjectVersion) -> Result<(), EngineError> {
        let dkey = &job.dest.key;
        if v.delete_marker {
            return self.dst.delete(dkey).await.map_err(EngineError::Dest);
        }
        let mut one = job.clone();
        one.op = Op::Copy;
        one.src.version = Some(v.version.clone());
        (one.src.etag, one.src.size) = (v.etag.clone(), v.size);
        let rk = self.record_key(dkey);
        let pinned = (v.etag.clone(), v.size);
        let mut rec =
            self.state.get(&rk).await?.unwrap_or_else(|| {
                ferry_core::state::ObjectRecord::new(rk.clone(), &job.run, ferry_core::now_millis())
            });
        let r = match self
            .offer_server_side(&Target::of(&one, worker, &rk, &pinned), &rec)
            .await
        {
            server_side::Offered::Done(r) => r,
            offered => {
                if matches!(offered, server_side::Offered::FellBack) {
                    rec = self.state.get(&rk).await?.unwrap_or(rec);
                }
                self.stream(&one, worker, &rk, &rec, &pinned).await
            }
        };
        r?;
        // The upload (if any) is complete: the next version starts afresh.
        self.state.clear_upload(&rk, worker).await?;
        self.stats.objects.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The destination's newest version of `key` (a delete marker included).
    async fn dest_newest(&self, key: &str) -> Result<Option<ObjectVersion>, EngineError> {
        let page = self
            .dst
            .list_versions_page(key, None)
            .await
            .map_err(EngineError::Dest)?;
        Ok(page.versions.into_iter().find(|v| v.key == key))
    }

    /// Records that source version `v` became destination version `d`.
    async fn record_version(
        &self,
        job: &Job,
        worker: &str,
        vk: &RecordKey,
        v: &ObjectVersion,
        d: &ObjectVersion,
    ) -> Result<(), EngineError> {
        let run = format!("{}#versions", job.run);
        let o = Outcome::done(v.etag.clone(), d.etag.clone()).with_dest_version(Some(d.version.clone()));
        match self.state.claim_done(vk, worker, &run, &o, self.cfg.lease).await? {
            Claim::Acquired(_) => self.state.release(vk, worker, None).await?,
            Claim::Busy { worker: other, .. } => {
                return Err(EngineError::State(ferry_core::state::StateError::LeaseLost {
                    bucket: vk.bucket.clone(),
                    key: vk.key.clone(),
                    holder: other,
                }))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, t: i64, size: u64, marker: bool) -> ObjectVersion {
        ObjectVersion {
            key: "k".into(),
            version: id.into(),
            latest: false,
            delete_marker: marker,
            size,
            etag: (!marker).then(|| format!("\"{:032x}\"", size)),
            last_modified: Some(t),
        }
    }

    #[test]
    fn versions_match_by_kind_size_and_md5() {
        assert!(same_version(&v("a", 1, 5, false), &v("x", 9, 5, false)));
        assert!(!same_version(&v("a", 1, 5, false), &v("x", 9, 6, false)));
        assert!(!same_version(&v("a", 1, 0, true), &v("x", 9, 0, false)));
        assert!(same_version(&v("a", 1, 0, true), &v("x", 9, 0, true)));
    }
}
