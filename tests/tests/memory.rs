//! Memory stays inside the budget whatever the object sizes: the binaries
//! run as processes under GNU time, which reports their peak RSS, over data
//! mixing sizes from 1 MiB to 24 MiB — whole-object PUTs of many different
//! sizes, the case where freed bodies used to linger in the allocator and
//! held the process at about twice its budget — and back again in parts.
//! The promise (DESIGN: bytes in flight under a configured budget) is peak
//! RSS ≤ `--max-in-flight` + 64 MiB.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use ferry_tests::*;

const MIB: usize = 1024 * 1024;
const BUDGET_MIB: u64 = 48;
const ALLOWANCE_MIB: u64 = 64;

/// Runs `cmd` under GNU time; returns its output and peak RSS in MiB.
fn peak_rss(cmd: Command, dir: &Path, name: &str) -> (std::process::Output, u64) {
    let report = dir.join(format!("{name}.time"));
    let mut timed = Command::new("/usr/bin/time");
    timed.args(["-f", "%M", "-o"]).arg(&report).arg(cmd.get_program());
    timed.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    assert!(
        Path::new("/usr/bin/time").exists(),
        "GNU time is missing: tests/servers/start.sh installs it (Debian package `time`)"
    );
    let out = run(timed);
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let kib: u64 = text
        .lines()
        .rev()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {}: {text:?}", report.display()));
    (out, kib / 1024)
}

#[tokio::test]
async fn peak_rss_stays_within_the_budget_plus_64_mib_for_mixed_sizes() {
    let rgw = rgw();
    let bucket = rgw.bucket("memory").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    // 40 files from 1 to 24 MiB (about 400 MiB): every size a whole-object PUT.
    let files: BTreeMap<String, Vec<u8>> = (0..40u64)
        .map(|i| {
            let mib = 1 + (i * 7 + i * i) % 24;
            (
                format!("mix/{i:02}.bin"),
                data(mib as usize * MIB + i as usize * 4099, 900 + i),
            )
        })
        .collect();
    write_tree(&src, &files);
    let budget = format!("{BUDGET_MIB}MiB");
    let mut up_args = vec![
        src.display().to_string(),
        format!("s3://{bucket}/"),
        "--state".into(),
        work.path().join("up.db").display().to_string(),
        "--max-in-flight".into(),
        budget.clone(),
    ];
    up_args.extend(rgw.flags("dest"));
    let (out, up_rss) = peak_rss(finder(&up_args, &rgw.envs("dest")), work.path(), "up");
    assert!(out.status.success(), "the upload succeeds");
    assert_same("uploaded", &files, &rgw.read_all(&bucket, "").await);

    let dst = work.path().join("dst");
    let mut down_args = vec![
        format!("s3://{bucket}/"),
        dst.display().to_string(),
        "--state".into(),
        work.path().join("down.db").display().to_string(),
        "--max-in-flight".into(),
        budget,
        "--part-size".into(),
        "5MiB".into(),
        "--multipart-threshold".into(),
        "8MiB".into(),
    ];
    down_args.extend(rgw.flags("src"));
    let (out, down_rss) = peak_rss(finder(&down_args, &rgw.envs("src")), work.path(), "down");
    assert!(out.status.success(), "the download succeeds");
    assert_same("downloaded", &files, &read_tree(&dst));

    let limit = BUDGET_MIB + ALLOWANCE_MIB;
    eprintln!("peak RSS: local→S3 {up_rss} MiB, S3→local {down_rss} MiB (limit {limit} MiB)");
    assert!(
        up_rss <= limit,
        "local→S3 peaked at {up_rss} MiB with a {BUDGET_MIB} MiB budget (limit {limit} MiB)"
    );
    assert!(
        down_rss <= limit,
        "S3→local peaked at {down_rss} MiB with a {BUDGET_MIB} MiB budget (limit {limit} MiB)"
    );
}
