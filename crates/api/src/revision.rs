//! [`Revision`] and [`Digest`]: how a source version and an artifact's content are named.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a revision or digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The revision does not end in `sha1:<40 hex digits>`.
    #[error("revision {0:?}: expected `[<ref>@]sha1:<40 hex digits>`")]
    Revision(String),
    /// The digest is not `sha256:<64 hex digits>`.
    #[error("digest {0:?}: expected `sha256:<64 hex digits>`")]
    Digest(String),
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A source revision: `<branch|tag|full ref>@sha1:<commit>`, or `sha1:<commit>` for a bare commit.
///
/// ```
/// let r: plumb_api::Revision = "main@sha1:0123456789abcdef0123456789abcdef01234567".parse().unwrap();
/// assert_eq!(r.reference(), Some("main"));
/// assert_eq!(r.commit(), "0123456789abcdef0123456789abcdef01234567");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Revision {
    reference: Option<String>,
    commit: String,
}

impl Revision {
    /// A revision for `commit` reached through `reference` (a branch, tag or full ref name).
    ///
    /// Returns an error when `commit` is not 40 lowercase hex digits.
    pub fn new(reference: Option<&str>, commit: &str) -> Result<Self, ParseError> {
        let commit = commit.to_ascii_lowercase();
        let reference = reference.filter(|r| !r.is_empty()).map(str::to_owned);
        if !is_lower_hex(&commit, 40) || reference.as_deref().is_some_and(|r| r.contains('@')) {
            let shown = match &reference {
                Some(r) => format!("{r}@sha1:{commit}"),
                None => format!("sha1:{commit}"),
            };
            return Err(ParseError::Revision(shown));
        }
        Ok(Self { reference, commit })
    }

    /// The branch, tag or ref name, when the revision was reached through one.
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }

    /// The full 40-digit commit id.
    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// The first 12 digits of the commit, for display.
    pub fn short_commit(&self) -> &str {
        &self.commit[..12]
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Some(r) => write!(f, "{r}@sha1:{}", self.commit),
            None => write!(f, "sha1:{}", self.commit),
        }
    }
}

impl FromStr for Revision {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (reference, hash) = match s.rsplit_once('@') {
            Some((r, h)) if !r.is_empty() => (Some(r), h),
            Some(_) => return Err(ParseError::Revision(s.to_owned())),
            None => (None, s),
        };
        let commit = hash
            .strip_prefix("sha1:")
            .filter(|c| is_lower_hex(c, 40))
            .ok_or_else(|| ParseError::Revision(s.to_owned()))?;
        Self::new(reference, commit)
    }
}

/// The sha256 digest of an artifact: `sha256:<64 lowercase hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest(String);

impl Digest {
    /// The digest whose hex encoding is `hex` (64 lowercase hex digits).
    pub fn from_sha256_hex(hex: &str) -> Result<Self, ParseError> {
        format!("sha256:{hex}").parse()
    }

    /// The 64 hex digits without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The digest as written in status: `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("sha256:") {
            Some(hex) if is_lower_hex(hex, 64) => Ok(Self(s.to_owned())),
            _ => Err(ParseError::Digest(s.to_owned())),
        }
    }
}

macro_rules! string_serde {
    ($ty:ty, $pattern:expr, $desc:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": $desc,
                })
            }
        }
    };
}

string_serde!(
    Revision,
    "^([^@]+@)?sha1:[0-9a-f]{40}$",
    "A source revision: `<branch|tag|ref>@sha1:<commit>` or `sha1:<commit>`."
);
string_serde!(
    Digest,
    "^sha256:[0-9a-f]{64}$",
    "The sha256 digest of an artifact: `sha256:<hex>`."
);

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn revision_round_trips_branch_tag_ref_and_bare_commit() {
        for text in [
            format!("main@sha1:{SHA}"),
            format!("v1.2.3@sha1:{SHA}"),
            format!("refs/heads/feature/x@sha1:{SHA}"),
            format!("sha1:{SHA}"),
        ] {
            let r: Revision = text.parse().unwrap();
            assert_eq!(r.to_string(), text);
            assert_eq!(r.commit(), SHA);
        }
    }

    #[test]
    fn revision_rejects_short_upper_or_missing_hash() {
        for bad in [
            "main".to_owned(),
            "main@sha1:abc".to_owned(),
            format!("main@sha256:{SHA}"),
            format!("@sha1:{SHA}"),
            format!("main@sha1:{}", SHA.to_uppercase()),
        ] {
            assert!(bad.parse::<Revision>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn revision_new_lowercases_commit() {
        let r = Revision::new(Some("main"), &SHA.to_uppercase()).unwrap();
        assert_eq!(r.to_string(), format!("main@sha1:{SHA}"));
        assert_eq!(r.short_commit(), "0123456789ab");
    }

    #[test]
    fn digest_parses_sha256_only() {
        let hex = "a".repeat(64);
        let d: Digest = format!("sha256:{hex}").parse().unwrap();
        assert_eq!(d.hex(), hex);
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!(format!("sha512:{hex}").parse::<Digest>().is_err());
        assert!(
            format!("sha256:{}", "A".repeat(64))
                .parse::<Digest>()
                .is_err()
        );
    }

    #[test]
    fn revision_serde_uses_the_string_form() {
        let r: Revision = serde_json::from_str(&format!("\"main@sha1:{SHA}\"")).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            format!("\"main@sha1:{SHA}\"")
        );
        assert!(serde_json::from_str::<Revision>("\"nope\"").is_err());
    }
}
