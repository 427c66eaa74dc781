//! Source and destination locations as the user writes them:
//! `s3://bucket/prefix`, `file:///abs/dir`, `/abs/dir`, `./dir` or `dir`.

use std::path::PathBuf;

/// A parsed location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory.
    Local {
        /// The directory.
        dir: PathBuf,
    },
    /// A bucket and a key prefix in an S3-compatible store.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key prefix (may be empty; kept exactly, no slash added).
        prefix: String,
    },
}

impl Location {
    /// Parses a location; the error says what a valid one looks like.
    pub fn parse(s: &str) -> Result<Self, String> {
        let hint = "expected s3://BUCKET/PREFIX, file:///DIR, /DIR or ./DIR";
        if s.is_empty() {
            return Err(format!("an empty location; {hint}"));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{s:?} has no bucket name; {hint}"));
            }
            if bucket.len() < 3
                || bucket.len() > 63
                || !bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            {
                return Err(format!(
                    "{bucket:?} is not a valid bucket name (3 to 63 letters, digits, '-', '.' or '_')"
                ));
            }
            return Ok(Location::S3 {
                bucket: bucket.into(),
                prefix: prefix.into(),
            });
        }
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!("{s:?}: a file:// URL needs an absolute path (file:///DIR)"));
            }
            return Ok(Location::Local { dir: path.into() });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            let tip = match scheme {
                "oss" | "cos" | "obs" | "ks3" | "gs" | "minio" => {
                    "; S3-compatible stores use s3:// with a vendor preset, e.g. s3://BUCKET --src-vendor aliyun-oss"
                        .to_string()
                }
                _ => String::new(),
            };
            return Err(format!("{s:?}: unsupported scheme {scheme:?}; {hint}{tip}"));
        }
        Ok(Location::Local { dir: s.into() })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local { dir } => write!(f, "{}", dir.display()),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(
            Location::parse("s3://bkt/a/b/").unwrap(),
            Location::S3 {
                bucket: "bkt".into(),
                prefix: "a/b/".into()
            }
        );
        assert_eq!(
            Location::parse("s3://bkt").unwrap(),
            Location::S3 {
                bucket: "bkt".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            Location::parse("file:///x/y").unwrap(),
            Location::Local { dir: "/x/y".into() }
        );
        assert_eq!(Location::parse("./d").unwrap(), Location::Local { dir: "./d".into() });
        assert!(Location::parse("s3:///k").unwrap_err().contains("no bucket"));
        assert!(Location::parse("oss://b/k").unwrap_err().contains("vendor"));
        assert!(Location::parse("file://rel").is_err());
        assert!(Location::parse("s3://Bad Name/").is_err());
    }
}
