//! Who may download artifacts: only the plumb controllers, proven by a bearer token they share.
//!
//! A rendered artifact may hold Secrets, so the artifact servers (source and render) answer a
//! request only when it carries `Authorization: Bearer <token>` (or the token in
//! [`TOKEN_HEADER`], which passes through the API server's service proxy). The token lives in
//! a Secret (key [`TOKEN_KEY`]) that every controller reads at start-up, and the first one to
//! start creates with a random value, so `kubectl apply -k config/` alone sets it up. The
//! fetchers (render, sync) send it with every artifact request ([`client_builder`]).
//!
//! Without a configured Secret the servers answer everyone, as before, for single-machine and
//! development setups; a warning says so at start-up.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// The Secret key holding the token.
pub const TOKEN_KEY: &str = "token";

/// The name `config/` gives the shared Secret.
pub const DEFAULT_SECRET_NAME: &str = "plumb-artifact-token";

/// The request header that may carry the token instead of `Authorization`: the Kubernetes API
/// server's service proxy (how `plumb ui` reaches an artifact server from outside the cluster)
/// authenticates the user with `Authorization` and removes it, but passes this one on.
pub const TOKEN_HEADER: &str = "x-plumb-artifact-token";

/// The fewest characters a token may have (a generated one has 64).
pub const MIN_TOKEN_LEN: usize = 32;

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A token value is unusable.
    #[error("artifact token: {0}")]
    Invalid(String),
    /// The Secret could not be read or created.
    #[error("artifact token Secret {namespace}/{name}: {source}")]
    Kube {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// The Secret exists but holds no usable token.
    #[error("artifact token Secret {namespace}/{name}: {reason}")]
    BadSecret {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The operating system gave no random bytes.
    #[error("artifact token: no randomness: {0}")]
    Random(String),
}

/// The token the plumb controllers share. Its `Debug` form never shows the value.
#[derive(Clone)]
pub struct ArtifactToken(Arc<TokenInner>);

struct TokenInner {
    value: String,
    /// sha256 of the value: presented tokens are hashed and compared in constant time, so
    /// neither the content nor the length of the real one leaks through timing.
    hash: [u8; 32],
}

impl fmt::Debug for ArtifactToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ArtifactToken(<redacted>)")
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl ArtifactToken {
    /// A token from `value` (surrounding whitespace ignored): at least [`MIN_TOKEN_LEN`]
    /// printable ASCII characters without spaces, so it fits an HTTP header unchanged.
    pub fn new(value: &str) -> Result<Self, AuthError> {
        let value = value.trim();
        if value.len() < MIN_TOKEN_LEN {
            return Err(AuthError::Invalid(format!(
                "shorter than {MIN_TOKEN_LEN} characters"
            )));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::Invalid(
                "only printable ASCII characters without spaces are allowed".into(),
            ));
        }
        Ok(Self(Arc::new(TokenInner {
            value: value.to_owned(),
            hash: sha256(value.as_bytes()),
        })))
    }

    /// A fresh random token: 32 bytes from the operating system, hex-encoded.
    pub fn generate() -> Result<Self, AuthError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
        Self::new(&hex::encode(bytes))
    }

    /// Whether an `Authorization` header value proves the client holds this token:
    /// `Bearer <token>`, the scheme in any case (RFC 7235).
    pub fn accepts(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(presented) = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
        else {
            return false;
        };
        self.is(presented)
    }

    /// Whether a [`TOKEN_HEADER`] value is this token (the value alone, no scheme).
    pub fn accepts_plain(&self, value: Option<&HeaderValue>) -> bool {
        value
            .and_then(|v| v.to_str().ok())
            .is_some_and(|presented| self.is(presented.trim()))
    }

    fn is(&self, presented: &str) -> bool {
        bool::from(sha256(presented.as_bytes()).ct_eq(&self.0.hash))
    }

    /// The token as the value of a [`TOKEN_HEADER`] header, marked sensitive.
    pub fn plain_header(&self) -> HeaderValue {
        // `new` admits only visible ASCII, which is always a valid header value.
        let mut v = HeaderValue::from_str(&self.0.value).unwrap_or(HeaderValue::from_static(""));
        v.set_sensitive(true);
        v
    }

    /// The `Authorization` header a fetcher sends, marked sensitive so it is never logged.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        // `new` admits only visible ASCII, which is always a valid header value.
        if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", self.0.value)) {
            v.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, v);
        }
        headers
    }
}

/// `router` answering only requests that carry `token`, and everyone when there is none.
/// Every path is guarded, unknown ones too, so a client without the token cannot even learn
/// which artifacts exist.
pub fn require(router: Router, token: Option<ArtifactToken>) -> Router {
    match token {
        Some(token) => router.layer(middleware::from_fn_with_state(token, check)),
        None => router,
    }
}

