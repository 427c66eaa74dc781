//! Include/exclude globs on keys relative to the source prefix, and a
//! window of modification times (`--modified-since`, `--modified-before`).
//!
//! A key is selected when it matches at least one include (or there are none)
//! and no exclude. `*` and `?` match any character, `/` included, so `*.jpg`
//! selects JPEGs at every depth; `photos/**` selects a subtree.

use globset::{Glob, GlobSet, GlobSetBuilder};

/// A compiled filter.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    window: TimeWindow,
    spec: FilterSpec,
}

/// A filter as given: its globs and its window, to rebuild it elsewhere
/// (a list job carries the finder's).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilterSpec {
    /// Include globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Exclude globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Modified at or after, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Modified before, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
}

/// The modification times a selected source object has: `since <= t <
/// before`, ms since the epoch. S3 objects are timed by their `mtime`
/// metadata where a HEAD read it, else by when they were written (what a
/// listing says); local files by their mtime. An object whose time is not
/// known is selected: nothing is skipped on a guess.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeWindow {
    /// Selected from this time on.
    pub since: Option<i64>,
    /// Selected before this time.
    pub before: Option<i64>,
}

impl TimeWindow {
    /// Whether a time (ms since the epoch) is in the window.
    pub fn contains(&self, t: Option<i64>) -> bool {
        let Some(t) = t else { return true };
        self.since.is_none_or(|s| t >= s) && self.before.is_none_or(|b| t < b)
    }
}

fn build(patterns: &[String], flag: &str) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| format!("{flag} {p:?} is not a valid glob: {e}"))?);
    }
    b.build().map(Some).map_err(|e| format!("{flag}: {e}"))
}

impl KeyFilter {
    /// Compiles the patterns; the error names the bad one.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        Ok(Self {
            include: build(include, "--include")?,
            exclude: build(exclude, "--exclude")?,
            window: TimeWindow::default(),
            spec: FilterSpec {
                include: include.to_vec(),
                exclude: exclude.to_vec(),
                ..Default::default()
            },
        })
    }

    /// The filter as given (see [`FilterSpec`]).
    pub fn spec(&self) -> FilterSpec {
        FilterSpec {
            since: self.window.since,
            before: self.window.before,
            ..self.spec.clone()
        }
    }

    /// The filter a spec describes.
    pub fn from_spec(spec: &FilterSpec) -> Result<Self, String> {
        let window = TimeWindow {
            since: spec.since,
            before: spec.before,
        };
        Ok(Self::new(&spec.include, &spec.exclude)?.modified_in(window))
    }

    /// The same filter, selecting only objects modified in `window`.
    pub fn modified_in(self, window: TimeWindow) -> Self {
        Self { window, ..self }
    }

    /// Whether a source object (its relative key and metadata) is selected:
    /// its key by the globs, its time by the window.
    pub fn selects(&self, key: &str, meta: &crate::store::ObjectMeta) -> bool {
        self.selects_at(key, meta.modified_ns().map(|ns| ns.div_euclid(1_000_000)))
    }

    /// Whether a source object modified at `t` (ms since the epoch) is selected.
    pub fn selects_at(&self, key: &str, t: Option<i64>) -> bool {
        self.matches(key) && self.window.contains(t)
    }

    /// Whether a relative key is selected.
    pub fn matches(&self, key: &str) -> bool {
        self.include.as_ref().is_none_or(|s| s.is_match(key)) && !self.exclude.as_ref().is_some_and(|s| s.is_match(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_exclude() {
        let f = KeyFilter::new(&["*.jpg".into(), "docs/**".into()], &["**/tmp/*".into()]).unwrap();
        assert!(f.matches("a/b/c.jpg"));
        assert!(f.matches("docs/x.txt"));
        assert!(!f.matches("a/tmp/c.jpg"));
        assert!(!f.matches("a.png"));
        assert!(KeyFilter::default().matches("anything"));
        assert!(KeyFilter::new(&["a[".into()], &[]).unwrap_err().contains("--include"));
    }

    #[test]
    fn a_time_window_selects_from_since_until_before() {
        let w = TimeWindow {
            since: Some(100),
            before: Some(200),
        };
        assert!(w.contains(Some(100)) && w.contains(Some(199)));
        assert!(!w.contains(Some(99)) && !w.contains(Some(200)));
        assert!(w.contains(None), "an unknown time is selected");
        let f = KeyFilter::new(&["*.txt".into()], &[]).unwrap().modified_in(w);
        let meta = |ms: i64| crate::store::ObjectMeta {
            last_modified: Some(ms),
            ..Default::default()
        };
        assert!(f.selects("a.txt", &meta(150)));
        assert!(!f.selects("a.txt", &meta(250)));
        assert!(!f.selects("a.bin", &meta(150)));
    }
}
