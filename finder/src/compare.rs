//! Settling the pairs the listings cannot.
//!
//! The diff ([`ferry_core::diff`]) decides most keys from the listings alone:
//! a size that differs, ETags that are the same MD5, two local files with
//! the same size and modification time. What is left (an S3 side lists no
//! modification time, ETags are not comparable, the user asked for content)
//! comes here in batches, and the cheapest evidence that can decide is used
//! first:
//!
//! 1. **The ledger** (not for `--compare checksum`): the record of the
//!    destination key says which source version produced which destination
//!    version. When both are still the listed ones, nothing changed on either
//!    side. One batched read per batch, no store request; a second run over
//!    an unchanged tree ends here.
//! 2. **Modification times** (`mtime`): a HEAD of each S3 side gives the
//!    `mtime` metadata ferry and rclone write. The source's time falls back
//!    to when it was written; the destination's never does (an upload time
//!    says nothing about the content), so a destination without a recorded
//!    time goes on to content.
//! 3. **Content**: full-object checksums. A local file is hashed once (MD5,
//!    CRC-64/NVME and CRC-64/ECMA in one pass) and the result kept in the
//!    state file ([`FileHashes`]); an S3 side offers the MD5 of a single-part
//!    ETag, and its HEAD the CRC-64/NVME S3 keeps and the CRC-64/ECMA of OSS
//!    and COS. Part layouts do not matter to a full-object checksum.
//!
//! A pair no evidence decides is copied: never "identical" without proof.

use ferry_core::etag::ETag;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use ferry_core::checksum::{self, Checksums};
use ferry_core::diff::{Entry, Evidence};
use ferry_core::etag;
use ferry_core::file_hashes::{hash_file, part_etag_of_file, FileHashes, FileStamp};
use ferry_core::state::{ObjectRecord, RecordKey, StateStore, Status};
use ferry_core::store::{ObjectMeta, ObjectStore};
use futures::stream::{self, StreamExt, TryStreamExt};

/// Requests or file reads of one batch in flight.
const PARALLEL: usize = 16;
/// Files hashed at once.
const HASHERS: usize = 4;

/// A pair with the same key that the listings could not decide.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Source entry.
    pub src: Entry,
    /// Destination entry.
    pub dst: Entry,
    /// What may decide it.
    pub evidence: Evidence,
    /// Which sides' metadata came from a HEAD (source, destination).
    headed: [bool; 2],
}

impl Pair {
    /// A pair as the listings gave it.
    pub fn new(src: Entry, dst: Entry, evidence: Evidence) -> Self {
        Pair {
            src,
            dst,
            evidence,
            headed: [false; 2],
        }
    }
}

/// How pairs were decided, for the run's summary.
#[derive(Debug, Default)]
pub struct JudgeStats {
    /// Found identical by the ledger.
    pub by_ledger: AtomicU64,
    /// Decided by modification times.
    pub by_mtime: AtomicU64,
    /// Decided by content checksums.
    pub by_content: AtomicU64,
    /// Copied for want of evidence either way.
    pub undecided: AtomicU64,
    /// HEAD requests made.
    pub heads: AtomicU64,
    /// Local files read and hashed.
    pub hashed: AtomicU64,
    /// Bytes of those files.
    pub hashed_bytes: AtomicU64,
    /// Local files whose checksums came from the state file.
    pub cached: AtomicU64,
}

/// A copy of [`JudgeStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compared {
    /// Found identical by the ledger.
    pub by_ledger: u64,
    /// Decided by modification times.
    pub by_mtime: u64,
    /// Decided by content checksums.
    pub by_content: u64,
    /// Copied for want of evidence.
    pub undecided: u64,
    /// HEAD requests made.
    pub heads: u64,
    /// Local files read and hashed.
    pub hashed: u64,
    /// Bytes of those files.
    pub hashed_bytes: u64,
    /// Checksums from the state file.
    pub cached: u64,
}

