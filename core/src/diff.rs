//! The diff: two listings sorted by key bytes, walked in lock step.
//!
//! Each side yields entries keyed relative to its root prefix (so
//! `src/photos/a` and `backup/photos/a` meet as `photos/a`). At each step the
//! smaller key is a source-only or destination-only entry; equal keys are
//! compared by the [`CompareMode`]. Memory stays constant whatever the number
//! of keys: one pending entry per side. A listing that goes backwards is an
//! error, because a lock-step walk over it would give wrong answers.

use std::pin::Pin;

use futures::stream::{Peekable, Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::etag;
use crate::store::{ObjectMeta, StoreError};

/// How a source object and a destination object with the same key are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompareMode {
    /// Existence only: a destination object with the key is identical.
    None,
    /// Same size.
    Size,
    /// Same size, and same ETag when both ETags are comparable MD5 forms (same
    /// single-part form, or multipart with the same part count).
    #[default]
    SizeEtag,
}

impl CompareMode {
    /// The mode's name as written in flags and config files.
    pub fn name(self) -> &'static str {
        match self {
            CompareMode::None => "none",
            CompareMode::Size => "size",
            CompareMode::SizeEtag => "size-etag",
        }
    }

    /// Whether `src` and `dst` count as identical.
    pub fn identical(self, src: &ObjectMeta, dst: &ObjectMeta) -> bool {
        match self {
            CompareMode::None => true,
            CompareMode::Size => src.size == dst.size,
            CompareMode::SizeEtag => {
                src.size == dst.size
                    && match (&src.etag, &dst.etag) {
                        (Some(a), Some(b)) if etag::comparable(a, b) => etag::same(a, b),
                        _ => true,
                    }
            }
        }
    }
}

impl std::str::FromStr for CompareMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(CompareMode::None),
            "size" => Ok(CompareMode::Size),
            "size-etag" => Ok(CompareMode::SizeEtag),
            _ => Err(format!("unknown compare mode {s:?}; expected none, size or size-etag")),
        }
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
                    Ok(if w.mode.identical(&src.meta, &dst.meta) {
                        Decision::Identical { src, dst }
                    } else {
                        Decision::Changed { src, dst }
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
    fn size_etag_compares_only_comparable_etags() {
        let m = |size, etag: &str| ObjectMeta {
            key: "k".into(),
            size,
            etag: Some(etag.into()),
            last_modified: None,
        };
        let a = "\"9b2cf535f27731c974343645a3985328\"";
        let b = "\"0b2cf535f27731c974343645a3985328\"";
        assert!(!CompareMode::SizeEtag.identical(&m(1, a), &m(1, b)));
        assert!(CompareMode::Size.identical(&m(1, a), &m(1, b)));
        assert!(CompareMode::SizeEtag.identical(&m(1, a), &m(1, "W/\"1-1\"")));
        assert!(CompareMode::SizeEtag.identical(&m(1, "\"9b2cf535f27731c974343645a3985328-2\""), &m(1, a)));
        assert!(!CompareMode::SizeEtag.identical(&m(1, a), &m(2, a)));
    }
}
