//! What the pages show, as plain data built from the watched objects: the overview of sources,
//! Syncs and Policies, and one Sync's chain, objects, findings, history and Events. Deciding
//! what to say is here (and unit-tested); how it looks is in `pages`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::reflector::ObjectRef;
use plumb_api::{GitRepository, ObjectId, Policy, Sync, condition_type, reason};
use plumb_sync::view::{Health, Stage, assess, stage_of};

use super::drift::ObjectDrift;
use super::store::Store;
use super::tracker::Tracked;

/// How a state looks: good, on its way, bad, or not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Ready, healthy, in sync.
    Good,
    /// Working on it, or waiting.
    Progress,
    /// Failed; needs a person.
    Bad,
    /// Suspended or not reconciled yet.
    Idle,
}

/// A state in words: a short label, the reason, the message, and what the reason means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// How it looks.
    pub level: Level,
    /// One or two words: `Ready`, `Failed`, `Suspended`, ...
    pub label: String,
    /// The condition's reason, when there is one.
    pub reason: String,
    /// The condition's message.
    pub message: String,
}

impl State {
    fn new(level: Level, label: &str, reason: &str, message: &str) -> Self {
        Self {
            level,
            label: label.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// The state a condition of `type_` tells (`Ready`, `Rendered`, `Healthy`), kstatus-style:
/// False while `Reconciling` is still progress, not failure.
pub fn condition_state(conditions: &[Condition], type_: &str, suspended: bool) -> State {
    let find = |t: &str| conditions.iter().find(|c| c.type_ == t);
    let reconciling = find(condition_type::RECONCILING).is_some_and(|c| c.status == "True");
    let mut state = match find(type_) {
        None => State::new(Level::Idle, "Not reconciled yet", "", ""),
        Some(c) => {
            let (level, label) = match c.status.as_str() {
                "True" => (Level::Good, "Ready"),
                "False" if reconciling => (Level::Progress, "In progress"),
                "False" => (Level::Bad, "Failed"),
                _ => (Level::Progress, "In progress"),
            };
            State::new(level, label, &c.reason, &c.message)
        }
    };
    if type_ == condition_type::HEALTHY && state.level == Level::Good {
        state.label = "Healthy".into();
    }
    if suspended {
        state.level = Level::Idle;
        state.label = "Suspended".into();
    }
    state
}

/// What a condition reason means, in plain words, for the reasons plumb sets.
pub fn explain(reason_: &str) -> &'static str {
    match reason_ {
        reason::SUCCEEDED => "The last reconciliation worked.",
        reason::PROGRESSING | reason::PROGRESSING_WITH_RETRY => "The controller is working on it.",
        reason::SUSPENDED => "Suspended: nothing is fetched, rendered or applied until resumed.",
        reason::GIT_OPERATION_FAILED => {
            "The Git remote could not be reached or the fetch failed; the last artifact stays in use."
        }
        reason::AUTHENTICATION_FAILED => {
            "The Git server refused the credentials, or its SSH host key is not known."
        }
        reason::REF_NOT_FOUND => "The branch, tag, semver range or commit does not exist.",
        reason::ARTIFACT_STORAGE_FAILED => "The source controller could not store the artifact.",
        reason::ARTIFACT_FAILED => {
            "The source artifact could not be downloaded or unpacked (or its digest did not match)."
        }
        reason::INVALID_SPEC => "The spec cannot work as written; fix it.",
        reason::SOURCE_NOT_READY => "The GitRepository has no artifact to render yet.",
        reason::BUILD_FAILED => "The kustomization could not be built.",
        reason::POLICY_VIOLATION => {
            "A Deny rule of a Policy refused an object: nothing of this revision is applied; the last good state stays."
        }
        reason::POLICY_INVALID | reason::INVALID_CEL_EXPRESSION => {
            "A governing Policy has a rule that does not compile."
        }
        reason::RENDER_NOT_READY => "The render controller has not published a render yet.",
        reason::APPLY_FAILED => "The API server refused an object.",
        reason::PRUNE_FAILED => "Deleting objects that left Git failed; they are retried.",
        reason::HEALTH_CHECK_FAILED => "Objects did not become healthy within the timeout.",
        reason::DEPENDENCY_NOT_READY => "A Sync this one depends on is not Ready yet.",
        reason::WINDOW_CLOSED => "A Policy's sync window is closed: new revisions wait.",
        reason::ACCESS_DENIED => {
            "Permission was refused: impersonation, a cross-namespace reference, or a file outside the source."
        }
        reason::LIMIT_EXCEEDED => "An input crossed one of plumb's limits.",
        reason::UNSUPPORTED => {
            "The kustomization asks for something plumb refuses (remote bases, exec functions)."
        }
        reason::OWNERSHIP_CONFLICT => {
            "Another Sync applied one of these objects; it is left alone."
        }
        reason::DELETION_FAILED => "Deleting the objects of this deleted Sync failed.",
        _ => "",
    }
}

/// `main@sha1:0123456789ab…` shortened to `main@0123456789ab`.
pub fn short_revision(revision: &str) -> String {
    match revision.rsplit_once("@sha1:") {
        Some((name, sha)) => format!("{name}@{}", &sha[..sha.len().min(12)]),
        None => revision
            .trim_start_matches("sha1:")
            .chars()
            .take(12)
            .collect(),
    }
}

/// The labels of the Sync's namespace, as the watch of Namespaces knows them.
pub fn namespace_labels(store: &Store, sync: &Sync) -> BTreeMap<String, String> {
    let ns = sync.metadata.namespace.clone().unwrap_or_default();
    store
        .namespaces
        .get(&ObjectRef::new(&ns))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default()
}

/// The Policies governing `sync`, by the rule the controllers use.
pub fn governing(
    policies: &[Arc<Policy>],
    namespace_labels: &BTreeMap<String, String>,
    sync: &Sync,
) -> Vec<Arc<Policy>> {
    let sync_labels = sync.metadata.labels.clone().unwrap_or_default();
    let mut found: Vec<Arc<Policy>> = policies
        .iter()
        .filter(|p| p.governs(namespace_labels, &sync_labels))
        .cloned()
        .collect();
    found.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    found
}

/// The names of the Policies governing `sync`, sorted.
pub fn governing_names(
    policies: &[Arc<Policy>],
    namespace_labels: &BTreeMap<String, String>,
    sync: &Sync,
) -> Vec<String> {
    governing(policies, namespace_labels, sync)
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

fn name_of(meta: &kube::core::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The counts at the top of the overview.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Syncs in scope.
    pub syncs: usize,
    /// Ready Syncs.
    pub ready: usize,
    /// Syncs whose Ready is False and not progressing.
    pub failing: usize,
    /// Syncs with drifted objects now.
    pub drifting: usize,
    /// Suspended Syncs.
    pub suspended: usize,
}

/// One Sync in the overview.
#[derive(Debug, Clone)]
pub struct SyncRow {
    /// Namespace and name.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.path`.
    pub path: String,
    /// The revision applied last, shortened.
    pub applied: Option<String>,
    /// Ready.
    pub state: State,
    /// The objects drifted now (the sync controller's report, and what this page's watches see).
    pub drifted: Vec<String>,
    /// The names of the Policies governing it; `None` when the Policies cannot be read.
    pub policies: Option<Vec<String>>,
}

/// `t` as the pages show times: UTC, to the second.
fn utc(t: &jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// One GitRepository in the overview, with the Syncs using it.
#[derive(Debug, Clone)]
pub struct SourceRow {
    /// Namespace.
    pub namespace: String,
    /// Name; empty for the group of Syncs whose GitRepository is not found.
    pub name: String,
    /// `spec.url`.
    pub url: String,
    /// The artifact's revision, shortened.
    pub revision: Option<String>,
    /// When the artifact's commit was made (its committer's time).
    pub committed: Option<String>,
    /// When the artifact was published.
    pub published: Option<String>,
    /// Ready (or "Not found").
    pub state: State,
    /// Its Syncs.
    pub syncs: Vec<SyncRow>,
}

/// One Policy in the overview.
#[derive(Debug, Clone)]
pub struct PolicyRow {
    /// Name.
    pub name: String,
    /// Rules (Deny and Warn).
    pub rules: usize,
    /// Syncs it governs, as the render controller counted.
    pub governs: Option<i64>,
    /// Ready (every rule compiled).
    pub state: State,
}

/// The overview page.
#[derive(Debug, Clone)]
pub struct Overview {
    /// The counts.
    pub counts: Counts,
    /// GitRepositories with their Syncs (and one group for Syncs whose source is missing).
    pub sources: Vec<SourceRow>,
    /// Policies, or why they cannot be read.
    pub policies: Result<Vec<PolicyRow>, String>,
}

impl Default for Overview {
    fn default() -> Self {
        Self {
            counts: Counts::default(),
            sources: Vec::new(),
            policies: Ok(Vec::new()),
        }
    }
}

/// Builds the overview; `policies` are the Policies or why they cannot be read;
/// `tracked_drift` tells what this process's watches see drifted now for a Sync it tracks.
pub fn overview(
    repos: &[Arc<GitRepository>],
    syncs: &[Arc<Sync>],
    policies: Result<&[Arc<Policy>], &str>,
    namespace_labels: &dyn Fn(&Sync) -> BTreeMap<String, String>,
    tracked_drift: &dyn Fn(&str, &str) -> Vec<String>,
) -> Overview {
    let mut out = Overview::default();
    let mut by_source: BTreeMap<(String, String), Vec<SyncRow>> = BTreeMap::new();
    let mut syncs: Vec<&Arc<Sync>> = syncs.iter().collect();
    syncs.sort_by_key(|s| name_of(&s.metadata));
    for sync in syncs {
        let (ns, name) = name_of(&sync.metadata);
        let status = sync.status.clone().unwrap_or_default();
        let state = condition_state(&status.conditions, condition_type::READY, sync.spec.suspend);
        let mut drifted: Vec<String> = status
            .drift
            .as_ref()
            .map(|d| d.objects.clone())
            .unwrap_or_default();
        for id in tracked_drift(&ns, &name) {
            if !drifted.contains(&id) {
                drifted.push(id);
            }
        }
        out.counts.syncs += 1;
        match (sync.spec.suspend, state.level) {
            (true, _) => out.counts.suspended += 1,
            (false, Level::Good) => out.counts.ready += 1,
            (false, Level::Bad) => out.counts.failing += 1,
            _ => {}
        }
        if !drifted.is_empty() {
            out.counts.drifting += 1;
        }
        let row = SyncRow {
            path: sync.spec.path.clone(),
            applied: status
                .last_applied_revision
                .map(|r| short_revision(&r.to_string())),
            state,
            drifted,
            policies: policies
                .ok()
                .map(|all| governing_names(all, &namespace_labels(sync), sync)),
            namespace: ns.clone(),
            name,
        };
        let source_ns = sync.spec.source_ref.namespace.clone().unwrap_or(ns);
        by_source
            .entry((source_ns, sync.spec.source_ref.name.clone()))
            .or_default()
            .push(row);
    }
    let mut repos: Vec<&Arc<GitRepository>> = repos.iter().collect();
    repos.sort_by_key(|r| name_of(&r.metadata));
    for repo in repos {
        let (ns, name) = name_of(&repo.metadata);
        let status = repo.status.clone().unwrap_or_default();
        out.sources.push(SourceRow {
            url: repo.spec.url.clone(),
            revision: status
                .artifact
                .as_ref()
                .map(|a| short_revision(&a.revision.to_string())),
            committed: status.commit_time.as_ref().map(utc),
            published: status.artifact.as_ref().map(|a| utc(&a.last_update_time)),
            state: condition_state(&status.conditions, condition_type::READY, repo.spec.suspend),
            syncs: by_source
                .remove(&(ns.clone(), name.clone()))
                .unwrap_or_default(),
            namespace: ns,
            name,
        });
    }
    for ((ns, name), syncs) in by_source {
        out.sources.push(SourceRow {
            url: String::new(),
            revision: None,
            committed: None,
            published: None,
            state: State::new(
                Level::Bad,
                "Not found",
                "",
                &format!("GitRepository {ns}/{name} does not exist (or you may not read it)"),
            ),
            syncs,
            namespace: ns,
            name,
        });
    }
    out.policies = policies.map(policy_rows).map_err(str::to_owned);
    out
}

fn policy_rows(policies: &[Arc<Policy>]) -> Vec<PolicyRow> {
    let mut policies: Vec<&Arc<Policy>> = policies.iter().collect();
    policies.sort_by_key(|p| p.metadata.name.clone());
    policies
        .into_iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            PolicyRow {
                name: p.metadata.name.clone().unwrap_or_default(),
                rules: p.spec.rules.len(),
                governs: status.governed_syncs,
                state: condition_state(&status.conditions, condition_type::READY, p.spec.suspend),
            }
        })
        .collect()
}

/// One step of the GitRepository → render → sync chain.
#[derive(Debug, Clone)]
pub struct Step {
    /// `Source`, `Render`, `Sync`, `Health`.
    pub title: &'static str,
    /// What the step is about, e.g. `GitRepository team/apps` or a revision.
    pub subject: String,
    /// Its condition.
    pub state: State,
    /// The reason in plain words.
    pub meaning: &'static str,
}

/// The chain of a Sync: its source's Ready, the render's `Rendered`, the sync's `Ready` and
/// `Healthy`.
pub fn chain(sync: &Sync, source: Option<&GitRepository>) -> Vec<Step> {
    let status = sync.status.clone().unwrap_or_default();
    let render = status.render.clone().unwrap_or_default();
    let (ns, _) = name_of(&sync.metadata);
    let source_ns = sync.spec.source_ref.namespace.clone().unwrap_or(ns);
    let source_name = format!("GitRepository {source_ns}/{}", sync.spec.source_ref.name);
    let source_step = match source {
        Some(repo) => {
            let s = repo.status.clone().unwrap_or_default();
            let committed = s
                .commit_time
                .map(|t| format!(", committed {}", utc(&t)))
                .unwrap_or_default();
            let revision = s
                .artifact
                .map(|a| format!(" at {}{committed}", short_revision(&a.revision.to_string())))
                .unwrap_or_default();
            Step {
                title: "Source",
                subject: format!("{source_name}{revision}"),
                state: condition_state(&s.conditions, condition_type::READY, repo.spec.suspend),
                meaning: "",
            }
        }
        None => Step {
            title: "Source",
            subject: source_name,
            state: State::new(
                Level::Bad,
                "Not found",
                "",
                "the GitRepository does not exist, or you may not read it",
            ),
            meaning: "",
        },
    };
    let rendered = render
        .source_revision
        .map(|r| {
            format!(
                "path {} of {}",
                sync.spec.path,
                short_revision(&r.to_string())
            )
        })
        .unwrap_or_else(|| format!("path {}", sync.spec.path));
    let applied = status
        .last_applied_revision
        .map(|r| format!("applied {}", short_revision(&r.to_string())))
        .unwrap_or_else(|| "nothing applied yet".into());
    let objects = status.inventory.as_ref().map_or(0, Vec::len);
    let mut steps = vec![
        source_step,
        Step {
            title: "Render",
            subject: rendered,
            state: condition_state(&status.conditions, condition_type::RENDERED, false),
            meaning: "",
        },
        Step {
            title: "Sync",
            subject: applied,
            state: condition_state(&status.conditions, condition_type::READY, sync.spec.suspend),
            meaning: "",
        },
        Step {
            title: "Health",
            subject: format!("{objects} objects"),
            state: condition_state(&status.conditions, condition_type::HEALTHY, false),
            meaning: "",
        },
    ];
    for step in &mut steps {
        step.meaning = explain(&step.state.reason);
    }
    steps
}

/// A Policy finding about the Sync's render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `Deny` (the render is blocked) or `Warn`.
    pub action: &'static str,
    /// The Policy.
    pub policy: String,
    /// The rule.
    pub rule: String,
    /// The object, e.g. `Deployment team/web`.
    pub object: String,
    /// The rule's message.
    pub message: String,
}

/// The Deny violations, then the Warn findings, of the Sync's last render.
pub fn findings(sync: &Sync) -> Vec<Finding> {
    let report = sync
        .status
        .as_ref()
        .and_then(|s| s.render.as_ref())
        .and_then(|r| r.policy.clone())
        .unwrap_or_default();
    let to = |action: &'static str| {
        move |f: plumb_api::sync::PolicyFinding| Finding {
            action,
            policy: f.policy,
            rule: f.rule,
            object: f.object,
            message: f.message,
        }
    };
    report
        .violations
        .into_iter()
        .map(to("Deny"))
        .chain(report.warnings.into_iter().map(to("Warn")))
        .collect()
}

