//! ferry-cli: what every ferry binary shares — the composition root.
//!
//! A binary's `main` is [`main`]: it forgets empty `FERRY_*` variables,
//! starts the async runtime and telemetry ([`otel`]), runs the binary's
//! `run`, and turns its result into the exit code. `run` parses its
//! arguments with [`parse`] (the shared groups of [`args`]), builds
//! [`ferry_core::config::Settings`] once, opens the backends once with
//! [`Backends::open`], and passes them to the loop it runs (the finder, the
//! worker runner, the events bridge); nothing below the binaries opens a
//! store, a queue or a state store by itself.

pub mod args;
pub mod backends;
pub mod http;
pub mod otel;

pub use args::{JobArgs, Locations};
pub use backends::{Backends, OpenError};

/// A binary's `main`: forgets empty `FERRY_*` variables while the process
/// has one thread ([`unset_empty_env`]), starts the async runtime and the
/// telemetry of `name`, runs `run`, and turns its result into the exit code
/// ([`exit_code`]).
pub fn main<F>(name: &'static str, run: impl FnOnce() -> F) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<u8>>,
{
    unset_empty_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts");
    runtime.block_on(async {
        let telemetry = otel::Telemetry::init(name, "info");
        let result = run().await;
        telemetry.shutdown().await;
        exit_code(name, result)
    })
}

/// Parses the command line of `C`, refusing on it the arguments that are
/// read from the environment only ([`args::ENV_ONLY`]: access keys, which a
/// command line would show in `ps` and shell history).
pub fn parse<C: clap::Parser>() -> C {
    let matches = C::command().get_matches();
    if let Some(id) = flagged_secret(&matches) {
        let flag = format!("--{}", id.replace('_', "-"));
        let var = format!("FERRY_{}", id.to_uppercase());
        C::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("{flag}: keys are never read from flags; set {var} or put it in the --config file"),
            )
            .exit();
    }
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn flagged_secret(m: &clap::ArgMatches) -> Option<&'static str> {
    let on_line = |id: &str| {
        m.try_get_raw(id).is_ok_and(|v| v.is_some())
            && m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
    };
    if let Some(id) = args::ENV_ONLY.iter().copied().find(|id| on_line(id)) {
        return Some(id);
    }
    m.subcommand().and_then(|(_, sub)| flagged_secret(sub))
}

/// The log filter: `RUST_LOG`, or `default` when unset or invalid.
///
/// The AWS SDK's own crates stay at `info` unless `RUST_LOG` names them: their
/// debug output prints request identities, access key ids included.
pub fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| default.to_string());
    tracing_subscriber::EnvFilter::try_new(sdk_capped(&spec))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(sdk_capped(default)))
}

/// Forgets every `FERRY_*` variable that is set but empty, before the flags
/// are parsed: an empty variable means "not set", as it does in the job-file
/// layer ([`ferry_core::config`]). Templates set every variable
/// and leave the unused ones empty (`FERRY_SRC_ENDPOINT=`), which clap would
/// otherwise take as the value "". [`main`] calls it first, while the
/// process has one thread.
fn unset_empty_env() {
    for (k, v) in std::env::vars_os() {
        if v.is_empty() && k.to_str().is_some_and(|k| k.starts_with("FERRY_")) {
            std::env::remove_var(&k);
        }
    }
}

/// The exit code of a binary's `run`: its own code, or 2 after printing the
/// error with its causes as `NAME: error: …`.
pub fn exit_code(name: &str, r: anyhow::Result<u8>) -> std::process::ExitCode {
    match r {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Log targets of the AWS SDK that are capped at `info` unless named.
const SDK_TARGETS: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_sdk_",
    "aws_config",
    "aws_sigv4",
];

fn sdk_capped(spec: &str) -> String {
    let mut out = spec.to_string();
    for t in SDK_TARGETS {
        if !spec.contains(t) {
            let t = t.trim_end_matches('_');
            for target in if t == "aws_sdk" {
                vec![
                    "aws_sdk_s3",
                    "aws_sdk_sqs",
                    "aws_sdk_dynamodb",
                    "aws_sdk_secretsmanager",
                ]
            } else {
                vec![t]
            } {
                out.push_str(&format!(",{target}=info"));
            }
        }
    }
    out
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM (what ECS and Auto Scaling send).
pub async fn shutdown_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
