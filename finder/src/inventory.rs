//! S3 Inventory as the source's listing (`--source-inventory
//! s3://BUCKET/PATH/manifest.json`): for buckets where listing itself is the
//! cost, the daily inventory report replaces ListObjectsV2 on the source
//! side. The destination is still listed, and the diff is the same.
//!
//! The manifest names the report's data files and their format: CSV
//! (gzip-compressed, columns named by `fileSchema`, keys URL-encoded) or
//! Parquet (columns `key`, `size`, `last_modified_date`, `e_tag`…). S3 does
//! not promise any order inside or across the files, while the diff needs
//! keys in order; so each file is read, its rows under the source prefix
//! sorted and written to a run file on local disk, and the listing merges
//! the runs (an external merge sort). Memory holds one data file's rows
//! while it is sorted, and one line per run while merging; disk holds
//! about 100 bytes per key. Rows of versions that are not the latest, and
//! delete markers, are left out (a report that includes versions).

use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use ferry_core::store::{GetOptions, ObjectMeta, ObjectStore, StoreError};
use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};

/// An inventory report, sorted into runs on local disk.
#[derive(Debug)]
pub struct Inventory {
    runs: Vec<PathBuf>,
    _dir: tempfile::TempDir,
    /// Keys under the source prefix.
    pub keys: u64,
    /// Where it came from, for messages.
    pub manifest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    source_bucket: String,
    file_format: String,
    #[serde(default)]
    file_schema: String,
    files: Vec<ManifestFile>,
}

#[derive(Deserialize)]
struct ManifestFile {
    key: String,
}

/// One row as it is kept in a run file.
#[derive(Debug, Serialize, Deserialize)]
struct Row {
    k: String,
    s: u64,
    e: Option<String>,
    t: Option<i64>,
}

impl Row {
    fn meta(self) -> ObjectMeta {
        ObjectMeta {
            key: self.k,
            size: self.s,
            etag: self.e,
            last_modified: self.t,
            ..Default::default()
        }
    }
}

/// `s3://BUCKET/KEY` → (bucket, key).
pub fn parse_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .with_context(|| format!("--source-inventory {url}: expected s3://BUCKET/PATH/manifest.json"))?;
    match rest.split_once('/') {
        Some((b, k)) if !b.is_empty() && k.ends_with("manifest.json") => Ok((b.to_string(), k.to_string())),
        _ => bail!("--source-inventory {url}: expected s3://BUCKET/PATH/manifest.json"),
    }
}

/// A data file's bytes: gunzipped when they are gzip.
fn plain(key: &str, body: Bytes) -> anyhow::Result<Vec<u8>> {
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{key}: not a valid gzip file"))?;
        return Ok(out);
    }
    Ok(body.to_vec())
}

/// A date as inventory reports write it (`2026-11-30T08:00:00.000Z`), in ms.
fn millis(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim().trim_end_matches('Z')).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64)
}

fn quoted(etag: &str) -> Option<String> {
    let e = etag.trim().trim_matches('"');
    (!e.is_empty()).then(|| format!("\"{e}\""))
}

/// Rows of a CSV data file whose columns `schema` names.
fn csv_rows(key: &str, data: &[u8], schema: &str) -> anyhow::Result<Vec<Row>> {
    let cols: Vec<String> = schema.split(',').map(|c| c.trim().to_ascii_lowercase()).collect();
    let at = |name: &str| cols.iter().position(|c| c == name);
    let k = at("key").with_context(|| format!("the manifest's fileSchema {schema:?} has no Key column"))?;
    let (size, etag, time) = (at("size"), at("etag"), at("lastmodifieddate"));
    let (latest, marker) = (at("islatest"), at("isdeletemarker"));
    let mut rows = Vec::new();
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(data);
    for (n, rec) in reader.records().enumerate() {
        let rec = rec.with_context(|| format!("{key}: line {} is not CSV", n + 1))?;
        let field = |i: Option<usize>| i.and_then(|i| rec.get(i)).unwrap_or("");
        if field(latest).eq_ignore_ascii_case("false") || field(marker).eq_ignore_ascii_case("true") {
            continue;
        }
        // Keys are URL-encoded, a space as `+`.
        let raw = field(Some(k)).replace('+', " ");
        let name = percent_encoding::percent_decode_str(&raw)
            .decode_utf8()
            .with_context(|| format!("{key}: line {}: the key is not URL-encoded UTF-8", n + 1))?;
        rows.push(Row {
            k: name.into_owned(),
            s: field(size).parse().unwrap_or(0),
            e: quoted(field(etag)),
            t: millis(field(time)),
        });
    }
    Ok(rows)
}

