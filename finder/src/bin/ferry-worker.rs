//! `ferry-worker`: a transfer worker on a job's queue — the embedded file on
//! one machine, or an SQS queue in a fleet. It is built with the finder's
//! crate: besides copies, a worker lists the key ranges of list jobs
//! (`ferry-finder --list-jobs`) with the finder's walk.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ferry_cli::{Backends, JobArgs, Locations};
use ferry_worker::runner::{self, Control};
use ferry_worker::Worker;
use serde::Serialize;

/// With glibc, large freed part buffers stayed resident in per-thread arenas
/// and a 2 GiB copy peaked at twice the in-flight budget; mimalloc returns
/// freed pages promptly.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs transfer workers on a job's queue until stopped (SIGTERM or Ctrl-C:
/// running jobs get --shutdown-grace to finish, the rest are released to
/// resume elsewhere, and the exit code is 0).
///
/// On one machine the queue is the embedded state file that `ferry-finder
/// ... --workers 0` fills; several worker processes can share it. In a fleet:
///
///   ferry-worker --queue https://sqs.REGION.amazonaws.com/ACCOUNT/NAME \
///       --state dynamodb://TABLE --config job.toml --health-addr 0.0.0.0:8080
///
/// SQS, DynamoDB and Secrets Manager are reached with the AWS default chain;
/// AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_DYNAMODB and
/// AWS_ENDPOINT_URL_SECRETS_MANAGER point them elsewhere.
#[derive(Debug, Parser)]
#[command(name = "ferry-worker", version, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    own: WorkerArgs,
    /// Exit once the queue is empty instead of waiting for more jobs
    #[arg(long)]
    exit_when_empty: bool,
    #[command(flatten)]
    locations: Locations,
    #[command(flatten)]
    job: JobArgs,
}

/// The worker's own settings, as a layer of the job file's shape.
#[derive(Debug, clap::Args, Serialize)]
struct WorkerArgs {
    /// Serve GET /healthz on this address (e.g. 0.0.0.0:8080) for container health checks
    #[arg(long, env = "FERRY_HEALTH_ADDR", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    health_addr: Option<String>,
    #[command(flatten)]
    transfer: WorkerTransfer,
}

#[derive(Debug, clap::Args, Serialize)]
struct WorkerTransfer {
    /// Jobs transferred at once [default: 32]
    #[arg(long, env = "FERRY_WORKERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<u64>,
}

fn main() -> std::process::ExitCode {
    ferry_cli::main("ferry-worker", || async { run().await.map(|()| 0) })
}

async fn run() -> anyhow::Result<()> {
    let cli: Cli = ferry_cli::parse();
    let mut own = ferry_cli::args::layer(&cli.own);
    own.insert("transfer".into(), ferry_cli::args::layer(&cli.own.transfer).into());
    let cfg = cli
        .job
        .load([cli.locations.layer(), own])
        .context("reading the job settings")?;
    let settings = cfg.build().context("invalid job settings")?;
    let backends = Backends::open(&settings)
        .await
        .context("opening the job's queue and state")?;
    let lister = ferry_finder::list_jobs::FleetLister::new(&settings, &backends)?;
    let worker = Worker::new(&settings, &backends, Some(Arc::new(lister)))
        .await
        .context("opening the job's queue and state")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = settings.health_addr {
        let bound = ferry_worker::health::serve(addr, stop_rx.clone())
            .await
            .with_context(|| format!("--health-addr {addr}: cannot listen"))?;
        tracing::info!(addr = %bound, "Health endpoint at /healthz.");
    }
    tokio::spawn(async move {
        ferry_cli::shutdown_signal().await;
        tracing::info!("Stopping: no new jobs; running ones finish or are released to resume elsewhere.");
        let _ = stop_tx.send(true);
    });
    let done = cli
        .exit_when_empty
        .then(|| Arc::new(std::sync::atomic::AtomicBool::new(true)));
    tracing::info!(
        queue = %backends.queue.describe(),
        workers = worker.runner.workers,
        max_receives = worker.runner.max_receives,
        "Worker started."
    );
    let s = runner::run(
        worker.engine.clone(),
        backends.queue.clone(),
        worker.runner.clone(),
        Control {
            stop: stop_rx,
            producer_done: done,
        },
    )
    .await;
    tracing::info!(
        acked = s.acked,
        failed_attempts = s.failed_attempts,
        given_up = s.given_up,
        "Worker stopped."
    );
    Ok(())
}

#[cfg(test)]
#[test]
fn the_command_line_is_well_formed() {
    <Cli as clap::CommandFactory>::command().debug_assert();
}
