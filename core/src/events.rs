//! What a queue message means: a ferry job (version 1), or an Amazon S3 event
//! notification that S3 wrote to the queue directly.
//!
//! An S3 notification holds `Records[]`, possibly several; each record's key
//! is URL-encoded with `+` for a space (`a+b%2Bc` is the key `a b+c`), and its
//! ETag comes without quotes. `ObjectCreated:*` records become copy jobs,
//! `ObjectRemoved:*` records delete jobs when delete sync is on (otherwise
//! they are counted and ignored), records for another bucket or outside the
//! source prefix are ignored, and `s3:TestEvent` (sent when notifications are
//! configured) is acknowledged and dropped. Every job from an event carries
//! the event's order (`seq`): S3's `sequencer`, or for events forwarded from
//! OSS the event time; a worker drops an event older than one it already
//! applied to the same object ([`seq_older`]).

use crate::etag::ETag;
use serde::Deserialize;

use crate::job::{Job, JobParseError, Op, SrcRef};

/// The run id that event-driven jobs are counted under.
pub const EVENTS_RUN: &str = "events";

/// How events map to jobs: the job's source bucket and prefix, the
/// destination prefix, and whether deletes are synced.
#[derive(Debug, Clone, Default)]
pub struct EventContext {
    /// Source bucket; events for other buckets are ignored.
    pub src_bucket: String,
    /// Source key prefix; keys outside it are ignored.
    pub src_prefix: String,
    /// Destination key prefix, replacing the source prefix.
    pub dest_prefix: String,
    /// Whether ObjectRemoved events delete at the destination.
    pub delete: bool,
}

impl EventContext {
    /// The destination key of a source key, or `None` when the key is outside the source prefix.
    pub fn dest_key(&self, src_key: &str) -> Option<String> {
        let rel = src_key.strip_prefix(self.src_prefix.as_str())?;
        Some(format!("{}{rel}", self.dest_prefix))
    }

    /// The job for an event on `bucket`/`src.key`, or `None` when the event is
    /// for another bucket or outside the source prefix.
    pub fn job(&self, op: Op, bucket: &str, src: SrcRef, seq: Option<String>) -> Option<Job> {
        if bucket != self.src_bucket {
            return None;
        }
        let dest = self.dest_key(&src.key)?;
        Some(Job {
            v: 1,
            op,
            run: EVENTS_RUN.into(),
            src,
            dest: crate::job::DestRef { key: dest },
            seq,
            span: None,
            replans: 0,
            since: None,
            list: None,
        })
    }
}

/// The jobs a message holds, and what was left out.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Jobs to run.
    pub jobs: Vec<Job>,
    /// Records ignored: other bucket, outside the prefix, deletes without delete sync, test events.
    pub ignored: usize,
}

#[derive(Deserialize)]
struct S3Notification {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName")]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(rename = "eTag", default)]
    etag: Option<String>,
    #[serde(rename = "versionId", default)]
    version: Option<String>,
    #[serde(default)]
    sequencer: Option<String>,
}

/// Decodes a key as S3 writes it in event notifications: `+` is a space and
/// `%XX` an escaped byte (so `%2B` is a `+`).
pub fn decode_s3_event_key(key: &str) -> Result<String, String> {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| format!("the event key {key:?} does not decode to UTF-8"))
}

/// Whether event order `a` is older than `b`. Orders are compared as S3
/// documents for sequencers: the shorter one is padded with leading zeros,
/// then the strings are compared (OSS event times, all of one RFC 3339 form,
/// compare the same way).
pub fn seq_older(a: &str, b: &str) -> bool {
    let n = a.len().max(b.len());
    format!("{a:0>n$}") < format!("{b:0>n$}")
}

/// Parses a queue message: a ferry job, an S3 event notification, or an S3
/// test event. Anything else is an error (a poison message).
pub fn parse_message(body: &str, ctx: &EventContext) -> Result<Parsed, JobParseError> {
    let value: serde_json::Value = serde_json::from_str(body)?;
    if value.get("Records").is_some() {
        let n: S3Notification = serde_json::from_value(value)?;
        return Ok(from_s3(n, ctx));
    }
    if value.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Ok(Parsed {
            jobs: vec![],
            ignored: 1,
        });
    }
    Ok(Parsed {
        jobs: vec![Job::parse(body)?],
        ignored: 0,
    })
}