/// Rows of a Parquet data file.
fn parquet_rows(key: &str, data: Bytes) -> anyhow::Result<Vec<Row>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let reader = SerializedFileReader::new(data).with_context(|| format!("{key}: not a Parquet file"))?;
    let mut rows = Vec::new();
    for row in reader.get_row_iter(None)? {
        let row = row.with_context(|| format!("{key}: a row cannot be read"))?;
        let (mut r, mut skip) = (
            Row {
                k: String::new(),
                s: 0,
                e: None,
                t: None,
            },
            false,
        );
        for (name, f) in row.get_column_iter() {
            match (name.as_str(), f) {
                ("key", Field::Str(s)) => r.k = s.clone(),
                ("size", Field::Long(n)) => r.s = (*n).max(0) as u64,
                ("size", Field::Int(n)) => r.s = (*n).max(0) as u64,
                ("e_tag", Field::Str(s)) => r.e = quoted(s),
                ("last_modified_date", Field::TimestampMillis(t)) => r.t = Some(*t),
                ("last_modified_date", Field::TimestampMicros(t)) => r.t = Some(*t / 1000),
                ("last_modified_date", Field::Str(s)) => r.t = millis(s),
                ("is_latest", Field::Bool(false)) | ("is_delete_marker", Field::Bool(true)) => skip = true,
                _ => {}
            }
        }
        if r.k.is_empty() {
            bail!("{key}: a row has no key column");
        }
        if !skip {
            rows.push(r);
        }
    }
    Ok(rows)
}

impl Inventory {
    /// Reads the report the manifest at `url` names, read through `store`
    /// (a store of the manifest's bucket), keeping the keys of `bucket`
    /// under `prefix`.
    pub async fn load(store: Arc<dyn ObjectStore>, url: &str, bucket: &str, prefix: &str) -> anyhow::Result<Self> {
        let (_, manifest_key) = parse_url(url)?;
        let get = |key: String| {
            let store = store.clone();
            async move {
                store
                    .get(&key, &GetOptions::default())
                    .await
                    .map(|g| g.body)
                    .with_context(|| format!("--source-inventory: reading {key}"))
            }
        };
        let m: Manifest = serde_json::from_slice(&get(manifest_key.clone()).await?)
            .with_context(|| format!("--source-inventory {url}: not an S3 Inventory manifest"))?;
        if m.source_bucket != bucket {
            bail!(
                "--source-inventory {url}: the report is of bucket {}, the source is {bucket}",
                m.source_bucket
            );
        }
        let format = m.file_format.to_ascii_lowercase();
        if format != "csv" && format != "parquet" {
            bail!(
                "--source-inventory {url}: {} reports are not read (CSV and Parquet are)",
                m.file_format
            );
        }
        let dir = tempfile::Builder::new().prefix("ferry-inventory-").tempdir()?;
        let (mut runs, mut keys) = (Vec::new(), 0u64);
        for (i, f) in m.files.iter().enumerate() {
            let body = get(f.key.clone()).await?;
            let (key, schema, fmt) = (f.key.clone(), m.file_schema.clone(), format.clone());
            let prefix = prefix.to_string();
            let path = dir.path().join(format!("run-{i:06}"));
            let p = path.clone();
            let n = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
                let mut rows = match fmt.as_str() {
                    "csv" => csv_rows(&key, &plain(&key, body)?, &schema)?,
                    _ => parquet_rows(&key, body)?,
                };
                rows.retain(|r| r.k.starts_with(&prefix));
                rows.sort_by(|a, b| a.k.as_bytes().cmp(b.k.as_bytes()));
                let mut w = BufWriter::new(std::fs::File::create(&p)?);
                for r in &rows {
                    serde_json::to_writer(&mut w, r)?;
                    w.write_all(b"\n")?;
                }
                w.flush()?;
                Ok(rows.len() as u64)
            })
            .await??;
            keys += n;
            runs.push(path);
        }
        Ok(Inventory {
            runs,
            _dir: dir,
            keys,
            manifest: url.to_string(),
        })
    }

    /// The report's keys in order, after `after` (the merge of the runs).
    pub fn list(self: &Arc<Self>, after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta, StoreError>> {
        let merge = Merge::open(&self.runs, after.map(str::to_string));
        let desc = self.manifest.clone();
        let this = self.clone();
        match merge {
            Err(e) => stream::iter([Err(inventory_error(&desc, e))]).boxed(),
            Ok(m) => stream::unfold((m, this), move |(mut m, this)| async move {
                let next = m.next().transpose()?;
                Some((next.map_err(|e| inventory_error(&this.manifest, e)), (m, this)))
            })
            .boxed(),
        }
    }
}

