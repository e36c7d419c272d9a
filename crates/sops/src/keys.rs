//! The keys that open a document's data key: age identities and PGP private keys, read from the
//! `*.agekey` and `*.asc` entries of a decryption Secret as Flux reads them.

use std::fmt;
use std::io::Read;

use age::Identity;
use age::armor::ArmoredReader;

use crate::error::Error;
use crate::metadata::{MasterKey, Metadata};
use crate::pgp::PgpKey;

/// A set of age identities and PGP private keys. Its `Debug` output names only how many it holds.
#[derive(Default)]
pub struct Keyring {
    identities: Vec<Box<dyn Identity + Send + Sync>>,
    pgp: Vec<PgpKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Keyring({} age identities, {} PGP keys)",
            self.identities.len(),
            self.pgp.len()
        )
    }
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every identity of an age identity file (`AGE-SECRET-KEY-1...` lines, `#` comments),
    /// as `age-keygen` writes it. The error names nothing of the text.
    pub fn add_age_identities(&mut self, text: &str) -> Result<usize, String> {
        let file = age::IdentityFile::from_buffer(text.as_bytes())
            .map_err(|_| "not an age identity file".to_owned())?;
        let ids = file
            .into_identities()
            .map_err(|_| "holds an identity plumb cannot use".to_owned())?;
        if ids.is_empty() {
            return Err("holds no age identity".to_owned());
        }
        let n = ids.len();
        self.identities.extend(ids);
        Ok(n)
    }

    /// Adds every private key of an armored PGP key block, as `gpg --export-secret-keys --armor`
    /// writes it (what a Flux `*.asc` entry holds). A key locked by a passphrase is kept, so a file
    /// for it fails naming that cause; plumb has no passphrase to give. The error names nothing of
    /// the text.
    pub fn add_pgp_keys(&mut self, armored: &str) -> Result<usize, String> {
        let keys = crate::pgp::read_keys(armored)?;
        let n = keys.len();
        self.pgp.extend(keys);
        Ok(n)
    }

    /// How many keys it holds, age identities and PGP keys together.
    pub fn len(&self) -> usize {
        self.identities.len() + self.pgp.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens one age stanza: the armored age file holding the data key.
    fn open(&self, enc: &str) -> Result<Option<[u8; 32]>, String> {
        let reader = ArmoredReader::new(enc.as_bytes());
        let decryptor = age::Decryptor::new(reader).map_err(|e| e.to_string())?;
        let ids = self.identities.iter().map(|i| i.as_ref() as &dyn Identity);
        let mut stream = match decryptor.decrypt(ids) {
            Ok(s) => s,
            Err(age::DecryptError::NoMatchingKeys) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let mut key = Vec::with_capacity(32);
        stream.read_to_end(&mut key).map_err(|e| e.to_string())?;
        <[u8; 32]>::try_from(key.as_slice())
            .map(Some)
            .map_err(|_| format!("data key is {} bytes, not 32", key.len()))
    }

    /// The document's data key, from the first age or PGP stanza one of the keys opens. When none
    /// opens, the error is the first stanza's own failure if one failed, else why no key fits.
    pub fn data_key(&self, meta: &Metadata) -> Result<[u8; 32], Error> {
        if meta.key_groups.len() > 1 {
            return Err(Error::Unsupported(format!(
                "{} key groups (Shamir secret sharing)",
                meta.key_groups.len()
            )));
        }
        let group = meta.key_groups.first().map(Vec::as_slice).unwrap_or(&[]);
        let mut recipients = Vec::new();
        let mut others = Vec::new();
        let mut failed = None;
        for key in group {
            let opened = match key {
                MasterKey::Age { recipient, enc } => {
                    recipients.push(recipient.clone());
                    if self.identities.is_empty() {
                        continue;
                    }
                    self.open(enc).map_err(|why| Error::Age {
                        recipient: recipient.clone(),
                        why,
                    })
                }
                MasterKey::Pgp { fingerprint, enc } => {
                    recipients.push(format!("PGP key {fingerprint}"));
                    crate::pgp::open(&self.pgp, enc).map_err(|why| Error::Pgp {
                        fingerprint: fingerprint.clone(),
                        why,
                    })
                }
                MasterKey::Other { kind } => {
                    others.push(kind.clone());
                    continue;
                }
            };
            match opened {
                Ok(Some(k)) => return Ok(k),
                Ok(None) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if recipients.is_empty() {
            return Err(Error::UnsupportedKeys(others.join(", ")));
        }
        let locked = group.iter().find_map(|k| match k {
            MasterKey::Pgp { fingerprint, .. } => self
                .pgp
                .iter()
                .find(|p| p.is_protected() && p.is(fingerprint)),
            _ => None,
        });
        if let Some(key) = locked {
            return Err(Error::PassphraseProtected {
                fingerprint: key.fingerprint().to_owned(),
            });
        }
        if self.is_empty() {
            return Err(Error::NoIdentities);
        }
        Err(Error::WrongKey {
            identities: self.identities.len(),
            pgp_keys: self.pgp.len(),
            recipients: recipients.join(", "),
        })
    }
}
