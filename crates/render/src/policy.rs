//! Policy as pure functions: compile a Policy's CEL rules, decide which Syncs it governs, and
//! evaluate rules over rendered objects.
//!
//! Expressions see the rendered object as `object` (a CEL map). The environment is CEL's standard
//! library (`has()`, `all`, `exists`, `exists_one`, `map`, `filter`, `size`, `startsWith`,
//! `endsWith`, `contains`, `matches`, `in`) plus the strings (`lowerAscii`, `upperAscii`, `split`,
//! `replace`, `trim`, `join`, `indexOf`, ...) and lists extensions, as Kubernetes' CEL offers.
//! An expression that fails to evaluate (e.g. a missing field without `has()`) counts as false,
//! so a rule never lets an object through by accident.

use std::sync::Arc;

use cel::{Context, Program, Value as CelValue};
use plumb_api::Policy;
use plumb_api::expression::cel_env as env;
use plumb_api::policy::{Rule, RuleAction, RuleMatch, judged_namespace};
use plumb_api::sync::{PolicyFinding, PolicyReport};
use plumb_kustomize::Gvk;
use serde_json::Value;

use crate::objects::{group_of_object, kind_of, namespace_of, object_id};

/// A rule that did not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {policy}: rule {rule}: {message}")]
pub struct CompileError {
    /// The Policy's name.
    pub policy: String,
    /// The rule's name.
    pub rule: String,
    /// The compiler's message.
    pub message: String,
}

/// One compiled rule.
#[derive(Debug)]
pub struct CompiledRule {
    /// The rule's name.
    pub name: String,
    /// Which objects it applies to.
    pub matches: RuleMatch,
    /// Deny or Warn.
    pub action: RuleAction,
    /// The message for a finding.
    pub message: String,
    program: Program,
}

/// A Policy whose rules all compiled.
#[derive(Debug)]
pub struct CompiledPolicy {
    /// The Policy's name.
    pub name: String,
    /// The rules, in spec order.
    pub rules: Vec<CompiledRule>,
}

/// Compiles one rule's expression.
pub fn compile_rule(policy: &str, rule: &Rule) -> Result<CompiledRule, CompileError> {
    let program = env().compile(&rule.expression).map_err(|e| CompileError {
        policy: policy.to_owned(),
        rule: rule.name.clone(),
        message: e.to_string().replace('\n', " "),
    })?;
    Ok(CompiledRule {
        name: rule.name.clone(),
        matches: rule.match_.clone().unwrap_or_default(),
        action: rule.action,
        message: rule
            .message
            .clone()
            .unwrap_or_else(|| format!("expression {:?} is false", rule.expression)),
        program,
    })
}

/// Compiles every rule of `policy`; the first rule that fails is the error.
pub fn compile(policy: &Policy) -> Result<CompiledPolicy, CompileError> {
    let name = policy.metadata.name.clone().unwrap_or_default();
    let rules = policy
        .spec
        .rules
        .iter()
        .map(|r| compile_rule(&name, r))
        .collect::<Result<_, _>>()?;
    Ok(CompiledPolicy { name, rules })
}

/// Whether a rule's `match` selects `obj`, rendered by a Sync whose namespace-less objects are
/// applied into `placement` (see [`plumb_api::policy::judged_namespace`]).
pub fn rule_matches(m: &RuleMatch, obj: &Value, placement: &str) -> bool {
    let group = group_of_object(obj);
    let kind = kind_of(obj);
    let cluster_scoped = Gvk {
        group: group.to_owned(),
        version: String::new(),
        kind: kind.to_owned(),
    }
    .is_cluster_scoped();
    m.matches(
        group,
        kind,
        judged_namespace(namespace_of(obj), cluster_scoped, placement),
    )
}

