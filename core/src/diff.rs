//! The diff: two listings sorted by key bytes, walked in lock step.
//!
//! Each side yields entries keyed relative to its root prefix (so
//! `src/photos/a` and `backup/photos/a` meet as `photos/a`). At each step the
//! smaller key is a source-only or destination-only entry; equal keys are
//! compared by the [`CompareMode`]. Memory stays constant whatever the number
//! of keys: one pending entry per side. A listing that goes backwards is an
//! error, because a lock-step walk over it would give wrong answers.

use crate::etag::ETag;
use std::pin::Pin;

use futures::stream::{Peekable, Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::checksum;
use crate::store::{ObjectMeta, StoreError};

/// How a source object and a destination object with the same key are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "String")]
pub enum CompareMode {
    /// `mtime` when a side is a local directory, `size-etag` between stores.
    #[default]
    Auto,
    /// Existence only: a destination object with the key is identical.
    None,
    /// Same size. Trusts size alone: only for data that never changes in place.
    Size,
    /// Same size, and same ETag when both are comparable MD5 forms; when they
    /// are not (different part layouts, encrypted or local objects), the
    /// ledger or full-object checksums decide.
    SizeEtag,
    /// Same size and modification time (rclone's `mtime` metadata on S3).
    Mtime,
    /// Same size and content, by checksums: MD5, CRC-64/NVME or CRC-64/ECMA.
    Checksum,
}

/// What the listings alone say about a pair with the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Identical.
    Same,
    /// Different: copy.
    Differs,
    /// The listings cannot tell; this evidence may.
    Unsure(Evidence),
}

/// The evidence that can settle a pair the listings cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// Only the ledger: its record of which source version produced the
    /// destination object. Without it the pair differs.
    Ledger,
    /// The ledger, then both sides' modification times (HEAD), then content
    /// checksums when the destination keeps no time.
    Mtime,
    /// The ledger, then content checksums.
    LedgerOrContent,
    /// Content checksums only (the user asked for content).
    Content,
}

impl CompareMode {
    /// The mode's name as written in flags and config files.
    pub fn name(self) -> &'static str {
        match self {
            CompareMode::Auto => "auto",
            CompareMode::None => "none",
            CompareMode::Size => "size",
            CompareMode::SizeEtag => "size-etag",
            CompareMode::Mtime => "mtime",
            CompareMode::Checksum => "checksum",
        }
    }

    /// The mode `Auto` stands for: `Mtime` when either side is a local
    /// directory (local files have no content ETag), `SizeEtag` otherwise.
    pub fn resolve(self, local_side: bool) -> CompareMode {
        match self {
            CompareMode::Auto if local_side => CompareMode::Mtime,
            CompareMode::Auto => CompareMode::SizeEtag,
            m => m,
        }
    }

    /// What the listing entries alone say (call on a resolved mode).
    pub fn judge(self, src: &ObjectMeta, dst: &ObjectMeta) -> Verdict {
        match self {
            CompareMode::None => return Verdict::Same,
            _ if src.size != dst.size => return Verdict::Differs,
            CompareMode::Size => return Verdict::Same,
            _ => {}
        }
        match self {
            CompareMode::Mtime => match (src.mtime_ns, dst.mtime_ns) {
                (Some(a), Some(b)) if checksum::same_mtime(a, b) => Verdict::Same,
                (Some(_), Some(_)) => Verdict::Differs,
                _ => Verdict::Unsure(Evidence::Mtime),
            },
            CompareMode::Checksum => Verdict::Unsure(Evidence::Content),
            _ => match (&src.etag, &dst.etag) {
                (Some(a), Some(b)) if ETag(a).comparable(b) && ETag(a).same(b) => Verdict::Same,
                // Different MD5 forms, unless the destination encrypts (its
                // ETags only look like MD5s): the ledger knows.
                (Some(a), Some(b)) if ETag(a).comparable(b) => Verdict::Unsure(Evidence::Ledger),
                _ => Verdict::Unsure(Evidence::LedgerOrContent),
            },
        }
    }
}

impl std::str::FromStr for CompareMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(CompareMode::Auto),
            "none" => Ok(CompareMode::None),
            "size" => Ok(CompareMode::Size),
            "size-etag" => Ok(CompareMode::SizeEtag),
            "mtime" => Ok(CompareMode::Mtime),
            "checksum" => Ok(CompareMode::Checksum),
            _ => Err(format!(
                "compare: unknown mode {s:?}; expected auto, mtime, checksum, size-etag, size or none"
            )),
        }
    }
}

impl TryFrom<String> for CompareMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// One listing entry with its key relative to the side's root prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Key relative to the root prefix.
    pub rel: String,
    /// The object.
    pub meta: ObjectMeta,
}

