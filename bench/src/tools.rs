//! The command line of every tool for every direction, at its defaults and
//! at the matched settings.
//!
//! Matched settings: 8 MiB parts above an 8 MiB threshold, 16 objects at
//! once, 8 parts of one object at once (where the tool has those knobs).
//! S3 → S3 goes between two buckets of one server, configured as two
//! endpoints wherever the tool allows, so the bytes pass through the client.
//! aws-cli cannot do that: its S3 → S3 is a server-side copy, flagged as such
//! in the results.

use std::path::{Path, PathBuf};

use crate::raw::Endpoint;

/// A transfer direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// Local directory to a bucket.
    LocalToS3,
    /// Bucket to bucket.
    S3ToS3,
    /// Bucket to a local directory.
    S3ToLocal,
}

impl Direction {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Direction::LocalToS3 => "local→S3",
            Direction::S3ToS3 => "S3→S3",
            Direction::S3ToLocal => "S3→local",
        }
    }

    /// Parses `local-s3`, `s3-s3`, `s3-local`.
    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "local-s3" => Some(Direction::LocalToS3),
            "s3-s3" => Some(Direction::S3ToS3),
            "s3-local" => Some(Direction::S3ToLocal),
            _ => None,
        }
    }

    /// Whether the source is a bucket.
    pub fn src_is_s3(self) -> bool {
        self != Direction::LocalToS3
    }

    /// Whether the destination is a bucket.
    pub fn dst_is_s3(self) -> bool {
        self != Direction::S3ToLocal
    }
}

/// The buckets and folders of a benchmark session.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The server.
    pub endpoint: Endpoint,
    /// Source bucket.
    pub src_bucket: String,
    /// Destination bucket.
    pub dst_bucket: String,
    /// Data sets (`data/A/...`).
    pub data: PathBuf,
    /// Local destinations (`out/A/...`).
    pub out: PathBuf,
    /// Scratch: state files, tool configs, logs.
    pub scratch: PathBuf,
    /// Folder of ferry-finder and ferry-bench.
    pub bins: PathBuf,
}

/// One command to run and measure.
#[derive(Debug, Clone, Default)]
pub struct Cmd {
    /// Program.
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Variables removed from the environment.
    pub unset: Vec<String>,
    /// A note for the results (e.g. server-side copy).
    pub note: Option<&'static str>,
}

impl Cmd {
    fn new(program: impl Into<String>) -> Cmd {
        Cmd {
            program: program.into(),
            ..Default::default()
        }
    }
    fn arg(mut self, a: impl Into<String>) -> Cmd {
        self.args.push(a.into());
        self
    }
    fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Cmd {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }
    fn env(mut self, k: &str, v: impl Into<String>) -> Cmd {
        self.env.push((k.into(), v.into()));
        self
    }

    /// The command as a shell line (secrets shown as `$VAR`-style placeholders).
    pub fn display(&self) -> String {
        let mut s = String::new();
        for u in &self.unset {
            s.push_str(&format!("env -u {u} "));
        }
        for (k, v) in &self.env {
            if k.contains("SECRET") || k.contains("ACCESS_KEY") || k.ends_with("_KEY_ID") {
                continue;
            }
            s.push_str(&format!("{k}={v} "));
        }
        s.push_str(&self.program);
        for a in &self.args {
            if a.contains(' ') {
                s.push_str(&format!(" '{a}'"));
            } else {
                s.push(' ');
                s.push_str(a);
            }
        }
        s
    }
}

/// The tools the harness knows.
pub const TOOLS: [&str; 9] = [
    "ceiling",
    "ferry",
    "ferry-server-side",
    "ferry-nofsync",
    "ferry-gateway",
    "dd",
    "rclone",
    "s3sync",
    "aws-cli",
];

/// Whether `tool` runs in direction `dir` at `setting`: the no-fsync ferry
/// and the disk reference only write local folders, at one setting.
pub fn runs_in(tool: &str, dir: Direction, setting: &str) -> bool {
    match tool {
        "ferry-nofsync" | "dd" => !dir.dst_is_s3() && setting == "default",
        "ferry-server-side" => dir == Direction::S3ToS3,
        "ferry-gateway" => dir == Direction::LocalToS3,
        "ceiling" => setting == "default",
        _ => true,
    }
}

/// The port the gateway of the `ferry-gateway` tool listens on.
const GATEWAY_PORT: u16 = 18471;

