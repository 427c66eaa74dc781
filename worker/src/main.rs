//! `ferry-worker`: a transfer worker on a job's queue — the embedded file on
//! one machine, or an SQS queue in a fleet.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ferry_worker::cli::{self, JobArgs};
use ferry_worker::runner::{self, Control};

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
    /// Jobs transferred at once [default: 32]
    #[arg(long, env = "FERRY_WORKERS")]
    workers: Option<u64>,
    /// Exit once the queue is empty instead of waiting for more jobs
    #[arg(long)]
    exit_when_empty: bool,
    /// Serve GET /healthz on this address (e.g. 0.0.0.0:8080) for container health checks
    #[arg(long, env = "FERRY_HEALTH_ADDR", value_name = "ADDR")]
    health_addr: Option<String>,
    #[command(flatten)]
    job: JobArgs,
}

fn main() -> std::process::ExitCode {
    cli::main("ferry-worker", || async { run().await.map(|()| 0) })
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut overrides = cli.job.overrides(None, None, cli.workers);
    if let Some(a) = &cli.health_addr {
        overrides.insert("health_addr".into(), a.clone().into());
    }
    let cfg = cli.job.load(overrides).context("reading the job settings")?;
    let job = cfg.build().context("invalid job settings")?;
    let rt = cli::open(&job).await.context("opening the job's queue and state")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = &job.raw.health_addr {
        let addr = addr.parse().context("--health-addr")?;
        let bound = ferry_worker::health::serve(addr, stop_rx.clone())
            .await
            .with_context(|| format!("--health-addr {addr}: cannot listen"))?;
        tracing::info!(addr = %bound, "Health endpoint at /healthz.");
    }
    tokio::spawn(async move {
        cli::shutdown_signal().await;
        tracing::info!("Stopping: no new jobs; running ones finish or are released to resume elsewhere.");
        let _ = stop_tx.send(true);
    });
    let done = cli
        .exit_when_empty
        .then(|| Arc::new(std::sync::atomic::AtomicBool::new(true)));
    tracing::info!(
        queue = %rt.queue.describe(),
        workers = rt.runner.workers,
        max_receives = rt.runner.max_receives,
        "Worker started."
    );
    let s = runner::run(
        rt.engine.clone(),
        rt.queue.clone(),
        rt.runner.clone(),
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
