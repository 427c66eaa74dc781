//! Checksums of local files, computed once and kept in the state file.
//!
//! Comparing by content (`--compare checksum`) must not read a million
//! unchanged files on every run. A file's checksums ([`Checksums`]: MD5,
//! CRC-64/NVME and CRC-64/ECMA, one pass) are kept keyed by its path with the
//! size, modification time (nanoseconds) and inode they were computed for;
//! any of the three changing — an edit, a touch, a replace by rename — makes
//! the entry stale and the file is read again. The table lives in the
//! embedded SQLite file ([`crate::db`]); writes are batched into one
//! transaction per call of [`FileHashes::put_many`].
//!
//! A multipart S3 object's ETag is the MD5 of its parts' MD5s, so a file
//! compares with it only when hashed in the same part size: that ETag is
//! kept too, for the last part size asked ([`FileHashes::part_etag`]).

use crate::etag::ETag;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::checksum::{Checksums, Hasher};
use crate::db::{Db, DbError};

/// What identifies one version of a file: size, mtime and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Inode number.
    pub inode: u64,
}

impl FileStamp {
    /// The stamp of a file as it is now.
    pub fn of(path: &Path) -> std::io::Result<FileStamp> {
        let md = std::fs::metadata(path)?;
        Ok(FileStamp {
            size: md.len(),
            mtime_ns: md.mtime().saturating_mul(1_000_000_000).saturating_add(md.mtime_nsec()),
            inode: md.ino(),
        })
    }
}

/// The stamp in a row's first three columns (size, mtime_ns, inode).
fn stamp_of_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileStamp> {
    Ok(FileStamp {
        size: r.get::<_, i64>(0)? as u64,
        mtime_ns: r.get(1)?,
        inode: r.get::<_, i64>(2)? as u64,
    })
}

/// The checksum cache of one state file.
#[derive(Debug, Clone)]
pub struct FileHashes {
    db: Db,
}

impl FileHashes {
    /// The cache in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The cached checksums of each `(path, stamp)`, `None` where missing or stale.
    pub async fn get_many(&self, files: Vec<(PathBuf, FileStamp)>) -> Result<Vec<Option<Checksums>>, DbError> {
        self.db
            .call(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT size, mtime_ns, inode, md5, crc64nvme, crc64ecma FROM file_hashes WHERE path = ?1",
                )?;
                let mut out = Vec::with_capacity(files.len());
                for (path, stamp) in &files {
                    let row = st
                        .query_row([path.to_string_lossy()], |r| {
                            let stored = stamp_of_row(r)?;
                            let md5: Vec<u8> = r.get(3)?;
                            Ok((stored, md5, r.get::<_, i64>(4)? as u64, r.get::<_, i64>(5)? as u64))
                        })
                        .ok();
                    out.push(row.and_then(|(stored, md5, nvme, ecma)| {
                        (stored == *stamp).then_some(Checksums {
                            md5: md5.try_into().ok(),
                            crc64nvme: Some(nvme),
                            crc64ecma: Some(ecma),
                        })
                    }));
                }
                Ok(out)
            })
            .await
    }

    /// Keeps the checksums of these file versions (one transaction).
    pub async fn put_many(&self, files: Vec<(PathBuf, FileStamp, Checksums)>) -> Result<(), DbError> {
        if files.is_empty() {
            return Ok(());
        }
        let now = crate::now_millis();
        self.db
            .call(move |c| {
                let tx = c.transaction()?;
                {
                    let mut st = tx.prepare_cached(
                        "INSERT OR REPLACE INTO file_hashes(path, size, mtime_ns, inode, md5, crc64nvme, crc64ecma, hashed_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?;
                    for (path, stamp, sums) in &files {
                        let (Some(md5), Some(nvme), Some(ecma)) = (sums.md5, sums.crc64nvme, sums.crc64ecma) else {
                            continue;
                        };
                        st.execute(rusqlite::params![
                            path.to_string_lossy(),
                            stamp.size as i64,
                            stamp.mtime_ns,
                            stamp.inode as i64,
                            md5.to_vec(),
                            nvme as i64,
                            ecma as i64,
                            now
                        ])?;
                    }
                }
                tx.commit()
            })
            .await
    }
}

impl FileHashes {
    /// The cached multipart ETag of a file version in parts of `part_size`.
    pub async fn part_etag(&self, path: PathBuf, stamp: FileStamp, part_size: u64) -> Result<Option<String>, DbError> {
        Ok(self
            .kept_part_etag(path, stamp)
            .await?
            .and_then(|(ps, etag)| (ps == part_size).then_some(etag)))
    }

