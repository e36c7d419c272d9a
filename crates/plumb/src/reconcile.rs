//! `plumb reconcile`, `plumb suspend` and `plumb resume`: ask a controller to act now, or stop
//! and restart it acting on one object.

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use plumb_api::{Conditions, GitRepository, Sync, condition_type};
use serde_json::json;

use crate::kube_args::Target;

/// The kinds these commands act on.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A GitRepository.
    Source,
    /// A Sync.
    Sync,
}

/// Flags of `plumb reconcile`.
#[derive(clap::Args, Debug)]
pub struct ReconcileArgs {
    /// What to reconcile.
    #[arg(value_enum)]
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// Wait until the controller has handled the request, and say how it went.
    #[arg(long)]
    pub wait: bool,
    /// For a Sync: ask its GitRepository to fetch first.
    #[arg(long)]
    pub with_source: bool,
    /// How long to wait.
    #[arg(long, default_value = "5m")]
    pub timeout: plumb_api::Duration,
    #[command(flatten)]
    pub target: Target,
}

/// Flags of `plumb suspend` and `plumb resume`.
#[derive(clap::Args, Debug)]
pub struct SuspendArgs {
    /// What to suspend or resume.
    #[arg(value_enum)]
    pub kind: Kind,
    /// Its name.
    pub name: String,
    #[command(flatten)]
    pub target: Target,
}

/// The state of the object that tells whether a request was handled and how it went.
struct Observed {
    handled: Option<String>,
    conditions: Vec<Condition>,
}

async fn observe(
    client: &kube::Client,
    ns: &str,
    kind: Kind,
    name: &str,
) -> anyhow::Result<Observed> {
    Ok(match kind {
        Kind::Source => {
            let status = Api::<GitRepository>::namespaced(client.clone(), ns)
                .get(name)
                .await?
                .status
                .unwrap_or_default();
            Observed {
                handled: status.last_handled_reconcile_at,
                conditions: status.conditions,
            }
        }
        Kind::Sync => {
            let status = Api::<Sync>::namespaced(client.clone(), ns)
                .get(name)
                .await?
                .status
                .unwrap_or_default();
            Observed {
                handled: status.last_handled_reconcile_at,
                conditions: status.conditions,
            }
        }
    })
}

/// Merge-patches the GitRepository or Sync `ns/name` with `body`.
pub(crate) async fn patch(
    client: &kube::Client,
    ns: &str,
    kind: Kind,
    name: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let pp = PatchParams::default();
    match kind {
        Kind::Source => {
            Api::<GitRepository>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Merge(&body))
                .await?;
        }
        Kind::Sync => {
            Api::<Sync>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Merge(&body))
                .await?;
        }
    }
    Ok(())
}

/// The patch that asks for a reconcile, with `value` as `plumb.dev/requested-at`.
pub(crate) fn request(value: &str) -> serde_json::Value {
    json!({ "metadata": { "annotations": { plumb_api::REQUESTED_AT_ANNOTATION: value } } })
}

/// Sets `plumb.dev/requested-at` and, with `--wait`, follows the object until it is handled.
pub async fn reconcile(args: &ReconcileArgs) -> anyhow::Result<()> {
    let (client, ns) = args.target.connect().await?;
    let value = jiff::Timestamp::now().to_string();
    if args.kind == Kind::Sync && args.with_source {
        let sync = Api::<Sync>::namespaced(client.clone(), &ns)
            .get(&args.name)
            .await?;
        let source_ns = sync
            .spec
            .source_ref
            .namespace
            .clone()
            .unwrap_or_else(|| ns.clone());
        let source = &sync.spec.source_ref.name;
        patch(&client, &source_ns, Kind::Source, source, request(&value)).await?;
        println!("► asked GitRepository {source_ns}/{source} to fetch");
    }
    patch(&client, &ns, args.kind, &args.name, request(&value)).await?;
    println!(
        "► asked {:?} {ns}/{} to reconcile (requested-at {value})",
        args.kind, args.name
    );
    if !args.wait {
        return Ok(());
    }
    let deadline = Instant::now() + args.timeout.get();
    let mut last_line = String::new();
    loop {
        let observed = observe(&client, &ns, args.kind, &args.name).await?;
        let ready = observed.conditions.get_condition(condition_type::READY);
        let line = ready
            .map(|c| format!("{} {}: {}", c.status, c.reason, c.message))
            .unwrap_or_default();
        if line != last_line && !line.is_empty() {
            println!("◎ Ready={line}");
            last_line = line;
        }
        if observed.handled.as_deref() == Some(value.as_str()) {
            let reconciling = observed.conditions.is_true(condition_type::RECONCILING);
            match ready {
                Some(c) if c.status == "True" => {
                    println!(
                        "✔ {}",
                        if c.message.is_empty() {
                            &c.reason
                        } else {
                            &c.message
                        }
                    );
                    return Ok(());
                }
                Some(c) if c.status == "False" && !reconciling => {
                    anyhow::bail!(
                        "{:?} {ns}/{} is not Ready: {}: {}",
                        args.kind,
                        args.name,
                        c.reason,
                        c.message
                    )
                }
                _ => {}
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "timed out after {} waiting for {:?} {ns}/{} ({last_line})",
                args.timeout,
                args.kind,
                args.name
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The patch that sets `spec.suspend` to `suspend`.
pub(crate) fn suspend_patch(suspend: bool) -> serde_json::Value {
    json!({ "spec": { "suspend": suspend } })
}

/// Sets `spec.suspend` to `suspend`.
pub async fn set_suspend(args: &SuspendArgs, suspend: bool) -> anyhow::Result<()> {
    let (client, ns) = args.target.connect().await?;
    patch(&client, &ns, args.kind, &args.name, suspend_patch(suspend)).await?;
    let verb = if suspend { "suspended" } else { "resumed" };
    println!("✔ {:?} {ns}/{} {verb}", args.kind, args.name);
    Ok(())
}
