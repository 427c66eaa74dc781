//! `ferry-gateway`: presigned uploads for clients that hold no storage keys.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ferry_cli::backends::LedgerBackends;
use ferry_cli::{Backends, JobArgs, Locations};
use ferry_core::config::Side;
use ferry_gateway::tokens::{Token, Tokens};
use ferry_gateway::{server, Gateway, GatewayConfig};

/// Hands out presigned upload URLs so that clients without storage keys
/// upload straight to the store, in parallel parts, resumably and verified
/// (the API is in docs/GATEWAY.md).
///
///   ferry-gateway token issue --tokens tokens.json --id field-7 --prefix devices/7/ --uploads 1000 --bytes 100GiB --expires 90d
///   ferry-gateway serve s3://BUCKET/uploads/ --tokens tokens.json --listen 0.0.0.0:8080 --state dynamodb://ferry-gateway
///
/// The store is reached as a ferry destination: --dest-endpoint,
/// --dest-vendor, --dest-profile or --dest-secret and the FERRY_DEST_*
/// variables work as for ferry-finder.
#[derive(Debug, Parser)]
#[command(name = "ferry-gateway", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the upload API until stopped (SIGTERM or Ctrl-C)
    Serve(Box<ServeArgs>),
    /// Aborts the uploads whose --abort-after has passed, once, and exits (for a schedule when the
    /// gateway runs as a function); takes the same settings as serve
    Sweep(Box<ServeArgs>),
    /// Manages the bearer tokens of the tokens file
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    /// Where uploads go: s3://BUCKET/PREFIX (keys are relative to PREFIX)
    #[arg(env = "FERRY_GATEWAY_DEST", value_name = "DEST")]
    dest: String,
    /// Address to listen on [default: 0.0.0.0:$FC_SERVER_PORT on Function Compute, 0.0.0.0:$AWS_LWA_PORT
    /// behind the Lambda Web Adapter, else 127.0.0.1:8080]
    #[arg(long, env = "FERRY_GATEWAY_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// How often this process aborts abandoned uploads; 0 never (a function's instances come and go: run
    /// `ferry-gateway sweep` on a schedule instead) [default: a quarter of --abort-after, at most 1m]
    #[arg(long, env = "FERRY_GATEWAY_SWEEP_EVERY", value_name = "DURATION")]
    sweep_every: Option<humantime::Duration>,
    /// The tokens file (written by `ferry-gateway token issue`)
    #[arg(
        long,
        env = "FERRY_GATEWAY_TOKENS",
        value_name = "FILE",
        required_unless_present = "tokens_secret"
    )]
    tokens: Option<PathBuf>,
    /// A Secrets Manager secret (name or ARN) whose value is the tokens file's JSON, instead of --tokens
    #[arg(
        long,
        env = "FERRY_GATEWAY_TOKENS_SECRET",
        value_name = "NAME",
        conflicts_with = "tokens"
    )]
    tokens_secret: Option<String>,
    /// How often the tokens (file or secret) are read again while serving, so tokens issued or removed
    /// take effect without a restart; 0 never
    #[arg(
        long,
        env = "FERRY_GATEWAY_TOKENS_RELOAD",
        default_value = "30s",
        value_name = "DURATION"
    )]
    tokens_reload: humantime::Duration,
    /// How long a presigned URL is valid
    #[arg(long, env = "FERRY_GATEWAY_URL_TTL", default_value = "15m", value_name = "DURATION")]
    url_ttl: humantime::Duration,
    /// An upload not completed this long after it was created or last resumed is aborted
    #[arg(
        long,
        env = "FERRY_GATEWAY_ABORT_AFTER",
        default_value = "24h",
        value_name = "DURATION"
    )]
    abort_after: humantime::Duration,
    #[command(flatten)]
    job: JobArgs,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Adds a token to the tokens file (created when missing) and prints it once
    Issue {
        /// The tokens file
        #[arg(long, value_name = "FILE")]
        tokens: PathBuf,
        /// The token's name (letters, digits, '-'), shown in logs and refusals
        #[arg(long)]
        id: String,
        /// Keys its uploads create must start with this (relative to the gateway's prefix)
        #[arg(long, default_value = "")]
        prefix: String,
        /// Most uploads it may create [default: no limit]
        #[arg(long, value_name = "N")]
        uploads: Option<u64>,
        /// Most bytes its uploads may hold in all [default: no limit]
        #[arg(long, value_name = "SIZE")]
        bytes: Option<bytesize::ByteSize>,
        /// How long it is valid [default: no expiry]
        #[arg(long, value_name = "DURATION")]
        expires: Option<humantime::Duration>,
    },
}

fn main() -> std::process::ExitCode {
    ferry_cli::main("ferry-gateway", run)
}

