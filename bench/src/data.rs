//! The benchmark data sets, generated deterministically from a seed.
//!
//! Every file's bytes come from a ChaCha8 stream seeded by (seed, set, index),
//! so a set is the same on every machine and files can be generated in any
//! order. Each set is written under `DIR/<set>/` with a manifest
//! `DIR/<set>.manifest` listing `key<TAB>size<TAB>md5` in key order; the first
//! line records the set's definition, and a set whose manifest already
//! matches is not generated again.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// How the sizes of a set are drawn.
#[derive(Debug, Clone, Copy)]
pub enum Sizes {
    /// Every object has this size, bytes.
    Fixed(u64),
    /// Log-uniform between the bounds, bytes.
    LogUniform(u64, u64),
}

/// One data set.
#[derive(Debug, Clone, Copy)]
pub struct SetSpec {
    /// `A`, `B` or `C`.
    pub name: &'static str,
    /// Number of objects.
    pub count: usize,
    /// Their sizes.
    pub sizes: Sizes,
}

impl SetSpec {
    /// The set `name` at full size, or at smoke size (tiny, for CI).
    pub fn named(name: &str, smoke: bool) -> Result<SetSpec> {
        Ok(match (name, smoke) {
            ("A", false) => SetSpec {
                name: "A",
                count: 1,
                sizes: Sizes::Fixed(2 * GIB),
            },
            ("B", false) => SetSpec {
                name: "B",
                count: 5000,
                sizes: Sizes::Fixed(16 * KIB),
            },
            ("C", false) => SetSpec {
                name: "C",
                count: 1000,
                sizes: Sizes::LogUniform(KIB, 64 * MIB),
            },
            ("M", false) => SetSpec {
                name: "M",
                count: 60,
                sizes: Sizes::LogUniform(MIB, 64 * MIB),
            },
            ("M", true) => SetSpec {
                name: "M",
                count: 6,
                sizes: Sizes::LogUniform(MIB, 4 * MIB),
            },
            ("A", true) => SetSpec {
                name: "A",
                count: 1,
                sizes: Sizes::Fixed(24 * MIB),
            },
            ("B", true) => SetSpec {
                name: "B",
                count: 40,
                sizes: Sizes::Fixed(16 * KIB),
            },
            ("C", true) => SetSpec {
                name: "C",
                count: 12,
                sizes: Sizes::LogUniform(KIB, 12 * MIB),
            },
            _ => bail!("unknown data set {name:?}; the sets are A, B, C and M"),
        })
    }

    fn header(&self, seed: u64) -> String {
        format!(
            "# set {} count {} sizes {:?} seed {seed}",
            self.name, self.count, self.sizes
        )
    }

    /// Key of object `i`, relative to the set's root.
    fn key(&self, i: usize) -> String {
        match self.name {
            "A" => format!("big-{i}.bin"),
            "B" => format!("d{:02}/f{i:05}.dat", i / 100),
            _ => format!("f{i:04}.bin"),
        }
    }

    fn size(&self, seed: u64, i: usize) -> u64 {
        match self.sizes {
            Sizes::Fixed(n) => n,
            Sizes::LogUniform(lo, hi) => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5173_u64 ^ ((i as u64) << 20));
                let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
                (rng.random_range(a..b).exp() as u64).clamp(lo, hi)
            }
        }
    }
}

/// One object of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Key relative to the set's root.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// MD5 of the content, hex.
    pub md5: String,
}

/// A set's manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Objects in key order.
    pub items: Vec<Item>,
}

impl Manifest {
    /// Total bytes.
    pub fn bytes(&self) -> u64 {
        self.items.iter().map(|i| i.size).sum()
    }

    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Manifest> {
        let f = fs::File::open(path).with_context(|| format!("opening the manifest {}", path.display()))?;
        let mut items = Vec::new();
        for (n, line) in BufReader::new(f).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.starts_with('#') {
                continue;
            }
            let mut f = line.split('\t');
            let (Some(key), Some(size), Some(md5)) = (f.next(), f.next(), f.next()) else {
                bail!("{}:{}: expected key<TAB>size<TAB>md5", path.display(), n + 1);
            };
            let size = size
                .parse()
                .with_context(|| format!("{}:{}: bad size", path.display(), n + 1))?;
            items.push(Item {
                key: key.into(),
                size,
                md5: md5.into(),
            });
        }
        Ok(Manifest { items })
    }
}

