//! Why a SOPS document could not be decrypted. No variant carries plaintext or key material:
//! these messages go to conditions, Events and logs.

use crate::cipher::ValueError;

/// Why a SOPS document could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The document does not parse in its format.
    #[error("not a valid {format} document: {why}")]
    Parse {
        /// The format it was read as.
        format: &'static str,
        /// The parser's complaint (no values quoted).
        why: String,
    },
    /// The document has no SOPS metadata.
    #[error("no SOPS metadata (not a SOPS-encrypted document)")]
    NotEncrypted,
    /// The metadata is incomplete or inconsistent.
    #[error("SOPS metadata: {0}")]
    Metadata(String),
    /// A feature of SOPS that plumb does not implement.
    #[error("unsupported SOPS feature: {0}")]
    Unsupported(String),
    /// The file is encrypted only for key services plumb does not speak.
    #[error(
        "the data key is held only by {0}, which plumb does not decrypt; add an age or PGP recipient to the file (sops updatekeys)"
    )]
    UnsupportedKeys(String),
    /// No key was given at all.
    #[error("no key to decrypt with (the decryption Secret holds no *.agekey or *.asc entry)")]
    NoIdentities,
    /// None of the keys opens any age or PGP stanza of the file.
    #[error(
        "none of the keys given ({}) can decrypt the data key (file is for {recipients})",
        count_keys(*identities, *pgp_keys)
    )]
    WrongKey {
        /// How many age identities were tried.
        identities: usize,
        /// How many PGP keys were tried.
        pgp_keys: usize,
        /// The file's recipients: age recipients and `PGP key FINGERPRINT`s.
        recipients: String,
    },
    /// The PGP key the file is for is locked by a passphrase.
    #[error(
        "PGP key {fingerprint} is protected by a passphrase, which plumb cannot give: put the key in the decryption Secret without one (as Flux requires)"
    )]
    PassphraseProtected {
        /// The key's primary fingerprint.
        fingerprint: String,
    },
    /// A PGP stanza is malformed or does not open.
    #[error("PGP stanza for {fingerprint}: {why}")]
    Pgp {
        /// The stanza's fingerprint.
        fingerprint: String,
        /// What went wrong.
        why: String,
    },
    /// An age stanza is malformed.
    #[error("age stanza for {recipient}: {why}")]
    Age {
        /// The stanza's recipient.
        recipient: String,
        /// What went wrong.
        why: String,
    },
    /// A value could not be opened.
    #[error("value at {path}: {source}")]
    Value {
        /// The value's key path, e.g. `data:password`.
        path: String,
        /// Why.
        source: ValueError,
    },
    /// A value that should be encrypted is not a string.
    #[error("value at {path} should be encrypted but is not a string")]
    NotEncryptedValue {
        /// The value's key path.
        path: String,
    },
    /// The stored MAC could not be opened.
    #[error("MAC cannot be decrypted ({0}); the file was changed or its lastmodified edited")]
    MacUnreadable(ValueError),
    /// The MAC over the decrypted values differs from the stored one.
    #[error(
        "MAC mismatch: the file was changed after it was encrypted (values, their order or unencrypted values)"
    )]
    MacMismatch,
}

/// `1 age identity, 2 PGP keys`: what a keyring held, for messages.
fn count_keys(age: usize, pgp: usize) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{}, {}",
        plural(age, "age identity", "age identities"),
        plural(pgp, "PGP key", "PGP keys")
    )
}
