//! A real Git smart-HTTP server on loopback, for tests and the demo.
//!
//! Requests go to `git http-backend` (the CGI program that ships with git) exactly as a web server
//! would pass them, so clients see real protocol v2 fetches, real ref advertisements and real
//! authentication failures. Repositories are the bare repositories under a root directory:
//! `http://127.0.0.1:<port>/<name>.git` serves `<root>/<name>.git`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address could not be bound.
    #[error("git server: binding {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The repository root does not exist.
    #[error("git server: repository root {0} is not a directory")]
    Root(PathBuf),
}

/// What a client must present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// Anyone may fetch.
    #[default]
    None,
    /// HTTP basic authentication with this user name and password.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl Auth {
    /// Whether the request's headers satisfy this requirement.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        match self {
            Auth::None => true,
            Auth::Basic { username, password } => {
                let want = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                given.strip_prefix("Basic ") == Some(want.as_str())
            }
            Auth::Bearer(token) => given.strip_prefix("Bearer ") == Some(token.as_str()),
        }
    }

    /// The user name handed to git as `REMOTE_USER`, when there is one.
    fn user(&self) -> &str {
        match self {
            Auth::Basic { username, .. } => username,
            Auth::Bearer(_) => "token",
            Auth::None => "",
        }
    }
}

struct Shared {
    root: PathBuf,
    auth: Auth,
}

/// A running server; it stops when dropped.
pub struct GitServer {
    addr: SocketAddr,
    root: PathBuf,
    task: JoinHandle<()>,
}

impl GitServer {
    /// Serves the bare repositories under `root` on a free loopback port.
    pub async fn start(root: impl Into<PathBuf>, auth: Auth) -> Result<Self, Error> {
        Self::start_on("127.0.0.1:0", root, auth).await
    }

    /// Serves the bare repositories under `root` on `addr`.
    pub async fn start_on(addr: &str, root: impl Into<PathBuf>, auth: Auth) -> Result<Self, Error> {
        let root = root.into();
        if !root.is_dir() {
            return Err(Error::Root(root));
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| Error::Bind {
            addr: addr.to_owned(),
            source,
        })?;
        let shared = Arc::new(Shared {
            root: root.clone(),
            auth,
        });
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "git server stopped");
            }
        });
        Ok(Self {
            addr: local,
            root,
            task,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory holding the served bare repositories.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The clone URL of the repository `<root>/<name>` (give the name with its `.git`).
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{}", self.addr, name)
    }

    /// Runs until the server task ends (for the command-line program).
    pub async fn wait(mut self) {
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !shared.auth.admits(&headers) {
        let mut resp = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"plumb-git-server\""),
        );
        return resp;
    }
    match run_backend(&shared, &method, &uri, &headers, body).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(error = %e, %uri, "git http-backend failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("git http-backend: {e}\n"),
            )
                .into_response()
        }
    }
}

async fn run_backend(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> std::io::Result<Response> {
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header(header::CONTENT_ENCODING))
        .env(
            "GIT_PROTOCOL",
            header(header::HeaderName::from_static("git-protocol")),
        )
        .env("REMOTE_USER", shared.auth.user())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.stderr.is_empty() {
        tracing::debug!(stderr = %String::from_utf8_lossy(&out.stderr), "git http-backend");
    }
    Ok(cgi_response(&out.stdout))
}

/// Turns CGI output (headers, a blank line, the body) into an HTTP response.
fn cgi_response(out: &[u8]) -> Response {
    let (head, body) = split_cgi(out);
    let mut builder = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok());
            builder = builder.status(code.unwrap_or(500));
        } else {
            builder = builder.header(name.trim(), value);
        }
    }
    builder.body(Body::from(body.to_vec())).unwrap_or_else(|e| {
        (StatusCode::BAD_GATEWAY, format!("bad CGI output: {e}\n")).into_response()
    })
}

fn split_cgi(out: &[u8]) -> (&[u8], &[u8]) {
    for (sep, len) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(i) = out.windows(len).position(|w| w == sep) {
            return (&out[..i], &out[i + len..]);
        }
    }
    (out, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_output_is_split_at_the_first_blank_line() {
        let (h, b) =
            split_cgi(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno\r\n\r\nmore");
        assert_eq!(h, b"Status: 404 Not Found\r\nContent-Type: text/plain");
        assert_eq!(b, b"no\r\n\r\nmore");
        let (h, b) = split_cgi(b"Content-Type: x\n\nbody");
        assert_eq!((h, b), (&b"Content-Type: x"[..], &b"body"[..]));
    }

    #[test]
    fn basic_auth_admits_only_the_right_password() {
        let auth = Auth::Basic {
            username: "alice".into(),
            password: "s3cret".into(),
        };
        let mut headers = HeaderMap::new();
        assert!(!auth.admits(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6czNjcmV0"),
        );
        assert!(auth.admits(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6d3Jvbmc="),
        );
        assert!(!auth.admits(&headers));
    }
}
