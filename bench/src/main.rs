//! `ferry-bench`: the benchmark harness (see `bench/README.md`).
//!
//! `bench/run.sh` installs the peers, starts the server and calls
//! `ferry-bench suite`; the other subcommands are its parts, usable alone.

mod checksums;
mod data;
mod latency;
mod model;
mod raw;
mod report;
mod scale;
mod suite;
mod tools;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::raw::{Endpoint, Side};

#[derive(Parser)]
#[command(
    version,
    about = "Benchmark harness for ferry: data sets, raw ceiling client, peers, results"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where a session's endpoint, work folder and binaries are.
#[derive(clap::Args)]
struct SessionArgs {
    #[command(flatten)]
    ep: EndpointArgs,
    /// Work folder (data sets, trees, state files, outputs, logs, results.jsonl)
    #[arg(long)]
    work: PathBuf,
    /// Folder holding ferry-finder (and ferry-bench)
    #[arg(long)]
    bins: PathBuf,
}

#[derive(clap::Args, Clone)]
struct EndpointArgs {
    /// S3 endpoint URL
    #[arg(long, env = "FERRY_BENCH_ENDPOINT", default_value = "http://127.0.0.1:7490")]
    endpoint: String,
    /// Access key id
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    access_key: String,
    /// Secret access key
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
}

impl EndpointArgs {
    fn endpoint(&self) -> Endpoint {
        Endpoint {
            url: self.endpoint.clone(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate data sets A, B, C, M under DIR (skipped when already there)
    Gen {
        /// Output folder
        dir: PathBuf,
        /// Sets
        #[arg(long, value_delimiter = ',', default_value = "A,B,C,M")]
        sets: Vec<String>,
        /// Seed
        #[arg(long, default_value_t = 20261121)]
        seed: u64,
        /// Tiny sets for a smoke run
        #[arg(long)]
        smoke: bool,
    },
    /// The ceiling: move FROM to TO (s3://bucket/prefix/ or a folder) with no hashing or bookkeeping
    Raw {
        #[command(flatten)]
        ep: EndpointArgs,
        /// Requests in flight
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Part size, bytes
        #[arg(long, default_value_t = 16 << 20)]
        part_size: u64,
        /// Largest object sent in one PUT, bytes
        #[arg(long, default_value_t = 64 << 20)]
        threshold: u64,
        from: String,
        to: String,
    },
    /// Delete every object and unfinished upload under s3://bucket/prefix
    Clear {
        #[command(flatten)]
        ep: EndpointArgs,
        target: String,
    },
    /// The checksum cases: CPU per GiB of MD5 and the CRCs; a second
    /// `--compare checksum` run over N unchanged files against rclone --checksum
    Checksums {
        #[command(flatten)]
        session: SessionArgs,
        /// Files in the tree
        #[arg(long, default_value_t = 5000)]
        files: usize,
        /// MiB hashed per method
        #[arg(long, default_value_t = 512)]
        mib: usize,
        /// Append the Markdown section to this file
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Diff N synthetic keys (1 % missing, 1 % changed); prints copies and seconds
    DiffScale { keys: usize },
    /// Model ferry at a billion objects (docs/SCALE.md): listing, queue,
    /// ledger, workers and cost, from ferry's request counts per object
    ScaleModel {
        /// Objects in the bucket
        #[arg(long, default_value_t = 1e9)]
        objects: f64,
        /// One listing page's round trip, seconds
        #[arg(long, default_value_t = 0.060)]
        page_secs: f64,
        /// Worker processes listing at once
        #[arg(long, default_value_t = 64.0)]
        listers: f64,
        /// The copy's target duration, days
        #[arg(long, default_value_t = 7.0)]
        days: f64,
    },
    /// Run the benchmark session and write RESULTS.md
    Suite {
        #[command(flatten)]
        session: SessionArgs,
        /// Data sets
        #[arg(long, value_delimiter = ',', default_value = "A,B,C,M")]
        sets: Vec<String>,
        /// Directions: local-s3, s3-s3, s3-local
        #[arg(long, value_delimiter = ',', default_value = "local-s3,s3-s3,s3-local")]
        dirs: Vec<String>,
        /// Tools: ceiling, ferry (bucket to bucket: streamed, --server-side never), ferry-server-side
        /// (bucket to bucket only: copied inside the store), ferry-nofsync (--dest-no-fsync), ferry-gateway
        /// (local to bucket only: through ferry-gateway's presigned URLs), dd (the disk
        /// alone), rclone, s3sync, aws-cli. ferry-nofsync and dd run only towards local folders
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "ceiling,ferry,ferry-server-side,ferry-nofsync,ferry-gateway,dd,rclone,s3sync,aws-cli"
        )]
        tools: Vec<String>,
        /// Settings: default, matched
        #[arg(long, value_delimiter = ',', default_value = "default,matched")]
        settings: Vec<String>,
        /// Timed rounds
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Warm-up rounds
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Sets timed in fewer rounds, with no warm-up: NAME=N (e.g. C=1)
        #[arg(long, value_delimiter = ',')]
        set_runs: Vec<String>,
        /// Seed of the data sets
        #[arg(long, default_value_t = 20261121)]
        seed: u64,
        /// Tiny data sets, for a smoke run
        #[arg(long)]
        smoke: bool,
        /// Check outputs by keys and sizes only (default: every byte)
        #[arg(long)]
        sizes_only: bool,
        /// Keys of the finder-scale local trees (0 skips)
        #[arg(long, default_value_t = 1_000_000)]
        scale_keys: usize,
        /// Keys of the finder-scale buckets (0 skips)
        #[arg(long, default_value_t = 100_000)]
        scale_s3_keys: usize,
        /// Where to write the results table
        #[arg(long)]
        out: PathBuf,
        /// Keep the results of an earlier session in work/results.jsonl (append)
        #[arg(long)]
        append: bool,
    },
    /// Rebuild the results tables from a results.jsonl (printed, or written
    /// into FILE after its header, which is kept)
    Report {
        results: PathBuf,
        #[arg(long, value_name = "FILE")]
        into: Option<PathBuf>,
    },
}

fn side(ep: &Endpoint, s: &str) -> Result<Side> {
    if let Some(rest) = s.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("{s:?} names no bucket");
        }
        return Ok(Side::Bucket {
            client: ep.client(),
            bucket: bucket.into(),
            prefix: prefix.into(),
        });
    }
    Ok(Side::Dir(PathBuf::from(s)))
}

