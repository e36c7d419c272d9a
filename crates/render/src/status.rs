//! The render controller's part of Sync status, as a server-side apply patch: only
//! `status.render` and the `Rendered` condition, so the sync controller's fields stay its own.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use plumb_api::condition::{new_condition, status};
use plumb_api::sync::{PolicyReport, RenderStatus};
use plumb_api::{Conditions, Sync, condition_type, reason};
use plumb_substitute::SecretValues;
use serde_json::{Value, json};

/// What one reconcile of a Sync concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A rendered artifact was published (or was already current).
    Published(RenderStatus),
    /// Nothing new was published; the last good artifact stays.
    Failed {
        /// The condition reason (`BuildFailed`, `PolicyViolation`, ...).
        reason: &'static str,
        /// What a person needs to act.
        message: String,
        /// Policy findings of the failed render, when the failure is a policy verdict.
        policy: Option<PolicyReport>,
    },
}

impl Outcome {
    /// A failure without policy findings.
    pub fn failed(reason: &'static str, message: impl Into<String>) -> Self {
        Outcome::Failed {
            reason,
            message: message.into(),
            policy: None,
        }
    }
}

impl Outcome {
    /// The same verdict with every Secret value of the render masked in its texts: the failure
    /// message (a build error over substituted YAML may quote a line) and each Policy finding's
    /// message (a CEL expression that fails over a substituted value may quote it). Status,
    /// Events and logs all take their words from the outcome.
    pub fn scrubbed(mut self, secrets: &SecretValues) -> Self {
        if secrets.is_empty() {
            return self;
        }
        let report = match &mut self {
            Outcome::Published(render) => render.policy.as_mut(),
            Outcome::Failed {
                message, policy, ..
            } => {
                *message = secrets.scrub(message);
                policy.as_mut()
            }
        };
        if let Some(report) = report {
            for finding in report.violations.iter_mut().chain(&mut report.warnings) {
                finding.message = secrets.scrub(&finding.message);
            }
        }
        self
    }

    /// The same verdict, reported for Sync generation `generation`.
    pub fn for_generation(mut self, generation: Option<i64>) -> Self {
        if let Outcome::Published(render) = &mut self {
            render.observed_generation = generation;
        }
        self
    }
}

/// The `Rendered` condition for `outcome`, keeping the previous transition time when the status
/// is unchanged.
pub fn rendered_condition(sync: &Sync, outcome: &Outcome) -> Condition {
    let generation = sync.metadata.generation;
    let cond = match outcome {
        Outcome::Published(render) => {
            let warnings = render.policy.as_ref().map_or(0, |p| p.warnings.len());
            let mut message = format!(
                "rendered {} objects from {}",
                render.objects.unwrap_or_default(),
                render
                    .source_revision
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            if warnings > 0 {
                message.push_str(&format!(" with {warnings} policy warnings"));
            }
            new_condition(
                condition_type::RENDERED,
                status::TRUE,
                reason::SUCCEEDED,
                message,
                generation,
            )
        }
        Outcome::Failed {
            reason, message, ..
        } => new_condition(
            condition_type::RENDERED,
            status::FALSE,
            reason,
            message.clone(),
            generation,
        ),
    };
    let mut conds: Vec<Condition> = sync
        .status
        .as_ref()
        .and_then(|s| s.conditions.get_condition(condition_type::RENDERED))
        .cloned()
        .into_iter()
        .collect();
    conds.set_condition(cond);
    conds.remove(0)
}

/// The `status.render` to write for `outcome`: the new one, or on failure the last good one with
/// the failed render's policy findings.
pub fn render_status(sync: &Sync, outcome: &Outcome) -> RenderStatus {
    match outcome {
        Outcome::Published(render) => render.clone(),
        Outcome::Failed { policy, .. } => {
            let mut render = sync
                .status
                .as_ref()
                .and_then(|s| s.render.clone())
                .unwrap_or_default();
            if let Some(p) = policy {
                render.policy = Some(p.clone());
            }
            render
        }
    }
}

/// The server-side apply body for the Sync's status subresource.
pub fn status_patch(sync: &Sync, outcome: &Outcome) -> Value {
    json!({
        "apiVersion": "sync.plumb.dev/v1",
        "kind": "Sync",
        "metadata": {
            "name": sync.metadata.name,
            "namespace": sync.metadata.namespace,
        },
        "status": {
            "render": render_status(sync, outcome),
            "conditions": [rendered_condition(sync, outcome)],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use plumb_api::SyncStatus;
    use plumb_api::sync::PolicyFinding;

    fn sync_with(render: Option<RenderStatus>, conds: Vec<Condition>) -> Sync {
        let mut s: Sync = serde_json::from_value(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": {"name": "app", "namespace": "team", "generation": 4},
            "spec": {"sourceRef": {"kind": "GitRepository", "name": "repo"}},
        }))
        .unwrap();
        s.status = Some(SyncStatus {
            render,
            conditions: conds,
            ..Default::default()
        });
        s
    }

    #[test]
    fn failure_keeps_the_last_good_artifact_and_records_violations() {
        let good = RenderStatus {
            observed_generation: Some(3),
            objects: Some(5),
            ..Default::default()
        };
        let sync = sync_with(Some(good.clone()), vec![]);
        let report = PolicyReport {
            warnings: vec![],
            violations: vec![PolicyFinding {
                policy: "p".into(),
                rule: "r".into(),
                object: "team_web_apps_Deployment".into(),
                message: "no".into(),
            }],
        };
        let outcome = Outcome::Failed {
            reason: reason::POLICY_VIOLATION,
            message: "blocked".into(),
            policy: Some(report.clone()),
        };
        let patch = status_patch(&sync, &outcome);
        assert_eq!(patch["status"]["render"]["objects"], 5);
        assert_eq!(patch["status"]["render"]["observedGeneration"], 3);
        assert_eq!(
            patch["status"]["render"]["policy"]["violations"][0]["rule"],
            "r"
        );
        let conds = patch["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 1, "only the Rendered condition");
        assert_eq!(conds[0]["type"], "Rendered");
        assert_eq!(conds[0]["status"], "False");
        assert_eq!(conds[0]["reason"], "PolicyViolation");
        assert_eq!(conds[0]["observedGeneration"], 4);
        assert!(patch["status"].get("inventory").is_none());
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let mut old = new_condition(
            condition_type::RENDERED,
            status::TRUE,
            reason::SUCCEEDED,
            "x",
            Some(1),
        );
        old.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        let sync = sync_with(None, vec![old]);
        let published = Outcome::Published(RenderStatus::default());
        assert_eq!(
            rendered_condition(&sync, &published).last_transition_time,
            Time(Timestamp::UNIX_EPOCH)
        );
        let failed = Outcome::failed(reason::BUILD_FAILED, "bad");
        assert_ne!(
            rendered_condition(&sync, &failed).last_transition_time,
            Time(Timestamp::UNIX_EPOCH)
        );
    }
}