impl JudgeStats {
    /// The counters now.
    pub fn snapshot(&self) -> Compared {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Compared {
            by_ledger: g(&self.by_ledger),
            by_mtime: g(&self.by_mtime),
            by_content: g(&self.by_content),
            undecided: g(&self.undecided),
            heads: g(&self.heads),
            hashed: g(&self.hashed),
            hashed_bytes: g(&self.hashed_bytes),
            cached: g(&self.cached),
        }
    }
}

/// Decides pairs with the ledger, HEAD requests and checksums.
#[derive(Debug)]
pub struct Judge {
    src: Arc<dyn ObjectStore>,
    dst: Arc<dyn ObjectStore>,
    state: Option<Arc<dyn StateStore>>,
    hashes: Option<FileHashes>,
    dest_bucket: String,
    /// The job's part size, for the layout ferry would have given an object.
    part_size: u64,
    /// Counters.
    pub stats: JudgeStats,
}

/// Whether the record says this source version produced this destination version.
fn ledger_confirms(rec: &ObjectRecord, p: &Pair) -> bool {
    rec.status == Status::Done
        && ETag::both_same(rec.src_etag.as_deref(), p.src.meta.etag.as_deref())
        && ETag::both_same(rec.dest_etag.as_deref(), p.dst.meta.etag.as_deref())
}

impl Judge {
    /// A judge between two stores, for objects of `dest_bucket` sent in
    /// parts of `part_size`; no ledger and no checksum cache until given.
    pub fn new(src: Arc<dyn ObjectStore>, dst: Arc<dyn ObjectStore>, dest_bucket: String, part_size: u64) -> Self {
        Self {
            src,
            dst,
            state: None,
            hashes: None,
            dest_bucket,
            part_size,
            stats: JudgeStats::default(),
        }
    }

    /// Asks the ledger first (none: skip that step).
    pub fn with_ledger(mut self, state: Option<Arc<dyn StateStore>>) -> Self {
        self.state = state;
        self
    }

    /// The ledger's records of `keys` (none known without a ledger).
    pub(crate) async fn ledger_get_many(
        &self,
        keys: &[ferry_core::state::RecordKey],
    ) -> anyhow::Result<Vec<Option<ferry_core::state::ObjectRecord>>> {
        match &self.state {
            Some(s) => Ok(s.get_many(keys).await?),
            None => Ok(vec![None; keys.len()]),
        }
    }

    /// Keeps local files' checksums in `hashes` (none: hash every time).
    pub fn with_hashes(mut self, hashes: Option<FileHashes>) -> Self {
        self.hashes = hashes;
        self
    }

    /// Decides each pair: `true` when identical.
    pub async fn settle(&self, pairs: Vec<Pair>) -> anyhow::Result<Vec<(Pair, bool)>> {
        let confirmed = self.ledger(&pairs).await?;
        let mut out = Vec::with_capacity(pairs.len());
        let mut open = Vec::new();
        for (p, ok) in pairs.into_iter().zip(confirmed) {
            if ok {
                self.stats.by_ledger.fetch_add(1, Ordering::Relaxed);
                out.push((p, true));
            } else if p.evidence == Evidence::Ledger {
                out.push((p, false));
            } else {
                open.push(p);
            }
        }
        let decided: Vec<(Pair, bool)> = stream::iter(open.into_iter().map(|p| self.examine(p)))
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?;
        out.extend(decided);
        Ok(out)
    }

    /// Step 1: which pairs the ledger confirms.
    async fn ledger(&self, pairs: &[Pair]) -> anyhow::Result<Vec<bool>> {
        let Some(state) = &self.state else {
            return Ok(vec![false; pairs.len()]);
        };
        let asked: Vec<usize> = (0..pairs.len())
            .filter(|&i| pairs[i].evidence != Evidence::Content)
            .collect();
        let mut out = vec![false; pairs.len()];
        if asked.is_empty() {
            return Ok(out);
        }
        let keys: Vec<RecordKey> = asked
            .iter()
            .map(|&i| RecordKey {
                bucket: self.dest_bucket.clone(),
                key: pairs[i].dst.meta.key.clone(),
            })
            .collect();
        let records = state.get_many(&keys).await.context("reading the ledger")?;
        for (&i, rec) in asked.iter().zip(records) {
            out[i] = rec.is_some_and(|r| ledger_confirms(&r, &pairs[i]));
        }
        Ok(out)
    }

