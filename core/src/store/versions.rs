//! Object versions: what a versioned bucket keeps of each key's history.
//!
//! [`ObjectStore::list_versions_page`](super::ObjectStore::list_versions_page)
//! answers one page of a bucket's history in S3 order: keys ascending, and
//! each key's versions and delete markers newest first. [`all_versions`]
//! strings the pages into a stream; [`history`] reads one key's whole
//! history, oldest first, which is the order a replay writes it in.

use futures::stream::{self, BoxStream, StreamExt};
use std::sync::Arc;

use super::{ObjectStore, Result};

/// One version of an object, or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The key.
    pub key: String,
    /// The version id (`null` for what was written while versioning was off).
    pub version: String,
    /// Whether this is the key's current version.
    pub latest: bool,
    /// Whether this is a delete marker (no bytes).
    pub delete_marker: bool,
    /// Size in bytes (0 for a delete marker).
    pub size: u64,
    /// ETag (quoted), none for a delete marker.
    pub etag: Option<String>,
    /// When the version was written, milliseconds since the epoch.
    pub last_modified: Option<i64>,
}

/// Where a version listing goes on: after this key's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMarker {
    /// Key of the last version listed.
    pub key: String,
    /// Its version id.
    pub version: String,
}

/// One page of a version listing.
#[derive(Debug, Clone, Default)]
pub struct VersionPage {
    /// Versions and delete markers, keys ascending, each key newest first.
    pub versions: Vec<ObjectVersion>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<VersionMarker>,
}

/// Whether a bucket keeps versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Never enabled: one version per key, id `null`.
    Off,
    /// Enabled: every write adds a version.
    Enabled,
    /// Enabled once, suspended now: new writes replace the `null` version.
    Suspended,
}

/// Every version under `prefix`, page after page (each page is one call,
/// retried by the store's retry layer).
pub fn all_versions(store: Arc<dyn ObjectStore>, prefix: String) -> BoxStream<'static, Result<ObjectVersion>> {
    struct St {
        store: Arc<dyn ObjectStore>,
        prefix: String,
        next: Option<VersionMarker>,
        done: bool,
    }
    let st = St {
        store,
        prefix,
        next: None,
        done: false,
    };
    stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        match st.store.list_versions_page(&st.prefix, st.next.as_ref()).await {
            Err(e) => {
                st.done = true;
                Some((stream::iter(vec![Err(e)]), st))
            }
            Ok(page) => {
                st.done = page.next.is_none();
                st.next = page.next;
                Some((stream::iter(page.versions.into_iter().map(Ok).collect::<Vec<_>>()), st))
            }
        }
    })
    .flatten()
    .boxed()
}

/// The whole history of one key, oldest first. Keys that merely start with
/// `key` come after it in S3 order, so the listing stops at the first of them.
pub async fn history(store: Arc<dyn ObjectStore>, key: &str) -> Result<Vec<ObjectVersion>> {
    let mut out = Vec::new();
    let mut all = all_versions(store, key.to_string());
    while let Some(v) = all.next().await {
        let v = v?;
        if v.key != key {
            break;
        }
        out.push(v);
    }
    out.reverse();
    Ok(out)
}

/// The versions from the one current at `since` on (all without it).
pub fn from_since(history: Vec<ObjectVersion>, since: Option<i64>) -> Vec<ObjectVersion> {
    let Some(t) = since else { return history };
    let current = history.iter().rposition(|v| v.last_modified.is_some_and(|m| m <= t));
    history.into_iter().skip(current.unwrap_or(0)).collect()
}

/// Groups a version stream by key: each item is one key's history, oldest
/// first. Memory holds one key's history at a time.
pub fn by_key(versions: BoxStream<'static, Result<ObjectVersion>>) -> BoxStream<'static, Result<Vec<ObjectVersion>>> {
    struct St {
        inner: BoxStream<'static, Result<ObjectVersion>>,
        held: Option<ObjectVersion>,
        done: bool,
    }
    let st = St {
        inner: versions,
        held: None,
        done: false,
    };
    stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let mut group: Vec<ObjectVersion> = st.held.take().into_iter().collect();
        loop {
            match st.inner.next().await {
                None => {
                    st.done = true;
                    break;
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                Some(Ok(v)) if group.first().is_some_and(|g| g.key != v.key) => {
                    st.held = Some(v);
                    break;
                }
                Some(Ok(v)) => group.push(v),
            }
        }
        if group.is_empty() {
            return None;
        }
        group.reverse();
        Some((Ok(group), st))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(key: &str, id: &str) -> Result<ObjectVersion> {
        Ok(ObjectVersion {
            key: key.into(),
            version: id.into(),
            latest: false,
            delete_marker: false,
            size: 0,
            etag: None,
            last_modified: None,
        })
    }

    fn at(id: &str, t: i64) -> ObjectVersion {
        ObjectVersion {
            last_modified: Some(t),
            ..v("k", id).unwrap()
        }
    }

    #[test]
    fn a_history_starts_at_the_version_current_then() {
        let h = vec![at("a", 10), at("b", 20), at("c", 30)];
        let ids = |h: Vec<ObjectVersion>| h.into_iter().map(|v| v.version).collect::<Vec<_>>();
        assert_eq!(ids(from_since(h.clone(), None)), ["a", "b", "c"]);
        assert_eq!(ids(from_since(h.clone(), Some(25))), ["b", "c"]);
        assert_eq!(ids(from_since(h.clone(), Some(20))), ["b", "c"]);
        assert_eq!(
            ids(from_since(h.clone(), Some(5))),
            ["a", "b", "c"],
            "created after: all of it"
        );
        assert_eq!(ids(from_since(h, Some(99))), ["c"]);
    }

    #[tokio::test]
    async fn versions_group_by_key_oldest_first() {
        let s = stream::iter(vec![
            v("a", "3"),
            v("a", "2"),
            v("a", "1"),
            v("b", "9"),
            v("c", "5"),
            v("c", "4"),
        ])
        .boxed();
        let groups: Vec<Vec<String>> = by_key(s)
            .map(|g| {
                g.unwrap()
                    .into_iter()
                    .map(|v| format!("{}{}", v.key, v.version))
                    .collect()
            })
            .collect()
            .await;
        assert_eq!(groups, vec![vec!["a1", "a2", "a3"], vec!["b9"], vec!["c4", "c5"]]);
    }
}
