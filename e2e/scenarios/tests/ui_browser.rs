//! `plumb ui` in a real headless Chromium against the local cluster and the three controllers:
//! the overview lists the objects, a `kubectl scale` shows as drift and then healed on the open
//! page without a reload, a suspended Sync shows the drifted fields as a diff, reconcile-now
//! (by keyboard) changes `lastHandledReconcileAt`, and a Policy denial names the rule and the
//! object; the overview of `make demo`'s namespace lists the demo's own objects; a user whose
//! RBAC allows one namespace only sees it live, and is told plainly that Policies cannot be
//! read until a ClusterRole lets them. Screenshots go to `<target>/tmp/ui-screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod browser;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use browser::Browser;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use plumb_api::{GitRepository, Sync};
use plumb_e2e_scenarios::demo::{self, Demo};
use plumb_e2e_scenarios::{ARTIFACT_TOKEN_SECRET, Controllers, GitFixture, SCOPE_LABEL};
use plumb_e2e_support::{PolicyRule, TestNamespace, Ui, ready_at, wait_for};
use serde_json::json;

/// Bound on the controllers reaching a state (a failure bound, not a timing assertion).
const WAIT: Duration = Duration::from_secs(90);
/// Bound on the page showing what the cluster already shows (a failure bound: the shared test
/// machine can be slow).
const PAGE: Duration = Duration::from_secs(90);

fn deployment(replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{ app: web }}
  template:
    metadata:
      labels: {{ app: web }}
    spec:
      containers:
        - name: main
          image: registry.example.com/web:1.0.0
"
    )
}

fn settings(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  value: \"{value}\"\n"
    )
}

/// `plumb ui -n NAMESPACE` with the tests' kubeconfig and the controllers' artifact token.
fn start_ui(namespace: &str) -> Ui {
    start_ui_with(
        namespace,
        &plumb_e2e_support::kubeconfig_path(),
        &[format!(
            "--artifact-token-secret={namespace}/{ARTIFACT_TOKEN_SECRET}"
        )],
    )
}

