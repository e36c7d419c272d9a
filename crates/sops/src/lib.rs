//! SOPS decryption for plumb, written from the SOPS file format: documents in YAML, JSON, dotenv,
//! INI or binary form whose values are `ENC[AES256_GCM,data:,iv:,tag:,type:]`, their data key
//! held by age recipients or PGP keys, and a MAC over the plaintext values that proves the file
//! unchanged.
//!
//! ```no_run
//! use plumb_sops::{Format, Keyring, decrypt};
//! # fn f(identity_file: &str, encrypted: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let mut keys = Keyring::new();
//! keys.add_age_identities(identity_file)?;
//! let plain = decrypt(encrypted, Format::Yaml, &keys)?;
//! let text = plain.emit(Format::Yaml)?;
//! # Ok(()) }
//! ```
//!
//! Nothing here logs, and no error carries a value or key: the callers put errors in conditions.

mod cipher;
mod decrypt;
mod error;
mod formats;
mod keys;
mod metadata;
mod pgp;
mod tree;

pub use cipher::{ENC_PREFIX, ValueError, is_encrypted};
pub use decrypt::Decrypted;
pub use error::Error;
pub use formats::{Format, sniff};
pub use keys::Keyring;
pub use metadata::MasterKey;
pub use tree::{Item, Key, Node, Scalar};

/// The key, inside a rendered object's `sops` mapping, under which the render controller puts the
/// SOPS file the object came from (`{path, format, document}`), for the sync controller to
/// verify and decrypt. The render controller holds no keys; the file is as committed.
pub const SOURCE_KEY: &str = "plumb.dev/source";

/// Decrypts a SOPS document and verifies its MAC.
pub fn decrypt(bytes: &[u8], format: Format, keys: &Keyring) -> Result<Decrypted, Error> {
    let loaded = formats::load(bytes, format)?;
    let key = keys.data_key(&loaded.metadata)?;
    decrypt::decrypt_loaded(loaded, &key)
}

/// The encrypted MAC a SOPS document carries (`sops.mac`, `sops_mac`), read without any key: it
/// names the document, since its nonce is random.
pub fn stored_mac(bytes: &[u8], format: Format) -> Result<String, Error> {
    Ok(formats::load(bytes, format)?.metadata.mac)
}

/// The key holders (age recipients, PGP keys, key services) a SOPS document is encrypted for,
/// read without any key.
pub fn recipients(bytes: &[u8], format: Format) -> Result<Vec<MasterKey>, Error> {
    Ok(formats::load(bytes, format)?
        .metadata
        .key_groups
        .into_iter()
        .flatten()
        .collect())
}

impl Decrypted {
    /// The plaintext file, as `sops --decrypt` writes it in `format` (YAML: the same data, in
    /// serde_yaml's layout).
    pub fn emit(&self, format: Format) -> Result<Vec<u8>, Error> {
        formats::emit(&self.branches, format)
    }
}
