//! A multipart upload into a directory: one pre-sized staging file.
//!
//! Creating an upload makes `<root>/.ferry-uploads/<id>/` holding `key`, the
//! upload's `shape` (object size and part size), the source's `mtime` when
//! known, and `data`: a file of the object's size whose blocks are reserved
//! up front (`fallocate`), so a disk too small for the object fails at once,
//! before a byte is fetched, and a reserved file cannot run out of space
//! half-way.
//!
//! Each part is written at its offset with positioned writes, in any order
//! and in parallel, and only then is one line `<number> <md5> <size>`
//! appended to `parts`, the journal. A journaled part is therefore in the
//! page cache when its line is, and survives the writer being killed.
//! Write-back of the part's range starts at once (`POSIX_FADV_DONTNEED`
//! starts writing dirty pages and drops the clean ones from the cache), so
//! the one sync at completion finds little left to write.
//!
//! A power failure can lose data whose journal line survived. Listing the
//! parts, which happens when an upload is resumed, therefore reads every
//! journaled range back and reports only the parts whose bytes still have
//! their MD5: a part whose data was lost is sent again.
//!
//! Completion checks that the caller names every part of the shape with the
//! journaled ETags, syncs `data` once (unless the store was opened without
//! fsync), and hands the file back to be renamed into place: no byte is
//! copied after it was first written.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use super::{io, LocalStore};
use crate::etag::ETag;
use crate::store::{ObjectStore, PartInfo, Result, StoreError, UploadShape};

/// The staging file, renamed into place at completion.
pub(super) const DATA: &str = "data";
const SHAPE: &str = "shape";
const JOURNAL: &str = "parts";

/// Makes the upload's directory and reserves its staging file. On failure
/// (a full disk) nothing is left behind.
pub(super) fn create(dir: &Path, key: &str, shape: UploadShape, mtime: Option<&str>) -> Result<()> {
    let made = (|| {
        fs::create_dir_all(dir).map_err(io(dir))?;
        // The key first: an upload interrupted while being created is listed, so it can be aborted.
        let kf = dir.join("key");
        fs::write(&kf, key.as_bytes()).map_err(io(&kf))?;
        if let Some(m) = mtime {
            let mf = dir.join(crate::checksum::MTIME_META);
            fs::write(&mf, m.as_bytes()).map_err(io(&mf))?;
        }
        let sf = dir.join(SHAPE);
        fs::write(&sf, format!("{} {}", shape.size, shape.part_size)).map_err(io(&sf))?;
        let df = dir.join(DATA);
        let f = File::create(&df).map_err(io(&df))?;
        reserve(&f, shape.size).map_err(io(&df))
    })();
    if made.is_err() {
        let _ = fs::remove_dir_all(dir);
    }
    made
}

/// Reserves `size` bytes for the file: allocated blocks where the file
/// system can, a sparse file of that length where it cannot.
fn reserve(f: &File, size: u64) -> std::io::Result<()> {
    if size == 0 {
        return Ok(());
    }
    match rustix::fs::fallocate(f, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::OPNOTSUPP => f.set_len(size),
        Err(e) => Err(e.into()),
    }
}

/// The shape an upload was created with.
pub(super) fn shape(s: &LocalStore, dir: &Path) -> Result<UploadShape> {
    let sf = dir.join(SHAPE);
    let text = fs::read_to_string(&sf).map_err(io(&sf))?;
    let mut nums = text.split_whitespace().map(str::parse::<u64>);
    match (nums.next(), nums.next()) {
        (Some(Ok(size)), Some(Ok(part_size))) if part_size > 0 => Ok(UploadShape { size, part_size }),
        _ => Err(invalid_part(
            s,
            format!("{} does not hold an upload's shape", sf.display()),
        )),
    }
}

fn invalid_part(s: &LocalStore, message: String) -> StoreError {
    invalid_part_in(s, "UploadPart", message)
}

fn invalid_part_in(s: &LocalStore, operation: &'static str, message: String) -> StoreError {
    StoreError::Backend {
        store: s.describe(),
        operation,
        code: "InvalidPart".into(),
        message,
        retryable: false,
    }
}

