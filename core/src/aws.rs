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
        if c.starts_with("HTTP 5") {
            return Some("the service failed; it is tried again");
        }
        if c.contains("AccessDenied") || c.contains("NotAuthorized") || c == "AuthorizationError" || c == "HTTP 403" {
            Some("grant this action on this resource to the role or user ferry runs as")
        } else if matches!(
            c,
            "UnrecognizedClientException" | "InvalidClientTokenId" | "InvalidAccessKeyId" | "SignatureDoesNotMatch"
        ) || c.contains("ExpiredToken")
        {
            Some("check the credentials (keys, profile, secret) and the region")
        } else if c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist") || c == "ResourceNotFoundException"
        {
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
pub fn failure<E>(e: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> SdkFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match e {
        SdkError::ServiceError(se) => match se.err().code() {
            Some(code) => SdkFailure {
                code: code.to_string(),
                message: se.err().message().map(str::to_string).unwrap_or_else(|| error_chain(e)),
            },
            // An answer the SDK could not parse: in front of a JSON-protocol
            // service, a proxy or gateway (and moto's IAM check) answers XML.
            None => {
                let status = se.raw().status().as_u16();
                let body = se.raw().body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
                match (xml_field(&body, "Code"), xml_field(&body, "Message")) {
                    (Some(code), message) => SdkFailure {
                        code: code.to_string(),
                        message: message.unwrap_or_default().to_string(),
                    },
                    (None, _) => SdkFailure {
                        code: format!("HTTP {status}"),
                        message: error_chain(e),
                    },
                }
            }
        },
        _ => SdkFailure {
            code: String::new(),
            message: error_chain(e),
        },
    }
}

/// The text of the first `<NAME>…</NAME>` element of an XML error body.
fn xml_field<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let len = body[start..].find(&format!("</{name}>"))?;
    let text = body[start..start + len].trim();
    let text = text
        .strip_prefix("<![CDATA[")
        .and_then(|t| t.strip_suffix("]]>"))
        .unwrap_or(text);
    Some(text.trim()).filter(|v| !v.is_empty())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_as_one_line_with_what_to_do() {
        let denied = SdkFailure {
            code: "AccessDenied".into(),
            message: "User: arn:aws:iam::1:user/u is not authorized to perform: sqs:ReceiveMessage".into(),
        };
        assert_eq!(
            denied.to_string(),
            "AccessDenied: User: arn:aws:iam::1:user/u is not authorized to perform: sqs:ReceiveMessage \
             (grant this action on this resource to the role or user ferry runs as)"
        );
        let unreachable = SdkFailure {
            code: String::new(),
            message: "dispatch failure: io error: Connection refused (os error 111)".into(),
        };
        assert!(unreachable
            .to_string()
            .ends_with("(check the endpoint, the network and the region)"));
        let xml = "<?xml version=\"1.0\"?><ErrorResponse><Error><Code>AccessDenied</Code>\
                   <Message>not authorized</Message></Error></ErrorResponse>";
        assert_eq!(xml_field(xml, "Code"), Some("AccessDenied"));
        assert_eq!(xml_field(xml, "Message"), Some("not authorized"));
        assert_eq!(xml_field("{}", "Code"), None);
        assert_eq!(
            xml_field("<Message><![CDATA[User: u is not authorized]]></Message>", "Message"),
            Some("User: u is not authorized")
        );
    }

    #[test]
    fn error_chains_print_each_cause_once_without_debug() {
        #[derive(Debug, thiserror::Error)]
        #[error("dispatch failure")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        ));
        assert_eq!(error_chain(&e), "dispatch failure: Connection refused");
    }
}