async fn check(State(token): State<ArtifactToken>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if token.accepts(headers.get(header::AUTHORIZATION))
        || token.accepts_plain(headers.get(TOKEN_HEADER))
    {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                r#"Bearer realm="plumb-artifacts""#,
            )],
            "a plumb controller's artifact token is required\n",
        )
            .into_response()
    }
}

/// A `reqwest` client builder whose requests carry `token` (none when `None`). Fetchers of
/// artifacts build their client from it.
pub fn client_builder(token: Option<&ArtifactToken>) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    match token {
        Some(t) => builder.default_headers(t.headers()),
        None => builder,
    }
}

/// The Secret holding the token, as the `--artifact-token-secret` flag names it:
/// `[NAMESPACE/]NAME`; without a namespace, `$POD_NAMESPACE`, else the client's default
/// namespace (the pod's own, in a cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSecret {
    /// The namespace, when given.
    pub namespace: Option<String>,
    /// The Secret's name.
    pub name: String,
}

impl FromStr for TokenSecret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (namespace, name) = match s.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, s),
        };
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= 253
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if !valid(name) || namespace.is_some_and(|ns| !valid(ns)) {
            return Err(format!(
                "{s:?}: expected [NAMESPACE/]NAME of a Secret (lowercase letters, digits, '-', '.')"
            ));
        }
        Ok(Self {
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The token of `secret`, or `None` (with a warning: anyone reaching the artifact servers can
/// download every artifact) when no Secret is configured.
pub async fn load(
    client: &kube::Client,
    secret: Option<&TokenSecret>,
) -> Result<Option<ArtifactToken>, AuthError> {
    match secret {
        Some(s) => load_or_create(client, s).await.map(Some),
        None => {
            tracing::warn!(
                "no --artifact-token-secret: artifacts are served to, and fetched without, no credentials"
            );
            Ok(None)
        }
    }
}

/// Reads the token from `secret`, creating the Secret with a random token when it does not
/// exist. Controllers starting together agree: whoever loses the race to create it reads the
/// winner's.
pub async fn load_or_create(
    client: &kube::Client,
    secret: &TokenSecret,
) -> Result<ArtifactToken, AuthError> {
    let namespace = secret
        .namespace
        .clone()
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|ns| !ns.is_empty())
        })
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let name = secret.name.clone();
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &namespace);
    let kube_err = |source| AuthError::Kube {
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    };
    // Two rounds are enough: a create loses only to a Secret that then exists.
    for _ in 0..2 {
        if let Some(existing) = api.get_opt(&name).await.map_err(kube_err)? {
            return token_of(&existing).map_err(|reason| AuthError::BadSecret {
                namespace: namespace.clone(),
                name: name.clone(),
                reason,
            });
        }
        let token = ArtifactToken::generate()?;
        let new = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("app.kubernetes.io/part-of".to_owned(), "plumb".to_owned())].into()),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            immutable: Some(true),
            data: Some(
                [(
                    TOKEN_KEY.to_owned(),
                    ByteString(token.0.value.as_bytes().to_vec()),
                )]
                .into(),
            ),
            ..Secret::default()
        };
        match api.create(&PostParams::default(), &new).await {
            Ok(_) => {
                tracing::info!(secret = %format!("{namespace}/{name}"), "created the artifact token Secret");
                return Ok(token);
            }
            Err(kube::Error::Api(status)) if status.is_already_exists() => continue,
            Err(e) => return Err(kube_err(e)),
        }
    }
    Err(AuthError::BadSecret {
        namespace: namespace.clone(),
        name: name.clone(),
        reason: "created by another client, then gone before it could be read".into(),
    })
}