    /// Steps 2 and 3 for one pair.
    async fn examine(&self, mut p: Pair) -> anyhow::Result<(Pair, bool)> {
        if p.evidence == Evidence::Mtime {
            self.head_missing_mtime(&mut p).await?;
            if let (Some(a), Some(b)) = (p.src.meta.modified_ns(), p.dst.meta.mtime_ns) {
                self.stats.by_mtime.fetch_add(1, Ordering::Relaxed);
                let same = checksum::same_mtime(a, b);
                return Ok((p, same));
            }
        }
        let mut verdict = self.by_content(&mut p).await?;
        if verdict.is_none() {
            verdict = self.by_ledger_checksum(&p).await?;
        }
        match verdict {
            Some(_) => self.stats.by_content.fetch_add(1, Ordering::Relaxed),
            None => self.stats.undecided.fetch_add(1, Ordering::Relaxed),
        };
        Ok((p, verdict.unwrap_or(false)))
    }

    /// HEADs each S3 side that listed no modification time.
    async fn head_missing_mtime(&self, p: &mut Pair) -> anyhow::Result<()> {
        for side in [0, 1] {
            if self.meta(p, side).mtime_ns.is_none() && !self.is_local(p, side) && !p.headed[side] {
                self.head_side(p, side).await?;
            }
        }
        Ok(())
    }

    /// The object's HEAD; the listed entry when it vanished meanwhile (the copy decides then).
    async fn head(&self, store: &Arc<dyn ObjectStore>, listed: &ObjectMeta) -> anyhow::Result<ObjectMeta> {
        self.stats.heads.fetch_add(1, Ordering::Relaxed);
        let key = listed.key.clone();
        let got = store
            .head(&key)
            .await
            .with_context(|| format!("HEAD {key:?} at {}", store.describe()))?;
        Ok(got.unwrap_or_else(|| listed.clone()))
    }

    /// Step 3: whether both sides hold the same bytes; `None` when they share
    /// no checksum. May replace the entries' metadata with their HEADs.
    pub async fn by_content(&self, p: &mut Pair) -> anyhow::Result<Option<bool>> {
        let mut files = [None, None];
        let verdict = self.compare_content(p, &mut files).await;
        // The local files' checksums stay with their entries, for messages.
        if let Some(sums) = files[0] {
            p.src.meta.checksums = sums;
        }
        if let Some(sums) = files[1] {
            p.dst.meta.checksums = sums;
        }
        verdict
    }

    async fn compare_content(&self, p: &mut Pair, files: &mut [Option<Checksums>; 2]) -> anyhow::Result<Option<bool>> {
        // An object whose listing offers no MD5 is asked for what it keeps.
        for side in [0, 1] {
            if !self.is_local(p, side) && !p.headed[side] && self.meta(p, side).md5().is_none() {
                self.head_side(p, side).await?;
            }
        }
        // A local file against an object known only by a multipart ETag: hash in its layout.
        let bare = |side| !self.is_local(p, side) && self.meta(p, side).content_checksums().is_empty();
        if bare(0) || bare(1) {
            return self.by_part_etag(p).await;
        }
        let verdict = self.agree(p, files).await?;
        let settled =
            verdict == Some(true) || (p.headed[0] || self.is_local(p, 0)) && (p.headed[1] || self.is_local(p, 1));
        if settled {
            return Ok(verdict);
        }
        // An ETag taken for an MD5 from a listing may be an encrypted
        // object's: ask the store before calling the pair different.
        for side in [0, 1] {
            if !self.is_local(p, side) && !p.headed[side] {
                self.head_side(p, side).await?;
            }
        }
        self.agree(p, files).await
    }

