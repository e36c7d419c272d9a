//! Helm hooks in the apply, as Argo CD runs them (the rules are `plumb_helm::hooks`): when a new
//! render is applied, `pre-install`/`pre-upgrade` hooks run before the rest, weight group by
//! weight group, each group applied and waited for until it succeeds; `post-install`/
//! `post-upgrade` hooks run once the rest is healthy. Hook objects are not part of the
//! inventory: they are never pruned, and `helm.sh/hook-delete-policy` says when they go
//! (`before-hook-creation` by default: the previous one is deleted before the hook runs again).

use std::time::Duration;

use kube::Client;
use plumb_api::ObjectId;
use plumb_helm::hooks::{DeletePolicy, Hook, HookPhase, in_phase};
use serde_json::Value;

use crate::apply::{self, ApplyError, Desired, Resolver};
use crate::deps::Key;
use crate::health::{self, Health};
use crate::manifest::Manifest;

/// Why a hook did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// It ran and failed, or did not finish in time.
    #[error("{phase} hook {id} ({events}) failed: {why}")]
    Failed {
        /// `pre-sync` or `post-sync`.
        phase: &'static str,
        /// The hook object.
        id: ObjectId,
        /// Its `helm.sh/hook` events.
        events: String,
        /// What went wrong.
        why: String,
    },
    /// Applying, reading or deleting it failed.
    #[error("{phase} hook: {source}")]
    Apply {
        /// `pre-sync` or `post-sync`.
        phase: &'static str,
        /// The API error.
        source: Box<ApplyError>,
    },
}

/// The render without its hooks (what is applied, inventoried, pruned and health-checked), and
/// its hooks.
pub fn split(manifests: &[Manifest]) -> (Vec<Manifest>, Vec<Manifest>) {
    manifests
        .iter()
        .cloned()
        .partition(|m| !plumb_helm::hooks::is_hook(&m.object))
}

fn phase_name(phase: HookPhase) -> &'static str {
    match phase {
        HookPhase::PreSync => "pre-sync",
        HookPhase::PostSync => "post-sync",
    }
}

/// Whether a hook object is done: `Ok(true)` succeeded, `Ok(false)` still running, `Err` failed.
/// A Pod is done when it has exited (a Running Pod is not a finished hook); other kinds follow
/// the health rules (a Job completes, a ConfigMap is done once it exists).
pub fn hook_done(group: &str, kind: &str, live: &Value) -> Result<bool, String> {
    if (group, kind) == ("", "Pod") {
        return match live.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => Ok(true),
            Some("Failed") => Err("pod failed".to_owned()),
            _ => Ok(false),
        };
    }
    match health::assess(group, kind, live) {
        Health::Current => Ok(true),
        Health::InProgress(_) => Ok(false),
        Health::Failed(why) => Err(why),
    }
}

/// Where and how hooks run for one Sync.
pub struct HookRunner<'a> {
    /// The Sync's client (impersonating when it says so).
    pub client: &'a Client,
    /// Kind discovery.
    pub resolver: &'a Resolver,
    /// The Sync.
    pub owner: &'a Key,
    /// The namespace of hooks that name none.
    pub default_namespace: &'a str,
    /// How long one weight group may take.
    pub timeout: Duration,
}

