//! YAML reading and writing matched to what `kubectl kustomize` does: resources are read as go-yaml
//! v3 reads them and printed as sigs.k8s.io/yaml prints JSON (go-yaml v2 rules: sorted keys,
//! quoting of strings that would read back as another type, literal blocks, 80-column folding).

mod emit;
mod parse;
mod yaml11;

pub use emit::{compare_keys, to_yaml_document, write_object};
pub use parse::{ScalarMode, YamlError, check_limits, parse_documents, resolve_plain};
pub(crate) use parse::{charge_copy, with_alias_budget};

use serde_json::{Number, Value};

/// `true` when `s` starts like a go-yaml timestamp (`2006-1-2`, optionally with a time).
pub(crate) fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let mut p = Cursor { b, i: 5 };
    let Some(month) = p.num(2) else { return false };
    if !p.eat(b'-') {
        return false;
    }
    let Some(day) = p.num(2) else { return false };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return false;
    }
    if p.done() {
        return true;
    }
    let zoned = match b[p.i] {
        b'T' | b't' => true,
        b' ' => false,
        _ => return false,
    };
    p.i += 1;
    let Some(h) = p.num(2) else { return false };
    if !p.eat(b':') {
        return false;
    }
    let Some(m) = p.num(2) else { return false };
    if !p.eat(b':') {
        return false;
    }
    let Some(sec) = p.num(2) else { return false };
    if h > 23 || m > 59 || sec > 59 {
        return false;
    }
    if p.i < b.len() && b[p.i] == b'.' && p.i + 1 < b.len() && b[p.i + 1].is_ascii_digit() {
        p.i += 1;
        while p.i < b.len() && b[p.i].is_ascii_digit() {
            p.i += 1;
        }
    }
    if !zoned {
        return p.done();
    }
    if p.eat(b'Z') {
        return p.done();
    }
    if p.eat(b'+') || p.eat(b'-') {
        let ok = p.fixed(2) && p.eat(b':') && p.fixed(2);
        return ok && p.done();
    }
    false
}

/// A go-yaml timestamp as Go's `time.Time` marshals to JSON (RFC 3339 with nanoseconds trimmed).
pub(crate) fn timestamp_rfc3339(s: &str) -> String {
    let b = s.as_bytes();
    let mut p = Cursor { b, i: 5 };
    let year = &s[..4];
    let month = p.num(2).unwrap_or(1);
    p.eat(b'-');
    let day = p.num(2).unwrap_or(1);
    if p.done() {
        return format!("{year}-{month:02}-{day:02}T00:00:00Z");
    }
    p.i += 1;
    let h = p.num(2).unwrap_or(0);
    p.eat(b':');
    let m = p.num(2).unwrap_or(0);
    p.eat(b':');
    let sec = p.num(2).unwrap_or(0);
    let mut frac = String::new();
    if p.eat(b'.') {
        while p.i < b.len() && b[p.i].is_ascii_digit() {
            frac.push(b[p.i] as char);
            p.i += 1;
        }
        frac.truncate(9);
        while frac.ends_with('0') {
            frac.pop();
        }
        if !frac.is_empty() {
            frac.insert(0, '.');
        }
    }
    let zone = match &s[p.i..] {
        "" | "Z" | "+00:00" | "-00:00" => "Z".to_string(),
        z => z.to_string(),
    };
    format!("{year}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}{frac}{zone}")
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn num(&mut self, max: usize) -> Option<u32> {
        let start = self.i;
        let mut v = 0u32;
        while self.i < self.b.len() && self.i - start < max && self.b[self.i].is_ascii_digit() {
            v = v * 10 + u32::from(self.b[self.i] - b'0');
            self.i += 1;
        }
        (self.i > start).then_some(v)
    }
    fn fixed(&mut self, n: usize) -> bool {
        let start = self.i;
        self.num(n).is_some() && self.i - start == n
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.i < self.b.len() && self.b[self.i] == c {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn done(&self) -> bool {
        self.i == self.b.len()
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)` falling back to `ParseUint`, as a JSON number.
pub(crate) fn go_parse_int(s: &str) -> Option<Value> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) =
        if let Some(d) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, d)
        } else if let Some(d) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, d)
        } else if let Some(d) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, d)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        if magnitude <= i64::MAX as u64 + 1 {
            let v = (magnitude as i128).wrapping_neg() as i64;
            return Some(Value::Number(Number::from(v)));
        }
        return None;
    }
    if let Ok(v) = i64::try_from(magnitude) {
        return Some(Value::Number(Number::from(v)));
    }
    Some(Value::Number(Number::from(magnitude)))
}

/// go-yaml's float syntax: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
pub(crate) fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_scalars_resolve_like_go_yaml_v3() {
        assert_eq!(resolve_plain("12"), json!(12));
        assert_eq!(resolve_plain("0x10"), json!(16));
        assert_eq!(resolve_plain("0o17"), json!(15));
        assert_eq!(resolve_plain("1_000"), json!(1000));
        assert_eq!(resolve_plain("1.5"), json!(1.5));
        assert_eq!(resolve_plain("yes"), json!("yes"));
        assert_eq!(resolve_plain("~"), Value::Null);
        assert_eq!(resolve_plain("True"), json!(true));
        assert_eq!(resolve_plain("2001-12-14"), json!("2001-12-14T00:00:00Z"));
        assert_eq!(
            resolve_plain("2001-12-14t21:59:43.10-05:00"),
            json!("2001-12-14T21:59:43.1-05:00")
        );
        assert_eq!(resolve_plain("1.2.3"), json!("1.2.3"));
    }

    #[test]
    fn timestamps_are_recognised() {
        assert!(looks_like_timestamp("2001-12-14"));
        assert!(looks_like_timestamp("2001-12-14T21:59:43.10Z"));
        assert!(looks_like_timestamp("2001-1-4 1:59:43"));
        assert!(!looks_like_timestamp("2001-12-14x"));
        assert!(!looks_like_timestamp("20011-12-14"));
    }
}