/// What one rule says about one object: `None` when allowed, else why not.
fn verdict(rule: &CompiledRule, ctx: &Context) -> Option<String> {
    match rule.program.execute(ctx) {
        Ok(CelValue::Bool(true)) => None,
        Ok(CelValue::Bool(false)) => Some(rule.message.clone()),
        Ok(other) => Some(format!(
            "{} (the expression returned {:?}, not a bool)",
            rule.message,
            other.type_of()
        )),
        Err(e) => Some(format!("{} (evaluation failed: {e})", rule.message)),
    }
}

/// Evaluates every rule of every policy over every object it matches; objects without a
/// namespace are judged as applied into `placement` (the Sync's targetNamespace, else its
/// namespace).
pub fn evaluate(
    policies: &[Arc<CompiledPolicy>],
    objects: &[Value],
    placement: &str,
) -> PolicyReport {
    let mut report = PolicyReport::default();
    let env = env();
    for obj in objects {
        let applicable: Vec<(&CompiledPolicy, &CompiledRule)> = policies
            .iter()
            .flat_map(|p| p.rules.iter().map(move |r| (p.as_ref(), r)))
            .filter(|(_, r)| rule_matches(&r.matches, obj, placement))
            .collect();
        if applicable.is_empty() {
            continue;
        }
        let mut ctx = Context::with_env(env.clone());
        // JSON always converts to CEL; were it not to, every applicable rule fails closed.
        ctx.add_variable_from_value("object", cel::to_value(obj).unwrap_or(CelValue::Null));
        let id = object_id(obj).to_string();
        for (policy, rule) in applicable {
            if let Some(message) = verdict(rule, &ctx) {
                let finding = PolicyFinding {
                    policy: policy.name.clone(),
                    rule: rule.name.clone(),
                    object: id.clone(),
                    message,
                };
                match rule.action {
                    RuleAction::Deny => report.violations.push(finding),
                    RuleAction::Warn => report.warnings.push(finding),
                }
            }
        }
    }
    report
}

