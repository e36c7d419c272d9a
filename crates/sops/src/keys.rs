//! The identities that open a document's data key: age identities, read from the `*.agekey`
//! entries of a decryption Secret as Flux reads them.

use std::fmt;
use std::io::Read;

use age::Identity;
use age::armor::ArmoredReader;

use crate::error::Error;
use crate::metadata::{MasterKey, Metadata};

/// A set of age identities. Its `Debug` output names only how many it holds.
#[derive(Default)]
pub struct Keyring {
    identities: Vec<Box<dyn Identity + Send + Sync>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({} age identities)", self.identities.len())
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

    /// How many identities it holds.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
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

    /// The document's data key, from the first age stanza one of the identities opens.
    pub fn data_key(&self, meta: &Metadata) -> Result<[u8; 32], Error> {
        if meta.key_groups.len() > 1 {
            return Err(Error::Unsupported(format!(
                "{} key groups (Shamir secret sharing)",
                meta.key_groups.len()
            )));
        }
        let group = meta.key_groups.first().map(Vec::as_slice).unwrap_or(&[]);
        let mut recipients = Vec::new();
        for key in group {
            if let MasterKey::Age { recipient, enc } = key {
                recipients.push(recipient.clone());
                if self.identities.is_empty() {
                    continue;
                }
                match self.open(enc) {
                    Ok(Some(k)) => return Ok(k),
                    Ok(None) => {}
                    Err(why) => {
                        return Err(Error::Age {
                            recipient: recipient.clone(),
                            why,
                        });
                    }
                }
            }
        }
        if recipients.is_empty() {
            let others: Vec<String> = group
                .iter()
                .map(|k| match k {
                    MasterKey::Pgp { fingerprint } => format!("PGP key {fingerprint}"),
                    MasterKey::Other { kind } => kind.clone(),
                    MasterKey::Age { .. } => String::new(),
                })
                .collect();
            return Err(Error::UnsupportedKeys(others.join(", ")));
        }
        if self.identities.is_empty() {
            return Err(Error::NoIdentities);
        }
        Err(Error::WrongKey {
            identities: self.identities.len(),
            recipients: recipients.join(", "),
        })
    }
}
