//! Bearer tokens and their limits.
//!
//! A token is `fgw_<ID>_<SECRET>`. The tokens file (JSON) keeps, per
//! token id, the SHA-256 of the whole token — never the token itself — and
//! its limits: the key prefix its uploads must start with, how many
//! uploads it may create, how many bytes in all, and when it expires.
//! `ferry-gateway token issue` writes an entry and prints the token once.
//!
//! ```json
//! {"tokens": [{"id": "field-7", "sha256": "…", "prefix": "devices/7/",
//!              "max_uploads": 1000, "max_bytes": 107374182400,
//!              "expires_at": 1798761600000}]}
//! ```
//!
//! Usage is counted in the state store as the counters of the run
//! `gateway:<ID>` (uploads in `enqueued`, bytes in `planned_bytes`), so
//! every gateway process of a deployment shares it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// One token's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The token's id (letters, digits, `-`).
    pub id: String,
    /// SHA-256 of the whole token, hex.
    pub sha256: String,
    /// Keys its uploads may create start with this (relative to the gateway's prefix).
    #[serde(default)]
    pub prefix: String,
    /// Uploads it may create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uploads: Option<u64>,
    /// Bytes its uploads may declare in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Expiry, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// The tokens a gateway accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Every token's entry.
    pub tokens: Vec<Token>,
}

/// Why a tokens file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// Reading or writing the file failed.
    #[error("tokens file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not the tokens JSON.
    #[error("tokens file {path}: not a ferry tokens file: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A token id that cannot be used.
    #[error("token id {0:?}: use letters, digits and '-' (1 to 64 of them)")]
    BadId(String),
    /// An id issued already.
    #[error("token id {0:?} is in the tokens file already; pick another id")]
    Taken(String),
}

fn hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Tokens {
    /// Reads a tokens file (JSON).
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| TokensError::Malformed {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses the tokens JSON.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The entry of a presented token, if it is one of these.
    pub fn find(&self, presented: &str) -> Option<&Token> {
        let id = presented.strip_prefix("fgw_")?.split('_').next()?;
        let want = hash(presented);
        self.tokens.iter().find(|t| t.id == id && t.sha256 == want)
    }

    /// Adds a token for `entry` (its `sha256` is set here) and answers the
    /// token, which is shown once and kept nowhere.
    pub fn issue(&mut self, mut entry: Token) -> Result<String, TokensError> {
        if !valid_id(&entry.id) {
            return Err(TokensError::BadId(entry.id));
        }
        if self.tokens.iter().any(|t| t.id == entry.id) {
            return Err(TokensError::Taken(entry.id));
        }
        let secret: [u8; 24] = rand::random();
        let token = format!("fgw_{}_{}", entry.id, hex::encode(secret));
        entry.sha256 = hash(&token);
        self.tokens.push(entry);
        Ok(token)
    }

    /// Writes the file (readable by its owner only).
    pub fn save(&self, path: &Path) -> Result<(), TokensError> {
        let io = |source| TokensError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_string_pretty(self).expect("tokens serialize");
        std::fs::write(path, text).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_is_found_and_others_are_not() {
        let mut t = Tokens::default();
        let entry = Token {
            id: "dev-1".into(),
            sha256: String::new(),
            prefix: "d/1/".into(),
            max_uploads: Some(3),
            max_bytes: None,
            expires_at: None,
        };
        let token = t.issue(entry.clone()).unwrap();
        assert!(token.starts_with("fgw_dev-1_"));
        assert_eq!(t.find(&token).map(|e| e.prefix.as_str()), Some("d/1/"));
        assert!(t.find(&format!("{token}x")).is_none(), "another secret");
        assert!(t.find("fgw_dev-1_00").is_none());
        assert!(t.find("Bearer").is_none());
        assert!(matches!(t.issue(entry.clone()), Err(TokensError::Taken(_))));
        let bad = Token {
            id: "a b".into(),
            ..entry
        };
        assert!(matches!(t.issue(bad), Err(TokensError::BadId(_))));
        let again = Tokens::parse(&serde_json::to_string(&t).unwrap()).unwrap();
        assert!(again.find(&token).is_some(), "the file keeps the hash");
        assert!(!serde_json::to_string(&t).unwrap().contains(&token), "never the token");
    }
}
