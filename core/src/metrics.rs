//! Metrics: their names and units ([`defs`]), and the recorder the typed
//! events of [`crate::telemetry`] feed.
//!
//! Every value goes two ways:
//!
//! * to OpenTelemetry instruments of the global meter. They record nothing
//!   until a binary installs a meter provider, which happens when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see `ferry_cli::otel`);
//! * to process totals, which [`Totals::take`] hands out as deltas for
//!   CloudWatch Embedded Metric Format lines ([`emf_line`]).
//!
//! Labels are a small fixed set (`outcome`, `error_code`), never a key or a
//! bucket. Names and units are listed for users in `docs/METRICS.md`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::KeyValue;

/// Metric names, units and descriptions: the one list the code, the EMF
/// lines and `docs/METRICS.md` share.
pub mod defs {
    /// A metric's definition.
    #[derive(Debug, Clone, Copy)]
    pub struct Def {
        /// OpenTelemetry name.
        pub name: &'static str,
        /// UCUM unit for OpenTelemetry.
        pub unit: &'static str,
        /// CloudWatch unit for EMF.
        pub cloudwatch_unit: &'static str,
        /// What it counts.
        pub description: &'static str,
    }

    const fn def(
        name: &'static str,
        unit: &'static str,
        cloudwatch_unit: &'static str,
        description: &'static str,
    ) -> Def {
        Def {
            name,
            unit,
            cloudwatch_unit,
            description,
        }
    }

    /// Objects whose job ended, by `outcome`.
    pub const OBJECTS: Def = def(
        "ferry.objects",
        "{object}",
        "Count",
        "Objects whose job ended, by outcome (transferred, identical, skipped, source_gone, deleted, stale, failed, restore_needed; for giant objects split into span jobs, and span).",
    );
    /// Bytes written to the destination.
    pub const BYTES: Def = def(
        "ferry.bytes",
        "By",
        "Bytes",
        "Bytes written to the destination (single PUTs and parts).",
    );
    /// Time to read and upload one part.
    pub const PART_DURATION: Def = def(
        "ferry.part.duration",
        "s",
        "Seconds",
        "Time to read one part from the source and upload it, retries included.",
    );
    /// Store calls retried, by `error_code`.
    pub const RETRIES: Def = def(
        "ferry.retries",
        "{retry}",
        "Count",
        "Store calls retried after a retryable error, by error_code.",
    );
    /// Leases taken over from a worker whose lease lapsed.
    pub const LEASE_TAKEOVERS: Def = def(
        "ferry.lease.takeovers",
        "{takeover}",
        "Count",
        "Object leases taken over after their holder's lease lapsed (a dead or stalled worker).",
    );
    /// Time a job waited in the queue.
    pub const QUEUE_LAG: Def = def(
        "ferry.queue.lag",
        "s",
        "Seconds",
        "Time from a job's enqueueing to its receipt by a worker.",
    );
    /// Objects listed by the finder.
    pub const LISTED: Def = def(
        "ferry.finder.listed",
        "{object}",
        "Count",
        "Source objects listed by the finder (its list rate is this over time).",
    );

    /// The bandwidth limit in force, by `scope` (process, fleet).
    pub const BANDWIDTH_LIMIT: Def = def(
        "ferry.bandwidth.limit",
        "By/s",
        "Bytes/Second",
        "The bandwidth limit in force on reads from the source, by scope (process: --bwlimit; fleet: shared by the queue's workers); 0 when none applies now.",
    );

    /// Every metric.
    pub const ALL: [Def; 8] = [
        BANDWIDTH_LIMIT,
        OBJECTS,
        BYTES,
        PART_DURATION,
        RETRIES,
        LEASE_TAKEOVERS,
        QUEUE_LAG,
        LISTED,
    ];
}

/// How an object's job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Copied and verified.
    Transferred,
    /// Already at the destination.
    Identical,
    /// A duplicate of work done elsewhere.
    Skipped,
    /// The source no longer exists.
    SourceGone,
    /// Deleted at the destination (delete sync).
    Deleted,
    /// An event older than the one applied.
    Stale,
    /// Given up.
    Failed,
    /// The source is archived and must be restored first.
    RestoreNeeded,
    /// A giant object planned and queued as spans of parts.
    Split,
    /// A span of a giant object copied (or found done or moot).
    Span,
    /// A list job's key range diffed and its jobs queued.
    Listed,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Transferred => "transferred",
            Outcome::Identical => "identical",
            Outcome::Skipped => "skipped",
            Outcome::SourceGone => "source_gone",
            Outcome::Deleted => "deleted",
            Outcome::Stale => "stale",
            Outcome::Failed => "failed",
            Outcome::RestoreNeeded => "restore_needed",
            Outcome::Split => "split",
            Outcome::Span => "span",
            Outcome::Listed => "listed",
        }
    }
}

