//! Selecting resources: patch targets (regular expressions over GVK, name, namespace) and
//! Kubernetes label selectors.

use crate::error::SelectorError;
use crate::kustomization::Selector;
use crate::resource::{Resource, scalar_string};
use regex::Regex;
use serde_json::{Map, Value};

/// A compiled selector.
pub(crate) struct Compiled {
    group: Option<Regex>,
    version: Option<Regex>,
    kind: Option<Regex>,
    name: Option<Regex>,
    namespace: Option<Regex>,
    labels: Option<LabelSelector>,
    annotations: Option<LabelSelector>,
}

fn anchored(p: &str) -> Result<Option<Regex>, SelectorError> {
    if p.is_empty() {
        return Ok(None);
    }
    Ok(Some(Regex::new(&format!("^(?:{p})$"))?))
}

impl Compiled {
    /// Compile a selector.
    pub(crate) fn new(s: &Selector) -> Result<Self, SelectorError> {
        Ok(Compiled {
            group: anchored(&s.group)?,
            version: anchored(&s.version)?,
            kind: anchored(&s.kind)?,
            name: anchored(&s.name)?,
            namespace: anchored(&s.namespace)?,
            labels: if s.label_selector.is_empty() {
                None
            } else {
                Some(LabelSelector::parse(&s.label_selector)?)
            },
            annotations: if s.annotation_selector.is_empty() {
                None
            } else {
                Some(LabelSelector::parse(&s.annotation_selector)?)
            },
        })
    }

    /// Does the resource match (by original or current name and namespace)?
    pub(crate) fn matches(&self, r: &Resource) -> bool {
        let cur = r.id();
        let org = r.org_id();
        let m = |re: &Option<Regex>, a: &str, b: &str| {
            re.as_ref()
                .is_none_or(|re| re.is_match(a) || re.is_match(b))
        };
        if !m(
            &self.namespace,
            org.effective_namespace(),
            cur.effective_namespace(),
        ) {
            return false;
        }
        if !m(&self.name, &org.name, &cur.name) {
            return false;
        }
        let gvk = &cur.gvk;
        let one = |re: &Option<Regex>, a: &str| re.as_ref().is_none_or(|re| re.is_match(a));
        if !one(&self.group, &gvk.group)
            || !one(&self.version, &gvk.version)
            || !one(&self.kind, &gvk.kind)
        {
            return false;
        }
        if let Some(l) = &self.labels
            && !l.matches(&r.labels())
        {
            return false;
        }
        if let Some(a) = &self.annotations
            && !a.matches(&r.annotations())
        {
            return false;
        }
        true
    }
}

enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A Kubernetes label selector (`a=b,c!=d,e in (x,y),f notin (z),g,!h`).
pub(crate) struct LabelSelector(Vec<Req>);

fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_values(s: &str) -> Result<Vec<String>, SelectorError> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(|| SelectorError::Set(s.to_string()))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl LabelSelector {
    /// Parse selector text.
    pub(crate) fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for part in split_top(text) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            let req = if let Some((k, v)) = p.split_once("!=") {
                Req::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once(" notin ") {
                Req::NotIn(k.trim().into(), set_values(v)?)
            } else if let Some((k, v)) = p.split_once(" in ") {
                Req::In(k.trim().into(), set_values(v)?)
            } else if let Some(k) = p.strip_prefix('!') {
                Req::NotExists(k.trim().into())
            } else if p.contains(char::is_whitespace) || p.contains('(') {
                return Err(SelectorError::Requirement(p.to_string()));
            } else {
                Req::Exists(p.into())
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Does a label (or annotation) map satisfy every requirement?
    pub(crate) fn matches(&self, labels: &Map<String, Value>) -> bool {
        let get = |k: &str| labels.get(k).map(scalar_string);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k).as_deref() == Some(v.as_str()),
            Req::NotEq(k, v) => get(k).as_deref() != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_evaluate_all_requirements() {
        let labels = json!({"app": "web", "tier": "fe"});
        let m = labels.as_object().cloned().unwrap_or_default();
        assert!(
            LabelSelector::parse("app=web,tier in (fe,be),!gone")
                .unwrap()
                .matches(&m)
        );
        assert!(
            !LabelSelector::parse("app=web,tier notin (fe)")
                .unwrap()
                .matches(&m)
        );
        assert!(LabelSelector::parse("app,app!=db").unwrap().matches(&m));
    }

    #[test]
    fn malformed_selectors_say_which_part_is_wrong() {
        assert!(matches!(
            LabelSelector::parse("tier in fe"),
            Err(SelectorError::Set(s)) if s == "fe"
        ));
        assert!(matches!(
            LabelSelector::parse("a b"),
            Err(SelectorError::Requirement(s)) if s == "a b"
        ));
        let bad = Selector {
            name: "web(".into(),
            ..Default::default()
        };
        assert!(matches!(Compiled::new(&bad), Err(SelectorError::Regex(_))));
    }
}
