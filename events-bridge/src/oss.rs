//! Aliyun OSS event notifications, as an OSS trigger delivers them to a
//! Function Compute function: `{"events": [ … ]}`, **every** entry of which
//! is an event with `eventName` (`ObjectCreated:PutObject`, …), `eventTime`,
//! `oss.bucket.name`, and `oss.object.key`, `size` and `eTag`.
//!
//! * `ObjectCreated:*` of every kind (PutObject, PostObject, CopyObject,
//!   CompleteMultipartUpload, AppendObject, PutSymlink, …) becomes a copy
//!   job. The parts-in-progress events (`InitiateMultipartUpload`,
//!   `UploadPart`, `UploadPartCopy`) announce no object yet and are ignored;
//!   the object arrives with `CompleteMultipartUpload`.
//! * `ObjectRemoved:*` (DeleteObject, DeleteObjects) becomes a delete job
//!   with delete sync, and is counted and ignored without it.
//! * Events for another bucket or outside the source prefix are ignored.
//!
//! Keys are taken as OSS writes them in the event (not URL-decoded). Every job
//! carries the event time as its order, so a worker drops an event older
//! than the last one it applied to the object.

use ferry_core::etag::ETag;
use ferry_core::events::EventContext;
use ferry_core::job::{Job, Op, SrcRef};
use serde::Deserialize;

/// Why a request body is not OSS events.
#[derive(Debug, thiserror::Error)]
pub enum OssParseError {
    /// Not JSON of the documented shape.
    #[error("not an OSS event notification ({0}); expected {{\"events\": [{{\"eventName\": …, \"oss\": {{\"bucket\": …, \"object\": …}}}}]}}")]
    Shape(String),
    /// No events at all.
    #[error("the notification holds no events")]
    Empty,
}

#[derive(Deserialize)]
struct Notification {
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "eventName")]
    name: String,
    #[serde(rename = "eventTime", default)]
    time: Option<String>,
    oss: OssEntity,
}

#[derive(Deserialize)]
struct OssEntity {
    bucket: Bucket,
    object: Object,
}

#[derive(Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Deserialize)]
struct Object {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(rename = "eTag", default)]
    etag: Option<String>,
}

/// The jobs of one notification, and how many events were left out.
#[derive(Debug, Default, PartialEq)]
pub struct OssJobs {
    /// Jobs to queue, in event order.
    pub jobs: Vec<Job>,
    /// Events ignored (other bucket or prefix, removals without delete sync,
    /// multipart progress events).
    pub ignored: usize,
    /// Of those, removals ignored because delete sync is off.
    pub removals_ignored: usize,
}

/// Parses an OSS notification into jobs.
pub fn parse(body: &[u8], ctx: &EventContext) -> Result<OssJobs, OssParseError> {
    let n: Notification = serde_json::from_slice(body).map_err(|e| OssParseError::Shape(e.to_string()))?;
    if n.events.is_empty() {
        return Err(OssParseError::Empty);
    }
    let mut out = OssJobs::default();
    for e in n.events {
        let kind = e.name.strip_prefix("oss:").unwrap_or(&e.name);
        let op = if let Some(what) = kind.strip_prefix("ObjectCreated:") {
            if matches!(what, "InitiateMultipartUpload" | "UploadPart" | "UploadPartCopy") {
                out.ignored += 1;
                continue;
            }
            Op::Copy
        } else if kind.starts_with("ObjectRemoved:") {
            if !ctx.delete {
                out.ignored += 1;
                out.removals_ignored += 1;
                continue;
            }
            Op::Delete
        } else {
            out.ignored += 1;
            continue;
        };
        let src = SrcRef {
            size: e.oss.object.size.unwrap_or(0),
            etag: match op {
                Op::Copy => e
                    .oss
                    .object
                    .etag
                    .as_deref()
                    .filter(|t| !t.is_empty())
                    .map(|t| ETag(t).quoted()),
                Op::Delete | Op::Replay | Op::List => None,
            },
            key: e.oss.object.key,
            version: None,
        };
        match ctx.job(op, &e.oss.bucket.name, src, e.time) {
            Some(job) => out.jobs.push(job),
            None => out.ignored += 1,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(delete: bool) -> EventContext {
        EventContext {
            src_bucket: "photos-hz".into(),
            src_prefix: "upload/".into(),
            dest_prefix: "oss/".into(),
            delete,
        }
    }

    #[test]
    fn every_event_of_a_notification_counts() {
        let body = include_bytes!("../tests/fixtures/oss-events.json");
        let got = parse(body, &ctx(true)).unwrap();
        let summary: Vec<(Op, &str, &str)> = got
            .jobs
            .iter()
            .map(|j| (j.op, j.src.key.as_str(), j.dest.key.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Op::Copy, "upload/a b.jpg", "oss/a b.jpg"),
                (Op::Copy, "upload/form+post.txt", "oss/form+post.txt"),
                (Op::Copy, "upload/100%.copy", "oss/100%.copy"),
                (Op::Copy, "upload/视频/大文件.mp4", "oss/视频/大文件.mp4"),
                (Op::Copy, "upload/append.log", "oss/append.log"),
                (Op::Delete, "upload/old.jpg", "oss/old.jpg"),
                (Op::Delete, "upload/batch/1.txt", "oss/batch/1.txt"),
            ]
        );
        assert_eq!(
            got.ignored, 3,
            "an upload part, another bucket, a key outside the prefix"
        );
        let first = &got.jobs[0];
        assert_eq!(first.src.size, 100);
        assert_eq!(first.src.etag.as_deref(), Some("\"9b2cf535f27731c974343645a3985328\""));
        assert_eq!(first.seq.as_deref(), Some("2026-11-22T06:45:43.000Z"));
        assert!(got.jobs.iter().all(|j| j.run == ferry_core::events::EVENTS_RUN));

        let no_delete = parse(body, &ctx(false)).unwrap();
        assert_eq!(no_delete.jobs.len(), 5);
        assert_eq!(no_delete.removals_ignored, 2);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"not json"[..],
            b"{}",
            br#"{"events": []}"#,
            br#"{"events": [{"eventName": "x"}]}"#,
        ] {
            assert!(parse(bad, &ctx(false)).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
