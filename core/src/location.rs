//! Source and destination locations as the user writes them:
//! `s3://bucket/prefix`, `file:///abs/dir`, `/abs/dir`, `./dir` or `dir`;
//! and the vendors' own schemes, which select their preset: `oss://`
//! (Aliyun OSS, as ossutil writes it), `cos://` (Tencent COS), `obs://`
//! (Huawei OBS), `ks3://` (Kingsoft KS3) and `gs://` (Google Cloud Storage).

use std::path::PathBuf;

use crate::store::vendor::Vendor;

/// The vendors' schemes and the presets they select.
const VENDOR_SCHEMES: [(&str, Vendor); 5] = [
    ("oss", Vendor::AliyunOss),
    ("cos", Vendor::TencentCos),
    ("obs", Vendor::HuaweiObs),
    ("ks3", Vendor::KsyunKs3),
    ("gs", Vendor::GoogleGcs),
];

/// A parsed location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory.
    Local {
        /// The directory.
        dir: PathBuf,
    },
    /// An upload gateway (`ferry-gateway`) and a key prefix behind it:
    /// `gateway+https://HOST[:PORT]/PREFIX`.
    Gateway {
        /// `http(s)://HOST[:PORT]`.
        url: String,
        /// Key prefix, relative to the gateway's own (may be empty).
        prefix: String,
    },
    /// A bucket and a key prefix in an S3-compatible store.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key prefix (may be empty; kept exactly, no slash added).
        prefix: String,
        /// The preset a vendor's scheme (`oss://`…) selects; `None` for `s3://`.
        vendor: Option<Vendor>,
    },
}

impl Location {
    /// Parses a location; the error says what a valid one looks like.
    pub fn parse(s: &str) -> Result<Self, String> {
        let hint = "expected s3://BUCKET/PREFIX (or oss://, cos://, obs://, ks3://, gs://), gateway+https://HOST/PREFIX, file:///DIR, /DIR or ./DIR";
        if s.is_empty() {
            return Err(format!("an empty location; {hint}"));
        }
        if let Some(meant) = probably_meant(s) {
            return Err(format!(
                "{s:?} looks like a URL but is not one: did you mean {meant:?}? \
                 (for a local directory with that name, write ./{s})"
            ));
        }
        let bucket_url = s.split_once("://").and_then(|(scheme, rest)| match scheme {
            "s3" => Some((rest, None)),
            _ => VENDOR_SCHEMES
                .iter()
                .find(|(name, _)| *name == scheme)
                .map(|(_, v)| (rest, Some(*v))),
        });
        if let Some((rest, vendor)) = bucket_url {
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
                vendor,
            });
        }
        if let Some(rest) = s.strip_prefix("gateway+") {
            return parse_gateway(s, rest);
        }
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!("{s:?}: a file:// URL needs an absolute path (file:///DIR)"));
            }
            return Ok(Location::Local { dir: path.into() });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            let tip = match scheme {
                "minio" => "; MinIO and other S3-compatible stores use s3:// with an endpoint, e.g. s3://BUCKET --src-endpoint https://HOST:9000",
                _ => "",
            };
            return Err(format!("{s:?}: unsupported scheme {scheme:?}; {hint}{tip}"));
        }
        Ok(Location::Local { dir: s.into() })
    }
}

/// `gateway+http(s)://HOST[:PORT]/PREFIX` (`rest`: after `gateway+`).
fn parse_gateway(s: &str, rest: &str) -> Result<Location, String> {
    let Some((scheme, after)) = rest.split_once("://").filter(|(sc, _)| *sc == "https" || *sc == "http") else {
        return Err(format!(
            "{s:?}: a gateway is written gateway+https://HOST[:PORT]/PREFIX (or gateway+http:// on a trusted network)"
        ));
    };
    let (host, prefix) = after.split_once('/').unwrap_or((after, ""));
    if host.is_empty() || host.contains(['?', '#', '@']) {
        return Err(format!(
            "{s:?}: the gateway URL has no host (gateway+https://HOST[:PORT]/PREFIX)"
        ));
    }
    Ok(Location::Gateway {
        url: format!("{scheme}://{host}"),
        prefix: prefix.into(),
    })
}

/// Schemes a user may mistype; a path starting with one of them and a colon
/// is taken for a mistyped URL, not a directory.
const SCHEMES: &[&str] = &["s3", "file", "oss", "cos", "obs", "ks3", "gs", "minio", "http", "https"];