/// Where a set lives under `dir`.
pub fn set_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// The manifest path of a set under `dir`.
pub fn manifest_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.manifest"))
}

/// Writes one object's content to `path`, returning its MD5 (hex).
fn write_object(path: &Path, seed: u64, set: &str, i: usize, size: u64) -> Result<String> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let set_bits = set.bytes().next().unwrap_or(0) as u64;
    let mut rng = ChaCha8Rng::seed_from_u64(
        seed.wrapping_mul(31)
            .wrapping_add(set_bits << 40)
            .wrapping_add(i as u64),
    );
    let mut f =
        std::io::BufWriter::new(fs::File::create(path).with_context(|| format!("creating {}", path.display()))?);
    let mut buf = vec![0u8; MIB as usize];
    let mut md5 = Md5::new();
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        rng.fill_bytes(&mut buf[..n]);
        md5.update(&buf[..n]);
        f.write_all(&buf[..n])
            .with_context(|| format!("writing {}", path.display()))?;
        left -= n as u64;
    }
    f.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(hex::encode(md5.finalize()))
}

/// Generates `spec` under `dir` unless its manifest already matches. Returns the manifest.
pub fn generate(dir: &Path, spec: &SetSpec, seed: u64) -> Result<Manifest> {
    let mpath = manifest_path(dir, spec.name);
    let header = spec.header(seed);
    if let Ok(text) = fs::read_to_string(&mpath) {
        if text.lines().next() == Some(header.as_str()) {
            return Manifest::read(&mpath);
        }
    }
    let root = set_dir(dir, spec.name);
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("removing the stale set {}", root.display()))?;
    }
    eprintln!(
        "[bench] generating data set {} ({} objects) in {}",
        spec.name,
        spec.count,
        root.display()
    );
    let mut items: Vec<Item> = std::thread::scope(|s| {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let root = &root;
                s.spawn(move || -> Result<Vec<Item>> {
                    let mut out = Vec::new();
                    for i in (t..spec.count).step_by(threads) {
                        let key = spec.key(i);
                        let size = spec.size(seed, i);
                        let md5 = write_object(&root.join(&key), seed, spec.name, i, size)?;
                        out.push(Item { key, size, md5 });
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().map_err(|_| anyhow::anyhow!("a generator thread panicked"))??);
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    items.sort_by(|a, b| a.key.cmp(&b.key));
    let mut text = header + "\n";
    for i in &items {
        text.push_str(&format!("{}\t{}\t{}\n", i.key, i.size, i.md5));
    }
    fs::write(&mpath, text).with_context(|| format!("writing {}", mpath.display()))?;
    Ok(Manifest { items })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_deterministic_and_sized() {
        let a = tempdir();
        let b = tempdir();
        let spec = SetSpec::named("C", true).unwrap();
        let m1 = generate(&a, &spec, 7).unwrap();
        let m2 = generate(&b, &spec, 7).unwrap();
        assert_eq!(m1.items, m2.items);
        assert_eq!(m1.items.len(), 12);
        for i in &m1.items {
            assert!((KIB..=12 * MIB).contains(&i.size), "{i:?}");
            assert_eq!(fs::metadata(a.join("C").join(&i.key)).unwrap().len(), i.size);
        }
        let m3 = generate(&b, &spec, 8).unwrap();
        assert_ne!(m1.items, m3.items, "another seed gives other data");
        fs::remove_dir_all(a).unwrap();
        fs::remove_dir_all(b).unwrap();
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("ferry-bench-data-{:016x}", rand::random::<u64>()));
        fs::create_dir_all(&d).unwrap();
        d
    }
}