/// The token a Secret holds under [`TOKEN_KEY`] (`plumb ui` reads the controllers' Secret with it,
/// never creating one).
pub fn token_of(secret: &Secret) -> Result<ArtifactToken, String> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(TOKEN_KEY))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(TOKEN_KEY))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| format!("no key {TOKEN_KEY:?}"))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("key {TOKEN_KEY:?} is not UTF-8"))?;
    ArtifactToken::new(&text).map_err(|e| format!("key {TOKEN_KEY:?}: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn token() -> ArtifactToken {
        ArtifactToken::new(&"a".repeat(40)).unwrap()
    }

    fn header(v: &str) -> HeaderValue {
        HeaderValue::from_str(v).unwrap()
    }

    #[test]
    fn only_the_exact_bearer_token_is_accepted() {
        let t = token();
        let good = format!("Bearer {}", "a".repeat(40));
        let cases = [
            ("exact", Some(good.clone()), true),
            (
                "scheme in another case",
                Some(format!("bearer {}", "a".repeat(40))),
                true,
            ),
            ("no header", None, false),
            ("empty", Some(String::new()), false),
            ("scheme only", Some("Bearer".into()), false),
            (
                "other scheme",
                Some(format!("Basic {}", "a".repeat(40))),
                false,
            ),
            (
                "prefix of the token",
                Some(format!("Bearer {}", "a".repeat(39))),
                false,
            ),
            ("token with more after it", Some(format!("{good}a")), false),
            (
                "one character changed",
                Some(format!("Bearer {}b", "a".repeat(39))),
                false,
            ),
            ("token without scheme", Some("a".repeat(40)), false),
        ];
        for (what, value, accepted) in cases {
            let h = value.as_deref().map(header);
            assert_eq!(t.accepts(h.as_ref()), accepted, "{what}");
        }
    }

    #[test]
    fn weak_or_unprintable_tokens_are_refused() {
        assert!(ArtifactToken::new("short").is_err());
        assert!(ArtifactToken::new(&format!("{} {}", "a".repeat(20), "b".repeat(20))).is_err());
        assert!(ArtifactToken::new(&format!("{}é", "a".repeat(40))).is_err());
        let trimmed = ArtifactToken::new(&format!("  {}\n", "c".repeat(32))).unwrap();
        assert!(trimmed.accepts(Some(&header(&format!("Bearer {}", "c".repeat(32))))));
    }

    #[test]
    fn generated_tokens_are_long_random_and_never_printed() {
        let (a, b) = (
            ArtifactToken::generate().unwrap(),
            ArtifactToken::generate().unwrap(),
        );
        assert_eq!(a.0.value.len(), 64);
        assert_ne!(a.0.value, b.0.value);
        assert_eq!(format!("{a:?}"), "ArtifactToken(<redacted>)");
        let headers = a.headers();
        let auth = headers.get(header::AUTHORIZATION).unwrap();
        assert!(auth.is_sensitive());
        assert!(a.accepts(Some(auth)));
        assert!(!b.accepts(Some(auth)));
    }

    #[test]
    fn secret_names_parse_with_and_without_namespace() {
        assert_eq!(
            "plumb-system/plumb-artifact-token"
                .parse::<TokenSecret>()
                .unwrap(),
            TokenSecret {
                namespace: Some("plumb-system".into()),
                name: "plumb-artifact-token".into()
            }
        );
        let bare: TokenSecret = "plumb-artifact-token".parse().unwrap();
        assert_eq!(bare.namespace, None);
        assert_eq!(bare.to_string(), "plumb-artifact-token");
        for bad in ["", "/x", "ns/", "Upper", "a/b/c", "sp ace"] {
            assert!(bad.parse::<TokenSecret>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secrets_without_a_usable_token_are_explained() {
        let mut s = Secret::default();
        assert!(token_of(&s).unwrap_err().contains("no key"));
        s.data = Some([(TOKEN_KEY.to_owned(), ByteString(b"short".to_vec()))].into());
        assert!(token_of(&s).unwrap_err().contains("shorter than 32"));
        s.data = Some(
            [(
                TOKEN_KEY.to_owned(),
                ByteString("t".repeat(48).into_bytes()),
            )]
            .into(),
        );
        assert!(token_of(&s).is_ok());
    }

    /// The guard in front of a real server: 401 and no body of the artifact without the
    /// token, the artifact with it, and everything when no token is configured.
    #[tokio::test]
    async fn the_guard_answers_only_requests_with_the_token() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let app = || Router::new().route("/a/b/c/d", axum::routing::get(|| async { "artifact" }));
        let serve = |router: Router| async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, router).await });
            base
        };
        let t = token();
        let guarded = serve(require(app(), Some(t.clone()))).await;
        let open = serve(require(app(), None)).await;
        let plain = reqwest::Client::new();
        let authed = client_builder(Some(&t)).build().unwrap();

        let resp = plain
            .get(format!("{guarded}/a/b/c/d"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            resp.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            r#"Bearer realm="plumb-artifacts""#
        );
        assert_eq!(
            resp.text().await.unwrap(),
            "a plumb controller's artifact token is required\n"
        );
        let missing = plain
            .get(format!("{guarded}/no/such/file/here"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            missing.status(),
            StatusCode::UNAUTHORIZED,
            "unknown paths are guarded too"
        );

        let resp = authed
            .get(format!("{guarded}/a/b/c/d"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.text().await.unwrap(), "artifact");
        let missing = authed
            .get(format!("{guarded}/no/such/file/here"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);

        let resp = plain.get(format!("{open}/a/b/c/d")).send().await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "artifact");

        // The header that passes through the API server's service proxy.
        let resp = plain
            .get(format!("{guarded}/a/b/c/d"))
            .header(TOKEN_HEADER, t.plain_header())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.text().await.unwrap(), "artifact");
        let resp = plain
            .get(format!("{guarded}/a/b/c/d"))
            .header(TOKEN_HEADER, format!("{}b", "a".repeat(39)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
}
