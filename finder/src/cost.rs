//! The bill before the run: the requests a plan will make, by class, and
//! what they cost under a price table.
//!
//! The counts follow ferry's own request pattern, per object by its size:
//!
//! * up to the multipart threshold: one GET and one PUT (streamed), or one
//!   CopyObject and one HEAD (server-side);
//! * above it, in `n` parts (the engine's part planner): `n` GETs and `n`
//!   UploadParts, CreateMultipartUpload and CompleteMultipartUpload, two
//!   HEADs (the source's version, the completed object) and a third for a
//!   source uploaded in parts (its part layout), and with `--tags copy` one
//!   GetObjectTagging (tags are set after the completion); server-side, `n`
//!   UploadPartCopy, a HEAD more for the source's metadata, and a second
//!   GetObjectTagging instead of the GETs;
//! * a local side makes no request on its side;
//! * listing: one request per 1,000 keys on each side, plus the samples of
//!   a ranged listing (counted as they are made).
//!
//! Retries, GetObjectTagging for tagged objects and requests of a resumed
//! job are not in the estimate. Prices are per 1,000 requests by S3's
//! classes (LIST, PUT, COPY and POST priced alike; GET and HEAD alike), per
//! GB leaving the source's cloud, and per million SQS requests and
//! DynamoDB request units for a fleet.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// Requests of a plan, by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    /// ListObjectsV2 pages.
    pub list: u64,
    /// GetObject.
    pub get: u64,
    /// HeadObject.
    pub head: u64,
    /// PutObject, UploadPart, CreateMultipartUpload, CompleteMultipartUpload.
    pub put: u64,
    /// CopyObject, UploadPartCopy.
    pub copy: u64,
    /// DeleteObject.
    pub delete: u64,
    /// Bytes read from the source by this machine (streamed copies).
    pub bytes_read: u64,
    /// Jobs queued (one SQS send, receive and delete each, in batches of 10).
    pub jobs: u64,
    /// Ledger writes (a claim and an end per object, one per part).
    pub ledger_writes: u64,
}

/// How a job's objects are copied, for the estimate.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// Objects above this go in parts.
    pub threshold: u64,
    /// Configured part size.
    pub part_size: u64,
    /// Copied inside the store.
    pub server_side: bool,
    /// The source is a local directory.
    pub local_src: bool,
    /// The destination is a local directory.
    pub local_dst: bool,
    /// Tags are copied (`--tags copy`).
    pub tags_copy: bool,
}

impl Requests {
    /// Adds the requests of copying one object of `size` bytes;
    /// `in_parts`: the source was uploaded in parts (a multipart ETag).
    pub fn copy(&mut self, m: &Model, size: u64, in_parts: bool) {
        self.jobs += 1;
        let whole = size <= m.threshold;
        let parts = match whole {
            true => 1,
            false => {
                let ps = ferry_worker::plan::part_size(size, m.part_size);
                size.div_ceil(ps.max(1))
            }
        };
        self.ledger_writes += if whole { 1 } else { 3 + parts };
        let layout = u64::from(in_parts && !whole);
        let tags = u64::from(m.tags_copy && !whole && !m.local_src && !m.local_dst);
        if m.server_side {
            match whole {
                true => (self.copy, self.head) = (self.copy + 1, self.head + 1),
                false => {
                    (self.copy, self.put) = (self.copy + parts, self.put + 2);
                    (self.head, self.get) = (self.head + 3 + layout, self.get + 2 * tags);
                }
            }
            return;
        }
        if !m.local_src {
            self.get += parts + tags;
            self.bytes_read += size;
            if !whole {
                self.head += 1 + layout;
            }
        }
        if !m.local_dst {
            self.put += parts + if whole { 0 } else { 2 };
            if !whole {
                self.head += 1;
            }
        }
    }
}

/// A price table (`--prices aws` or a TOML file of these keys).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// What the table is, for the output.
    pub name: String,
    /// Currency sign or code.
    pub currency: String,
    /// Per 1,000 LIST, PUT, COPY and POST requests.
    pub put_per_1000: f64,
    /// Per 1,000 GET and HEAD requests.
    pub get_per_1000: f64,
    /// Per GB read from the source when it is in another cloud than the
    /// destination (data transfer out).
    pub egress_per_gb: f64,
    /// Per million SQS requests (fleet).
    #[serde(default)]
    pub sqs_per_million: f64,
    /// Per million DynamoDB write request units (fleet).
    #[serde(default)]
    pub dynamodb_write_per_million: f64,
}

impl Prices {
    /// Amazon S3 Standard in us-east-1, on-demand list prices (USD): the
    /// default table. Other regions differ; give a file for them.
    pub fn aws() -> Self {
        Prices {
            name: "Amazon S3 Standard, us-east-1".into(),
            currency: "$".into(),
            put_per_1000: 0.005,
            get_per_1000: 0.0004,
            egress_per_gb: 0.09,
            sqs_per_million: 0.40,
            dynamodb_write_per_million: 0.625,
        }
    }

    /// `aws`, or a TOML file of the same fields.
    pub fn load(spec: &str) -> anyhow::Result<Self> {
        if spec == "aws" {
            return Ok(Self::aws());
        }
        let text = std::fs::read_to_string(Path::new(spec))
            .with_context(|| format!("--prices {spec}: cannot read the file (or give `aws`)"))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("--prices {spec}: {}", e.message()))
    }

    /// The cost of `r`: (requests, egress, fleet) in the table's currency.
    /// `egress`: the source is in another cloud; `fleet`: jobs go through
    /// SQS and DynamoDB.
    pub fn cost(&self, r: &Requests, egress: bool, fleet: bool) -> (f64, f64, f64) {
        let k = |n: u64| n as f64 / 1000.0;
        let requests = k(r.list + r.put + r.copy) * self.put_per_1000 + k(r.get + r.head) * self.get_per_1000;
        let out = if egress {
            r.bytes_read as f64 / 1e9 * self.egress_per_gb
        } else {
            0.0
        };
        let fleet_cost = if fleet {
            let sqs = 3.0 * r.jobs.div_ceil(10) as f64;
            sqs / 1e6 * self.sqs_per_million + r.ledger_writes as f64 / 1e6 * self.dynamodb_write_per_million
        } else {
            0.0
        };
        (requests, out, fleet_cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn model(server_side: bool) -> Model {
        Model {
            threshold: 64 * MIB,
            part_size: 16 * MIB,
            server_side,
            local_src: false,
            local_dst: false,
            tags_copy: true,
        }
    }

    #[test]
    fn objects_cost_their_requests() {
        let mut r = Requests::default();
        r.copy(&model(false), 1000, false);
        r.copy(&model(false), 100 * MIB, true);
        assert_eq!((r.get, r.put, r.head), (1 + 7 + 1, 1 + 7 + 2, 3));
        let mut s = Requests::default();
        s.copy(&model(true), 1000, false);
        s.copy(&model(true), 100 * MIB, false);
        assert_eq!((s.copy, s.put, s.head, s.get), (1 + 7, 2, 1 + 3, 2));
    }

    #[test]
    fn a_million_small_objects_cost_what_s3_charges() {
        let mut r = Requests::default();
        for _ in 0..1_000_000 {
            r.copy(&model(false), 10_000, false);
        }
        let (requests, out, _) = Prices::aws().cost(&r, true, false);
        assert!((requests - (5.0 + 0.4)).abs() < 1e-6, "{requests}");
        assert!((out - 0.9).abs() < 1e-6, "10 GB out: {out}");
    }
}
