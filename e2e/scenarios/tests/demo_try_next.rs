//! The demo's "Try next" steps, as `make demo` prints them (e2e/demo/up.sh), run as a user would
//! run them (the same git, sed and kubectl command lines) on the demo's own objects, at least two
//! minutes after the demo came up: a commit is applied, `kubectl scale` is healed, `git revert`
//! rolls back, an image tagged `latest` is blocked with the rule named in `kubectl get syncs`, and
//! `kubectl delete sync` removes what the Sync applied (`make demo` then brings it back).
//!
//! The demo runs on the local cluster (`PLUMB_CLUSTER_DIR`). A demo already running is used and
//! left running, back in the state it was in; one this test starts is stopped at the end (its
//! processes only: the cluster stays).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use plumb_api::{Conditions, Sync, condition_type};
use plumb_e2e_scenarios::demo::{Demo, NAMESPACE};
use plumb_e2e_support::{ready_at, wait_for};

const WAIT: Duration = Duration::from_secs(120);
/// How long the demo must have been up before the steps run: the time after which, on a flapping
/// cluster, its Syncs used to stop being Ready.
const SETTLED: Duration = Duration::from_secs(120);
/// Runs one "Try next" command line with bash in `dir`, as a user would in a terminal with
/// KUBECONFIG exported; returns what it printed.
fn user(dir: &Path, line: &str) -> String {
    let kubeconfig = plumb_e2e_support::default_kubeconfig_path();
    let out = Command::new("bash")
        .args(["-c", line])
        .current_dir(dir)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`{line}` failed: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The "annotate" step: reconcile the GitRepository now instead of at its 30 s interval.
fn request_fetch(work: &Path) {
    user(
        work,
        "kubectl annotate -n plumb-demo gitrepository/apps --overwrite plumb.dev/requested-at=$(date +%s%N)",
    );
}

fn head(work: &Path) -> String {
    user(work, "git rev-parse HEAD").trim().to_owned()
}

/// Runs a "Try next" line that commits and pushes, then the annotate step; returns the commit.
fn push(work: &Path, line: &str) -> String {
    user(work, line);
    request_fetch(work);
    head(work)
}

/// Waits until both demo Syncs are Ready at `commit` and prod greets with `greeting`.
async fn wait_both_applied(client: &Client, commit: &str, greeting: &str) {
    wait_applied(client, "greeter-dev", commit).await;
    wait_applied(client, "greeter-prod", commit).await;
    assert_eq!(
        prod_env(client, "GREETING").await.as_deref(),
        Some(greeting)
    );
}

/// Waits until Sync `name` is Ready with `commit` applied.
async fn wait_applied(client: &Client, name: &str, commit: &str) {
    let syncs: Api<Sync> = Api::namespaced(client.clone(), NAMESPACE);
    let what = format!("Sync {NAMESPACE}/{name} Ready at {commit}");
    wait_for(&what, WAIT, || {
        let syncs = syncs.clone();
        async move {
            let status = syncs.get(name).await?.status.unwrap_or_default();
            Ok::<_, kube::Error>(ready_at(&status, commit).then_some(()))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", demo_logs()));
}

/// The value of `key` in the ConfigMap the prod Deployment takes its environment from.
async fn prod_env(client: &Client, key: &str) -> Option<String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "greeter-prod");
    let greeter = deployments.get("greeter").await.unwrap();
    let pod = greeter.spec.unwrap().template.spec.unwrap();
    let config_map = pod.containers[0].env_from.as_ref()?[0]
        .config_map_ref
        .as_ref()?
        .name
        .clone();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "greeter-prod");
    config_maps
        .get(&config_map)
        .await
        .unwrap()
        .data?
        .get(key)
        .cloned()
}

async fn image(client: &Client, namespace: &str) -> String {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let greeter = deployments.get("greeter").await.unwrap();
    greeter.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

/// The last lines of the demo's controller logs, for failure messages.
fn demo_logs() -> String {
    plumb_e2e_scenarios::demo::logs_tail(20)
}

/// Waits until the demo's Syncs have been Ready for [`SETTLED`], and checks they still are.
async fn wait_settled(client: &Client) {
    let syncs: Api<Sync> = Api::namespaced(client.clone(), NAMESPACE);
    for name in ["greeter-dev", "greeter-prod"] {
        let sync = syncs.get(name).await.unwrap();
        let ready = sync
            .status
            .unwrap_or_default()
            .conditions
            .get_condition(condition_type::READY)
            .cloned()
            .unwrap_or_else(|| panic!("Sync {name} has no Ready condition"));
        assert_eq!(ready.status, "True", "Sync {name}: {}", ready.message);
        let since = ready.last_transition_time.0;
        let up_for =
            Duration::try_from(jiff::Timestamp::now().duration_since(since)).unwrap_or_default();
        let left = SETTLED.saturating_sub(up_for);
        if !left.is_zero() {
            eprintln!(
                "demo: Sync {name} Ready for {}s; waiting {}s more before the steps",
                up_for.as_secs(),
                left.as_secs()
            );
            tokio::time::sleep(left).await;
        }
    }
    for name in ["greeter-dev", "greeter-prod"] {
        let sync = syncs.get(name).await.unwrap();
        let conditions = sync.status.unwrap_or_default().conditions;
        assert!(
            conditions.is_true(condition_type::READY),
            "Sync {name} is no longer Ready after {SETTLED:?}: {:?}\n{}",
            conditions.get_condition(condition_type::READY),
            demo_logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_try_next_steps_apply_heal_roll_back_block_and_delete() {
    // The cluster (started if need be), then the demo on it; both idempotent.
    let client = plumb_e2e_support::client().await.unwrap();
    let demo = Demo::up().unwrap();
    let work = demo.dir().join("work");
    wait_settled(&client).await;

    // Start from the demo's own content, should an earlier run have stopped half-way.
    let examples = plumb_e2e_support::repo_root().join("examples/apps");
    user(&work, &format!("cp -r {}/. .", examples.display()));
    let start = if user(&work, "git status --porcelain").trim().is_empty() {
        head(&work)
    } else {
        let restore =
            "git add -A && git commit -qm 'back to examples/apps' && git push -q origin main";
        push(&work, restore)
    };
    wait_both_applied(&client, &start, "hello").await;

    // Commit a change → applied.
    let hi = push(
        &work,
        "sed -i 's/GREETING=hello$/GREETING=hi/' overlays/prod/kustomization.yaml \
         && git commit -qam 'say hi' && git push -q origin main",
    );
    wait_both_applied(&client, &hi, "hi").await;

    // Heal drift → back to the replicas Git declares.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "greeter-prod");
    let scaled = Instant::now();
    user(
        &work,
        "kubectl scale -n greeter-prod deployment/greeter --replicas=7",
    );
    wait_for("greeter-prod healed back to 3 replicas", WAIT, || {
        let deployments = deployments.clone();
        async move {
            let greeter = deployments.get("greeter").await?;
            let replicas = greeter.spec.and_then(|s| s.replicas);
            Ok::<_, kube::Error>((replicas == Some(3)).then_some(()))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", demo_logs()));
    eprintln!("demo: kubectl scale healed in {:?}", scaled.elapsed());

    // Roll back → the previous state.
    let reverted = push(
        &work,
        "git revert --no-edit HEAD && git push -q origin main",
    );
    wait_both_applied(&client, &reverted, "hello").await;

    // Be blocked → kubectl get syncs names the rule in greeter-dev's row; nothing is applied.
    push(
        &work,
        "sed -i 's/newTag: 1.1.0/newTag: latest/' overlays/dev/kustomization.yaml \
         && git commit -qam 'greeter: latest' && git push -q origin main",
    );
    let row = wait_for(
        "kubectl get syncs to show greeter-dev blocked by pinned-images",
        WAIT,
        || {
            let work = work.clone();
            async move {
                let table = user(&work, "kubectl get syncs -n plumb-demo");
                let row = table
                    .lines()
                    .find(|l| l.starts_with("greeter-dev "))
                    .map(str::to_owned);
                Ok::<_, std::convert::Infallible>(row.filter(|r| r.contains("pinned-images")))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", demo_logs()));
    let ready_column = row.split_whitespace().nth(2);
    assert_eq!(ready_column, Some("False"), "greeter-dev row: {row}");
    assert_eq!(
        image(&client, "greeter-dev").await,
        "registry.example.com/greeter:1.1.0"
    );
    assert_eq!(
        image(&client, "greeter-prod").await,
        "registry.example.com/greeter:1.0.0"
    );

    // Undo it: both Syncs Ready again, the demo as it was.
    let undone = push(
        &work,
        "git revert --no-edit HEAD && git push -q origin main",
    );
    wait_both_applied(&client, &undone, "hello").await;

    // Delete a Sync → what it applied is deleted with it; `make demo` brings it back.
    user(&work, "kubectl delete sync -n plumb-demo greeter-prod");
    wait_for(
        "greeter-prod's Deployment deleted with its Sync",
        WAIT,
        || {
            let deployments = deployments.clone();
            async move {
                let greeter = deployments.get_opt("greeter").await?;
                Ok::<_, kube::Error>(greeter.is_none().then_some(()))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", demo_logs()));
    demo.up_again().unwrap();
    wait_both_applied(&client, &undone, "hello").await;

    demo.stop_if_started().unwrap();
}
