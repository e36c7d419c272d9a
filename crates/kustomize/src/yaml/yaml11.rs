//! Plain scalars and keys resolved as sigs.k8s.io/yaml's `YAMLToJSON` reads them: go-yaml v2
//! (YAML 1.1: `yes`/`on`/`y` are booleans, base-0 integers, timestamps stay text) followed by
//! Go's JSON encoding (whole floats print as integers, NaN and infinities are refused). This is
//! how Flux reads a manifest back after post-build substitution.

use serde_json::{Number, Value};

/// A plain scalar's value, or why JSON cannot hold it.
pub(crate) fn resolve(text: &str) -> Result<Value, String> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Ok(Value::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Ok(Value::Bool(false));
        }
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF"
        | "-.inf" | "-.Inf" | "-.INF" => {
            return Err(format!("JSON cannot hold the float {text}"));
        }
        _ => {}
    }
    let first = text.as_bytes()[0];
    if first == b'.' {
        return Ok(text
            .parse::<f64>()
            .ok()
            .and_then(json_float)
            .unwrap_or_else(|| Value::String(text.to_owned())));
    }
    if !(first.is_ascii_digit() || first == b'+' || first == b'-') {
        return Ok(Value::String(text.to_owned()));
    }
    // Decoded into `interface{}`, go-yaml v2 keeps a timestamp as its text.
    if super::looks_like_timestamp(text) {
        return Ok(Value::String(text.to_owned()));
    }
    let plain: String = text.chars().filter(|c| *c != '_').collect();
    if let Some(v) = super::go_parse_int(&plain) {
        return Ok(v);
    }
    if super::is_yaml_float(&plain)
        && let Some(v) = plain.parse::<f64>().ok().and_then(json_float)
    {
        return Ok(v);
    }
    Ok(Value::String(text.to_owned()))
}

/// A finite float as Go's `encoding/json` writes it and a JSON reader reads it back: `1000.0`
/// becomes the integer `1000`. `None` for infinities (a parse that overflowed).
fn json_float(f: f64) -> Option<Value> {
    if !f.is_finite() {
        return None;
    }
    let abs = f.abs();
    let text = if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        format!("{f}")
    } else {
        format!("{f:e}")
    };
    serde_json::from_str::<Number>(&text)
        .ok()
        .map(Value::Number)
}

/// A resolved mapping key as sigs.k8s.io/yaml turns it into a JSON object key.
pub(crate) fn key_string(key: &Value) -> Result<String, String> {
    match key {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) if n.is_i64() => Ok(n.to_string()),
        Value::Number(n) if n.is_f64() => Ok(go_float32_g(n.as_f64().unwrap_or_default())),
        Value::Number(n) => Err(format!("unsupported map key of type uint64: {n}")),
        Value::Null => Err("unsupported map key of type <nil>".to_owned()),
        other => Err(format!("unsupported map key: {other}")),
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)`.
fn go_float32_g(f: f64) -> String {
    let f = f as f32;
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{f}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_1_1_booleans_integers_and_floats() {
        for (text, want) in [
            ("yes", json!(true)),
            ("On", json!(true)),
            ("y", json!(true)),
            ("NO", json!(false)),
            ("off", json!(false)),
            ("~", Value::Null),
            ("12", json!(12)),
            ("017", json!(15)),
            ("0o17", json!(15)),
            ("0x1F", json!(31)),
            ("-0b101", json!(-5)),
            ("1_000", json!(1000)),
            ("18446744073709551615", json!(18446744073709551615u64)),
            ("1e3", json!(1000)),
            ("1.0", json!(1)),
            (".5", json!(0.5)),
            ("1.5", json!(1.5)),
            ("2001-12-14", json!("2001-12-14")),
            ("1.2.3", json!("1.2.3")),
            ("1e400", json!("1e400")),
            ("yess", json!("yess")),
        ] {
            assert_eq!(resolve(text).unwrap(), want, "{text}");
        }
        assert!(resolve(".inf").is_err());
        assert!(resolve(".NaN").is_err());
    }

    #[test]
    fn keys_become_strings_as_sigs_yaml_writes_them() {
        assert_eq!(key_string(&json!(true)).unwrap(), "true");
        assert_eq!(key_string(&json!(12)).unwrap(), "12");
        assert_eq!(key_string(&json!(1.5)).unwrap(), "1.5");
        assert_eq!(key_string(&json!(1e7)).unwrap(), "1e+07");
        assert!(key_string(&Value::Null).is_err());
    }
}
