//! The document model SOPS encrypts: ordered mappings, lists and typed scalars, plus the comments
//! of the line-based formats (dotenv, INI) that their plaintext output keeps.

/// A key of a mapping entry: a name, or a comment line standing between entries.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    /// An ordinary key.
    Name(String),
    /// A comment line (dotenv and INI keep them; SOPS encrypts them but leaves them out of the MAC).
    Comment(String),
}

/// One entry of a mapping, in document order.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The entry's key.
    pub key: Key,
    /// The entry's value ([`Node::Null`] for a comment).
    pub value: Node,
}

/// A value of a SOPS document.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A mapping, in document order (SOPS's MAC depends on the order).
    Map(Vec<Item>),
    /// A list.
    List(Vec<Node>),
    /// A leaf value.
    Scalar(Scalar),
    /// `null`: never encrypted and left out of the MAC.
    Null,
}

/// A leaf value with the type SOPS records in `ENC[...,type:...]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// `type:str`.
    Str(String),
    /// `type:int`.
    Int(i64),
    /// `type:float`.
    Float(f64),
    /// `type:bool`.
    Bool(bool),
    /// `type:bytes`.
    Bytes(Vec<u8>),
    /// `type:time`, kept as the RFC 3339 text SOPS encrypted.
    Time(String),
}

impl Scalar {
    /// The bytes SOPS feeds its MAC for this value (Go's `sops.ToBytes`).
    pub fn mac_bytes(&self) -> Vec<u8> {
        match self {
            Scalar::Str(s) | Scalar::Time(s) => s.as_bytes().to_vec(),
            Scalar::Int(i) => i.to_string().into_bytes(),
            Scalar::Float(f) => go_float(*f).into_bytes(),
            Scalar::Bool(true) => b"True".to_vec(),
            Scalar::Bool(false) => b"False".to_vec(),
            Scalar::Bytes(b) => b.clone(),
        }
    }

    /// The value as text for the line formats (Go's `stores.ValToString`).
    pub fn to_text(&self) -> String {
        match self {
            Scalar::Str(s) | Scalar::Time(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => {
                let s = go_float(*f);
                if s.contains('.') || !f.is_finite() {
                    s
                } else {
                    format!("{s}.0")
                }
            }
            Scalar::Bool(b) => b.to_string(),
            Scalar::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest decimal that reads back as `f`,
/// never in exponent form. Rust's `Display` for `f64` has the same contract for finite values.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_bytes_follow_go_formatting() {
        assert_eq!(Scalar::Bool(true).mac_bytes(), b"True");
        assert_eq!(Scalar::Int(-42).mac_bytes(), b"-42");
        assert_eq!(Scalar::Float(1.0).mac_bytes(), b"1");
        assert_eq!(Scalar::Float(0.1).mac_bytes(), b"0.1");
        assert_eq!(Scalar::Float(1e21).mac_bytes(), b"1000000000000000000000");
        assert_eq!(Scalar::Float(f64::INFINITY).mac_bytes(), b"+Inf");
    }

    #[test]
    fn floats_as_text_keep_a_decimal_point() {
        assert_eq!(Scalar::Float(2.0).to_text(), "2.0");
        assert_eq!(Scalar::Float(2.5).to_text(), "2.5");
    }
}
