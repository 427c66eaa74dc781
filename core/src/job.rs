//! The job message (version 1), the unit of work on every queue.
//!
//! ```json
//! {"v":1,"op":"copy","run":"2026-11-21T10:00:00Z#a1b2",
//!  "src":{"key":"photos/a b+c.jpg","size":5242880,"etag":"\"9b2c…\"","version":null},
//!  "dest":{"key":"backup/photos/a b+c.jpg"}}
//! ```
//!
//! Buckets and endpoints come from the job configuration that finder and
//! workers share, never from the message. Messages are built with serde only.

use serde::{Deserialize, Serialize};

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Copy the source object to the destination key.
    Copy,
    /// Delete the destination key.
    Delete,
    /// Replay the source key's version history to the destination, oldest
    /// first, each version not replayed yet (`--versions all`).
    Replay,
    /// List a key range of the source and the destination, diff it and
    /// queue its jobs (fleet listing, `--list-jobs`): `src.key` and
    /// `dest.key` are the prefixes listed, `range` the keys.
    List,
}

/// The source object as discovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrcRef {
    /// Source key.
    pub key: String,
    /// Size in bytes at discovery.
    pub size: u64,
    /// ETag at discovery; reads are pinned to it.
    pub etag: Option<String>,
    /// Version id, if the source is versioned.
    #[serde(default)]
    pub version: Option<String>,
}

/// The destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestRef {
    /// Destination key.
    pub key: String,
}

/// A range of parts of a giant object's multipart upload, queued as a job
/// of its own so any worker of the fleet copies it (see the worker's
/// `engine::giant`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// The upload the parts go to.
    pub upload_id: String,
    /// The plan's part size.
    pub part_size: u64,
    /// First part number (1-based).
    pub first: u32,
    /// Last part number (inclusive).
    pub last: u32,
    /// Parts of the whole upload.
    pub parts: u32,
    /// Parts per span (the last may hold fewer): span `i` (from 0) holds
    /// parts `i·per + 1 ..= min((i+1)·per, parts)`.
    pub per: u32,
}

/// A job message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Format version, 1.
    pub v: u32,
    /// Operation.
    pub op: Op,
    /// Run id of the finder run that queued it.
    pub run: String,
    /// Source.
    pub src: SrcRef,
    /// Destination.
    pub dest: DestRef,
    /// Order of the event this job comes from (S3 `sequencer`, or the OSS
    /// event time), when it comes from one: an older event than the last one
    /// applied to the object is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<String>,
    /// For a range job: the parts of the giant object's upload it copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<Span>,
    /// How often the object was planned again because its source changed
    /// while it was copied in spans.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replans: u32,
    /// For a replay: where the history starts, ms since the epoch (the
    /// version current then, and every later one); none for all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// For a list job: the keys it lists and how it selects and compares them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<ListSpec>,
}

/// A list job's range and the finder's listing settings, which the worker
/// that lists the range uses instead of its own: what a run selects is
/// decided once, by the finder (relative ages like `7d` included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSpec {
    /// The source keys listed (absolute keys; the destination's range is
    /// the same relative to its prefix).
    #[serde(flatten)]
    pub range: crate::ranges::KeyRange,
    /// Source keys diffed before the rest of the range is split off.
    pub keys: u64,
    /// How pairs are compared.
    pub compare: crate::diff::CompareMode,
    /// Whether destination-only keys are deleted.
    #[serde(default)]
    pub delete: bool,
    /// Include and exclude globs, and the modification window.
    #[serde(default)]
    pub filter: crate::filter::FilterSpec,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why a message is not a job.
#[derive(Debug, thiserror::Error)]
pub enum JobParseError {
    /// Not JSON of the job shape.
    #[error("not a ferry job message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A version this build does not know.
    #[error("job message version {0} is not supported (this build reads version 1)")]
    Version(u32),
}

impl Job {
    /// A delete job for a destination key.
    pub fn delete(run: &str, dest_key: String) -> Self {
        Job {
            v: 1,
            op: Op::Delete,
            run: run.into(),
            src: SrcRef {
                key: dest_key.clone(),
                size: 0,
                etag: None,
                version: None,
            },
            dest: DestRef { key: dest_key },
            seq: None,
            span: None,
            replans: 0,
            since: None,
            list: None,
        }
    }

    /// A copy job.
    pub fn copy(run: &str, src: SrcRef, dest_key: String) -> Self {
        Job {
            v: 1,
            op: Op::Copy,
            run: run.into(),
            src,
            dest: DestRef { key: dest_key },
            seq: None,
            span: None,
            replans: 0,
            since: None,
            list: None,
        }
    }

    /// A replay of the source key's history (`src` names its newest
    /// version) from `since` on.
    pub fn replay(run: &str, src: SrcRef, dest_key: String, since: Option<i64>) -> Self {
        Job {
            op: Op::Replay,
            since,
            ..Job::copy(run, src, dest_key)
        }
    }

    /// A list job: the keys of `range` under `src_prefix`, diffed against
    /// `dest_prefix`.
    pub fn list(run: &str, src_prefix: &str, dest_prefix: &str, spec: ListSpec) -> Self {
        let src = SrcRef {
            key: src_prefix.to_string(),
            size: 0,
            etag: None,
            version: None,
        };
        Job {
            op: Op::List,
            list: Some(spec),
            ..Job::copy(run, src, dest_prefix.to_string())
        }
    }

    /// The JSON body.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a job always serializes")
    }

    /// Parses a body.
    pub fn parse(body: &str) -> Result<Self, JobParseError> {
        let job: Job = serde_json::from_str(body)?;
        if job.v != 1 {
            return Err(JobParseError::Version(job.v));
        }
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_design_example() {
        let body = r#"{"v":1,"op":"copy","run":"2026-11-21T10:00:00Z#a1b2",
 "src":{"key":"photos/2024/a b+c.jpg","size":5242880,"etag":"\"9b2cf535f27731c974343645a3985328\"","version":null},
 "dest":{"key":"backup/photos/2024/a b+c.jpg"}}"#;
        let job = Job::parse(body).unwrap();
        assert_eq!(job.src.key, "photos/2024/a b+c.jpg");
        assert_eq!(job.op, Op::Copy);
        assert_eq!(Job::parse(&job.to_body()).unwrap(), job);
        assert!(matches!(
            Job::parse(r#"{"v":2,"op":"copy","run":"r","src":{"key":"k","size":1,"etag":null},"dest":{"key":"k"}}"#),
            Err(JobParseError::Version(2))
        ));
        assert!(Job::parse("{}").is_err());
    }
}