    /// Whether the checksums both sides know agree (`None`: they share none).
    /// A local file's are kept in `files` for the next call.
    async fn agree(&self, p: &Pair, files: &mut [Option<Checksums>; 2]) -> anyhow::Result<Option<bool>> {
        let mut sums = [Checksums::default(); 2];
        for side in [0, 1] {
            let (store, meta) = if side == 0 {
                (&self.src, &p.src.meta)
            } else {
                (&self.dst, &p.dst.meta)
            };
            sums[side] = match (store.local_path(&meta.key), files[side]) {
                (Some(_), Some(known)) => known,
                (Some(path), None) => *files[side].insert(self.file_checksums(path).await?),
                (None, _) => meta.content_checksums(),
            };
        }
        Ok(sums[0].agree(&sums[1]))
    }

    fn is_local(&self, p: &Pair, side: usize) -> bool {
        let (store, meta) = if side == 0 {
            (&self.src, &p.src.meta)
        } else {
            (&self.dst, &p.dst.meta)
        };
        store.local_path(&meta.key).is_some()
    }

    fn meta<'p>(&self, p: &'p Pair, side: usize) -> &'p ObjectMeta {
        if side == 0 {
            &p.src.meta
        } else {
            &p.dst.meta
        }
    }

    /// Replaces one side's listed metadata with its HEAD.
    async fn head_side(&self, p: &mut Pair, side: usize) -> anyhow::Result<()> {
        let (store, meta) = if side == 0 {
            (&self.src, &mut p.src.meta)
        } else {
            (&self.dst, &mut p.dst.meta)
        };
        *meta = self.head(store, meta).await?;
        p.headed[side] = true;
        Ok(())
    }

    /// The ledger's checksum of the bytes copied (objects sent in parts),
    /// against the CRC-64/NVME the destination keeps, when the record is of
    /// exactly these two versions. `None` when either is missing.
    pub async fn by_ledger_checksum(&self, p: &Pair) -> anyhow::Result<Option<bool>> {
        let Some(state) = &self.state else { return Ok(None) };
        let Some(kept) = p.dst.meta.checksums.crc64nvme else {
            return Ok(None);
        };
        let rk = RecordKey {
            bucket: self.dest_bucket.clone(),
            key: p.dst.meta.key.clone(),
        };
        let Some(rec) = state.get(&rk).await.context("reading the ledger")? else {
            return Ok(None);
        };
        let copied = rec
            .checksum
            .as_deref()
            .filter(|_| ledger_confirms(&rec, p))
            .and_then(|c| c.strip_prefix("crc64nvme:"))
            .and_then(checksum::crc64_from_base64);
        Ok(copied.map(|c| c == kept))
    }

    /// A local file against a multipart ETag: the file hashed in the object's
    /// part size (asked of the store with `HEAD ?partNumber=1`), so a
    /// different part layout never makes equal content look different.
    async fn by_part_etag(&self, p: &Pair) -> anyhow::Result<Option<bool>> {
        let (store, object, path) = match (
            self.src.local_path(&p.src.meta.key),
            self.dst.local_path(&p.dst.meta.key),
        ) {
            (Some(path), None) => (&self.dst, &p.dst.meta, path),
            (None, Some(path)) => (&self.src, &p.src.meta, path),
            _ => return Ok(None),
        };
        let Some(tag) = object.etag.as_deref().filter(|_| !object.encrypted) else {
            return Ok(None);
        };
        let etag::ETagKind::Multipart(n) = ETag(tag).kind() else {
            return Ok(None);
        };
        self.stats.heads.fetch_add(1, Ordering::Relaxed);
        let key = object.key.clone();
        let layout = store
            .part_size(&key, 1)
            .await
            .with_context(|| format!("HEAD {key:?} ?partNumber=1 at {}", store.describe()))?;
        // The store's own answer; else (stores that ignore `partNumber`) the
        // layouts the object most likely has: ferry's plan for its size, then
        // the common defaults of other tools.
        let candidates: Vec<u64> = match layout {
            Some((ps, c)) if c == n => vec![ps],
            Some(_) => vec![],
            None => {
                let planned = ferry_worker::plan::part_size(object.size, self.part_size);
                let mut v = vec![planned, 8 << 20, 5 << 20, 16 << 20, 15 << 20, 64 << 20];
                v.dedup();
                v
            }
        };
        let fits = |ps: &u64| *ps > 0 && object.size.div_ceil(*ps) == u64::from(n);
        // The layout that matched last time is tried first: it is cached.
        let mut candidates = candidates;
        if let Some(kept) = self.kept_part_size(&path).await? {
            if layout.is_none() && fits(&kept) {
                candidates.retain(|&ps| ps != kept);
                candidates.insert(0, kept);
            }
        }
        let mut verdict = None;
        for ps in candidates.into_iter().filter(fits) {
            let mine = self.file_part_etag(path.clone(), ps).await?;
            if ETag(&mine).same(tag) {
                return Ok(Some(true));
            }
            verdict = Some(false);
        }
        // No layout made the same ETag: different content, or a layout unknown here.
        Ok(verdict.filter(|_| layout.is_some()))
    }

    /// The part size of the multipart ETag cached for a file's current version.
    async fn kept_part_size(&self, path: &std::path::Path) -> anyhow::Result<Option<u64>> {
        let Some(cache) = &self.hashes else { return Ok(None) };
        let Ok(stamp) = FileStamp::of(path) else {
            return Ok(None);
        };
        Ok(cache.kept_part_etag(path.to_path_buf(), stamp).await?.map(|(ps, _)| ps))
    }

    /// A local file's multipart ETag in parts of `part_size`, cached like its checksums.
    async fn file_part_etag(&self, path: PathBuf, part_size: u64) -> anyhow::Result<String> {
        let stamp = FileStamp::of(&path).with_context(|| format!("reading {}", path.display()))?;
        if let Some(cache) = &self.hashes {
            if let Some(tag) = cache.part_etag(path.clone(), stamp, part_size).await? {
                self.stats.cached.fetch_add(1, Ordering::Relaxed);
                return Ok(tag);
            }
        }
        let _slot = hash_slots().acquire().await?;
        let p = path.clone();
        let (stamp, tag) = tokio::task::spawn_blocking(move || part_etag_of_file(&p, part_size))
            .await?
            .with_context(|| format!("hashing {}", path.display()))?;
        self.stats.hashed.fetch_add(1, Ordering::Relaxed);
        self.stats.hashed_bytes.fetch_add(stamp.size, Ordering::Relaxed);
        if let Some(cache) = &self.hashes {
            cache.put_part_etag(path, stamp, part_size, tag.clone()).await?;
        }
        Ok(tag)
    }

    /// A local file's checksums, from the state file when its size, mtime and
    /// inode are the ones hashed before; else read once and kept.
    async fn file_checksums(&self, path: PathBuf) -> anyhow::Result<Checksums> {
        let stamp = FileStamp::of(&path).with_context(|| format!("reading {}", path.display()))?;
        if let Some(cache) = &self.hashes {
            let cached = cache.get_many(vec![(path.clone(), stamp)]).await?;
            if let Some(Some(sums)) = cached.into_iter().next() {
                self.stats.cached.fetch_add(1, Ordering::Relaxed);
                return Ok(sums);
            }
        }
        let _slot = hash_slots().acquire().await?;
        let p = path.clone();
        let (stamp, sums) = tokio::task::spawn_blocking(move || hash_file(&p))
            .await?
            .with_context(|| format!("hashing {}", path.display()))?;
        self.stats.hashed.fetch_add(1, Ordering::Relaxed);
        self.stats.hashed_bytes.fetch_add(stamp.size, Ordering::Relaxed);
        if let Some(cache) = &self.hashes {
            cache.put_many(vec![(path, stamp, sums)]).await?;
        }
        Ok(sums)
    }
}

