//! PGP private keys, read from the `*.asc` entries of a decryption Secret as Flux reads them, and
//! the SOPS `pgp` stanzas they open: an armored OpenPGP message (as `gpg --encrypt --armor`
//! writes it for `sops --pgp`) whose literal data is the file's 32-byte data key. rPGP does the
//! OpenPGP work; nothing here prints key material.

use std::io::Read;

use pgp::composed::{Deserializable, Message, SignedSecretKey};
use pgp::types::{KeyDetails, Password};

/// The most a data-key message may hold: SOPS data keys are 32 bytes, so anything much larger is
/// not one, and is not read further.
const MAX_DATA_KEY: u64 = 1024;

/// One transferable secret key (primary key and subkeys).
pub(crate) struct PgpKey {
    key: SignedSecretKey,
    /// Fingerprints of the primary key and every subkey, upper-case hex as SOPS writes `fp`.
    fingerprints: Vec<String>,
    /// Whether some of its secret key material is locked by a passphrase.
    protected: bool,
}

impl PgpKey {
    /// The primary key's fingerprint.
    pub(crate) fn fingerprint(&self) -> &str {
        self.fingerprints.first().map_or("", String::as_str)
    }

    /// Whether a SOPS `fp` names this key (its primary key or one of its subkeys).
    pub(crate) fn is(&self, fp: &str) -> bool {
        let fp: String = fp.chars().filter(|c| !c.is_whitespace()).collect();
        self.fingerprints
            .iter()
            .any(|f| f.eq_ignore_ascii_case(&fp))
    }

    /// Whether its secret material needs a passphrase plumb does not have.
    pub(crate) fn is_protected(&self) -> bool {
        self.protected
    }
}

/// Reads every secret key of an armored block (`gpg --export-secret-keys --armor` output). The
/// error names nothing of the text.
pub(crate) fn read_keys(text: &str) -> Result<Vec<PgpKey>, String> {
    if text.contains("BEGIN PGP PUBLIC KEY BLOCK") {
        return Err("holds a public PGP key, not a private one (export it with gpg --export-secret-keys --armor FINGERPRINT)".into());
    }
    let not_a_key =
        || "not an armored PGP private key (gpg --export-secret-keys --armor)".to_owned();
    let (keys, _headers) =
        SignedSecretKey::from_armor_many(text.as_bytes()).map_err(|_| not_a_key())?;
    let mut out = Vec::new();
    for key in keys {
        let key = key.map_err(|_| not_a_key())?;
        let mut fingerprints = vec![format!("{:X}", key.primary_key.fingerprint())];
        fingerprints.extend(
            key.secret_subkeys
                .iter()
                .map(|s| format!("{:X}", s.key.fingerprint())),
        );
        let protected = key.primary_key.secret_params().is_encrypted()
            || key
                .secret_subkeys
                .iter()
                .any(|s| s.key.secret_params().is_encrypted());
        out.push(PgpKey {
            key,
            fingerprints,
            protected,
        });
    }
    if out.is_empty() {
        return Err("holds no PGP private key".into());
    }
    Ok(out)
}

/// Opens one `pgp` stanza's `enc` with the keys that need no passphrase: `Ok(None)` when the
/// message is for none of them.
pub(crate) fn open(keys: &[PgpKey], enc: &str) -> Result<Option<[u8; 32]>, String> {
    let usable: Vec<&SignedSecretKey> = keys
        .iter()
        .filter(|k| !k.protected)
        .map(|k| &k.key)
        .collect();
    if usable.is_empty() {
        return Ok(None);
    }
    let (message, _headers) =
        Message::from_string(enc).map_err(|e| format!("not an armored PGP message: {e}"))?;
    let empty = Password::empty();
    let passwords = vec![&empty; usable.len()];
    let mut message = match message.decrypt_with_keys(passwords, usable) {
        Ok(m) => m,
        Err(pgp::errors::Error::MissingKey) => return Ok(None),
        Err(e) => return Err(format!("cannot decrypt the data key: {e}")),
    };
    // gpg compresses before it encrypts (ZLIB by default); a message nests at most a few layers.
    for _ in 0..4 {
        if !message.is_compressed() {
            break;
        }
        message = message
            .decompress()
            .map_err(|e| format!("cannot decompress the data key: {e}"))?;
    }
    let mut key = Vec::with_capacity(32);
    // Reading to the end checks the message's integrity (MDC or AEAD tag).
    (&mut message)
        .take(MAX_DATA_KEY)
        .read_to_end(&mut key)
        .map_err(|e| format!("cannot read the data key: {e}"))?;
    <[u8; 32]>::try_from(key.as_slice()).map(Some).map_err(|_| {
        format!(
            "the message holds {} bytes, not a 32-byte data key",
            key.len()
        )
    })
}
