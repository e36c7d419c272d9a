//! Property tests of the readers a repository drives: the YAML reader and the kustomization
//! parser never panic, never recurse without bound, and produce no more than the limits allow
//! whatever text they are given; a build of an arbitrary kustomization never panics.

use plumb_kustomize::limits::{YAML_MAX_ALIAS_NODES, YAML_MAX_DEPTH};
use plumb_kustomize::yaml::{ScalarMode, parse_documents};
use plumb_kustomize::{BuildOptions, Error, Kustomization, build};
use proptest::prelude::*;
use serde_json::Value;

/// Nodes and depth of a value.
fn measure(v: &Value) -> (usize, usize) {
    match v {
        Value::Array(items) => items
            .iter()
            .map(measure)
            .fold((1, 1), |(n, d), (cn, cd)| (n + cn, d.max(cd + 1))),
        Value::Object(m) => m
            .values()
            .map(measure)
            .fold((1 + m.len(), 1), |(n, d), (cn, cd)| (n + cn, d.max(cd + 1))),
        _ => (1, 0),
    }
}

/// Text made of the pieces YAML structure is made of, so random input reaches deep into the
/// reader (anchors, aliases, merges, nesting, documents, block scalars), not just its first error.
fn yamlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("- ".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(", ".to_string()),
        Just(": ".to_string()),
        Just("\n".to_string()),
        Just("\n  ".to_string()),
        Just("&a ".to_string()),
        Just("&b ".to_string()),
        Just("*a".to_string()),
        Just("*b".to_string()),
        Just("<<: ".to_string()),
        Just("---\n".to_string()),
        Just("? ".to_string()),
        Just("|\n  ".to_string()),
        Just("!!str ".to_string()),
        Just("\"q\"".to_string()),
        Just("'s'".to_string()),
        "[a-z0-9.~-]{1,6}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..200).prop_map(|v| v.concat())
}

/// An alias chain: `depth` levels of `fan` aliases each, expanding to fan^depth nodes.
fn alias_chain(fan: usize, depth: usize) -> String {
    let mut out = String::from("l0: &l0 x\n");
    for i in 1..=depth {
        let refs = vec![format!("*l{}", i - 1); fan].join(", ");
        out.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
    }
    out
}

fn check_bounded(text: &str) {
    for mode in [ScalarMode::Typed, ScalarMode::Text] {
        if let Ok(docs) = parse_documents(text, mode) {
            for d in &docs {
                let (nodes, depth) = measure(d);
                assert!(depth <= YAML_MAX_DEPTH, "depth {depth}");
                assert!(
                    nodes <= 4 * (text.len() + 1) + YAML_MAX_ALIAS_NODES,
                    "{nodes} nodes from {} bytes",
                    text.len()
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn yaml_reader_never_panics_on_arbitrary_text(text in ".{0,400}") {
        check_bounded(&text);
    }

    #[test]
    fn yaml_reader_stays_bounded_on_yaml_like_text(text in yamlish()) {
        check_bounded(&text);
    }

    #[test]
    fn alias_expansion_is_refused_past_the_limit(fan in 2usize..12, depth in 1usize..9) {
        let text = alias_chain(fan, depth);
        // Nodes the last level's aliases stand for, levels below it counted once each.
        let expanded: usize = (1..=depth).map(|i| fan.pow(i as u32)).sum();
        match parse_documents(&text, ScalarMode::Typed) {
            Ok(docs) => {
                prop_assert!(expanded <= 2 * YAML_MAX_ALIAS_NODES, "{expanded} nodes accepted");
                prop_assert_eq!(docs.len(), 1);
            }
            Err(e) => {
                prop_assert!(expanded > YAML_MAX_ALIAS_NODES / 2, "{expanded} nodes refused: {e}");
                prop_assert!(e.to_string().contains("yaml-max-alias-nodes"), "{e}");
            }
        }
    }

    #[test]
    fn nesting_is_refused_past_the_limit(depth in 1usize..300, flow in any::<bool>()) {
        let text = if flow {
            format!("{}x{}", "[".repeat(depth), "]".repeat(depth))
        } else {
            format!("{}x\n", "- ".repeat(depth))
        };
        let result = parse_documents(&text, ScalarMode::Typed);
        if depth <= YAML_MAX_DEPTH {
            prop_assert!(result.is_ok(), "depth {depth}: {result:?}");
        } else {
            let e = result.unwrap_err();
            prop_assert!(e.to_string().contains("yaml-max-depth"), "{e}");
        }
    }
}

/// Field names of a kustomization, with values of every shape, so the parser's field handling
/// (not only its YAML reader) is exercised.
fn kustomization_text() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        Just("resources"),
        Just("bases"),
        Just("components"),
        Just("namePrefix"),
        Just("namespace"),
        Just("commonLabels"),
        Just("labels"),
        Just("patches"),
        Just("patchesStrategicMerge"),
        Just("patchesJson6902"),
        Just("images"),
        Just("replicas"),
        Just("replacements"),
        Just("vars"),
        Just("configMapGenerator"),
        Just("secretGenerator"),
        Just("generatorOptions"),
        Just("sortOptions"),
        Just("buildMetadata"),
        Just("transformers"),
        Just("openapi"),
        Just("kind"),
        Just("apiVersion"),
        Just("NAMEPREFIX"),
        Just("unknownField"),
    ];
    let leaf = prop_oneof![
        Just("x".to_string()),
        Just("cm.yaml".to_string()),
        Just("..".to_string()),
        Just("true".to_string()),
        Just("3".to_string()),
        Just("null".to_string()),
        Just("\"a=b\"".to_string()),
        Just("{}".to_string()),
        Just("[]".to_string()),
        "[a-zA-Z=./-]{0,8}",
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-zA-Z]{1,8}", inner), 0..4).prop_map(|v| {
                let entries: Vec<String> =
                    v.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", entries.join(", "))
            }),
        ]
    });
    prop::collection::vec((field, value), 0..6).prop_map(|fields| {
        fields
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn kustomization_parser_never_panics(text in kustomization_text()) {
        let _ = Kustomization::from_yaml(&text);
    }

    #[test]
    fn kustomization_parser_never_panics_on_yaml_like_text(text in yamlish()) {
        let _ = Kustomization::from_yaml(&text);
    }

    #[test]
    fn building_an_arbitrary_kustomization_never_panics(text in kustomization_text()) {
        let tmp = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let root = tmp.path();
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  k: v\n";
        std::fs::write(root.join("cm.yaml"), cm).map_err(|e| TestCaseError::fail(e.to_string()))?;
        std::fs::write(root.join("kustomization.yaml"), &text)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Err(Error::Build { message, .. }) = build(root, root, &BuildOptions::default()) {
            prop_assert!(!message.contains("failed unexpectedly"), "{text}\n{message}");
        }
    }
}
