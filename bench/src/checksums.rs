//! The checksum cases: what a CRC costs next to MD5, and what a second
//! `--compare checksum` run over an unchanged tree costs (ferry keeps each
//! file's checksums in its state file; rclone `--checksum` reads every file
//! again).
//!
//! * Hashing: one thread hashes the same buffer with MD5, CRC-64/NVME, and
//!   ferry's one-pass MD5 + CRC-64/NVME + CRC-64/ECMA; seconds of CPU per GiB
//!   (a single thread busy hashing: wall time is CPU time).
//! * Compare: N small files are synced to a bucket once with
//!   `--compare checksum` (the copy keeps each file's checksums); then ferry
//!   runs twice more (reading no file) and rclone runs `sync --checksum` on
//!   the same unchanged tree (reading every file). Each run must transfer
//!   nothing.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ferry_core::checksum::{crc64nvme, Hasher};

use crate::raw::Endpoint;

/// Seconds per GiB of one thread hashing `mib` MiB with each method.
pub fn hashing(mib: usize) -> Vec<(&'static str, f64)> {
    let buf: Vec<u8> = (0..mib << 20).map(|i| (i * 31 % 251) as u8).collect();
    let gib = buf.len() as f64 / (1u64 << 30) as f64;
    let time = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() / gib
    };
    vec![
        (
            "MD5",
            time(&|| {
                std::hint::black_box(ferry_core::etag::md5(&buf));
            }),
        ),
        (
            "CRC-64/NVME",
            time(&|| {
                std::hint::black_box(crc64nvme(&buf));
            }),
        ),
        (
            "MD5 + CRC-64/NVME + CRC-64/ECMA (one pass)",
            time(&|| {
                let mut h = Hasher::new();
                for c in buf.chunks(1 << 20) {
                    h.update(c);
                }
                std::hint::black_box(h.finish());
            }),
        ),
    ]
}

fn timed(mut c: Command) -> Result<(f64, String)> {
    let t = Instant::now();
    let out = c.output().with_context(|| format!("running {c:?}"))?;
    let secs = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{c:?} failed:\n{text}");
    }
    Ok((secs, text))
}

/// Seconds of each run after the copy over `files` unchanged files: ferry's
/// second and third runs, rclone `--checksum`.
pub fn compare(ep: &Endpoint, bins: &Path, work: &Path, files: usize, bucket: &str) -> Result<Vec<(String, f64)>> {
    let tree = work.join(format!("checksum-tree-{files}"));
    if !tree.join(".done").exists() {
        for i in 0..files {
            let p = tree.join(format!("d{:02}/f{i:05}", i % 50));
            std::fs::create_dir_all(p.parent().unwrap())?;
            std::fs::write(&p, format!("{i}").repeat(100 + i % 900))?;
        }
        std::fs::write(tree.join(".done"), "")?;
    }
    let state = work.join(format!("checksum-{files}.sqlite"));
    let _ = std::fs::remove_file(&state);
    let ferry = || {
        let mut c = Command::new(bins.join("ferry-finder"));
        c.arg(&tree)
            .arg(format!("s3://{bucket}/"))
            .args(["--dest-endpoint", &ep.url, "--dest-path-style", "--workers", "8"])
            .args([
                "--compare",
                "checksum",
                "--exclude",
                ".done",
                "--no-progress",
                "--state",
            ])
            .arg(&state)
            .env("FERRY_DEST_ACCESS_KEY_ID", &ep.access_key)
            .env("FERRY_DEST_SECRET_ACCESS_KEY", &ep.secret_key)
            .env_remove("AWS_CA_BUNDLE");
        c
    };
    timed(ferry())?;
    let mut out = Vec::new();
    for label in [
        "ferry --compare checksum, second run",
        "ferry --compare checksum, third run",
    ] {
        let (secs, text) = timed(ferry())?;
        if !text.contains("Nothing to transfer") {
            bail!("{label}: the unchanged tree was not found identical:\n{text}");
        }
        out.push((label.to_string(), secs));
    }
    let mut rclone = Command::new("rclone");
    rclone
        .args([
            "sync",
            "--checksum",
            "--exclude",
            ".done",
            "--transfers",
            "8",
            "--checkers",
            "8",
        ])
        .arg(&tree)
        .arg(format!("b:{bucket}"))
        .env("RCLONE_CONFIG_B_TYPE", "s3")
        .env("RCLONE_CONFIG_B_PROVIDER", "Ceph")
        .env("RCLONE_CONFIG_B_ENDPOINT", &ep.url)
        .env("RCLONE_CONFIG_B_ACCESS_KEY_ID", &ep.access_key)
        .env("RCLONE_CONFIG_B_SECRET_ACCESS_KEY", &ep.secret_key)
        .env_remove("AWS_CA_BUNDLE");
    let (secs, _) = timed(rclone)?;
    out.push(("rclone sync --checksum".into(), secs));
    Ok(out)
}

/// The cases as a Markdown section.
pub fn report(hash: &[(&str, f64)], cmp: &[(String, f64)], files: usize) -> String {
    let mut s = String::from(
        "## Checksums\n\nCPU seconds per GiB, one thread:\n\n| method | s/GiB | ratio to MD5 |\n|---|---|---|\n",
    );
    let md5 = hash.first().map(|h| h.1).unwrap_or(1.0);
    for (name, spg) in hash {
        s += &format!("| {name} | {spg:.3} | {:.2} |\n", spg / md5);
    }
    s += &format!(
        "\nRuns after the copy over {files} unchanged files, comparing content (nothing to transfer):\n\n| run | seconds | ratio to rclone |\n|---|---|---|\n"
    );
    let rclone = cmp.last().map(|c| c.1).unwrap_or(1.0);
    for (name, secs) in cmp {
        s += &format!("| {name} | {secs:.2} | {:.2} |\n", secs / rclone);
    }
    s
}
