//! A directory as an object store.
//!
//! A key maps to a path by splitting it on `/`; every segment must be a valid,
//! non-empty file name, so keys that would escape the root (`..`), absolute
//! keys, empty segments (`a//b`, directory markers `a/`) and NUL bytes are
//! refused with [`StoreError::InvalidKey`].
//!
//! Listing walks the tree depth first and, in each directory, visits entries
//! sorted by their key bytes with a `/` appended to directory names. Every key
//! below directory `d` starts with `d/`, so this yields exactly S3's byte order
//! (`a-b` < `a/b` < `a0`) while holding one directory's entries per level.
//!
//! Writes never expose a partial file: a PUT writes a temporary file under
//! `<root>/.ferry-uploads/`, syncs it and renames it into place. A multipart
//! upload writes its parts at their offsets in one pre-sized staging file
//! and renames that file into place when it completes (see [`staged`]). A
//! write that fails (a full disk) removes what it began. The reserved
//! top-level name `.ferry-uploads` is never listed.
//!
//! A store opened [`without_fsync`](LocalStore::without_fsync) skips every
//! sync: faster, and a power failure may leave renamed files with lost
//! bytes. For scratch copies only.
//!
//! ETags: a file's ETag is a weak token `W/"<mtime ns>-<size>"` (never compared
//! as content, only used to pin reads); PUT and complete return the MD5 forms
//! S3 would give, computed from the verified bytes.

use crate::etag::ETag;
use std::fs::{self, File};
use std::io::Write;

mod staged;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use super::{
    Capabilities, GetOptions, GetResult, ObjectAttributes, ObjectMeta, ObjectStore, PartInfo, PutOptions, Result,
    StoreError, UploadInfo, UploadShape,
};
use crate::body::BodyBuf;
use crate::{checksum, etag};

const STAGING: &str = ".ferry-uploads";

/// A local directory store.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: Arc<PathBuf>,
    /// Whether files are synced before they are renamed into place.
    sync: bool,
}

