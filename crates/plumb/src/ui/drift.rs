//! Drift as the page shows it: which fields of a live object differ from what plumb applied,
//! with both values (Secret values masked), and the drift/heal transitions worth a line in the
//! page's drift activity.

use plumb_sync::view::differences;
use serde_json::Value;

/// One field that differs from the applied intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDiff {
    /// JSON pointer of the field, e.g. `/spec/replicas`.
    pub path: String,
    /// The value plumb applied, as JSON (`***` for a Secret value).
    pub applied: String,
    /// The live value, as JSON (`(absent)` when the field is gone; `***` for a Secret value).
    pub live: String,
}

/// The drift state of one object of a Sync's inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectDrift {
    /// The live object holds every field plumb applied.
    InSync,
    /// These fields differ.
    Drifted(Vec<FieldDiff>),
    /// The object is gone from the cluster.
    Missing,
    /// Not compared, and why (no rendered artifact to compare with, ...).
    NotCompared(String),
}

impl ObjectDrift {
    /// Whether the object differs from what was applied (fields or existence).
    pub fn is_drift(&self) -> bool {
        matches!(self, ObjectDrift::Drifted(_) | ObjectDrift::Missing)
    }
}

/// A change of an object's drift state, for the page's drift activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Fields started to differ (or differ in other fields than before).
    Drifted(Vec<String>),
    /// The object disappeared.
    Deleted,
    /// It holds what was applied again.
    Healed,
}

/// The transition from `before` (`None`: first look) to `after`, if any is worth telling.
pub fn transition(before: Option<&ObjectDrift>, after: &ObjectDrift) -> Option<Transition> {
    let paths = |d: &[FieldDiff]| d.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
    match (before, after) {
        (Some(ObjectDrift::Drifted(a)), ObjectDrift::Drifted(b)) if paths(a) == paths(b) => None,
        (_, ObjectDrift::Drifted(b)) => Some(Transition::Drifted(paths(b))),
        (Some(ObjectDrift::Missing), ObjectDrift::Missing) => None,
        (Some(_), ObjectDrift::Missing) => Some(Transition::Deleted),
        (Some(ObjectDrift::Drifted(_) | ObjectDrift::Missing), ObjectDrift::InSync) => {
            Some(Transition::Healed)
        }
        _ => None,
    }
}

/// The fields of `live` (an object of `group`/`kind`) that differ from `intent`, with both
/// values; a Secret's `data`/`stringData` values and kubectl's last-applied copy are masked.
pub fn field_diffs(group: &str, kind: &str, intent: &Value, live: &Value) -> Vec<FieldDiff> {
    let secret = group.is_empty() && kind == "Secret";
    differences(intent, live)
        .into_iter()
        .map(|path| {
            let masked = secret
                && (path.starts_with("/data/")
                    || path.starts_with("/stringData/")
                    || path.contains("kubectl.kubernetes.io~1last-applied-configuration"));
            let show = |v: Option<&Value>| match (v, masked) {
                (None, _) => "(absent)".to_owned(),
                (Some(_), true) => "***".to_owned(),
                (Some(v), false) => v.to_string(),
            };
            FieldDiff {
                applied: show(intent.pointer(&path)),
                live: show(live.pointer(&path)),
                path,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_scaled_deployment_shows_replicas_with_both_values() {
        let intent = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2, "paused": false}});
        let live =
            json!({"metadata": {"name": "web", "uid": "u"}, "spec": {"replicas": 5}, "status": {}});
        assert_eq!(
            field_diffs("apps", "Deployment", &intent, &live),
            [
                FieldDiff {
                    path: "/spec/replicas".into(),
                    applied: "2".into(),
                    live: "5".into()
                },
                FieldDiff {
                    path: "/spec/paused".into(),
                    applied: "false".into(),
                    live: "(absent)".into()
                }
            ]
        );
    }

    #[test]
    fn secret_values_never_show() {
        let intent = json!({"data": {"password": "c2VjcmV0"}, "metadata": {"labels": {"a": "b"}}});
        let live = json!({"data": {"password": "b3RoZXI="}, "metadata": {"labels": {"a": "c"}}});
        let diffs = field_diffs("", "Secret", &intent, &live);
        assert_eq!(diffs[0].applied, "***");
        assert_eq!(diffs[0].live, "***");
        assert_eq!(diffs[1].live, "\"c\"", "labels are not secret");
        let shown = format!("{diffs:?}");
        assert!(!shown.contains("c2VjcmV0") && !shown.contains("b3RoZXI="));
    }

    #[test]
    fn transitions_tell_drift_then_heal_once_each() {
        let drifted = |p: &str| {
            ObjectDrift::Drifted(vec![FieldDiff {
                path: p.into(),
                applied: "1".into(),
                live: "2".into(),
            }])
        };
        let sync = ObjectDrift::InSync;
        assert_eq!(transition(None, &sync), None);
        assert_eq!(
            transition(None, &drifted("/a")),
            Some(Transition::Drifted(vec!["/a".into()]))
        );
        assert_eq!(
            transition(Some(&sync), &drifted("/a")),
            Some(Transition::Drifted(vec!["/a".into()]))
        );
        assert_eq!(transition(Some(&drifted("/a")), &drifted("/a")), None);
        assert_eq!(
            transition(Some(&drifted("/a")), &drifted("/b")),
            Some(Transition::Drifted(vec!["/b".into()]))
        );
        assert_eq!(
            transition(Some(&drifted("/a")), &sync),
            Some(Transition::Healed)
        );
        assert_eq!(
            transition(Some(&sync), &ObjectDrift::Missing),
            Some(Transition::Deleted)
        );
        assert_eq!(
            transition(Some(&ObjectDrift::Missing), &sync),
            Some(Transition::Healed)
        );
        assert_eq!(
            transition(Some(&ObjectDrift::NotCompared("x".into())), &sync),
            None
        );
    }
}
