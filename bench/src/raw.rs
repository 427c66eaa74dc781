//! The raw client: the ceiling every tool is measured against, and the
//! harness's own bucket chores (seeding, clearing, verifying).
//!
//! The ceiling PUTs, GETs or copies through memory at a fixed number of
//! requests in flight, with unsigned payloads, no checksums, no state and no
//! retries: the most a client can get out of the server. Objects larger than
//! the part size go in parts (multipart upload, ranged GETs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use tokio::sync::Semaphore;

use crate::data::Manifest;

/// An endpoint and its keys.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// URL, e.g. http://127.0.0.1:7490.
    pub url: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
}

impl Endpoint {
    /// A path-style client without retries or checksums.
    pub fn client(&self) -> Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                &self.access_key,
                &self.secret_key,
                None,
                None,
                "bench",
            ))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(3))
            .build();
        Client::from_conf(conf)
    }
}

/// An object to move: key and size.
#[derive(Debug, Clone)]
struct Obj {
    key: String,
    size: u64,
}

/// Byte ranges of an object of `size` in parts of `part` bytes.
fn ranges(size: u64, part: u64) -> Vec<(i32, u64, u64)> {
    let n = size.div_ceil(part).max(1);
    (0..n)
        .map(|i| ((i + 1) as i32, i * part, ((i + 1) * part).min(size)))
        .collect()
}

/// Creates `bucket` unless it exists.
pub async fn ensure_bucket(c: &Client, bucket: &str) -> Result<()> {
    if c.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    c.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .with_context(|| format!("creating bucket {bucket}"))?;
    Ok(())
}

async fn list(c: &Client, bucket: &str, prefix: &str) -> Result<Vec<Obj>> {
    let mut out = Vec::new();
    let mut pages = c
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.with_context(|| format!("listing s3://{bucket}/{prefix}"))?;
        for o in page.contents() {
            out.push(Obj {
                key: o.key().unwrap_or_default().to_string(),
                size: o.size().unwrap_or(0) as u64,
            });
        }
    }
    Ok(out)
}

/// Deletes every object and unfinished upload under `prefix`.
pub async fn clear(c: &Client, bucket: &str, prefix: &str) -> Result<usize> {
    let objs = list(c, bucket, prefix).await?;
    let n = objs.len();
    for chunk in objs.chunks(1000) {
        let ids = chunk
            .iter()
            .map(|o| ObjectIdentifier::builder().key(&o.key).build())
            .collect::<Result<Vec<_>, _>>()?;
        let del = Delete::builder().set_objects(Some(ids)).quiet(true).build()?;
        c.delete_objects()
            .bucket(bucket)
            .delete(del)
            .send()
            .await
            .with_context(|| format!("deleting in {bucket}"))?;
    }
    let ups = c.list_multipart_uploads().bucket(bucket).prefix(prefix).send().await?;
    for u in ups.uploads() {
        c.abort_multipart_upload()
            .bucket(bucket)
            .key(u.key().unwrap_or_default())
            .upload_id(u.upload_id().unwrap_or_default())
            .send()
            .await?;
    }
    Ok(n)
}

fn read_range(path: PathBuf, start: u64, end: u64) -> Result<Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    f.seek(SeekFrom::Start(start))?;
    let mut buf = vec![0u8; (end - start) as usize];
    f.read_exact(&mut buf)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(Bytes::from(buf))
}

fn write_range(path: PathBuf, start: u64, data: Bytes) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.seek(SeekFrom::Start(start))?;
    f.write_all(&data)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Where the bytes of a transfer come from and go to.
#[derive(Debug, Clone)]
pub enum Side {
    /// A local directory.
    Dir(PathBuf),
    /// A bucket and a key prefix on the endpoint.
    Bucket {
        /// Client.
        client: Client,
        /// Bucket name.
        bucket: String,
        /// Key prefix (ending in `/` or empty).
        prefix: String,
    },
}

impl Side {
    async fn read(&self, key: &str, start: u64, end: u64) -> Result<Bytes> {
        match self {
            Side::Dir(d) => {
                let p = d.join(key);
                tokio::task::spawn_blocking(move || read_range(p, start, end)).await?
            }
            Side::Bucket { client, bucket, prefix } => {
                let r = client
                    .get_object()
                    .bucket(bucket)
                    .key(format!("{prefix}{key}"))
                    .range(format!("bytes={start}-{}", end.saturating_sub(1)))
                    .send()
                    .await
                    .with_context(|| format!("GET {prefix}{key}"))?;
                Ok(r.body.collect().await?.into_bytes())
            }
        }
    }

    async fn list(&self) -> Result<Vec<Obj>> {
        match self {
            Side::Dir(d) => {
                let d = d.clone();
                tokio::task::spawn_blocking(move || walk(&d)).await?
            }
            Side::Bucket { client, bucket, prefix } => Ok(list(client, bucket, prefix)
                .await?
                .into_iter()
                .map(|o| Obj {
                    key: o.key[prefix.len()..].to_string(),
                    size: o.size,
                })
                .collect()),
        }
    }
}

fn walk(root: &Path) -> Result<Vec<Obj>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let rel = e.path().strip_prefix(root)?.to_string_lossy().replace('\\', "/");
                out.push(Obj {
                    key: rel,
                    size: e.metadata()?.len(),
                });
            }
        }
    }
    Ok(out)
}

