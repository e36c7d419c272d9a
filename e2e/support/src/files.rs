//! An in-memory HTTP file server on loopback: tests publish artifacts on it exactly where a
//! controller's artifact server would, without running that controller.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{StatusCode, Uri};

use crate::{Error, Result};

/// What the server answers for a path.
#[derive(Clone)]
enum Entry {
    /// These bytes.
    Bytes(Vec<u8>),
    /// Nothing, ever: the request is accepted and left hanging.
    Hang,
}

type Files = Arc<Mutex<HashMap<String, Entry>>>;

/// Serves the bytes put at each path with `GET`; 404 for anything else. Stops when dropped.
pub struct FileServer {
    addr: SocketAddr,
    files: Files,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    /// Starts serving on a free loopback port.
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::Io(format!("binding the file server: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Io(format!("binding the file server: {e}")))?;
        let files = Files::default();
        let app = axum::Router::new().fallback(get).with_state(files.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, files, task })
    }

    /// Serves `bytes` at `path` (which starts with `/`), replacing what was there.
    pub fn put(&self, path: &str, bytes: Vec<u8>) {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_owned(), Entry::Bytes(bytes));
    }

    /// Accepts requests for `path` (which starts with `/`) and never answers them, as a server
    /// that hangs does.
    pub fn hang(&self, path: &str) {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_owned(), Entry::Hang);
    }

    /// Stops serving `path`.
    pub fn remove(&self, path: &str) {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(path);
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn get(State(files): State<Files>, uri: Uri) -> Result<Vec<u8>, StatusCode> {
    let entry = files
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(uri.path())
        .cloned();
    match entry {
        Some(Entry::Bytes(bytes)) => Ok(bytes),
        Some(Entry::Hang) => std::future::pending().await,
        None => Err(StatusCode::NOT_FOUND),
    }
}
