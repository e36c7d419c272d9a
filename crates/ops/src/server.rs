//! Serving HTTP without letting one client hold the server: every plumb HTTP endpoint (metrics
//! and health, artifacts, webhooks) is served through [`serve`], which bounds connections, how
//! long a client may take to send headers and body, how long a request may run, how large a
//! body may be, and how long one connection may live.
//!
//! The pieces are hyper's HTTP/1 connection settings, tower-http's timeout and body-limit
//! layers, a semaphore in front of `accept`, and a per-connection timer that gives an idle
//! keep-alive connection its own timeout ([`crate::wait`]); nothing here parses HTTP itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use crate::leader::parse_duration;
use crate::wait::{Activity, Tracked, WaitTimer};

/// What one HTTP server allows a client; see the README's "Limits" table. The same flags set
/// every server of a process (metrics and health, artifacts, webhooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct ServerLimits {
    /// HTTP connections served at once per server; more wait in the listen backlog.
    #[arg(long = "http-max-connections", default_value_t = 256)]
    pub max_connections: usize,
    /// Time a client has to send a request's headers once it started sending them.
    #[arg(long = "http-header-read-timeout", value_parser = parse_duration, default_value = "10s")]
    pub header_read_timeout: Duration,
    /// Time a keep-alive connection may wait idle for its next request.
    #[arg(long = "http-idle-timeout", value_parser = parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,
    /// Longest pause between two pieces of a request body.
    #[arg(long = "http-body-read-timeout", value_parser = parse_duration, default_value = "10s")]
    pub body_read_timeout: Duration,
    /// Time a request may take from its headers to the response headers (408 after it).
    #[arg(long = "http-request-timeout", value_parser = parse_duration, default_value = "30s")]
    pub request_timeout: Duration,
    /// Largest request body accepted, in bytes (413 beyond it); the webhook receiver has its
    /// own, `--webhook-max-body-size`.
    #[arg(long = "http-max-body-size", default_value_t = 64 << 10)]
    pub max_body_bytes: usize,
    /// Longest a connection may stay open, whatever it does; ends clients that stop reading.
    #[arg(long = "http-max-connection-lifetime", value_parser = parse_duration, default_value = "10m")]
    pub max_connection_lifetime: Duration,
    /// Most request header fields (431 beyond it).
    #[arg(long = "http-max-headers", default_value_t = 64)]
    pub max_headers: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 64 << 10,
            max_connection_lifetime: Duration::from_secs(600),
            max_headers: 64,
        }
    }
}

impl ServerLimits {
    /// The default request body limit of a webhook receiver: 2 MiB (axum's default for a
    /// `Bytes` body, which push payloads fit).
    pub const WEBHOOK_MAX_BODY_BYTES: usize = 2 << 20;

    /// These limits with request bodies up to `max_body_bytes`.
    pub fn with_max_body(self, max_body_bytes: usize) -> Self {
        Self {
            max_body_bytes,
            ..self
        }
    }
}

/// How long a graceful shutdown waits for open connections before dropping them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` and serves `router` under `limits` until `shutdown` resolves.
pub async fn bind_and_serve(
    addr: SocketAddr,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve(listener, router, limits, shutdown).await
}