async fn run() -> anyhow::Result<u8> {
    let cli: Cli = ferry_cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Sweep(args) => {
            let gateway = open(&args).await?;
            let n = gateway.sweep().await.context("aborting abandoned uploads")?;
            println!("{n} abandoned upload(s) aborted");
            Ok(0)
        }
        Command::Token {
            command:
                TokenCommand::Issue {
                    tokens,
                    id,
                    prefix,
                    uploads,
                    bytes,
                    expires,
                },
        } => {
            let mut all = match tokens.exists() {
                true => Tokens::load(&tokens)?,
                false => Tokens::default(),
            };
            let entry = Token {
                id,
                sha256: String::new(),
                prefix,
                max_uploads: uploads,
                max_bytes: bytes.map(|b| b.as_u64()),
                expires_at: expires.map(|d| ferry_core::now_millis() + Duration::from(d).as_millis() as i64),
            };
            let token = all.issue(entry)?;
            all.save(&tokens)?;
            println!("{token}");
            Ok(0)
        }
    }
}

/// The gateway the settings describe.
async fn open(args: &ServeArgs) -> anyhow::Result<Arc<Gateway>> {
    let locations = Locations {
        src: Some(".".into()),
        dest: Some(args.dest.clone()),
    };
    let settings = args
        .job
        .load([locations.layer()])
        .context("reading the job settings")?
        .build()
        .context("invalid settings")?;
    let Side::S3 { config, prefix } = &settings.destination else {
        bail!(
            "DEST {}: the gateway hands out URLs of a bucket (s3://BUCKET/PREFIX)",
            args.dest
        );
    };
    let (tokens, from) = read_tokens(args).await?;
    if tokens.tokens.is_empty() {
        tracing::warn!(
            tokens = %from,
            "No token yet: every call is refused until one is added with `ferry-gateway token issue` (read again every --tokens-reload)."
        );
    }
    let store = Backends::store(&settings.destination, &settings.transfer).await;
    let signer = Arc::new(ferry_core::store::S3Store::new(config.clone()).await);
    let state = LedgerBackends::open(&settings.ledger, &settings.transfer)
        .await
        .context("opening the state store")?
        .state;
    let abort_after = Duration::from(args.abort_after);
    let cfg = GatewayConfig {
        bucket: config.bucket.clone(),
        prefix: prefix.clone(),
        url_ttl: args.url_ttl.into(),
        abort_after,
        // --part-size, as for any transfer: the size when the client asks for none.
        part_size: settings.transfer.part_size.as_u64(),
    };
    Ok(Arc::new(Gateway::new(store, signer, state, tokens, cfg)))
}

/// The tokens of `--tokens` or `--tokens-secret`, and where they came from.
async fn read_tokens(args: &ServeArgs) -> anyhow::Result<(Tokens, String)> {
    match (&args.tokens, &args.tokens_secret) {
        (_, Some(name)) => {
            let text = ferry_core::secrets::secret_string(name)
                .await
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--tokens-secret {name}"))?;
            let tokens = Tokens::parse(&text)
                .map_err(|e| anyhow::anyhow!("--tokens-secret {name}: not a ferry tokens file: {e}"))?;
            Ok((tokens, format!("--tokens-secret {name}")))
        }
        (Some(path), None) => Ok((Tokens::load(path)?, format!("--tokens {}", path.display()))),
        (None, None) => bail!("give --tokens FILE or --tokens-secret NAME"),
    }
}

/// Reads the tokens again every `every` until `stop`; a source that cannot
/// be read or parsed keeps the tokens in use (and says why).
async fn reload_tokens(
    args: Arc<ServeArgs>,
    gateway: Arc<Gateway>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        match read_tokens(&args).await {
            Ok((tokens, _)) if *gateway.tokens() == tokens => {}
            Ok((tokens, from)) => {
                tracing::info!(tokens = %from, count = tokens.tokens.len(), "Tokens reloaded.");
                gateway.set_tokens(tokens);
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "Reading the tokens again failed; the ones in use are kept.")
            }
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let gateway = open(&args).await?;
    let port = |var: &str| std::env::var(var).ok().map(|p| format!("0.0.0.0:{p}"));
    let listen = args
        .listen
        .clone()
        .or_else(|| port("FC_SERVER_PORT"))
        .or_else(|| port("AWS_LWA_PORT"))
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("--listen {listen}: cannot listen"))?;
    tracing::info!(addr = %listener.local_addr()?, dest = %args.dest, "Upload gateway listening.");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        ferry_cli::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let abort_after = Duration::from(args.abort_after);
    let every = match args.sweep_every.map(Duration::from) {
        Some(d) => d,
        None => (abort_after / 4).clamp(Duration::from_millis(500), Duration::from_secs(60)),
    };
    if !every.is_zero() {
        tokio::spawn(server::sweep_every(gateway.clone(), every, stop_rx.clone()));
    }
    let reload = Duration::from(args.tokens_reload);
    if !reload.is_zero() {
        let args = Arc::new(args.clone());
        tokio::spawn(reload_tokens(args, gateway.clone(), reload, stop_rx.clone()));
    }
    server::serve(listener, gateway, stop_rx).await?;
    Ok(0)
}

#[cfg(test)]
#[test]
fn the_command_line_is_well_formed() {
    <Cli as clap::CommandFactory>::command().debug_assert();
}
