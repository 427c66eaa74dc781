//! `ferry-finder verify SRC DEST`: an independent, full comparison of a
//! source and a destination — what `rclone check` is to rclone.
//!
//! Both sides are listed in key order and walked in lock step
//! ([`ferry_core::diff`]), so memory does not grow with the number of keys.
//! A key only at the source is **missing**, one only at the destination
//! **extra**. A key at both is compared by size, then by ETag when both
//! ETags are comparable MD5 forms (single-part, or multipart with the same
//! part count); otherwise — local files, multipart objects of different
//! part sizes, encrypted objects — both bodies are read in 16 MiB ranges and
//! their MD5s compared (`--size-only` skips that). Up to 8 objects are hashed
//! at once. Keys outside `--include`/`--exclude` are not checked.
//!
//! With `--compare checksum`, after the sizes the full-object checksums both
//! sides know decide ([`crate::compare::Judge::by_content`]: the MD5 of a
//! single-part ETag of an unencrypted object, S3's CRC-64/NVME, the
//! CRC-64/ECMA of OSS and COS, local files hashed in full — never from the
//! cache, this check is independent); bodies are read only where the sides
//! share no checksum.

use ferry_core::etag::ETag;
use std::sync::Arc;

use anyhow::Context;
use ferry_core::config::Settings;
use ferry_core::diff::{self, CompareMode, Decision, Entry, Evidence};
use ferry_core::state::StateStore;
use ferry_core::store::{GetOptions, ObjectStore};
use futures::stream::StreamExt;
use md5::{Digest, Md5};

use crate::compare::{Judge, Pair};

/// Prints a line to stdout; a closed stdout (`| head`) is not an error.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// How `verify` compares.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Compare sizes (and comparable ETags) only; never read bodies.
    pub size_only: bool,
    /// Compare full-object checksums first (`--compare checksum`).
    pub checksums: bool,
    /// How many differing keys of each kind to list.
    pub show: usize,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Keys at both sides found identical.
    pub identical: u64,
    /// Of those, compared by reading both bodies.
    pub hashed: u64,
    /// Bytes of the identical objects.
    pub bytes: u64,
    /// Keys only at the source.
    pub missing: Vec<String>,
    /// Keys only at the destination.
    pub extra: Vec<String>,
    /// Keys at both whose size, ETag or content differ, with the reason.
    pub different: Vec<(String, String)>,
    /// Counts (the lists above keep only the first keys).
    pub counts: (u64, u64, u64),
}

impl VerifyReport {
    /// Whether the sides match.
    pub fn matches(&self) -> bool {
        self.counts == (0, 0, 0)
    }
}

const CHUNK: u64 = 16 * 1024 * 1024;

/// The MD5 of a whole object, read in ranges.
async fn content_md5(store: &Arc<dyn ObjectStore>, e: &Entry) -> anyhow::Result<[u8; 16]> {
    let mut h = Md5::new();
    let mut at = 0;
    while at < e.meta.size || (at == 0 && e.meta.size == 0) {
        let end = (at + CHUNK).min(e.meta.size);
        let opts = GetOptions {
            range: (e.meta.size > 0).then_some(at..end),
            if_match: e.meta.etag.clone(),
            version: None,
        };
        let got = store
            .get(&e.meta.key, &opts)
            .await
            .with_context(|| format!("reading {:?}", e.meta.key))?;
        h.update(&got.body);
        if e.meta.size == 0 {
            break;
        }
        at = end;
    }
    Ok(h.finalize().into())
}

enum Check {
    Same { hashed: bool, bytes: u64 },
    Differ(String, String),
}

async fn compare(
    src: Arc<dyn ObjectStore>,
    dst: Arc<dyn ObjectStore>,
    judge: Option<&Judge>,
    s: Entry,
    d: Entry,
    size_only: bool,
) -> anyhow::Result<Check> {
    if s.meta.size != d.meta.size {
        let why = format!("size {} at the source, {} at the destination", s.meta.size, d.meta.size);
        return Ok(Check::Differ(s.rel, why));
    }
    if let Some(judge) = judge {
        let mut pair = Pair::new(s, d, Evidence::Content);
        let mut verdict = judge.by_content(&mut pair).await?;
        if verdict.is_none() {
            verdict = judge.by_ledger_checksum(&pair).await?;
        }
        let (s, d) = (pair.src, pair.dst);
        match verdict {
            Some(true) => {
                return Ok(Check::Same {
                    hashed: false,
                    bytes: s.meta.size,
                })
            }
            Some(false) => {
                let why = format!(
                    "checksums {} at the source, {} at the destination",
                    s.meta.content_checksums().describe(),
                    d.meta.content_checksums().describe()
                );
                return Ok(Check::Differ(s.rel, why));
            }
            None => return read_both(src, dst, s, d).await,
        }
    }
    if let (Some(a), Some(b)) = (&s.meta.etag, &d.meta.etag) {
        if ETag(a).comparable(b) {
            return Ok(if ETag(a).same(b) {
                Check::Same {
                    hashed: false,
                    bytes: s.meta.size,
                }
            } else {
                Check::Differ(s.rel, format!("ETag {a} at the source, {b} at the destination"))
            });
        }
    }
    if size_only {
        return Ok(Check::Same {
            hashed: false,
            bytes: s.meta.size,
        });
    }
    read_both(src, dst, s, d).await
}

