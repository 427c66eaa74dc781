//! Parallel listing of one prefix without knowing its layout: the key space
//! is split into ranges that are listed (and diffed) at the same time.
//!
//! S3 lists in key order from a `start-after` key, one page of up to 1,000
//! keys per request, so one lister moves one page per round trip. Ranges
//! `(after, until]` are listed independently: a range lists from `after`
//! and stops past `until`. The destination is listed over the same ranges
//! of relative keys, so each range is diffed in lock step on its own
//! ([`crate::diff`]), with one page per side in memory.
//!
//! **Splitting** ([`split`]) needs no prefix list. Keys named like paths
//! are split by their directories: one listing with delimiter `/` answers
//! the directories below the prefix (descending while there is only one),
//! and the ranges' bounds are every k-th directory, so each range holds a
//! run of whole directories. Keys without directories are split by
//! sampling: a range is sampled with one listing request from its start. A
//! range whose first page is not full is small and kept whole. Otherwise
//! the range is large, and the page's last key is stepped up
//! ([`step_split`]): its first character after the prefix raised by one,
//! then its second, and so on, until a bound has keys past it inside the
//! range; at that position a binary search finds the highest character
//! with keys past it, and the range splits halfway between — a digit
//! boundary, in about balance, for keys numbered alike. When stepping finds
//! nothing, the range is bisected: the midpoint `m` between the page's last
//! key and the range's end is computed as a string ([`midpoint`]: keys
//! taken as numbers whose digits are Unicode code points, which is S3's
//! byte order for UTF-8), and one request looks for a key after `m` inside
//! the range. If there is one, the range is split at `m`; if not, its keys
//! end before `m`, and the search goes on between the page's last key and
//! `m`. Ranges are split breadth-first until there are as many as wanted.
//! The cost is one sample per range and about ten probes per split (a
//! midpoint in code-point space alone starts far above real keys and took
//! more), against the listing's one request per 1,000 keys.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;

use crate::store::{ObjectStore, Result};

/// Keys `after < key <= until`; `None` leaves that end open.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyRange {
    /// Listing starts after this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The last key the range holds (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

impl KeyRange {
    /// Whether `key` is at or before the range's end.
    pub fn holds_up_to(&self, key: &str) -> bool {
        self.until.as_deref().is_none_or(|u| key <= u)
    }

    /// The same range with `strip` taken off the front of both bounds and
    /// `add` put there instead: a source range as the destination's.
    pub fn moved(&self, strip: &str, add: &str) -> KeyRange {
        let m = |k: &Option<String>| {
            k.as_ref()
                .map(|k| format!("{add}{}", k.strip_prefix(strip).unwrap_or(k)))
        };
        KeyRange {
            after: m(&self.after),
            until: m(&self.until),
        }
    }
}

/// Keys one listing request answers.
const PAGE: usize = 1000;

/// Probes of one bisection: each halves the gap between two keys, so a
/// gap the size of the code point space narrows to one character in ~21.
const MAX_PROBES: usize = 48;

/// The largest Unicode scalar value plus one: the base of [`midpoint`]'s digits.
const BASE: u64 = 0x11_0000;

/// A string strictly between `a` and `b` (`a < b`) in S3's key order, or
/// `None` when there is none short enough to matter. Strings are read as
/// fractions whose digits are code points (UTF-8 byte order is code point
/// order); the midpoint's digits avoid the surrogates, which are not
/// characters, and NUL.
pub fn midpoint(a: &str, b: &str) -> Option<String> {
    let x: Vec<u64> = a.chars().map(|c| c as u64).collect();
    let y: Vec<u64> = b.chars().map(|c| c as u64).collect();
    let n = x.len().max(y.len()) + 1;
    let digit = |v: &Vec<u64>, i: usize| v.get(i).copied().unwrap_or(0);
    // x + y, from the least significant digit.
    let mut sum = vec![0u64; n];
    let mut carry = 0;
    for i in (0..n).rev() {
        let s = digit(&x, i) + digit(&y, i) + carry;
        sum[i] = s % BASE;
        carry = s / BASE;
    }
    // Halved, from the most significant digit.
    let mut rem = carry;
    let mut out = String::new();
    for d in sum {
        let v = rem * BASE + d;
        out.push(to_char(v / 2));
        rem = v % 2;
    }
    let trimmed = out.trim_end_matches('\u{1}').to_string();
    (a < trimmed.as_str() && trimmed.as_str() < b).then_some(trimmed)
}

