//! INI as SOPS reads it through go-ini: sections of `key = value`, `;`/`#` comment lines attached
//! to the next section or key, the metadata flattened into a `[sops]` section.

use super::Loaded;
use crate::error::Error;
use crate::metadata::Metadata;
use crate::tree::{Item, Key, Node, Scalar};

/// go-ini's name for the keys before any section header.
const DEFAULT_SECTION: &str = "DEFAULT";

fn strip_comment_char(c: &str) -> String {
    if c.starts_with(';') || c.starts_with('#') {
        c.trim_start_matches(['#', ';', ' ']).to_owned()
    } else {
        c.to_owned()
    }
}

fn unquote(v: &str) -> &str {
    for q in ["\"\"\"", "`", "\"", "'"] {
        if v.len() >= 2 * q.len() && v.starts_with(q) && v.ends_with(q) {
            return &v[q.len()..v.len() - q.len()];
        }
    }
    v
}

pub fn load(bytes: &[u8]) -> Result<Loaded, Error> {
    let text = std::str::from_utf8(bytes).map_err(|_| Error::Parse {
        format: "ini",
        why: "not UTF-8".into(),
    })?;
    let mut sections: Vec<(String, Vec<Item>)> = vec![(DEFAULT_SECTION.to_owned(), Vec::new())];
    let mut comment: Vec<&str> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') || line.starts_with(';') {
            comment.push(line);
            continue;
        }
        let pending = (!comment.is_empty()).then(|| strip_comment_char(&comment.join("\n")));
        comment.clear();
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .split_once(']')
                .map(|(n, _)| n.trim())
                .ok_or_else(|| Error::Parse {
                    format: "ini",
                    why: format!("line {} has an unclosed section header", n + 1),
                })?;
            let mut items = Vec::new();
            if let Some(c) = pending {
                items.push(Item {
                    key: Key::Comment(c),
                    value: Node::Null,
                });
            }
            sections.push((name.to_owned(), items));
            continue;
        }
        let Some(at) = line.find(['=', ':']) else {
            return Err(Error::Parse {
                format: "ini",
                why: format!("line {} is neither a section, a key nor a comment", n + 1),
            });
        };
        let key = line[..at].trim().to_owned();
        let mut value = line[at + 1..].trim();
        if let Some(i) = value
            .find(['#', ';'])
            .filter(|_| !value.starts_with(['"', '\'', '`']))
        {
            value = value[..i].trim_end();
        }
        let Some((_, items)) = sections.last_mut() else {
            continue;
        };
        items.push(Item {
            key: Key::Name(key),
            value: Node::Scalar(Scalar::Str(unquote(value).to_owned())),
        });
        if let Some(c) = pending {
            items.push(Item {
                key: Key::Comment(c),
                value: Node::Null,
            });
        }
    }
    let mut flat = None;
    let mut branch = Vec::new();
    for (name, items) in sections {
        if name == "sops" {
            let pairs = items
                .into_iter()
                .filter_map(|i| match (i.key, i.value) {
                    (Key::Name(k), Node::Scalar(Scalar::Str(v))) => {
                        Some((k, v.replace("\\n", "\n")))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>();
            flat = Some(pairs);
        } else {
            branch.push(Item {
                key: Key::Name(name),
                value: Node::Map(items),
            });
        }
    }
    let flat = flat.ok_or(Error::NotEncrypted)?;
    Ok(Loaded {
        branches: vec![branch],
        metadata: Metadata::from_flat(&flat)?,
    })
}

pub fn emit(branches: &[Vec<Item>]) -> Vec<u8> {
    let mut out = String::new();
    let mut first = true;
    for section in branches.first().into_iter().flatten() {
        let (Key::Name(name), Node::Map(items)) = (&section.key, &section.value) else {
            continue;
        };
        if name == DEFAULT_SECTION && items.is_empty() {
            continue;
        }
        if !first {
            out.push('\n');
        }
        first = false;
        let mut rest = items.as_slice();
        if let Some(Item {
            key: Key::Comment(c),
            ..
        }) = rest.first()
        {
            out.push_str("; ");
            out.push_str(c);
            out.push('\n');
            rest = &rest[1..];
        }
        out.push_str(&format!("[{name}]\n"));
        let width = rest
            .iter()
            .filter_map(|i| match &i.key {
                Key::Name(k) => Some(k.chars().count()),
                Key::Comment(_) => None,
            })
            .max()
            .unwrap_or(0);
        // go-ini writes a key's comment above it; SOPS stored it after the key.
        let mut i = 0;
        while i < rest.len() {
            if let Key::Name(k) = &rest[i].key {
                if let Some(Item {
                    key: Key::Comment(c),
                    ..
                }) = rest.get(i + 1)
                {
                    out.push_str("; ");
                    out.push_str(c);
                    out.push('\n');
                }
                let v = match &rest[i].value {
                    Node::Scalar(s) => s.to_text(),
                    _ => String::new(),
                };
                out.push_str(&format!("{k:<width$} = {}\n", quote(&v)));
            }
            i += 1;
        }
    }
    out.into_bytes()
}

/// go-ini's quoting of values that would not read back as written.
fn quote(v: &str) -> String {
    if v.contains('\n') {
        format!("\"\"\"{v}\"\"\"")
    } else if v.starts_with(' ')
        || v.ends_with(' ')
        || v.contains(['#', ';'])
        || v.contains('`') && !v.contains('"')
    {
        format!("\"{v}\"")
    } else if v.contains('"') {
        format!("`{v}`")
    } else {
        v.to_owned()
    }
}
