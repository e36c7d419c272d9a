//! dotenv: `KEY=value` lines (`\n` in a value stands for a newline), `#` comment lines, the
//! metadata flattened into `sops_*` keys.

use super::Loaded;
use crate::error::Error;
use crate::metadata::Metadata;
use crate::tree::{Item, Key, Node, Scalar};

pub fn load(bytes: &[u8]) -> Result<Loaded, Error> {
    let text = std::str::from_utf8(bytes).map_err(|_| Error::Parse {
        format: "dotenv",
        why: "not UTF-8".into(),
    })?;
    let mut items = Vec::new();
    let mut flat = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            items.push(Item {
                key: Key::Comment(comment.to_owned()),
                value: Node::Null,
            });
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(Error::Parse {
                format: "dotenv",
                why: format!("line {} has no '='", n + 1),
            });
        };
        let value = value.replace("\\n", "\n");
        match key.strip_prefix("sops_") {
            Some(meta) => flat.push((meta.to_owned(), value)),
            None => items.push(Item {
                key: Key::Name(key.to_owned()),
                value: Node::Scalar(Scalar::Str(value)),
            }),
        }
    }
    if flat.is_empty() {
        return Err(Error::NotEncrypted);
    }
    Ok(Loaded {
        branches: vec![items],
        metadata: Metadata::from_flat(&flat)?,
    })
}

pub fn emit(branches: &[Vec<Item>]) -> Vec<u8> {
    let mut out = String::new();
    for item in branches.first().into_iter().flatten() {
        match (&item.key, &item.value) {
            (Key::Comment(c), _) => {
                out.push('#');
                out.push_str(c);
            }
            (Key::Name(k), Node::Scalar(Scalar::Str(s))) => {
                out.push_str(k);
                out.push('=');
                out.push_str(&s.replace('\n', "\\n"));
            }
            (Key::Name(k), Node::Scalar(s)) => {
                out.push_str(k);
                out.push('=');
                out.push_str(&s.to_text());
            }
            (Key::Name(k), _) => {
                out.push_str(k);
                out.push('=');
            }
        }
        out.push('\n');
    }
    out.into_bytes()
}