/// A local folder uploaded through `ferry-gateway` by a keyless
/// `ferry-finder` (`gateway+http://`), the same settings as `ferry`'s
/// upload: the gateway (store keys in its environment only) is started,
/// given a token, and stopped by the one measured command, so its start
/// (a fraction of a second) counts in the time.
fn gateway_upload(matched: bool, set: &str, l: &Layout, run: usize) -> Cmd {
    let ep = &l.endpoint;
    let bin = |b: &str| l.bins.join(b).display().to_string();
    let work = l.scratch.join(format!("state/gateway-{run}"));
    let w = work.display();
    let tuning = match matched {
        true => "--workers 16 --concurrency 8 --part-size 8MiB --multipart-threshold 8MiB",
        false => "",
    };
    let script = format!(
        "set -e; mkdir -p '{w}'; \
         '{gw}' token issue --tokens '{w}/tokens.json' --id bench > '{w}/token'; \
         FERRY_DEST_ACCESS_KEY_ID=\"$BENCH_GW_ACCESS_KEY_ID\" FERRY_DEST_SECRET_ACCESS_KEY=\"$BENCH_GW_SECRET\" \
           '{gw}' serve 's3://{bucket}/' --tokens '{w}/tokens.json' --state '{w}/gateway.db' \
           --dest-endpoint '{ep}' --dest-path-style --listen 127.0.0.1:{port} 2> '{w}/gateway.log' & gw=$!; \
         trap 'kill $gw' EXIT; \
         for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.05; done; \
         env -u BENCH_GW_ACCESS_KEY_ID -u BENCH_GW_SECRET -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY '{finder}' '{src}' 'gateway+http://127.0.0.1:{port}/{set}/' \
           --gateway-token-file '{w}/token' --state '{w}/client.db' {tuning}",
        gw = bin("ferry-gateway"),
        finder = bin("ferry-finder"),
        bucket = l.dst_bucket,
        ep = ep.url,
        port = GATEWAY_PORT,
        src = dir_arg(&l.data.join(set)),
    );
    let mut c = Cmd::new("bash")
        .args(["-c".to_string(), script])
        .env("BENCH_GW_ACCESS_KEY_ID", &ep.access_key)
        .env("BENCH_GW_SECRET", &ep.secret_key);
    c.note = Some("through ferry-gateway: presigned URLs, no store keys in the uploading process");
    c
}

/// The disk's own speed for a set's bytes: `dd` writing as many bytes to one
/// file in the output folder, synced at the end (`conv=fsync`). Not a copy:
/// its output is checked by size only.
pub fn disk_reference(l: &Layout, set: &str, bytes: u64) -> Cmd {
    let out = l.out.join(set);
    let mib = bytes.div_ceil(1 << 20).max(1);
    let mut c = Cmd::new("sh").args([
        "-c".to_string(),
        format!(
            "mkdir -p '{}' && dd if=/dev/zero of='{}' bs=1M count={mib} conv=fsync status=none",
            out.display(),
            out.join(DD_FILE).display()
        ),
    ]);
    c.note = Some("the disk alone: dd of the set's size from /dev/zero with conv=fsync, no network, no copy");
    c
}

/// The file [`disk_reference`] writes.
pub const DD_FILE: &str = "dd.bin";

/// Settings of a run.
pub const SETTINGS: [&str; 2] = ["default", "matched"];

fn s3_url(bucket: &str, set: &str) -> String {
    format!("s3://{bucket}/{set}/")
}

fn dir_arg(p: &Path) -> String {
    format!("{}/", p.display())
}

