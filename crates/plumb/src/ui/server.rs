//! The HTTP side of `plumb ui`: the pages, the server-sent events that keep them live, the
//! action endpoint, and the checks in front of all of them (see [`super::guard`]).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt};
use kube::Client;
use kube::runtime::reflector::ObjectRef;
use maud::Markup;
use tokio::sync::watch;

use super::guard::Guard;
use super::model;
use super::pages::{self, Frame, SyncView};
use super::store::Store;
use super::tracker::Trackers;
use crate::reconcile::{self, Kind};

/// How many Events the Sync page lists.
const EVENTS_SHOWN: usize = 15;

/// Everything a request handler needs.
#[derive(Clone)]
pub struct App {
    /// The user's client.
    pub client: Client,
    /// The watched objects.
    pub store: Store,
    /// The Syncs whose objects are watched.
    pub trackers: Trackers,
    /// Host, origin and CSRF checks.
    pub guard: Arc<Guard>,
    /// The namespace shown, or all.
    pub scope: Option<String>,
}

/// Serves `app` on `listener` until Ctrl-C.
pub async fn serve(listener: tokio::net::TcpListener, app: App) -> anyhow::Result<()> {
    let (closing_tx, closing) = watch::channel(false);
    let router = Router::new()
        .route("/", get(overview))
        .route("/sync/{namespace}/{name}", get(sync_page))
        .route("/events", get(move |state| events(state, closing.clone())))
        .route("/action", post(action))
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", pages::CSS) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", pages::JS) }),
        )
        .layer(middleware::from_fn_with_state(app.clone(), guard_requests))
        .with_state(app);
    let shutdown = async move {
        let _ = tokio::signal::ctrl_c().await;
        // Ends the event streams, so the server's drain does not wait for open pages.
        let _ = closing_tx.send(true);
    };
    plumb_ops::server::serve(
        listener,
        router,
        plumb_ops::ServerLimits::default(),
        shutdown,
    )
    .await
    .map_err(|e| anyhow::anyhow!("serving: {e}"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Refuses requests that do not name this server in `Host`, and adds the headers that keep the
/// pages from being framed, sniffed or given scripts from elsewhere.
async fn guard_requests(State(app): State<App>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !app.guard.host_allowed(host) {
        return (
            StatusCode::FORBIDDEN,
            "plumb ui answers only requests addressed to its own host and port\n",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn scope_label(scope: Option<&str>) -> String {
    match scope {
        Some(ns) => format!("namespace {ns}"),
        None => "all namespaces".to_owned(),
    }
}

/// The header that tells the page's script which version of the cluster a fragment shows.
const VERSION_HEADER: &str = "x-plumb-version";

/// The whole page, or only its content when the page's script asks for it to swap in;
/// `version` is the store's version read before `content` was built.
fn respond(
    app: &App,
    headers: &HeaderMap,
    version: u64,
    title: &str,
    filter: bool,
    content: Markup,
) -> Response {
    if headers.contains_key("x-plumb-fragment") {
        return (
            [(VERSION_HEADER, version.to_string())],
            Html(content.into_string()),
        )
            .into_response();
    }
    let scope = scope_label(app.scope.as_deref());
    let frame = Frame {
        scope: &scope,
        csrf: app.guard.csrf(),
        version,
    };
    Html(pages::page(&frame, title, filter, content).into_string()).into_response()
}

async fn overview(State(app): State<App>, headers: HeaderMap) -> Response {
    let store = &app.store;
    let version = store.version();
    let labels = |sync: &plumb_api::Sync| model::namespace_labels(store, sync);
    let drifted = |ns: &str, name: &str| app.trackers.drifted(ns, name);
    let policies = store.policies();
    let o = model::overview(
        &store.repos.state(),
        &store.syncs.state(),
        policies.as_deref().map_err(String::as_str),
        &labels,
        &drifted,
    );
    let problems: Vec<(String, String)> = store
        .errors()
        .into_iter()
        .map(|(k, v)| (format!("watch of {k}"), v))
        .collect();
    respond(
        &app,
        &headers,
        version,
        "Overview",
        true,
        pages::overview(&o, &problems),
    )
}

async fn sync_page(
    State(app): State<App>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let store = &app.store;
    let version = store.version();
    let Some(sync) = store.syncs.get(&ObjectRef::new(&name).within(&namespace)) else {
        let what = format!("Sync {namespace}/{name}");
        let not_found = pages::not_found(&what);
        let mut response = respond(&app, &headers, version, &what, false, not_found);
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let source_ns = sync
        .spec
        .source_ref
        .namespace
        .clone()
        .unwrap_or_else(|| namespace.clone());
    let source_name = sync.spec.source_ref.name.clone();
    let source = store
        .repos
        .get(&ObjectRef::new(&source_name).within(&source_ns));
    let (objects, activity, tracked_problems) = app.trackers.with(&namespace, &name, |t| {
        (
            model::objects(&sync, t),
            t.activity.iter().cloned().collect::<Vec<_>>(),
            t.problems.clone(),
        )
    });
    let mut problems: Vec<(String, String)> = store
        .errors()
        .into_iter()
        .map(|(k, v)| (format!("watch of {k}"), v))
        .collect();
    problems.extend(tracked_problems);
    let mut events = store.sync_events.state();
    events.extend(store.repo_events.state());
    let events = model::recent_events(
        &events,
        &[
            ("Sync", &namespace, &name),
            ("GitRepository", &source_ns, &source_name),
        ],
        EVENTS_SHOWN,
    );
    let policies = store
        .policies()
        .ok()
        .map(|all| model::governing_names(&all, &model::namespace_labels(store, &sync), &sync));
    let view = SyncView {
        sync: &sync,
        chain: model::chain(&sync, source.as_deref()),
        findings: model::findings(&sync),
        objects,
        activity,
        events,
        problems,
        policies,
    };
    let title = format!("Sync {namespace}/{name}");
    respond(
        &app,
        &headers,
        version,
        &title,
        false,
        pages::sync_page(&view),
    )
}

/// A `change` event with the store's version at once, then whenever something the pages show
/// changed (several changes may arrive as one), until the server stops. The first event lets a
/// page catch up with changes made between its build and the stream's start (or while the
/// stream was reconnecting).
async fn events(
    State(app): State<App>,
    mut closing: watch::Receiver<bool>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut changes = app.store.subscribe();
    changes.mark_changed();
    let stream = futures::stream::unfold(changes, |mut changes| async move {
        changes.changed().await.ok()?;
        let n = *changes.borrow_and_update();
        Some((
            Ok(SseEvent::default().event("change").data(n.to_string())),
            changes,
        ))
    })
    .take_until(async move {
        let _ = closing.wait_for(|c| *c).await;
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// An action form: what to do to which object, with the page's CSRF token.
#[derive(serde::Deserialize)]
struct ActionForm {
    csrf: String,
    kind: String,
    namespace: String,
    name: String,
    verb: String,
}

async fn action(
    State(app): State<App>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<ActionForm>,
) -> Response {
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|h: &HeaderValue| h.to_str().ok())
    };
    if !app.guard.action_allowed(
        header_text(header::HOST),
        header_text(header::ORIGIN),
        &form.csrf,
    ) {
        return (
            StatusCode::FORBIDDEN,
            "refused: this action did not come from a page of this plumb ui\n",
        )
            .into_response();
    }
    let result = run_action(&app.client, &form).await;
    if headers.contains_key("x-plumb-action") {
        return match result {
            Ok(done) => (StatusCode::OK, done).into_response(),
            Err(e) => (StatusCode::BAD_GATEWAY, format!("{e:#}")).into_response(),
        };
    }
    match (result, form.kind.as_str()) {
        (Err(e), _) => (StatusCode::BAD_GATEWAY, format!("{e:#}\n")).into_response(),
        (Ok(_), "sync") => {
            Redirect::to(&format!("/sync/{}/{}", form.namespace, form.name)).into_response()
        }
        (Ok(_), _) => Redirect::to("/").into_response(),
    }
}

/// Does what the CLI's `reconcile`, `suspend` and `resume` do, with the user's client.
async fn run_action(client: &Client, form: &ActionForm) -> anyhow::Result<String> {
    let (kind, kind_name) = match form.kind.as_str() {
        "sync" => (Kind::Sync, "Sync"),
        "source" => (Kind::Source, "GitRepository"),
        other => anyhow::bail!("unknown kind {other:?} (sync or source)"),
    };
    let subject = format!("{kind_name} {}/{}", form.namespace, form.name);
    let done = match form.verb.as_str() {
        "reconcile" => {
            let value = jiff::Timestamp::now().to_string();
            reconcile::patch(
                client,
                &form.namespace,
                kind,
                &form.name,
                reconcile::request(&value),
            )
            .await
            .map_err(|e| anyhow::anyhow!("asking {subject} to reconcile: {e}"))?;
            format!("Asked {subject} to reconcile (requested-at {value}).")
        }
        verb @ ("suspend" | "resume") => {
            let suspend = verb == "suspend";
            reconcile::patch(
                client,
                &form.namespace,
                kind,
                &form.name,
                reconcile::suspend_patch(suspend),
            )
            .await
            .map_err(|e| anyhow::anyhow!("trying to {verb} {subject}: {e}"))?;
            format!(
                "{subject} {}.",
                if suspend { "suspended" } else { "resumed" }
            )
        }
        other => anyhow::bail!("unknown action {other:?} (reconcile, suspend or resume)"),
    };
    tracing::info!(action = %form.verb, object = %subject, "done");
    Ok(done)
}