fn inventory_error(desc: &str, e: anyhow::Error) -> StoreError {
    StoreError::Backend {
        store: desc.to_string(),
        operation: "inventory",
        code: "Inventory".into(),
        message: format!("{e:#}"),
        retryable: false,
    }
}

/// A k-way merge of sorted run files.
struct Merge {
    readers: Vec<std::io::Lines<BufReader<std::fs::File>>>,
    heap: BinaryHeap<std::cmp::Reverse<(Vec<u8>, usize, String)>>,
    after: Option<String>,
}

impl Merge {
    fn open(runs: &[PathBuf], after: Option<String>) -> anyhow::Result<Self> {
        let mut m = Merge {
            readers: Vec::new(),
            heap: BinaryHeap::new(),
            after,
        };
        for p in runs {
            m.readers.push(BufReader::new(std::fs::File::open(p)?).lines());
            m.refill(m.readers.len() - 1)?;
        }
        Ok(m)
    }

    fn refill(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(line) = self.readers[i].next() {
            let line = line?;
            let row: Row = serde_json::from_str(&line)?;
            self.heap.push(std::cmp::Reverse((row.k.into_bytes(), i, line)));
        }
        Ok(())
    }

    fn next(&mut self) -> anyhow::Result<Option<ObjectMeta>> {
        while let Some(std::cmp::Reverse((key, i, line))) = self.heap.pop() {
            self.refill(i)?;
            if self.after.as_deref().is_some_and(|a| key.as_slice() <= a.as_bytes()) {
                continue;
            }
            let row: Row = serde_json::from_str(&line)?;
            // The same key in two files (a report written twice): once.
            self.after = Some(row.k.clone());
            return Ok(Some(row.meta()));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_are_decoded_by_the_schema() {
        let data = b"\"b\",\"photos/a+b%2Bc.jpg\",\"12\",\"2026-11-30T08:00:00.000Z\",\"abc\"\n";
        let rows = csv_rows("f", data, "Bucket, Key, Size, LastModifiedDate, ETag").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].k, "photos/a b+c.jpg");
        assert_eq!((rows[0].s, rows[0].e.as_deref()), (12, Some("\"abc\"")));
        assert_eq!(rows[0].t, Some(1_796_025_600_000));
        let versioned = b"\"b\",\"k\",\"v1\",\"false\",\"false\",\"1\"\n\"b\",\"k\",\"v2\",\"true\",\"false\",\"2\"\n\"b\",\"m\",\"v3\",\"true\",\"true\",\"0\"\n";
        let rows = csv_rows("f", versioned, "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size").unwrap();
        assert_eq!(rows.iter().map(|r| (r.k.as_str(), r.s)).collect::<Vec<_>>(), [("k", 2)]);
        assert!(csv_rows("f", b"", "Bucket, Size")
            .unwrap_err()
            .to_string()
            .contains("no Key column"));
    }

    #[test]
    fn urls_name_a_manifest() {
        assert_eq!(
            parse_url("s3://inv/src/daily/2026-11-30T01-00Z/manifest.json").unwrap(),
            (
                "inv".to_string(),
                "src/daily/2026-11-30T01-00Z/manifest.json".to_string()
            )
        );
        assert!(parse_url("s3://inv/").is_err());
        assert!(parse_url("/tmp/manifest.json").is_err());
    }

    #[test]
    fn runs_merge_in_key_order_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut runs = Vec::new();
        for (i, keys) in [["a", "c", "e"], ["b", "c", "f"]].iter().enumerate() {
            let p = dir.path().join(format!("r{i}"));
            let text: String = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}\n",
                        serde_json::to_string(&Row {
                            k: k.to_string(),
                            s: 1,
                            e: None,
                            t: None
                        })
                        .unwrap()
                    )
                })
                .collect();
            std::fs::write(&p, text).unwrap();
            runs.push(p);
        }
        let mut m = Merge::open(&runs, Some("a".into())).unwrap();
        let mut got = Vec::new();
        while let Some(o) = m.next().unwrap() {
            got.push(o.key);
        }
        assert_eq!(got, ["b", "c", "e", "f"]);
    }
}