/// Compares the MD5s of both bodies, read in ranges.
async fn read_both(src: Arc<dyn ObjectStore>, dst: Arc<dyn ObjectStore>, s: Entry, d: Entry) -> anyhow::Result<Check> {
    let (a, b) = tokio::try_join!(content_md5(&src, &s), content_md5(&dst, &d))?;
    Ok(if a == b {
        Check::Same {
            hashed: true,
            bytes: s.meta.size,
        }
    } else {
        Check::Differ(
            s.rel,
            format!(
                "content MD5 {} at the source, {} at the destination",
                hex::encode(a),
                hex::encode(b)
            ),
        )
    })
}

/// The stores a verification reads, and the ledger when there is one.
pub struct VerifyBackends {
    /// The source store.
    pub source: Arc<dyn ObjectStore>,
    /// The destination store.
    pub destination: Arc<dyn ObjectStore>,
    /// The job's ledger, for objects sent in parts whose sides share no
    /// checksum: its record of the CRC of the bytes copied.
    pub ledger: Option<Arc<dyn StateStore>>,
}

/// Compares the source and destination of `job`.
pub async fn verify(job: &Settings, b: &VerifyBackends, opts: &VerifyOptions) -> anyhow::Result<VerifyReport> {
    let filter = &job.filter;
    let (src, dst) = (&b.source, &b.destination);
    let (sp, dp) = (job.source.prefix().to_string(), job.destination.prefix().to_string());
    let s = diff::relative(src.list(&sp, None), sp.clone());
    let d = diff::relative(dst.list(&dp, None), dp.clone());
    // `None` compares existence only, so every pair present at both comes
    // back as identical and is checked here.
    let decisions = diff::diff(s, d, CompareMode::None);
    let judge = opts.checksums.then(|| {
        let part_size = job.transfer.part_size.as_u64();
        Judge::new(src.clone(), dst.clone(), job.destination.bucket(), part_size).with_ledger(b.ledger.clone())
    });
    // Directory markers (empty keys ending in '/') are not copied to a local
    // destination, so they are not missing there.
    let local_dest = job.destination.is_local();
    let mut report = VerifyReport::default();
    let remember = |v: &mut Vec<String>, k: &str, show: usize| {
        if v.len() < show {
            v.push(k.to_string());
        }
    };
    let checks = decisions
        .filter_map(|d| async move {
            match d {
                Ok(Decision::New(e)) if local_dest && e.rel.ends_with('/') && e.meta.size == 0 => None,
                Ok(Decision::Extra(e)) if !filter.matches(&e.rel) => None,
                Ok(Decision::New(src))
                | Ok(Decision::Identical { src, .. })
                | Ok(Decision::Changed { src, .. })
                | Ok(Decision::Unsure { src, .. })
                    if !filter.selects(&src.rel, &src.meta) =>
                {
                    None
                }
                other => Some(other),
            }
        })
        .map(|d| {
            let (src, dst) = (src.clone(), dst.clone());
            let size_only = opts.size_only;
            let judge = judge.as_ref();
            async move {
                match d {
                    Ok(Decision::New(e)) => Ok(Err((true, e.rel))),
                    Ok(Decision::Extra(e)) => Ok(Err((false, e.rel))),
                    Ok(Decision::Identical { src: s, dst: d })
                    | Ok(Decision::Changed { src: s, dst: d })
                    | Ok(Decision::Unsure { src: s, dst: d, .. }) => {
                        compare(src, dst, judge, s, d, size_only).await.map(Ok)
                    }
                    Err(e) => Err(anyhow::anyhow!("listing failed: {e}")),
                }
            }
        })
        .buffered(8);
    futures::pin_mut!(checks);
    while let Some(r) = checks.next().await {
        match r? {
            Err((true, rel)) => {
                report.counts.0 += 1;
                remember(&mut report.missing, &rel, opts.show);
            }
            Err((false, rel)) => {
                report.counts.1 += 1;
                remember(&mut report.extra, &rel, opts.show);
            }
            Ok(Check::Same { hashed, bytes }) => {
                report.identical += 1;
                report.hashed += hashed as u64;
                report.bytes += bytes;
            }
            Ok(Check::Differ(rel, why)) => {
                report.counts.2 += 1;
                if report.different.len() < opts.show {
                    report.different.push((rel, why));
                }
            }
        }
    }
    Ok(report)
}

/// Prints a report.
pub fn print(r: &VerifyReport) {
    let b = bytesize::ByteSize(r.bytes).display().iec().to_string();
    out!(
        "identical: {:>8} objects, {b} ({} compared by content)",
        r.identical,
        r.hashed
    );
    out!("missing:   {:>8} objects (only at the source)", r.counts.0);
    for k in &r.missing {
        out!("  missing {k}");
    }
    out!("extra:     {:>8} objects (only at the destination)", r.counts.1);
    for k in &r.extra {
        out!("  extra {k}");
    }
    out!("different: {:>8} objects", r.counts.2);
    for (k, why) in &r.different {
        out!("  different {k}: {why}");
    }
    out!(
        "{}",
        if r.matches() {
            "Verified: the destination matches the source."
        } else {
            "MISMATCH: the destination does not match the source."
        }
    );
}
