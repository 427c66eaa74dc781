//! Following an AWS bucket to its region.
//!
//! A user whose default region is `us-east-1` may name a bucket in
//! `eu-west-1` or `cn-northwest-1`. S3 answers requests signed for the wrong
//! region with 301 PermanentRedirect or 400 AuthorizationHeaderMalformed,
//! and names the bucket's region in the `x-amz-bucket-region` header (and in
//! the body's `<Region>`). When the user gave no region and no endpoint (an
//! AWS bucket), an [`S3Store`](super::S3Store) asks once, before its first
//! call, with a HeadBucket: every answer to it, 200, 301 or 403, carries the
//! header. Should that ask fail (a network error), a redirect answer to any
//! later call is followed the same way. Following means rebuilding the client
//! for that region (endpoint and signing both follow it, China partition
//! included); the per-store cache keeps it for the life of the process.

use std::sync::{Arc, RwLock};

use aws_sdk_s3::config::Region;
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use tokio::sync::OnceCell;

/// The header S3 names a bucket's region in.
pub(super) const REGION_HEADER: &str = "x-amz-bucket-region";

/// An S3 client that follows its bucket to the bucket's region.
#[derive(Debug, Clone)]
pub(super) struct RegionFollower {
    client: Arc<RwLock<Client>>,
    bucket: String,
    /// Off when the user gave a region or an endpoint: theirs wins.
    enabled: bool,
    asked: Arc<OnceCell<()>>,
}

impl RegionFollower {
    pub(super) fn new(client: Client, bucket: &str, enabled: bool) -> Self {
        Self {
            client: Arc::new(RwLock::new(client)),
            bucket: bucket.to_string(),
            enabled,
            asked: Arc::default(),
        }
    }

    /// The client as it is now, without asking.
    pub(super) fn current(&self) -> Client {
        self.client.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The client for the bucket's region (asked once, on first use).
    pub(super) async fn client(&self) -> Client {
        if self.enabled {
            self.asked
                .get_or_init(|| async {
                    let answer = self.current().head_bucket().bucket(&self.bucket).send().await;
                    let region = match &answer {
                        Ok(out) => out.bucket_region().map(str::to_string),
                        Err(aws_sdk_s3::error::SdkError::ServiceError(se)) => region_of(se.raw()),
                        Err(_) => None,
                    };
                    if let Some(r) = region {
                        self.follow(&r);
                    }
                })
                .await;
        }
        self.current()
    }

    /// Follows an answer that names another region for the bucket; returns
    /// the region when the client now goes there (the call is worth trying
    /// again), `None` when following is off or the answer names none.
    pub(super) fn follow_answer(&self, raw: &HttpResponse) -> Option<String> {
        let region = region_of(raw)?;
        (self.enabled && self.follow(&region)).then_some(region)
    }

    /// Rebuilds the client for `region` unless it is there already.
    fn follow(&self, region: &str) -> bool {
        let mut c = self.client.write().unwrap_or_else(|e| e.into_inner());
        if c.config().region().map(|r| r.as_ref()) == Some(region) {
            return false;
        }
        let conf = c.config().to_builder().region(Region::new(region.to_string())).build();
        *c = Client::from_conf(conf);
        tracing::info!(bucket = %self.bucket, region, "The bucket is in another region; requests now go there.");
        true
    }
}

/// The region an answer names for its bucket: the header, else the body's `<Region>`.
pub(super) fn region_of(raw: &HttpResponse) -> Option<String> {
    if let Some(r) = raw.headers().get(REGION_HEADER).filter(|r| !r.is_empty()) {
        return Some(r.to_string());
    }
    let body = std::str::from_utf8(raw.body().bytes()?).ok()?;
    let start = body.find("<Region>")? + "<Region>".len();
    let len = body[start..].find("</Region>")?;
    Some(body[start..start + len].trim().to_string()).filter(|r| !r.is_empty())
}