/// A digit as a character: surrogates move past their block, NUL to U+0001.
fn to_char(d: u64) -> char {
    let d = match d {
        0 => 1,
        0xD800..=0xDFFF => 0xE000,
        d => d.min(0x10_FFFF),
    } as u32;
    char::from_u32(d).unwrap_or('\u{1}')
}

/// The first key after `after` under `prefix` that a range holds, if any.
async fn first_after(store: &Arc<dyn ObjectStore>, prefix: &str, after: &str, r: &KeyRange) -> Result<bool> {
    match store.list(prefix, Some(after)).next().await {
        Some(Ok(o)) => Ok(r.holds_up_to(&o.key)),
        Some(Err(e)) => Err(e),
        None => Ok(false),
    }
}

/// The bound `key[..i]` with its character at `i` raised by one: every key
/// that shares `key`'s first `i` characters and is greater at `i` sorts
/// after it.
fn bumped(key: &str, i: usize) -> Option<String> {
    let mut chars: Vec<char> = key.chars().take(i + 1).collect();
    if chars.len() <= i {
        return None;
    }
    let c = chars.pop()?;
    let next = match c as u32 + 1 {
        0xD800 => '\u{E000}',
        n => char::from_u32(n)?,
    };
    chars.push(next);
    Some(chars.into_iter().collect())
}

/// A split point past `last` inside `r`, found by stepping `last`'s
/// characters after the prefix, coarsest first: the first position `i`
/// where raising `last[i]` leaves keys past the bound (and inside the
/// range) is the level to split at; a binary search over the character at
/// `i` finds the highest one with keys past it, and the split is the
/// character halfway between `last[i]` and that one. Keys numbered or
/// named alike (`img-000123`) split at a digit, in about balance, in a few
/// probes, where a midpoint in code-point space would start far above
/// every real key. Answers the split point, if any, and the probes made.
async fn step_split(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    last: &str,
    r: &KeyRange,
) -> Result<(Option<String>, u64)> {
    let mut probes = 0;
    let chars: Vec<char> = last.chars().collect();
    let inside = |b: &str| r.until.as_deref().is_none_or(|u| b < u);
    for i in prefix.chars().count()..chars.len() {
        let Some(bound) = bumped(last, i).filter(|b| inside(b)) else {
            continue;
        };
        probes += 1;
        if !first_after(store, prefix, &bound, r).await? {
            continue;
        }
        let base: String = chars[..i].iter().collect();
        let at = |c: u32| to_char(c as u64).to_string();
        let (mut lo, mut hi) = (chars[i] as u32 + 1, 0x7F_u32.max(chars[i] as u32 + 1));
        for _ in 0..MAX_PROBES {
            if lo >= hi {
                break;
            }
            let mid = (lo + hi).div_ceil(2);
            let cand = format!("{base}{}", at(mid));
            let keys_past = inside(&cand) && {
                probes += 1;
                first_after(store, prefix, &cand, r).await?
            };
            (lo, hi) = if keys_past { (mid, hi) } else { (lo, mid - 1) };
        }
        let split = format!("{base}{}", at((chars[i] as u32 + lo).div_ceil(2)));
        return Ok((Some(split).filter(|s| s.as_str() > last && inside(s)), probes));
    }
    Ok((None, probes))
}

/// Directories read to split by: the bounds are every k-th of them.
const MAX_DIRS: usize = 10_000;

/// Levels descended while a level holds one directory only.
const MAX_DEPTH: usize = 4;

/// Ranges bounded by every k-th of `dirs` (ascending): at most `want`.
pub fn by_dirs(dirs: &[String], want: usize) -> Vec<KeyRange> {
    let k = want.min(dirs.len()).max(1);
    let bounds: Vec<&String> = (1..k).map(|i| &dirs[i * dirs.len() / k]).collect();
    let mut ranges = Vec::with_capacity(k);
    let mut after: Option<String> = None;
    for b in bounds {
        ranges.push(KeyRange {
            after: after.take(),
            until: Some(b.clone()),
        });
        after = Some(b.clone());
    }
    ranges.push(KeyRange { after, until: None });
    ranges
}

