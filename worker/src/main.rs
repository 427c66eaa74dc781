//! `ferry-worker`: more worker processes on a job's embedded queue.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ferry_worker::cli::{self, JobArgs};
use ferry_worker::runner::{self, Control};

/// Runs transfer workers on the embedded queue of a job until interrupted
/// (Ctrl-C or SIGTERM). Start `ferry-finder ... --workers 0` (or any finder
/// run) to fill the queue; several worker processes can share it.
#[derive(Debug, Parser)]
#[command(name = "ferry-worker", version)]
struct Cli {
    /// Jobs transferred at once [default: 32]
    #[arg(long, env = "FERRY_WORKERS")]
    workers: Option<u64>,
    /// Exit once the queue is empty instead of waiting for more jobs
    #[arg(long)]
    exit_when_empty: bool,
    #[command(flatten)]
    job: JobArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cli::init_logging("info");
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-worker: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = cli
        .job
        .load(cli.job.overrides(None, None, cli.workers))
        .context("reading the job settings")?;
    let job = cfg.build().context("invalid job settings")?;
    let rt = cli::open(&job).await.context("opening the embedded state file")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        cli::shutdown_signal().await;
        tracing::info!("Stopping: unfinished jobs resume on the next run.");
        let _ = stop_tx.send(true);
    });
    let done = cli
        .exit_when_empty
        .then(|| Arc::new(std::sync::atomic::AtomicBool::new(true)));
    tracing::info!(state = %job.state_path.display(), workers = rt.runner.workers, "Worker started.");
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