/// Files hashed at once in this process (disk-bound work).
fn hash_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HASHERS);
    &SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::db::Db;
    use ferry_core::state::{Claim, EmbeddedStateStore, Outcome};
    use ferry_core::store::{LocalStore, MemoryStore, PutOptions};

    fn entry(meta: ObjectMeta) -> Entry {
        Entry {
            rel: meta.key.clone(),
            meta,
        }
    }

    async fn listed(store: &dyn ObjectStore, key: &str) -> Entry {
        entry(store.head(key).await.unwrap().unwrap())
    }

    #[tokio::test]
    async fn content_decides_same_size_edits_and_the_cache_spares_the_second_read() {
        let dir = tempfile::tempdir().unwrap();
        let local: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path().join("src")));
        let mem: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let md5 = etag::md5(b"hello");
        local
            .put("a", "hello".into(), md5, &PutOptions::default())
            .await
            .unwrap();
        mem.put("a", "hello".into(), md5, &PutOptions::default()).await.unwrap();
        mem.put("b", "jello".into(), etag::md5(b"jello"), &PutOptions::default())
            .await
            .unwrap();
        local
            .put("b", "hello".into(), md5, &PutOptions::default())
            .await
            .unwrap();
        let db = Db::open(&dir.path().join("s.sqlite")).unwrap();
        let judge = Judge::new(local.clone(), mem.clone(), "b".into(), 5 << 20).with_hashes(Some(FileHashes::new(db)));
        let pairs = || async {
            let mut v = Vec::new();
            for k in ["a", "b"] {
                v.push(Pair::new(
                    listed(&*local, k).await,
                    listed(&*mem, k).await,
                    Evidence::Content,
                ));
            }
            v
        };
        let got = judge.settle(pairs().await).await.unwrap();
        let mut verdicts: Vec<_> = got.iter().map(|(p, same)| (p.src.rel.clone(), *same)).collect();
        verdicts.sort();
        assert_eq!(verdicts, vec![("a".to_string(), true), ("b".to_string(), false)]);
        assert_eq!(judge.stats.hashed.load(Ordering::Relaxed), 2);
        judge.settle(pairs().await).await.unwrap();
        assert_eq!(
            judge.stats.hashed.load(Ordering::Relaxed),
            2,
            "unchanged files are not read again"
        );
        assert_eq!(judge.stats.cached.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn the_ledger_confirms_only_the_versions_it_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let src: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let dst: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        src.put("k", "one".into(), etag::md5(b"one"), &PutOptions::default())
            .await
            .unwrap();
        dst.put("k", "one".into(), etag::md5(b"one"), &PutOptions::default())
            .await
            .unwrap();
        let db = Db::open(&dir.path().join("s.sqlite")).unwrap();
        let state: Arc<dyn StateStore> = Arc::new(EmbeddedStateStore::new(db.clone()));
        let (s, d) = (listed(&*src, "k").await, listed(&*dst, "k").await);
        let rk = RecordKey {
            bucket: "b".into(),
            key: "k".into(),
        };
        let lease = std::time::Duration::from_secs(60);
        assert!(matches!(
            state
                .claim(&rk, "w", "run", s.meta.etag.as_deref(), lease)
                .await
                .unwrap(),
            Claim::Acquired(_)
        ));
        let done = Outcome {
            src_etag: s.meta.etag.clone(),
            dest_etag: d.meta.etag.clone(),
            ..Outcome::bare(Status::Done)
        };
        state.finish(&rk, "w", &done).await.unwrap();
        let judge = Judge::new(src.clone(), dst.clone(), "b".into(), 5 << 20)
            .with_ledger(Some(state))
            .with_hashes(Some(FileHashes::new(db)));
        let pair = |dst: Entry| Pair::new(s.clone(), dst, Evidence::Ledger);
        let got = judge.settle(vec![pair(d.clone())]).await.unwrap();
        assert!(got[0].1);
        dst.put("k", "two".into(), etag::md5(b"two"), &PutOptions::default())
            .await
            .unwrap();
        let changed = listed(&*dst, "k").await;
        let got = judge.settle(vec![pair(changed)]).await.unwrap();
        assert!(!got[0].1, "a destination rewritten since the copy is not confirmed");
    }
}
