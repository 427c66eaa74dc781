//! Content evidence: modification times and full-object checksums.
//!
//! Two objects are the same content when a checksum both sides know agrees.
//! Which checksums a side knows depends on the store:
//!
//! * an MD5, from a single-part ETag of a store that hashes what it writes
//!   (not SSE-KMS or SSE-C, whose ETags are opaque), or from hashing a file;
//! * CRC-64/NVME, the full-object checksum S3 keeps for new objects
//!   (`x-amz-checksum-crc64nvme`, asked for with `x-amz-checksum-mode`);
//! * CRC-64/ECMA as Aliyun OSS and Tencent COS report it for every object,
//!   multipart included (`x-oss-hash-crc64ecma`, `x-cos-hash-crc64ecma`): the
//!   reflected ECMA-182 CRC with all-ones start and end, known elsewhere as
//!   CRC-64/XZ.
//!
//! A [`Hasher`] computes all three in one pass (MD5 in assembly, the CRCs with
//! carry-less multiplication through `crc-fast`), so local files are read once
//! whatever the other side can confirm. Part layouts do not matter to any of
//! them: they are checksums of the whole object's bytes.
//!
//! Modification times follow rclone's convention for S3 (`x-amz-meta-mtime`,
//! seconds since the epoch with a decimal fraction), so ferry and rclone agree
//! about the same bucket.

use crc_fast::{CrcAlgorithm, Digest as Crc};
use md5::{Digest as _, Md5};

/// The user-metadata name (without `x-amz-meta-`) that keeps a source's modification time.
pub const MTIME_META: &str = "mtime";

/// Full-object checksums a side knows. Every field is optional: a store
/// reports what it keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksums {
    /// MD5 of the whole object.
    pub md5: Option<[u8; 16]>,
    /// CRC-64/NVME of the whole object.
    pub crc64nvme: Option<u64>,
    /// CRC-64/ECMA (CRC-64/XZ) of the whole object, as OSS and COS report it.
    pub crc64ecma: Option<u64>,
}

impl Checksums {
    /// Whether no checksum is known.
    pub fn is_empty(&self) -> bool {
        self.md5.is_none() && self.crc64nvme.is_none() && self.crc64ecma.is_none()
    }

    /// Whether the two sides hold the same bytes, by every checksum both know:
    /// `Some(true)` when at least one is shared and all shared agree,
    /// `Some(false)` when one differs, `None` when they share none.
    pub fn agree(&self, other: &Checksums) -> Option<bool> {
        let pairs = [
            pair(self.md5.map(u128::from_be_bytes), other.md5.map(u128::from_be_bytes)),
            pair(self.crc64nvme.map(u128::from), other.crc64nvme.map(u128::from)),
            pair(self.crc64ecma.map(u128::from), other.crc64ecma.map(u128::from)),
        ];
        let shared: Vec<bool> = pairs.into_iter().flatten().collect();
        (!shared.is_empty()).then(|| shared.iter().all(|&same| same))
    }

    /// The checksums, named, for messages: `md5=…, crc64nvme=…`.
    pub fn describe(&self) -> String {
        let mut v = Vec::new();
        if let Some(m) = self.md5 {
            v.push(format!("md5={}", hex::encode(m)));
        }
        if let Some(c) = self.crc64nvme {
            v.push(format!("crc64nvme={}", crc64_base64(c)));
        }
        if let Some(c) = self.crc64ecma {
            v.push(format!("crc64ecma={c}"));
        }
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    }
}

fn pair(a: Option<u128>, b: Option<u128>) -> Option<bool> {
    Some(a? == b?)
}

/// MD5, CRC-64/NVME and CRC-64/ECMA of a byte stream, computed in one pass.
pub struct Hasher {
    md5: Md5,
    nvme: Crc,
    ecma: Crc,
    len: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hasher({} bytes)", self.len)
    }
}

