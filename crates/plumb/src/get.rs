//! `plumb get`: GitRepositories, the Syncs that use them and the Policies governing them, as a
//! tree with revisions, readiness, reasons and drift.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams};
use plumb_api::{Conditions, GitRepository, Policy, Sync, condition_type};

use crate::kube_args::Target;

/// Flags of `plumb get`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub target: Target,
}

/// Prints the tree.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let (client, namespace) = args.target.connect().await?;
    let (repos, syncs): (Api<GitRepository>, Api<Sync>) = if args.all_namespaces {
        (Api::all(client.clone()), Api::all(client.clone()))
    } else {
        (
            Api::namespaced(client.clone(), &namespace),
            Api::namespaced(client.clone(), &namespace),
        )
    };
    let lp = ListParams::default();
    let repos = repos.list(&lp).await?.items;
    let syncs = syncs.list(&lp).await?.items;
    let policies = Api::<Policy>::all(client)
        .list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    print!("{}", render_tree(&repos, &syncs, &policies));
    Ok(())
}

/// One line of state: `Ready`, or `NotReady <Reason>: <message>`, or `Unknown`.
fn state(conditions: &[Condition], suspended: bool) -> String {
    let ready = conditions.iter().find(|c| c.type_ == condition_type::READY);
    let text = match ready {
        Some(c) if c.status == "True" => "Ready".to_owned(),
        Some(c) if c.status == "False" => format!("NotReady {}: {}", c.reason, c.message),
        Some(c) => format!("Progressing {}: {}", c.reason, c.message),
        None => "Unknown (not reconciled yet)".to_owned(),
    };
    if suspended {
        format!("{text} (suspended)")
    } else {
        text
    }
}

fn short(revision: Option<String>) -> String {
    match revision {
        None => "-".into(),
        Some(r) => match r.rsplit_once("@sha1:") {
            Some((name, sha)) => format!("{name}@{}", &sha[..sha.len().min(12)]),
            None => r.replace("sha1:", "").chars().take(12).collect(),
        },
    }
}

/// The tree as text: sources, each with the Syncs that use it; Syncs whose source is missing;
/// then Policies.
pub fn render_tree(repos: &[GitRepository], syncs: &[Sync], policies: &[Policy]) -> String {
    let mut out = String::new();
    let mut by_source: BTreeMap<(String, String), Vec<&Sync>> = BTreeMap::new();
    for sync in syncs {
        let ns = sync.metadata.namespace.clone().unwrap_or_default();
        let source_ns = sync.spec.source_ref.namespace.clone().unwrap_or(ns);
        by_source
            .entry((source_ns, sync.spec.source_ref.name.clone()))
            .or_default()
            .push(sync);
    }
    for repo in repos {
        let ns = repo.metadata.namespace.clone().unwrap_or_default();
        let name = repo.metadata.name.clone().unwrap_or_default();
        let status = repo.status.clone().unwrap_or_default();
        let revision = status.artifact.map(|a| a.revision.to_string());
        let _ = writeln!(
            out,
            "GitRepository {ns}/{name}  {}  {}",
            short(revision),
            state(&status.conditions, repo.spec.suspend)
        );
        for sync in by_source.remove(&(ns, name)).unwrap_or_default() {
            write_sync(&mut out, sync, "  └─ ");
        }
    }
    for ((ns, name), orphans) in by_source {
        let _ = writeln!(out, "GitRepository {ns}/{name}  (not found)");
        for sync in orphans {
            write_sync(&mut out, sync, "  └─ ");
        }
    }
    for policy in policies {
        let status = policy.status.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "Policy {}  {} rules, governs {} Syncs  {}",
            policy.metadata.name.clone().unwrap_or_default(),
            policy.spec.rules.len(),
            status.governed_syncs.unwrap_or(0),
            state(&status.conditions, policy.spec.suspend)
        );
    }
    if out.is_empty() {
        out.push_str("No GitRepositories, Syncs or Policies found.\n");
    }
    out
}

fn write_sync(out: &mut String, sync: &Sync, prefix: &str) {
    let status = sync.status.clone().unwrap_or_default();
    let render = status.render.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "{prefix}Sync {}/{} path {}  rendered {}  applied {}  {}",
        sync.metadata.namespace.clone().unwrap_or_default(),
        sync.metadata.name.clone().unwrap_or_default(),
        sync.spec.path,
        short(render.source_revision.map(|r| r.to_string())),
        short(status.last_applied_revision.map(|r| r.to_string())),
        state(&status.conditions, sync.spec.suspend)
    );
    let pad = " ".repeat(prefix.chars().count());
    if let Some(c) = status
        .conditions
        .get_condition(condition_type::RENDERED)
        .filter(|c| c.status == "False")
    {
        let _ = writeln!(out, "{pad}render: {}: {}", c.reason, c.message);
    }
    if let Some(c) = status
        .conditions
        .get_condition(condition_type::HEALTHY)
        .filter(|c| c.status != "True")
    {
        let _ = writeln!(out, "{pad}health: {}: {}", c.reason, c.message);
    }
    let objects = status.inventory.as_ref().map_or(0, Vec::len);
    let _ = write!(out, "{pad}{objects} objects");
    if let Some(drift) = &status.drift {
        let _ = write!(out, ", {} drift corrections", drift.corrections);
        if !drift.objects.is_empty() {
            let _ = write!(out, ", drifted now: {}", drift.objects.join(", "));
        }
    }
    if let Some(policy) = render.policy.filter(|p| !p.warnings.is_empty()) {
        let _ = write!(out, ", {} policy warnings", policy.warnings.len());
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn tree_nests_syncs_under_their_source_and_shows_why_not_ready() {
        let repo: GitRepository = serde_json::from_value(json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
            "metadata": { "name": "apps", "namespace": "team" },
            "spec": { "url": "https://example.com/apps.git" },
            "status": {
                "artifact": { "revision": format!("main@sha1:{SHA}"), "digest": format!("sha256:{}", "a".repeat(64)),
                              "url": "http://x", "lastUpdateTime": "2026-01-01T00:00:00Z" },
                "conditions": [{ "type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                                 "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z" }]
            }
        }))
        .unwrap();
        let sync: Sync = serde_json::from_value(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": { "name": "prod", "namespace": "team" },
            "spec": { "sourceRef": { "kind": "GitRepository", "name": "apps" }, "path": "./prod" },
            "status": { "conditions": [
                { "type": "Ready", "status": "False", "reason": "PolicyViolation", "message": "blocked",
                  "lastTransitionTime": "2026-01-01T00:00:00Z" },
                { "type": "Rendered", "status": "False", "reason": "PolicyViolation",
                  "message": "Deployment team/web breaks rule pinned-images", "lastTransitionTime": "2026-01-01T00:00:00Z" }
            ] }
        }))
        .unwrap();
        let orphan: Sync = serde_json::from_value(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": { "name": "lost", "namespace": "team" },
            "spec": { "sourceRef": { "kind": "GitRepository", "name": "gone" } }
        }))
        .unwrap();
        let text = render_tree(&[repo], &[sync, orphan], &[]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "GitRepository team/apps  main@0123456789ab  Ready"
        );
        assert!(lines[1].starts_with("  └─ Sync team/prod path ./prod  rendered -  applied -  NotReady PolicyViolation: blocked"), "{text}");
        assert!(
            lines[2]
                .contains("render: PolicyViolation: Deployment team/web breaks rule pinned-images"),
            "{text}"
        );
        assert!(
            text.contains("GitRepository team/gone  (not found)\n  └─ Sync team/lost"),
            "{text}"
        );
    }
}