impl LocalStore {
    /// A store rooted at `root`. The directory is created on first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: Arc::new(root.into()),
            sync: true,
        }
    }

    /// The same store, never syncing what it writes: files are renamed into
    /// place as soon as their bytes are written, and a power failure can
    /// leave them with lost bytes. For scratch copies.
    pub fn without_fsync(self) -> Self {
        Self { sync: false, ..self }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn invalid(&self, key: &str, reason: impl Into<String>) -> StoreError {
        StoreError::InvalidKey {
            store: self.describe(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The path of a key, or why the key cannot be a local file.
    pub fn path_of(&self, key: &str) -> Result<PathBuf> {
        if key.is_empty() {
            return Err(self.invalid(key, "an empty key is not a file name"));
        }
        if key.starts_with('/') {
            return Err(self.invalid(key, "an absolute path would escape the destination directory"));
        }
        let mut path = (*self.root).clone();
        for (i, seg) in key.split('/').enumerate() {
            match seg {
                "" => {
                    return Err(self.invalid(
                        key,
                        "it has an empty path segment ('//' or a trailing '/' directory marker)",
                    ))
                }
                "." | ".." => {
                    return Err(self.invalid(key, "'.' and '..' segments would escape the destination directory"))
                }
                STAGING if i == 0 => {
                    return Err(self.invalid(key, "'.ferry-uploads' is reserved for ferry's temporary files"))
                }
                s if s.contains('\0') => return Err(self.invalid(key, "it contains a NUL byte")),
                s if s.len() > 255 => return Err(self.invalid(key, "a path segment is longer than 255 bytes")),
                s => path.push(s),
            }
        }
        Ok(path)
    }

    fn staging(&self) -> PathBuf {
        self.root.join(STAGING)
    }

    fn upload_dir(&self, key: &str, upload_id: &str) -> Result<PathBuf> {
        if upload_id.is_empty() || !upload_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(self.no_upload(key, upload_id));
        }
        let dir = self.staging().join(upload_id);
        match fs::read_to_string(dir.join("key")) {
            Ok(k) if k == key => Ok(dir),
            _ => Err(self.no_upload(key, upload_id)),
        }
    }

    fn no_upload(&self, key: &str, upload_id: &str) -> StoreError {
        StoreError::NoSuchUpload {
            store: self.describe(),
            key: key.into(),
            upload_id: upload_id.into(),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&LocalStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || f(&me)).await {
            Ok(r) => r,
            Err(e) => Err(StoreError::Io {
                path: (*self.root).clone(),
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }

    /// Writes `data` to a fresh temporary file in the staging directory and syncs it.
    fn write_temp(&self, data: &[u8]) -> Result<PathBuf> {
        let dir = self.staging();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tmp = dir.join(format!("tmp-{}", random_id()));
        // The staging directory may be removed by a concurrent writer tidying up.
        let mut f = File::create(&tmp)
            .or_else(|_| fs::create_dir_all(&dir).and_then(|_| File::create(&tmp)))
            .map_err(io(&tmp))?;
        let written = f
            .write_all(data)
            .and_then(|_| if self.sync { f.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io(&tmp)(e));
        }
        Ok(tmp)
    }

    /// Writes a whole object: a synced temporary file, given the source's
    /// modification time when one is known, renamed into place.
    fn write_object(&self, key: &str, body: &[u8], opts: &PutOptions) -> Result<()> {
        let tmp = self.write_temp(body)?;
        if let Err(e) = set_mtime(&tmp, source_mtime(opts)) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.publish(key, &tmp)?;
        self.tidy();
        Ok(())
    }

    /// Removes the staging directory when nothing is left in it.
    fn tidy(&self) {
        let _ = fs::remove_dir(self.staging());
    }

    /// Renames a finished temporary file to the key's path.
    fn publish(&self, key: &str, tmp: &Path) -> Result<()> {
        let path = self.path_of(key)?;
        if let Some(parent) = path.parent() {
            if let Err(e) = fs::create_dir_all(parent) {
                let _ = fs::remove_file(tmp);
                return Err(
                    if e.kind() == std::io::ErrorKind::NotADirectory || e.kind() == std::io::ErrorKind::AlreadyExists {
                        self.invalid(key, "a parent path segment already exists as a file")
                    } else {
                        io(parent)(e)
                    },
                );
            }
        }
        fs::rename(tmp, &path).map_err(|e| {
            let _ = fs::remove_file(tmp);
            if path.is_dir() {
                self.invalid(key, "a directory with this name already exists")
            } else {
                io(&path)(e)
            }
        })
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn random_id() -> String {
    format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

fn weak_etag(md: &fs::Metadata) -> String {
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("W/\"{mtime:x}-{:x}\"", md.len())
}

fn mtime_ns(md: &fs::Metadata) -> Option<i64> {
    let t = md.modified().ok()?;
    Some(match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_nanos().min(i64::MAX as u128) as i64),
    })
}

fn file_meta(key: String, md: &fs::Metadata) -> ObjectMeta {
    let mtime = mtime_ns(md);
    ObjectMeta {
        key,
        size: md.len(),
        etag: Some(weak_etag(md)),
        last_modified: mtime.map(|ns| ns.div_euclid(1_000_000)),
        mtime_ns: mtime,
        ..Default::default()
    }
}

/// The source's modification time a write carries (`mtime` user metadata).
fn source_mtime(opts: &PutOptions) -> Option<std::time::SystemTime> {
    let ns = checksum::parse_mtime(opts.attributes.user.get(checksum::MTIME_META)?)?;
    let d = std::time::Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        std::time::UNIX_EPOCH.checked_add(d)
    } else {
        std::time::UNIX_EPOCH.checked_sub(d)
    }
}

/// Gives a finished temporary file the source's modification time.
fn set_mtime(path: &Path, mtime: Option<std::time::SystemTime>) -> Result<()> {
    let Some(t) = mtime else { return Ok(()) };
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .map_err(io(path))
}

struct Walk<'a> {
    prefix: &'a str,
    start_after: Option<&'a str>,
    tx: tokio::sync::mpsc::Sender<Result<ObjectMeta>>,
}

impl Walk<'_> {
    /// Reports an error to the consumer and ends the walk.
    fn fail(&self, e: StoreError) -> bool {
        let _ = self.tx.blocking_send(Err(e));
        false
    }

    /// Visits `dir` (whose keys start with `dir_key`); false when the consumer went away.
    fn dir(&self, dir: &Path, dir_key: &str) -> bool {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir_key.is_empty() => return true,
            Err(e) => return self.fail(io(dir)(e)),
        };
        let mut entries = Vec::new();
        for ent in rd {
            let ent = match ent {
                Ok(e) => e,
                Err(e) => return self.fail(io(dir)(e)),
            };
            let Some(name) = ent.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %ent.path().display(), "Skipping a file whose name is not UTF-8.");
                continue;
            };
            if dir_key.is_empty() && name == STAGING {
                continue;
            }
            let path = ent.path();
            let md = match fs::metadata(&path) {
                Ok(md) => md,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "Skipping an entry that cannot be read (broken link?).");
                    continue;
                }
            };
            let is_link = ent.file_type().map(|t| t.is_symlink()).unwrap_or(false);
            if md.is_dir() {
                if is_link {
                    tracing::warn!(path = %path.display(), "Skipping a symbolic link to a directory.");
                    continue;
                }
                entries.push((format!("{dir_key}{name}/"), path, None));
            } else if md.is_file() {
                entries.push((format!("{dir_key}{name}"), path, Some(md)));
            }
        }
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (key, path, md) in entries {
            match md {
                None => {
                    if !(key.starts_with(self.prefix) || self.prefix.starts_with(&key)) {
                        continue;
                    }
                    if let Some(sa) = self.start_after {
                        if key.as_str() < sa && !sa.starts_with(&key) {
                            continue;
                        }
                    }
                    if !self.dir(&path, &key) {
                        return false;
                    }
                }
                Some(md) => {
                    if !key.starts_with(self.prefix) || self.start_after.is_some_and(|sa| key.as_str() <= sa) {
                        continue;
                    }
                    if self.tx.blocking_send(Ok(file_meta(key, &md))).is_err() {
                        return false;
                    }
                }
            }
        }
        true
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    /// A directory hashes every body it writes (the MD5 of a part names its
    /// file); it lists modification-time tokens, not MD5 ETags.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            hashes_bodies: true,
            etags_are_md5: false,
        }
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let root = (*self.root).clone();
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            let walk = Walk {
                prefix: &prefix,
                start_after: start_after.as_deref(),
                tx,
            };
            walk.dir(&root, "");
        });
        stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let key = key.to_string();
        self.blocking(move |s| {
            let path = s.path_of(&key)?;
            match fs::metadata(&path) {
                Ok(md) if md.is_file() => Ok(Some(file_meta(key, &md))),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.kind() == std::io::ErrorKind::NotADirectory => {
                    Ok(None)
                }
                Err(e) => Err(io(&path)(e)),
            }
        })
        .await
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> Result<GetResult> {
        let key = key.to_string();
        let opts = opts.clone();
        self.blocking(move |s| {
            let path = s.path_of(&key)?;
            let f = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.kind() == std::io::ErrorKind::NotADirectory => {
                    return Err(StoreError::NotFound {
                        store: s.describe(),
                        key,
                    });
                }
                Err(e) => return Err(io(&path)(e)),
            };
            let md = f.metadata().map_err(io(&path))?;
            if !md.is_file() {
                return Err(StoreError::NotFound {
                    store: s.describe(),
                    key,
                });
            }
            if let Some(expected) = &opts.if_match {
                if !ETag(expected).same(&weak_etag(&md)) {
                    return Err(StoreError::PreconditionFailed {
                        store: s.describe(),
                        key,
                        expected: expected.clone(),
                    });
                }
            }
            let (start, end) = match &opts.range {
                Some(r) => (r.start.min(md.len()), r.end.min(md.len())),
                None => (0, md.len()),
            };
            let attributes = ObjectAttributes {
                content_type: mime_guess::from_path(&path)
                    .first()
                    .map(|m| m.essence_str().to_string()),
                user: mtime_ns(&md)
                    .map(|ns| (checksum::MTIME_META.to_string(), checksum::format_mtime(ns)))
                    .into_iter()
                    .collect(),
                ..Default::default()
            };
            let meta = file_meta(key, &md);
            let len = end.saturating_sub(start) as usize;
            // A large body is a memory map of its own (see `crate::body`).
            let body = BodyBuf::read_file(&f, start, len).map_err(io(&path))?;
            Ok(GetResult { body, meta, attributes })
        })
        .await
    }

    async fn put(&self, key: &str, body: Bytes, md5: [u8; 16], opts: &PutOptions) -> Result<Option<String>> {
        let (key, opts) = (key.to_string(), opts.clone());
        self.blocking(move |s| {
            s.path_of(&key)?;
            if etag::md5(&body) != md5 {
                return Err(StoreError::BadDigest {
                    store: s.describe(),
                    key,
                });
            }
            s.write_object(&key, &body, &opts)?;
            Ok(Some(ETag::of_md5(&md5)))
        })
        .await
    }

    async fn put_unhashed(&self, key: &str, body: Bytes, opts: &PutOptions) -> Result<String> {
        let (key, opts) = (key.to_string(), opts.clone());
        self.blocking(move |s| {
            s.path_of(&key)?;
            let md5 = etag::md5(&body);
            s.write_object(&key, &body, &opts)?;
            Ok(ETag::of_md5(&md5))
        })
        .await
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions, shape: UploadShape) -> Result<String> {
        let key = key.to_string();
        let mtime = opts.attributes.user.get(checksum::MTIME_META).cloned();
        self.blocking(move |s| {
            s.path_of(&key)?;
            let id = random_id();
            staged::create(&s.staging().join(&id), &key, shape, mtime.as_deref())?;
            Ok(id)
        })
        .await
    }

    async fn upload_part(&self, key: &str, upload_id: &str, number: u32, body: Bytes, md5: [u8; 16]) -> Result<String> {
        let (key, upload_id) = (key.to_string(), upload_id.to_string());
        self.blocking(move |s| {
            let dir = s.upload_dir(&key, &upload_id)?;
            if etag::md5(&body) != md5 {
                return Err(StoreError::BadDigest {
                    store: s.describe(),
                    key,
                });
            }
            staged::write_part(s, &dir, number, &body, md5)
        })
        .await
    }

    async fn upload_part_unhashed(&self, key: &str, upload_id: &str, number: u32, body: Bytes) -> Result<String> {
        let (key, upload_id) = (key.to_string(), upload_id.to_string());
        self.blocking(move |s| {
            let dir = s.upload_dir(&key, &upload_id)?;
            staged::write_part(s, &dir, number, &body, etag::md5(&body))
        })
        .await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        let (key, upload_id) = (key.to_string(), upload_id.to_string());
        self.blocking(move |s| staged::list_parts(s, &s.upload_dir(&key, &upload_id)?))
            .await
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[PartInfo]) -> Result<Option<String>> {
        let (key, upload_id, parts) = (key.to_string(), upload_id.to_string(), parts.to_vec());
        self.blocking(move |s| {
            let dir = s.upload_dir(&key, &upload_id)?;
            let (tmp, md5s) = staged::finish(s, &dir, &parts)?;
            // The source's modification time, kept with the upload when it began.
            let mut opts = PutOptions::default();
            if let Ok(m) = fs::read_to_string(dir.join(checksum::MTIME_META)) {
                opts.attributes.user.insert(checksum::MTIME_META.into(), m);
            }
            set_mtime(&tmp, source_mtime(&opts))?;
            let published = s.publish(&key, &tmp);
            // Published or not, the staging file is gone: so is the upload.
            let _ = fs::remove_dir_all(&dir);
            published?;
            s.tidy();
            Ok(Some(ETag::of_parts(md5s.iter())))
        })
        .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let (key, upload_id) = (key.to_string(), upload_id.to_string());
        self.blocking(move |s| {
            if let Ok(dir) = s.upload_dir(&key, &upload_id) {
                fs::remove_dir_all(&dir).map_err(io(&dir))?;
            }
            Ok(())
        })
        .await
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        let prefix = prefix.to_string();
        self.blocking(move |s| {
            let staging = s.staging();
            let rd = match fs::read_dir(&staging) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
                Err(e) => return Err(io(&staging)(e)),
            };
            let mut out = Vec::new();
            for ent in rd.flatten() {
                let Ok(key) = fs::read_to_string(ent.path().join("key")) else {
                    continue;
                };
                if key.starts_with(&prefix) {
                    let initiated = ent
                        .metadata()
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as i64);
                    out.push(UploadInfo {
                        key,
                        upload_id: ent.file_name().to_string_lossy().into_owned(),
                        initiated,
                    });
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key).then(a.upload_id.cmp(&b.upload_id)));
            Ok(out)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let key = key.to_string();
        self.blocking(move |s| {
            let path = s.path_of(&key)?;
            match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io(&path)(e)),
            }
        })
        .await
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path_of(key).ok()
    }

    async fn part_size(&self, _key: &str, _number: u32) -> Result<Option<(u64, u32)>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        conformance::put_get_list_delete(&s, "").await;
        conformance::put_get_list_delete(&s, "sub/dir/").await;
        conformance::bad_digest_rejected(&s, "x/").await;
        conformance::multipart_resume(&s, "m/").await;
        conformance::unhashed_writes(&s, "u/").await;
        let unsynced = LocalStore::new(dir.path().join("scratch")).without_fsync();
        conformance::put_get_list_delete(&unsynced, "").await;
        conformance::multipart_resume(&unsynced, "m/").await;
    }

    /// Parts land at their offsets in any order; a journaled part whose bytes
    /// were lost is not listed (so it is sent again); a part that does not
    /// fit the shape is refused; completion moves the staging file into place.
    #[tokio::test]
    async fn parts_are_placed_by_the_shape_and_lost_bytes_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        let parts = [
            conformance::data(4096, 1),
            conformance::data(4096, 2),
            conformance::data(100, 3),
        ];
        let id = s
            .create_multipart("k", &PutOptions::default(), conformance::shape(8292, 4096))
            .await
            .unwrap();
        let mut infos = Vec::new();
        for n in [3u32, 1, 2] {
            let body = parts[n as usize - 1].clone();
            let etag = s.upload_part_unhashed("k", &id, n, body.clone()).await.unwrap();
            infos.push(PartInfo {
                number: n,
                etag,
                size: body.len() as u64,
            });
        }
        infos.sort_by_key(|p| p.number);
        match s.upload_part_unhashed("k", &id, 2, conformance::data(10, 9)).await {
            Err(StoreError::Backend { code, message, .. }) => {
                assert_eq!(code, "InvalidPart");
                assert!(message.contains("needs 4096"), "{message}");
            }
            other => panic!("a part of the wrong size must be refused, got {other:?}"),
        }
        assert!(s
            .upload_part_unhashed("k", &id, 4, conformance::data(1, 9))
            .await
            .is_err());

        // Bytes of part 2 lost after its journal line was written.
        let data = dir.path().join(STAGING).join(&id).join(staged::DATA);
        let f = File::options().write(true).open(&data).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[0u8; 16], 4096).unwrap();
        let listed: Vec<u32> = s.list_parts("k", &id).await.unwrap().iter().map(|p| p.number).collect();
        assert_eq!(listed, vec![1, 3], "the damaged part is not listed");
        s.upload_part_unhashed("k", &id, 2, parts[1].clone()).await.unwrap();
        assert_eq!(s.list_parts("k", &id).await.unwrap().len(), 3);

        match s.complete_multipart("k", &id, &infos[..2]).await {
            Err(StoreError::Backend { code, .. }) => assert_eq!(code, "InvalidPart"),
            other => panic!("completing with a part missing must fail, got {other:?}"),
        }
        s.complete_multipart("k", &id, &infos).await.unwrap();
        assert_eq!(std::fs::read(dir.path().join("k")).unwrap(), parts.concat());
        assert!(!dir.path().join(STAGING).exists(), "nothing staged is left");
    }

    #[tokio::test]
    async fn refuses_keys_that_escape_or_are_not_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        for key in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "dir/",
            "",
            ".ferry-uploads/x",
            "a/./b",
        ] {
            let body = Bytes::from_static(b"x");
            match s.put(key, body.clone(), etag::md5(&body), &PutOptions::default()).await {
                Err(StoreError::InvalidKey { reason, .. }) => assert!(!reason.is_empty()),
                other => panic!("{key:?} must be refused, got {other:?}"),
            }
        }
        assert!(std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .all(|e| e.file_name() == ".ferry-uploads"));
    }

    #[tokio::test]
    async fn prefix_filter_descends_only_where_needed() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        for k in ["a/x", "ab/y", "b/z", "a-b"] {
            let body = Bytes::from_static(b"1");
            s.put(k, body.clone(), etag::md5(&body), &PutOptions::default())
                .await
                .unwrap();
        }
        let got: Vec<String> = s.list("a", None).map_ok(|m| m.key).try_collect().await.unwrap();
        assert_eq!(got, vec!["a-b", "a/x", "ab/y"]);
        let got: Vec<String> = s.list("", Some("a/x")).map_ok(|m| m.key).try_collect().await.unwrap();
        assert_eq!(got, vec!["ab/y", "b/z"]);
    }
}
