//! What the AWS service backends (SQS, DynamoDB, Secrets Manager) share: how
//! their SDK configuration is loaded and how an SDK error is described.
//!
//! The configuration comes from the SDK's default chain: credentials from the
//! environment, shared files, web identity, ECS or EC2; the region from
//! `AWS_REGION` or the profile; endpoints from `AWS_ENDPOINT_URL` and the
//! per-service `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL_DYNAMODB` and
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`, so a fleet runs unchanged against local
//! servers. The SDK's own retries (standard mode, 3 tries) stay on for these
//! small control-plane calls.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Loads the shared SDK configuration, with `region` when given (else the
/// chain's region, else `us-east-1`).
pub async fn sdk_config(region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    let cfg = loader.load().await;
    if cfg.region().is_none() {
        return cfg.into_builder().region(Region::new("us-east-1")).build();
    }
    cfg
}

/// An SDK error reduced to what callers need: the service's error code (empty
/// when the request never got an answer) and a message.
#[derive(Debug, Clone)]
pub struct SdkFailure {
    /// The service's error code, e.g. `ConditionalCheckFailedException`.
    pub code: String,
    /// A readable description.
    pub message: String,
}

impl SdkFailure {
    /// What the user can do about it, when the code says.
    pub fn hint(&self) -> Option<&'static str> {
        let c = self.code.as_str();
        if c.is_empty() {
            return Some("check the endpoint, the network and the region");
        }
        if c.contains("AccessDenied") || c.contains("NotAuthorized") || c == "AuthorizationError" {
            Some("grant this action on this resource to the role or user ferry runs as")
        } else if matches!(
            c,
            "UnrecognizedClientException" | "InvalidClientTokenId" | "InvalidAccessKeyId" | "SignatureDoesNotMatch"
        ) || c.contains("ExpiredToken")
        {
            Some("check the credentials (keys, profile, secret) and the region")
        } else if c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist") || c == "ResourceNotFoundException" {
            Some("check the name, the account and the region")
        } else {
            None
        }
    }
}

impl std::fmt::Display for SdkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.code.is_empty() {
            f.write_str(&self.message)?;
        } else {
            write!(f, "{}: {}", self.code, self.message)?;
        }
        match self.hint() {
            Some(h) => write!(f, " ({h})"),
            None => Ok(()),
        }
    }
}

/// Describes an SDK error.
pub fn failure<E, R>(e: &SdkError<E, R>) -> SdkFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + 'static,
{
    match e {
        SdkError::ServiceError(se) => SdkFailure {
            code: se.err().code().unwrap_or("").to_string(),
            message: se
                .err()
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| error_chain(e)),
        },
        _ => SdkFailure {
            code: String::new(),
            message: error_chain(e),
        },
    }
}

/// An error and its causes on one line, each cause's `Display` once:
/// `dispatch failure: io error: tcp connect error: Connection refused (os error 111)`.
/// Never a `Debug` dump (the SDK's own `DisplayErrorContext` prints the
/// innermost cause with `{:?}`). A cause whose text its parent already
/// contains is left out.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}