impl HookRunner<'_> {
    /// Runs the hooks of `phase` among `hooks`, in order; returns the hooks run.
    pub async fn run(
        &self,
        hooks: &[Manifest],
        phase: HookPhase,
    ) -> Result<Vec<ObjectId>, HookError> {
        let name = phase_name(phase);
        let api = |source| HookError::Apply {
            phase: name,
            source: Box::new(source),
        };
        let mut ran = Vec::new();
        for group in in_phase(hooks, |m| &m.object, phase) {
            let mut started: Vec<(Desired, Hook)> = Vec::new();
            for (m, hook) in group {
                let res = self.resolver.resolve_manifest(m).await.map_err(api)?;
                let d = apply::prepare(
                    m,
                    res,
                    &self.owner.0,
                    &self.owner.1,
                    self.default_namespace,
                    &[],
                );
                if hook.deletes_on(DeletePolicy::BeforeHookCreation) {
                    self.delete_and_wait(&d).await.map_err(api)?;
                }
                apply::apply(self.client, &d, false).await.map_err(api)?;
                tracing::info!(hook = %d.id, phase = name, weight = hook.weight, "hook started");
                started.push((d, hook));
            }
            for (d, hook) in started {
                let result = self.wait_done(&d).await.map_err(api)?;
                let policy = if result.is_ok() {
                    DeletePolicy::HookSucceeded
                } else {
                    DeletePolicy::HookFailed
                };
                if hook.deletes_on(policy) {
                    apply::delete(self.client, &d.res, &d.id)
                        .await
                        .map_err(api)?;
                }
                if let Err(why) = result {
                    return Err(HookError::Failed {
                        phase: name,
                        id: d.id,
                        events: hook.events,
                        why,
                    });
                }
                tracing::info!(hook = %d.id, phase = name, "hook succeeded");
                ran.push(d.id);
            }
        }
        Ok(ran)
    }

    /// Deletes the previous object of a hook, if any, and waits until it is gone.
    async fn delete_and_wait(&self, d: &Desired) -> Result<(), ApplyError> {
        if apply::get(self.client, &d.res, &d.id).await?.is_none() {
            return Ok(());
        }
        apply::delete(self.client, &d.res, &d.id).await?;
        apply::wait_for(
            self.client,
            &d.res,
            &d.id,
            self.timeout,
            "was not deleted before the hook ran again",
            |o| o.is_none(),
        )
        .await
    }

    /// Waits until the hook object succeeds (`Ok(Ok(()))`), fails or runs out of time
    /// (`Ok(Err(why))`).
    async fn wait_done(&self, d: &Desired) -> Result<Result<(), String>, ApplyError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let live = apply::get(self.client, &d.res, &d.id).await?;
            let state = match &live {
                Some(live) => hook_done(&d.id.group, &d.id.kind, live),
                None => Err("deleted while it ran".to_owned()),
            };
            match state {
                Ok(true) => return Ok(Ok(())),
                Err(why) => return Ok(Err(why)),
                Ok(false) if tokio::time::Instant::now() >= deadline => {
                    return Ok(Err(format!("not done within {}s", self.timeout.as_secs())));
                }
                Ok(false) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(kind: &str, name: &str, annotations: Value) -> Manifest {
        Manifest::from_value(
            json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "annotations": annotations}}),
            1,
        )
        .unwrap()
    }

    #[test]
    fn hooks_are_split_from_what_is_applied_and_inventoried() {
        let render = vec![
            manifest("ConfigMap", "app", json!({})),
            manifest("Job", "migrate", json!({"helm.sh/hook": "pre-install"})),
            manifest("Pod", "test", json!({"helm.sh/hook": "test"})),
        ];
        let (rest, hooks) = split(&render);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].name, "app");
        let names: Vec<_> = hooks.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["migrate", "test"]);
    }

    #[test]
    fn a_hook_pod_is_done_when_it_exits_and_a_job_when_it_completes() {
        let pod = |phase: &str| json!({"status": {"phase": phase}});
        assert_eq!(hook_done("", "Pod", &pod("Running")), Ok(false));
        assert_eq!(hook_done("", "Pod", &pod("Succeeded")), Ok(true));
        assert!(hook_done("", "Pod", &pod("Failed")).is_err());
        let job = |c: &str| json!({"status": {"conditions": [{"type": c, "status": "True", "message": "backoff"}]}});
        assert_eq!(hook_done("batch", "Job", &job("Complete")), Ok(true));
        assert!(hook_done("batch", "Job", &job("Failed")).is_err());
        assert_eq!(hook_done("", "ConfigMap", &json!({"data": {}})), Ok(true));
    }
}
