//! The benchmark session: seed the source bucket, then rounds of every tool
//! on every data set and direction, each run measured and its output
//! verified; then the finder at scale. Every run is appended to
//! `results.jsonl` as it ends, so an interrupted session keeps what it
//! measured and [`crate::report`] can rebuild the table from it.
//!
//! Order: round 0 is the warm-up (not counted); each later round runs the
//! sets in turn (A B C A B C …), and within a set every direction and tool,
//! so slow drifts of the machine spread evenly over the tools. A run is timed
//! by GNU time (wall, user, sys, peak RSS of the tool's process tree as
//! reported for the largest process).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::{self, Manifest, SetSpec};
use crate::raw::{self, Side};
use crate::scale;
use crate::tools::{self, Cmd, Direction, Layout};

/// What one measured run gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Round, from 0.
    pub round: usize,
    /// A warm-up run, not counted.
    #[serde(default)]
    pub warmup: bool,
    /// Data set, or the finder-scale case.
    pub set: String,
    /// Direction (`local→S3` …), or `finder` for finder-scale rows.
    pub dir: String,
    /// Tool.
    pub tool: String,
    /// `default` or `matched`.
    pub setting: String,
    /// Wall seconds.
    pub wall: f64,
    /// User CPU seconds.
    pub user: f64,
    /// System CPU seconds.
    pub sys: f64,
    /// Peak RSS, KiB.
    pub rss_kib: u64,
    /// Objects in the set.
    pub objects: usize,
    /// Bytes in the set.
    pub bytes: u64,
    /// Whether the tool succeeded and its output verified.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// The command line.
    pub command: String,
    /// A note (e.g. server-side copy).
    pub note: Option<String>,
}

/// Settings of a session.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// Buckets, folders, endpoint.
    pub layout: Layout,
    /// Data sets to run.
    pub sets: Vec<SetSpec>,
    /// Directions to run.
    pub dirs: Vec<Direction>,
    /// Tools to run.
    pub tools: Vec<String>,
    /// Settings to run (`default`, `matched`).
    pub settings: Vec<String>,
    /// Timed rounds (plus `warmup` rounds before them).
    pub runs: usize,
    /// Warm-up rounds.
    pub warmup: usize,
    /// Sets timed in fewer rounds than `runs`, with no warm-up of their own
    /// (they run in the first timed rounds only).
    pub set_runs: std::collections::HashMap<String, usize>,
    /// Seed of the data sets.
    pub seed: u64,
    /// Compare every byte of every run's output (else keys and sizes).
    pub content: bool,
    /// Keys of the finder-scale trees (0 skips).
    pub scale_keys: usize,
    /// Keys of the finder-scale buckets (0 skips).
    pub scale_s3_keys: usize,
    /// `results.jsonl` to append to.
    pub results: PathBuf,
}

/// Parses GNU time's `-f "%e %U %S %M"` output (last line).
fn parse_time(text: &str) -> Option<(f64, f64, f64, u64)> {
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 4 {
        return None;
    }
    Some((
        f[0].parse().ok()?,
        f[1].parse().ok()?,
        f[2].parse().ok()?,
        f[3].parse().ok()?,
    ))
}

/// Runs `cmd` under GNU time; its output goes to `log`. Returns
/// (wall, user, sys, rss KiB, exit success). s3sync's exit status 3 means
/// "finished with warnings" and counts as success: the output is verified
/// independently anyway.
pub fn measure(cmd: &Cmd, log: &Path) -> Result<(f64, f64, f64, u64, bool)> {
    let timefile = log.with_extension("time");
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut c = std::process::Command::new("/usr/bin/time");
    c.args(["-f", "%e %U %S %M", "-o"])
        .arg(&timefile)
        .arg(&cmd.program)
        .args(&cmd.args);
    for u in &cmd.unset {
        c.env_remove(u);
    }
    c.envs(cmd.env.iter().map(|(k, v)| (k, v)));
    c.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
    let status = c
        .status()
        .with_context(|| "starting /usr/bin/time (Debian package `time`)".to_string())?;
    let text = std::fs::read_to_string(&timefile).unwrap_or_default();
    let (w, u, s, m) =
        parse_time(&text).with_context(|| format!("no timing from GNU time in {}: {text:?}", timefile.display()))?;
    let warned = cmd.program == "s3sync" && status.code() == Some(3);
    Ok((w, u, s, m, status.success() || warned))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

fn append(path: &Path, rec: &RunRecord) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(rec)?)?;
    Ok(())
}

