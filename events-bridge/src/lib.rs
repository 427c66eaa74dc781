//! ferry-events-bridge: turns Aliyun OSS object events into ferry jobs on the
//! job queue, so new objects reach the destination within seconds.
//!
//! One request is one OSS notification ([`oss`]). The bridge
//!
//! 1. authenticates it ([`Auth`]): a shared token in `x-ferry-token`, or an
//!    HMAC-SHA256 of the body in `x-ferry-signature: sha256=HEX` — anything
//!    else is 401 and queues nothing;
//! 2. parses every event of it — a body that is not OSS events is 400 with
//!    the reason and queues nothing;
//! 3. queues the jobs in batches, retrying each refused entry, and answers
//!    200 only once every job is queued; if the queue keeps refusing, 503, so
//!    the caller (Function Compute's OSS trigger) delivers it again. Jobs are
//!    idempotent, so a repeated delivery is harmless.
//!
//! [`server`] serves this over HTTP: as a Function Compute custom runtime
//! (`POST /invoke` for event invocations, `POST /initialize`, the `x-fc-*`
//! conventions; see `docs/EVENTS.md`) or on any HTTP host (`POST /`,
//! `POST /events`). [`Bridge::forward`] also takes a body from a file or
//! stdin, for replay.

pub mod oss;
pub mod server;

use std::sync::Arc;

use ferry_core::events::EventContext;
use ferry_core::queue::{JobQueue, JobQueueExt};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How callers prove who they are.
#[derive(Clone)]
pub struct Auth {
    key: Vec<u8>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth([redacted])")
    }
}

/// Constant-time equality of two byte strings.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// A shared secret (at least 16 bytes).
    pub fn new(secret: &str) -> Result<Self, String> {
        let secret = secret.trim();
        if secret.len() < 16 {
            return Err("the bridge's secret must be at least 16 characters".into());
        }
        Ok(Auth {
            key: secret.as_bytes().to_vec(),
        })
    }

    /// The HMAC-SHA256 of `body` under the secret, hex.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether a request with these header values and body is authentic.
    pub fn check(&self, token: Option<&str>, signature: Option<&str>, body: &[u8]) -> bool {
        if let Some(t) = token {
            return same_bytes(t.trim().as_bytes(), &self.key);
        }
        if let Some(sig) = signature {
            let Some(hex_sig) = sig.trim().strip_prefix("sha256=") else {
                return false;
            };
            let Ok(tag) = hex::decode(hex_sig) else { return false };
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
            mac.update(body);
            return mac.verify_slice(&tag).is_ok();
        }
        false
    }
}

/// The answer to one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Every job queued.
    Queued {
        /// Jobs queued.
        jobs: usize,
        /// Events ignored.
        ignored: usize,
    },
    /// Not authenticated: nothing queued.
    Unauthorized,
    /// Not OSS events: nothing queued.
    Malformed(String),
    /// The queue refused some jobs after retries: the caller must send again.
    Unavailable(String),
}

impl Answer {
    /// HTTP status and JSON body.
    pub fn http(&self) -> (u16, String) {
        match self {
            Answer::Queued { jobs, ignored } => {
                (200, serde_json::json!({"queued": jobs, "ignored": ignored}).to_string())
            }
            Answer::Unauthorized => (
                401,
                serde_json::json!({"error": "unauthenticated: send x-ferry-token or x-ferry-signature"}).to_string(),
            ),
            Answer::Malformed(m) => (400, serde_json::json!({"error": m}).to_string()),
            Answer::Unavailable(m) => (503, serde_json::json!({"error": m}).to_string()),
        }
    }
}

/// The bridge: where jobs go and which events matter.
#[derive(Debug, Clone)]
pub struct Bridge {
    /// The job queue.
    pub queue: Arc<dyn JobQueue>,
    /// Source bucket and prefix, destination prefix, delete sync.
    pub ctx: EventContext,
    /// Caller authentication; `None` only for trusted input (a file, stdin).
    pub auth: Option<Auth>,
    /// Accept Function Compute event invocations (`x-fc-control-path:
    /// /invoke`, which only the platform can send to a custom runtime: HTTP
    /// trigger callers cannot set `x-fc-*` headers) without credentials, so
    /// an OSS trigger works. Off by default; only for Function Compute.
    pub trust_fc_events: bool,
}

impl Bridge {
    /// Authenticates, parses and queues one notification; `fc_event` says the
    /// request is a Function Compute event invocation.
    pub async fn handle(&self, token: Option<&str>, signature: Option<&str>, fc_event: bool, body: &[u8]) -> Answer {
        let trusted = fc_event && self.trust_fc_events;
        if let (Some(auth), false) = (&self.auth, trusted) {
            if !auth.check(token, signature, body) {
                return Answer::Unauthorized;
            }
        }
        self.forward(body).await
    }

    /// Parses and queues one notification without authentication (trusted input).
    pub async fn forward(&self, body: &[u8]) -> Answer {
        let parsed = match oss::parse(body, &self.ctx) {
            Ok(p) => p,
            Err(e) => return Answer::Malformed(e.to_string()),
        };
        if parsed.removals_ignored > 0 {
            tracing::info!(
                count = parsed.removals_ignored,
                "Removal events ignored: delete sync is off (delete = true turns it on)."
            );
        }
        let bodies: Vec<String> = parsed.jobs.iter().map(|j| j.to_body()).collect();
        let jobs = bodies.len();
        if let Err(e) = self.queue.send_all(bodies, 5).await {
            return Answer::Unavailable(e);
        }
        tracing::debug!(jobs, ignored = parsed.ignored, "Notification forwarded.");
        Answer::Queued {
            jobs,
            ignored: parsed.ignored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_signatures() {
        assert!(Auth::new("short").is_err());
        let a = Auth::new("0123456789abcdef-secret").unwrap();
        let body = br#"{"events":[]}"#;
        assert!(a.check(Some("0123456789abcdef-secret"), None, body));
        assert!(!a.check(Some("0123456789abcdef-secreT"), None, body));
        let sig = format!("sha256={}", a.sign(body));
        assert!(a.check(None, Some(&sig), body));
        assert!(!a.check(None, Some(&sig), b"{}"), "the signature covers the body");
        assert!(!a.check(None, Some("sha256=zz"), body));
        assert!(!a.check(None, None, body));
        assert!(!format!("{a:?}").contains("secret"));
    }
}
