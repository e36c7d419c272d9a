//! Push webhooks: `POST /hook/<id>` verified with the GitRepository's webhook token (GitHub
//! `X-Hub-Signature-256` HMAC-SHA256 over the body, or GitLab `X-Gitlab-Token`). A valid
//! delivery sets the `plumb.dev/requested-at` annotation, which makes the controller fetch at
//! once; an invalid one gets 401 and changes nothing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use plumb_api::{GitRepository, REQUESTED_AT_ANNOTATION};
use sha2::{Digest as _, Sha256};

/// The webhook path of a GitRepository: `/hook/<sha256 hex of "<namespace>/<name>" + token>`.
/// It is unguessable without the token and changes when the token is rotated.
pub fn hook_path(namespace: &str, name: &str, token: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("{namespace}/{name}").as_bytes());
    h.update(token.as_bytes());
    format!("/hook/{}", hex::encode(h.finalize()))
}

/// Whether a delivery carries a valid GitHub signature or GitLab token for `token`.
pub fn verify_delivery(headers: &HeaderMap, body: &[u8], token: &str) -> bool {
    if let Some(sig) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
    {
        let Some(Ok(expected)) = sig.strip_prefix("sha256=").map(hex::decode) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(token.as_bytes()) else {
            return false;
        };
        mac.update(body);
        // verify_slice compares in constant time.
        return mac.verify_slice(&expected).is_ok();
    }
    if let Some(given) = headers.get("x-gitlab-token").and_then(|v| v.to_str().ok()) {
        let (a, b) = (
            Sha256::digest(given.as_bytes()),
            Sha256::digest(token.as_bytes()),
        );
        // Comparing digests keeps the comparison independent of where the strings differ.
        return a
            .iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0;
    }
    false
}

/// The hooks the controller has registered: path → (namespace, name, token).
#[derive(Clone, Default)]
pub struct HookIndex(Arc<RwLock<HashMap<String, Hook>>>);

/// A registered hook: namespace, name and token of its GitRepository.
type Hook = (String, String, String);

impl HookIndex {
    /// Registers (or replaces) the hook of `namespace/name`; returns its path.
    pub fn register(&self, namespace: &str, name: &str, token: &str) -> String {
        let path = hook_path(namespace, name, token);
        if let Ok(mut m) = self.0.write() {
            m.retain(|_, (ns, n, _)| !(ns == namespace && n == name));
            m.insert(
                path.clone(),
                (namespace.to_owned(), name.to_owned(), token.to_owned()),
            );
        }
        path
    }

    /// Removes the hook of `namespace/name`.
    pub fn unregister(&self, namespace: &str, name: &str) {
        if let Ok(mut m) = self.0.write() {
            m.retain(|_, (ns, n, _)| !(ns == namespace && n == name));
        }
    }

    fn get(&self, path: &str) -> Option<(String, String, String)> {
        self.0.read().ok()?.get(path).cloned()
    }
}

#[derive(Clone)]
struct HookState {
    client: kube::Client,
    index: HookIndex,
    namespace: Option<String>,
    published: Arc<tokio::sync::OnceCell<Published>>,
}

/// A watch-fed cache of GitRepositories (for their `status.webhookPath`); the watch stops when
/// the last router holding it is dropped.
struct Published {
    store: reflector::Store<GitRepository>,
    watch: tokio::task::JoinHandle<()>,
}

