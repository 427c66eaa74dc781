//! The optional health endpoint of a worker daemon, for container health
//! checks (ECS, Kubernetes, load balancers): `GET /healthz` answers
//! `200 ok` while the worker runs and `503 stopping` once it is shutting
//! down; any other path is 404. One request per connection, HTTP/1.0 style.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Binds `addr` and serves health checks until the task is dropped;
/// `stopping` turns the answer to 503.
pub async fn serve(addr: SocketAddr, stopping: watch::Receiver<bool>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let stopping = *stopping.borrow();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), answer(conn, stopping)).await;
            });
        }
    });
    Ok(local)
}

async fn answer(mut conn: TcpStream, stopping: bool) -> std::io::Result<()> {
    let mut buf = vec![0u8; 2048];
    let mut len = 0;
    while len < buf.len() {
        let n = conn.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || buf[..len].contains(&b'\n') {
            break;
        }
    }
    let line = String::from_utf8_lossy(&buf[..len]);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET" | "HEAD", "/healthz") if !stopping => ("200 OK", "ok\n"),
        ("GET" | "HEAD", "/healthz") => ("503 Service Unavailable", "stopping\n"),
        _ => ("404 Not Found", "not found\n"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        conn.write_all(body.as_bytes()).await?;
    }
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_until_stopping() {
        let (tx, rx) = watch::channel(false);
        let addr = serve("127.0.0.1:0".parse().unwrap(), rx).await.unwrap();
        let ok = get(addr, "/healthz").await;
        assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("ok\n"), "{ok}");
        assert!(get(addr, "/other").await.starts_with("HTTP/1.1 404"));
        tx.send(true).unwrap();
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 503"));
    }
}
