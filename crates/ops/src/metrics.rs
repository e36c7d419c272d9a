//! Prometheus metrics shared by the controllers: reconcile durations and counts per kind and
//! result. Controllers register their own metrics in the same [`Registry`].

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileResult {
    /// It succeeded.
    Success,
    /// It failed and will be retried.
    Error,
}

impl ReconcileResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    kind: String,
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    kind: String,
    phase: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// The metric registry and the reconcile metrics every controller records.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    reconcile_duration: Family<ReconcileLabels, Histogram, fn() -> Histogram>,
    reconciles: Family<ReconcileLabels, Counter>,
    phase_duration: Family<PhaseLabels, Histogram, fn() -> Histogram>,
    artifact_size: Family<ObjectLabels, Gauge>,
    leader: Family<ControllerLabels, Gauge>,
    leader_terms_lost: Family<ControllerLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry under the `plumb` prefix with `reconcile_duration_seconds` and
    /// `reconcile_total`, both labelled by `kind` and `result`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("plumb");
        let reconcile_duration =
            Family::<ReconcileLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconcile_duration_seconds",
            "Time taken by one reconcile, by kind and result",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile",
            "Reconciles, by kind and result",
            reconciles.clone(),
        );
        let phase_duration =
            Family::<PhaseLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        registry.register(
            "reconcile_phase_duration_seconds",
            "Time taken by one phase of a reconcile (fetch, apply, health, status, ...), by kind and phase",
            phase_duration.clone(),
        );
        let artifact_size = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "artifact_size_bytes",
            "Size of the latest artifact, by kind, namespace and name",
            artifact_size.clone(),
        );
        let leader = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "leader",
            "1 while this process holds the controller's leader Lease and reconciles, else 0",
            leader.clone(),
        );
        let leader_terms_lost = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "leader_terms_lost",
            "Leadership terms that ended with the Lease lost (not renewed within the renew deadline, or taken over)",
            leader_terms_lost.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            reconcile_duration,
            reconciles,
            phase_duration,
            artifact_size,
            leader,
            leader_terms_lost,
        }
    }

    /// Registers a controller-specific metric in the shared registry.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        if let Ok(mut r) = self.registry.lock() {
            r.register(name, help, metric);
        }
    }

    /// Records one reconcile of `kind` that started at `started`.
    pub fn observe_reconcile(&self, kind: &str, result: ReconcileResult, started: Instant) {
        let labels = ReconcileLabels {
            kind: kind.to_owned(),
            result: result.as_str().to_owned(),
        };
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        self.reconciles.get_or_create(&labels).inc();
    }

    /// Records one `phase` of a reconcile of `kind` that started at `started`: where the time of
    /// a reconcile goes, summed over all of them (`_sum` and `_count` per phase).
    pub fn observe_phase(&self, kind: &str, phase: &str, started: Instant) {
        let labels = PhaseLabels {
            kind: kind.to_owned(),
            phase: phase.to_owned(),
        };
        self.phase_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }

    /// Records the size of the artifact just published for an object.
    pub fn observe_artifact_size(&self, kind: &str, namespace: &str, name: &str, bytes: i64) {
        let labels = ObjectLabels {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.artifact_size.get_or_create(&labels).set(bytes);
    }

    /// Records that this process now leads `controller` (holds its Lease), or no longer does.
    pub fn set_leader(&self, controller: &str, leading: bool) {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        self.leader.get_or_create(&labels).set(i64::from(leading));
    }

    /// Records that a leadership term of `controller` ended with the Lease lost.
    pub fn leadership_lost(&self, controller: &str) {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        self.leader_terms_lost.get_or_create(&labels).inc();
        self.set_leader(controller, false);
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_are_counted_per_kind_and_result() {
        let m = Metrics::new();
        m.observe_reconcile("GitRepository", ReconcileResult::Success, Instant::now());
        m.observe_reconcile("GitRepository", ReconcileResult::Error, Instant::now());
        m.observe_reconcile("GitRepository", ReconcileResult::Error, Instant::now());
        m.observe_artifact_size("GitRepository", "ns", "app", 1234);
        m.observe_phase("Sync", "apply", Instant::now());
        m.observe_phase("Sync", "apply", Instant::now());
        let text = m.encode();
        assert!(
            text.contains(
                r#"plumb_artifact_size_bytes{kind="GitRepository",namespace="ns",name="app"} 1234"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"plumb_reconcile_total{kind="GitRepository",result="error"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"plumb_reconcile_duration_seconds_count{kind="GitRepository",result="success"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"plumb_reconcile_phase_duration_seconds_count{kind="Sync",phase="apply"} 2"#
            ),
            "{text}"
        );
    }
}
