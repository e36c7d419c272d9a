//! The artifact file server: `GET /<kind>/<namespace>/<name>/<file>` from a [`Storage`].
//!
//! Only regular files at exactly that depth are served; segments starting with `.` are refused,
//! so temporary files and private state under the same root stay private. With a token, only
//! requests carrying it are answered (see [`crate::auth`]).

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use plumb_ops::ServerLimits;
use tokio_util::io::ReaderStream;

use crate::auth::{self, ArtifactToken};
use crate::storage::{Storage, valid_segment};

/// The router serving `storage` to holders of `token` (to everyone when `None`); mount it at
/// the root of the artifact base URL.
pub fn router(storage: Storage, token: Option<ArtifactToken>) -> Router {
    let files = Router::new()
        .route("/{kind}/{namespace}/{name}/{file}", get(serve_file))
        .with_state(storage);
    auth::require(files, token)
}

/// Serves `storage` on `addr` to holders of `token` under `limits` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    storage: Storage,
    token: Option<ArtifactToken>,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, root = %storage.root().display(), authenticated = token.is_some(), "serving artifacts");
    serve_on(listener, storage, token, limits, shutdown).await
}

/// Serves `storage` to holders of `token` on an already bound `listener` until `shutdown`
/// resolves, under the connection, time and body limits of the process (`--http-*`).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    storage: Storage,
    token: Option<ArtifactToken>,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    plumb_ops::server::serve(listener, router(storage, token), limits, shutdown).await
}

async fn serve_file(
    State(storage): State<Storage>,
    Path((kind, namespace, name, file)): Path<(String, String, String, String)>,
) -> Response {
    if ![&kind, &namespace, &name, &file]
        .iter()
        .all(|s| valid_segment(s))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    let path = storage
        .root()
        .join(&kind)
        .join(&namespace)
        .join(&name)
        .join(&file);
    let f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return StatusCode::NOT_FOUND.into_response(),
    };
    let meta = match f.metadata().await {
        Ok(m) if m.is_file() => m,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let content_type = if file.ends_with(".tar.gz") || file.ends_with(".gz") {
        "application/gzip"
    } else {
        "application/octet-stream"
    };
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_LENGTH, meta.len().to_string()),
        ],
        Body::from_stream(ReaderStream::new(f)),
    )
        .into_response()
}
