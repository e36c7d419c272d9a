//! The render cache key: a render is skipped when nothing that shapes its output changed.

use plumb_substitute::deferred::VariableSource;
use sha2::{Digest as _, Sha256};

use std::sync::Arc;

use plumb_api::{Digest, SyncSpec};
use serde_json::json;

use crate::inputs::Inputs;
use crate::status::Outcome;

/// A Sync's last completed render: what it depended on, its verdict, and the paths of the source
/// tree it read (none when they cannot tell, e.g. a chart: such a render is never carried).
#[derive(Debug, Clone)]
pub struct Record {
    /// What the render depended on.
    pub key: RenderKey,
    /// Its verdict.
    pub outcome: Outcome,
    /// What it read of the source tree.
    pub inputs: Option<Arc<Inputs>>,
}

impl Record {
    /// Whether the render can stand for a render of the same Sync over a tree indexed as
    /// `index`: it published an artifact and every path it read holds the same there.
    pub fn holds_in(&self, index: &crate::inputs::Index) -> bool {
        matches!(self.outcome, Outcome::Published(_))
            && self.inputs.as_ref().is_some_and(|i| i.hold_in(index))
    }
}

/// What a render depends on: the source artifact's digest, and the rest hashed apart, so a render
/// can be carried to a new source digest when the rest is the same and the files it read are too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderKey {
    /// The source artifact's digest.
    pub source: Digest,
    /// The hash of every other input (see [`cache_key`]).
    pub rest: String,
}

impl RenderKey {
    /// The same key with `suffix` (the hash of more inputs, such as a chart's) added to the rest.
    pub fn with(&self, suffix: &str) -> RenderKey {
        RenderKey {
            source: self.source.clone(),
            rest: format!("{}/{suffix}", self.rest),
        }
    }
}

/// What a render depends on: the source digest, and hashed: the render-relevant spec (path,
/// targetNamespace, images, patches, helm, substitute and its sources' data and
/// `resourceVersion`s (published in the artifact when a value comes from a Secret), name prefix and
/// suffix, common metadata, components), the governing policies' names and generations, and the
/// `plumb.dev/requested-at` value (so a request forces a fresh render). Only the hash is kept,
/// never the variables' values.
pub fn cache_key(
    source_digest: &Digest,
    spec: &SyncSpec,
    variables: &[VariableSource],
    policies: &[(String, Option<i64>)],
    requested_at: Option<&str>,
) -> RenderKey {
    let input = json!({
        "path": spec.path,
        "targetNamespace": spec.target_namespace,
        "images": spec.images,
        "patches": spec.patches,
        "substitute": spec.substitute,
        "helm": spec.helm,
        "substituteFrom": spec.substitute_from,
        "substituteStrategy": spec.substitute_strategy,
        "variables": variables,
        "namePrefix": spec.name_prefix,
        "nameSuffix": spec.name_suffix,
        "commonMetadata": spec.common_metadata,
        "components": spec.components,
        "ignoreMissingComponents": spec.ignore_missing_components,
        "policies": policies,
        "requestedAt": requested_at,
    });
    RenderKey {
        source: source_digest.clone(),
        rest: hex::encode(Sha256::digest(input.to_string().as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SyncSpec {
        serde_json::from_value(
            json!({"sourceRef": {"kind": "GitRepository", "name": "r"}, "path": "./a"}),
        )
        .unwrap()
    }

    fn digest(c: char) -> Digest {
        Digest::from_sha256_hex(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn key_changes_with_every_input_that_shapes_the_render() {
        let base = cache_key(&digest('a'), &spec(), &[], &[("p".into(), Some(1))], None);
        assert_eq!(
            base,
            cache_key(&digest('a'), &spec(), &[], &[("p".into(), Some(1))], None)
        );
        assert_ne!(
            base,
            cache_key(&digest('b'), &spec(), &[], &[("p".into(), Some(1))], None)
        );
        assert_ne!(
            base,
            cache_key(&digest('a'), &spec(), &[], &[("p".into(), Some(2))], None)
        );
        assert_ne!(base, cache_key(&digest('a'), &spec(), &[], &[], None));
        assert_ne!(
            base,
            cache_key(
                &digest('a'),
                &spec(),
                &[],
                &[("p".into(), Some(1))],
                Some("now")
            )
        );
        let mut s = spec();
        s.substitute.insert("A".into(), "1".into());
        assert_ne!(
            base,
            cache_key(&digest('a'), &s, &[], &[("p".into(), Some(1))], None)
        );
        let mut vars = [VariableSource {
            kind: plumb_api::reference::DataKind::Secret,
            name: "s".into(),
            resource_version: "1".into(),
            data: [("A".to_owned(), "1".to_owned())].into(),
        }];
        let with_vars = cache_key(&digest('a'), &spec(), &vars, &[("p".into(), Some(1))], None);
        assert_ne!(base, with_vars, "a substituteFrom value changed");
        vars[0].resource_version = "2".into();
        assert_ne!(
            with_vars,
            cache_key(&digest('a'), &spec(), &vars, &[("p".into(), Some(1))], None),
            "a substituteFrom source changed, if only its metadata"
        );
        let mut s = spec();
        s.name_prefix = Some("p-".into());
        assert_ne!(
            base,
            cache_key(&digest('a'), &s, &[], &[("p".into(), Some(1))], None)
        );
        let mut s = spec();
        s.interval = plumb_api::Duration::from_secs(1);
        assert_eq!(
            base,
            cache_key(&digest('a'), &s, &[], &[("p".into(), Some(1))], None),
            "interval is not render-relevant"
        );
    }
}