/// The command of `tool` at `setting` moving set `set` in direction `dir`.
/// `run` numbers fresh state files.
pub fn command(tool: &str, setting: &str, dir: Direction, set: &str, l: &Layout, run: usize) -> Cmd {
    let matched = setting == "matched";
    let local_src = l.data.join(set);
    let local_dst = l.out.join(set);
    let ep = &l.endpoint;
    // The URL form (s3://bucket/set/ or dir/) that ferry, s3sync, aws-cli and the ceiling take.
    let src = if dir.src_is_s3() {
        s3_url(&l.src_bucket, set)
    } else {
        dir_arg(&local_src)
    };
    let dst = if dir.dst_is_s3() {
        s3_url(&l.dst_bucket, set)
    } else {
        dir_arg(&local_dst)
    };
    match tool {
        "ceiling" => Cmd::new(l.bins.join("ferry-bench").display().to_string())
            .args([
                "raw",
                "--endpoint",
                &ep.url,
                "--concurrency",
                "16",
                "--part-size",
                "8388608",
            ])
            .args([src, dst])
            .env("AWS_ACCESS_KEY_ID", &ep.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &ep.secret_key),
        "ferry-nofsync" => command("ferry", setting, dir, set, l, run).arg("--dest-no-fsync"),
        "ferry-gateway" => gateway_upload(matched, set, l, run),
        "ferry-server-side" => {
            let mut c = command("ferry", setting, dir, set, l, run);
            c.args.retain(|a| a != "--server-side" && a != "never");
            c.note = Some("copied inside the store (--server-side auto): no object byte through ferry");
            c
        }
        "ferry" => {
            let state = l.scratch.join(format!("state/run-{run}.db"));
            let mut c = Cmd::new(l.bins.join("ferry-finder").display().to_string())
                .args([src, dst])
                .args(["--state".to_string(), state.display().to_string()]);
            if dir.src_is_s3() {
                c = c
                    .args(["--src-endpoint", &ep.url, "--src-path-style"])
                    .env("FERRY_SRC_ACCESS_KEY_ID", &ep.access_key)
                    .env("FERRY_SRC_SECRET_ACCESS_KEY", &ep.secret_key);
            }
            if dir == Direction::S3ToS3 {
                // Streamed, as every other tool's bucket-to-bucket copy
                // (ferry-server-side is the copy inside the store).
                c = c.args(["--server-side", "never"]);
            }
            if dir.dst_is_s3() {
                c = c
                    .args(["--dest-endpoint", &ep.url, "--dest-path-style"])
                    .env("FERRY_DEST_ACCESS_KEY_ID", &ep.access_key)
                    .env("FERRY_DEST_SECRET_ACCESS_KEY", &ep.secret_key);
            }
            if matched {
                c = c.args([
                    "--workers",
                    "16",
                    "--concurrency",
                    "8",
                    "--part-size",
                    "8MiB",
                    "--multipart-threshold",
                    "8MiB",
                ]);
            }
            c
        }
        "rclone" => {
            let src = if dir.src_is_s3() {
                format!("src:{}/{set}", l.src_bucket)
            } else {
                local_src.display().to_string()
            };
            let dst = if dir.dst_is_s3() {
                format!("dst:{}/{set}", l.dst_bucket)
            } else {
                local_dst.display().to_string()
            };
            let mut c = Cmd::new("rclone").arg("copy").args([src, dst]);
            c.unset.push("AWS_CA_BUNDLE".into());
            c = c.env("RCLONE_CONFIG", l.scratch.join("rclone.conf").display().to_string());
            for r in ["SRC", "DST"] {
                c = c
                    .env(&format!("RCLONE_CONFIG_{r}_TYPE"), "s3")
                    .env(&format!("RCLONE_CONFIG_{r}_PROVIDER"), "Ceph")
                    .env(&format!("RCLONE_CONFIG_{r}_ENDPOINT"), &ep.url)
                    .env(&format!("RCLONE_CONFIG_{r}_ACCESS_KEY_ID"), &ep.access_key)
                    .env(&format!("RCLONE_CONFIG_{r}_SECRET_ACCESS_KEY"), &ep.secret_key);
            }
            if matched {
                c = c.args([
                    "--transfers",
                    "16",
                    "--checkers",
                    "16",
                    "--s3-upload-concurrency",
                    "8",
                    "--s3-chunk-size",
                    "8M",
                    "--s3-upload-cutoff",
                    "8M",
                    "--multi-thread-streams",
                    "8",
                    "--multi-thread-cutoff",
                    "8M",
                ]);
            }
            c
        }
        "s3sync" => {
            let mut c = Cmd::new("s3sync");
            if dir.src_is_s3() {
                c = c.args([
                    "--source-endpoint-url",
                    &ep.url,
                    "--source-force-path-style",
                    "--source-region",
                    "us-east-1",
                    "--source-access-key",
                    &ep.access_key,
                    "--source-secret-access-key",
                    &ep.secret_key,
                ]);
            }
            if dir.dst_is_s3() {
                c = c.args([
                    "--target-endpoint-url",
                    &ep.url,
                    "--target-force-path-style",
                    "--target-region",
                    "us-east-1",
                    "--target-access-key",
                    &ep.access_key,
                    "--target-secret-access-key",
                    &ep.secret_key,
                ]);
            }
            if matched {
                c = c.args([
                    "--worker-size",
                    "16",
                    "--max-parallel-uploads",
                    "8",
                    "--multipart-chunksize",
                    "8MiB",
                    "--multipart-threshold",
                    "8MiB",
                ]);
            }
            c.args([src, dst])
        }
        "aws-cli" => {
            let config = l.scratch.join(format!("aws-{setting}.config"));
            let mut c = Cmd::new("/usr/bin/aws")
                .args([
                    "s3",
                    "cp",
                    "--recursive",
                    "--only-show-errors",
                    "--no-progress",
                    "--endpoint-url",
                    &ep.url,
                ])
                .args([src, dst])
                .env("AWS_CONFIG_FILE", config.display().to_string())
                .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("AWS_ACCESS_KEY_ID", &ep.access_key)
                .env("AWS_SECRET_ACCESS_KEY", &ep.secret_key);
            c.unset.push("AWS_CA_BUNDLE".into());
            if dir == Direction::S3ToS3 {
                c.note = Some("server-side copy (CopyObject/UploadPartCopy): no bytes pass through the client");
            }
            c
        }
        other => Cmd::new(format!("unknown-tool-{other}")),
    }
}

/// Writes the tool config files the commands refer to.
pub fn write_configs(l: &Layout) -> std::io::Result<()> {
    std::fs::create_dir_all(l.scratch.join("state"))?;
    std::fs::write(l.scratch.join("rclone.conf"), "")?;
    std::fs::write(
        l.scratch.join("aws-default.config"),
        "[default]\ns3 =\n  addressing_style = path\n",
    )?;
    std::fs::write(
        l.scratch.join("aws-matched.config"),
        "[default]\ns3 =\n  addressing_style = path\n  max_concurrent_requests = 16\n  \
         multipart_threshold = 8MB\n  multipart_chunksize = 8MB\n",
    )?;
    Ok(())
}
