//! The walk of a versioned sync (`--versions all`): the source's versions
//! are listed in S3 order (ListObjectVersions: keys ascending, each key's
//! versions newest first) and grouped by key, one key's history in memory
//! at a time. A key whose newest version (from `--versions-at` on) the
//! ledger records as replayed is identical; any other is queued as one
//! replay job, which replays the versions not recorded yet, oldest first
//! (see the worker's `engine::replay`). The ledger is read once per batch
//! of keys.
//!
//! The destination must keep versions: replayed into a bucket without
//! versioning, every version would overwrite the one before.

use anyhow::{bail, Context};
use ferry_core::job::{Job, SrcRef};
use ferry_core::state::{RecordKey, Status};
use ferry_core::store::versions::{self, ObjectVersion};
use ferry_core::store::Versioning;
use futures::StreamExt;
use tokio::sync::watch;

use crate::walk::{Plan, Planner, Sink, Walk};
use crate::Interrupted;

/// Keys whose records are read together.
const BATCH: usize = 200;

/// Walks the source's histories under every prefix.
pub(crate) async fn walk(
    w: &Walk<'_>,
    prefixes: &[String],
    sink: Option<&Sink>,
    run: &str,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Plan> {
    let job = w.job;
    let since = match job.versions {
        ferry_core::config::VersionsMode::All { since } => since,
        ferry_core::config::VersionsMode::Latest => None,
    };
    check_destination(w).await?;
    let sp = job.source.prefix().to_string();
    let dest_bucket = job.destination.bucket();
    let mut planner = Planner::new(job, sink, run);
    let mut pending: Vec<(String, ObjectVersion)> = Vec::new();
    for p in prefixes {
        let listed = versions::all_versions(w.src.clone(), format!("{sp}{p}"));
        let mut keys = versions::by_key(listed);
        loop {
            let next = tokio::select! {
                n = keys.next() => n,
                _ = stop.changed() => bail!(Interrupted),
            };
            let Some(history) = next else { break };
            let history = history.map_err(|e| anyhow::anyhow!("listing the source's versions failed: {e}"))?;
            let Some(first) = history.first() else { continue };
            let rel = first.key.strip_prefix(sp.as_str()).unwrap_or(&first.key).to_string();
            let Some(newest) = ferry_core::store::versions::from_since(history, since).pop() else {
                continue;
            };
            if !job.filter.selects_at(&rel, newest.last_modified) {
                continue;
            }
            pending.push((rel, newest));
            if pending.len() >= BATCH {
                settle(w, &mut planner, &dest_bucket, since, &mut pending).await?;
            }
        }
    }
    settle(w, &mut planner, &dest_bucket, since, &mut pending).await?;
    planner.finish().await
}

/// Refuses a destination that does not keep versions.
async fn check_destination(w: &Walk<'_>) -> anyhow::Result<()> {
    let state = w
        .dst
        .versioning()
        .await
        .with_context(|| format!("--versions all: reading the versioning of {}", w.dst.describe()))?;
    if state != Versioning::Enabled {
        bail!(
            "--versions all: {} does not keep versions (versioning is {}): enable versioning on the bucket, or copy the latest versions only (--versions latest)",
            w.dst.describe(),
            if state == Versioning::Off { "off" } else { "suspended" }
        );
    }
    Ok(())
}

/// Queues a replay for each pending key whose newest version is not recorded.
async fn settle(
    w: &Walk<'_>,
    planner: &mut Planner<'_>,
    dest_bucket: &str,
    since: Option<i64>,
    pending: &mut Vec<(String, ObjectVersion)>,
) -> anyhow::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<RecordKey> = Vec::with_capacity(pending.len() * 2);
    for (rel, newest) in pending.iter() {
        let dkey = planner.dest_key(rel);
        keys.push(RecordKey::of_version(dest_bucket, &dkey, &newest.version));
        keys.push(RecordKey {
            bucket: dest_bucket.to_string(),
            key: dkey,
        });
    }
    let records = w.judge.ledger_get_many(&keys).await?;
    for ((rel, newest), recs) in pending.drain(..).zip(records.chunks(2)) {
        let replayed = recs[0]
            .as_ref()
            .is_some_and(|r| r.status == Status::Done && r.dest_version.is_some());
        if replayed {
            planner.identical();
            continue;
        }
        let src = SrcRef {
            key: newest.key.clone(),
            size: newest.size,
            etag: newest.etag.clone(),
            version: Some(newest.version.clone()),
        };
        let job = Job::replay(planner.run(), src, planner.dest_key(&rel), since);
        planner.replay(job, &rel, recs[1].is_some()).await?;
    }
    Ok(())
}