/// What the walk decided for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Only at the source: copy.
    New(Entry),
    /// At both, different: copy again.
    Changed {
        /// Source.
        src: Entry,
        /// Destination.
        dst: Entry,
    },
    /// At both; the listings cannot tell (see [`Verdict::Unsure`]).
    Unsure {
        /// Source.
        src: Entry,
        /// Destination.
        dst: Entry,
        /// What may settle it.
        evidence: Evidence,
    },
    /// At both, identical.
    Identical {
        /// Source.
        src: Entry,
        /// Destination.
        dst: Entry,
    },
    /// Only at the destination.
    Extra(Entry),
}

type EntryStream = Pin<Box<dyn Stream<Item = Result<Entry, StoreError>> + Send>>;

struct Walk {
    src: Peekable<EntryStream>,
    dst: Peekable<EntryStream>,
    last: (Option<String>, Option<String>),
    mode: CompareMode,
}

impl Walk {
    async fn take_src(&mut self) -> Result<Entry, StoreError> {
        let e = self.src.next().await.expect("peeked")?;
        check(&mut self.last.0, "source", &e)?;
        Ok(e)
    }

    async fn take_dst(&mut self) -> Result<Entry, StoreError> {
        let e = self.dst.next().await.expect("peeked")?;
        check(&mut self.last.1, "destination", &e)?;
        Ok(e)
    }
}

fn order_error(side: &str, prev: &str, next: &str) -> StoreError {
    StoreError::Backend {
        store: side.to_string(),
        operation: "List",
        code: "ListOrder".into(),
        message: format!("the listing is not in key byte order ({prev:?} came before {next:?})"),
        retryable: false,
    }
}

fn check(last: &mut Option<String>, side: &str, e: &Entry) -> Result<(), StoreError> {
    if let Some(prev) = last.as_deref() {
        if prev.as_bytes() >= e.rel.as_bytes() {
            return Err(order_error(side, prev, &e.rel));
        }
    }
    *last = Some(e.rel.clone());
    Ok(())
}

/// Walks two sorted listings and yields one decision per key.
pub fn diff(src: EntryStream, dst: EntryStream, mode: CompareMode) -> impl Stream<Item = Result<Decision, StoreError>> {
    let walk = Walk {
        src: src.peekable(),
        dst: dst.peekable(),
        last: (None, None),
        mode,
    };
    futures::stream::unfold(walk, |mut w| async move {
        let s = Pin::new(&mut w.src)
            .peek()
            .await
            .map(|r| r.as_ref().map(|e| e.rel.clone()).map_err(|_| ()));
        let d = Pin::new(&mut w.dst)
            .peek()
            .await
            .map(|r| r.as_ref().map(|e| e.rel.clone()).map_err(|_| ()));
        let step: Result<Decision, StoreError> = match (s, d) {
            (None, None) => return None,
            (Some(Err(())), _) => Err(w.src.next().await.expect("peeked").unwrap_err()),
            (_, Some(Err(()))) => Err(w.dst.next().await.expect("peeked").unwrap_err()),
            (Some(Ok(sk)), Some(Ok(dk))) if sk.as_bytes() == dk.as_bytes() => {
                async {
                    let src = w.take_src().await?;
                    let dst = w.take_dst().await?;
                    Ok(match w.mode.judge(&src.meta, &dst.meta) {
                        Verdict::Same => Decision::Identical { src, dst },
                        Verdict::Differs => Decision::Changed { src, dst },
                        Verdict::Unsure(evidence) => Decision::Unsure { src, dst, evidence },
                    })
                }
                .await
            }
            (Some(Ok(sk)), Some(Ok(dk))) if sk.as_bytes() < dk.as_bytes() => w.take_src().await.map(Decision::New),
            (Some(Ok(_)), None) => w.take_src().await.map(Decision::New),
            (_, Some(Ok(_))) => w.take_dst().await.map(Decision::Extra),
        };
        let stop = step.is_err();
        if stop {
            // End the walk after an error: the caller reports it.
            w.src = (Box::pin(futures::stream::empty()) as EntryStream).peekable();
            w.dst = (Box::pin(futures::stream::empty()) as EntryStream).peekable();
        }
        Some((step, w))
    })
}

