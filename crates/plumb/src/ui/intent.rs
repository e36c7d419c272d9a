//! What plumb applied for a Sync: the objects of its rendered artifact, downloaded from the
//! render controller's artifact server (with the controllers' token when one is configured),
//! directly or through the API server's proxy of its Service, verified by digest, and kept
//! while the digest stays the same.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::Request;
use futures::AsyncReadExt;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use plumb_api::Digest;
use plumb_artifact::auth::TOKEN_HEADER;
use plumb_artifact::{ArtifactToken, FetchError, TokenSecret, fetch_verified, verify_digest};
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

/// How long connecting to an artifact server directly may take before the API server's proxy
/// is tried (an in-cluster address seen from outside often drops the connection attempt).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one download may take, either way.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Downloads rendered artifacts, remembering the last few by digest: directly from the URL the
/// render controller advertises, and, when that address cannot be reached from here (an
/// in-cluster Service name seen from a laptop), through the Kubernetes API server's proxy of
/// that Service, with the user's kubeconfig.
#[derive(Clone)]
pub struct Artifacts {
    http: reqwest::Client,
    client: Client,
    token: Option<ArtifactToken>,
    kept: Arc<Mutex<HashMap<String, Arc<Vec<Manifest>>>>>,
    /// Artifact hosts that answered only through the proxy: tried that way first from then on.
    proxied: Arc<Mutex<HashSet<String>>>,
}

impl Artifacts {
    /// A downloader sending `token` when set, using `client` for the API server's proxy.
    pub fn new(client: Client, token: Option<ArtifactToken>) -> anyhow::Result<Self> {
        let http = plumb_artifact::auth::client_builder(token.as_ref())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(DOWNLOAD_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            client,
            token,
            kept: Arc::default(),
            proxied: Arc::default(),
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
        let bytes = self.download(url, digest).await?;
        let manifests =
            Arc::new(parse_gzip(&bytes).map_err(|e| format!("reading artifact {url}: {e}"))?);
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= KEPT {
            kept.clear();
        }
        kept.insert(digest.as_str().to_owned(), manifests.clone());
        Ok(manifests)
    }

    /// The verified bytes at `url`: directly, else through the API server's proxy of the
    /// Service the URL names.
    async fn download(&self, url: &str, digest: &Digest) -> Result<Vec<u8>, String> {
        let service = ServiceUrl::parse(url);
        let host = service.as_ref().map(|s| s.host.clone());
        let proxied_before = host.as_ref().is_some_and(|h| {
            self.proxied
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(h)
        });
        let mut proxy_failed = None;
        if let (Some(service), true) = (&service, proxied_before) {
            match self.through_proxy(service, digest).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) => proxy_failed = Some(e),
            }
        }
        let direct = match fetch_verified(&self.http, url, digest, MAX_ARTIFACT_BYTES).await {
            Ok(bytes) => return Ok(bytes),
            Err(e) => e,
        };
        let unreachable = matches!(&direct, FetchError::Http { source, .. }
            if source.is_connect() || source.is_timeout());
        let Some(service) = service.filter(|_| unreachable) else {
            return Err(self.explain(&direct));
        };
        let proxied = match proxy_failed {
            Some(e) => Err(e),
            None => self.through_proxy(&service, digest).await,
        };
        match proxied {
            Ok(bytes) => {
                tracing::info!(url, proxy = %service.proxy_path(), "the artifact server is reachable only through the API server's service proxy");
                if let Some(host) = host {
                    self.proxied
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(host);
                }
                Ok(bytes)
            }
            Err(proxied) => Err(format!(
                "{}; and through the Kubernetes API server's proxy of Service {}/{} ({}): {proxied}. \
                 plumb ui needs one of the two: run it where {} resolves and connects, or let your \
                 kubeconfig's user get services/proxy in namespace {} (and let the API server reach \
                 the render controller's artifact port, e.g. through its NetworkPolicy)",
                self.explain(&direct),
                service.namespace,
                service.name,
                service.proxy_path(),
                service.host,
                service.namespace,
            )),
        }
    }

    /// `e` with its causes, and what to do when the server asks for the token.
    fn explain(&self, e: &FetchError) -> String {
        let unauthorized = matches!(e, FetchError::Http { source, .. }
            if source.status() == Some(reqwest::StatusCode::UNAUTHORIZED));
        if unauthorized && self.token.is_none() {
            format!(
                "{e}: the artifact server asks for the controllers' token; start plumb ui with --artifact-token-secret=NAMESPACE/NAME (the controllers' flag)"
            )
        } else {
            with_causes(e)
        }
    }

    /// The verified bytes of the artifact through the API server's proxy of `service`, sending
    /// the token in the header the proxy passes on.
    async fn through_proxy(
        &self,
        service: &ServiceUrl,
        digest: &Digest,
    ) -> Result<Vec<u8>, String> {
        let mut request = Request::get(service.proxy_path());
        if let Some(token) = &self.token {
            request = request.header(TOKEN_HEADER, token.plain_header());
        }
        let request = request.body(Vec::new()).map_err(|e| e.to_string())?;
        let download = async {
            let body = self
                .client
                .request_stream(request)
                .await
                .map_err(|e| with_causes(&e))?;
            let mut bytes = Vec::new();
            futures::pin_mut!(body);
            body.take(MAX_ARTIFACT_BYTES + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| e.to_string())?;
            if bytes.len() as u64 > MAX_ARTIFACT_BYTES {
                return Err(format!("larger than {MAX_ARTIFACT_BYTES} bytes"));
            }
            Ok(bytes)
        };
        let bytes = tokio::time::timeout(DOWNLOAD_TIMEOUT, download)
            .await
            .map_err(|_| format!("no answer within {DOWNLOAD_TIMEOUT:?}"))??;
        verify_digest(&bytes, digest)
            .map_err(|actual| format!("digest mismatch: expected {digest}, got {actual}"))?;
        Ok(bytes)
    }
}

