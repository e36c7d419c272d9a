//! What plumb applied for a Sync: the objects of its rendered artifact, downloaded from the
//! render controller's artifact server (with the controllers' token when one is configured),
//! verified by digest, and kept while the digest stays the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use plumb_api::Digest;
use plumb_artifact::{ArtifactToken, TokenSecret};
use plumb_sync::view::{Manifest, parse_gzip};

/// The largest rendered artifact downloaded (the sync controller's default limit).
const MAX_ARTIFACT_BYTES: u64 = 256 << 20;

/// Reads the artifact token from `secret` with the user's client; the namespace defaults to
/// `scope`, else the kubeconfig's.
pub async fn read_token(
    client: &Client,
    secret: &TokenSecret,
    scope: Option<&str>,
) -> anyhow::Result<ArtifactToken> {
    let namespace = secret
        .namespace
        .clone()
        .or_else(|| scope.map(str::to_owned))
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let found = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get(&secret.name)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "--artifact-token-secret: reading Secret {namespace}/{}: {e}",
                secret.name
            )
        })?;
    plumb_artifact::auth::token_of(&found).map_err(|reason| {
        anyhow::anyhow!(
            "--artifact-token-secret: Secret {namespace}/{}: {reason}",
            secret.name
        )
    })
}

/// `e` with the errors that caused it, as `e: cause: cause`.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// How many artifacts are kept in memory (one per open Sync, typically).
const KEPT: usize = 16;

/// Downloads rendered artifacts, remembering the last few by digest.
#[derive(Clone)]
pub struct Artifacts {
    http: reqwest::Client,
    has_token: bool,
    kept: Arc<Mutex<HashMap<String, Arc<Vec<Manifest>>>>>,
}

impl Artifacts {
    /// A downloader sending `token` when set.
    pub fn new(token: Option<ArtifactToken>) -> anyhow::Result<Self> {
        let http = plumb_artifact::auth::client_builder(token.as_ref())
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            has_token: token.is_some(),
            kept: Arc::default(),
        })
    }

    /// The objects of the artifact at `url` with `digest`.
    pub async fn manifests(
        &self,
        url: &str,
        digest: &Digest,
    ) -> Result<Arc<Vec<Manifest>>, String> {
        if let Some(m) = self
            .kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest.as_str())
        {
            return Ok(m.clone());
        }
        let bytes = plumb_artifact::fetch_verified(&self.http, url, digest, MAX_ARTIFACT_BYTES)
            .await
            .map_err(|e| {
                let unauthorized = matches!(&e, plumb_artifact::FetchError::Http { source, .. }
                    if source.status() == Some(reqwest::StatusCode::UNAUTHORIZED));
                if unauthorized && !self.has_token {
                    format!(
                        "{e}: the artifact server asks for the controllers' token; start plumb ui with --artifact-token-secret=NAMESPACE/NAME (the controllers' flag)"
                    )
                } else {
                    with_causes(&e)
                }
            })?;
        let manifests =
            Arc::new(parse_gzip(&bytes).map_err(|e| format!("reading artifact {url}: {e}"))?);
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= KEPT {
            kept.clear();
        }
        kept.insert(digest.as_str().to_owned(), manifests.clone());
        Ok(manifests)
    }
}
