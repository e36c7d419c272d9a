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
    verdict: Verdict,
    /// What it read of the source tree.
    pub inputs: Option<Arc<Inputs>>,
}

/// A render's verdict as a [`Record`] keeps it. A published render's status (revisions,
/// digests, the artifact's URL: some 600 bytes of strings and a 250-byte struct) is kept as its
/// JSON [packed](crate::packed), some 160 bytes: one is kept for every Sync, and read back only
/// when a render is skipped or carried.
#[derive(Debug, Clone)]
enum Verdict {
    /// A published render's `status.render`, packed.
    Published(Box<[u8]>),
    /// A failure (rare, and with a `&'static` reason, kept as it is).
    Failed(Box<Outcome>),
}

impl Verdict {
    fn of(outcome: Outcome) -> Verdict {
        match outcome {
            // Serializing plain data to memory does not fail; an empty text is a record that
            // cannot be read back, which renders again.
            Outcome::Published(render) => Verdict::Published(crate::packed::pack(
                &serde_json::to_vec(&render).unwrap_or_default(),
            )),
            failed @ Outcome::Failed { .. } => Verdict::Failed(Box::new(failed)),
        }
    }
}

impl Record {
    /// The record of a render that depended on `key`, concluded `outcome` and read `inputs`.
    pub fn new(key: RenderKey, outcome: Outcome, inputs: Option<Arc<Inputs>>) -> Record {
        Record {
            key,
            verdict: Verdict::of(outcome),
            inputs,
        }
    }

    /// The render's verdict; `None` when a published one cannot be read back (never seen: the
    /// text is this process's own), which the caller treats as no record at all.
    pub fn outcome(&self) -> Option<Outcome> {
        match &self.verdict {
            Verdict::Failed(failed) => Some(Outcome::clone(failed)),
            Verdict::Published(packed) => {
                let read = crate::packed::unpack(packed)
                    .and_then(|json| Ok(serde_json::from_slice(&json)?))
                    .map(Outcome::Published);
                read.inspect_err(|e| tracing::warn!(error = %e, "a render record cannot be read back; rendering again"))
                    .ok()
            }
        }
    }

    /// The same render, now standing for `key` with `outcome` (carried to a new source).
    pub fn update(&mut self, key: RenderKey, outcome: Outcome) {
        self.key = key;
        self.verdict = Verdict::of(outcome);
    }

    /// Whether the render published an artifact.
    pub fn published(&self) -> bool {
        matches!(self.verdict, Verdict::Published(_))
    }

    /// Whether the render can stand for a render of the same Sync over a tree indexed as
    /// `index`: it published an artifact and every path it read holds the same there.
    pub fn holds_in(&self, index: &crate::inputs::Index) -> bool {
        self.published() && self.inputs.as_ref().is_some_and(|i| i.hold_in(index))
    }
}

/// What a render depends on: the source artifact's digest, and the rest hashed apart, so a render
/// can be carried to a new source digest when the rest is the same and the files it read are too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderKey {
    /// The source artifact's digest.
    pub source: Digest,
    /// The SHA-256 of every other input (see [`cache_key`]).
    pub rest: [u8; 32],
}

impl RenderKey {
    /// The same key with `suffix` (the hash of more inputs, such as a chart's) added to the rest.
    pub fn with(&self, suffix: &str) -> RenderKey {
        let mut rest = Sha256::new();
        rest.update(self.rest);
        rest.update(b"/");
        rest.update(suffix.as_bytes());
        RenderKey {
            source: self.source.clone(),
            rest: rest.finalize().into(),
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
        rest: Sha256::digest(input.to_string().as_bytes()).into(),
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

    fn published() -> Outcome {
        let revision: plumb_api::Revision = "main@sha1:0123456789abcdef0123456789abcdef01234567"
            .parse()
            .unwrap();
        let artifact_digest = digest('c');
        Outcome::Published(plumb_api::sync::RenderStatus {
            observed_generation: Some(3),
            source_revision: Some(revision.clone()),
            source_digest: Some(digest('a')),
            artifact: Some(plumb_api::reference::Artifact {
                revision,
                url: format!(
                    "http://127.0.0.1:9091/sync/team/app/{}.yaml.gz",
                    artifact_digest.hex()
                ),
                digest: artifact_digest,
                size: Some(812),
                last_update_time: "2026-11-30T12:00:00.123456789Z".parse().unwrap(),
            }),
            objects: Some(4),
            policy: Some(plumb_api::sync::PolicyReport {
                warnings: vec![plumb_api::sync::PolicyFinding {
                    policy: "p".into(),
                    rule: "r".into(),
                    object: "team_app_apps_Deployment".into(),
                    message: "no limits".into(),
                }],
                violations: Vec::new(),
            }),
        })
    }

    #[test]
    fn a_record_gives_back_the_verdict_it_was_made_with() {
        let key = cache_key(&digest('a'), &spec(), &[], &[], None);
        let failed = Outcome::Failed {
            reason: "PolicyViolation",
            message: "1 policy violations".into(),
            policy: Some(Default::default()),
        };
        for outcome in [published(), failed, Outcome::Published(Default::default())] {
            let record = Record::new(key.clone(), outcome.clone(), None);
            assert_eq!(record.outcome(), Some(outcome.clone()));
            assert_eq!(record.published(), matches!(outcome, Outcome::Published(_)));
        }
        let mut record = Record::new(key.clone(), Outcome::failed("BuildFailed", "x"), None);
        let carried = cache_key(&digest('b'), &spec(), &[], &[], None);
        record.update(carried.clone(), published());
        assert_eq!(record.outcome(), Some(published()));
        assert_eq!(record.key, carried);
    }

    #[test]
    fn a_published_verdict_keeps_in_a_fraction_of_its_strings() {
        let Verdict::Published(packed) = Verdict::of(published()) else {
            panic!("a published verdict")
        };
        let Outcome::Published(render) = published() else {
            unreachable!()
        };
        let json = serde_json::to_vec(&render).unwrap();
        assert!(
            packed.len() < json.len() / 2,
            "{} bytes packed of {}",
            packed.len(),
            json.len()
        );
    }

    #[test]
    fn a_chart_key_differs_from_the_plain_one_and_by_its_inputs() {
        let key = cache_key(&digest('a'), &spec(), &[], &[], None);
        assert_ne!(key.with("x"), key);
        assert_ne!(key.with("x"), key.with("y"));
        assert_eq!(key.with("x"), key.with("x"));
        assert_eq!(key.with("x").source, key.source);
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