/// Turns an object listing into entries relative to `root` (the listed prefix's root).
pub fn relative(
    list: futures::stream::BoxStream<'static, Result<ObjectMeta, StoreError>>,
    root: String,
) -> EntryStream {
    Box::pin(list.map(move |r| {
        r.map(|meta| Entry {
            rel: meta.key.strip_prefix(root.as_str()).unwrap_or(&meta.key).to_string(),
            meta,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn entries(m: &BTreeMap<String, u64>) -> EntryStream {
        let v: Vec<Result<Entry, StoreError>> = m
            .iter()
            .map(|(k, s)| {
                Ok(Entry {
                    rel: k.clone(),
                    meta: ObjectMeta {
                        key: k.clone(),
                        size: *s,
                        etag: None,
                        last_modified: None,
                        ..Default::default()
                    },
                })
            })
            .collect();
        Box::pin(futures::stream::iter(v))
    }

    fn run(src: &BTreeMap<String, u64>, dst: &BTreeMap<String, u64>) -> Vec<Decision> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(
            diff(entries(src), entries(dst), CompareMode::Size)
                .map(|r| r.unwrap())
                .collect(),
        )
    }

    proptest! {
        #[test]
        fn diff_matches_a_map_model(src in proptest::collection::btree_map("[a-c/0-]{1,4}", 0u64..3, 0..30),
                                    dst in proptest::collection::btree_map("[a-c/0-]{1,4}", 0u64..3, 0..30)) {
            let got = run(&src, &dst);
            let mut expect = Vec::new();
            let keys: std::collections::BTreeSet<_> = src.keys().chain(dst.keys()).collect();
            for k in keys {
                expect.push(match (src.get(k), dst.get(k)) {
                    (Some(_), None) => ("new", k.clone()),
                    (None, Some(_)) => ("extra", k.clone()),
                    (Some(a), Some(b)) if a == b => ("same", k.clone()),
                    _ => ("changed", k.clone()),
                });
            }
            let got: Vec<_> = got.into_iter().map(|d| match d {
                Decision::New(e) => ("new", e.rel),
                Decision::Extra(e) => ("extra", e.rel),
                Decision::Identical { src, .. } => ("same", src.rel),
                Decision::Unsure { src, .. } => ("unsure", src.rel),
                Decision::Changed { src, .. } => ("changed", src.rel),
            }).collect();
            prop_assert_eq!(got, expect);
        }
    }

    #[test]
    fn out_of_order_listing_is_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bad: Vec<Result<Entry, StoreError>> = ["b", "a"]
            .iter()
            .map(|k| {
                Ok(Entry {
                    rel: k.to_string(),
                    meta: ObjectMeta {
                        key: k.to_string(),
                        size: 1,
                        etag: None,
                        last_modified: None,
                        ..Default::default()
                    },
                })
            })
            .collect();
        let out: Vec<_> = rt.block_on(
            diff(
                Box::pin(futures::stream::iter(bad)),
                entries(&BTreeMap::new()),
                CompareMode::Size,
            )
            .collect(),
        );
        assert!(out.iter().any(|r| r.is_err()));
    }

    #[test]
    fn mtime_mode_never_trusts_size_alone() {
        let m = |size, mtime: Option<i64>| ObjectMeta {
            key: "k".into(),
            size,
            mtime_ns: mtime,
            ..Default::default()
        };
        let t = 1_700_000_000_000_000_000;
        let mode = CompareMode::Auto.resolve(true);
        assert_eq!(mode, CompareMode::Mtime);
        assert_eq!(mode.judge(&m(1, Some(t)), &m(1, Some(t + 10))), Verdict::Same);
        assert_eq!(mode.judge(&m(1, Some(t)), &m(1, Some(t + 5_000_000))), Verdict::Differs);
        assert_eq!(mode.judge(&m(1, Some(t)), &m(2, Some(t))), Verdict::Differs);
        assert_eq!(
            mode.judge(&m(1, Some(t)), &m(1, None)),
            Verdict::Unsure(Evidence::Mtime)
        );
        assert_eq!(
            CompareMode::Checksum.judge(&m(1, Some(t)), &m(1, Some(t))),
            Verdict::Unsure(Evidence::Content)
        );
        assert_eq!(CompareMode::Auto.resolve(false), CompareMode::SizeEtag);
    }

    #[test]
    fn size_etag_compares_only_comparable_etags() {
        let m = |size, etag: &str| ObjectMeta {
            key: "k".into(),
            size,
            etag: Some(etag.into()),
            last_modified: None,
            ..Default::default()
        };
        let a = "\"9b2cf535f27731c974343645a3985328\"";
        let b = "\"0b2cf535f27731c974343645a3985328\"";
        let se = CompareMode::SizeEtag;
        assert_eq!(se.judge(&m(1, a), &m(1, a)), Verdict::Same);
        assert_eq!(se.judge(&m(1, a), &m(1, b)), Verdict::Unsure(Evidence::Ledger));
        assert_eq!(CompareMode::Size.judge(&m(1, a), &m(1, b)), Verdict::Same);
        assert_eq!(
            se.judge(&m(1, a), &m(1, "W/\"1-1\"")),
            Verdict::Unsure(Evidence::LedgerOrContent)
        );
        assert_eq!(
            se.judge(&m(1, "\"9b2cf535f27731c974343645a3985328-2\""), &m(1, a)),
            Verdict::Unsure(Evidence::LedgerOrContent)
        );
        assert_eq!(se.judge(&m(1, a), &m(2, a)), Verdict::Differs);
    }
}
