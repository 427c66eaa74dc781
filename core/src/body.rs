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

/// Bodies of this size or more are memory maps of their own. At 1 MiB, set
/// C of the benchmark (1,000 objects of 1 KiB–64 MiB) still peaked at 360 MiB
/// under the 256 MiB budget: its many objects of 64 KiB–1 MiB lingered in
/// the allocator. At 64 KiB it peaked at 317 MiB.
pub const MAPPED_FROM: usize = 64 << 10;

/// A body of a known length, filled in order, then frozen into [`Bytes`]
/// without a copy.
pub struct BodyBuf {
    kind: Kind,
    filled: usize,
}

enum Kind {
    /// A small body, from the allocator (capacity reserved, never zeroed).
    Heap(Vec<u8>),
    /// A large body: an anonymous map freed when the last reference drops.
    Mapped(memmap2::MmapMut),
}

impl BodyBuf {
    /// An empty body with room for exactly `len` bytes.
    pub fn with_capacity(len: usize) -> BodyBuf {
        let kind = match len >= MAPPED_FROM {
            true => match memmap2::MmapOptions::new().len(len).populate().map_anon() {
                Ok(map) => Kind::Mapped(map),
                Err(_) => Kind::Heap(Vec::with_capacity(len)),
            },
            false => Kind::Heap(Vec::with_capacity(len)),
        };
        BodyBuf { kind, filled: 0 }
    }

    /// Appends `bytes`; false (and nothing appended) when they do not fit.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        let end = self.filled + bytes.len();
        match &mut self.kind {
            Kind::Heap(v) if end <= v.capacity() => v.extend_from_slice(bytes),
            Kind::Mapped(m) if end <= m.len() => m[self.filled..end].copy_from_slice(bytes),
            _ => return false,
        }
        self.filled = end;
        true
    }

    /// Bytes appended so far.
    pub fn len(&self) -> usize {
        self.filled
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// The bytes appended, as an immutable body (no copy).
    pub fn freeze(self) -> Bytes {
        match self.kind {
            Kind::Heap(v) => Bytes::from(v),
            Kind::Mapped(m) => Bytes::from_owner(m).slice(..self.filled),
        }
    }

    /// Reads `len` bytes of `f` from offset `start`.
    pub fn read_file(f: &std::fs::File, start: u64, len: usize) -> std::io::Result<Bytes> {
        use std::io::Read;
        use std::os::unix::fs::FileExt;
        let mut b = BodyBuf::with_capacity(len);
        match &mut b.kind {
            Kind::Heap(v) => {
                let mut r = f;
                std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(start))?;
                r.take(len as u64).read_to_end(v)?;
                if v.len() < len {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            Kind::Mapped(m) => f.read_exact_at(m, start)?,
        }
        b.filled = len;
        Ok(b.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_bodies_hold_what_was_pushed_and_refuse_more() {
        for len in [0, 10, MAPPED_FROM, MAPPED_FROM * 3 + 7] {
            let mut b = BodyBuf::with_capacity(len);
            assert_eq!(matches!(b.kind, Kind::Mapped(_)), len >= MAPPED_FROM);
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (head, tail) = bytes.split_at(len / 2);
            assert!(b.push(head) && b.push(tail));
            assert!(!b.push(b"x"), "nothing past the capacity");
            assert_eq!(b.len(), len);
            assert!(b.freeze() == bytes);
        }
    }

    #[test]
    fn files_are_read_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..MAPPED_FROM * 2).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        for (start, len) in [(0, 0), (3, 100), (7, MAPPED_FROM + 5)] {
            let got = BodyBuf::read_file(&f, start as u64, len).unwrap();
            assert!(got[..] == bytes[start..start + len]);
        }
        assert!(
            BodyBuf::read_file(&f, (MAPPED_FROM * 2 - 5) as u64, 10).is_err(),
            "past the end"
        );
    }
}
