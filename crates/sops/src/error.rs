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
        "the data key is held only by {0}, which plumb does not decrypt; add an age recipient to the file (sops updatekeys)"
    )]
    UnsupportedKeys(String),
    /// No key was given at all.
    #[error("no age identity to decrypt with (the decryption Secret holds no *.agekey entry)")]
    NoIdentities,
    /// None of the identities opens any age stanza of the file.
    #[error(
        "none of the {identities} age identities given can decrypt the data key (file is for {recipients})"
    )]
    WrongKey {
        /// How many identities were tried.
        identities: usize,
        /// The file's age recipients.
        recipients: String,
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
