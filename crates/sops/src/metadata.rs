//! The `sops` metadata of a document: who holds the data key, which values are encrypted, the MAC.
//! YAML and JSON keep it nested under `sops`; dotenv flattens it into `sops_*` keys and INI into a
//! `[sops]` section (`age__list_0__map_enc`).

use regex::Regex;

use crate::error::Error;
use crate::tree::{Item, Key, Node, Scalar};

/// One holder of the data key.
#[derive(Debug, Clone, PartialEq)]
pub enum MasterKey {
    /// An age recipient; `enc` is the data key encrypted to it (an armored age file).
    Age {
        /// The `age1...` recipient.
        recipient: String,
        /// The armored age file holding the data key.
        enc: String,
    },
    /// A PGP key; `enc` is the data key encrypted to it (an armored OpenPGP message).
    Pgp {
        /// The key's fingerprint, as given to `sops --pgp`.
        fingerprint: String,
        /// The armored OpenPGP message holding the data key.
        enc: String,
    },
    /// A key service plumb does not speak (AWS/GCP/Azure KMS, Vault, HuaweiCloud KMS).
    Other {
        /// The metadata key naming the service, e.g. `kms`.
        kind: String,
    },
}

/// Which values of a document SOPS encrypted: at most one rule, as SOPS enforces.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Values under a key ending with the suffix stay in plaintext (SOPS's default, `_unencrypted`).
    UnencryptedSuffix(String),
    /// Only values under a key ending with the suffix are encrypted.
    EncryptedSuffix(String),
    /// Values under a key matching the regex stay in plaintext.
    UnencryptedRegex(Regex),
    /// Only values under a key matching the regex are encrypted.
    EncryptedRegex(Regex),
}

impl Rule {
    /// Whether the value at `path` (the mapping keys leading to it) is encrypted.
    pub fn encrypts(&self, path: &[String]) -> bool {
        match self {
            Rule::UnencryptedSuffix(s) => !path.iter().any(|k| k.ends_with(s.as_str())),
            Rule::EncryptedSuffix(s) => path.iter().any(|k| k.ends_with(s.as_str())),
            Rule::UnencryptedRegex(r) => !path.iter().any(|k| r.is_match(k)),
            Rule::EncryptedRegex(r) => path.iter().any(|k| r.is_match(k)),
        }
    }
}

/// A document's SOPS metadata, read.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// The key groups; more than one means Shamir secret sharing.
    pub key_groups: Vec<Vec<MasterKey>>,
    /// How many groups must agree (Shamir).
    pub shamir_threshold: usize,
    /// `lastmodified`, as written.
    pub last_modified: String,
    /// The encrypted MAC.
    pub mac: String,
    /// Which values are encrypted.
    pub rule: Rule,
    /// Whether the MAC covers only encrypted values.
    pub mac_only_encrypted: bool,
}

/// Looks a key up in a mapping.
pub fn get<'a>(items: &'a [Item], name: &str) -> Option<&'a Node> {
    items.iter().find_map(|i| match &i.key {
        Key::Name(k) if k == name => Some(&i.value),
        _ => None,
    })
}

fn text(items: &[Item], name: &str) -> Option<String> {
    match get(items, name)? {
        Node::Scalar(s) => Some(s.to_text()),
        _ => None,
    }
}

