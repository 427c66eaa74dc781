//! The calls a syncing client needs besides uploads: the objects it may
//! see (`GET /v1/objects`, to diff a tree against), and a URL for one part
//! bound to an MD5 it learns only when it reads the part
//! (`POST /v1/uploads/{id}/parts/{n}`).

use ferry_core::etag::ETag;
use ferry_core::plan;
use futures::StreamExt;
use serde_json::json;

use crate::{ended, parse_md5, sent_whole, Answer, Gateway, GatewayError, PartRequest, PartUrl};

/// Objects one listing call answers at most.
const PAGE: usize = 1000;

impl Gateway {
    /// `GET /v1/objects?prefix=P&after=A`: up to 1,000 objects under `P`
    /// (relative to the gateway's prefix, inside the token's) after `A`,
    /// in key order, and the key to list after next when there are more.
    pub async fn objects(&self, authorization: Option<&str>, prefix: &str, after: Option<&str>) -> Answer {
        let token = match self.authorize(authorization) {
            Ok(t) => t,
            Err(a) => return a,
        };
        if !prefix.starts_with(&token.prefix) {
            let why = format!(
                "prefix {prefix:?} is outside token {}'s prefix {:?}",
                token.id, token.prefix
            );
            return Answer::refuse(403, why);
        }
        let base = &self.cfg.prefix;
        let after = after.map(|a| format!("{base}{a}"));
        let mut listed = self
            .store
            .list(&format!("{base}{prefix}"), after.as_deref())
            .take(PAGE + 1);
        let mut objects = Vec::new();
        while let Some(o) = listed.next().await {
            let o = match o {
                Ok(o) => o,
                Err(e) => return GatewayError::from(e).into(),
            };
            objects.push(json!({
                "key": o.key.strip_prefix(base.as_str()).unwrap_or(&o.key),
                "size": o.size,
                "etag": o.etag,
                "last_modified": o.last_modified,
            }));
        }
        let next = (objects.len() > PAGE).then(|| {
            objects.truncate(PAGE);
            objects.last().map(|o| o["key"].clone())
        });
        Answer {
            status: 200,
            body: json!({"objects": objects, "next": next.flatten()}),
        }
    }

    /// `POST /v1/uploads/{id}/parts/{n}` `{"md5"}`: a URL for part `n`
    /// bound to that MD5 (which must be the declared one, if declared).
    pub async fn part_url(&self, authorization: Option<&str>, id: &str, number: u32, req: PartRequest) -> Answer {
        let (key, _, rec) = match self.upload_of(authorization, id).await {
            Ok(u) => u,
            Err(a) => return a,
        };
        if let Some(a) = ended(&rec) {
            return a;
        }
        let Some(md5) = parse_md5(&req.md5) else {
            return Answer::refuse(400, "md5: 32 hex digits or 24 base64 characters");
        };
        let Some(up) = rec.upload.as_ref().filter(|u| !sent_whole(u)) else {
            return Answer::refuse(409, "an object sent whole has one URL: GET the upload");
        };
        let Some((_, range)) = plan::parts(up.src_size, up.part_size).find(|(n, _)| *n == number) else {
            return Answer::refuse(400, format!("part {number} is not in the upload's plan"));
        };
        let declared = rec.parts.iter().find(|p| p.number == number);
        if declared.is_some_and(|d| !ETag(&d.etag).same(&ETag::of_md5(&md5))) {
            return Answer::refuse(409, format!("part {number}'s MD5 is not the one declared"));
        }
        match self
            .signer
            .presign_part(&key, &up.upload_id, number, Some(md5), self.cfg.url_ttl)
            .await
        {
            Ok(request) => Answer {
                status: 200,
                body: json!(PartUrl {
                    number,
                    size: range.end - range.start,
                    request,
                }),
            },
            Err(e) => GatewayError::from(e).into(),
        }
    }
}
