//! Health of one live object, by the kstatus rules: Current (healthy), InProgress, or Failed.

use serde_json::Value;

/// The health of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The object has reached its desired state.
    Current,
    /// The object is on its way; the message says what it waits for.
    InProgress(String),
    /// The object will not get there without a change; the message says why.
    Failed(String),
}

impl Health {
    /// Whether the object is healthy.
    pub fn is_current(&self) -> bool {
        matches!(self, Health::Current)
    }
}

fn int(obj: &Value, ptr: &str) -> Option<i64> {
    obj.pointer(ptr).and_then(Value::as_i64)
}

fn text<'a>(obj: &'a Value, ptr: &str) -> Option<&'a str> {
    obj.pointer(ptr).and_then(Value::as_str)
}

/// The condition of `type_` in `status.conditions`, as `(status, reason, message)`.
fn condition<'a>(obj: &'a Value, type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        .map(|c| {
            let f = |k| c.get(k).and_then(Value::as_str).unwrap_or("");
            (f("status"), f("reason"), f("message"))
        })
}

fn progressing(msg: impl Into<String>) -> Health {
    Health::InProgress(msg.into())
}

/// In progress when `obj`'s controller has not yet seen its latest spec
/// (`status.observedGeneration` below `metadata.generation`).
pub fn observed_generation_lags(obj: &Value) -> Option<Health> {
    let generation = int(obj, "/metadata/generation")?;
    let observed = int(obj, "/status/observedGeneration")?;
    (observed < generation).then(|| {
        progressing(format!(
            "generation {generation} not yet observed (at {observed})"
        ))
    })
}

/// In progress when `obj`'s controller has not reported on it at all yet (no
/// `status.observedGeneration`): a workload just created is not current before its controller
/// has seen it, however few replicas it asks for.
fn unobserved(obj: &Value) -> Option<Health> {
    obj.pointer("/status/observedGeneration")
        .is_none()
        .then(|| progressing("not yet observed by its controller"))
}