/// Moves every object of `from` to `to` at `concurrency` requests in flight:
/// objects up to `threshold` bytes in one PUT, larger ones in parts of
/// `part` bytes. Returns (objects, bytes).
pub async fn transfer(from: &Side, to: &Side, concurrency: usize, part: u64, threshold: u64) -> Result<(usize, u64)> {
    let objs = from.list().await?;
    let sem = Arc::new(Semaphore::new(concurrency));
    let bytes: u64 = objs.iter().map(|o| o.size).sum();
    let n = objs.len();
    stream::iter(objs)
        .map(|o| {
            let sem = sem.clone();
            async move { transfer_one(from, to, &o, &sem, part, threshold).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok((n, bytes))
}

async fn transfer_one(from: &Side, to: &Side, o: &Obj, sem: &Semaphore, part: u64, threshold: u64) -> Result<()> {
    match to {
        Side::Dir(d) => {
            let path = d.join(&o.key);
            if let Some(p) = path.parent() {
                tokio::fs::create_dir_all(p).await?;
            }
            tokio::fs::File::create(&path).await?.set_len(o.size).await?;
            stream::iter(ranges(o.size, part))
                .map(|(_, s, e)| {
                    let path = path.clone();
                    async move {
                        let _p = sem.acquire().await?;
                        let data = from.read(&o.key, s, e).await?;
                        tokio::task::spawn_blocking(move || write_range(path, s, data)).await?
                    }
                })
                .buffer_unordered(usize::MAX)
                .try_collect::<Vec<()>>()
                .await?;
        }
        Side::Bucket { client, bucket, prefix } => {
            let key = format!("{prefix}{}", o.key);
            if o.size <= threshold.max(part) {
                let _p = sem.acquire().await?;
                let data = from.read(&o.key, 0, o.size).await?;
                client
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .body(ByteStream::from(data))
                    .customize()
                    .disable_payload_signing()
                    .send()
                    .await
                    .with_context(|| format!("PUT {key}"))?;
                return Ok(());
            }
            let up = client.create_multipart_upload().bucket(bucket).key(&key).send().await?;
            let id = up.upload_id().context("no upload id")?.to_string();
            let parts = stream::iter(ranges(o.size, part))
                .map(|(n, s, e)| {
                    let (id, key) = (&id, &key);
                    async move {
                        let _p = sem.acquire().await?;
                        let data = from.read(&o.key, s, e).await?;
                        let r = client
                            .upload_part()
                            .bucket(bucket)
                            .key(key)
                            .upload_id(id)
                            .part_number(n)
                            .body(ByteStream::from(data))
                            .customize()
                            .disable_payload_signing()
                            .send()
                            .await
                            .with_context(|| format!("UploadPart {key} #{n}"))?;
                        Ok::<_, anyhow::Error>(CompletedPart::builder().part_number(n).set_e_tag(r.e_tag).build())
                    }
                })
                .buffer_unordered(usize::MAX)
                .try_collect::<Vec<_>>()
                .await?;
            let mut parts = parts;
            parts.sort_by_key(|p| p.part_number());
            client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(&key)
                .upload_id(&id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .with_context(|| format!("completing {key}"))?;
        }
    }
    Ok(())
}

/// Checks that `side` holds exactly the manifest's objects: same keys and
/// sizes, and with `content`, the same MD5 of every byte read back.
pub async fn verify(side: &Side, manifest: &Manifest, content: bool, concurrency: usize) -> Result<()> {
    let mut found = side.list().await?;
    found.sort_by(|a, b| a.key.cmp(&b.key));
    let want: Vec<(&str, u64)> = manifest.items.iter().map(|i| (i.key.as_str(), i.size)).collect();
    let got: Vec<(&str, u64)> = found.iter().map(|o| (o.key.as_str(), o.size)).collect();
    if want != got {
        let missing = want.iter().filter(|w| !got.contains(w)).count();
        let extra = got.iter().filter(|g| !want.contains(g)).count();
        let first = want
            .iter()
            .find(|w| !got.contains(w))
            .or_else(|| got.iter().find(|g| !want.contains(g)));
        bail!("{missing} objects missing or of another size, {extra} unexpected; first: {first:?}");
    }
    if !content {
        return Ok(());
    }
    const CHUNK: u64 = 16 << 20;
    stream::iter(&manifest.items)
        .map(|item| async move {
            let mut md5 = Md5::new();
            for (_, s, e) in ranges(item.size, CHUNK) {
                if item.size > 0 {
                    md5.update(&side.read(&item.key, s, e).await?);
                }
            }
            let got = hex::encode(md5.finalize());
            if got != item.md5 {
                bail!("{}: content differs (md5 {got}, expected {})", item.key, item.md5);
            }
            Ok(())
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn ranges_cover_the_object() {
        assert_eq!(ranges(0, 8), vec![(1, 0, 0)]);
        assert_eq!(ranges(8, 8), vec![(1, 0, 8)]);
        assert_eq!(ranges(17, 8), vec![(1, 0, 8), (2, 8, 16), (3, 16, 17)]);
    }
}