/// One object of the inventory, with what the watches see of it.
#[derive(Debug, Clone)]
pub struct ObjectRow {
    /// Its id.
    pub id: ObjectId,
    /// Its health (kstatus), or why it is not known.
    pub health: State,
    /// Its drift; `None` while the watch of its kind has not listed yet.
    pub drift: Option<ObjectDrift>,
}

/// The inventory grouped by apply stage, in apply order, with health and drift from `tracked`.
pub fn objects(sync: &Sync, tracked: &Tracked) -> Vec<(&'static str, Vec<ObjectRow>)> {
    let inventory = sync
        .status
        .as_ref()
        .and_then(|s| s.inventory.clone())
        .unwrap_or_default();
    let mut groups: Vec<(Stage, Vec<ObjectRow>)> = Vec::new();
    for entry in inventory {
        let Ok(id) = entry.object_id() else { continue };
        let stage = stage_of(&id.group, &id.kind);
        let listed = tracked.listed.iter().any(|k| k.covers(&id));
        let failing = tracked
            .failing
            .iter()
            .find(|(k, _)| k.covers(&id))
            .map(|(_, why)| why);
        let seen = tracked.objects.get(&id);
        let health = match seen {
            Some(s) if s.live.is_object() => match assess(&id.group, &id.kind, &s.live) {
                Health::Current => State::new(Level::Good, "Current", "", ""),
                Health::InProgress(m) => State::new(Level::Progress, "In progress", "", &m),
                Health::Failed(m) => State::new(Level::Bad, "Failed", "", &m),
            },
            Some(_) => State::new(
                Level::Bad,
                "Missing",
                "",
                "the object is not in the cluster",
            ),
            None if listed => State::new(
                Level::Bad,
                "Missing",
                "",
                "the object is not in the cluster",
            ),
            None => match failing {
                Some(why) => State::new(
                    Level::Idle,
                    "Unknown",
                    "",
                    &format!("the watch of its kind fails: {why}"),
                ),
                None => State::new(
                    Level::Idle,
                    "Loading",
                    "",
                    "the watch of this kind is starting",
                ),
            },
        };
        let drift = match seen {
            Some(s) => Some(s.drift.clone()),
            None if listed => Some(ObjectDrift::Missing),
            None => None,
        };
        let row = ObjectRow { id, health, drift };
        match groups.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, rows)) => rows.push(row),
            None => groups.push((stage, vec![row])),
        }
    }
    groups.sort_by_key(|(s, _)| *s);
    groups
        .into_iter()
        .map(|(s, rows)| {
            let label = match s {
                Stage::Cluster => "Stage 1: cluster-wide (Namespaces, CRDs, cluster roles)",
                Stage::Classes => "Stage 2: classes",
                Stage::Rest => "Stage 3: everything else",
            };
            (label, rows)
        })
        .collect()
}