impl Drop for Published {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

/// How long a delivery waits for the GitRepository cache's first listing.
const CACHE_READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The router serving `POST /hook/{id}`.
///
/// Hooks are found in `index` (filled by reconciles) or, on a replica that has not reconciled
/// the object (e.g. not the leader), by the `status.webhookPath` GitRepositories publish in
/// `namespace` (all namespaces when None), checked against the token in their Secret. That
/// second lookup reads a watch-fed cache started on first need: no request ever lists objects,
/// so unknown paths cost the API server nothing.
pub fn router(client: kube::Client, index: HookIndex, namespace: Option<String>) -> Router {
    Router::new()
        .route("/hook/{id}", post(receive))
        .with_state(HookState {
            client,
            index,
            namespace,
            published: Arc::default(),
        })
}

/// Whether `id` can be a hook id at all: 64 lowercase hex digits (see [`hook_path`]).
fn plausible_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl HookState {
    async fn published(&self) -> Option<&reflector::Store<GitRepository>> {
        let published = self
            .published
            .get_or_init(|| async {
                let api: Api<GitRepository> = match &self.namespace {
                    Some(ns) => Api::namespaced(self.client.clone(), ns),
                    None => Api::all(self.client.clone()),
                };
                let (store, writer) = reflector::store();
                let stream = watcher(api, watcher::Config::default().any_semantic())
                    .default_backoff()
                    .reflect(writer)
                    .for_each(|_| futures::future::ready(()));
                Published {
                    store,
                    watch: tokio::spawn(stream),
                }
            })
            .await;
        let ready = tokio::time::timeout(CACHE_READY_TIMEOUT, published.store.wait_until_ready());
        matches!(ready.await, Ok(Ok(()))).then_some(&published.store)
    }
}

/// Finds the GitRepository whose published webhook path is `path` and whose current token
/// still yields that path.
async fn lookup(s: &HookState, path: &str) -> Option<Hook> {
    if let Some(hook) = s.index.get(path) {
        return Some(hook);
    }
    let obj = s
        .published()
        .await?
        .state()
        .into_iter()
        .find(|o| o.status.as_ref().and_then(|st| st.webhook_path.as_deref()) == Some(path))?;
    let namespace = obj.metadata.namespace.clone()?;
    let name = obj.metadata.name.clone()?;
    let secret_name = obj.spec.webhook.as_ref()?.secret_ref.name.clone();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(s.client.clone(), &namespace);
    let secret = secrets.get_opt(&secret_name).await.ok()??;
    let token = secret
        .data?
        .get("token")
        .map(|t| String::from_utf8_lossy(&t.0).trim().to_owned())?;
    (hook_path(&namespace, &name, &token) == path).then(|| {
        s.index.register(&namespace, &name, &token);
        (namespace, name, token)
    })
}

/// Serves webhooks on `listener` (bound by the caller) under `limits` until `shutdown`
/// resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    client: kube::Client,
    index: HookIndex,
    namespace: Option<String>,
    limits: plumb_ops::ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving webhooks");
    plumb_ops::server::serve(listener, router(client, index, namespace), limits, shutdown).await
}

async fn receive(
    State(s): State<HookState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if !plausible_id(&id) {
        return StatusCode::NOT_FOUND;
    }
    let Some((namespace, name, token)) = lookup(&s, &format!("/hook/{id}")).await else {
        return StatusCode::NOT_FOUND;
    };
    if !verify_delivery(&headers, &body, &token) {
        tracing::warn!(%namespace, %name, "webhook delivery with an invalid signature refused");
        return StatusCode::UNAUTHORIZED;
    }
    let api: Api<GitRepository> = Api::namespaced(s.client, &namespace);
    let patch = serde_json::json!({
        "metadata": {"annotations": {REQUESTED_AT_ANNOTATION: jiff::Timestamp::now().to_string()}}
    });
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(%namespace, %name, "webhook delivery accepted, fetching now");
            StatusCode::ACCEPTED
        }
        Err(e) => {
            tracing::warn!(%namespace, %name, error = %e, "webhook could not request a reconcile");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github(body: &[u8], key: &str) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(body);
        let mut h = HeaderMap::new();
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        h.insert("x-hub-signature-256", sig.parse().unwrap());
        h
    }

    #[test]
    fn github_signature_must_match_body_and_token() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        assert!(verify_delivery(&github(body, "s3cret"), body, "s3cret"));
        assert!(!verify_delivery(&github(body, "wrong"), body, "s3cret"));
        assert!(!verify_delivery(
            &github(b"other", "s3cret"),
            body,
            "s3cret"
        ));
        let mut bad = HeaderMap::new();
        bad.insert("x-hub-signature-256", "sha256=zz".parse().unwrap());
        assert!(!verify_delivery(&bad, body, "s3cret"));
    }

    #[test]
    fn gitlab_token_must_equal_and_no_header_is_refused() {
        let mut h = HeaderMap::new();
        h.insert("x-gitlab-token", "s3cret".parse().unwrap());
        assert!(verify_delivery(&h, b"", "s3cret"));
        assert!(!verify_delivery(&h, b"", "s3cret2"));
        assert!(!verify_delivery(&HeaderMap::new(), b"", "s3cret"));
    }

    #[test]
    fn only_hex_ids_of_the_right_length_are_looked_up() {
        let path = hook_path("ns", "app", "t");
        assert!(plausible_id(path.trim_start_matches("/hook/")));
        assert!(!plausible_id("abc"));
        assert!(!plausible_id(&"g".repeat(64)));
        assert!(!plausible_id(&"A".repeat(64)));
        assert!(!plausible_id(&"a".repeat(65)));
    }

    #[test]
    fn hook_path_depends_on_object_and_token() {
        let a = hook_path("ns", "app", "t1");
        assert!(a.starts_with("/hook/") && a.len() == 6 + 64);
        assert_ne!(a, hook_path("ns", "app", "t2"));
        assert_ne!(a, hook_path("ns", "app2", "t1"));
        let idx = HookIndex::default();
        let p = idx.register("ns", "app", "t1");
        let p2 = idx.register("ns", "app", "t2");
        assert!(idx.get(&p).is_none() && idx.get(&p2).is_some());
        idx.unregister("ns", "app");
        assert!(idx.get(&p2).is_none());
    }
}