/// The URL a malformed one was probably meant to be: `s3:/b/x` and `s3:b`
/// → `s3://b/x`, `S3://b` → `s3://b`, `file:/d` → `file:///d`.
fn probably_meant(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once(':')?;
    let lower = scheme.to_ascii_lowercase();
    if !SCHEMES.contains(&lower.as_str()) {
        return None;
    }
    if scheme == lower && rest.starts_with("//") {
        return None; // Well formed: judged by the scheme's own rules.
    }
    let tail = rest.trim_start_matches('/');
    Some(if lower == "file" {
        format!("file:///{tail}")
    } else {
        format!("{lower}://{tail}")
    })
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local { dir } => write!(f, "{}", dir.display()),
            Location::Gateway { url, prefix } => write!(f, "gateway+{url}/{prefix}"),
            Location::S3 { bucket, prefix, vendor } => {
                let scheme = VENDOR_SCHEMES
                    .iter()
                    .find(|(_, v)| Some(*v) == *vendor)
                    .map_or("s3", |(name, _)| name);
                write!(f, "{scheme}://{bucket}/{prefix}")
            }
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
                prefix: "a/b/".into(),
                vendor: None,
            }
        );
        assert_eq!(
            Location::parse("s3://bkt").unwrap(),
            Location::S3 {
                bucket: "bkt".into(),
                prefix: "".into(),
                vendor: None,
            }
        );
        assert_eq!(
            Location::parse("file:///x/y").unwrap(),
            Location::Local { dir: "/x/y".into() }
        );
        assert_eq!(Location::parse("./d").unwrap(), Location::Local { dir: "./d".into() });
        assert!(Location::parse("s3:///k").unwrap_err().contains("no bucket"));
        for (url, vendor) in [
            ("oss://bkt/k/", Vendor::AliyunOss),
            ("cos://bkt-1250000000/k/", Vendor::TencentCos),
            ("obs://bkt/k/", Vendor::HuaweiObs),
            ("ks3://bkt/k/", Vendor::KsyunKs3),
            ("gs://bkt/k/", Vendor::GoogleGcs),
        ] {
            let l = Location::parse(url).unwrap();
            assert!(
                matches!(&l, Location::S3 { vendor: Some(v), prefix, .. } if *v == vendor && prefix == "k/"),
                "{url}"
            );
            assert_eq!(l.to_string(), url, "shown as written");
        }
        assert!(Location::parse("oss://b/k").unwrap_err().contains("bucket name"));
        assert!(Location::parse("minio://bkt/k").unwrap_err().contains("s3://"));
        assert!(Location::parse("file://rel").is_err());
        assert!(Location::parse("s3://Bad Name/").is_err());
    }

    #[test]
    fn parses_gateways() {
        let l = Location::parse("gateway+https://up.example.com:8443/dev-1/photos/").unwrap();
        assert_eq!(
            l,
            Location::Gateway {
                url: "https://up.example.com:8443".into(),
                prefix: "dev-1/photos/".into(),
            }
        );
        assert_eq!(l.to_string(), "gateway+https://up.example.com:8443/dev-1/photos/");
        assert_eq!(
            Location::parse("gateway+http://127.0.0.1:9000").unwrap(),
            Location::Gateway {
                url: "http://127.0.0.1:9000".into(),
                prefix: "".into(),
            }
        );
        assert!(Location::parse("gateway+ftp://h/p")
            .unwrap_err()
            .contains("gateway+https://HOST"));
        assert!(Location::parse("gateway+https:///p").unwrap_err().contains("no host"));
    }

    #[test]
    fn malformed_urls_say_what_was_meant() {
        for (typed, meant) in [
            ("s3:/bucket/x", "s3://bucket/x"),
            ("s3:bucket", "s3://bucket"),
            ("S3://bucket/p", "s3://bucket/p"),
            ("file:/data", "file:///data"),
            ("oss:bkt", "oss://bkt"),
        ] {
            let e = Location::parse(typed).unwrap_err();
            assert!(e.contains(&format!("did you mean {meant:?}")), "{typed}: {e}");
            assert!(e.contains(&format!("./{typed}")), "{typed}: {e}");
        }
        // Directories whose names only contain a colon stay directories.
        assert_eq!(
            Location::parse("./s3:bucket").unwrap(),
            Location::Local {
                dir: "./s3:bucket".into()
            }
        );
        assert_eq!(
            Location::parse("backup:2026").unwrap(),
            Location::Local {
                dir: "backup:2026".into()
            }
        );
    }
}