/// Runs the session.
pub async fn run(cfg: &SuiteConfig) -> Result<()> {
    let l = &cfg.layout;
    tools::write_configs(l).context("writing tool configs")?;
    std::fs::create_dir_all(l.scratch.join("logs"))?;
    let client = l.endpoint.client();
    raw::ensure_bucket(&client, &l.src_bucket).await?;
    raw::ensure_bucket(&client, &l.dst_bucket).await?;
    let mut manifests = Vec::new();
    for spec in &cfg.sets {
        let m = tokio::task::spawn_blocking({
            let (d, s, seed) = (l.data.clone(), *spec, cfg.seed);
            move || data::generate(&d, &s, seed)
        })
        .await??;
        seed_source(cfg, spec.name, &m).await?;
        manifests.push(m);
    }
    let mut run_no = 0usize;
    for round in 0..cfg.warmup + cfg.runs {
        for (spec, m) in cfg.sets.iter().zip(&manifests) {
            let active = match cfg.set_runs.get(spec.name) {
                None => true,
                Some(&n) => round >= cfg.warmup && round < cfg.warmup + n,
            };
            if !active {
                continue;
            }
            for &dir in &cfg.dirs {
                for tool in &cfg.tools {
                    for setting in cfg.settings.iter().filter(|s| tools::runs_in(tool, dir, s)) {
                        run_no += 1;
                        let rec = one(cfg, round, spec.name, m, dir, tool, setting, run_no).await?;
                        eprintln!(
                            "[bench] round {round} {} {} {tool} {setting}: {:.2}s {} MiB {}",
                            spec.name,
                            dir.name(),
                            rec.wall,
                            rec.rss_kib / 1024,
                            rec.error.as_deref().unwrap_or("ok")
                        );
                        append(&cfg.results, &rec)?;
                    }
                }
            }
        }
    }
    if cfg.scale_keys > 0 || cfg.scale_s3_keys > 0 {
        finder_scale(cfg).await?;
    }
    Ok(())
}

/// Puts a set into the source bucket once (checked by keys and sizes).
async fn seed_source(cfg: &SuiteConfig, set: &str, m: &Manifest) -> Result<()> {
    let l = &cfg.layout;
    let side = Side::Bucket {
        client: l.endpoint.client(),
        bucket: l.src_bucket.clone(),
        prefix: format!("{set}/"),
    };
    if raw::verify(&side, m, false, 8).await.is_ok() {
        return Ok(());
    }
    eprintln!("[bench] putting data set {set} into {}", l.src_bucket);
    raw::clear(&l.endpoint.client(), &l.src_bucket, &format!("{set}/")).await?;
    raw::transfer(&Side::Dir(l.data.join(set)), &side, 16, 8 << 20, 8 << 20).await?;
    raw::verify(&side, m, true, 8)
        .await
        .with_context(|| format!("checking data set {set} in the source bucket"))
}

fn dest_side(l: &Layout, dir: Direction, set: &str) -> Side {
    if dir.dst_is_s3() {
        Side::Bucket {
            client: l.endpoint.client(),
            bucket: l.dst_bucket.clone(),
            prefix: format!("{set}/"),
        }
    } else {
        Side::Dir(l.out.join(set))
    }
}