/// One recent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// When it last happened.
    pub time: String,
    /// `Normal` or `Warning`.
    pub type_: String,
    /// The object, e.g. `Sync team/web`.
    pub object: String,
    /// Its reason.
    pub reason: String,
    /// Its message.
    pub message: String,
}

/// The newest `limit` Events about any of `objects` (kind, namespace, name), newest first.
pub fn recent_events(
    events: &[Arc<Event>],
    objects: &[(&str, &str, &str)],
    limit: usize,
) -> Vec<EventRow> {
    let mut found: Vec<(jiff::Timestamp, EventRow)> = events
        .iter()
        .filter(|e| {
            let o = &e.involved_object;
            objects.iter().any(|(kind, ns, name)| {
                o.kind.as_deref() == Some(*kind)
                    && o.namespace.as_deref() == Some(*ns)
                    && o.name.as_deref() == Some(*name)
            })
        })
        .map(|e| {
            let time = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .unwrap_or_default();
            let o = &e.involved_object;
            let count = e.count.unwrap_or(1);
            let message = e.message.clone().unwrap_or_default();
            (
                time,
                EventRow {
                    time: time.strftime("%H:%M:%S").to_string(),
                    type_: e.type_.clone().unwrap_or_default(),
                    object: format!(
                        "{} {}/{}",
                        o.kind.clone().unwrap_or_default(),
                        o.namespace.clone().unwrap_or_default(),
                        o.name.clone().unwrap_or_default()
                    ),
                    reason: e.reason.clone().unwrap_or_default(),
                    message: if count > 1 {
                        format!("{message} (×{count})")
                    } else {
                        message
                    },
                },
            )
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    // A recorder may write the same Event twice (core and events.k8s.io); show it once.
    found.dedup_by(|a, b| a == b);
    found.into_iter().take(limit).map(|(_, row)| row).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ui::tracker::WatchKey;

    fn sync(status: serde_json::Value) -> Sync {
        serde_json::from_value(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": { "name": "web", "namespace": "team", "labels": {"tier": "prod"} },
            "spec": { "sourceRef": { "kind": "GitRepository", "name": "apps" }, "path": "./prod" },
            "status": status
        }))
        .unwrap()
    }

    fn condition(type_: &str, status: &str, reason: &str, message: &str) -> serde_json::Value {
        json!({ "type": type_, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": "2026-01-01T00:00:00Z" })
    }

    fn policy(name: &str, selector: serde_json::Value) -> Arc<Policy> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "policy.plumb.dev/v1", "kind": "Policy",
                "metadata": { "name": name },
                "spec": { "selector": selector, "rules": [] }
            }))
            .unwrap(),
        )
    }

    #[test]
    fn a_policy_violation_reads_as_failed_with_its_meaning() {
        let s = sync(json!({ "conditions": [
            condition("Ready", "False", "PolicyViolation", "Deployment team/web breaks rule pinned"),
            condition("Rendered", "False", "PolicyViolation", "Deployment team/web breaks rule pinned"),
        ]}));
        let steps = chain(&s, None);
        assert_eq!(
            steps.iter().map(|s| s.title).collect::<Vec<_>>(),
            ["Source", "Render", "Sync", "Health"]
        );
        assert_eq!(steps[0].state.label, "Not found");
        assert_eq!(steps[1].state.level, Level::Bad);
        assert!(
            steps[1].meaning.contains("Deny rule"),
            "{}",
            steps[1].meaning
        );
        assert_eq!(steps[3].state.label, "Not reconciled yet");
    }

    #[test]
    fn false_while_reconciling_is_progress_and_suspended_is_idle() {
        let c: Vec<Condition> = serde_json::from_value(json!([
            condition("Ready", "False", "Progressing", "applying"),
            condition("Reconciling", "True", "Progressing", "applying"),
        ]))
        .unwrap();
        assert_eq!(
            condition_state(&c, condition_type::READY, false).level,
            Level::Progress
        );
        let s = condition_state(&c, condition_type::READY, true);
        assert_eq!((s.level, s.label.as_str()), (Level::Idle, "Suspended"));
    }

    #[test]
    fn overview_counts_and_nests_syncs_under_their_source_with_their_policies() {
        let ready = Arc::new(sync(
            json!({ "conditions": [condition("Ready", "True", "ReconciliationSucceeded", "")],
            "drift": { "corrections": 1, "objects": ["team_web_apps_Deployment"] } }),
        ));
        let mut failing =
            sync(json!({ "conditions": [condition("Ready", "False", "ApplyFailed", "x")] }));
        failing.metadata.name = Some("api".into());
        failing.spec.source_ref.name = "gone".into();
        let policies = [
            policy(
                "prod-only",
                json!({ "namespaceSelector": { "matchLabels": { "env": "prod" } } }),
            ),
            policy(
                "dev-only",
                json!({ "namespaceSelector": { "matchLabels": { "env": "dev" } } }),
            ),
        ];
        let repo: Arc<GitRepository> = Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
                "metadata": { "name": "apps", "namespace": "team" },
                "spec": { "url": "https://example.com/apps.git" }
            }))
            .unwrap(),
        );
        let labels = |_: &Sync| BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
        let tracked = |_: &str, name: &str| {
            if name == "api" {
                vec!["team_cfg__ConfigMap".to_owned()]
            } else {
                vec![]
            }
        };
        let o = overview(
            &[repo],
            &[ready, Arc::new(failing)],
            Ok(&policies),
            &labels,
            &tracked,
        );
        assert_eq!(
            o.counts,
            Counts {
                syncs: 2,
                ready: 1,
                failing: 1,
                drifting: 2,
                suspended: 0
            }
        );
        assert_eq!(o.sources.len(), 2);
        assert_eq!(o.sources[0].name, "apps");
        assert_eq!(o.sources[0].syncs[0].name, "web");
        assert_eq!(
            o.sources[0].syncs[0].policies.as_deref(),
            Some(&["prod-only".to_owned()][..])
        );
        assert_eq!(o.sources[1].state.label, "Not found");
        assert_eq!(o.sources[1].syncs[0].drifted, ["team_cfg__ConfigMap"]);
        assert_eq!(o.policies.map(|p| p.len()), Ok(2));

        // Policies the user may not list: no Sync is said to be governed by none.
        let refused = overview(
            &[],
            &[Arc::new(sync(json!({})))],
            Err("forbidden"),
            &labels,
            &tracked,
        );
        assert_eq!(refused.sources[0].syncs[0].policies, None);
        assert_eq!(refused.policies.unwrap_err(), "forbidden");
    }

    #[test]
    fn a_source_shows_when_its_commit_was_made() {
        let repo: GitRepository = serde_json::from_value(json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
            "metadata": { "name": "apps", "namespace": "team" },
            "spec": { "url": "https://example.com/apps.git" },
            "status": {
                "artifact": {
                    "revision": "main@sha1:0123456789abcdef0123456789abcdef01234567",
                    "digest": format!("sha256:{}", "ab".repeat(32)),
                    "url": "http://source/gitrepository/team/apps/x.tar.gz",
                    "lastUpdateTime": "2026-11-29T10:00:00Z"
                },
                "commitTime": "2026-11-28T09:30:00Z"
            }
        }))
        .unwrap();
        let labels = |_: &Sync| BTreeMap::new();
        let tracked = |_: &str, _: &str| Vec::new();
        let o = overview(&[Arc::new(repo.clone())], &[], Ok(&[]), &labels, &tracked);
        assert_eq!(
            o.sources[0].committed.as_deref(),
            Some("2026-11-28 09:30:00 UTC")
        );
        assert_eq!(
            o.sources[0].published.as_deref(),
            Some("2026-11-29 10:00:00 UTC")
        );
        let steps = chain(&sync(json!({})), Some(&repo));
        assert_eq!(
            steps[0].subject,
            "GitRepository team/apps at main@0123456789ab, committed 2026-11-28 09:30:00 UTC"
        );
    }

    #[test]
    fn findings_list_denials_before_warnings_naming_the_object() {
        let s = sync(json!({ "render": { "policy": {
            "warnings": [{ "policy": "p", "rule": "labels", "object": "ConfigMap team/a", "message": "m1" }],
            "violations": [{ "policy": "p", "rule": "pinned", "object": "Deployment team/web", "message": "m2" }]
        }}}));
        let f = findings(&s);
        assert_eq!(
            (f[0].action, f[0].rule.as_str(), f[0].object.as_str()),
            ("Deny", "pinned", "Deployment team/web")
        );
        assert_eq!(f[1].action, "Warn");
    }

    #[test]
    fn objects_are_grouped_by_stage_in_apply_order_and_missing_once_listed() {
        let s = sync(json!({ "inventory": [
            { "id": "_team__Namespace", "v": "v1" },
            { "id": "team_web_apps_Deployment", "v": "v1" },
            { "id": "team_cfg__ConfigMap", "v": "v1" }
        ]}));
        let mut tracked = Tracked::default();
        tracked.listed.insert(WatchKey {
            gvk: kube::core::GroupVersionKind::gvk("", "v1", "ConfigMap"),
            namespace: None,
        });
        let groups = objects(&s, &tracked);
        assert_eq!(groups.len(), 2);
        assert!(groups[0].0.starts_with("Stage 1"));
        assert_eq!(groups[0].1[0].id.kind, "Namespace");
        assert_eq!(groups[1].1[0].health.label, "Loading");
        assert_eq!(groups[1].1[1].health.label, "Missing");
        assert_eq!(groups[1].1[1].drift, Some(ObjectDrift::Missing));
    }

    #[test]
    fn a_watch_of_one_namespace_speaks_only_for_it_and_a_refused_one_says_why() {
        let s = sync(json!({ "inventory": [
            { "id": "team_cfg__ConfigMap", "v": "v1" },
            { "id": "other_cfg__ConfigMap", "v": "v1" },
            { "id": "team_web_apps_Deployment", "v": "v1" }
        ]}));
        let config_maps = kube::core::GroupVersionKind::gvk("", "v1", "ConfigMap");
        let mut tracked = Tracked::default();
        tracked.listed.insert(WatchKey {
            gvk: config_maps.clone(),
            namespace: Some("team".into()),
        });
        tracked.failing.insert(
            WatchKey {
                gvk: config_maps,
                namespace: Some("other".into()),
            },
            "your kubeconfig's user may not do this: forbidden".into(),
        );
        let rows: Vec<ObjectRow> = objects(&s, &tracked)
            .into_iter()
            .flat_map(|(_, rows)| rows)
            .collect();
        let row = |ns: &str, kind: &str| {
            rows.iter()
                .find(|r| r.id.namespace == ns && r.id.kind == kind)
                .unwrap()
        };
        assert_eq!(row("team", "ConfigMap").health.label, "Missing");
        let refused = &row("other", "ConfigMap").health;
        assert_eq!(refused.label, "Unknown");
        assert!(refused.message.contains("may not"), "{}", refused.message);
        assert_eq!(row("other", "ConfigMap").drift, None);
        assert_eq!(row("team", "Deployment").health.label, "Loading");
    }

    #[test]
    fn revisions_are_shortened() {
        assert_eq!(
            short_revision("main@sha1:0123456789abcdef0123456789abcdef01234567"),
            "main@0123456789ab"
        );
    }
}
