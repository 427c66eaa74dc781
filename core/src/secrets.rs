//! Store credentials kept in AWS Secrets Manager.
//!
//! A secret holds JSON `{"access_key_id": "...", "secret_access_key": "...",
//! "session_token": "..."}` (the token is optional) — the keys of an Aliyun,
//! Tencent or other cloud's account, or of another AWS account. The value is
//! read on first use, kept for [`SecretCredentials::TTL`], read again after
//! that (a rotated secret is picked up) and at once after the store answers
//! "access denied" ([`SecretCredentials::invalidate`]). Concurrent requests
//! share one read. Neither the value nor a part of it is ever logged or put in
//! an error: parse errors name the secret and the expected shape only.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::{self, error::CredentialsError, ProvideCredentials};
use aws_credential_types::Credentials;
use serde::Deserialize;
use tokio::sync::{Mutex, OnceCell};

use crate::aws::{failure, sdk_config};

/// Credentials read from a Secrets Manager secret.
#[derive(Clone)]
pub struct SecretCredentials {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    client: OnceCell<aws_sdk_secretsmanager::Client>,
    cache: Mutex<Option<(Credentials, Instant)>>,
}

impl std::fmt::Debug for SecretCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretCredentials({:?})", self.inner.name)
    }
}

#[derive(Deserialize)]
struct SecretValue {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

/// The string value of the Secrets Manager secret `name` (a name or an
/// ARN, whose region is used), read with the AWS default chain.
pub async fn secret_string(name: &str) -> Result<String, String> {
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config(arn_region(name)).await);
    let out = client
        .get_secret_value()
        .secret_id(name)
        .send()
        .await
        .map_err(|e| format!("reading the secret {name:?} from Secrets Manager: {}", failure(&e)))?;
    out.secret_string()
        .map(str::to_string)
        .ok_or_else(|| format!("secret {name:?} has no string value"))
}

/// The region in a secret ARN (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME`).
fn arn_region(name: &str) -> Option<&str> {
    let mut parts = name.split(':');
    (parts.next() == Some("arn")).then_some(())?;
    parts.nth(2).filter(|r| !r.is_empty())
}

/// Parses a secret's value; the error never contains any of it.
pub fn parse_secret(name: &str, value: &str) -> Result<(String, String, Option<String>), String> {
    let shape = r#"{"access_key_id": "...", "secret_access_key": "..."} (and optionally "session_token")"#;
    let v: SecretValue = serde_json::from_str(value)
        .map_err(|_| format!("secret {name:?}: the value is not JSON of the form {shape}"))?;
    if v.access_key_id.is_empty() || v.secret_access_key.is_empty() {
        return Err(format!(
            "secret {name:?}: access_key_id and secret_access_key must not be empty"
        ));
    }
    Ok((
        v.access_key_id,
        v.secret_access_key,
        v.session_token.filter(|t| !t.is_empty()),
    ))
}

impl SecretCredentials {
    /// How long a read value is used before it is read again.
    pub const TTL: Duration = Duration::from_secs(15 * 60);

    /// Credentials from the secret `name` (a name or an ARN). Secrets Manager
    /// is reached with the default AWS chain, in the ARN's region or the
    /// chain's region.
    pub fn new(name: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.to_string(),
                client: OnceCell::new(),
                cache: Mutex::new(None),
            }),
        }
    }

    /// The secret's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Forgets the cached value, so the next request reads the secret again.
    pub fn invalidate(&self) {
        if let Ok(mut c) = self.inner.cache.try_lock() {
            *c = None;
        } else {
            let inner = self.inner.clone();
            tokio::spawn(async move { *inner.cache.lock().await = None });
        }
    }

    async fn load(&self) -> Result<Credentials, CredentialsError> {
        let mut cache = self.inner.cache.lock().await;
        if let Some((c, at)) = cache.as_ref() {
            if at.elapsed() < Self::TTL {
                return Ok(c.clone());
            }
        }
        let name = &self.inner.name;
        let client = self
            .inner
            .client
            .get_or_init(|| async { aws_sdk_secretsmanager::Client::new(&sdk_config(arn_region(name)).await) })
            .await;
        let out = client.get_secret_value().secret_id(name).send().await.map_err(|e| {
            CredentialsError::provider_error(format!(
                "reading the secret {name:?} from Secrets Manager: {}",
                failure(&e)
            ))
        })?;
        let value = out
            .secret_string()
            .ok_or_else(|| CredentialsError::invalid_configuration(format!("secret {name:?} has no string value")))?;
        let (ak, sk, token) = parse_secret(name, value).map_err(CredentialsError::invalid_configuration)?;
        let creds = Credentials::new(
            ak,
            sk,
            token,
            Some(SystemTime::now() + Self::TTL),
            "ferry-secrets-manager",
        );
        *cache = Some((creds.clone(), Instant::now()));
        tracing::debug!(secret = %name, "Read store credentials from Secrets Manager.");
        Ok(creds)
    }
}

impl ProvideCredentials for SecretCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.load())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_never_echoes_the_value() {
        let (ak, sk, t) = parse_secret("s", r#"{"access_key_id":"AK","secret_access_key":"SK"}"#).unwrap();
        assert_eq!((ak.as_str(), sk.as_str(), t), ("AK", "SK", None));
        for bad in [
            r#"{"access_key_id":"AKSECRETVALUE"}"#,
            "SECRETVALUE",
            r#"{"access_key_id":1,"secret_access_key":"SECRETVALUE"}"#,
            r#"{"access_key_id":"","secret_access_key":"SECRETVALUE"}"#,
        ] {
            let e = parse_secret("my-secret", bad).unwrap_err();
            assert!(!e.contains("SECRETVALUE"), "{e}");
            assert!(e.contains("my-secret"), "{e}");
        }
        assert_eq!(
            arn_region("arn:aws-cn:secretsmanager:cn-north-1:123:secret:x"),
            Some("cn-north-1")
        );
        assert_eq!(arn_region("plain-name"), None);
    }
}
