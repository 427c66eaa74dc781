//! The bridge over HTTP (hyper, HTTP/1.1).
//!
//! Routes:
//!
//! * `POST /invoke` — a Function Compute event invocation (an OSS trigger),
//!   `POST /` and `POST /events` — any other host: one notification per
//!   request, answered as [`crate::Answer::http`]. Bodies over 6 MiB (Function
//!   Compute's own limit for event payloads) are refused with 413.
//! * `POST /initialize` — Function Compute's initializer: 200.
//! * `GET /healthz` — 200 `ok`.
//!
//! A Function Compute event invocation (`x-fc-control-path: /invoke`) needs
//! no credentials when the bridge is told to trust them (OSS triggers cannot
//! send headers; only the platform reaches a custom runtime's port).
//!
//! For Function Compute every answer carries `x-fc-status` (200 for success,
//! 404 — "function error", so the asynchronous invocation is retried — for
//! anything else), and an invocation with `x-fc-request-id` writes
//! `FC Invoke Start RequestId: …` / `FC Invoke End RequestId: …` to stdout.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Bridge;

/// The largest request body accepted, bytes.
pub const MAX_BODY: usize = 6 * 1024 * 1024;

/// Serves `bridge` on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, bridge: Arc<Bridge>, stop: watch::Receiver<bool>) -> std::io::Result<()> {
    let handler = move |req| {
        let bridge = bridge.clone();
        async move { route(&bridge, req).await }
    };
    ferry_cli::http::serve(listener, handler, stop).await
}

fn reply(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-fc-status", if (200..300).contains(&status) { "200" } else { "404" })
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn route(bridge: &Bridge, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/healthz") => reply(200, "\"ok\"".into()),
        (Method::POST, "/initialize") => reply(200, "{}".into()),
        (Method::POST, "/invoke" | "/" | "/events") => {
            let request_id = header(&req, "x-fc-request-id").map(str::to_string);
            let token = header(&req, "x-ferry-token").map(str::to_string);
            let signature = header(&req, "x-ferry-signature").map(str::to_string);
            let fc_event = path == "/invoke" && header(&req, "x-fc-control-path") == Some("/invoke");
            if let Some(id) = &request_id {
                println!("FC Invoke Start RequestId: {id}");
            }
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    let too_big = e.downcast_ref::<http_body_util::LengthLimitError>().is_some();
                    return if too_big {
                        reply(
                            413,
                            serde_json::json!({"error": format!("the body exceeds {MAX_BODY} bytes")}).to_string(),
                        )
                    } else {
                        reply(
                            400,
                            serde_json::json!({"error": format!("reading the body: {e}")}).to_string(),
                        )
                    };
                }
            };
            let answer = bridge
                .handle(token.as_deref(), signature.as_deref(), fc_event, &body)
                .await;
            let (status, text) = answer.http();
            if status != 200 {
                tracing::warn!(status, answer = %text, "Notification not queued.");
            }
            if let Some(id) = &request_id {
                println!("FC Invoke End RequestId: {id}");
            }
            reply(status, text)
        }
        _ => reply(
            404,
            serde_json::json!({"error": format!("no route {path}")}).to_string(),
        ),
    }
}
