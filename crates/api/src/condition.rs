//! Conditions in the metav1 shape, and the kstatus rules plumb follows when setting them.
//!
//! `Ready` is always present once an object has been reconciled; `Reconciling` and `Stalled` are
//! present only while true, so kstatus-aware tools (`kubectl wait`, Flux CLI, Argo CD health) read
//! the state the usual way.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition types plumb sets.
pub mod kind {
    /// The object is reconciled and its latest spec is in effect.
    pub const READY: &str = "Ready";
    /// Work is under way on the latest generation; present only while true.
    pub const RECONCILING: &str = "Reconciling";
    /// Reconciliation cannot progress without a change by a person; present only while true.
    pub const STALLED: &str = "Stalled";
    /// The render controller produced a rendered artifact for the latest source and spec.
    pub const RENDERED: &str = "Rendered";
    /// Every object applied by the Sync passes its health check.
    pub const HEALTHY: &str = "Healthy";
}

/// Reasons that explain a condition's status; the same words go to Events and logs.
pub mod reason {
    /// The last reconcile succeeded.
    pub const SUCCEEDED: &str = "ReconciliationSucceeded";
    /// Work is in progress.
    pub const PROGRESSING: &str = "Progressing";
    /// Work is in progress again after a failure.
    pub const PROGRESSING_WITH_RETRY: &str = "ProgressingWithRetry";
    /// The object is suspended by `spec.suspend`.
    pub const SUSPENDED: &str = "Suspended";
    /// A git operation failed (network, protocol, repository).
    pub const GIT_OPERATION_FAILED: &str = "GitOperationFailed";
    /// The git server refused the credentials, or the host key could not be verified.
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    /// The branch, tag, semver range, commit or ref does not exist in the remote.
    pub const REF_NOT_FOUND: &str = "RefNotFound";
    /// Writing or serving the artifact failed.
    pub const ARTIFACT_STORAGE_FAILED: &str = "ArtifactStorageFailed";
    /// Downloading or verifying an upstream artifact failed.
    pub const ARTIFACT_FAILED: &str = "ArtifactFailed";
    /// The spec is invalid in a way the schema cannot express.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The referenced source does not exist or has no artifact yet.
    pub const SOURCE_NOT_READY: &str = "SourceNotReady";
    /// Rendering (kustomize, substitution) failed.
    pub const BUILD_FAILED: &str = "BuildFailed";
    /// A Deny rule of a governing Policy rejected an object.
    pub const POLICY_VIOLATION: &str = "PolicyViolation";
    /// A governing Policy has a rule that does not compile.
    pub const POLICY_INVALID: &str = "PolicyInvalid";
    /// A CEL expression failed to compile.
    pub const INVALID_CEL_EXPRESSION: &str = "InvalidCELExpression";
    /// The render has not produced an artifact for the latest source yet.
    pub const RENDER_NOT_READY: &str = "RenderNotReady";
    /// A server-side apply failed.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// Deleting objects that left the inventory failed.
    pub const PRUNE_FAILED: &str = "PruneFailed";
    /// Applied objects did not become healthy within the timeout.
    pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
    /// A Helm hook of the render failed or did not finish within the timeout.
    pub const HOOK_FAILED: &str = "HookFailed";
    /// A Sync named in `dependsOn` is not Ready at its latest revision.
    pub const DEPENDENCY_NOT_READY: &str = "DependencyNotReady";
    /// A new revision waits for a Policy's sync window.
    pub const WINDOW_CLOSED: &str = "SyncWindowClosed";
    /// The controller is not allowed to do what the spec asks (impersonation, cross-namespace ref).
    pub const ACCESS_DENIED: &str = "AccessDenied";
    /// An input crossed a named limit (YAML size, alias expansion, nesting, render time, ...);
    /// the message names the object, the file and the limit.
    pub const LIMIT_EXCEEDED: &str = "LimitExceeded";
    /// The source asks for something plumb refuses on purpose (remote bases, helm charts in a
    /// kustomization, exec functions, non-builtin plugins).
    pub const UNSUPPORTED: &str = "Unsupported";
    /// An object of the render is applied by another Sync; taking it over needs
    /// `plumb.dev/takeover: enabled` on the object.
    pub const OWNERSHIP_CONFLICT: &str = "OwnershipConflict";
    /// Deleting a Sync's objects (its `deletionPolicy`) failed or timed out.
    pub const DELETION_FAILED: &str = "DeletionFailed";
    /// SOPS decryption of a render failed (missing or wrong key, changed file); nothing of the
    /// render was applied. The message names the object and the file.
    pub const DECRYPTION_FAILED: &str = "DecryptionFailed";
}

/// Condition status values.
pub mod status {
    /// The condition holds.
    pub const TRUE: &str = "True";
    /// The condition does not hold.
    pub const FALSE: &str = "False";
    /// The controller cannot tell yet.
    pub const UNKNOWN: &str = "Unknown";
}

/// Builds a condition stamped now.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

/// Reading and writing a list of conditions by type.
pub trait Conditions {
    /// The condition of `type_`, when present.
    fn get_condition(&self, type_: &str) -> Option<&Condition>;
    /// Whether the condition of `type_` is present with status `True`.
    fn is_true(&self, type_: &str) -> bool {
        self.get_condition(type_)
            .is_some_and(|c| c.status == status::TRUE)
    }
    /// Sets `cond`, replacing the one of the same type; the transition time is kept when the
    /// status did not change, so `lastTransitionTime` means what its name says.
    fn set_condition(&mut self, cond: Condition);
    /// Removes the condition of `type_`, if present.
    fn remove_condition(&mut self, type_: &str);
}