#[allow(clippy::too_many_arguments)]
async fn one(
    cfg: &SuiteConfig,
    round: usize,
    set: &str,
    m: &Manifest,
    dir: Direction,
    tool: &str,
    setting: &str,
    run_no: usize,
) -> Result<RunRecord> {
    let l = &cfg.layout;
    // A clean destination and no state from earlier runs.
    if dir.dst_is_s3() {
        raw::clear(&l.endpoint.client(), &l.dst_bucket, &format!("{set}/")).await?;
    } else {
        let d = l.out.join(set);
        if d.exists() {
            std::fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
        }
    }
    let state_dir = l.scratch.join("state");
    let _ = std::fs::remove_dir_all(&state_dir);
    std::fs::create_dir_all(&state_dir)?;
    let cmd = match tool {
        "dd" => tools::disk_reference(l, set, m.bytes()),
        _ => tools::command(tool, setting, dir, set, l, run_no),
    };
    let log = l.scratch.join(format!("logs/{run_no:05}-{set}-{tool}-{setting}.log"));
    let measured = tokio::task::spawn_blocking({
        let (cmd, log) = (cmd.clone(), log.clone());
        move || measure(&cmd, &log)
    })
    .await?;
    let (wall, user, sys, rss_kib, ok, mut error) = match measured {
        Ok((w, u, s, r, true)) => (w, u, s, r, true, None),
        Ok((w, u, s, r, false)) => (w, u, s, r, false, Some(format!("exit failure: {}", tail(&log, 3)))),
        Err(e) => (0.0, 0.0, 0.0, 0, false, Some(format!("{e:#}"))),
    };
    let mut ok = ok;
    if ok && tool == "dd" {
        let written = std::fs::metadata(l.out.join(set).join(tools::DD_FILE)).map(|md| md.len());
        if !matches!(written, Ok(n) if n >= m.bytes()) {
            ok = false;
            error = Some(format!("dd wrote {written:?} bytes, not {}", m.bytes()));
        }
    } else if ok {
        if let Err(e) = raw::verify(&dest_side(l, dir, set), m, cfg.content, 8).await {
            ok = false;
            error = Some(format!("output differs: {e:#}"));
        }
    }
    // Free the space now: multi-GiB outputs would otherwise pile up.
    if dir.dst_is_s3() {
        raw::clear(&l.endpoint.client(), &l.dst_bucket, &format!("{set}/")).await?;
    } else {
        let _ = std::fs::remove_dir_all(l.out.join(set));
    }
    Ok(RunRecord {
        round,
        warmup: round < cfg.warmup,
        set: set.into(),
        dir: dir.name().into(),
        tool: tool.into(),
        setting: setting.into(),
        wall,
        user,
        sys,
        rss_kib,
        objects: m.items.len(),
        bytes: m.bytes(),
        ok,
        error,
        command: cmd.display(),
        note: cmd.note.map(Into::into),
    })
}

/// Counts what a finder-scale command found to copy, from its output.
/// The round trip the listing case with latency adds to every request.
const LATENCY: std::time::Duration = std::time::Duration::from_millis(80);

fn found_copies(tool: &str, log: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(log).ok()?;
    if tool == "rclone" {
        return Some(text.lines().filter(|l| l.contains("Skipped copy as --dry-run")).count());
    }
    let grab = |label: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<usize>().ok())
    };
    match (grab("queued:"), grab("new:"), grab("changed:")) {
        (Some(q), _, _) => Some(q),
        (None, Some(n), Some(c)) => Some(n + c),
        _ => None,
    }
}

