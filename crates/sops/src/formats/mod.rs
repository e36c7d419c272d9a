//! The five SOPS file formats: reading an encrypted file into branches and metadata, and writing
//! the decrypted branches as `sops --decrypt` would.

mod dotenv;
mod ini;
mod json;
mod yaml;

use crate::error::Error;
use crate::metadata::Metadata;
use crate::tree::{Item, Key, Node};

/// A SOPS file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML, possibly several documents.
    Yaml,
    /// JSON with an object at the top.
    Json,
    /// `KEY=value` lines.
    Dotenv,
    /// INI sections.
    Ini,
    /// Any bytes, stored as the `data` value of a JSON document.
    Binary,
}

impl Format {
    /// The format SOPS picks for a file name (`sops` without `--input-type`): by extension,
    /// binary for anything else.
    pub fn for_path(path: &str) -> Format {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else if lower.ends_with(".json") {
            Format::Json
        } else if lower.ends_with(".env") {
            Format::Dotenv
        } else if lower.ends_with(".ini") {
            Format::Ini
        } else {
            Format::Binary
        }
    }

    /// The format's name as SOPS spells it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
            Format::Dotenv => "dotenv",
            Format::Ini => "ini",
            Format::Binary => "binary",
        }
    }
}

/// An encrypted document, read: its branches (one per YAML document) without the metadata.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The document's branches.
    pub branches: Vec<Vec<Item>>,
    /// Its SOPS metadata.
    pub metadata: Metadata,
}

/// Reads an encrypted document.
pub fn load(bytes: &[u8], format: Format) -> Result<Loaded, Error> {
    match format {
        Format::Yaml => yaml::load(bytes),
        Format::Json | Format::Binary => json::load(bytes, format),
        Format::Dotenv => dotenv::load(bytes),
        Format::Ini => ini::load(bytes),
    }
}

/// Writes decrypted branches in `format`, as `sops --decrypt` does (YAML: the same data, in
/// serde_yaml's style rather than go-yaml's).
pub fn emit(branches: &[Vec<Item>], format: Format) -> Result<Vec<u8>, Error> {
    match format {
        Format::Yaml => yaml::emit(branches),
        Format::Json => Ok(json::emit(branches)),
        Format::Binary => json::emit_binary(branches),
        Format::Dotenv => Ok(dotenv::emit(branches)),
        Format::Ini => Ok(ini::emit(branches)),
    }
}

/// Takes the nested `sops` entry out of every branch; the first branch's is the metadata.
fn take_nested_metadata(branches: &mut [Vec<Item>]) -> Result<Metadata, Error> {
    let mut found = None;
    for (i, branch) in branches.iter_mut().enumerate() {
        let mut kept = Vec::with_capacity(branch.len());
        for item in branch.drain(..) {
            if item.key == Key::Name("sops".into()) {
                if i == 0 {
                    if found.is_some() {
                        return Err(Error::Metadata("duplicate sops entry".into()));
                    }
                    match item.value {
                        Node::Map(m) => found = Some(m),
                        _ => return Err(Error::Metadata("sops entry is not a mapping".into())),
                    }
                }
            } else {
                kept.push(item);
            }
        }
        *branch = kept;
    }
    let items = found.ok_or(Error::NotEncrypted)?;
    Metadata::from_items(&items)
}

/// Whether `bytes` look like a SOPS-encrypted file of some format (the markers Flux looks for),
/// and which. JSON-shaped files are reported as [`Format::Json`]; the binary format is JSON too.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    if has(b"\"mac\": \"ENC[") {
        Some(Format::Json)
    } else if has(b"sops_mac=ENC[") {
        Some(Format::Dotenv)
    } else if has(b"mac: ENC[") {
        Some(Format::Yaml)
    } else if has(b"[sops]") && has(b"ENC[AES256_GCM,") {
        Some(Format::Ini)
    } else {
        None
    }
}
