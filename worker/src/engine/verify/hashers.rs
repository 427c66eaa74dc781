//! Checking the bytes read from the source against the source's own ETag when
//! an object is sent in parts.
//!
//! A part's Content-MD5 is computed from the bytes read, so the destination
//! only proves that it stored what ferry read. A byte damaged on the way
//! *from* the source would pass. The source's ETag closes that gap, in one of
//! two ways:
//!
//! * **Mirrored layout.** A multipart source ETag (`md5-N`) is the MD5 of
//!   its N part MD5s, which depends on where its parts end. `HEAD
//!   ?partNumber=1` gives the first part's size (S3, MinIO, moto; radosgw
//!   ignores the parameter). When N parts of that size make up the object,
//!   the transfer uses the same part size. The MD5-of-MD5s of the parts sent
//!   must then equal the source ETag before the upload is completed. As a
//!   bonus, the destination's ETag equals the source's.
//! * **Whole MD5.** A single-part source ETag is the MD5 of the whole
//!   object. The parts are hashed in order as they arrive: a part waits for
//!   its predecessors, and `buffer_unordered` always runs the lowest
//!   unfinished part, so the wait ends. The hash must equal the ETag. Parts
//!   resumed from an earlier attempt were not read again, so this check
//!   needs a fresh upload.
//!
//! On a mismatch the upload is aborted and forgotten, so the next attempt
//! reads every part again. There is one exception: a source whose parts are
//! not all the same size (the ETag cannot be recomputed), found by asking for
//! every part's size. Such an object is completed, verified part by part
//! only, with a warning.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use md5::{Digest, Md5};
use tokio::sync::Notify;

/// MD5 of an object fed part by part, in part order, by concurrent tasks.
#[derive(Debug)]
pub struct OrderedMd5 {
    next: AtomicU32,
    ctx: Mutex<Option<Md5>>,
    turn: Notify,
}

impl OrderedMd5 {
    /// A hasher whose first part is number 1.
    pub fn new() -> Self {
        Self {
            next: AtomicU32::new(1),
            ctx: Mutex::new(Some(Md5::new())),
            turn: Notify::new(),
        }
    }

    /// Hashes part `n` once parts `1..n` are hashed.
    pub async fn feed(&self, n: u32, body: Bytes) {
        loop {
            let turn = self.turn.notified();
            tokio::pin!(turn);
            turn.as_mut().enable();
            if self.next.load(Ordering::Acquire) == n {
                break;
            }
            turn.await;
        }
        let ctx = self.ctx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut ctx) = ctx {
            let ctx = if body.len() < 256 * 1024 {
                ctx.update(&body);
                ctx
            } else {
                match tokio::task::spawn_blocking(move || {
                    ctx.update(&body);
                    ctx
                })
                .await
                {
                    Ok(c) => c,
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            };
            *self.ctx.lock().unwrap_or_else(|e| e.into_inner()) = Some(ctx);
        }
        self.next.store(n + 1, Ordering::Release);
        self.turn.notify_waiters();
    }

    /// The digest, once every part has been fed; `None` before that.
    pub fn finish(&self, parts: u32) -> Option<[u8; 16]> {
        if self.next.load(Ordering::Acquire) != parts + 1 {
            return None;
        }
        let ctx = self.ctx.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some(ctx.finalize().into())
    }
}

/// The CRC-64/NVME and CRC-64/ECMA of an object read in parts, in any
/// order: each part's CRCs are computed as it arrives and the parts are
/// combined in order at the end (a CRC of a concatenation follows from the
/// CRCs and the lengths). Compared with the whole-object CRC-64/ECMA that OSS
/// and COS send with reads, and with the CRC-64/NVME S3 keeps for the object
/// written. Both CRCs cost a few percent of an MD5 pass.
#[derive(Debug, Default)]
pub struct PartCrcs(Mutex<Vec<(u32, u64, u64, u64)>>);

/// The CRCs of a whole object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crcs {
    /// CRC-64/NVME.
    pub nvme: u64,
    /// CRC-64/ECMA.
    pub ecma: u64,
}