/// The finder-scale cases: synthetic diff, local trees, buckets.
async fn finder_scale(cfg: &SuiteConfig) -> Result<()> {
    let l = &cfg.layout;
    let bench = l.bins.join("ferry-bench").display().to_string();
    let finder = l.bins.join("ferry-finder").display().to_string();
    let mut cases: Vec<(String, String, usize, Cmd)> = Vec::new();
    let ep = &l.endpoint;
    if cfg.scale_keys > 0 {
        let n = cfg.scale_keys;
        let root = l.scratch.join("scale-trees");
        tokio::task::spawn_blocking({
            let root = root.clone();
            move || scale::write_trees(&root, n)
        })
        .await??;
        let set = format!("{n} keys, synthetic");
        let c = Cmd {
            program: bench.clone(),
            args: vec!["diff-scale".into(), n.to_string()],
            ..Default::default()
        };
        cases.push((set, "ferry diff".into(), n, c));
        let set = format!("{n} keys, local trees");
        let (src, dst) = (
            root.join("src").display().to_string(),
            root.join("dst").display().to_string(),
        );
        let state = l.scratch.join("state/scale.db").display().to_string();
        let c = Cmd {
            program: finder.clone(),
            args: vec![
                src.clone(),
                dst.clone(),
                "--workers".into(),
                "0".into(),
                "--state".into(),
                state,
            ],
            ..Default::default()
        };
        cases.push((set.clone(), "ferry".into(), n, c));
        let c = Cmd {
            program: "rclone".into(),
            args: vec!["copy".into(), "--dry-run".into(), "--size-only".into(), src, dst],
            env: vec![(
                "RCLONE_CONFIG".into(),
                l.scratch.join("rclone.conf").display().to_string(),
            )],
            unset: vec!["AWS_CA_BUNDLE".into()],
            note: None,
        };
        cases.push((set, "rclone".into(), n, c));
    }
    // Relays that add latency, alive while the cases run.
    let mut relays = Vec::new();
    if cfg.scale_s3_keys > 0 {
        let n = cfg.scale_s3_keys;
        scale::seed_buckets(&ep.client(), &l.src_bucket, &l.dst_bucket, n).await?;
        let set = format!("{n} keys, radosgw buckets");
        let state = l.scratch.join("state/scale-s3.db").display().to_string();
        let mut c = tools::command("ferry", "default", Direction::S3ToS3, "scale", l, 0);
        c.args = vec![
            format!("s3://{}/scale/", l.src_bucket),
            format!("s3://{}/scale/", l.dst_bucket),
            "--workers".into(),
            "0".into(),
            "--state".into(),
            state,
            "--src-endpoint".into(),
            ep.url.clone(),
            "--src-path-style".into(),
            "--dest-endpoint".into(),
            ep.url.clone(),
            "--dest-path-style".into(),
        ];
        // The same run with one lister: the parallel listing's own gain.
        let mut one = c.clone();
        one.args.extend(["--list-ranges".into(), "1".into()]);
        cases.push((set.clone(), "ferry".into(), n, c.clone()));
        cases.push((set.clone(), "ferry (one lister)".into(), n, one.clone()));
        let ferry = (c, one);
        let mut c = tools::command("rclone", "default", Direction::S3ToS3, "scale", l, 0);
        c.args = vec![
            "copy".into(),
            "--dry-run".into(),
            "--checksum".into(),
            format!("src:{}/scale", l.src_bucket),
            format!("dst:{}/scale", l.dst_bucket),
        ];
        cases.push((set.clone(), "rclone".into(), n, c.clone()));
        // The same listings with a wide-area round trip in front of the store.
        let wan = crate::latency::start(&ep.url, LATENCY).await?;
        let set = format!("{set}, +{} ms per request", LATENCY.as_millis());
        for (tool, mut cmd) in [("ferry", ferry.0), ("ferry (one lister)", ferry.1), ("rclone", c)] {
            cmd.args
                .iter_mut()
                .filter(|a| **a == ep.url)
                .for_each(|a| *a = wan.url.clone());
            for side in ["SRC", "DST"] {
                cmd.env
                    .push((format!("RCLONE_CONFIG_{side}_ENDPOINT"), wan.url.clone()));
            }
            cases.push((set.clone(), tool.into(), n, cmd));
        }
        relays.push(wan);
    }
    let rounds = cfg.runs.clamp(1, 3);
    for round in 0..rounds {
        for (set, tool, n, cmd) in &cases {
            let _ = std::fs::remove_dir_all(l.scratch.join("state"));
            std::fs::create_dir_all(l.scratch.join("state"))?;
            let log = l
                .scratch
                .join(format!("logs/scale-{round}-{}.log", tool.replace(' ', "-")));
            let (wall, user, sys, rss_kib, success) = tokio::task::spawn_blocking({
                let (cmd, log) = (cmd.clone(), log.clone());
                move || measure(&cmd, &log)
            })
            .await??;
            let want = scale::expected_copies(*n);
            let found = if tool == "ferry diff" {
                std::fs::read_to_string(&log)
                    .ok()
                    .and_then(|t| t.split_whitespace().next().and_then(|w| w.parse().ok()))
            } else {
                found_copies(tool, &log)
            };
            let (ok, error) = match (success, found) {
                (false, _) => (false, Some(format!("exit failure: {}", tail(&log, 3)))),
                (true, Some(f)) if f == want => (true, None),
                (true, f) => (false, Some(format!("found {f:?} objects to copy, expected {want}"))),
            };
            let rec = RunRecord {
                round,
                warmup: false,
                set: set.clone(),
                dir: "finder".into(),
                tool: tool.clone(),
                setting: "default".into(),
                wall,
                user,
                sys,
                rss_kib,
                objects: *n,
                bytes: 0,
                ok,
                error,
                command: cmd.display(),
                note: None,
            };
            eprintln!(
                "[bench] finder {set} {tool}: {wall:.2}s {} MiB {}",
                rss_kib / 1024,
                rec.error.as_deref().unwrap_or("ok")
            );
            append(&cfg.results, &rec)?;
        }
    }
    Ok(())
}

/// Reads every record of a results file.
pub fn read_results(path: &Path) -> Result<Vec<RunRecord>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(e) => bail!("{}:{}: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_time_lines_parse() {
        assert_eq!(parse_time("1.50 2.25 0.50 10240\n"), Some((1.5, 2.25, 0.5, 10240)));
        assert_eq!(
            parse_time("Command exited with non-zero status 1\n0.01 0.00 0.00 2048\n"),
            Some((0.01, 0.0, 0.0, 2048))
        );
        assert_eq!(parse_time("garbage"), None);
    }
}
