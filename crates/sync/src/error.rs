//! Why a reconcile of a Sync did not end Ready: one enum, mapped to a condition reason in one
//! place ([`Error::reason`]); the same words go to the condition, the Event and the log line.

use plumb_api::{ObjectId, reason};

use crate::apply::ApplyError;
use crate::manifest::ManifestError;
use crate::window::WindowError;

/// A failure of one reconcile of a Sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `spec.sourceRef` points into another namespace and the controller refuses that.
    #[error(
        "sourceRef points into namespace {namespace:?}; cross-namespace references are disabled"
    )]
    CrossNamespaceRef {
        /// The namespace the reference points into.
        namespace: String,
    },
    /// `dependsOn` forms a cycle through this Sync.
    #[error("dependency cycle: {cycle}")]
    DependencyCycle {
        /// The Syncs on the cycle, `a -> b -> a`.
        cycle: String,
    },
    /// Some Syncs of `dependsOn` are not Ready at their latest revision.
    #[error("dependencies not ready: {}", waiting.join(", "))]
    DependenciesNotReady {
        /// Each as `namespace/name (why)`.
        waiting: Vec<String>,
    },
    /// The render controller could not render the Sync; its reason and message are carried over.
    #[error("{message}")]
    RenderFailed {
        /// The `Rendered` condition's reason (`PolicyViolation`, `BuildFailed`, ...).
        reason: String,
        /// The `Rendered` condition's message.
        message: String,
    },
    /// The rendered artifact could not be downloaded or verified.
    #[error(transparent)]
    Fetch(#[from] plumb_artifact::fetch::FetchError),
    /// The rendered artifact could not be read as objects.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// SOPS decryption of the render failed; nothing of it was applied.
    #[error("decryption failed, nothing applied: {0}")]
    Decryption(#[from] crate::decrypt::DecryptError),
    /// Values from `substituteFrom` Secrets could not be substituted; nothing was applied.
    #[error("substitution of Secret values failed, nothing applied: {0}")]
    Substitution(#[from] crate::substitution::SubstitutionError),
    /// A governing Policy's window cannot be evaluated.
    #[error("governing policy: {0}")]
    Window(#[from] WindowError),
    /// The client impersonating the Sync's service account could not be built.
    #[error("impersonation client: {0}")]
    Impersonation(#[source] kube::Error),
    /// The API server refused the apply (RBAC, impersonation).
    #[error("{who} may not apply: {source}")]
    Forbidden {
        /// `service account ns/name` or `the controller`.
        who: String,
        /// The refused request.
        source: Box<ApplyError>,
    },
    /// An apply, read or wait failed.
    #[error(transparent)]
    Apply(Box<ApplyError>),
    /// Objects of the render are applied by other Syncs.
    #[error("{}", conflicts_message(.0))]
    OwnershipConflict(Vec<(ObjectId, String)>),
    /// Prune must not run (an empty render without `pruneEmpty`).
    #[error("nothing pruned: {0}")]
    PruneBlocked(&'static str),
    /// Some objects could not be pruned; they stay in the inventory.
    #[error("prune failed: {}", failures_message(.0))]
    Prune(Vec<(ObjectId, ApplyError)>),
    /// A Helm hook failed, did not finish in time, or could not be run.
    #[error(transparent)]
    Hook(Box<crate::hooks::HookError>),
    /// A `dependsOn[].readyExpr` does not compile.
    #[error(transparent)]
    InvalidReadyExpr(#[from] crate::deps::InvalidReadyExpr),
    /// An expression of `spec.healthCheckExprs` does not compile.
    #[error(transparent)]
    InvalidHealthExpression(#[from] crate::custom_health::InvalidExpression),
    /// Applied objects did not become healthy within the timeout, or failed.
    #[error("not healthy within {timeout}: {unhealthy}")]
    Unhealthy {
        /// The timeout, as `90s` or `5m`.
        timeout: String,
        /// Each unhealthy object with why.
        unhealthy: String,
    },
    /// Deleting the Sync's objects (its `deletionPolicy`) failed or timed out.
    #[error("deleting the objects of the Sync: {}", failures_message(.0))]
    Deletion(Vec<(ObjectId, ApplyError)>),
    /// Adding or removing the finalizer failed, or the deletion behind it.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A Sync's cached copy could not be read back (the controller packed it: a bug).
    #[error("Sync {sync}: reading its cached copy: {source}")]
    CachedSync {
        /// The Sync, `namespace/name`.
        sync: String,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// Writing the Sync's status or finalizer failed.
    #[error("writing Sync {namespace}/{name}: {source}")]
    Write {
        /// The Sync's namespace.
        namespace: String,
        /// The Sync's name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
}

fn failures_message(failures: &[(ObjectId, ApplyError)]) -> String {
    failures
        .iter()
        .map(|(id, e)| format!("{id}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn conflicts_message(conflicts: &[(ObjectId, String)]) -> String {
    let list = conflicts
        .iter()
        .map(|(id, owner)| format!("{id} (applied by Sync {owner})"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "refusing to take over objects of another Sync: {list}; annotate an object \
         plumb.dev/takeover: enabled to allow it"
    )
}

impl Error {
    /// A failed write of Sync `key` (its status or finalizer), for `map_err`.
    pub fn write(key: &crate::deps::Key) -> impl FnOnce(kube::Error) -> Error + '_ {
        |source| Error::Write {
            namespace: key.0.clone(),
            name: key.1.clone(),
            source,
        }
    }

    /// The condition reason.
    pub fn reason(&self) -> &str {
        match self {
            Error::CrossNamespaceRef { .. } | Error::Impersonation(_) | Error::Forbidden { .. } => {
                reason::ACCESS_DENIED
            }
            Error::DependencyCycle { .. } | Error::DependenciesNotReady { .. } => {
                reason::DEPENDENCY_NOT_READY
            }
            Error::RenderFailed { reason, .. } => reason,
            Error::Fetch(_) | Error::Manifest(_) => reason::ARTIFACT_FAILED,
            Error::Decryption(_) => reason::DECRYPTION_FAILED,
            Error::Substitution(e) if e.is_transient() => reason::RENDER_NOT_READY,
            Error::Substitution(_) => reason::ARTIFACT_FAILED,
            Error::Window(_) => reason::INVALID_SPEC,
            Error::InvalidHealthExpression(_) | Error::InvalidReadyExpr(_) => {
                reason::INVALID_CEL_EXPRESSION
            }
            Error::Apply(_) | Error::Write { .. } | Error::CachedSync { .. } => {
                reason::APPLY_FAILED
            }
            Error::OwnershipConflict(_) => reason::OWNERSHIP_CONFLICT,
            Error::PruneBlocked(_) | Error::Prune(_) => reason::PRUNE_FAILED,
            Error::Unhealthy { .. } => reason::HEALTH_CHECK_FAILED,
            Error::Hook(_) => reason::HOOK_FAILED,
            Error::Deletion(_) | Error::Finalizer(_) => reason::DELETION_FAILED,
        }
    }

    /// Whether retrying without a change by a person is pointless (`Stalled`).
    pub fn stalls(&self) -> bool {
        matches!(
            self,
            Error::CrossNamespaceRef { .. }
                | Error::DependencyCycle { .. }
                | Error::Window(_)
                | Error::InvalidHealthExpression(_)
                | Error::InvalidReadyExpr(_)
                | Error::PruneBlocked(_)
        )
    }

    /// An apply failure, told apart by whether the API server refused the caller (`who`).
    pub fn from_apply(e: ApplyError, who: impl FnOnce() -> String) -> Self {
        if e.is_forbidden() {
            Error::Forbidden {
                who: who(),
                source: Box::new(e),
            }
        } else {
            Error::Apply(Box::new(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_maps_to_one_reason_and_stall_verdict() {
        let id = ObjectId::new("ns", "web", "apps", "Deployment");
        let cases: Vec<(Error, &str, bool)> = vec![
            (
                Error::CrossNamespaceRef {
                    namespace: "x".into(),
                },
                "AccessDenied",
                true,
            ),
            (
                Error::DependencyCycle {
                    cycle: "a -> a".into(),
                },
                "DependencyNotReady",
                true,
            ),
            (
                Error::DependenciesNotReady {
                    waiting: vec!["ns/a (not ready)".into()],
                },
                "DependencyNotReady",
                false,
            ),
            (
                Error::RenderFailed {
                    reason: "PolicyViolation".into(),
                    message: "rule r".into(),
                },
                "PolicyViolation",
                false,
            ),
            (
                Error::PruneBlocked("the render is empty"),
                "PruneFailed",
                true,
            ),
            (
                Error::OwnershipConflict(vec![(id, "ns/other".into())]),
                "OwnershipConflict",
                false,
            ),
            (
                Error::Unhealthy {
                    timeout: "1m".into(),
                    unhealthy: "x".into(),
                },
                "HealthCheckFailed",
                false,
            ),
            (Error::Prune(vec![]), "PruneFailed", false),
            (
                Error::InvalidHealthExpression(crate::custom_health::InvalidExpression {
                    api_version: "example.com/v1".into(),
                    kind: "Database".into(),
                    field: "current",
                    expression: "(".into(),
                    message: "syntax".into(),
                }),
                "InvalidCELExpression",
                true,
            ),
            (
                Error::InvalidReadyExpr(crate::deps::InvalidReadyExpr {
                    dependency: "ns/db".into(),
                    expression: "dep.".into(),
                    message: "syntax".into(),
                }),
                "InvalidCELExpression",
                true,
            ),
            (Error::Deletion(vec![]), "DeletionFailed", false),
        ];
        for (e, reason, stalls) in cases {
            assert_eq!(e.reason(), reason, "{e}");
            assert_eq!(e.stalls(), stalls, "{e}");
        }
    }

    #[test]
    fn messages_name_the_object_and_the_other_owner() {
        let id = ObjectId::new("ns", "web", "apps", "Deployment");
        let e = Error::OwnershipConflict(vec![(id, "team/other".into())]);
        let msg = e.to_string();
        assert!(msg.contains("ns_web_apps_Deployment"), "{msg}");
        assert!(msg.contains("team/other"), "{msg}");
        assert!(msg.contains("plumb.dev/takeover"), "{msg}");
        let e = Error::DependenciesNotReady {
            waiting: vec!["ns/a (not found)".into(), "ns/b (not ready)".into()],
        };
        assert_eq!(
            e.to_string(),
            "dependencies not ready: ns/a (not found), ns/b (not ready)"
        );
    }
}