fn from_s3(n: S3Notification, ctx: &EventContext) -> Parsed {
    let mut out = Parsed::default();
    for r in n.records {
        let created = r.event_name.starts_with("ObjectCreated:");
        let removed = r.event_name.starts_with("ObjectRemoved:");
        let key = match decode_s3_event_key(&r.s3.object.key) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "Ignoring an S3 event record whose key cannot be decoded.");
                out.ignored += 1;
                continue;
            }
        };
        let op = match (created, removed) {
            (true, _) => Op::Copy,
            (_, true) if ctx.delete => Op::Delete,
            _ => {
                out.ignored += 1;
                continue;
            }
        };
        let src = SrcRef {
            key,
            size: r.s3.object.size.unwrap_or(0),
            etag: r.s3.object.etag.as_deref().map(|t| ETag(t).quoted()),
            version: r.s3.object.version,
        };
        match ctx.job(op, &r.s3.bucket.name, src, r.s3.object.sequencer) {
            Some(job) => out.jobs.push(job),
            None => out.ignored += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_as_s3_encodes_them() {
        assert_eq!(decode_s3_event_key("a+b%2Bc").unwrap(), "a b+c");
        assert_eq!(decode_s3_event_key("%E4%BD%A0%E5%A5%BD/x%25y").unwrap(), "你好/x%y");
        assert!(decode_s3_event_key("%FF").is_err());
    }

    #[test]
    fn sequencers_order_with_padding() {
        assert!(seq_older("0055AED6DCD90281E5", "0055AED6DCD90281E6"));
        assert!(seq_older("55AED6DCD90281E5", "0055AED6DCD90281E6"));
        assert!(!seq_older("0055AED6DCD90281E6", "0055AED6DCD90281E6"));
        assert!(seq_older("2026-11-22T10:00:00.000Z", "2026-11-22T10:00:01.000Z"));
    }
}

#[cfg(test)]
mod fixtures {
    use super::*;

    fn ctx(delete: bool) -> EventContext {
        EventContext {
            src_bucket: "photos-src".into(),
            src_prefix: "incoming/".into(),
            dest_prefix: "backup/".into(),
            delete,
        }
    }

    #[test]
    fn s3_notifications_with_several_records() {
        let body = include_str!("../tests/fixtures/s3-events.json");
        let p = parse_message(body, &ctx(true)).unwrap();
        let got: Vec<(Op, &str, &str, Option<&str>)> = p
            .jobs
            .iter()
            .map(|j| (j.op, j.src.key.as_str(), j.dest.key.as_str(), j.src.etag.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Op::Copy,
                    "incoming/a b+c.jpg",
                    "backup/a b+c.jpg",
                    Some("\"d41d8cd98f00b204e9800998ecf8427e\"")
                ),
                (
                    Op::Copy,
                    "incoming/你好 100%.bin",
                    "backup/你好 100%.bin",
                    Some("\"8a6c7ff0a1f3a44c8c0b0ef5a7a4b1c2-13\"")
                ),
                (
                    Op::Copy,
                    "incoming/copy.txt",
                    "backup/copy.txt",
                    Some("\"900150983cd24fb0d6963f7d28e17f72\"")
                ),
                (Op::Delete, "incoming/old file.txt", "backup/old file.txt", None),
                (Op::Delete, "incoming/versioned.txt", "backup/versioned.txt", None),
            ]
        );
        assert_eq!(p.ignored, 2, "another bucket, and a key outside the prefix");
        assert_eq!(p.jobs[0].src.size, 1024);
        assert_eq!(p.jobs[0].seq.as_deref(), Some("0055AED6DCD90281E5"));
        assert_eq!(
            p.jobs[0].src.version.as_deref(),
            Some("096fKKXTRTtl3on89fVO.nfljtsv6qko")
        );
        assert!(p.jobs.iter().all(|j| j.run == EVENTS_RUN));

        let without_delete = parse_message(body, &ctx(false)).unwrap();
        assert_eq!(without_delete.jobs.len(), 3, "removals are ignored without delete sync");
        assert_eq!(without_delete.ignored, 4);
    }

    #[test]
    fn test_events_are_dropped_and_jobs_pass_through() {
        let p = parse_message(include_str!("../tests/fixtures/s3-test-event.json"), &ctx(false)).unwrap();
        assert!(p.jobs.is_empty());
        assert_eq!(p.ignored, 1);
        let job = Job::copy(
            "r",
            SrcRef {
                key: "k".into(),
                size: 1,
                etag: None,
                version: None,
            },
            "k".into(),
        );
        let p = parse_message(&job.to_body(), &ctx(false)).unwrap();
        assert_eq!(p.jobs, vec![job]);
        for poison in ["not json", "{}", r#"{"Records": "x"}"#, r#"{"v":2,"op":"copy"}"#] {
            assert!(parse_message(poison, &ctx(false)).is_err(), "{poison}");
        }
    }
}