impl PartCrcs {
    /// Adds part `n`.
    pub async fn feed(&self, n: u32, body: Bytes) {
        let len = body.len() as u64;
        let both = move || {
            (
                ferry_core::checksum::crc64nvme(&body),
                ferry_core::checksum::crc64ecma(&body),
            )
        };
        let (nvme, ecma) = match tokio::task::spawn_blocking(both).await {
            Ok(c) => c,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((n, nvme, ecma, len));
    }

    /// The whole object's CRCs, from its parts in order.
    pub fn finish(self) -> Option<Crcs> {
        use ferry_core::checksum::{crc64ecma_combine, crc64nvme_combine};
        let mut parts = self.0.into_inner().unwrap_or_else(|e| e.into_inner());
        parts.sort_by_key(|p| p.0);
        let mut it = parts.into_iter();
        let (_, nvme, ecma, _) = it.next()?;
        Some(it.fold(Crcs { nvme, ecma }, |acc, (_, nvme, ecma, len)| Crcs {
            nvme: crc64nvme_combine(acc.nvme, nvme, len),
            ecma: crc64ecma_combine(acc.ecma, ecma, len),
        }))
    }
}

impl Default for OrderedMd5 {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a source's first part of `first` bytes out of `count` parts can be
/// mirrored for an object of `size` bytes: the parts all have that size but
/// the last, and the destination accepts parts of that size.
pub fn mirrorable(size: u64, first: u64, count: u32, etag_parts: u32, max_part: u64) -> bool {
    use crate::plan::{MAX_PARTS, MIN_PART};
    count == etag_parts
        && first > 0
        && first <= max_part
        && (count == 1 || first >= MIN_PART)
        && u64::from(count) <= MAX_PARTS
        && size.div_ceil(first) == u64::from(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn part_crcs_combine_in_part_order() {
        let c = PartCrcs::default();
        c.feed(2, Bytes::from_static(b" world")).await;
        c.feed(1, Bytes::from_static(b"hello")).await;
        let whole = c.finish().unwrap();
        assert_eq!(whole.ecma, ferry_core::checksum::crc64ecma(b"hello world"));
        assert_eq!(whole.nvme, ferry_core::checksum::crc64nvme(b"hello world"));
        assert_eq!(PartCrcs::default().finish(), None);
    }
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parts_fed_out_of_order_hash_in_order() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let parts: Vec<Bytes> = data.chunks(400_000).map(Bytes::copy_from_slice).collect();
        let h = Arc::new(OrderedMd5::new());
        let mut tasks = Vec::new();
        for (i, p) in parts.iter().enumerate().rev() {
            let (h, p) = (h.clone(), p.clone());
            tasks.push(tokio::spawn(async move { h.feed(i as u32 + 1, p).await }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(h.finish(parts.len() as u32), Some(ferry_core::etag::md5(&data)));
        assert_eq!(OrderedMd5::new().finish(1), None, "nothing fed yet");
    }

    #[test]
    fn layouts_that_can_be_mirrored() {
        const M: u64 = 1024 * 1024;
        assert!(mirrorable(17 * M, 8 * M, 3, 3, 5 * 1024 * M));
        assert!(mirrorable(16 * M, 8 * M, 2, 2, 5 * 1024 * M));
        assert!(
            !mirrorable(16 * M + 1, 8 * M, 2, 2, 5 * 1024 * M),
            "three parts of that size"
        );
        assert!(
            !mirrorable(17 * M, 8 * M, 3, 4, 5 * 1024 * M),
            "count disagrees with the ETag"
        );
        assert!(!mirrorable(6 * M, 3 * M, 2, 2, 5 * 1024 * M), "parts below 5 MiB");
        assert!(mirrorable(3 * M, 3 * M, 1, 1, 5 * 1024 * M), "one small part");
        assert!(!mirrorable(17 * M, 8 * M, 3, 3, 4 * M), "larger than allowed");
        assert!(!mirrorable(17 * M, 0, 3, 3, 5 * 1024 * M));
    }
}