/// Splits the keys under `prefix` into at most `want` ranges (see the
/// module docs), in key order, with the listing requests it made.
pub async fn split(store: &Arc<dyn ObjectStore>, prefix: &str, want: usize) -> Result<(Vec<KeyRange>, u64)> {
    if want <= 1 {
        return Ok((vec![KeyRange::default()], 0));
    }
    let mut requests = 0;
    let mut level = prefix.to_string();
    for _ in 0..MAX_DEPTH {
        // A store that cannot (or will not) list directories is bisected.
        let dirs = match store.list_dirs(&level, MAX_DIRS).await {
            Ok(dirs) => dirs,
            Err(e) => {
                tracing::debug!(prefix = %level, error = %e, "No directory listing; splitting by bisection.");
                break;
            }
        };
        requests += 1;
        match dirs.len() {
            0 => break,
            1 => level = dirs.into_iter().next().unwrap_or_default(),
            _ => return Ok((by_dirs(&dirs, want), requests)),
        }
    }
    bisect(store, prefix, KeyRange::default(), want, requests).await
}

/// Splits the keys of `range` under `prefix` into at most `want` ranges by
/// bisection, with the listing requests it made: a range found large while
/// it is listed is split so others can list its rest.
pub async fn split_range(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    range: KeyRange,
    want: usize,
) -> Result<(Vec<KeyRange>, u64)> {
    bisect(store, prefix, range, want, 0).await
}