struct Instruments {
    objects: Counter<u64>,
    bytes: Counter<u64>,
    part_duration: Histogram<f64>,
    retries: Counter<u64>,
    takeovers: Counter<u64>,
    queue_lag: Histogram<f64>,
    listed: Counter<u64>,
    bandwidth_limit: opentelemetry::metrics::Gauge<u64>,
}

/// The instruments, made on first use from the global meter (so after a
/// binary installed its provider).
fn instruments() -> &'static Instruments {
    static I: OnceLock<Instruments> = OnceLock::new();
    I.get_or_init(|| {
        let m = opentelemetry::global::meter("ferry");
        let counter = |d: defs::Def| {
            m.u64_counter(d.name)
                .with_unit(d.unit)
                .with_description(d.description)
                .build()
        };
        let histogram = |d: defs::Def| {
            m.f64_histogram(d.name)
                .with_unit(d.unit)
                .with_description(d.description)
                .build()
        };
        Instruments {
            objects: counter(defs::OBJECTS),
            bytes: counter(defs::BYTES),
            part_duration: histogram(defs::PART_DURATION),
            retries: counter(defs::RETRIES),
            takeovers: counter(defs::LEASE_TAKEOVERS),
            queue_lag: histogram(defs::QUEUE_LAG),
            listed: counter(defs::LISTED),
            bandwidth_limit: m
                .u64_gauge(defs::BANDWIDTH_LIMIT.name)
                .with_unit(defs::BANDWIDTH_LIMIT.unit)
                .with_description(defs::BANDWIDTH_LIMIT.description)
                .build(),
        }
    })
}

/// Most latency samples kept between two EMF lines (EMF takes at most 100
/// values per metric).
const SAMPLES: usize = 100;

/// Process totals since the last [`Totals::take`].
#[derive(Debug, Default)]
pub struct Totals {
    objects: Mutex<BTreeMap<Outcome, u64>>,
    bytes: AtomicU64,
    part_durations: Mutex<Vec<f64>>,
    retries: Mutex<BTreeMap<&'static str, u64>>,
    takeovers: AtomicU64,
    queue_lags: Mutex<Vec<f64>>,
    listed: AtomicU64,
    bandwidth_limits: Mutex<BTreeMap<&'static str, u64>>,
}

/// What [`Totals::take`] hands out.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// Objects by outcome.
    pub objects: BTreeMap<Outcome, u64>,
    /// Bytes written.
    pub bytes: u64,
    /// Part durations, seconds (at most 100 samples).
    pub part_durations: Vec<f64>,
    /// Retries by error code.
    pub retries: BTreeMap<&'static str, u64>,
    /// Lease takeovers.
    pub takeovers: u64,
    /// Queue lags, seconds (at most 100 samples).
    pub queue_lags: Vec<f64>,
    /// Objects listed.
    pub listed: u64,
    /// The bandwidth limits last in force, by scope (0: none).
    pub bandwidth_limits: BTreeMap<&'static str, u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sample(v: &Mutex<Vec<f64>>, x: f64) {
    let mut v = lock(v);
    if v.len() < SAMPLES {
        v.push(x);
    }
}

impl Totals {
    /// The deltas since the last call.
    pub fn take(&self) -> Snapshot {
        Snapshot {
            objects: std::mem::take(&mut *lock(&self.objects)),
            bytes: self.bytes.swap(0, Ordering::Relaxed),
            part_durations: std::mem::take(&mut *lock(&self.part_durations)),
            retries: std::mem::take(&mut *lock(&self.retries)),
            takeovers: self.takeovers.swap(0, Ordering::Relaxed),
            queue_lags: std::mem::take(&mut *lock(&self.queue_lags)),
            listed: self.listed.swap(0, Ordering::Relaxed),
            bandwidth_limits: std::mem::take(&mut *lock(&self.bandwidth_limits)),
        }
    }
}

/// The process totals.
pub fn totals() -> &'static Totals {
    static T: OnceLock<Totals> = OnceLock::new();
    T.get_or_init(Totals::default)
}

/// An object's job ended.
pub fn object(outcome: Outcome) {
    *lock(&totals().objects).entry(outcome).or_default() += 1;
    instruments()
        .objects
        .add(1, &[KeyValue::new("outcome", outcome.as_str())]);
}

/// Bytes written to the destination.
pub fn bytes(n: u64) {
    totals().bytes.fetch_add(n, Ordering::Relaxed);
    instruments().bytes.add(n, &[]);
}

/// A part took `d` to read and upload.
pub fn part_duration(d: Duration) {
    sample(&totals().part_durations, d.as_secs_f64());
    instruments().part_duration.record(d.as_secs_f64(), &[]);
}

