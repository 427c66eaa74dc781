//! Part planning: how an object of a given size is cut into parts.
//!
//! The configured part size is a floor; it grows (in whole MiB) until the
//! object fits in 10,000 parts, and is kept within S3's 5 MiB..5 GiB. The last
//! part holds the remainder. So a 5 TiB object gets ~525 MiB parts and any
//! object up to S3's 5 TiB limit is possible.

/// S3's smallest part (except the last).
pub const MIN_PART: u64 = 5 * 1024 * 1024;
/// S3's largest part.
pub const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;
/// S3's most parts per upload.
pub const MAX_PARTS: u64 = 10_000;
const MIB: u64 = 1024 * 1024;

/// The part size for an object of `size` bytes given the configured one.
pub fn part_size(size: u64, configured: u64) -> u64 {
    let mut p = configured.clamp(MIN_PART, MAX_PART);
    let needed = size.div_ceil(MAX_PARTS);
    if needed > p {
        p = needed.div_ceil(MIB) * MIB;
    }
    p.min(MAX_PART)
}

/// The byte ranges of the parts, 1-based numbers.
pub fn parts(size: u64, part_size: u64) -> impl Iterator<Item = (u32, std::ops::Range<u64>)> {
    let n = size.div_ceil(part_size).max(1);
    (0..n).map(move |i| (i as u32 + 1, i * part_size..((i + 1) * part_size).min(size)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn plans_obey_s3_limits(size in 1u64..=5 * 1024 * 1024 * 1024 * 1024, configured in 0u64..=6 * 1024 * 1024 * 1024) {
            let p = part_size(size, configured);
            prop_assert!((MIN_PART..=MAX_PART).contains(&p));
            prop_assert!(size.div_ceil(p) <= MAX_PARTS);
            prop_assert!(p >= configured.clamp(MIN_PART, MAX_PART));
        }

        #[test]
        fn parts_cover_the_object_exactly(size in 1u64..200_000_000, configured in 0u64..30_000_000) {
            let p = part_size(size, configured);
            let v: Vec<_> = parts(size, p).collect();
            prop_assert_eq!(v[0].1.start, 0);
            prop_assert_eq!(v.last().unwrap().1.end, size);
            for w in v.windows(2) {
                prop_assert_eq!(w[0].1.end, w[1].1.start);
                prop_assert_eq!(w[0].1.end - w[0].1.start, p);
                prop_assert_eq!(w[1].0, w[0].0 + 1);
            }
        }
    }

    #[test]
    fn five_tib_fits() {
        let size = 5u64 << 40;
        let p = part_size(size, 8 * MIB);
        assert!(size.div_ceil(p) <= MAX_PARTS);
        assert_eq!(part_size(100 * MIB, 8 * MIB), 8 * MIB);
        assert_eq!(parts(16 * MIB, 8 * MIB).count(), 2);
    }
}
