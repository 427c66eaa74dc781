//! The ledger side of a job's end: a job given up is recorded, named and
//! its upload aborted; a lease held far ahead of this worker's clock is
//! reported once.

use std::sync::atomic::Ordering;

use ferry_core::job::Job;
use ferry_core::state::{Claim, Outcome, RecordKey, Status};

use super::{Engine, EngineError};

impl Engine {
    /// Aborts the upload the record of `rk` holds, if any: once the record
    /// forgets it (a final status), it would stay, billed and unseen. A failed
    /// abort is logged; `ferry-finder clean-uploads` removes what is left.
    pub(super) async fn abort_recorded_upload(&self, rk: &RecordKey) -> Result<(), EngineError> {
        if let Some(up) = self.state.get(rk).await?.and_then(|r| r.upload) {
            if up.upload_id.is_empty() {
                // The marker of an upload that may have been created unrecorded.
                return self.abort_unrecorded(&rk.key).await;
            }
            if let Err(e) = self.dst.abort_multipart(&rk.key, &up.upload_id).await {
                tracing::warn!(key = %rk.key, error = %e, "Could not abort an upload that is given up; clean-uploads removes it.");
            }
        }
        Ok(())
    }

    /// Ends a job for good after its failures (`Failed`, or `RestoreNeeded`
    /// for an archived source): takes the object's lease again (the failed
    /// attempt released it), aborts the recorded upload and records the
    /// status with `error`, so `status` names the object. `Busy` when another
    /// worker holds the object now: that worker decides.
    pub async fn give_up(&self, job: &Job, worker: &str, status: Status, error: &str) -> Result<bool, EngineError> {
        if job.op == ferry_core::job::Op::List {
            return self.give_up_list(job, worker, error).await;
        }
        let rk = self.record_key(&job.dest.key);
        match self
            .state
            .claim(&rk, worker, &job.run, job.src.etag.as_deref(), self.cfg.lease)
            .await?
        {
            Claim::Busy { .. } => return Ok(false),
            Claim::Acquired(_) => {}
        }
        self.abort_recorded_upload(&rk).await?;
        let outcome = Outcome {
            error: Some(error.to_string()),
            src_etag: job.src.etag.clone(),
            ..Outcome::bare(status)
        };
        self.state.finish(&rk, worker, &outcome).await?;
        Ok(true)
    }

    /// Warns once per process when a lease ends further ahead than twice this
    /// worker's lease: the holder's clock is ahead of this one's (or it runs a
    /// longer `--lease`). Leases compare the writers' clocks, so skew costs
    /// duplicated work (a lease judged lapsed too early is taken over; the
    /// former holder's next write fails its ownership check). Never a wrong
    /// object: every copy is pinned to its source ETag.
    pub(super) fn check_clock(&self, holder: &ferry_core::lease::LeaseHolder, until: i64) {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let ahead = until - ferry_core::now_millis();
        if ahead > 2 * self.cfg.lease.as_millis() as i64 && !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                holder = %holder,
                lease_ends_in_s = ahead / 1000,
                lease_s = self.cfg.lease.as_secs(),
                "A lease ends far later than this worker's lease allows: the holder's clock may be ahead of \
                 this machine's (or it uses a longer --lease). Keep the fleet's clocks in sync (NTP); \
                 skewed clocks cost duplicated work."
            );
        }
    }
}
