//! One SOPS value: `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<type>]`, AES-256-GCM with a
//! 32-byte nonce, the value's key path (`a:b:c:`) as additional data.

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::tree::Scalar;

/// AES-256-GCM with the 32-byte nonces SOPS uses.
type SopsGcm = AesGcm<Aes256, U32>;

/// The prefix every encrypted SOPS value starts with.
pub const ENC_PREFIX: &str = "ENC[AES256_GCM,";

/// Why one value could not be opened. Never carries plaintext or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The text is not in SOPS's `ENC[...]` form.
    #[error("not a SOPS encrypted value")]
    Format,
    /// A field is not valid base64.
    #[error("field {0} is not valid base64")]
    Base64(&'static str),
    /// The nonce is not 32 bytes or the tag not 16.
    #[error("iv or tag has the wrong length")]
    Length,
    /// GCM authentication failed: a wrong data key, a changed value, or a value moved to another key.
    #[error("authentication failed (wrong data key, or the value was changed or moved)")]
    Auth,
    /// The decrypted text does not parse as the declared type.
    #[error("decrypted value is not a valid {0}")]
    Type(String),
    /// The type is none SOPS writes.
    #[error("unknown value type {0:?}")]
    UnknownType(String),
}

/// Whether `s` looks like an encrypted SOPS value.
pub fn is_encrypted(s: &str) -> bool {
    s.starts_with(ENC_PREFIX)
}

/// The parts of an `ENC[...]` value.
struct Parts<'a> {
    data: &'a str,
    iv: &'a str,
    tag: &'a str,
    kind: &'a str,
}

fn parts(value: &str) -> Result<Parts<'_>, ValueError> {
    // SOPS matches `^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]`; base64 has no commas,
    // so the fields split cleanly on them.
    let inner = value
        .strip_prefix(ENC_PREFIX)
        .and_then(|s| s.strip_suffix(']'))
        .ok_or(ValueError::Format)?;
    let mut fields = inner.splitn(4, ',');
    let mut field = |name: &str| {
        fields
            .next()
            .and_then(|f| f.strip_prefix(name))
            .filter(|v| !v.is_empty())
            .ok_or(ValueError::Format)
    };
    Ok(Parts {
        data: field("data:")?,
        iv: field("iv:")?,
        tag: field("tag:")?,
        kind: field("type:")?,
    })
}

/// Opens one encrypted value with the document's data key; `path` is the value's key path as
/// SOPS writes its additional data (`metadata:name:` → keys joined by `:`, plus a final `:`).
pub fn decrypt_value(value: &str, key: &[u8; 32], path: &str) -> Result<Scalar, ValueError> {
    let p = parts(value)?;
    let b64 =
        |what: &'static str, s: &str| STANDARD.decode(s).map_err(|_| ValueError::Base64(what));
    let data = b64("data", p.data)?;
    let iv = b64("iv", p.iv)?;
    let tag = b64("tag", p.tag)?;
    if iv.len() != 32 || tag.len() != 16 {
        return Err(ValueError::Length);
    }
    let cipher = SopsGcm::new(key.into());
    let mut sealed = data;
    sealed.extend_from_slice(&tag);
    let plain = cipher
        .decrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: &sealed,
                aad: path.as_bytes(),
            },
        )
        .map_err(|_| ValueError::Auth)?;
    typed(plain, p.kind)
}

/// Reads decrypted bytes as the type SOPS recorded (Go's parsers: `Atoi`, `ParseFloat`, `ParseBool`).
fn typed(plain: Vec<u8>, kind: &str) -> Result<Scalar, ValueError> {
    let bad = || ValueError::Type(kind.to_owned());
    let text = || String::from_utf8(plain.clone()).map_err(|_| bad());
    Ok(match kind {
        // SOPS's binary format encrypts arbitrary bytes as `str`.
        "str" | "comment" => match String::from_utf8(plain) {
            Ok(s) => Scalar::Str(s),
            Err(e) => Scalar::Bytes(e.into_bytes()),
        },
        "bytes" => Scalar::Bytes(plain),
        "time" => Scalar::Time(text()?),
        "int" => Scalar::Int(text()?.parse().map_err(|_| bad())?),
        "float" => Scalar::Float(text()?.parse().map_err(|_| bad())?),
        "bool" => Scalar::Bool(match text()?.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
            "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
            _ => return Err(bad()),
        }),
        other => return Err(ValueError::UnknownType(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seals like SOPS does; only for these tests (fixtures of the real format come from `sops`).
    fn seal(plain: &str, key: &[u8; 32], path: &str, kind: &str) -> String {
        let cipher = SopsGcm::new(key.into());
        let nonce = [3u8; 32];
        let out = cipher
            .encrypt(
                Nonce::<U32>::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: path.as_bytes(),
                },
            )
            .unwrap();
        let (data, tag) = out.split_at(out.len() - 16);
        format!(
            "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
            STANDARD.encode(data),
            STANDARD.encode(nonce),
            STANDARD.encode(tag)
        )
    }

    #[test]
    fn opens_values_of_every_type() {
        let key = [7u8; 32];
        let cases = [
            ("hunter2", "str", Scalar::Str("hunter2".into())),
            ("42", "int", Scalar::Int(42)),
            ("1.5", "float", Scalar::Float(1.5)),
            ("True", "bool", Scalar::Bool(true)),
            ("raw", "bytes", Scalar::Bytes(b"raw".to_vec())),
        ];
        for (plain, kind, want) in cases {
            let enc = seal(plain, &key, "a:b:", kind);
            assert_eq!(decrypt_value(&enc, &key, "a:b:").unwrap(), want, "{kind}");
        }
    }

    #[test]
    fn a_value_moved_to_another_key_or_opened_with_another_key_fails() {
        let key = [7u8; 32];
        let enc = seal("secret", &key, "data:password:", "str");
        assert_eq!(
            decrypt_value(&enc, &key, "data:username:"),
            Err(ValueError::Auth)
        );
        assert_eq!(
            decrypt_value(&enc, &[8u8; 32], "data:password:"),
            Err(ValueError::Auth)
        );
    }

    #[test]
    fn malformed_values_are_refused_without_echoing_them() {
        let key = [7u8; 32];
        for bad in [
            "ENC[AES256_GCM,data:,iv:,tag:,type:str]",
            "ENC[AES256_GCM,data:!!,iv:AA==,tag:AA==,type:str]",
            "plain",
        ] {
            let err = decrypt_value(bad, &key, "a:").unwrap_err();
            assert!(!err.to_string().contains("!!"), "{err}");
        }
    }
}