/// `plumb ui -n NAMESPACE FLAGS...` with the kubeconfig at `kubeconfig`, from a fresh build;
/// its log goes to a file beside the screenshots.
fn start_ui_with(namespace: &str, kubeconfig: &Path, flags: &[String]) -> Ui {
    let root = plumb_e2e_support::repo_root();
    // `plumb` runs `plumb-cli` beside it for everything but builds: both.
    let built = plumb_e2e_scenarios::cargo()
        .args(["build", "--quiet", "-p", "plumb", "--bins"])
        .current_dir(&root)
        .output()
        .expect("running cargo");
    assert!(
        built.status.success(),
        "building plumb failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let log = screenshot_dir().join(format!("plumb-ui-{namespace}.log"));
    let ui = Ui::start(
        &target.join("debug/plumb"),
        namespace,
        kubeconfig,
        flags,
        Some(&log),
    )
    .expect("starting plumb ui");
    eprintln!("plumb ui log: {}", log.display());
    ui
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shoot(browser: &Browser, name: &str) {
    let path = screenshot_dir().join(name);
    browser.screenshot(&path).await.unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Waits until the text of `selector` on the page satisfies `ok`, and returns it.
async fn page_shows(
    browser: &Browser,
    what: &str,
    selector: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let shown = wait_for(what, PAGE, || async {
        let text = browser.text(selector).await?;
        Ok::<_, String>(ok(&text).then_some(text))
    })
    .await;
    match shown {
        Ok(text) => text,
        Err(e) => {
            // The page as the user would see it, for the failure report (best effort).
            let now = browser.text("body").await.unwrap_or_default();
            let _ = browser
                .screenshot(&screenshot_dir().join("failure.png"))
                .await;
            panic!("{e}\npage now:\n{now}")
        }
    }
}

fn kubectl(args: &[&str]) {
    let out = Command::new("kubectl")
        .arg(format!(
            "--kubeconfig={}",
            plumb_e2e_support::kubeconfig_path().display()
        ))
        .args(args)
        .output()
        .expect("running kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Types `text` into the overview's filter box and tells whether the source section is hidden.
async fn filter_hides_source(browser: &Browser, text: &str) -> bool {
    let script = format!(
        "(() => {{ const f = document.getElementById('filter'); f.value = {}; f.dispatchEvent(new Event('input')); return document.querySelector('section.source').hidden; }})()",
        json!(text)
    );
    browser.eval(&script).await.unwrap() == json!(true)
}

/// Clicks what `selector` finds, as a pointer would.
async fn click(browser: &Browser, selector: &str) {
    let found = browser
        .eval(&format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.click(); return true; }})()",
            json!(selector)
        ))
        .await
        .unwrap();
    assert_eq!(found, json!(true), "nothing to click at {selector}");
}

async fn replicas(ns: &TestNamespace) -> i32 {
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = ns.api();
    let web = deployments.get("web").await.unwrap();
    web.spec.and_then(|s| s.replicas).unwrap_or(1)
}

async fn wait_replicas(ns: &TestNamespace, controllers: &Controllers, want: i32) {
    wait_for(
        &format!("Deployment web at {want} replicas"),
        WAIT,
        || async { Ok::<_, String>((replicas(ns).await == want).then_some(())) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controllers.logs_tail(30)));
}

/// What both tests of a namespace of their own start from: a Git repository with a Deployment
/// `web` and a ConfigMap `settings` under app/, the three controllers for the namespace, and a
/// GitRepository and a Sync, both `app`, the Sync Ready at the first commit.
struct App {
    git: GitFixture,
    controllers: Controllers,
    repos: Api<GitRepository>,
    syncs: Api<Sync>,
}

impl App {
    async fn synced(ns: &TestNamespace) -> Self {
        let git = GitFixture::new().await.unwrap();
        git.write(
            "app/kustomization.yaml",
            "resources:\n  - web.yaml\n  - settings.yaml\n",
        )
        .unwrap();
        git.write("app/web.yaml", &deployment(1)).unwrap();
        git.write("app/settings.yaml", &settings("one")).unwrap();
        let first = git.commit("web and settings").unwrap();
        let controllers = Controllers::start(ns.name()).unwrap();
        let repos: Api<GitRepository> = ns.api();
        repos
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
                    "metadata": { "name": "app" },
                    "spec": { "url": git.url(), "ref": { "branch": "main" }, "interval": "1h", "timeout": "10s" }
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let syncs: Api<Sync> = ns.api();
        syncs
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
                    "metadata": { "name": "app", "labels": { SCOPE_LABEL: ns.name() } },
                    "spec": { "sourceRef": { "kind": "GitRepository", "name": "app" }, "path": "./app",
                              "interval": "1h", "targetNamespace": ns.name(), "prune": true }
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        wait_for("Sync app Ready at the first commit", WAIT, || async {
            let sync = syncs.get("app").await.map_err(|e| e.to_string())?;
            let status = sync.status.unwrap_or_default();
            Ok::<_, String>(ready_at(&status, &first).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", controllers.logs_tail(30)));
        Self {
            git,
            controllers,
            repos,
            syncs,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ui_shows_objects_drift_heal_actions_and_denials_live_in_chromium() {
    let ns = TestNamespace::new("e2e-ui").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let rule = PolicyRule::deny(
        "no-forbidden-value",
        "ConfigMap",
        "object.data.value != 'forbidden'",
        "the value 'forbidden' is not allowed",
    );
    let policy_name = ns
        .apply_policy("values", rule.spec())
        .await
        .unwrap()
        .name_any();
    let App {
        git,
        controllers,
        repos,
        syncs,
    } = App::synced(&ns).await;

    let ui = start_ui(ns.name());
    let browser = Browser::launch(1280, 900).await.unwrap();
    let ns_name = ns.name().to_owned();

    // The overview lists the source, its Sync, the Policy governing it, and the counts.
    browser.open(&format!("{}/", ui.url())).await.unwrap();
    let overview = page_shows(&browser, "the overview to list the objects", "main", |t| {
        t.contains(&format!("GitRepository {ns_name}/app")) && t.contains(&policy_name)
    })
    .await;
    assert!(overview.contains(&format!("{ns_name}/app")), "{overview}");
    assert!(overview.contains("1 Ready"), "{overview}");
    assert!(overview.contains("./app"), "{overview}");
    // When the commit was made (status.commitTime, from the source controller).
    let committed = repos
        .get("app")
        .await
        .unwrap()
        .status
        .unwrap_or_default()
        .commit_time
        .expect("the source controller records the commit time");
    let shown = committed.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
    assert!(
        overview.contains("Committed") && overview.contains(&shown),
        "{shown} in {overview}"
    );
    page_shows(&browser, "the page to go live", "#live-status", |t| {
        t == "Live"
    })
    .await;
    shoot(&browser, "overview.png").await;
    // The filter box hides what does not match, and shows it again.
    assert!(filter_hides_source(&browser, "no-such-thing").await);
    assert!(!filter_hides_source(&browser, "app").await);

    // The Sync's page: the chain, the objects with health, in sync.
    browser
        .open(&format!("{}/sync/{ns_name}/app", ui.url()))
        .await
        .unwrap();
    let web_drift = format!("tr[data-object='{ns_name}_web_apps_Deployment'] td.drift");
    page_shows(&browser, "the Deployment in sync", &web_drift, |t| {
        t == "In sync"
    })
    .await;
    page_shows(&browser, "the page to go live", "#live-status", |t| {
        t == "Live"
    })
    .await;
    let chain = browser.text("ol.chain").await.unwrap();
    assert!(
        chain.contains("Source") && chain.contains("Render") && chain.contains("Health"),
        "{chain}"
    );
    // A mark that a reload would wipe out.
    browser
        .eval("window.plumbTestMark = 'same page'")
        .await
        .unwrap();

    // kubectl scale → drift, then the heal, on the open page.
    kubectl(&["scale", "-n", &ns_name, "deployment/web", "--replicas=3"]);
    let activity = page_shows(
        &browser,
        "the drift and its heal in the activity",
        "ol.activity",
        |t| t.contains("Drifted /spec/replicas") && t.contains("Healed"),
    )
    .await;
    assert!(
        activity.contains(&format!("Deployment {ns_name}/web")),
        "{activity}"
    );
    wait_replicas(&ns, &controllers, 1).await;
    page_shows(&browser, "the Deployment in sync again", &web_drift, |t| {
        t == "In sync"
    })
    .await;
    assert_eq!(
        browser.eval("window.plumbTestMark").await.unwrap(),
        json!("same page"),
        "the page was reloaded"
    );
    shoot(&browser, "sync-drift-healed.png").await;

    // Suspend from the page (confirm dialog), then drift stays and shows as a diff.
    click(&browser, "button.action[data-verb='suspend']").await;
    assert_eq!(
        browser
            .eval("document.getElementById('confirm').open")
            .await
            .unwrap(),
        json!(true)
    );
    click(&browser, "#confirm button[type=submit]").await;
    // Suspended once the sync controller has seen it (it records the generation it saw):
    // a drift event it handled before would otherwise still be corrected.
    wait_for(
        "the sync controller to see the Sync suspended",
        WAIT,
        || async {
            let sync = syncs.get("app").await.map_err(|e| e.to_string())?;
            let seen = sync.status.and_then(|s| s.observed_generation);
            let suspended = sync.spec.suspend && seen.is_some() && seen == sync.metadata.generation;
            Ok::<_, String>(suspended.then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controllers.logs_tail(30)));
    page_shows(&browser, "the Resume button", "div.actions", |t| {
        t.contains("Resume")
    })
    .await;
    kubectl(&["scale", "-n", &ns_name, "deployment/web", "--replicas=4"]);
    page_shows(&browser, "the drifted Deployment", &web_drift, |t| {
        t.starts_with("Drifted")
    })
    .await;
    click(&browser, &format!("{web_drift} summary")).await;
    let diff = page_shows(
        &browser,
        "the drift diff",
        &format!("{web_drift} pre.diff"),
        |t| !t.is_empty(),
    )
    .await;
    assert!(diff.contains("- /spec/replicas: 1"), "{diff}");
    assert!(diff.contains("+ /spec/replicas: 4"), "{diff}");
    assert_eq!(replicas(&ns).await, 4, "a suspended Sync corrected drift");
    shoot(&browser, "sync-drift-diff.png").await;

    // Resume from the page: the heal follows.
    click(&browser, "button.action[data-verb='resume']").await;
    click(&browser, "#confirm button[type=submit]").await;
    wait_replicas(&ns, &controllers, 1).await;
    page_shows(
        &browser,
        "the Deployment healed after resume",
        &web_drift,
        |t| t == "In sync",
    )
    .await;

    // Reconcile now, with the keyboard only: focus the button, Enter opens the dialog, Enter
    // confirms.
    let before = syncs
        .get("app")
        .await
        .unwrap()
        .status
        .unwrap_or_default()
        .last_handled_reconcile_at;
    browser
        .eval("document.querySelector(\"button.action[data-verb='reconcile'][data-kind='sync']\").focus()")
        .await
        .unwrap();
    browser.press("Enter", false).await.unwrap();
    assert_eq!(
        browser
            .eval("document.getElementById('confirm').open")
            .await
            .unwrap(),
        json!(true)
    );
    browser.press("Enter", false).await.unwrap();
    let handled = wait_for("lastHandledReconcileAt to change", WAIT, || async {
        let sync = syncs.get("app").await.map_err(|e| e.to_string())?;
        let now = sync.status.unwrap_or_default().last_handled_reconcile_at;
        Ok::<_, String>(now.filter(|n| Some(n) != before.as_ref()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controllers.logs_tail(30)));
    page_shows(
        &browser,
        "the new lastHandledReconcileAt",
        "#last-handled",
        |t| t == handled,
    )
    .await;
    page_shows(&browser, "the action's notice", "#notice", |t| {
        t.contains("Asked Sync")
    })
    .await;

    // A commit a Deny rule refuses: the page names the rule and the object.
    git.write("app/settings.yaml", &settings("forbidden"))
        .unwrap();
    git.commit("a forbidden value").unwrap();
    repos
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": { plumb_api::REQUESTED_AT_ANNOTATION: "forbidden" } } })),
        )
        .await
        .unwrap();
    page_shows(&browser, "the Policy denial", "main", |t| {
        t.contains("Policy findings")
            && t.contains("no-forbidden-value")
            && t.contains("PolicyViolation")
    })
    .await;
    let table = browser.text("table.findings").await.unwrap();
    assert!(table.contains("Deny"), "{table}");
    assert!(table.contains(&policy_name), "{table}");
    assert!(table.contains("settings"), "{table}");
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = ns.api();
    let kept = config_maps
        .get("settings")
        .await
        .unwrap()
        .data
        .unwrap_or_default();
    assert_eq!(kept["value"], "one", "the denied revision was applied");
    shoot(&browser, "sync-policy-denial.png").await;
    assert_eq!(
        browser.eval("window.plumbTestMark").await.unwrap(),
        json!("same page"),
        "the page was reloaded"
    );
}

/// The name of the Policy `make demo` applies (examples/clusters/local/policy.yaml).
fn demo_policy_name() -> String {
    let path = plumb_e2e_support::repo_root().join("examples/clusters/local/policy.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let policy: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    policy["metadata"]["name"].as_str().unwrap().to_owned()
}

/// The overview row of Sync `namespace/name`.
fn sync_row(namespace: &str, name: &str) -> String {
    format!("tr:has(a[href='/sync/{namespace}/{name}'])")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_lists_the_demos_own_objects_in_sync() {
    // The demo as `make demo` brings it up (its objects made by e2e/demo/up.sh from examples/),
    // then `plumb ui -n plumb-demo` as its "Try next" prints it (its controllers ask for no
    // artifact token).
    let demo = Demo::up().unwrap();
    let client = plumb_e2e_support::client().await.unwrap();
    let repos: Vec<GitRepository> = Api::namespaced(client.clone(), demo::NAMESPACE)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let syncs: Vec<Sync> = Api::namespaced(client.clone(), demo::NAMESPACE)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    assert!(
        !repos.is_empty() && !syncs.is_empty(),
        "the demo made no GitRepository or Sync in {}",
        demo::NAMESPACE
    );
    let policy = demo_policy_name();
    let ui = start_ui_with(demo::NAMESPACE, &plumb_e2e_support::kubeconfig_path(), &[]);
    let browser = Browser::launch(1280, 900).await.unwrap();

    // Every GitRepository and Sync of the demo, every Sync Ready, and the demo's Policy.
    browser.open(&format!("{}/", ui.url())).await.unwrap();
    let ready = format!("{} Ready", syncs.len());
    let overview = page_shows(
        &browser,
        "the overview to list the demo's objects",
        "main",
        |t| {
            t.contains(&ready)
                && t.contains(&policy)
                && repos.iter().all(|r| {
                    t.contains(&format!(
                        "GitRepository {}/{}",
                        demo::NAMESPACE,
                        r.name_any()
                    ))
                })
                && syncs
                    .iter()
                    .all(|s| t.contains(&format!("{}/{}", demo::NAMESPACE, s.name_any())))
        },
    )
    .await;
    assert!(
        overview.contains(&format!("{} Syncs", syncs.len())),
        "{overview}"
    );
    for repo in &repos {
        let artifact = repo.status.as_ref().and_then(|s| s.artifact.as_ref());
        let commit = artifact
            .map(|a| a.revision.commit().to_owned())
            .unwrap_or_default();
        assert!(
            commit.len() >= 12 && overview.contains(&commit[..12]),
            "the revision of GitRepository {} ({commit}) in {overview}",
            repo.name_any()
        );
    }
    for sync in &syncs {
        // Its path, and the demo's Policy governing it (the namespace's plumb.dev/demo label).
        let row = browser
            .text(&sync_row(demo::NAMESPACE, &sync.name_any()))
            .await
            .unwrap();
        assert!(row.contains(&sync.spec.path), "{row}");
        assert!(row.contains(&policy), "{row}");
    }
    page_shows(&browser, "the page to go live", "#live-status", |t| {
        t == "Live"
    })
    .await;
    shoot(&browser, "demo-overview.png").await;

    // Each Sync's page: every object it applied, healthy and in sync with what it applied.
    for sync in &syncs {
        let name = sync.name_any();
        browser
            .open(&format!("{}/sync/{}/{name}", ui.url(), demo::NAMESPACE))
            .await
            .unwrap();
        let inventory = sync
            .status
            .as_ref()
            .and_then(|s| s.inventory.clone())
            .unwrap_or_default();
        assert!(!inventory.is_empty(), "Sync {name} applied nothing");
        for entry in inventory {
            let id = entry.object_id().unwrap();
            let row = format!("tr[data-object='{id}']");
            page_shows(
                &browser,
                &format!("{id} in sync"),
                &format!("{row} td.drift"),
                |t| t == "In sync",
            )
            .await;
            page_shows(
                &browser,
                &format!("{id} healthy"),
                &format!("{row} td.health"),
                |t| t.starts_with("Current"),
            )
            .await;
        }
        page_shows(&browser, "the page to go live", "#live-status", |t| {
            t == "Live"
        })
        .await;
        shoot(&browser, &format!("demo-sync-{name}.png")).await;
    }
    drop(browser);
    drop(ui);
    demo.stop_if_started().unwrap();
}

/// A copy of the tests' kubeconfig whose users act as `user` (`as:`: the API server applies
/// that user's RBAC to every request), written into `dir`.
fn impersonating_kubeconfig(dir: &Path, user: &str) -> PathBuf {
    let admin = std::fs::read_to_string(plumb_e2e_support::kubeconfig_path()).unwrap();
    let mut config: serde_yaml::Value = serde_yaml::from_str(&admin).unwrap();
    for entry in config["users"].as_sequence_mut().unwrap() {
        entry["user"]["as"] = serde_yaml::Value::String(user.to_owned());
    }
    let path = dir.join(format!("{user}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

/// Runs kubectl with the tests' kubeconfig and tells whether it succeeded, with what it printed.
fn kubectl_try(args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .arg(format!(
            "--kubeconfig={}",
            plumb_e2e_support::kubeconfig_path().display()
        ))
        .args(args)
        .output()
        .expect("running kubectl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_limited_to_one_namespace_sees_it_live_and_is_told_policies_are_not_readable() {
    let ns = TestNamespace::new("e2e-ui-limited").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let ns_name = ns.name().to_owned();
    let user = format!("{ns_name}-reader");
    // What a team member gets in their namespace: its plumb objects (and the actions on them),
    // its workloads and Events to read, its own Namespace and the artifact token Secret to get.
    ns.apply_yaml(
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{ name: ui-reader }}
rules:
  - {{ apiGroups: [source.plumb.dev], resources: [gitrepositories], verbs: [get, list, watch, patch] }}
  - {{ apiGroups: [sync.plumb.dev], resources: [syncs], verbs: [get, list, watch, patch] }}
  - {{ apiGroups: [''], resources: [events, configmaps], verbs: [get, list, watch] }}
  - {{ apiGroups: [apps], resources: [deployments], verbs: [get, list, watch] }}
  - {{ apiGroups: [''], resources: [namespaces], resourceNames: [{ns_name}], verbs: [get] }}
  - {{ apiGroups: [''], resources: [secrets], resourceNames: [{ARTIFACT_TOKEN_SECRET}], verbs: [get] }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{ name: ui-reader }}
roleRef: {{ apiGroup: rbac.authorization.k8s.io, kind: Role, name: ui-reader }}
subjects:
  - {{ apiGroup: rbac.authorization.k8s.io, kind: User, name: {user} }}
"
        ),
        "plumb-e2e",
    )
    .await
    .unwrap();
    // The premise: nothing cluster-wide for this user.
    for what in [
        ["get", "syncs", "-A"],
        ["get", "namespaces", "-A"],
        ["get", "policies", "-A"],
    ] {
        let (allowed, said) = kubectl_try(&[&what[..], &["--as", &user]].concat());
        assert!(
            !allowed && said.contains("forbidden"),
            "{what:?} as {user}: {said}"
        );
    }
    let rule = PolicyRule::warn(
        "named",
        "ConfigMap",
        "has(object.metadata.name)",
        "objects have names",
    );
    let policy_name = ns
        .apply_policy("limited", rule.spec())
        .await
        .unwrap()
        .name_any();

    // The Git server and the controllers live as long as `app`.
    let app = App::synced(&ns).await;

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = impersonating_kubeconfig(dir.path(), &user);
    let ui = start_ui_with(
        &ns_name,
        &kubeconfig,
        &[format!(
            "--artifact-token-secret={ns_name}/{ARTIFACT_TOKEN_SECRET}"
        )],
    );
    let browser = Browser::launch(1280, 900).await.unwrap();

    // The overview: the namespace's objects, and plainly that Policies cannot be read.
    browser.open(&format!("{}/", ui.url())).await.unwrap();
    page_shows(&browser, "the overview to list the objects", "main", |t| {
        t.contains(&format!("GitRepository {ns_name}/app")) && t.contains("1 Ready")
    })
    .await;
    let unreadable = page_shows(
        &browser,
        "the Policies said to be unreadable",
        "#policies-unreadable",
        |t| t.contains("cluster-scoped"),
    )
    .await;
    assert!(
        unreadable.contains("may not") && unreadable.contains(&user),
        "{unreadable}"
    );
    let row = browser.text(&sync_row(&ns_name, "app")).await.unwrap();
    assert!(row.contains("not readable"), "{row}");
    // Policies are all this user may not see here: nothing of the namespace is refused.
    let problems = browser.text("section.problems").await.unwrap();
    assert!(problems.contains("watch of Policies"), "{problems}");
    assert_eq!(problems.matches("may not").count(), 1, "{problems}");
    page_shows(&browser, "the page to go live", "#live-status", |t| {
        t == "Live"
    })
    .await;
    shoot(&browser, "limited-overview.png").await;

    // The Sync's page: its objects watched in the namespace, live.
    browser
        .open(&format!("{}/sync/{ns_name}/app", ui.url()))
        .await
        .unwrap();
    for id in [
        format!("{ns_name}_web_apps_Deployment"),
        format!("{ns_name}_settings__ConfigMap"),
    ] {
        page_shows(
            &browser,
            &format!("{id} in sync"),
            &format!("tr[data-object='{id}'] td.drift"),
            |t| t == "In sync",
        )
        .await;
    }
    page_shows(&browser, "the page to go live", "#live-status", |t| {
        t == "Live"
    })
    .await;
    let problems = browser.text("section.problems").await.unwrap();
    assert_eq!(problems.matches("may not").count(), 1, "{problems}");
    kubectl(&["scale", "-n", &ns_name, "deployment/web", "--replicas=3"]);
    page_shows(
        &browser,
        "the drift and its heal in the activity",
        "ol.activity",
        |t| t.contains("Drifted /spec/replicas") && t.contains("Healed"),
    )
    .await;
    wait_replicas(&ns, &app.controllers, 1).await;
    assert_eq!(browser.text("#governing").await.unwrap(), "not readable");

    // Allowed to read Policies (a ClusterRole): the open page shows the one governing the
    // Sync (by its namespace's labels, read with a get the Role allows).
    let reader = format!("{ns_name}-policy-reader");
    ns.apply_cluster::<ClusterRole>(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": reader },
        "rules": [{ "apiGroups": ["policy.plumb.dev"], "resources": ["policies"], "verbs": ["get", "list", "watch"] }]
    }))
    .await
    .unwrap();
    ns.apply_cluster::<ClusterRoleBinding>(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": { "name": reader },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": reader },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }]
    }))
    .await
    .unwrap();
    page_shows(&browser, "the governing Policy", "#governing", |t| {
        t == policy_name
    })
    .await;
    shoot(&browser, "limited-sync.png").await;
    browser.open(&format!("{}/", ui.url())).await.unwrap();
    page_shows(&browser, "the Policies table", "table.policies", |t| {
        t.contains(&policy_name)
    })
    .await;
    let row = browser.text(&sync_row(&ns_name, "app")).await.unwrap();
    assert!(row.contains(&policy_name), "{row}");
    assert_eq!(
        browser
            .eval("document.getElementById('policies-unreadable') === null")
            .await
            .unwrap(),
        json!(true),
        "the Policies are still said to be unreadable"
    );
}
