//! The finder at scale: listings of many keys with a known difference.
//!
//! Key `i` of `n` is `dNNNN/kNNNNNNNN`. The destination lacks every key with
//! `i % 100 == 1` (1 % missing) and holds a different size for every key with
//! `i % 100 == 2` (1 % changed); so a correct diff finds `2n/100` objects to
//! copy. Three forms of the same listing:
//!
//! * [`synthetic`]: generated streams fed straight into `ferry_core::diff` —
//!   the algorithm alone, with no store;
//! * [`write_trees`]: two local directories of empty or one-byte files, for
//!   `ferry-finder` and `rclone --dry-run` on the same real listing;
//! * [`seed_buckets`]: the same keys as small objects in two buckets.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use ferry_core::diff::{diff, CompareMode, Decision, Entry};
use ferry_core::store::ObjectMeta;
use futures::stream::{self, StreamExt, TryStreamExt};

fn key(i: usize) -> String {
    format!("d{:04}/k{i:08}", i / 1000)
}

/// Whether key `i` is in the destination, and its (source, destination) sizes.
fn shape(i: usize) -> (bool, u64, u64) {
    match i % 100 {
        1 => (false, 0, 0),
        2 => (true, 1, 0),
        _ => (true, 0, 0),
    }
}

/// How many objects a correct diff of `n` keys copies.
pub fn expected_copies(n: usize) -> usize {
    (0..n).filter(|i| matches!(i % 100, 1 | 2)).count()
}

fn entry(i: usize, size: u64) -> Result<Entry, ferry_core::store::StoreError> {
    let rel = key(i);
    Ok(Entry {
        meta: ObjectMeta {
            key: rel.clone(),
            size,
            etag: None,
            last_modified: None,
            ..Default::default()
        },
        rel,
    })
}

/// Runs the diff over `n` generated keys; returns (copies found, seconds).
pub async fn synthetic(n: usize) -> Result<(usize, f64)> {
    let t = Instant::now();
    let src = stream::iter(0..n).map(|i| entry(i, shape(i).1));
    let dst = stream::iter(0..n)
        .filter(|i| std::future::ready(shape(*i).0))
        .map(|i| entry(i, shape(i).2));
    let copies = diff(Box::pin(src), Box::pin(dst), CompareMode::Size)
        .try_fold(0usize, |n, d| {
            std::future::ready(Ok(n + usize::from(matches!(
                d,
                Decision::New(_) | Decision::Changed { .. }
            ))))
        })
        .await?;
    Ok((copies, t.elapsed().as_secs_f64()))
}

/// Writes the source tree `dir/src` and destination tree `dir/dst` of `n`
/// keys, unless `dir/done-<n>` says they are there already. A destination
/// file gets its source file's modification time, as a sync leaves it, so
/// only the planted size differences are changes.
pub fn write_trees(dir: &Path, n: usize) -> Result<()> {
    let stamp = dir.join(format!("done-mtimes-{n}"));
    if stamp.exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    eprintln!("[bench] writing two trees of {n} files under {}", dir.display());
    for i in 0..n {
        let (in_dst, s, d) = shape(i);
        let k = key(i);
        if i % 1000 == 0 {
            std::fs::create_dir_all(dir.join("src").join(&k).parent().unwrap_or(dir))?;
            std::fs::create_dir_all(dir.join("dst").join(&k).parent().unwrap_or(dir))?;
        }
        let src = dir.join("src").join(&k);
        std::fs::write(&src, vec![b'x'; s as usize])?;
        if in_dst {
            let dst = dir.join("dst").join(&k);
            std::fs::write(&dst, vec![b'x'; d as usize])?;
            let mtime = std::fs::metadata(&src)?.modified()?;
            std::fs::File::options().write(true).open(&dst)?.set_modified(mtime)?;
        }
    }
    std::fs::write(&stamp, b"")?;
    Ok(())
}

/// Puts the same keys into `src_bucket` and `dst_bucket` under `scale/`
/// (skipped when the last source key is already there).
pub async fn seed_buckets(c: &Client, src_bucket: &str, dst_bucket: &str, n: usize) -> Result<()> {
    let last = format!("scale/{}", key(n - 1));
    if c.head_object().bucket(src_bucket).key(&last).send().await.is_ok() {
        return Ok(());
    }
    eprintln!("[bench] putting {n} objects into {src_bucket} and about as many into {dst_bucket}");
    stream::iter(0..n)
        .map(|i| async move {
            let (in_dst, s, d) = shape(i);
            let k = format!("scale/{}", key(i));
            let body = |size: u64| ByteStream::from(vec![b'x'; size as usize + 1]);
            if in_dst {
                c.put_object()
                    .bucket(dst_bucket)
                    .key(&k)
                    .body(body(d))
                    .send()
                    .await
                    .with_context(|| k.clone())?;
            }
            c.put_object()
                .bucket(src_bucket)
                .key(&k)
                .body(body(s))
                .send()
                .await
                .with_context(|| k.clone())?;
            Ok::<_, anyhow::Error>(())
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn synthetic_diff_finds_the_planted_differences() {
        let (copies, _) = synthetic(10_000).await.unwrap();
        assert_eq!(copies, 200);
        assert_eq!(copies, expected_copies(10_000));
    }
}