/// One line per finding: `<object>: policy <p> rule <r>: <message>`.
pub fn describe(findings: &[PolicyFinding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "{}: policy {} rule {}: {}",
                f.object, f.policy, f.rule, f.message
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_api::policy::{PolicySpec, ResourceMatch};
    use serde_json::json;

    fn rule(name: &str, expr: &str, action: RuleAction) -> Rule {
        Rule {
            name: name.into(),
            match_: None,
            expression: expr.into(),
            message: Some(format!("{name} failed")),
            action,
        }
    }

    fn policy(name: &str, rules: Vec<Rule>) -> Policy {
        let mut p = Policy::new(
            name,
            PolicySpec {
                selector: None,
                rules,
                drift: None,
                windows: vec![],
                suspend: false,
            },
        );
        p.metadata.generation = Some(1);
        p
    }

    fn deployment(name: &str, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "apps", "labels": {"team": "a"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    fn compiled(p: &Policy) -> Vec<Arc<CompiledPolicy>> {
        vec![Arc::new(compile(p).unwrap())]
    }

    #[test]
    fn invalid_expression_names_the_rule_and_the_error() {
        let p = policy(
            "p",
            vec![
                rule("ok", "true", RuleAction::Deny),
                rule("broken", "object.spec.(", RuleAction::Deny),
            ],
        );
        let err = compile(&p).unwrap_err();
        assert_eq!(err.rule, "broken");
        assert!(err.to_string().contains("rule broken"), "{err}");
        assert!(err.message.contains("Syntax error"), "{err}");
    }

    #[test]
    fn deny_and_warn_findings_are_separated() {
        let p = policy(
            "images",
            vec![
                rule(
                    "no-latest",
                    "object.spec.template.spec.containers.all(c, !c.image.endsWith(':latest'))",
                    RuleAction::Deny,
                ),
                rule(
                    "has-team",
                    "has(object.metadata.labels.owner)",
                    RuleAction::Warn,
                ),
            ],
        );
        let objs = vec![
            deployment("good", "nginx:1.27"),
            deployment("bad", "nginx:latest"),
        ];
        let report = evaluate(&compiled(&p), &objs, "apps");
        assert_eq!(report.violations.len(), 1);
        assert_eq!(report.violations[0].object, "apps_bad_apps_Deployment");
        assert_eq!(report.violations[0].rule, "no-latest");
        assert_eq!(report.violations[0].policy, "images");
        assert_eq!(report.violations[0].message, "no-latest failed");
        assert_eq!(report.warnings.len(), 2);
    }

    #[test]
    fn kubernetes_style_helpers_are_available() {
        let obj = deployment("Web-1", "registry.example.com/team/web:1.0");
        for expr in [
            "object.metadata.name.lowerAscii() == 'web-1'",
            "object.metadata.name.matches('^[A-Z][a-z]+-[0-9]$')",
            "object.spec.template.spec.containers.exists(c, c.image.startsWith('registry.example.com/'))",
            "object.spec.template.spec.containers.exists_one(c, c.image.contains('/team/'))",
            "object.spec.template.spec.containers.map(c, c.image.split(':')[1]).all(t, t != 'latest')",
            "object.spec.template.spec.containers.filter(c, c.name == 'c').size() == 1",
            "size(object.metadata.name) == 5 && object.spec.replicas <= 3",
            "!has(object.spec.paused) && 'team' in object.metadata.labels",
        ] {
            let p = policy("helpers", vec![rule("r", expr, RuleAction::Deny)]);
            let report = evaluate(&compiled(&p), std::slice::from_ref(&obj), "apps");
            assert!(report.violations.is_empty(), "{expr}: {report:?}");
        }
    }

    #[test]
    fn evaluation_errors_and_non_bool_results_count_as_violations() {
        let obj = deployment("web", "nginx:1");
        for expr in ["object.spec.missing == 1", "object.metadata.name"] {
            let p = policy("p", vec![rule("r", expr, RuleAction::Deny)]);
            let report = evaluate(&compiled(&p), std::slice::from_ref(&obj), "apps");
            assert_eq!(report.violations.len(), 1, "{expr}");
        }
    }

    #[test]
    fn rules_apply_only_to_matching_groups_kinds_and_namespaces() {
        let mut r = rule("r", "false", RuleAction::Deny);
        r.match_ = Some(RuleMatch {
            resources: vec![ResourceMatch {
                group: "apps".into(),
                kinds: vec!["Deployment".into()],
            }],
            namespaces: vec!["apps".into()],
        });
        let p = policy("p", vec![r]);
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "apps"}});
        let mut other_ns = deployment("x", "i");
        other_ns["metadata"]["namespace"] = json!("other");
        let report = evaluate(&compiled(&p), &[cm, other_ns, deployment("y", "i")], "apps");
        assert_eq!(report.violations.len(), 1);
        assert_eq!(report.violations[0].object, "apps_y_apps_Deployment");
    }

    /// A rule written for a tenant's namespace applies to what that tenant's Sync renders
    /// without a namespace, and to its cluster-scoped objects, wherever they would go.
    #[test]
    fn namespace_less_and_cluster_scoped_objects_are_judged_where_they_are_applied() {
        let mut r = rule("no-objects-here", "false", RuleAction::Deny);
        r.match_ = Some(RuleMatch {
            resources: vec![],
            namespaces: vec!["team-a".into()],
        });
        let p = policy("p", vec![r]);
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "r", "namespace": "elsewhere"}});
        let placed_elsewhere = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "d", "namespace": "team-b"}});
        let objs = [cm, role, placed_elsewhere];
        let in_a = evaluate(&compiled(&p), &objs, "team-a");
        let ids: Vec<_> = in_a.violations.iter().map(|f| f.object.as_str()).collect();
        assert_eq!(
            ids,
            [
                "_c__ConfigMap",
                "elsewhere_r_rbac.authorization.k8s.io_ClusterRole"
            ]
        );
        let in_b = evaluate(&compiled(&p), &objs, "team-b");
        assert!(in_b.violations.is_empty(), "{in_b:?}");
    }
}
