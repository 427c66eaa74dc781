//! The gateway's request bodies, shared by `ferry-gateway` (which reads
//! them) and [`GatewayStore`](super::GatewayStore) (which sends them).

use serde::{Deserialize, Serialize};

/// `POST /v1/uploads`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUpload {
    /// Object key, relative to the gateway's prefix.
    pub key: String,
    /// Object size in bytes.
    pub size: u64,
    /// Wanted part size (at least 5 MiB; the planner may grow it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<u64>,
    /// Every part's MD5 (hex or base64), in order: one for an object sent whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5s: Option<Vec<String>>,
    /// Send the object in one PUT whatever its size (up to 5 GiB): one URL,
    /// no parts to resume. Objects under 5 MiB always are.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub whole: bool,
}

/// `POST /v1/uploads/{id}/parts/{n}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartRequest {
    /// The part's MD5 (hex or base64).
    pub md5: String,
}
