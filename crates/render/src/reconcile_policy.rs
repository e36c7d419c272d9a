//! Reconciling a Policy: compile its rules, report Ready (or the rule that does not compile), and
//! count the Syncs it governs.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use plumb_api::policy::PolicyStatus;
use plumb_api::{ConditionExt, Policy, RENDER_FIELD_MANAGER, reason};
use serde_json::json;
use tracing::instrument;

use crate::Error;
use crate::context::Context;

/// Compiles one Policy and writes its status when it changed.
#[instrument(skip(policy, ctx), fields(name = policy.name_any()))]
pub async fn reconcile(policy: Arc<Policy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let compiled = ctx.compiled(&policy);
    let generation = policy.metadata.generation;
    let current = policy.status.clone().unwrap_or_default();
    let mut conditions: Vec<Condition> = current.conditions.clone();
    let invalid = match compiled.as_ref() {
        Ok(c) => {
            let mut msg = format!("{} rules compiled", c.rules.len());
            if let Some(why) = policy.ignored_sync_selector() {
                msg = format!("{msg}; {why}");
            }
            conditions.mark_ready(reason::SUCCEEDED, &msg, generation);
            None
        }
        Err(e) => {
            let msg = e.to_string();
            conditions.mark_stalled(reason::INVALID_CEL_EXPRESSION, &msg, generation);
            Some(msg)
        }
    };
    let governed = ctx.all_syncs.read(|syncs| {
        syncs
            .iter()
            .filter(|(namespace, _, labels)| {
                policy.governs(
                    &ctx.namespace_labels(namespace.unwrap_or_default()),
                    &labels.to_map(),
                )
            })
            .count()
    }) as i64;
    let status = PolicyStatus {
        observed_generation: generation,
        conditions,
        governed_syncs: Some(governed),
    };
    if !same_status(&current, &status) {
        if let Some(msg) = &invalid
            && current.observed_generation != generation
        {
            ctx.event(
                policy.as_ref(),
                EventType::Warning,
                reason::INVALID_CEL_EXPRESSION,
                msg.clone(),
            )
            .await;
        }
        let api: Api<Policy> = Api::all(ctx.client.clone());
        let patch = json!({
            "apiVersion": "policy.plumb.dev/v1",
            "kind": "Policy",
            "metadata": {"name": policy.name_any()},
            "status": status,
        });
        api.patch_status(
            &policy.name_any(),
            &PatchParams::apply(RENDER_FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await
        .map_err(Error::Kube)?;
    }
    let result = if invalid.is_none() {
        plumb_ops::ReconcileResult::Success
    } else {
        plumb_ops::ReconcileResult::Error
    };
    ctx.metrics.ops.observe_reconcile("Policy", result, started);
    // The periodic recount catches Sync deletions the watch filter does not pass on.
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Whether two statuses say the same, transition times aside.
fn same_status(a: &PolicyStatus, b: &PolicyStatus) -> bool {
    let key = |s: &PolicyStatus| {
        let mut c: Vec<_> = s
            .conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                    c.observed_generation,
                )
            })
            .collect();
        c.sort();
        (s.observed_generation, s.governed_syncs, c)
    };
    key(a) == key(b)
}

/// Backs off after an API error.
pub fn error_policy(policy: Arc<Policy>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, name = policy.name_any(), "policy reconcile failed");
    Action::requeue(Duration::from_secs(15))
}