impl Conditions for Vec<Condition> {
    fn get_condition(&self, type_: &str) -> Option<&Condition> {
        self.iter().find(|c| c.type_ == type_)
    }

    fn set_condition(&mut self, mut cond: Condition) {
        match self.iter_mut().find(|c| c.type_ == cond.type_) {
            Some(old) => {
                if old.status == cond.status {
                    cond.last_transition_time = old.last_transition_time.clone();
                }
                *old = cond;
            }
            None => self.push(cond),
        }
    }

    fn remove_condition(&mut self, type_: &str) {
        self.retain(|c| c.type_ != type_);
    }
}

/// The kstatus transitions every plumb controller makes on an object's top-level conditions.
pub trait ConditionExt: Conditions {
    /// Work started on `generation`: `Reconciling=True`, `Ready=Unknown`, no `Stalled`.
    fn mark_reconciling(&mut self, reason: &str, message: &str, generation: Option<i64>) {
        self.set_condition(new_condition(
            kind::RECONCILING,
            status::TRUE,
            reason,
            message,
            generation,
        ));
        self.set_condition(new_condition(
            kind::READY,
            status::UNKNOWN,
            reason,
            message,
            generation,
        ));
        self.remove_condition(kind::STALLED);
    }

    /// Success: `Ready=True`, no `Reconciling`, no `Stalled`.
    fn mark_ready(&mut self, reason: &str, message: &str, generation: Option<i64>) {
        self.set_condition(new_condition(
            kind::READY,
            status::TRUE,
            reason,
            message,
            generation,
        ));
        self.remove_condition(kind::RECONCILING);
        self.remove_condition(kind::STALLED);
    }

    /// A failure that will be retried: `Ready=False`, `Reconciling=True` (retrying), no `Stalled`.
    fn mark_failed(&mut self, reason: &str, message: &str, generation: Option<i64>) {
        self.set_condition(new_condition(
            kind::READY,
            status::FALSE,
            reason,
            message,
            generation,
        ));
        self.set_condition(new_condition(
            kind::RECONCILING,
            status::TRUE,
            reason::PROGRESSING_WITH_RETRY,
            message,
            generation,
        ));
        self.remove_condition(kind::STALLED);
    }

    /// A failure that needs a change by a person: `Ready=False`, `Stalled=True`, no `Reconciling`.
    fn mark_stalled(&mut self, reason: &str, message: &str, generation: Option<i64>) {
        self.set_condition(new_condition(
            kind::READY,
            status::FALSE,
            reason,
            message,
            generation,
        ));
        self.set_condition(new_condition(
            kind::STALLED,
            status::TRUE,
            reason,
            message,
            generation,
        ));
        self.remove_condition(kind::RECONCILING);
    }
}

impl<T: Conditions + ?Sized> ConditionExt for T {}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(conds: &[Condition]) -> Vec<(&str, &str)> {
        conds
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect()
    }

    #[test]
    fn set_condition_replaces_by_type_and_keeps_transition_time_when_status_is_unchanged() {
        let mut conds = vec![];
        let mut first = new_condition(kind::READY, status::TRUE, reason::SUCCEEDED, "a", Some(1));
        first.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        conds.set_condition(first);
        conds.set_condition(new_condition(
            kind::READY,
            status::TRUE,
            reason::SUCCEEDED,
            "b",
            Some(2),
        ));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].message, "b");
        assert_eq!(conds[0].observed_generation, Some(2));
        assert_eq!(conds[0].last_transition_time, Time(Timestamp::UNIX_EPOCH));

        conds.set_condition(new_condition(
            kind::READY,
            status::FALSE,
            reason::BUILD_FAILED,
            "c",
            Some(2),
        ));
        assert_ne!(conds[0].last_transition_time, Time(Timestamp::UNIX_EPOCH));
    }

    #[test]
    fn kstatus_transitions_keep_reconciling_and_stalled_only_while_true() {
        let mut conds: Vec<Condition> = vec![];
        conds.mark_reconciling(reason::PROGRESSING, "fetching", Some(1));
        assert_eq!(
            types(&conds),
            [("Reconciling", "True"), ("Ready", "Unknown")]
        );

        conds.mark_stalled(reason::INVALID_SPEC, "bad", Some(1));
        assert_eq!(types(&conds), [("Ready", "False"), ("Stalled", "True")]);

        conds.mark_failed(reason::GIT_OPERATION_FAILED, "down", Some(1));
        assert_eq!(types(&conds), [("Ready", "False"), ("Reconciling", "True")]);
        assert_eq!(
            conds.get_condition("Reconciling").unwrap().reason,
            reason::PROGRESSING_WITH_RETRY
        );

        conds.mark_ready(reason::SUCCEEDED, "ok", Some(1));
        assert_eq!(types(&conds), [("Ready", "True")]);
        assert!(conds.is_true(kind::READY));
    }

    #[test]
    fn other_conditions_are_left_alone() {
        let mut conds = vec![new_condition(
            kind::RENDERED,
            status::TRUE,
            reason::SUCCEEDED,
            "",
            None,
        )];
        conds.mark_ready(reason::SUCCEEDED, "ok", Some(3));
        assert!(conds.is_true(kind::RENDERED));
        assert!(conds.is_true(kind::READY));
    }
}