/// A store call is retried after an error with this code.
pub fn retry(error_code: &'static str) {
    *lock(&totals().retries).entry(error_code).or_default() += 1;
    instruments().retries.add(1, &[KeyValue::new("error_code", error_code)]);
}

/// A lapsed lease was taken over.
pub fn lease_takeover() {
    totals().takeovers.fetch_add(1, Ordering::Relaxed);
    instruments().takeovers.add(1, &[]);
}

/// A job waited `d` in the queue.
pub fn queue_lag(d: Duration) {
    sample(&totals().queue_lags, d.as_secs_f64());
    instruments().queue_lag.record(d.as_secs_f64(), &[]);
}

/// The finder listed `n` source objects.
pub fn listed(n: u64) {
    totals().listed.fetch_add(n, Ordering::Relaxed);
    instruments().listed.add(n, &[]);
}

/// The bandwidth limit of `scope` (`process`, `fleet`) now in force, bytes
/// per second (`None`: no limit now).
pub fn bandwidth_limit(scope: &'static str, rate: Option<u64>) {
    let v = rate.unwrap_or(0);
    lock(&totals().bandwidth_limits).insert(scope, v);
    instruments()
        .bandwidth_limit
        .record(v, &[KeyValue::new("scope", scope)]);
}

/// One CloudWatch Embedded Metric Format record of `s`, for `service`
/// (dimension `Service`), at `timestamp_ms`. Counters become one metric per
/// label value (`ferry.objects.transferred`, `ferry.retries.throttled`);
/// durations are value arrays. Metrics with nothing to report are left out;
/// `None` when there is nothing at all.
pub fn emf_line(service: &str, s: &Snapshot, timestamp_ms: i64) -> Option<serde_json::Value> {
    use serde_json::{json, Map, Value};
    let mut values = Map::new();
    let mut metrics = Vec::new();
    let mut put = |name: String, unit: &str, v: Value| {
        metrics.push(json!({"Name": name, "Unit": unit}));
        values.insert(name, v);
    };
    for (o, n) in &s.objects {
        put(format!("{}.{}", defs::OBJECTS.name, o.as_str()), "Count", json!(n));
    }
    if s.bytes > 0 {
        put(defs::BYTES.name.into(), defs::BYTES.cloudwatch_unit, json!(s.bytes));
    }
    if !s.part_durations.is_empty() {
        put(
            defs::PART_DURATION.name.into(),
            defs::PART_DURATION.cloudwatch_unit,
            json!(s.part_durations),
        );
    }
    for (code, n) in &s.retries {
        put(format!("{}.{code}", defs::RETRIES.name), "Count", json!(n));
    }
    if s.takeovers > 0 {
        put(defs::LEASE_TAKEOVERS.name.into(), "Count", json!(s.takeovers));
    }
    if !s.queue_lags.is_empty() {
        put(defs::QUEUE_LAG.name.into(), "Seconds", json!(s.queue_lags));
    }
    if s.listed > 0 {
        put(defs::LISTED.name.into(), "Count", json!(s.listed));
    }
    for (scope, v) in &s.bandwidth_limits {
        let d = defs::BANDWIDTH_LIMIT;
        put(format!("{}.{scope}", d.name), d.cloudwatch_unit, json!(v));
    }
    if metrics.is_empty() {
        return None;
    }
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": "ferry",
                "Dimensions": [["Service"]],
                "Metrics": metrics,
            }],
        }),
    );
    root.insert("Service".into(), json!(service));
    root.extend(values);
    Some(Value::Object(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_carry_every_reported_metric_once() {
        let mut s = Snapshot::default();
        assert!(emf_line("worker", &s, 1).is_none(), "nothing to report");
        s.objects.insert(Outcome::Transferred, 3);
        s.objects.insert(Outcome::Failed, 1);
        s.bytes = 4096;
        s.part_durations = vec![0.5, 0.25];
        s.retries.insert("throttled", 2);
        let v = emf_line("worker", &s, 1_700_000_000_000).unwrap();
        let names: Vec<&str> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "ferry.objects.transferred",
                "ferry.objects.failed",
                "ferry.bytes",
                "ferry.part.duration",
                "ferry.retries.throttled"
            ]
        );
        for n in names {
            assert!(v.get(n).is_some(), "{n} has a value");
        }
        assert_eq!(v["ferry.bytes"], 4096);
        assert_eq!(v["Service"], "worker");
    }

    #[test]
    fn totals_hand_out_deltas() {
        let t = Totals::default();
        t.bytes.fetch_add(10, Ordering::Relaxed);
        assert_eq!(t.take().bytes, 10);
        assert_eq!(t.take().bytes, 0);
    }
}
