//! The rewriting proxy. With [`Answers::kms`] it answers as an S3 bucket
//! with SSE-KMS default encryption does; with [`Answers::crc64ecma`] it adds
//! the whole-object CRC-64/ECMA header Aliyun OSS sends with reads; with
//! [`Answers::crc64nvme`] the CRC-64/NVME S3 keeps for every new object.
//!
//! As an SSE-KMS bucket: Every ETag in an answer (headers and XML bodies) is
//! replaced by one that is not the MD5 of the bytes — 32 hex digits, with the
//! `-N` of a multipart object kept — and object answers carry
//! `x-amz-server-side-encryption: aws:kms`. ETags a client sends back
//! (CompleteMultipartUpload's part list) are mapped to the store's own, as
//! S3 accepts the ETags it gave. Only for servers that do not check request
//! signatures over the body (moto): the part list is rewritten.
//!
//! One request at a time per connection, each forwarded on a fresh upstream
//! connection with `Connection: close` and its whole answer read, rewritten,
//! and sent back with a Content-Length.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{parse_head, Answers, Seen};

/// The fake ETags given out, mapped to the store's.
#[derive(Clone, Default)]
pub(super) struct Tags(Arc<Mutex<HashMap<String, String>>>);

impl Tags {
    /// The opaque ETag shown for a store ETag (bare, without quotes).
    fn fake(&self, real: &str) -> String {
        let (hex, parts) = match real.split_once('-') {
            Some((h, n)) => (h, format!("-{n}")),
            None => (real, String::new()),
        };
        let mut h = ferry_core::etag::md5(format!("kms:{hex}").as_bytes()).to_vec();
        h.truncate(16);
        let fake = format!("{}{parts}", hex::encode(h));
        self.0.lock().unwrap().insert(fake.clone(), real.to_string());
        fake
    }

    fn real(&self, fake: &str) -> Option<String> {
        self.0.lock().unwrap().get(fake).cloned()
    }
}

/// What a proxy checking CRC-64/NVME as S3 does has seen: the parts' CRCs
/// per upload and the objects' CRCs per path, and how many it verified.
type PartCrcs = std::collections::BTreeMap<u32, (u64, u64)>;

#[derive(Clone, Default)]
pub(super) struct Crcs {
    parts: Arc<Mutex<HashMap<String, PartCrcs>>>,
    objects: Arc<Mutex<HashMap<String, u64>>>,
    pub(super) checked: Arc<std::sync::atomic::AtomicUsize>,
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
}

impl Crcs {
    /// Why S3 would refuse this request's checksum, if it would; notes what a
    /// later completion or HEAD needs.
    fn check(&self, seen: &Seen, head: &str, body: &[u8]) -> Option<String> {
        let sent = header(head, "x-amz-checksum-crc64nvme").and_then(ferry_core::checksum::crc64_from_base64)?;
        self.checked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let op = seen.operation();
        let actual = match op.as_str() {
            "CompleteMultipartUpload" => {
                let id = query_value(&seen.query, "uploadId").unwrap_or("").to_string();
                let parts = self.parts.lock().unwrap().remove(&id).unwrap_or_default();
                let mut it = parts.into_values();
                let (first, _) = it.next()?;
                it.fold(first, |acc, (crc, len)| {
                    ferry_core::checksum::crc64nvme_combine(acc, crc, len)
                })
            }
            _ => ferry_core::checksum::crc64nvme(body),
        };
        if actual != sent {
            return Some(format!(
                "the CRC64NVME you specified did not match the calculated checksum ({op})"
            ));
        }
        match op.as_str() {
            "UploadPart" => {
                let id = query_value(&seen.query, "uploadId").unwrap_or("").to_string();
                let n = query_value(&seen.query, "partNumber")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                self.parts
                    .lock()
                    .unwrap()
                    .entry(id)
                    .or_default()
                    .insert(n, (actual, body.len() as u64));
            }
            _ => {
                self.objects.lock().unwrap().insert(seen.path.clone(), actual);
            }
        }
        None
    }

    fn of_object(&self, path: &str) -> Option<u64> {
        self.objects.lock().unwrap().get(path).copied()
    }
}

