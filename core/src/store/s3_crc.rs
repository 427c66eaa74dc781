//! CRC-64/NVME checksums sent with uploads, for stores that check them
//! (Amazon S3; off by default elsewhere, see `crc64nvme` in the side's
//! settings).
//!
//! A PUT carries the CRC of its body and a part the CRC of its own; the store
//! refuses a body that does not match. An upload is created with the
//! CRC-64/NVME algorithm and the full-object checksum type, and completed
//! with every part's CRC and the whole object's, combined from the parts in
//! order (a CRC of a concatenation follows from the CRCs and the lengths):
//! the store keeps that checksum, and the engine's HEAD after completion
//! compares it with the CRC of the bytes it read. The parts' CRCs are kept in
//! memory per upload as they are sent; parts sent by an earlier process are
//! taken from the store's ListParts answer. When a part's CRC is known
//! neither way, the upload is completed without checksums, as before.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{ObjectStore, PartInfo, Result, S3Store};
use crate::checksum::{crc64nvme, crc64nvme_combine};

/// The CRC-64/NVME of a body, computed off the async threads when large.
pub(super) async fn crc_of(body: &Bytes) -> u64 {
    if body.len() < 1 << 20 {
        return crc64nvme(body);
    }
    let b = body.clone();
    match tokio::task::spawn_blocking(move || crc64nvme(&b)).await {
        Ok(c) => c,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The CRCs of a completion: each part's, in the order given, and the whole object's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Completion {
    pub(super) parts: Vec<u64>,
    pub(super) whole: u64,
}

/// Each part's CRC and length, by part number.
type PartCrcs = BTreeMap<u32, (u64, u64)>;

/// Part CRCs (and lengths) sent per upload id.
#[derive(Debug, Clone, Default)]
pub(super) struct UploadCrcs(Arc<Mutex<HashMap<String, PartCrcs>>>);

impl UploadCrcs {
    /// Notes part `number` of an upload, sent (or listed) with this CRC.
    pub(super) fn sent(&self, upload_id: &str, number: u32, crc: u64, len: u64) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(upload_id.to_string()).or_default().insert(number, (crc, len));
    }

    /// Drops what is kept of an upload that ended.
    pub(super) fn forget(&self, upload_id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(upload_id);
    }

    fn known(&self, upload_id: &str, parts: &[PartInfo]) -> Option<Completion> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let sent = m.get(upload_id)?;
        let crcs: Vec<(u64, u64)> = parts
            .iter()
            .map(|p| sent.get(&p.number).copied().filter(|(_, len)| *len == p.size))
            .collect::<Option<_>>()?;
        let whole = crcs
            .iter()
            .skip(1)
            .fold(crcs.first()?.0, |acc, (crc, len)| crc64nvme_combine(acc, *crc, *len));
        Some(Completion {
            parts: crcs.into_iter().map(|(c, _)| c).collect(),
            whole,
        })
    }

    /// The CRCs to complete with: from the parts sent, else (a part sent by an
    /// earlier process) after asking the store's ListParts; `None` when a
    /// part's CRC is not known.
    pub(super) async fn for_completion(
        &self,
        store: &S3Store,
        key: &str,
        upload_id: &str,
        parts: &[PartInfo],
    ) -> Result<Option<Completion>> {
        if let Some(c) = self.known(upload_id, parts) {
            return Ok(Some(c));
        }
        store.list_parts(key, upload_id).await?;
        Ok(self.known(upload_id, parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_crc_is_the_parts_combined_in_order() {
        let c = UploadCrcs::default();
        let part = |n: u32, size: u64| PartInfo {
            number: n,
            etag: String::new(),
            size,
        };
        c.sent("u", 2, crc64nvme(b" world"), 6);
        assert_eq!(c.known("u", &[part(1, 5), part(2, 6)]), None, "part 1 unknown");
        c.sent("u", 1, crc64nvme(b"hello"), 5);
        let done = c.known("u", &[part(1, 5), part(2, 6)]).unwrap();
        assert_eq!(done.whole, crc64nvme(b"hello world"));
        assert_eq!(done.parts, vec![crc64nvme(b"hello"), crc64nvme(b" world")]);
        assert_eq!(c.known("u", &[part(1, 4), part(2, 6)]), None, "a size that differs");
        c.forget("u");
        assert_eq!(c.known("u", &[part(1, 5), part(2, 6)]), None);
    }
}