fn maps<'a>(items: &'a [Item], name: &str) -> Vec<&'a [Item]> {
    match get(items, name) {
        Some(Node::List(l)) => l
            .iter()
            .filter_map(|n| match n {
                Node::Map(m) => Some(m.as_slice()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Key services SOPS knows besides age and PGP.
const OTHER_SERVICES: [&str; 5] = ["kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

fn group(items: &[Item]) -> Vec<MasterKey> {
    let mut keys = Vec::new();
    for a in maps(items, "age") {
        keys.push(MasterKey::Age {
            recipient: text(a, "recipient").unwrap_or_default(),
            enc: text(a, "enc").unwrap_or_default(),
        });
    }
    for p in maps(items, "pgp") {
        keys.push(MasterKey::Pgp {
            fingerprint: text(p, "fp").unwrap_or_default(),
            enc: text(p, "enc").unwrap_or_default(),
        });
    }
    for kind in OTHER_SERVICES {
        for _ in maps(items, kind) {
            keys.push(MasterKey::Other {
                kind: kind.to_owned(),
            });
        }
    }
    keys
}

impl Metadata {
    /// Reads the nested metadata mapping (the value of `sops`).
    pub fn from_items(items: &[Item]) -> Result<Self, Error> {
        let bad = |why: String| Error::Metadata(why);
        let mut key_groups = Vec::new();
        let top = group(items);
        if !top.is_empty() {
            key_groups.push(top);
        } else {
            for g in maps(items, "key_groups") {
                key_groups.push(group(g));
            }
        }
        if key_groups.iter().all(Vec::is_empty) {
            return Err(bad("no keys found in the metadata".into()));
        }
        let last_modified =
            text(items, "lastmodified").ok_or_else(|| bad("lastmodified is missing".into()))?;
        let mac = text(items, "mac").ok_or_else(|| bad("mac is missing".into()))?;
        let regex = |name: &str, pattern: String| {
            Regex::new(&pattern).map_err(|e| bad(format!("{name} is not a valid regex: {e}")))
        };
        let mut rules = Vec::new();
        for name in [
            "unencrypted_suffix",
            "encrypted_suffix",
            "unencrypted_regex",
            "encrypted_regex",
            "unencrypted_comment_regex",
            "encrypted_comment_regex",
        ] {
            if let Some(v) = text(items, name).filter(|v| !v.is_empty()) {
                rules.push((name, v));
            }
        }
        let rule = match rules.as_slice() {
            [] => Rule::UnencryptedSuffix("_unencrypted".into()),
            [(name, v)] => match *name {
                "unencrypted_suffix" => Rule::UnencryptedSuffix(v.clone()),
                "encrypted_suffix" => Rule::EncryptedSuffix(v.clone()),
                "unencrypted_regex" => Rule::UnencryptedRegex(regex(name, v.clone())?),
                "encrypted_regex" => Rule::EncryptedRegex(regex(name, v.clone())?),
                other => return Err(Error::Unsupported(format!("{other} (SOPS comment rules)"))),
            },
            _ => {
                return Err(bad(
                    "more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex, unencrypted_regex and the comment regexes".into(),
                ));
            }
        };
        let mac_only_encrypted = match get(items, "mac_only_encrypted") {
            Some(Node::Scalar(Scalar::Bool(b))) => *b,
            Some(Node::Scalar(Scalar::Str(s))) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        let shamir_threshold = text(items, "shamir_threshold")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        Ok(Metadata {
            key_groups,
            shamir_threshold,
            last_modified,
            mac,
            rule,
            mac_only_encrypted,
        })
    }

    /// Reads flattened metadata (dotenv's `sops_*` keys with the prefix removed, INI's `[sops]`).
    pub fn from_flat(entries: &[(String, String)]) -> Result<Self, Error> {
        Self::from_items(&unflatten(entries)?)
    }

    /// The additional data the MAC is sealed with: `lastmodified` as Go's `time.RFC3339` prints
    /// it after parsing (no fraction of a second, `Z` for a zero offset).
    pub fn mac_additional_data(&self) -> Result<String, Error> {
        let s = self.last_modified.as_str();
        s.parse::<jiff::Timestamp>()
            .map_err(|e| Error::Metadata(format!("lastmodified {s:?} is not RFC 3339: {e}")))?;
        let (date_time, offset) = match s
            .find(['Z', '+'])
            .or_else(|| s.rfind('-').filter(|&i| i > 10))
        {
            Some(i) => s.split_at(i),
            None => return Err(Error::Metadata(format!("lastmodified {s:?} has no offset"))),
        };
        let date_time = date_time.split('.').next().unwrap_or(date_time);
        let offset = if offset == "+00:00" || offset == "-00:00" {
            "Z"
        } else {
            offset
        };
        Ok(format!("{date_time}{offset}"))
    }
}

/// One step of a flattened key: `__map_<name>` or `__list_<index>`.
enum Step {
    Map(String),
    List(usize),
}

fn steps(key: &str) -> Result<(String, Vec<Step>), Error> {
    const MAP: &str = "__map_";
    const LIST: &str = "__list_";
    let mut rest = key;
    let first_end = [rest.find(MAP), rest.find(LIST)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    let head = rest[..first_end].to_owned();
    rest = &rest[first_end..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (is_map, body) = if let Some(b) = rest.strip_prefix(MAP) {
            (true, b)
        } else if let Some(b) = rest.strip_prefix(LIST) {
            (false, b)
        } else {
            return Err(Error::Metadata(format!(
                "flattened key {key:?} is malformed"
            )));
        };
        let end = [body.find(MAP), body.find(LIST)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(body.len());
        let token = &body[..end];
        out.push(if is_map {
            Step::Map(token.to_owned())
        } else {
            Step::List(token.parse().map_err(|_| {
                Error::Metadata(format!("flattened key {key:?} has a bad list index"))
            })?)
        });
        rest = &body[end..];
    }
    Ok((head, out))
}

fn insert(node: &mut Node, steps: &[Step], value: String) {
    let Some((step, rest)) = steps.split_first() else {
        *node = Node::Scalar(Scalar::Str(value));
        return;
    };
    match step {
        Step::Map(name) => {
            if !matches!(node, Node::Map(_)) {
                *node = Node::Map(Vec::new());
            }
            if let Node::Map(items) = node {
                let pos = items
                    .iter()
                    .position(|i| i.key == Key::Name(name.clone()))
                    .unwrap_or_else(|| {
                        items.push(Item {
                            key: Key::Name(name.clone()),
                            value: Node::Null,
                        });
                        items.len() - 1
                    });
                insert(&mut items[pos].value, rest, value);
            }
        }
        Step::List(index) => {
            if !matches!(node, Node::List(_)) {
                *node = Node::List(Vec::new());
            }
            if let Node::List(list) = node {
                while list.len() <= *index {
                    list.push(Node::Null);
                }
                insert(&mut list[*index], rest, value);
            }
        }
    }
}

/// Rebuilds nested metadata from flattened `key=value` pairs.
fn unflatten(entries: &[(String, String)]) -> Result<Vec<Item>, Error> {
    let mut root = Node::Map(Vec::new());
    for (key, value) in entries {
        let (head, mut rest) = steps(key)?;
        rest.insert(0, Step::Map(head));
        insert(&mut root, &rest, value.clone());
    }
    match root {
        Node::Map(items) => Ok(items),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn flattened_metadata_reads_like_nested() {
        let m = Metadata::from_flat(&flat(&[
            ("age__list_0__map_recipient", "age1abc"),
            (
                "age__list_0__map_enc",
                "-----BEGIN AGE ENCRYPTED FILE-----\n",
            ),
            ("lastmodified", "2026-11-29T09:40:00Z"),
            ("mac", "ENC[...]"),
            ("encrypted_regex", "^(data|stringData)$"),
        ]))
        .unwrap();
        assert_eq!(
            m.key_groups,
            vec![vec![MasterKey::Age {
                recipient: "age1abc".into(),
                enc: "-----BEGIN AGE ENCRYPTED FILE-----\n".into()
            }]]
        );
        assert!(matches!(m.rule, Rule::EncryptedRegex(_)));
        assert!(m.rule.encrypts(&["data".into(), "password".into()]));
        assert!(!m.rule.encrypts(&["metadata".into(), "name".into()]));
    }

    #[test]
    fn default_rule_is_the_unencrypted_suffix() {
        let m = Metadata::from_flat(&flat(&[
            ("age__list_0__map_recipient", "age1abc"),
            ("age__list_0__map_enc", "x"),
            ("lastmodified", "2026-11-29T09:40:00Z"),
            ("mac", "m"),
        ]))
        .unwrap();
        assert!(!m.rule.encrypts(&["a".into(), "b_unencrypted".into()]));
        assert!(m.rule.encrypts(&["a".into(), "b".into()]));
    }

    #[test]
    fn mac_additional_data_is_go_rfc3339() {
        let with = |lm: &str| Metadata {
            key_groups: vec![],
            shamir_threshold: 0,
            last_modified: lm.into(),
            mac: String::new(),
            rule: Rule::UnencryptedSuffix("_unencrypted".into()),
            mac_only_encrypted: false,
        };
        for (input, want) in [
            ("2026-11-29T09:40:00Z", "2026-11-29T09:40:00Z"),
            ("2026-11-29T09:40:00.123456Z", "2026-11-29T09:40:00Z"),
            ("2026-11-29T09:40:00+00:00", "2026-11-29T09:40:00Z"),
            ("2026-11-29T10:40:00+01:00", "2026-11-29T10:40:00+01:00"),
            ("2026-11-29T04:40:00-05:00", "2026-11-29T04:40:00-05:00"),
        ] {
            assert_eq!(with(input).mac_additional_data().unwrap(), want, "{input}");
        }
        assert!(with("yesterday").mac_additional_data().is_err());
    }

    #[test]
    fn two_rules_are_refused() {
        let err = Metadata::from_flat(&flat(&[
            ("age__list_0__map_recipient", "a"),
            ("age__list_0__map_enc", "x"),
            ("lastmodified", "2026-11-29T09:40:00Z"),
            ("mac", "m"),
            ("encrypted_regex", "a"),
            ("unencrypted_suffix", "_u"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("more than one"), "{err}");
    }
}
