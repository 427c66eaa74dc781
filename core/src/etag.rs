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

/// Strips the surrounding quotes (and a weak `W/` marker) of an ETag.
pub fn normalize(etag: &str) -> &str {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    e.trim_matches('"')
}

/// Classifies an ETag.
pub fn kind(etag: &str) -> ETagKind {
    let e = normalize(etag);
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

/// True when both ETags are MD5 forms of the same kind, so equality means
/// identical content (same part count for multipart).
pub fn comparable(a: &str, b: &str) -> bool {
    let (ka, kb) = (kind(a), kind(b));
    ka != ETagKind::Opaque && ka == kb
}

/// True when the ETags are equal ignoring quotes and hex case.
pub fn same(a: &str, b: &str) -> bool {
    normalize(a).eq_ignore_ascii_case(normalize(b))
}

/// The MD5 of a buffer.
pub fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// The quoted hex ETag of a single-part object with this MD5.
pub fn single_part_etag(md5: &[u8; 16]) -> String {
    format!("\"{}\"", hex::encode(md5))
}

/// The quoted ETag S3 gives a multipart object made of parts with these MD5s.
pub fn multipart_etag<'a>(part_md5s: impl IntoIterator<Item = &'a [u8; 16]>) -> String {
    let mut h = Md5::new();
    let mut n = 0u32;
    for m in part_md5s {
        h.update(m);
        n += 1;
    }
    format!("\"{}-{}\"", hex::encode(h.finalize()), n)
}

/// Decodes the MD5 of a single-part ETag (`"<32 hex>"`).
pub fn md5_of_etag(etag: &str) -> Option<[u8; 16]> {
    let e = normalize(etag);
    if kind(e) != ETagKind::SinglePart {
        return None;
    }
    let mut out = [0u8; 16];
    hex::decode_to_slice(e, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(kind("\"9b2cf535f27731c974343645a3985328\""), ETagKind::SinglePart);
        assert_eq!(kind("9b2cf535f27731c974343645a3985328-12"), ETagKind::Multipart(12));
        assert_eq!(kind("W/\"1700-12\""), ETagKind::Opaque);
        assert_eq!(kind("\"abc\""), ETagKind::Opaque);
        assert!(comparable(
            "\"9b2cf535f27731c974343645a3985328\"",
            "9B2CF535F27731C974343645A3985328"
        ));
        assert!(!comparable(
            "9b2cf535f27731c974343645a3985328-2",
            "9b2cf535f27731c974343645a3985328-3"
        ));
        assert!(same(
            "\"9b2cf535f27731c974343645a3985328\"",
            "9B2CF535F27731C974343645A3985328"
        ));
    }

    #[test]
    fn multipart_matches_s3_definition() {
        let a = md5(b"hello");
        let b = md5(b"world");
        let mut cat = Vec::new();
        cat.extend_from_slice(&a);
        cat.extend_from_slice(&b);
        let expect = format!("\"{}-2\"", hex::encode(md5(&cat)));
        assert_eq!(multipart_etag([&a, &b]), expect);
        assert_eq!(md5_of_etag(&single_part_etag(&a)), Some(a));
    }
}