impl Hasher {
    /// A hasher at the start of a stream.
    pub fn new() -> Self {
        Self {
            md5: Md5::new(),
            nvme: Crc::new(CrcAlgorithm::Crc64Nvme),
            ecma: Crc::new(CrcAlgorithm::Crc64Xz),
            len: 0,
        }
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.nvme.update(data);
        self.ecma.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The checksums of everything fed.
    pub fn finish(self) -> Checksums {
        Checksums {
            md5: Some(self.md5.finalize().into()),
            crc64nvme: Some(self.nvme.finalize()),
            crc64ecma: Some(self.ecma.finalize()),
        }
    }
}

/// CRC-64/NVME of a buffer.
pub fn crc64nvme(data: &[u8]) -> u64 {
    crc_fast::checksum(CrcAlgorithm::Crc64Nvme, data)
}

/// The CRC-64/NVME of `a` followed by `b`, from the CRCs of both and `b`'s length.
pub fn crc64nvme_combine(a: u64, b: u64, b_len: u64) -> u64 {
    crc_fast::checksum_combine(CrcAlgorithm::Crc64Nvme, a, b, b_len)
}

/// CRC-64/ECMA (as OSS and COS report it) of a buffer.
pub fn crc64ecma(data: &[u8]) -> u64 {
    crc_fast::checksum(CrcAlgorithm::Crc64Xz, data)
}

/// The CRC-64/ECMA of `a` followed by `b`, from the CRCs of both and `b`'s length.
pub fn crc64ecma_combine(a: u64, b: u64, b_len: u64) -> u64 {
    crc_fast::checksum_combine(CrcAlgorithm::Crc64Xz, a, b, b_len)
}

/// A CRC-64 as S3 writes it in `x-amz-checksum-crc64nvme`: big-endian bytes in base64.
pub fn crc64_base64(crc: u64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// Reads S3's base64 form of a CRC-64 (`None` when it is not 8 bytes of base64).
pub fn crc64_from_base64(s: &str) -> Option<u64> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// A modification time (nanoseconds since the epoch) in rclone's metadata
/// form: whole seconds, a dot, nine digits.
pub fn format_mtime(ns: i64) -> String {
    let (s, f) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    format!("{s}.{f:09}")
}

/// Reads a modification time written by ferry or rclone (`1700000000`,
/// `1700000000.5`, `1700000000.123456789`) as nanoseconds since the epoch.
pub fn parse_mtime(s: &str) -> Option<i64> {
    let s = s.trim();
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if frac.len() > 9 && !frac[9..].bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &frac[..frac.len().min(9)];
    let nanos: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32)
    };
    secs.checked_mul(1_000_000_000)?
        .checked_add(if secs < 0 { -nanos } else { nanos })
}

/// Two modification times closer than this are the same: rclone writes its
/// metadata through a float (sub-microsecond error), some file systems keep
/// coarse times, and a same-size edit cannot land this close to the version a
/// sync read before it.
pub const MTIME_WINDOW_NS: i64 = 1_000_000;

/// Whether two modification times are the same, within [`MTIME_WINDOW_NS`].
pub fn same_mtime(a: i64, b: i64) -> bool {
    a.abs_diff(b) < MTIME_WINDOW_NS as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crcs_match_their_catalogue_check_values() {
        let mut h = Hasher::new();
        h.update(b"1234");
        h.update(b"56789");
        let c = h.finish();
        assert_eq!(c.crc64nvme, Some(0xae8b14860a799888));
        assert_eq!(c.crc64ecma, Some(0x995dc9bbdf1939fa));
        assert_eq!(c.md5, Some(crate::etag::md5(b"123456789")));
        assert_eq!(crc64nvme(b"123456789"), 0xae8b14860a799888);
    }

    #[test]
    fn combine_equals_one_pass() {
        let (a, b) = (b"hello ".as_slice(), b"world".as_slice());
        let whole = crc64nvme(b"hello world");
        assert_eq!(crc64nvme_combine(crc64nvme(a), crc64nvme(b), b.len() as u64), whole);
        assert_eq!(crc64_from_base64(&crc64_base64(whole)), Some(whole));
        let ecma = crc64ecma(b"hello world");
        assert_eq!(crc64ecma_combine(crc64ecma(a), crc64ecma(b), b.len() as u64), ecma);
    }

    #[test]
    fn agreement_needs_a_shared_checksum() {
        let a = Checksums {
            md5: Some([1; 16]),
            ..Default::default()
        };
        let b = Checksums {
            crc64nvme: Some(7),
            ..Default::default()
        };
        assert_eq!(a.agree(&b), None);
        let c = Checksums {
            md5: Some([1; 16]),
            crc64nvme: Some(8),
            ..Default::default()
        };
        assert_eq!(a.agree(&c), Some(true));
        assert_eq!(b.agree(&c), Some(false));
    }

    #[test]
    fn mtimes_round_trip_in_rclones_form() {
        let ns = 1_700_000_000_123_456_789;
        assert_eq!(format_mtime(ns), "1700000000.123456789");
        assert_eq!(parse_mtime("1700000000.123456789"), Some(ns));
        assert_eq!(parse_mtime("1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(parse_mtime("1700000000"), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_mtime("soon"), None);
        assert_eq!(parse_mtime("1.x"), None);
        assert!(same_mtime(1_700_000_000_123_000_000, 1_700_000_000_123_456_789));
        assert!(!same_mtime(1_700_000_000_125_000_000, 1_700_000_000_123_456_789));
        assert!(!same_mtime(1_700_000_001_123_456_789, 1_700_000_000_123_456_789));
    }
}
