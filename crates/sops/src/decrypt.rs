//! Decrypting a loaded document: walk the values in order as SOPS does, open each encrypted one
//! with its key path as additional data, hash them into the MAC, and compare with the stored MAC.

use std::collections::HashMap;

use sha2::{Digest, Sha512};

use crate::cipher::{self, ValueError};
use crate::error::Error;
use crate::formats::Loaded;
use crate::metadata::{Metadata, Rule};
use crate::tree::{Item, Key, Node, Scalar};

/// SOPS starts the MAC with these bytes (sha256 of `sops`) when it covers only encrypted values,
/// so the two kinds of MAC never match each other.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// A walk over one document with its data key.
struct Walk<'a> {
    key: &'a [u8; 32],
    rule: &'a Rule,
    mac_only_encrypted: bool,
    hash: Sha512,
    /// Every encrypted value seen, by its ciphertext.
    opened: HashMap<String, Scalar>,
}

impl Walk<'_> {
    fn branch(&mut self, items: &mut [Item], path: &mut Vec<String>) -> Result<(), Error> {
        for item in items {
            match &mut item.key {
                Key::Comment(c) => {
                    // Comments are encrypted under the enclosing path; one that does not open was
                    // written in plaintext (older SOPS), as SOPS itself assumes. Never in the MAC.
                    if self.rule.encrypts(path)
                        && cipher::is_encrypted(c)
                        && let Ok(Scalar::Str(plain)) =
                            cipher::decrypt_value(c, self.key, &aad(path))
                    {
                        *c = plain;
                    }
                }
                Key::Name(name) => {
                    path.push(name.clone());
                    let r = self.value(&mut item.value, path);
                    path.pop();
                    r?;
                }
            }
        }
        Ok(())
    }

    fn value(&mut self, node: &mut Node, path: &mut Vec<String>) -> Result<(), Error> {
        match node {
            Node::Null => Ok(()),
            Node::Map(items) => self.branch(items, path),
            Node::List(list) => list.iter_mut().try_for_each(|n| self.value(n, path)),
            Node::Scalar(s) => {
                let encrypted = self.rule.encrypts(path);
                if encrypted {
                    let Scalar::Str(text) = s else {
                        return Err(Error::NotEncryptedValue {
                            path: path.join(":"),
                        });
                    };
                    // SOPS leaves empty strings as they are.
                    if !text.is_empty() {
                        let plain = cipher::decrypt_value(text, self.key, &aad(path)).map_err(
                            |source| Error::Value {
                                path: path.join(":"),
                                source,
                            },
                        )?;
                        self.opened.insert(std::mem::take(text), plain.clone());
                        *s = plain;
                    }
                }
                if !self.mac_only_encrypted || encrypted {
                    self.hash.update(s.mac_bytes());
                }
                Ok(())
            }
        }
    }
}

/// The additional data of the value at `path`: the keys joined by `:`, and a final `:`.
fn aad(path: &[String]) -> String {
    let mut s = path.join(":");
    s.push(':');
    s
}

/// A decrypted document: its plaintext branches, and every encrypted value it held mapped to its
/// plaintext (so a copy of a value elsewhere — kustomize output — can be matched to this file).
#[derive(Debug, Clone)]
pub struct Decrypted {
    /// The plaintext branches.
    pub branches: Vec<Vec<Item>>,
    /// Ciphertext (`ENC[...]`) to plaintext, for every value the MAC vouched for.
    pub values: HashMap<String, Scalar>,
}

/// Decrypts every value of `doc` with `key` and verifies the MAC; nothing is returned unless all
/// values open and the MAC matches.
pub fn decrypt_loaded(doc: Loaded, key: &[u8; 32]) -> Result<Decrypted, Error> {
    let Loaded {
        mut branches,
        metadata,
    } = doc;
    let Metadata {
        rule,
        mac_only_encrypted,
        ..
    } = &metadata;
    let mut walk = Walk {
        key,
        rule,
        mac_only_encrypted: *mac_only_encrypted,
        hash: Sha512::new(),
        opened: HashMap::new(),
    };
    if walk.mac_only_encrypted {
        walk.hash.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    for branch in &mut branches {
        walk.branch(branch, &mut Vec::new())?;
    }
    let computed = hex::encode_upper(walk.hash.finalize());
    let stored = if metadata.mac.is_empty() {
        String::new()
    } else {
        match cipher::decrypt_value(&metadata.mac, key, &metadata.mac_additional_data()?) {
            Ok(Scalar::Str(s)) => s,
            Ok(_) => return Err(Error::MacUnreadable(ValueError::Type("str".into()))),
            Err(e) => return Err(Error::MacUnreadable(e)),
        }
    };
    if stored != computed {
        return Err(Error::MacMismatch);
    }
    Ok(Decrypted {
        branches,
        values: walk.opened,
    })
}