fn version(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .ok()
        .map(|o| {
            let t = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
            t.lines().next().unwrap_or("").trim().to_string()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "not found".into())
}

fn header(smoke: bool, args: &str) -> String {
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        })
        .and_then(|k| k.parse::<u64>().ok())
        .map(|k| format!("{:.1} GiB", k as f64 / 1048576.0))
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!(
        "# Benchmark results{}\n\n\
         Produced by `bench/run.sh{}` (see `bench/README.md` for the method). \
         One machine runs the server and the client.\n\n\
         * date: {}\n* machine: {cpus} cores ({cpu}), {mem} RAM, {}\n* ferry: {}\n* rclone: {}\n* s3sync: {}\n\
         * aws-cli: {}\n* server: {} (bluestore on a sparse file, beast frontend)\n* suite arguments: `{args}`\n\n\
         Wall, CPU (user+sys of the client process tree) and peak RSS are medians of the timed rounds \
         (the warm-up round is not counted); MiB/s is the set's size over the median wall time. \
         \"× ferry\" is the peer's wall time over ferry's at the same setting: above 1 ferry is faster. \
         Every run's output was checked against the set's manifest before it counted.\n",
        if smoke {
            " (smoke run: tiny data, not a measurement)"
        } else {
            ""
        },
        if smoke { " --smoke" } else { "" },
        version("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        version("uname", &["-sr"]),
        version("git", &["describe", "--always", "--dirty"]),
        version("rclone", &["version"]),
        version("s3sync", &["--version"]),
        version("/usr/bin/aws", &["--version"]),
        version("radosgw", &["--version"]),
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Gen { dir, sets, seed, smoke } => {
            for s in sets {
                let spec = data::SetSpec::named(&s, smoke)?;
                let m = data::generate(&dir, &spec, seed)?;
                println!("{}: {} objects, {} bytes", s, m.items.len(), m.bytes());
            }
        }
        Cmd::Raw {
            ep,
            concurrency,
            part_size,
            threshold,
            from,
            to,
        } => {
            let ep = ep.endpoint();
            let (n, bytes) = raw::transfer(
                &side(&ep, &from)?,
                &side(&ep, &to)?,
                concurrency.max(1),
                part_size.max(1),
                threshold,
            )
            .await
            .with_context(|| format!("moving {from} to {to}"))?;
            println!("{n} objects, {bytes} bytes");
        }
        Cmd::Clear { ep, target } => {
            let Side::Bucket { client, bucket, prefix } = side(&ep.endpoint(), &target)? else {
                bail!("clear takes s3://bucket/prefix, not {target:?}");
            };
            let n = raw::clear(&client, &bucket, &prefix).await?;
            println!("deleted {n} objects");
        }
        Cmd::Checksums {
            session: SessionArgs { ep, work, bins },
            files,
            mib,
            out,
        } => {
            let ep = ep.endpoint();
            let hash = checksums::hashing(mib.max(1));
            let bucket = format!("bench-checksums-{files}");
            raw::ensure_bucket(&ep.client(), &bucket).await?;
            std::fs::create_dir_all(&work)?;
            let cmp = checksums::compare(&ep, &bins, &work, files, &bucket)?;
            let section = checksums::report(&hash, &cmp, files);
            print!("{section}");
            if let Some(out) = out {
                use std::io::Write as _;
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&out)?;
                writeln!(f, "\n{section}")?;
            }
        }
        Cmd::ScaleModel {
            objects,
            page_secs,
            listers,
            days,
        } => {
            let inputs = model::Inputs {
                objects,
                page_secs,
                listers,
                target_secs: days * 86_400.0,
                ..Default::default()
            };
            print!("{}", model::report(&inputs));
        }
        Cmd::DiffScale { keys } => {
            let (copies, secs) = scale::synthetic(keys).await?;
            println!("{copies} objects to copy among {keys} keys in {secs:.3}s");
        }
        Cmd::Suite {
            session: SessionArgs { ep, work, bins },
            sets,
            dirs,
            tools,
            settings,
            runs,
            warmup,
            set_runs,
            seed,
            smoke,
            sizes_only,
            scale_keys,
            scale_s3_keys,
            out,
            append,
        } => {
            let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.contains("secret")).collect();
            for t in &tools {
                if !tools::TOOLS.contains(&t.as_str()) {
                    bail!("unknown tool {t:?}; the tools are {}", tools::TOOLS.join(", "));
                }
            }
            for s in &settings {
                if !tools::SETTINGS.contains(&s.as_str()) {
                    bail!("unknown setting {s:?}; the settings are default and matched");
                }
            }
            let dirs = dirs
                .iter()
                .map(|d| {
                    tools::Direction::parse(d)
                        .with_context(|| format!("unknown direction {d:?}; use local-s3, s3-s3 or s3-local"))
                })
                .collect::<Result<Vec<_>>>()?;
            let sets = sets
                .iter()
                .map(|s| data::SetSpec::named(s, smoke))
                .collect::<Result<Vec<_>>>()?;
            std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
            let results = work.join("results.jsonl");
            if !append {
                let _ = std::fs::remove_file(&results);
            }
            let cfg = suite::SuiteConfig {
                layout: tools::Layout {
                    endpoint: ep.endpoint(),
                    src_bucket: "bench-src".into(),
                    dst_bucket: "bench-dst".into(),
                    data: work.join("data"),
                    out: work.join("out"),
                    scratch: work.join("scratch"),
                    bins,
                },
                sets,
                dirs,
                tools,
                settings,
                runs,
                warmup,
                set_runs: set_runs
                    .iter()
                    .map(|s| {
                        let (k, v) = s
                            .split_once('=')
                            .with_context(|| format!("--set-runs {s:?}: expected NAME=N"))?;
                        Ok((
                            k.to_string(),
                            v.parse::<usize>()
                                .with_context(|| format!("--set-runs {s:?}: N is not a number"))?,
                        ))
                    })
                    .collect::<Result<_>>()?,
                seed,
                content: !sizes_only,
                scale_keys,
                scale_s3_keys,
                results: results.clone(),
            };
            let head = header(smoke, &args.join(" "));
            suite::run(&cfg).await?;
            let recs = suite::read_results(&results)?;
            let text = format!("{head}\n{}", report::body(&recs));
            std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("[bench] wrote {}", out.display());
            if recs.iter().any(|r| !r.ok && r.tool == "ferry") {
                bail!("a ferry run failed; see the table in {}", out.display());
            }
        }
        Cmd::Report { results, into } => {
            let recs = suite::read_results(&results)?;
            let body = report::body(&recs);
            match into {
                None => print!("{body}"),
                Some(path) => {
                    let old = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                    let head = old.split("## Results").next().unwrap_or("");
                    std::fs::write(&path, format!("{head}{body}"))
                        .with_context(|| format!("writing {}", path.display()))?;
                }
            }
        }
    }
    Ok(())
}
