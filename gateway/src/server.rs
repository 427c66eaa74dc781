//! The gateway over HTTP (hyper, HTTP/1.1), and the sweeper that aborts
//! abandoned uploads.
//!
//! Routes: `POST /v1/uploads`, `GET` and `DELETE /v1/uploads/{id}`,
//! `POST /v1/uploads/{id}/complete`, `GET /healthz`. Bodies over 4 MiB are
//! refused with 413; every answer is JSON.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{Answer, CreateUpload, Gateway};

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