/// An artifact URL whose host is a Service's cluster DNS name
/// (`NAME.NAMESPACE.svc[.CLUSTER-DOMAIN][.]`), as the controllers in `config/` advertise.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceUrl {
    host: String,
    name: String,
    namespace: String,
    https: bool,
    port: u16,
    /// Path and query of the artifact on its server.
    path: String,
}

impl ServiceUrl {
    /// `None` when `url` names no Service.
    fn parse(url: &str) -> Option<Self> {
        let url = reqwest::Url::parse(url).ok()?;
        let host = url.host_str()?.to_owned();
        let labels: Vec<&str> = host.trim_end_matches('.').split('.').collect();
        let [name, namespace, "svc", ..] = labels.as_slice() else {
            return None;
        };
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        Some(Self {
            name: (*name).to_owned(),
            namespace: (*namespace).to_owned(),
            https,
            port: url.port_or_known_default()?,
            path,
            host,
        })
    }

    /// The API server path that proxies to the artifact.
    fn proxy_path(&self) -> String {
        let scheme = if self.https { "https:" } else { "" };
        format!(
            "/api/v1/namespaces/{}/services/{scheme}{}:{}/proxy{}",
            self.namespace, self.name, self.port, self.path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_url_maps_to_the_api_servers_proxy_of_that_service() {
        let cases = [
            (
                "http://render-controller.plumb-system.svc/sync/team/web/abc.yaml.gz",
                Some(
                    "/api/v1/namespaces/plumb-system/services/render-controller:80/proxy/sync/team/web/abc.yaml.gz",
                ),
            ),
            (
                "http://render-controller.plumb-system.svc.cluster.local.:9090/sync/a/b/c.gz",
                Some(
                    "/api/v1/namespaces/plumb-system/services/render-controller:9090/proxy/sync/a/b/c.gz",
                ),
            ),
            (
                "https://r.ops.svc.example.org/sync/a/b/c.gz?x=1",
                Some("/api/v1/namespaces/ops/services/https:r:443/proxy/sync/a/b/c.gz?x=1"),
            ),
            ("http://127.0.0.1:9090/sync/a/b/c.gz", None),
            ("http://artifacts.example.com/sync/a/b/c.gz", None),
            ("http://render.plumb-system/sync/a/b/c.gz", None),
            ("ftp://r.ops.svc/sync/a/b/c.gz", None),
        ];
        for (url, want) in cases {
            let got = ServiceUrl::parse(url).map(|s| s.proxy_path());
            assert_eq!(got.as_deref(), want, "{url}");
        }
    }
}
