//! Telemetry from a real sync: an OTLP/HTTP receiver on 127.0.0.1 gets the
//! documented metrics with the run's exact values and a span per job and
//! part; the CloudWatch Embedded Metric Format lines on stdout are valid per
//! the format's schema and carry the same values.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use ferry_tests::*;
use serde_json::Value;

const MIB: usize = 1024 * 1024;

/// Every request body an OTLP receiver got, by path.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A minimal OTLP/HTTP receiver: answers 200 to every POST and keeps the bodies.
fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Received = Arc::default();
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let keep = keep.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    keep.lock().unwrap().push((path, body));
                    let _ = w
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}");
                }
            });
        }
    });
    (format!("http://{addr}"), got)
}

/// An OTLP/JSON integer (a string or a number).
fn int(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// The metrics of the last export that has `name`: data points as (attributes, point).
fn points(exports: &[Value], name: &str) -> Vec<(BTreeMap<String, String>, Value)> {
    let mut last = Vec::new();
    for e in exports {
        let mut found = Vec::new();
        for rm in e["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    if m["name"] != name {
                        continue;
                    }
                    let data = ["sum", "histogram", "gauge"]
                        .iter()
                        .find_map(|k| m.get(*k))
                        .cloned()
                        .unwrap_or(Value::Null);
                    for p in data["dataPoints"].as_array().into_iter().flatten() {
                        let attrs = p["attributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|a| {
                                (
                                    a["key"].as_str().unwrap_or("").to_string(),
                                    a["value"]["stringValue"].as_str().unwrap_or("").to_string(),
                                )
                            })
                            .collect();
                        found.push((attrs, p.clone()));
                    }
                }
            }
        }
        if !found.is_empty() {
            last = found;
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_exports_its_metrics_and_spans_over_otlp_and_valid_emf_lines() {
    let rgw = rgw();
    let bucket = rgw.bucket("otel").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut files: BTreeMap<String, Vec<u8>> = (0..7)
        .map(|i| (format!("s/{i}"), data(1000 + i * 10, i as u64)))
        .collect();
    files.insert("big.bin".into(), data(12 * MIB + 1, 9));
    write_tree(&src, &files);
    let total: u64 = files.values().map(|v| v.len() as u64).sum();
    let (endpoint, got) = receiver();

    let mut args = vec![
        src.display().to_string(),
        format!("s3://{bucket}/"),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
        "--part-size".into(),
        "5MiB".into(),
        "--multipart-threshold".into(),
        "5MiB".into(),
    ];
    args.extend(rgw.flags("dest"));
    let mut envs = rgw.envs("dest");
    envs.extend(
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ("FERRY_EMF", "true"),
            ("FERRY_EMF_INTERVAL", "1h"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let out = run(finder(&args, &envs));
    assert!(out.status.success());
    assert_same("otel sync", &files, &rgw.read_all(&bucket, "").await);

    // OTLP metrics: cumulative, so the last export holds the run's totals.
    let bodies = got.lock().unwrap().clone();
    let metrics: Vec<Value> = bodies
        .iter()
        .filter(|(p, _)| p == "/v1/metrics")
        .map(|(_, b)| serde_json::from_slice(b).expect("OTLP JSON"))
        .collect();
    assert!(!metrics.is_empty(), "metrics were exported");
    let objects = points(&metrics, "ferry.objects");
    let transferred: u64 = objects
        .iter()
        .filter(|(a, _)| a.get("outcome").map(String::as_str) == Some("transferred"))
        .map(|(_, p)| int(&p["asInt"]))
        .sum();
    assert_eq!(transferred, files.len() as u64, "objects by outcome: {objects:?}");
    let bytes: u64 = points(&metrics, "ferry.bytes")
        .iter()
        .map(|(_, p)| int(&p["asInt"]))
        .sum();
    assert_eq!(bytes, total, "bytes written");
    let parts: u64 = points(&metrics, "ferry.part.duration")
        .iter()
        .map(|(_, p)| int(&p["count"]))
        .sum();
    assert_eq!(parts, 7 + 3, "one duration per single PUT and per part");
    let listed: u64 = points(&metrics, "ferry.finder.listed")
        .iter()
        .map(|(_, p)| int(&p["asInt"]))
        .sum();
    assert_eq!(listed, files.len() as u64, "objects listed");
    assert!(!points(&metrics, "ferry.queue.lag").is_empty(), "queue lag recorded");

    // OTLP traces: a span per job and per part.
    let mut spans: BTreeMap<String, usize> = BTreeMap::new();
    for (_, b) in bodies.iter().filter(|(p, _)| p == "/v1/traces") {
        let v: Value = serde_json::from_slice(b).expect("OTLP JSON");
        for rs in v["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    *spans.entry(s["name"].as_str().unwrap_or("").to_string()).or_default() += 1;
                }
            }
        }
    }
    assert_eq!(spans.get("job"), Some(&files.len()), "spans: {spans:?}");
    assert_eq!(spans.get("part"), Some(&3), "spans: {spans:?}");

    // EMF: every line with `_aws` is valid and the values are the run's.
    let schema: Value = serde_json::from_str(include_str!("../fixtures/emf.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the EMF schema compiles");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert!(!lines.is_empty(), "EMF lines on stdout:\n{stdout}");
    let mut emf_transferred = 0;
    let mut emf_bytes = 0;
    for v in &lines {
        if let Err(e) = validator.validate(v) {
            panic!("invalid EMF line {v}: {e}");
        }
        // Every metric and dimension a directive names is a member of the root.
        for d in v["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            for m in d["Metrics"].as_array().unwrap() {
                let name = m["Name"].as_str().unwrap();
                let val = &v[name];
                assert!(
                    val.is_number()
                        || val
                            .as_array()
                            .is_some_and(|a| a.len() <= 100 && a.iter().all(Value::is_number)),
                    "{name} has a numeric value in {v}"
                );
            }
            for set in d["Dimensions"].as_array().unwrap() {
                for dim in set.as_array().unwrap() {
                    assert!(v[dim.as_str().unwrap()].is_string(), "dimension {dim} in {v}");
                }
            }
        }
        emf_transferred += v["ferry.objects.transferred"].as_u64().unwrap_or(0);
        emf_bytes += v["ferry.bytes"].as_u64().unwrap_or(0);
    }
    assert_eq!(emf_transferred, files.len() as u64);
    assert_eq!(emf_bytes, total);
}
