//! Vendor presets: a vendor name and a region become an endpoint and an
//! addressing style, so `--src-vendor aliyun-oss --src-region cn-hangzhou`
//! needs no hand-typed endpoint. The table is documented in
//! `docs/COMPATIBILITY.md`.

use std::fmt;
use std::str::FromStr;

/// A known S3-compatible service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum Vendor {
    #[default]
    Aws,
    AliyunOss,
    TencentCos,
    HuaweiObs,
    KsyunKs3,
    CtyunXos,
    QiniuKodo,
    GoogleGcs,
    Minio,
    Custom,
}

/// All vendors, in the order `--help` lists them.
pub const ALL: [Vendor; 10] = [
    Vendor::Aws,
    Vendor::AliyunOss,
    Vendor::TencentCos,
    Vendor::HuaweiObs,
    Vendor::KsyunKs3,
    Vendor::CtyunXos,
    Vendor::QiniuKodo,
    Vendor::GoogleGcs,
    Vendor::Minio,
    Vendor::Custom,
];

impl Vendor {
    /// The largest object one server-side CopyObject copies: S3's 5 GiB,
    /// Aliyun OSS's 1 GiB (larger ones are copied in parts).
    pub fn max_copy_object(self) -> u64 {
        match self {
            Vendor::AliyunOss => 1 << 30,
            _ => 5 << 30,
        }
    }

    /// The storage class to send for `name` through the vendor's S3 API:
    /// the vendor's own names for its classes (Aliyun OSS's `IA`,
    /// `Archive`, `ColdArchive`; Huawei OBS's `WARM`, `COLD`) become the S3
    /// names its S3 API maps back to them. S3 names, and names the table
    /// does not know, are sent as given (a store that does not know one
    /// refuses the write with `InvalidStorageClass`).
    pub fn storage_class(self, name: &str) -> String {
        let table: &[(&str, &str)] = match self {
            Vendor::AliyunOss => &[
                ("standard", "STANDARD"),
                ("ia", "STANDARD_IA"),
                ("archive", "GLACIER"),
                ("coldarchive", "DEEP_ARCHIVE"),
            ],
            Vendor::HuaweiObs => &[("warm", "STANDARD_IA"), ("cold", "GLACIER")],
            _ => &[],
        };
        let lower = name.to_ascii_lowercase();
        table
            .iter()
            .find(|(native, _)| *native == lower)
            .map(|(_, s3)| s3.to_string())
            .unwrap_or_else(|| name.to_string())
    }

    /// The preset's name as written in flags and config files.
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Aws => "aws",
            Vendor::AliyunOss => "aliyun-oss",
            Vendor::TencentCos => "tencent-cos",
            Vendor::HuaweiObs => "huawei-obs",
            Vendor::KsyunKs3 => "ksyun-ks3",
            Vendor::CtyunXos => "ctyun-xos",
            Vendor::QiniuKodo => "qiniu-kodo",
            Vendor::GoogleGcs => "google-gcs",
            Vendor::Minio => "minio",
            Vendor::Custom => "custom",
        }
    }

    /// Endpoint for a region, `None` where the SDK resolves it (AWS, China
    /// partition included) or where the user must give one.
    pub fn endpoint(self, region: &str) -> Option<String> {
        let r = region;
        match self {
            Vendor::Aws | Vendor::Minio | Vendor::Custom | Vendor::CtyunXos => None,
            Vendor::AliyunOss => Some(format!("https://oss-{}.aliyuncs.com", r.trim_start_matches("oss-"))),
            Vendor::TencentCos => Some(format!("https://cos.{r}.myqcloud.com")),
            Vendor::HuaweiObs => Some(format!("https://obs.{r}.myhuaweicloud.com")),
            Vendor::KsyunKs3 => Some(format!("https://ks3-{}.ksyuncs.com", r.trim_start_matches("ks3-"))),
            Vendor::QiniuKodo => Some(format!("https://s3.{r}.qiniucs.com")),
            Vendor::GoogleGcs => Some("https://storage.googleapis.com".to_string()),
        }
    }

    /// The region to sign with when the user gives none.
    pub fn default_region(self) -> Option<&'static str> {
        match self {
            Vendor::GoogleGcs => Some("auto"),
            Vendor::Minio | Vendor::Custom => Some("us-east-1"),
            _ => None,
        }
    }

    /// Whether path-style addressing is the preset (virtual-hosted otherwise;
    /// Aliyun OSS refuses path-style).
    pub fn path_style(self) -> bool {
        matches!(self, Vendor::Minio | Vendor::Custom)
    }

    /// Whether `--*-endpoint` is required.
    pub fn needs_endpoint(self) -> bool {
        matches!(self, Vendor::Minio | Vendor::Custom | Vendor::CtyunXos)
    }

    /// Whether `--*-region` is required to form the endpoint.
    pub fn needs_region(self) -> bool {
        self.endpoint("x").is_some_and(|e| e.contains('x')) && self != Vendor::GoogleGcs
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Vendor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| {
            let names: Vec<_> = ALL.iter().map(|v| v.name()).collect();
            format!("unknown vendor {s:?}; expected one of {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets() {
        assert_eq!(
            Vendor::AliyunOss.endpoint("cn-hangzhou").unwrap(),
            "https://oss-cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            Vendor::AliyunOss.endpoint("oss-cn-hangzhou").unwrap(),
            "https://oss-cn-hangzhou.aliyuncs.com"
        );
        assert!(!Vendor::AliyunOss.path_style());
        assert!(Vendor::AliyunOss.needs_region());
        assert!(!Vendor::GoogleGcs.needs_region());
        assert!(Vendor::Custom.needs_endpoint());
        assert_eq!("tencent-cos".parse::<Vendor>().unwrap(), Vendor::TencentCos);
        assert_eq!(Vendor::AliyunOss.storage_class("IA"), "STANDARD_IA");
        assert_eq!(Vendor::AliyunOss.storage_class("ColdArchive"), "DEEP_ARCHIVE");
        assert_eq!(Vendor::AliyunOss.storage_class("GLACIER"), "GLACIER");
        assert_eq!(Vendor::HuaweiObs.storage_class("WARM"), "STANDARD_IA");
        assert_eq!(Vendor::Aws.storage_class("IA"), "IA", "no table: as given");
        assert!("nope".parse::<Vendor>().unwrap_err().contains("aliyun-oss"));
        for v in ALL {
            assert_eq!(v.name().parse::<Vendor>().unwrap(), v);
        }
    }
}