/// Serves `router` on `listener` under `limits` until `shutdown` resolves, then lets open
/// connections finish their current request (for at most ten seconds).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes));
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's header timer starts as soon as it waits for a request, idle or not; the
    // connection's own timer tells the two waits apart (see `wait`).
    http.header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // Wait for a free slot before accepting, so excess clients queue in the kernel's
        // backlog instead of costing a task and buffers each.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: transient, so wait and go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let activity = Activity::new();
        let mut http = http.clone();
        http.timer(WaitTimer::new(
            activity.clone(),
            limits.header_read_timeout,
            limits.idle_timeout,
        ));
        let conn = http.serve_connection(
            TokioIo::new(Tracked::new(stream, activity)),
            TowerToHyperService::new(app.clone()),
        );
        let conn = graceful.watch(conn);
        let lifetime = limits.max_connection_lifetime;
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(lifetime, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
                Err(_) => tracing::debug!("connection closed at its maximum lifetime"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open after the drain timeout were dropped");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: ServerLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let router = Router::new().route("/", get(|| async { "ok" })).route(
            "/echo",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(listener, router, limits, async {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    /// Reads until the server closes the connection; returns what it sent.
    async fn read_to_close(stream: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        };
        let (addr, _stop) = start(limits).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        // The server closes the connection; without the timeout this read never returns.
        let answer = read_to_close(&mut s).await;
        assert!(!answer.contains("200 OK"), "{answer}");
    }

    /// Sends one keep-alive request and reads its whole response (the body is "ok").
    async fn get_keep_alive(s: &mut TcpStream) -> String {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while !out.ends_with(b"ok") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_outlives_the_header_timeout_until_the_idle_timeout() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(1500),
            ..ServerLimits::default()
        };
        let (addr, _stop) = start(limits).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(get_keep_alive(&mut s).await.contains("200 OK"));
        // Idle for several header timeouts, well within the idle timeout: still served.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = get_keep_alive(&mut s).await;
        assert!(second.contains("200 OK"), "second request: {second:?}");
        // Then left idle: the server closes the connection at the idle timeout.
        let closed = tokio::time::timeout(Duration::from_secs(20), read_to_close(&mut s)).await;
        assert!(closed.is_ok(), "the idle connection was never closed");
    }

    #[tokio::test]
    async fn a_long_idle_timeout_does_not_lengthen_the_header_timeout() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(600),
            ..ServerLimits::default()
        };
        let (addr, _stop) = start(limits).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(get_keep_alive(&mut s).await.contains("200 OK"));
        // The next request starts and stalls: the header timeout, not the idle one, applies.
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(20), read_to_close(&mut s)).await;
        assert!(
            closed.is_ok_and(|answer| !answer.contains("200 OK")),
            "a stalled request was held for the idle timeout"
        );
    }

    #[test]
    fn every_limit_is_a_flag_with_the_documented_default() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            limits: ServerLimits,
        }
        assert_eq!(
            Cli::parse_from(["x"]).limits,
            ServerLimits::default(),
            "flag defaults and Default differ"
        );
        let set = Cli::parse_from([
            "x",
            "--http-max-connections=8",
            "--http-header-read-timeout=3s",
            "--http-idle-timeout=2m",
            "--http-body-read-timeout=4s",
            "--http-request-timeout=5s",
            "--http-max-body-size=1024",
            "--http-max-connection-lifetime=1h",
            "--http-max-headers=20",
        ])
        .limits;
        assert_eq!(
            set,
            ServerLimits {
                max_connections: 8,
                header_read_timeout: Duration::from_secs(3),
                idle_timeout: Duration::from_secs(120),
                body_read_timeout: Duration::from_secs(4),
                request_timeout: Duration::from_secs(5),
                max_body_bytes: 1024,
                max_connection_lifetime: Duration::from_secs(3600),
                max_headers: 20,
            }
        );
        assert_ne!(set.idle_timeout, set.header_read_timeout);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let limits = ServerLimits {
            max_body_bytes: 16,
            ..ServerLimits::default()
        };
        let (addr, _stop) = start(limits).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let body = "x".repeat(64);
        let req = format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }

    #[tokio::test]
    async fn a_stalled_body_ends_the_request() {
        let limits = ServerLimits {
            body_read_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        };
        let (addr, _stop) = start(limits).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            .await
            .unwrap();
        let answer = read_to_close(&mut s).await;
        assert!(!answer.contains("200 OK"), "{answer}");
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_free_slot() {
        let limits = ServerLimits {
            max_connections: 1,
            ..ServerLimits::default()
        };
        let (addr, _stop) = start(limits).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        first
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = first.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
        // The first connection is kept alive and holds the only slot: the second one's
        // request is not answered until the first closes.
        let mut second = TcpStream::connect(addr).await.unwrap();
        second
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let pending = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
        assert!(
            pending.is_err(),
            "the second connection was served while the first held the slot"
        );
        drop(first);
        let answer = read_to_close(&mut second).await;
        assert!(answer.contains("200 OK"), "{answer}");
    }
}