/// Assesses the health of `obj` (a live object with status) of `group`/`kind`.
pub fn assess(group: &str, kind: &str, obj: &Value) -> Health {
    if let Some(lag) = observed_generation_lags(obj) {
        return lag;
    }
    match (group, kind) {
        ("apps", "Deployment") => deployment(obj),
        ("apps", "StatefulSet") => statefulset(obj),
        ("apps", "DaemonSet") => daemonset(obj),
        ("apps", "ReplicaSet") | ("", "ReplicationController") => replicaset(obj),
        ("batch", "Job") => job(obj),
        ("", "PersistentVolumeClaim") => match text(obj, "/status/phase") {
            Some("Bound") => Health::Current,
            Some("Lost") => Health::Failed("claim lost its volume".into()),
            phase => progressing(format!("claim is {}", phase.unwrap_or("not bound"))),
        },
        ("", "Service") => service(obj),
        ("", "Namespace") => match text(obj, "/status/phase") {
            Some("Terminating") => progressing("namespace is terminating"),
            _ => Health::Current,
        },
        ("", "Pod") => pod(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(obj),
        ("networking.k8s.io", "Ingress") => ingress(obj),
        ("batch", "CronJob") => cronjob(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => hpa(obj),
        ("policy", "PodDisruptionBudget") => pdb(obj),
        ("cert-manager.io", _) => cert_manager(obj),
        _ => generic(obj),
    }
}

fn deployment(obj: &Value) -> Health {
    if let Some(("False", "ProgressDeadlineExceeded", msg)) = condition(obj, "Progressing") {
        return Health::Failed(format!("progress deadline exceeded: {msg}"));
    }
    if let Some(h) = unobserved(obj) {
        return h;
    }
    let want = int(obj, "/spec/replicas").unwrap_or(1);
    let updated = int(obj, "/status/updatedReplicas").unwrap_or(0);
    let total = int(obj, "/status/replicas").unwrap_or(0);
    let available = int(obj, "/status/availableReplicas").unwrap_or(0);
    let ready = int(obj, "/status/readyReplicas").unwrap_or(0);
    if updated < want {
        return progressing(format!("{updated} of {want} replicas updated"));
    }
    if total > updated {
        return progressing(format!(
            "{} old replicas pending termination",
            total - updated
        ));
    }
    if available < want || ready < want {
        return progressing(format!("{available} of {want} replicas available"));
    }
    Health::Current
}

fn statefulset(obj: &Value) -> Health {
    let want = int(obj, "/spec/replicas").unwrap_or(1);
    let ready = int(obj, "/status/readyReplicas").unwrap_or(0);
    let current = int(obj, "/status/currentReplicas").unwrap_or(0);
    if ready < want {
        return progressing(format!("{ready} of {want} replicas ready"));
    }
    let rolling =
        text(obj, "/spec/updateStrategy/type").unwrap_or("RollingUpdate") == "RollingUpdate";
    let partition = int(obj, "/spec/updateStrategy/rollingUpdate/partition").unwrap_or(0);
    if rolling && partition == 0 {
        if current < want {
            return progressing(format!(
                "{current} of {want} replicas at the current revision"
            ));
        }
        if text(obj, "/status/updateRevision") != text(obj, "/status/currentRevision") {
            return progressing("rolling update in progress");
        }
    }
    Health::Current
}

fn daemonset(obj: &Value) -> Health {
    let desired = int(obj, "/status/desiredNumberScheduled").unwrap_or(0);
    let scheduled = int(obj, "/status/currentNumberScheduled").unwrap_or(0);
    let updated = int(obj, "/status/updatedNumberScheduled").unwrap_or(0);
    let available = int(obj, "/status/numberAvailable").unwrap_or(0);
    if obj.pointer("/status/desiredNumberScheduled").is_none() {
        return progressing("not yet scheduled");
    }
    if scheduled < desired || updated < desired {
        return progressing(format!("{updated} of {desired} pods updated"));
    }
    if available < desired {
        return progressing(format!("{available} of {desired} pods available"));
    }
    Health::Current
}

fn replicaset(obj: &Value) -> Health {
    if let Some(h) = unobserved(obj) {
        return h;
    }
    let want = int(obj, "/spec/replicas").unwrap_or(1);
    let available = int(obj, "/status/availableReplicas").unwrap_or(0);
    if available < want {
        return progressing(format!("{available} of {want} replicas available"));
    }
    Health::Current
}

fn job(obj: &Value) -> Health {
    if let Some(("True", _, msg)) = condition(obj, "Failed") {
        return Health::Failed(format!("job failed: {msg}"));
    }
    match condition(obj, "Complete") {
        Some(("True", _, _)) => Health::Current,
        _ => progressing("job has not completed"),
    }
}

fn service(obj: &Value) -> Health {
    if text(obj, "/spec/type") == Some("LoadBalancer")
        && obj
            .pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
    {
        return progressing("load balancer has no address yet");
    }
    Health::Current
}

fn pod(obj: &Value) -> Health {
    match text(obj, "/status/phase") {
        Some("Succeeded") => Health::Current,
        Some("Failed") => Health::Failed("pod failed".into()),
        Some("Running") if matches!(condition(obj, "Ready"), Some(("True", _, _))) => {
            Health::Current
        }
        phase => progressing(format!("pod is {}", phase.unwrap_or("pending"))),
    }
}

fn crd(obj: &Value) -> Health {
    if let Some(("False", _, msg)) = condition(obj, "NamesAccepted") {
        return Health::Failed(format!("names not accepted: {msg}"));
    }
    match condition(obj, "Established") {
        Some(("True", _, _)) => Health::Current,
        _ => progressing("not yet established"),
    }
}

/// An Ingress is healthy once its controller published an address for it.
fn ingress(obj: &Value) -> Health {
    if obj
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return progressing("ingress has no address yet");
    }
    Health::Current
}

/// A CronJob is healthy unless its last scheduled run ended without success: a run that is
/// still going, or none yet, is fine (a schedule is not something to wait for).
fn cronjob(obj: &Value) -> Health {
    let Some(scheduled) = text(obj, "/status/lastScheduleTime") else {
        return Health::Current;
    };
    let succeeded = text(obj, "/status/lastSuccessfulTime");
    let running = obj
        .pointer("/status/active")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    // Both are RFC 3339 UTC times written by the same controller, so they order as strings.
    if running || succeeded.is_some_and(|s| s >= scheduled) {
        return Health::Current;
    }
    Health::Failed(format!(
        "the run scheduled at {scheduled} did not succeed (last success: {})",
        succeeded.unwrap_or("never")
    ))
}

/// A HorizontalPodAutoscaler that cannot scale has failed; one that cannot read its metrics yet
/// is in progress.
fn hpa(obj: &Value) -> Health {
    if let Some(("False", reason, msg)) = condition(obj, "AbleToScale") {
        return Health::Failed(format!("cannot scale ({reason}): {msg}"));
    }
    match condition(obj, "ScalingActive") {
        Some(("False", "ScalingDisabled", _)) | Some(("True", _, _)) | None => Health::Current,
        Some((_, reason, msg)) => progressing(format!("scaling not active ({reason}): {msg}")),
    }
}

/// A PodDisruptionBudget is healthy when enough of its pods are healthy to allow a disruption
/// budget (`currentHealthy >= desiredHealthy`).
fn pdb(obj: &Value) -> Health {
    let (Some(current), Some(desired)) = (
        int(obj, "/status/currentHealthy"),
        int(obj, "/status/desiredHealthy"),
    ) else {
        return progressing("not yet observed by the disruption controller");
    };
    if current < desired {
        return progressing(format!("{current} of {desired} pods healthy"));
    }
    Health::Current
}

/// cert-manager's kinds (Certificate, CertificateRequest, Issuer, ClusterIssuer): healthy
/// only with `Ready=True`; a request that failed or was denied, or an issuance that failed, has
/// failed; anything else is in progress.
fn cert_manager(obj: &Value) -> Health {
    if let Some(("False", "Failed", msg)) = condition(obj, "Issuing") {
        return Health::Failed(format!("issuing failed: {msg}"));
    }
    if let Some(("True", reason, msg)) = condition(obj, "Denied")
        .or_else(|| condition(obj, "InvalidRequest"))
        .or_else(|| condition(obj, "Failed"))
    {
        return Health::Failed(format!("request failed ({reason}): {msg}"));
    }
    match condition(obj, "Ready") {
        Some(("True", _, _)) => Health::Current,
        Some(("False", reason @ ("Failed" | "Denied" | "InvalidRequest"), msg)) => {
            Health::Failed(format!("not ready ({reason}): {msg}"))
        }
        Some((_, reason, msg)) => progressing(format!("not ready ({reason}): {msg}")),
        None => progressing("no Ready condition yet"),
    }
}

/// Objects of other kinds: kstatus' generic rules on `Stalled`, `Reconciling` and `Ready`.
fn generic(obj: &Value) -> Health {
    if let Some(("True", reason, msg)) = condition(obj, "Stalled") {
        return Health::Failed(format!("stalled ({reason}): {msg}"));
    }
    if let Some(("True", reason, msg)) = condition(obj, "Reconciling") {
        return progressing(format!("reconciling ({reason}): {msg}"));
    }
    match condition(obj, "Ready") {
        Some(("False", reason, msg)) => progressing(format!("not ready ({reason}): {msg}")),
        Some(("Unknown", reason, msg)) => {
            progressing(format!("readiness unknown ({reason}): {msg}"))
        }
        _ => Health::Current,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn deployment_is_current_when_all_replicas_are_available() {
        let mut d = json!({
            "metadata": {"generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                       "readyReplicas": 2, "availableReplicas": 1}
        });
        assert!(matches!(
            assess("apps", "Deployment", &d),
            Health::InProgress(_)
        ));
        d["status"]["availableReplicas"] = json!(2);
        assert_eq!(assess("apps", "Deployment", &d), Health::Current);
        d["metadata"]["generation"] = json!(3);
        assert!(
            matches!(assess("apps", "Deployment", &d), Health::InProgress(m) if m.contains("generation 3"))
        );
    }

    #[test]
    fn a_workload_its_controller_has_not_seen_is_in_progress_even_at_zero_replicas() {
        for (kind, spec) in [
            ("Deployment", json!({"replicas": 0})),
            ("ReplicaSet", json!({"replicas": 0})),
        ] {
            let mut w = json!({"metadata": {"generation": 1}, "spec": spec});
            assert!(
                matches!(assess("apps", kind, &w), Health::InProgress(m) if m.contains("not yet observed")),
                "{kind} without status"
            );
            w["status"] = json!({"observedGeneration": 1});
            assert_eq!(assess("apps", kind, &w), Health::Current, "{kind} observed");
        }
    }

    #[test]
    fn deployment_past_its_progress_deadline_failed() {
        let d = json!({"status": {"conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}
        ]}});
        assert!(matches!(
            assess("apps", "Deployment", &d),
            Health::Failed(_)
        ));
    }

    #[test]
    fn job_complete_or_failed() {
        let mut j = json!({"status": {"conditions": []}});
        assert!(matches!(assess("batch", "Job", &j), Health::InProgress(_)));
        j["status"]["conditions"] = json!([{"type": "Complete", "status": "True"}]);
        assert_eq!(assess("batch", "Job", &j), Health::Current);
        j["status"]["conditions"] =
            json!([{"type": "Failed", "status": "True", "message": "backoff"}]);
        assert!(matches!(assess("batch", "Job", &j), Health::Failed(_)));
    }

    #[test]
    fn crd_must_be_established() {
        let mut c = json!({"status": {}});
        assert!(!assess("apiextensions.k8s.io", "CustomResourceDefinition", &c).is_current());
        c["status"]["conditions"] = json!([{"type": "Established", "status": "True"}]);
        assert!(assess("apiextensions.k8s.io", "CustomResourceDefinition", &c).is_current());
    }

    #[test]
    fn pvc_service_namespace_statefulset_daemonset() {
        assert!(
            !assess(
                "",
                "PersistentVolumeClaim",
                &json!({"status": {"phase": "Pending"}})
            )
            .is_current()
        );
        assert!(
            assess(
                "",
                "PersistentVolumeClaim",
                &json!({"status": {"phase": "Bound"}})
            )
            .is_current()
        );
        assert!(!assess("", "Service", &json!({"spec": {"type": "LoadBalancer"}})).is_current());
        assert!(assess("", "Service", &json!({"spec": {"type": "ClusterIP"}})).is_current());
        assert!(
            !assess(
                "",
                "Namespace",
                &json!({"status": {"phase": "Terminating"}})
            )
            .is_current()
        );
        assert!(assess("", "Namespace", &json!({"status": {"phase": "Active"}})).is_current());
        let sts = json!({"spec": {"replicas": 1}, "status": {"readyReplicas": 1, "currentReplicas": 1,
            "currentRevision": "a", "updateRevision": "a"}});
        assert!(assess("apps", "StatefulSet", &sts).is_current());
        let ds = json!({"status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3,
            "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert!(!assess("apps", "DaemonSet", &ds).is_current());
    }

    #[test]
    fn ingress_waits_for_an_address() {
        let mut i = json!({"status": {"loadBalancer": {}}});
        assert!(matches!(
            assess("networking.k8s.io", "Ingress", &i),
            Health::InProgress(m) if m.contains("no address")
        ));
        i["status"]["loadBalancer"]["ingress"] = json!([{"ip": "10.0.0.9"}]);
        assert!(assess("networking.k8s.io", "Ingress", &i).is_current());
    }

    #[test]
    fn cronjob_fails_only_when_its_last_run_did_not_succeed() {
        let cj = |status: Value| json!({"status": status});
        assert!(assess("batch", "CronJob", &cj(json!({}))).is_current());
        let ok = json!({"lastScheduleTime": "2026-11-29T10:00:00Z",
            "lastSuccessfulTime": "2026-11-29T10:00:07Z"});
        assert!(assess("batch", "CronJob", &cj(ok)).is_current());
        let running = json!({"lastScheduleTime": "2026-11-29T11:00:00Z",
            "lastSuccessfulTime": "2026-11-29T10:00:07Z", "active": [{"name": "j"}]});
        assert!(assess("batch", "CronJob", &cj(running)).is_current());
        let failed = json!({"lastScheduleTime": "2026-11-29T11:00:00Z",
            "lastSuccessfulTime": "2026-11-29T10:00:07Z"});
        assert!(matches!(
            assess("batch", "CronJob", &cj(failed)),
            Health::Failed(m) if m.contains("2026-11-29T11:00:00Z")
        ));
        let never = json!({"lastScheduleTime": "2026-11-29T11:00:00Z"});
        assert!(matches!(
            assess("batch", "CronJob", &cj(never)),
            Health::Failed(m) if m.contains("never")
        ));
    }

    #[test]
    fn hpa_that_cannot_scale_failed_and_without_metrics_is_in_progress() {
        let with = |conditions: Value| json!({"status": {"conditions": conditions}});
        let g = "autoscaling";
        assert!(assess(g, "HorizontalPodAutoscaler", &with(json!([]))).is_current());
        let active = json!([{"type": "AbleToScale", "status": "True"},
            {"type": "ScalingActive", "status": "True"}]);
        assert!(assess(g, "HorizontalPodAutoscaler", &with(active)).is_current());
        let no_metrics = json!([{"type": "ScalingActive", "status": "False",
            "reason": "FailedGetResourceMetric", "message": "no metrics"}]);
        assert!(matches!(
            assess(g, "HorizontalPodAutoscaler", &with(no_metrics)),
            Health::InProgress(m) if m.contains("FailedGetResourceMetric")
        ));
        let disabled =
            json!([{"type": "ScalingActive", "status": "False", "reason": "ScalingDisabled"}]);
        assert!(assess(g, "HorizontalPodAutoscaler", &with(disabled)).is_current());
        let stuck = json!([{"type": "AbleToScale", "status": "False", "reason": "FailedGetScale"}]);
        assert!(matches!(
            assess(g, "HorizontalPodAutoscaler", &with(stuck)),
            Health::Failed(_)
        ));
    }

    #[test]
    fn pdb_needs_its_desired_healthy_pods() {
        let p = |current: i64, desired: i64| json!({"status": {"currentHealthy": current, "desiredHealthy": desired}});
        assert!(!assess("policy", "PodDisruptionBudget", &json!({})).is_current());
        assert!(!assess("policy", "PodDisruptionBudget", &p(1, 2)).is_current());
        assert!(assess("policy", "PodDisruptionBudget", &p(2, 2)).is_current());
        assert!(assess("policy", "PodDisruptionBudget", &p(0, 0)).is_current());
    }

    #[test]
    fn cert_manager_kinds_need_ready_and_fail_on_a_failed_issuance() {
        let with = |conditions: Value| json!({"status": {"conditions": conditions}});
        let g = "cert-manager.io";
        assert!(matches!(
            assess(g, "Certificate", &with(json!([]))),
            Health::InProgress(m) if m.contains("no Ready")
        ));
        let issuing = json!([{"type": "Ready", "status": "False", "reason": "DoesNotExist"},
            {"type": "Issuing", "status": "True", "reason": "DoesNotExist"}]);
        assert!(matches!(
            assess(g, "Certificate", &with(issuing)),
            Health::InProgress(_)
        ));
        let failed = json!([{"type": "Ready", "status": "False", "reason": "DoesNotExist"},
            {"type": "Issuing", "status": "False", "reason": "Failed", "message": "acme said no"}]);
        assert!(matches!(
            assess(g, "Certificate", &with(failed)),
            Health::Failed(m) if m.contains("acme said no")
        ));
        let denied = json!([{"type": "Denied", "status": "True", "reason": "Policy"}]);
        assert!(matches!(
            assess(g, "CertificateRequest", &with(denied)),
            Health::Failed(_)
        ));
        let ready = json!([{"type": "Ready", "status": "True"}]);
        assert!(assess(g, "ClusterIssuer", &with(ready)).is_current());
    }

    #[test]
    fn generic_objects_follow_ready_and_observed_generation() {
        assert!(assess("example.com", "Widget", &json!({})).is_current());
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "X", "message": "y"}]}});
        assert!(!assess("example.com", "Widget", &not_ready).is_current());
        let stale = json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 1}});
        assert!(!assess("example.com", "Widget", &stale).is_current());
        let stalled = json!({"status": {"conditions": [{"type": "Stalled", "status": "True"}]}});
        assert!(matches!(
            assess("example.com", "Widget", &stalled),
            Health::Failed(_)
        ));
    }
}
