//! Which Policies govern a Sync, and what they decide for it: drift mode, ignored paths, windows.

use plumb_api::Policy;
use plumb_api::policy::{DriftIgnore, DriftMode, SyncWindow};

/// What the governing Policies decide for one Sync.
#[derive(Debug, Clone, Default)]
pub struct Governance<'a> {
    /// The drift mode of the first governing Policy (by name) that sets one.
    pub drift_mode: Option<DriftMode>,
    /// Every ignore rule of every governing Policy.
    pub ignores: Vec<&'a DriftIgnore>,
    /// Every window of every governing Policy.
    pub windows: Vec<&'a SyncWindow>,
}

/// Combines the Policies that govern a Sync (pass them sorted by name).
pub fn combine<'a>(policies: &[&'a Policy]) -> Governance<'a> {
    let mut g = Governance::default();
    for p in policies {
        if let Some(d) = &p.spec.drift {
            g.drift_mode = g.drift_mode.or(d.mode);
            g.ignores.extend(d.ignore.iter());
        }
        g.windows.extend(p.spec.windows.iter());
    }
    g
}

/// The drift mode in force: the Policy's when set, else Correct under `selfHeal`, else Report.
pub fn drift_mode(policy_mode: Option<DriftMode>, self_heal: bool) -> DriftMode {
    policy_mode.unwrap_or(if self_heal {
        DriftMode::Correct
    } else {
        DriftMode::Report
    })
}

#[cfg(test)]
mod tests {
    use plumb_api::PolicySpec;
    use plumb_api::policy::DriftPolicy;

    use super::*;

    fn policy(mode: Option<DriftMode>) -> Policy {
        let mut spec: PolicySpec = serde_json::from_value(serde_json::json!({})).unwrap();
        spec.drift = Some(DriftPolicy {
            mode,
            ignore: vec![],
        });
        Policy::new("p", spec)
    }

    #[test]
    fn policy_drift_mode_overrides_self_heal() {
        assert_eq!(drift_mode(None, true), DriftMode::Correct);
        assert_eq!(drift_mode(None, false), DriftMode::Report);
        assert_eq!(drift_mode(Some(DriftMode::Report), true), DriftMode::Report);
        let (a, b) = (policy(None), policy(Some(DriftMode::Ignore)));
        assert_eq!(combine(&[&a, &b]).drift_mode, Some(DriftMode::Ignore));
    }
}