/// Replaces the content of every `<ETag>` element with `f(content)`, quotes kept.
fn map_etags(body: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.find("<ETag>") {
        let (head, tail) = rest.split_at(i + "<ETag>".len());
        out.push_str(head);
        let Some(end) = tail.find("</ETag>") else {
            rest = tail;
            break;
        };
        let inner = &tail[..end];
        let bare = inner.trim_matches('"').replace("&quot;", "").replace("&#34;", "");
        match f(&bare) {
            Some(new) => out.push_str(&format!("&quot;{new}&quot;")),
            None => out.push_str(inner),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

async fn read_head(r: &mut (impl AsyncReadExt + Unpin), buf: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Header lines without the ones named (lower case), and the status line.
fn headers_without(head: &str, drop: &[&str]) -> (String, Vec<String>) {
    let mut lines = head.trim_end().split("\r\n");
    let first = lines.next().unwrap_or("").to_string();
    let kept = lines
        .filter(|l| {
            let name = l.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
            !drop.contains(&name.as_str())
        })
        .map(str::to_string)
        .collect();
    (first, kept)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&body[..i])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = i + 2;
        out.extend_from_slice(&body[start..(start + size).min(body.len())]);
        body = &body[(start + size + 2).min(body.len())..];
    }
    out
}

/// A header line with S3's user metadata and tag count under `vendor`'s names.
fn vendor_names(line: &str, vendor: &str) -> String {
    let lower = line.to_ascii_lowercase();
    if lower.starts_with("x-amz-meta-") {
        return format!("x-{vendor}-meta-{}", &line["x-amz-meta-".len()..]);
    }
    if lower.starts_with("x-amz-tagging-count:") {
        return format!("x-{vendor}-tagging-count:{}", &line["x-amz-tagging-count:".len()..]);
    }
    line.to_string()
}

pub(super) async fn relay(
    mut client: TcpStream,
    target: &str,
    log: Arc<Mutex<Vec<Seen>>>,
    tags: Tags,
    answers: &Answers,
    crcs: &Crcs,
) {
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = read_head(&mut client, &mut buf).await else {
            return;
        };
        let (seen, length) = parse_head(&buf[..head_end]);
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        buf.drain(..head_end);
        if header(&head, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            && client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err()
        {
            return;
        }
        while buf.len() < length {
            let mut chunk = vec![0u8; 64 * 1024];
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let mut body: Vec<u8> = buf.drain(..length).collect();
        let op = seen.operation();
        let crc = answers.crc64ecma.get(&seen.path).copied();
        let mut nvme = answers.crc64nvme.get(&seen.path).copied();
        if answers.check_crc64nvme {
            if let Some(why) = crcs.check(&seen, &head, &body) {
                let text = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>BadDigest</Code><Message>{why}</Message></Error>");
                let answer = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
                log.lock().unwrap().push(seen);
                if client.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
            nvme = nvme.or_else(|| crcs.of_object(&seen.path));
        }
        log.lock().unwrap().push(seen);
        if answers.kms && op == "CompleteMultipartUpload" {
            body = map_etags(&String::from_utf8_lossy(&body), |fake| tags.real(fake)).into_bytes();
        }
        let (first, mut lines) = headers_without(&head, &["content-length", "connection", "expect"]);
        lines.push(format!("Content-Length: {}", body.len()));
        lines.push("Connection: close".into());
        let request = format!("{first}\r\n{}\r\n\r\n", lines.join("\r\n"));
        let Ok(mut server) = TcpStream::connect(target).await else {
            return;
        };
        if server.write_all(request.as_bytes()).await.is_err() || server.write_all(&body).await.is_err() {
            return;
        }
        let mut answer = Vec::new();
        if server.read_to_end(&mut answer).await.is_err() {
            return;
        }
        let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) else {
            return;
        };
        let ahead = String::from_utf8_lossy(&answer[..end]).to_string();
        let mut abody = answer[end..].to_vec();
        if header(&ahead, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            abody = dechunk(&abody);
        }
        let ok = ahead.split(' ').nth(1).is_some_and(|s| s.starts_with('2'));
        let xml = header(&ahead, "content-type").is_some_and(|t| t.contains("xml"));
        if answers.kms && ok && xml && op != "GetObject" {
            abody = map_etags(&String::from_utf8_lossy(&abody), |real| Some(tags.fake(real))).into_bytes();
        }
        let mut dropped = vec!["content-length", "transfer-encoding", "connection"];
        if nvme.is_some() && op == "HeadObject" {
            // The proxy's answer replaces whatever the server says of checksums.
            dropped.extend(["x-amz-checksum-crc64nvme", "x-amz-checksum-type"]);
        }
        if answers.kms {
            dropped.push("etag");
        }
        let (status, mut lines) = headers_without(&ahead, &dropped);
        if let Some(v) = answers.vendor {
            lines = lines.into_iter().map(|l| vendor_names(&l, v)).collect();
        }
        if let Some(tag) = header(&ahead, "etag").filter(|_| answers.kms) {
            lines.push(format!("ETag: \"{}\"", tags.fake(tag.trim_matches('"'))));
        }
        if let Some(crc) = crc.filter(|_| ok && matches!(op.as_str(), "GetObject" | "HeadObject")) {
            lines.push(format!("x-oss-hash-crc64ecma: {crc}"));
        }
        if let Some(crc) = nvme.filter(|_| ok && op == "HeadObject") {
            lines.push(format!(
                "x-amz-checksum-crc64nvme: {}",
                ferry_core::checksum::crc64_base64(crc)
            ));
            lines.push("x-amz-checksum-type: FULL_OBJECT".into());
        }
        let object_op = matches!(
            op.as_str(),
            "PutObject"
                | "UploadPart"
                | "CreateMultipartUpload"
                | "CompleteMultipartUpload"
                | "HeadObject"
                | "GetObject"
        );
        if answers.kms && ok && object_op {
            lines.push("x-amz-server-side-encryption: aws:kms".into());
        }
        let declared = if op == "HeadObject" {
            header(&ahead, "content-length").unwrap_or("0").to_string()
        } else {
            abody.len().to_string()
        };
        lines.push(format!("Content-Length: {declared}"));
        let out = format!("{status}\r\n{}\r\n\r\n", lines.join("\r\n"));
        if client.write_all(out.as_bytes()).await.is_err() || client.write_all(&abody).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_in_bodies_are_mapped_both_ways() {
        let tags = Tags::default();
        let body = "<Part><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag></Part><ETag>\"abc-2\"</ETag>";
        let shown = map_etags(body, |r| Some(tags.fake(r)));
        assert!(!shown.contains("9b2cf535"), "{shown}");
        assert!(shown.contains("-2&quot;"), "{shown}");
        let back = map_etags(&shown, |f| tags.real(f));
        assert!(back.contains("&quot;9b2cf535f27731c974343645a3985328&quot;"), "{back}");
    }
}
