//! The gateway over HTTP (hyper, HTTP/1.1), and the sweeper that aborts
//! abandoned uploads.
//!
//! Routes: `POST /v1/uploads`, `GET` and `DELETE /v1/uploads/{id}`,
//! `POST /v1/uploads/{id}/complete`, `POST /v1/uploads/{id}/parts/{n}`,
//! `GET /v1/objects?prefix=&after=`, `GET /healthz`. Bodies over 4 MiB are
//! refused with 413; every answer is JSON.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{Answer, CreateUpload, Gateway, PartRequest};

/// The largest request body accepted, bytes (10,000 MD5s fit).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Serves `gateway` on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>, stop: watch::Receiver<bool>) -> std::io::Result<()> {
    let handler = move |req| {
        let gateway = gateway.clone();
        async move { reply(route(&gateway, req).await) }
    };
    ferry_cli::http::serve(listener, handler, stop).await
}

/// Aborts abandoned uploads every `every` until `stop` turns true.
pub async fn sweep_every(gateway: Arc<Gateway>, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = gateway.sweep().await {
            tracing::warn!(error = %e, "Aborting abandoned uploads failed; trying again later.");
        }
    }
}

fn reply(a: Answer) -> Response<Full<Bytes>> {
    Response::builder()
        .status(a.status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(a.body.to_string())))
        .expect("a valid response")
}

/// Answers one request (the routes of the module docs).
pub async fn route(gateway: &Gateway, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let auth = auth.as_deref();
    if path == "/v1/objects" && req.method() == Method::GET {
        let query: Vec<(String, String)> = req.uri().query().map(url_pairs).unwrap_or_default();
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let prefix = get("prefix").unwrap_or_default();
        return gateway.objects(auth, &prefix, get("after").as_deref()).await;
    }
    let rest = path.strip_prefix("/v1/uploads");
    match (req.method().clone(), rest) {
        (Method::GET, _) if path == "/healthz" => Answer {
            status: 200,
            body: "ok".into(),
        },
        (Method::POST, Some("" | "/")) => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                    return Answer::refuse(413, format!("the body exceeds {MAX_BODY} bytes"))
                }
                Err(e) => return Answer::refuse(400, format!("reading the body: {e}")),
            };
            match serde_json::from_slice::<CreateUpload>(&body) {
                Ok(c) => gateway.create(auth, c).await,
                Err(e) => Answer::refuse(400, format!("the body is not an upload request: {e}")),
            }
        }
        (method, Some(r)) if r.starts_with('/') => {
            let r = &r[1..];
            if let (&Method::POST, Some((id, n))) = (&method, r.split_once("/parts/")) {
                let Ok(n) = n.parse::<u32>() else {
                    return Answer::refuse(400, format!("{n:?} is not a part number"));
                };
                let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => return Answer::refuse(400, format!("reading the body: {e}")),
                };
                return match serde_json::from_slice::<PartRequest>(&body) {
                    Ok(p) => gateway.part_url(auth, id, n, p).await,
                    Err(e) => Answer::refuse(400, format!("the body is not a part request: {e}")),
                };
            }
            match (method, r.strip_suffix("/complete")) {
                (Method::POST, Some(id)) => gateway.complete(auth, id).await,
                (Method::GET, None) => gateway.resume(auth, r).await,
                (Method::DELETE, None) => gateway.abort(auth, r).await,
                _ => Answer::refuse(405, format!("{} {path} is not a gateway call", req.method())),
            }
        }
        _ => Answer::refuse(404, format!("no route {path}")),
    }
}

/// The pairs of a query string, percent-decoded.
fn url_pairs(q: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}
