//! Presigned requests: a URL (SigV4 in its query) that lets a client
//! without keys make one request — a PUT of an object or of one part of a
//! multipart upload — until it expires. With the body's MD5 given, the
//! `Content-MD5` header is signed in: the client must send it, and the
//! store refuses a body that does not match it, so the URL cannot carry
//! other bytes. Used by the upload gateway (`ferry-gateway`).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;

use super::S3Store;
use crate::store::StoreError;

/// A presigned request: where to send it and the headers it must carry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PresignedUrl {
    /// The URL, signature and expiry in its query.
    pub url: String,
    /// The method (`PUT`).
    pub method: String,
    /// Headers signed into the URL, which the request must send as they are.
    pub headers: Vec<(String, String)>,
}

/// Signs requests for clients that hold no keys.
#[async_trait]
pub trait Presign: Send + Sync + std::fmt::Debug {
    /// A PUT of `key`, bound to the body's MD5 when given, valid for `ttl`.
    async fn presign_put(&self, key: &str, md5: Option<[u8; 16]>, ttl: Duration) -> Result<PresignedUrl, StoreError>;

    /// An UploadPart of part `number` of `upload_id`, bound to the part's
    /// MD5 when given, valid for `ttl`.
    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        md5: Option<[u8; 16]>,
        ttl: Duration,
    ) -> Result<PresignedUrl, StoreError>;
}

fn config(ttl: Duration) -> Result<PresigningConfig, StoreError> {
    PresigningConfig::expires_in(ttl).map_err(|e| StoreError::Backend {
        store: "presigning".into(),
        operation: "Presign",
        code: "InvalidExpiry".into(),
        message: e.to_string(),
        retryable: false,
    })
}

fn url_of(p: aws_sdk_s3::presigning::PresignedRequest) -> PresignedUrl {
    PresignedUrl {
        url: p.uri().to_string(),
        method: p.method().to_string(),
        headers: p.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

#[async_trait]
impl Presign for S3Store {
    async fn presign_put(&self, key: &str, md5: Option<[u8; 16]>, ttl: Duration) -> Result<PresignedUrl, StoreError> {
        let req = self
            .sdk()
            .await
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_content_md5(md5.as_ref().map(super::md5_header));
        let p = req
            .presigned(config(ttl)?)
            .await
            .map_err(|e| self.err("PutObject (presign)", key, e))?;
        Ok(url_of(p))
    }

    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        md5: Option<[u8; 16]>,
        ttl: Duration,
    ) -> Result<PresignedUrl, StoreError> {
        let req = self
            .sdk()
            .await
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number as i32)
            .set_content_md5(md5.as_ref().map(super::md5_header));
        let p = req
            .presigned(config(ttl)?)
            .await
            .map_err(|e| self.err("UploadPart (presign)", key, e))?;
        Ok(url_of(p))
    }
}
