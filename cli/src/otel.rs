//! Process telemetry: logs, OpenTelemetry export and CloudWatch EMF lines.
//!
//! * Logs go to stderr through `tracing` (`RUST_LOG`, default `info`).
//! * When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`
//!   / `…_TRACES_ENDPOINT`) is set, metrics ([`ferry_core::metrics`]) and
//!   traces (the `job` and `part` spans) are exported with OTLP over HTTP:
//!   protobuf by default, JSON with `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`.
//!   Metrics are pushed every `OTEL_METRIC_EXPORT_INTERVAL` ms (default 60 s)
//!   and once more at exit. The service name is the binary's unless
//!   `OTEL_SERVICE_NAME` says otherwise.
//! * With `FERRY_EMF=true` (set in the ECS task definitions), a CloudWatch
//!   Embedded Metric Format line with the deltas since the last one is
//!   printed to stdout every `FERRY_EMF_INTERVAL` (default 60 s) and at exit,
//!   so CloudWatch Logs turns them into metrics without a collector.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// What must be flushed at exit. Call [`Telemetry::shutdown`] before the
/// process ends.
#[derive(Debug, Default)]
pub struct Telemetry {
    meter: Option<SdkMeterProvider>,
    tracer: Option<SdkTracerProvider>,
    emf: Option<(String, tokio::task::JoinHandle<()>)>,
}

/// The environment variables read here (the OpenTelemetry ones are the
/// standard OTLP exporter variables).
pub const ENV_VARS: &[&str] = &[
    "FERRY_EMF",
    "FERRY_EMF_INTERVAL",
    "RUST_LOG",
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_METRIC_EXPORT_INTERVAL",
];

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn otlp_enabled(kind: &str) -> bool {
    env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() || env(&format!("OTEL_EXPORTER_OTLP_{kind}_ENDPOINT")).is_some()
}

fn protocol() -> Protocol {
    match env("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Some("http/json") => Protocol::HttpJson,
        _ => Protocol::HttpBinary,
    }
}

/// Whether EMF lines are on (`FERRY_EMF` = `1`/`true`).
pub fn emf_enabled() -> bool {
    matches!(env("FERRY_EMF").as_deref(), Some("1" | "true" | "yes"))
}

fn emf_interval() -> Duration {
    env("FERRY_EMF_INTERVAL")
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(Duration::from_secs(60))
        .max(Duration::from_millis(100))
}

/// Prints one EMF line with what was recorded since the last.
fn emf_flush(service: &str) {
    let snap = ferry_core::metrics::totals().take();
    if let Some(line) = ferry_core::metrics::emf_line(service, &snap, ferry_core::now_millis()) {
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "{line}");
    }
}

impl Telemetry {
    /// Sets up logging (stderr, `RUST_LOG` or `default_filter`, the AWS SDK
    /// capped at `info` unless named) and, as the environment asks, OTLP
    /// export and EMF lines, for the binary `service`. Must run inside the
    /// Tokio runtime.
    pub fn init(service: &str, default_filter: &str) -> Telemetry {
        let service = env("OTEL_SERVICE_NAME").unwrap_or_else(|| service.to_string());
        let resource = Resource::builder().with_service_name(service.clone()).build();
        let mut t = Telemetry::default();
        let mut problems = Vec::new();
        if otlp_enabled("METRICS") {
            match opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(protocol())
                .build()
            {
                Ok(exporter) => {
                    let provider = SdkMeterProvider::builder()
                        .with_reader(PeriodicReader::builder(exporter).build())
                        .with_resource(resource.clone())
                        .build();
                    opentelemetry::global::set_meter_provider(provider.clone());
                    t.meter = Some(provider);
                }
                Err(e) => problems.push(format!("OTLP metrics: {e}")),
            }
        }
        if otlp_enabled("TRACES") {
            match opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(protocol())
                .build()
            {
                Ok(exporter) => {
                    t.tracer = Some(
                        SdkTracerProvider::builder()
                            .with_batch_exporter(exporter)
                            .with_resource(resource)
                            .build(),
                    );
                }
                Err(e) => problems.push(format!("OTLP traces: {e}")),
            }
        }
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_filter(crate::log_filter(default_filter));
        let otel = t.tracer.as_ref().map(|p| {
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer("ferry"))
                .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                    m.is_span() && m.target().starts_with("ferry")
                }))
        });
        let _ = tracing_subscriber::registry().with(fmt).with(otel).try_init();
        for p in problems {
            tracing::warn!(problem = %p, "Telemetry export is off.");
        }
        if emf_enabled() {
            let every = emf_interval();
            let name = service.clone();
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    emf_flush(&name);
                }
            });
            t.emf = Some((service, task));
        }
        t
    }

    /// Exports what is pending: the last EMF line, the final metrics and the
    /// buffered spans.
    pub async fn shutdown(self) {
        if let Some((service, task)) = self.emf {
            task.abort();
            emf_flush(&service);
        }
        let (meter, tracer) = (self.meter, self.tracer);
        if meter.is_none() && tracer.is_none() {
            return;
        }
        // The exporters block on HTTP: off the async threads.
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(m) = meter {
                if let Err(e) = m.shutdown() {
                    tracing::warn!(error = %e, "Could not export the last metrics.");
                }
            }
            if let Some(t) = tracer {
                if let Err(e) = t.shutdown() {
                    tracing::warn!(error = %e, "Could not export the last spans.");
                }
            }
        })
        .await;
    }
}
