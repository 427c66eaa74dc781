//! Buffers for object bodies, held outside the allocator.
//!
//! Bytes in flight are bounded by the engine's budget, but memory the
//! allocator keeps after a body is freed is not: a large body allocated on
//! one thread and dropped on another (a blocking write, an HTTP task) may
//! stay in the first thread's heap until that thread allocates again. Over
//! 60 files of 1–64 MiB this held the process at about twice its 256 MiB
//! budget.
//!
//! A body of [`MAPPED_FROM`] bytes or more is therefore an anonymous memory
//! map of its exact length: its pages are populated in one call and go back
//! to the system the moment the last reference to it is dropped, on any
//! thread. Smaller bodies come from the allocator, where reuse is cheap and
//! retention small.

use bytes::Bytes;

/// Bodies of this size or more are memory maps of their own.
pub const MAPPED_FROM: usize = 1 << 20;

/// A writable body of a fixed length, frozen into [`Bytes`] once filled.
pub enum BodyBuf {
    /// A small body, from the allocator.
    Heap(Vec<u8>),
    /// A large body: an anonymous map freed when the last reference drops.
    Mapped(memmap2::MmapMut),
}

impl BodyBuf {
    /// A zeroed buffer of `len` bytes.
    pub fn zeroed(len: usize) -> BodyBuf {
        if len >= MAPPED_FROM {
            if let Ok(map) = memmap2::MmapOptions::new().len(len).populate().map_anon() {
                return BodyBuf::Mapped(map);
            }
        }
        BodyBuf::Heap(vec![0u8; len])
    }

    /// The buffer's bytes, to be filled.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            BodyBuf::Heap(v) => v,
            BodyBuf::Mapped(m) => m,
        }
    }

    /// The first `len` bytes as an immutable body (no copy).
    pub fn freeze(self, len: usize) -> Bytes {
        match self {
            BodyBuf::Heap(mut v) => {
                v.truncate(len);
                Bytes::from(v)
            }
            BodyBuf::Mapped(m) => Bytes::from_owner(m).slice(..len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_bodies_hold_what_was_written() {
        for len in [0, 10, MAPPED_FROM, MAPPED_FROM * 3 + 7] {
            let mut b = BodyBuf::zeroed(len);
            assert_eq!(matches!(b, BodyBuf::Mapped(_)), len >= MAPPED_FROM);
            b.as_mut_slice().iter_mut().enumerate().for_each(|(i, x)| *x = i as u8);
            let frozen = b.freeze(len.saturating_sub(3));
            assert_eq!(frozen.len(), len.saturating_sub(3));
            assert!(frozen.iter().enumerate().all(|(i, x)| *x == i as u8));
        }
    }
}
