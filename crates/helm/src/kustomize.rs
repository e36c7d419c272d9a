//! The chart engine of kustomize builds: a kustomization's `helmCharts` rendered by this Helm,
//! with the arguments `kustomize build --enable-helm` gives `helm template`.

use plumb_kustomize::{ChartEngine, ChartFailure, ChartRequest};

use crate::engine::{Capabilities, Helm, TemplateRequest};
use crate::process::ProcessLimits;

/// Renders `helmCharts` for [`plumb_kustomize::BuildOptions::charts`].
#[derive(Debug, Clone)]
pub struct KustomizeCharts {
    /// The engine (and its render cache).
    pub helm: Helm,
    /// What each `helm template` may spend.
    pub limits: ProcessLimits,
    /// `.Capabilities` for a chart entry that sets neither `kubeVersion` nor `apiVersions`
    /// (kustomize's `--helm-kube-version` / `--helm-api-versions`): the live cluster's in the
    /// render controller, Helm's defaults in `plumb build`.
    pub capabilities: Capabilities,
    /// Set when a chart was rendered (the build's output then depends on the capabilities).
    pub inflated: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl KustomizeCharts {
    /// The `helm template` request of a `helmCharts` entry.
    pub fn template_request(&self, req: &ChartRequest) -> TemplateRequest {
        let mut t = TemplateRequest::new(
            req.chart.clone(),
            req.release_name.clone().unwrap_or_default(),
            // Helm's namespace without a kubeconfig, which is what kustomize gets unset.
            req.namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
        );
        t.name_template = req.name_template.clone();
        t.values = req.values.clone();
        t.capabilities = Capabilities {
            kube_version: req
                .kube_version
                .clone()
                .or_else(|| self.capabilities.kube_version.clone()),
            api_versions: if req.api_versions.is_empty() {
                self.capabilities.api_versions.clone()
            } else {
                req.api_versions.clone()
            },
        };
        t.include_crds = req.include_crds;
        t.skip_tests = req.skip_tests;
        t.no_hooks = req.skip_hooks;
        t
    }
}

impl ChartEngine for KustomizeCharts {
    fn template(&self, req: &ChartRequest) -> Result<String, ChartFailure> {
        self.inflated
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.helm
            .template(&self.template_request(req), &self.limits)
            .map(|text| text.to_string())
            .map_err(|e| ChartFailure {
                message: e.to_string(),
                transient: e.is_transient(),
                refused: matches!(e, crate::engine::HelmError::MissingDependency { .. }),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_entry_capabilities_win_over_the_defaults() {
        let engine = KustomizeCharts {
            helm: Helm::new("helm".into(), 0),
            limits: ProcessLimits {
                timeout: std::time::Duration::from_secs(1),
                max_memory: 1 << 20,
                max_output: 1 << 20,
            },
            capabilities: Capabilities {
                kube_version: Some("v1.35.8".into()),
                api_versions: vec!["apps/v1".into()],
            },
            inflated: Default::default(),
        };
        let mut req = ChartRequest {
            chart: "/c".into(),
            release_name: None,
            name_template: None,
            namespace: None,
            values: vec![],
            api_versions: vec![],
            kube_version: None,
            include_crds: false,
            skip_tests: false,
            skip_hooks: true,
        };
        let t = engine.template_request(&req);
        assert_eq!(t.release_name, "");
        assert_eq!(t.namespace, "default");
        assert_eq!(t.capabilities, engine.capabilities);
        assert!(t.no_hooks);
        req.kube_version = Some("v1.30.0".into());
        req.api_versions = vec!["x/v1".into()];
        let t = engine.template_request(&req);
        assert_eq!(t.capabilities.kube_version.as_deref(), Some("v1.30.0"));
        assert_eq!(t.capabilities.api_versions, ["x/v1"]);
    }
}
