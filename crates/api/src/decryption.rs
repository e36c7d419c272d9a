//! `Sync.spec.decryption`: how the sync controller decrypts SOPS-encrypted objects and
//! secretGenerator files just before it applies them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::reference::LocalObjectReference;

/// Decrypt SOPS-encrypted Secrets (and files a secretGenerator made into Secrets) before apply.
/// Rendered artifacts keep them encrypted; plaintext exists only in the sync controller's memory
/// and in the Secret it applies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decryption {
    /// The decryption provider.
    pub provider: DecryptionProvider,
    /// A Secret in the Sync's own namespace whose `*.agekey` entries hold age identities and
    /// `*.asc` entries armored PGP private keys. Without it, the sync controller's default key
    /// Secret (`--sops-age-secret`) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
}

/// A decryption provider.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DecryptionProvider {
    /// Mozilla SOPS with age or PGP keys.
    Sops,
}

/// Suffix of the entries of a decryption Secret that hold age identities (as in Flux).
pub const AGE_KEY_SUFFIX: &str = ".agekey";

/// Suffix of the entries of a decryption Secret that hold armored PGP private keys (as in Flux).
pub const PGP_KEY_SUFFIX: &str = ".asc";