    /// The multipart ETag kept for a file version, with its part size.
    pub async fn kept_part_etag(&self, path: PathBuf, stamp: FileStamp) -> Result<Option<(u64, String)>, DbError> {
        self.db
            .call(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT size, mtime_ns, inode, part_size, etag FROM file_part_etags WHERE path = ?1",
                )?;
                let row = st
                    .query_row([path.to_string_lossy()], |r| {
                        let stored = stamp_of_row(r)?;
                        Ok((stored, r.get::<_, i64>(3)? as u64, r.get::<_, String>(4)?))
                    })
                    .ok();
                Ok(row.and_then(|(stored, ps, etag)| (stored == stamp).then_some((ps, etag))))
            })
            .await
    }

    /// Keeps a file version's multipart ETag in parts of `part_size`.
    pub async fn put_part_etag(
        &self,
        path: PathBuf,
        stamp: FileStamp,
        part_size: u64,
        etag: String,
    ) -> Result<(), DbError> {
        self.db
            .call(move |c| {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO file_part_etags(path, size, mtime_ns, inode, part_size, etag)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(rusqlite::params![
                    path.to_string_lossy(),
                    stamp.size as i64,
                    stamp.mtime_ns,
                    stamp.inode as i64,
                    part_size as i64,
                    etag
                ])
                .map(|_| ())
            })
            .await
    }
}

/// The ETag S3 gives a file uploaded in parts of `part_size`, with the stamp
/// of the version read (an error when the file changed while it was read).
pub fn part_etag_of_file(path: &Path, part_size: u64) -> std::io::Result<(FileStamp, String)> {
    let before = FileStamp::of(path)?;
    let mut f = std::fs::File::open(path)?;
    let mut md5s = Vec::new();
    let mut buf = vec![0u8; part_size.clamp(1, 8 << 20) as usize];
    let mut left = before.size;
    while left > 0 {
        let mut part = <md5::Md5 as md5::Digest>::new();
        let mut in_part = part_size.min(left);
        left -= in_part;
        while in_part > 0 {
            let n = (in_part as usize).min(buf.len());
            f.read_exact(&mut buf[..n])?;
            md5::Digest::update(&mut part, &buf[..n]);
            in_part -= n as u64;
        }
        md5s.push(<[u8; 16]>::from(md5::Digest::finalize(part)));
    }
    if FileStamp::of(path)? != before {
        return Err(std::io::Error::other(format!(
            "{} changed while it was read",
            path.display()
        )));
    }
    Ok((before, ETag::of_parts(md5s.iter())))
}

/// Reads a whole file once and returns its checksums with the stamp of the
/// version read: taken before and checked after, so a file that changed
/// while it was read is an error rather than a wrong cache entry.
pub fn hash_file(path: &Path) -> std::io::Result<(FileStamp, Checksums)> {
    let before = FileStamp::of(path)?;
    let mut f = std::fs::File::open(path)?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let after = FileStamp::of(path)?;
    if before != after || h.len() != before.size {
        return Err(std::io::Error::other(format!(
            "{} changed while it was read",
            path.display()
        )));
    }
    Ok((before, h.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_go_stale_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileHashes::new(Db::open(&dir.path().join("s.sqlite")).unwrap());
        let f = dir.path().join("a");
        std::fs::write(&f, b"one").unwrap();
        let (stamp, sums) = hash_file(&f).unwrap();
        assert_eq!(sums.md5, Some(crate::etag::md5(b"one")));
        cache.put_many(vec![(f.clone(), stamp, sums)]).await.unwrap();
        assert_eq!(
            cache.get_many(vec![(f.clone(), stamp)]).await.unwrap(),
            vec![Some(sums)]
        );
        std::fs::write(&f, b"two").unwrap();
        let now = FileStamp::of(&f).unwrap();
        let changed = FileStamp {
            mtime_ns: stamp.mtime_ns + 1,
            ..now
        };
        assert_eq!(cache.get_many(vec![(f.clone(), changed)]).await.unwrap(), vec![None]);
        let moved = FileStamp {
            inode: stamp.inode + 1,
            ..stamp
        };
        assert_eq!(cache.get_many(vec![(f.clone(), moved)]).await.unwrap(), vec![None]);
        let (stamp, tag) = part_etag_of_file(&f, 2).unwrap();
        let parts = [crate::etag::md5(b"tw"), crate::etag::md5(b"o")];
        assert_eq!(tag, ETag::of_parts(parts.iter()));
        cache.put_part_etag(f.clone(), stamp, 2, tag.clone()).await.unwrap();
        assert_eq!(cache.part_etag(f.clone(), stamp, 2).await.unwrap(), Some(tag));
        assert_eq!(cache.part_etag(f, stamp, 3).await.unwrap(), None);
    }
}
