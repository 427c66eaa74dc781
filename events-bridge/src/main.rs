//! `ferry-events-bridge`: forwards Aliyun OSS object events to the job queue.

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use ferry_cli::backends::LedgerBackends;
use ferry_cli::{JobArgs, Locations};
use ferry_events_bridge::{server, Answer, Auth, Bridge};

/// Freed buffers go back to the system promptly (see ferry-worker).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Receives Aliyun OSS event notifications over HTTP and queues a ferry job
/// for every event of each (copies; deletes with delete sync), answering 200
/// only once every job is queued.
///
/// As a Function Compute custom runtime it listens on 0.0.0.0:$FC_SERVER_PORT
/// (9000 by default); elsewhere give --listen. Callers authenticate with the
/// shared secret from FERRY_BRIDGE_TOKEN or the Secrets Manager secret
/// --auth-secret NAME: header x-ferry-token: SECRET, or
/// x-ferry-signature: sha256=HEX(HMAC-SHA256(SECRET, body)).
///
/// --stdin / --file PATH queue the notification(s) read there instead (one
/// JSON document, or one per line), for replay and tests.
///
/// The job settings (source bucket and prefix, destination prefix, queue,
/// delete) come from --config and the FERRY_* variables, as for the finder.
#[derive(Debug, Parser)]
#[command(name = "ferry-events-bridge", version, verbatim_doc_comment)]
struct Cli {
    /// Address to listen on [default: 0.0.0.0:$FC_SERVER_PORT, or 0.0.0.0:9000]
    #[arg(long, env = "FERRY_BRIDGE_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Read notifications from standard input instead of serving HTTP
    #[arg(long, conflicts_with = "file")]
    stdin: bool,
    /// Read notifications from this file instead of serving HTTP
    #[arg(long, value_name = "PATH")]
    file: Option<std::path::PathBuf>,
    /// Secrets Manager secret (name or ARN) whose value is the callers' shared secret
    #[arg(long, env = "FERRY_BRIDGE_AUTH_SECRET", value_name = "NAME")]
    auth_secret: Option<String>,
    /// The callers' shared secret (environment only: FERRY_BRIDGE_TOKEN)
    #[arg(id = "bridge_token", long = "bridge-token", env = "FERRY_BRIDGE_TOKEN", hide = true)]
    token: Option<ferry_core::config::Secret>,
    #[command(flatten)]
    locations: Locations,
    /// On Function Compute: accept event invocations (x-fc-control-path: /invoke, as an OSS trigger sends them) without credentials
    #[arg(long, env = "FERRY_BRIDGE_TRUST_FC_EVENTS")]
    trust_fc_events: bool,
    #[command(flatten)]
    job: JobArgs,
}

fn main() -> std::process::ExitCode {
    ferry_cli::main("ferry-events-bridge", run)
}

async fn auth(cli: &Cli) -> anyhow::Result<Auth> {
    let secret = match (&cli.auth_secret, cli.token.clone().map(|t| t.0)) {
        (Some(name), _) => ferry_core::secrets::secret_string(name)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--auth-secret {name}"))?,
        (None, Some(token)) => token,
        (None, None) => {
            bail!("callers must authenticate: set FERRY_BRIDGE_TOKEN or --auth-secret NAME (a Secrets Manager secret)")
        }
    };
    Auth::new(&secret).map_err(anyhow::Error::msg)
}

async fn run() -> anyhow::Result<u8> {
    let cli: Cli = ferry_cli::parse();
    let cfg = cli
        .job
        .load([cli.locations.layer()])
        .context("reading the job settings")?;
    let job = cfg.build().context("invalid job settings")?;
    let queue = LedgerBackends::open(&job.ledger, &job.transfer)
        .await
        .context("opening the job queue")?
        .queue;
    let trusted_input = cli.stdin || cli.file.is_some();
    let bridge = Arc::new(Bridge {
        queue,
        ctx: job.event_context(),
        auth: if trusted_input { None } else { Some(auth(&cli).await?) },
        trust_fc_events: cli.trust_fc_events,
    });
    if trusted_input {
        let text = match &cli.file {
            Some(p) => std::fs::read_to_string(p).with_context(|| format!("--file {}", p.display()))?,
            None => std::io::read_to_string(std::io::stdin()).context("reading standard input")?,
        };
        return replay(&bridge, &text).await;
    }
    let addr = cli.listen.clone().unwrap_or_else(|| {
        format!(
            "0.0.0.0:{}",
            std::env::var("FC_SERVER_PORT").unwrap_or_else(|_| "9000".into())
        )
    });
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("--listen {addr}: cannot listen"))?;
    tracing::info!(addr = %listener.local_addr()?, queue = %bridge.queue.describe(), "Events bridge listening.");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        ferry_cli::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    server::serve(listener, bridge, stop_rx).await?;
    Ok(0)
}

/// Queues the notifications of a file or stdin: one JSON document, or one per line.
async fn replay(bridge: &Bridge, text: &str) -> anyhow::Result<u8> {
    let docs: Vec<&str> = if serde_json::from_str::<serde_json::Value>(text).is_ok() {
        vec![text]
    } else {
        text.lines().filter(|l| !l.trim().is_empty()).collect()
    };
    let (mut jobs, mut ignored) = (0, 0);
    for (i, doc) in docs.iter().enumerate() {
        match bridge.forward(doc.as_bytes()).await {
            Answer::Queued { jobs: j, ignored: n } => {
                jobs += j;
                ignored += n;
            }
            other => bail!("notification {} of {}: {}", i + 1, docs.len(), other.http().1),
        }
    }
    println!(
        "queued {jobs} job(s) from {} notification(s); {ignored} event(s) ignored",
        docs.len()
    );
    Ok(0)
}

#[cfg(test)]
#[test]
fn the_command_line_is_well_formed() {
    <Cli as clap::CommandFactory>::command().debug_assert();
}
