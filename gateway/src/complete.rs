//! `POST /v1/uploads/{id}/complete`: the parts checked against the plan,
//! the upload completed, the object read back and verified. A bucket that
//! encrypts with KMS or a customer key answers opaque ETags (seen in the
//! store's answers, never assumed): its objects are proven by the signed
//! Content-MD5 of every part the store accepted, and by their size.

use ferry_core::etag::ETag;
use ferry_core::plan;
use ferry_core::state::{ObjectRecord, Outcome, RecordKey, UploadRecord};
use ferry_core::store::PartInfo;
use serde_json::json;

use crate::{ended, Answer, Gateway, GatewayError, HOLDER};

impl Gateway {
    /// `POST /v1/uploads/{id}/complete` (see the crate docs). Completing
    /// a completed upload answers the same again.
    pub async fn complete(&self, authorization: Option<&str>, id: &str) -> Answer {
        let (key, rk, rec) = match self.upload_of(authorization, id).await {
            Ok(u) => u,
            Err(a) => return a,
        };
        if let Some(a) = ended(&rec) {
            return a;
        }
        let Some(up) = rec.upload.clone() else {
            return Answer::refuse(409, "the upload has no plan recorded; create it again");
        };
        let done = match up.upload_id.is_empty() {
            true => self.check_whole(&key, &up).await,
            false => self.complete_parts(&key, &rec, &up).await,
        };
        match done {
            Ok(Ok(etag)) => match self.finish_done(&rk, &up, &etag).await {
                Ok(()) => Answer {
                    status: 200,
                    body: json!({"id": id, "key": key, "complete": true, "etag": etag, "size": up.src_size}),
                },
                Err(e) => e.into(),
            },
            Ok(Err(refused)) => refused,
            Err(e) => e.into(),
        }
    }

    async fn finish_done(&self, rk: &RecordKey, up: &UploadRecord, etag: &str) -> Result<(), GatewayError> {
        let outcome = Outcome::done(up.src_etag.clone(), Some(etag.to_string()));
        self.state.finish(rk, HOLDER, &outcome).await?;
        tracing::info!(upload = %rk.key, etag, size = up.src_size, "Upload completed and verified.");
        Ok(())
    }

    /// An object sent whole: it is at the store with the declared size (and MD5).
    async fn check_whole(&self, key: &str, up: &UploadRecord) -> Result<Result<String, Answer>, GatewayError> {
        let Some(meta) = self.store.head(key).await? else {
            return Ok(Err(Answer::refuse(
                409,
                "the object was not uploaded: PUT it to its URL first",
            )));
        };
        if meta.size != up.src_size {
            let why = format!("the object holds {} bytes; {} were declared", meta.size, up.src_size);
            return Ok(Err(Answer::refuse(409, why)));
        }
        let etag = meta.etag.unwrap_or_default();
        // An encrypting bucket's ETag is opaque: the signed Content-MD5 the
        // store accepted is the proof then.
        if let Some(want) = up.src_etag.as_ref().filter(|_| !meta.encrypted) {
            if !ETag(want).same(&etag) {
                return Ok(Err(Answer::refuse(409, "the object's MD5 is not the one declared")));
            }
        }
        Ok(Ok(etag))
    }

    /// An object sent in parts: every planned part held with its size (and
    /// declared MD5), completed, then read back: its size, and its ETag as
    /// the MD5 of the parts' MD5s.
    async fn complete_parts(
        &self,
        key: &str,
        rec: &ObjectRecord,
        up: &UploadRecord,
    ) -> Result<Result<String, Answer>, GatewayError> {
        let held = self.store.list_parts(key, &up.upload_id).await?;
        let mut parts = Vec::new();
        let mut missing = Vec::new();
        for (n, r) in plan::parts(up.src_size, up.part_size) {
            match held.iter().find(|p| p.number == n && p.size == r.end - r.start) {
                Some(p) => parts.push(p.clone()),
                None => missing.push(n),
            }
        }
        if !missing.is_empty() {
            return Ok(Err(Answer {
                status: 409,
                body: json!({
                    "error": format!("{} part(s) are missing or not of their planned size", missing.len()),
                    "missing": missing,
                }),
            }));
        }
        // Opaque part ETags (KMS, customer keys) say nothing of the bytes;
        // each part's URL signed its declared MD5, which the store checked.
        for p in parts.iter().filter(|_| self.store.etags_are_md5()) {
            let declared = rec.parts.iter().find(|d| d.number == p.number);
            if declared.is_some_and(|d| !ETag(&d.etag).same(&p.etag)) {
                let why = format!("part {}'s MD5 is not the one declared", p.number);
                return Ok(Err(Answer::refuse(409, why)));
            }
        }
        let etag = self.store.complete_multipart(key, &up.upload_id, &parts).await?;
        let meta = self.store.head(key).await?;
        let expected = expected_etag(&parts);
        let found = meta.as_ref().and_then(|m| m.etag.clone()).or(etag).unwrap_or_default();
        let size_ok = meta.as_ref().is_some_and(|m| m.size == up.src_size);
        let opaque = meta.as_ref().is_none_or(|m| m.encrypted) || !self.store.etags_are_md5();
        let etag_ok = opaque || expected.as_deref().is_none_or(|e| ETag(e).same(&found));
        if !size_ok || !etag_ok {
            let why = format!(
                "the completed object does not verify: {} bytes (declared {}), ETag {found} (expected {})",
                meta.map_or(0, |m| m.size),
                up.src_size,
                expected.unwrap_or_default()
            );
            return Ok(Err(Answer::refuse(502, why)));
        }
        Ok(Ok(found))
    }
}

/// The ETag of an object made of `parts`, when every part's ETag is its MD5.
fn expected_etag(parts: &[PartInfo]) -> Option<String> {
    let md5s: Option<Vec<[u8; 16]>> = parts.iter().map(|p| ETag(&p.etag).md5()).collect();
    md5s.map(|m| ETag::of_parts(m.iter()))
}