/// Splits by bisection (see the module docs).
async fn bisect(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    whole: KeyRange,
    want: usize,
    mut requests: u64,
) -> Result<(Vec<KeyRange>, u64)> {
    let mut done: Vec<KeyRange> = Vec::new();
    let mut todo: VecDeque<KeyRange> = VecDeque::from([whole]);
    // The end of the prefix's key space, for the open last range's midpoint.
    let end = format!("{prefix}{}", char::MAX);
    while let Some(r) = todo.pop_front() {
        if done.len() + todo.len() + 1 >= want.max(1) {
            done.push(r);
            continue;
        }
        requests += 1;
        let mut page = store.list(prefix, r.after.as_deref()).take(PAGE);
        let mut last = None;
        let mut n = 0;
        while let Some(o) = page.next().await {
            let o = o?;
            if !r.holds_up_to(&o.key) {
                break;
            }
            n += 1;
            last = Some(o.key);
        }
        let (Some(last), true) = (last, n == PAGE) else {
            done.push(r);
            continue;
        };
        // Step the page's last key up to a split (see `step_split`).
        let (mut at, probes) = step_split(store, prefix, &last, &r).await?;
        requests += probes;
        // Bisect between the page's last key and the range's end until a
        // key lies past the midpoint: split there. Nothing past it means the
        // range's keys end before it: bisect the lower half.
        let mut hi = r.until.clone().unwrap_or_else(|| end.clone());
        for _ in 0..MAX_PROBES {
            if at.is_some() {
                break;
            }
            let Some(m) = midpoint(&last, &hi) else { break };
            requests += 1;
            if first_after(store, prefix, &m, &r).await? {
                at = Some(m);
                break;
            }
            hi = m;
        }
        match at {
            Some(m) => {
                todo.push_back(KeyRange {
                    after: r.after.clone(),
                    until: Some(m.clone()),
                });
                todo.push_back(KeyRange {
                    after: Some(m),
                    until: r.until,
                });
            }
            None => done.push(r),
        }
    }
    done.sort_by(|a, b| a.after.cmp(&b.after));
    Ok((done, requests))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, PutOptions};
    use bytes::Bytes;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_midpoint_lies_between(a in "\\PC{0,12}", b in "\\PC{0,12}") {
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            if let Some(m) = midpoint(&lo, &hi) {
                prop_assert!(lo < m && m < hi, "{lo:?} < {m:?} < {hi:?}");
            }
        }
    }

    #[test]
    fn midpoints_of_common_keys() {
        let m = midpoint("logs/a", "logs/c").unwrap();
        assert!(m.starts_with("logs/b") || m.starts_with("logs/a"), "{m:?}");
        assert!(midpoint("a", "a").is_none());
        let m = midpoint("photos/2026/01", "photos/\u{10FFFF}").unwrap();
        assert!("photos/2026/01" < m.as_str() && m.as_str() < "photos/\u{10FFFF}");
    }

    async fn store_with(keys: impl Iterator<Item = String>) -> Arc<dyn ObjectStore> {
        let mem = Arc::new(MemoryStore::new());
        for k in keys {
            let body = Bytes::from_static(b"x");
            let md5 = crate::etag::md5(&body);
            mem.put(&k, body, md5, &PutOptions::default()).await.unwrap();
        }
        mem
    }

    /// Lists every range as a sequential lister would see it.
    async fn listed(store: &Arc<dyn ObjectStore>, prefix: &str, ranges: &[KeyRange]) -> Vec<String> {
        let mut all = Vec::new();
        for r in ranges {
            let keys: Vec<String> = store
                .list(prefix, r.after.as_deref())
                .map(|o| o.unwrap().key)
                .take_while(|k| std::future::ready(r.holds_up_to(k)))
                .collect()
                .await;
            all.extend(keys);
        }
        all
    }

    #[tokio::test]
    async fn ranges_cover_every_key_once_in_order() {
        let keys: Vec<String> = (0..7_000).map(|i| format!("p/{:x}/{i}", i % 13)).collect();
        let store = store_with(keys.iter().cloned().chain(["q/outside".to_string()])).await;
        let ranges = split(&store, "p/", 8).await.unwrap().0;
        assert!(ranges.len() >= 4, "a large prefix is split: {ranges:?}");
        let mut want = keys.clone();
        want.sort();
        assert_eq!(listed(&store, "p/", &ranges).await, want, "every key once, in order");
    }

    #[tokio::test]
    async fn a_small_or_flat_prefix_stays_whole() {
        let store = store_with((0..300).map(|i| format!("k{i:04}"))).await;
        assert_eq!(split(&store, "", 8).await.unwrap(), (vec![KeyRange::default()], 1));
        assert_eq!(split(&store, "", 1).await.unwrap(), (vec![KeyRange::default()], 0));
        let store = store_with((0..3_000).map(|i| format!("{i:06}"))).await;
        let ranges = split(&store, "", 1).await.unwrap().0;
        assert_eq!(ranges, vec![KeyRange::default()], "one range wanted");
        let ranges = split(&store, "", 6).await.unwrap().0;
        let all: Vec<String> = (0..3_000).map(|i| format!("{i:06}")).collect();
        assert_eq!(listed(&store, "", &ranges).await, all);
    }

    #[tokio::test]
    async fn a_flat_numbered_key_space_splits_in_few_probes() {
        let keys: Vec<String> = (0..20_000).map(|i| format!("img-{i:06}.jpg")).collect();
        let store = store_with(keys.iter().cloned()).await;
        let (ranges, requests) = split(&store, "", 4).await.unwrap();
        assert_eq!(ranges.len(), 4, "{ranges:?}");
        assert!(requests <= 40, "{requests} requests for 4 ranges of a flat key space");
        let mut sizes = Vec::new();
        for r in &ranges {
            sizes.push(listed(&store, "", std::slice::from_ref(r)).await.len());
        }
        assert_eq!(sizes.iter().sum::<usize>(), keys.len(), "every key once");
        assert!(sizes.iter().all(|n| *n >= 4_000), "ranges in about balance: {sizes:?}");
        assert_eq!(bumped("img-000999", 5).as_deref(), Some("img-01"));
        assert_eq!(bumped("a", 3), None);
    }

    #[test]
    fn directories_bound_the_ranges() {
        let dirs: Vec<String> = (0..10).map(|i| format!("p/d{i}/")).collect();
        let r = by_dirs(&dirs, 4);
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[0],
            KeyRange {
                after: None,
                until: Some("p/d2/".into())
            }
        );
        assert_eq!(r[1].after.as_deref(), Some("p/d2/"));
        assert_eq!(
            r[3],
            KeyRange {
                after: Some("p/d7/".into()),
                until: None
            }
        );
        assert_eq!(by_dirs(&dirs[..2], 8).len(), 2, "no more ranges than directories");
    }

    #[test]
    fn a_range_moves_between_prefixes() {
        let r = KeyRange {
            after: Some("src/a".into()),
            until: Some("src/m".into()),
        };
        assert_eq!(
            r.moved("src/", "dst/"),
            KeyRange {
                after: Some("dst/a".into()),
                until: Some("dst/m".into())
            }
        );
    }
}
