//! Include/exclude globs on keys relative to the source prefix.
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
        })
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
}