/// Writes part `number` at its offset, then journals it. Returns its ETag.
pub(super) fn write_part(s: &LocalStore, dir: &Path, number: u32, body: &[u8], md5: [u8; 16]) -> Result<String> {
    let shape = shape(s, dir)?;
    let Some(range) = shape.range(number) else {
        let parts = shape.parts();
        return Err(invalid_part(
            s,
            format!("part {number} is not one of the upload's {parts} parts"),
        ));
    };
    if body.len() as u64 != range.end - range.start {
        return Err(invalid_part(
            s,
            format!(
                "part {number} holds {} bytes; the upload's shape needs {}",
                body.len(),
                range.end - range.start
            ),
        ));
    }
    let df = dir.join(DATA);
    let f = OpenOptions::new().write(true).open(&df).map_err(io(&df))?;
    f.write_all_at(body, range.start).map_err(io(&df))?;
    if s.sync {
        // Starts write-back of this range now; the completion's sync waits for it.
        let _ = rustix::fs::fadvise(
            &f,
            range.start,
            std::num::NonZeroU64::new(range.end - range.start),
            rustix::fs::Advice::DontNeed,
        );
    }
    let jf = dir.join(JOURNAL);
    let line = format!("{number} {} {}\n", hex::encode(md5), body.len());
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&jf)
        .and_then(|mut j| j.write_all(line.as_bytes()))
        .map_err(io(&jf))?;
    Ok(ETag::of_md5(&md5))
}

/// The journal: for each part number, the MD5 and size last written. A line
/// cut short by a crash is ignored.
fn journal(dir: &Path) -> Result<BTreeMap<u32, ([u8; 16], u64)>> {
    let jf = dir.join(JOURNAL);
    let text = match fs::read_to_string(&jf) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(&jf)(e)),
    };
    let mut parts = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.split(' ');
        let (Some(n), Some(m), Some(z), None) = (f.next(), f.next(), f.next(), f.next()) else {
            continue;
        };
        let mut md5 = [0u8; 16];
        if let (Ok(n), Ok(()), Ok(z)) = (n.parse(), hex::decode_to_slice(m, &mut md5), z.parse()) {
            parts.insert(n, (md5, z));
        }
    }
    Ok(parts)
}

/// The journaled parts whose bytes in the staging file still have their MD5.
pub(super) fn list_parts(s: &LocalStore, dir: &Path) -> Result<Vec<PartInfo>> {
    let shape = shape(s, dir)?;
    let df = dir.join(DATA);
    let f = File::open(&df).map_err(io(&df))?;
    let mut out = Vec::new();
    for (number, (md5, size)) in journal(dir)? {
        let Some(range) = shape.range(number).filter(|r| r.end - r.start == size) else {
            continue;
        };
        if md5_of_range(&f, range).map_err(io(&df))? == md5 {
            out.push(PartInfo {
                number,
                etag: ETag::of_md5(&md5),
                size,
            });
        } else {
            tracing::warn!(path = %df.display(), part = number, "A recorded part's bytes were lost (power failure?); it will be sent again.");
        }
    }
    Ok(out)
}

fn md5_of_range(f: &File, range: std::ops::Range<u64>) -> std::io::Result<[u8; 16]> {
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = range.start;
    while at < range.end {
        let n = ((range.end - at) as usize).min(buf.len());
        f.read_exact_at(&mut buf[..n], at)?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hasher.finalize().into())
}

/// Checks `parts` name every part of the upload with its journaled ETag and
/// syncs the staging file (unless the store does not sync). Returns the
/// file, ready to be renamed into place, and the parts' MD5s.
pub(super) fn finish(s: &LocalStore, dir: &Path, parts: &[PartInfo]) -> Result<(PathBuf, Vec<[u8; 16]>)> {
    let shape = shape(s, dir)?;
    let journal = journal(dir)?;
    let complete_err = |message: String| invalid_part_in(s, "CompleteMultipartUpload", message);
    if parts.len() as u32 != shape.parts() || parts.iter().zip(1..).any(|(p, n)| p.number != n) {
        return Err(complete_err(format!(
            "completion must name parts 1 to {} in order; it named {}",
            shape.parts(),
            parts.len()
        )));
    }
    let mut md5s = Vec::with_capacity(parts.len());
    for p in parts {
        let md5 = ETag(&p.etag).md5();
        match journal.get(&p.number) {
            Some((m, _)) if Some(*m) == md5 => md5s.push(*m),
            _ => {
                return Err(complete_err(format!(
                    "part {} with ETag {} was not uploaded",
                    p.number, p.etag
                )))
            }
        }
    }
    let df = dir.join(DATA);
    if s.sync {
        File::open(&df).and_then(|f| f.sync_data()).map_err(io(&df))?;
    }
    Ok((df, md5s))
}
