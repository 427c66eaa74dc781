//! ETags and the MD5 digests they are made from.
//!
//! S3 gives a single-part object the hex MD5 of its bytes as ETag, and a
//! multipart object the MD5 of the concatenated binary part MD5s followed by
//! `-N` (N parts). Both forms are "comparable": two objects with comparable
//! ETags of the same form and the same part layout have the same bytes when the
//! ETags are equal. Anything else (SSE-KMS ETags, synthetic local tokens) is
//! opaque and never compared.

use md5::{Digest, Md5};

/// The parsed form of an ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ETagKind {
    /// MD5 of the whole object (single PUT).
    SinglePart,
    /// MD5 of part MD5s, with the number of parts.
    Multipart(u32),
    /// Anything that is not an MD5 form.
    Opaque,
}

/// An ETag as a store, a listing or a record gives it. It owns how ETags
/// are compared (quotes, a weak `W/` marker and hex case aside), what kind
/// they are, the MD5 a single-part one carries, and their quoted form.
#[derive(Debug, Clone, Copy)]
pub struct ETag<'a>(pub &'a str);

impl<'a> ETag<'a> {
    /// The ETag without its surrounding quotes and weak marker.
    pub fn normalized(self) -> &'a str {
        let e = self.0.trim();
        let e = e.strip_prefix("W/").unwrap_or(e);
        e.trim_matches('"')
    }

    /// Its form.
    pub fn kind(self) -> ETagKind {
        let e = self.normalized();
        let is_md5 = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
        match e.split_once('-') {
            None if is_md5(e) => ETagKind::SinglePart,
            Some((h, n)) if is_md5(h) => match n.parse::<u32>() {
                Ok(n) if n >= 1 => ETagKind::Multipart(n),
                _ => ETagKind::Opaque,
            },
            _ => ETagKind::Opaque,
        }
    }

    /// True when both are MD5 forms of the same kind, so equality means
    /// identical content (same part count for multipart).
    pub fn comparable(self, other: &str) -> bool {
        let (ka, kb) = (self.kind(), ETag(other).kind());
        ka != ETagKind::Opaque && ka == kb
    }

    /// True when both name the same ETag (quotes and hex case aside).
    pub fn same(self, other: &str) -> bool {
        self.normalized().eq_ignore_ascii_case(ETag(other).normalized())
    }

    /// The MD5 of a single-part ETag (`"<32 hex>"`).
    pub fn md5(self) -> Option<[u8; 16]> {
        if self.kind() != ETagKind::SinglePart {
            return None;
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(self.normalized(), &mut out).ok()?;
        Some(out)
    }

    /// The quoted form, as S3 writes ETags.
    pub fn quoted(self) -> String {
        format!("\"{}\"", self.normalized())
    }

    /// Whether two optional ETags are both present and the same.
    pub fn both_same(a: Option<&str>, b: Option<&str>) -> bool {
        matches!((a, b), (Some(a), Some(b)) if ETag(a).same(b))
    }

    /// Whether two optional ETags name the same version: both the same, or
    /// both absent.
    pub fn same_version(a: Option<&str>, b: Option<&str>) -> bool {
        a.is_none() && b.is_none() || Self::both_same(a, b)
    }

    /// The quoted ETag of a single-part object with this MD5.
    pub fn of_md5(md5: &[u8; 16]) -> String {
        format!("\"{}\"", hex::encode(md5))
    }

    /// The quoted ETag S3 gives a multipart object made of parts with these MD5s.
    pub fn of_parts<'m>(part_md5s: impl IntoIterator<Item = &'m [u8; 16]>) -> String {
        let mut h = Md5::new();
        let mut n = 0u32;
        for m in part_md5s {
            h.update(m);
            n += 1;
        }
        format!("\"{}-{}\"", hex::encode(h.finalize()), n)
    }
}

/// The MD5 of a buffer.
pub fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let kind = |t| ETag(t).kind();
        assert_eq!(kind("\"9b2cf535f27731c974343645a3985328\""), ETagKind::SinglePart);
        assert_eq!(kind("9b2cf535f27731c974343645a3985328-12"), ETagKind::Multipart(12));
        assert_eq!(kind("W/\"1700-12\""), ETagKind::Opaque);
        assert_eq!(kind("\"abc\""), ETagKind::Opaque);
        assert!(ETag("\"9b2cf535f27731c974343645a3985328\"").comparable("9B2CF535F27731C974343645A3985328"));
        assert!(!ETag("9b2cf535f27731c974343645a3985328-2").comparable("9b2cf535f27731c974343645a3985328-3"));
        assert!(ETag("\"9b2cf535f27731c974343645a3985328\"").same("9B2CF535F27731C974343645A3985328"));
        assert_eq!(ETag("abc").quoted(), "\"abc\"");
        assert_eq!(ETag("W/\"abc\"").quoted(), "\"abc\"");
        assert!(ETag::same_version(None, None) && !ETag::both_same(None, None));
        assert!(ETag::both_same(Some("\"ab\""), Some("AB")) && !ETag::same_version(Some("a"), None));
    }

    #[test]
    fn multipart_matches_s3_definition() {
        let a = md5(b"hello");
        let b = md5(b"world");
        let mut cat = Vec::new();
        cat.extend_from_slice(&a);
        cat.extend_from_slice(&b);
        let expect = format!("\"{}-2\"", hex::encode(md5(&cat)));
        assert_eq!(ETag::of_parts([&a, &b]), expect);
        assert_eq!(ETag(&ETag::of_md5(&a)).md5(), Some(a));
    }
}
