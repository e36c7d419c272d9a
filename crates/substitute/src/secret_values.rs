//! The secret values of a render — SOPS plaintext and values substituted from `substituteFrom`
//! Secrets — and their removal from the texts a controller records. An API server that rejects
//! an object may quote the value it rejects (`metadata.labels: Invalid value: "...": a valid
//! label must ...`, an admission webhook's message), and a Policy's CEL expression that fails
//! over a substituted value may quote it (`String("...") can not be compared to Int(5)`); such
//! an error becomes the Sync's condition, an Event and a log line, so every failure message is
//! scrubbed of the values first (by the sync controller's `status.rs` for apply errors, by the
//! render controller's for render and Policy errors).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// What replaces a secret value in a message.
pub const MASK: &str = "***";

/// Values shorter than this (in bytes) are masked only where they stand alone, between
/// characters that cannot be part of a word, a number or a name (not letters, digits, `.`, `-`
/// or `_`): masking every `a` or `7` inside the words and versions of a message would make it
/// unreadable, and a value this short guards nothing by itself.
const SHORT: usize = 4;

/// The secret values of one render, in every form an API error may quote them in.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SecretValues {
    forms: Vec<String>,
}

impl SecretValues {
    /// Adds a value (empty ones are ignored).
    pub fn add(&mut self, value: &str) {
        if value.is_empty() {
            return;
        }
        for form in forms(value) {
            if !self.forms.contains(&form) {
                self.forms.push(form);
            }
        }
    }

    /// Whether no value was added.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// `text` with every occurrence of a value, in any of its forms, replaced by [`MASK`].
    pub fn scrub(&self, text: &str) -> String {
        if self.forms.is_empty() {
            return text.to_owned();
        }
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for form in &self.forms {
            let alone = form.len() < SHORT;
            for (start, _) in text.match_indices(form.as_str()) {
                let end = start + form.len();
                if alone
                    && !(boundary(text[..start].chars().next_back())
                        && boundary(text[end..].chars().next()))
                {
                    continue;
                }
                spans.push((start, end));
            }
        }
        if spans.is_empty() {
            return text.to_owned();
        }
        // Overlapping forms (a value and its quoted form) become one mask.
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in spans {
            if end <= at {
                continue;
            }
            if start >= at {
                out.push_str(&text[at..start]);
                out.push_str(MASK);
            }
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }
}

fn boundary(c: Option<char>) -> bool {
    c.is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '.' | '-' | '_')))
}

/// The forms a value takes in errors: as it is, base64 (a Secret's `data`), quoted as Go's `%q`
/// and `encoding/json` quote it (the API server's field errors use both) and as Rust's `{:?}`
/// does (CEL's evaluation errors), without the quotes; and each line of a multi-line value, for
/// messages that quote only part of it.
fn forms(value: &str) -> Vec<String> {
    let mut out = vec![value.to_owned(), STANDARD.encode(value)];
    out.push(go_quoted(value));
    out.push(rust_quoted(value));
    out.push(json_quoted(value, false));
    out.push(json_quoted(value, true));
    if value.contains('\n') {
        out.extend(
            value
                .lines()
                .map(str::trim)
                .filter(|l| l.len() >= 2 * SHORT)
                .map(str::to_owned),
        );
    }
    out.sort();
    out.dedup();
    out
}

/// The inside of Go's `strconv.Quote(value)`.
fn go_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// The inside of Rust's `format!("{value:?}")`.
fn rust_quoted(value: &str) -> String {
    let quoted = format!("{value:?}");
    quoted[1..quoted.len() - 1].to_owned()
}

/// The inside of a JSON string holding `value`; with `html`, as Go's `encoding/json` writes it
/// (`<`, `>`, `&`, U+2028 and U+2029 escaped).
fn json_quoted(value: &str, html: bool) -> String {
    let quoted = serde_json::Value::String(value.to_owned()).to_string();
    let inner = &quoted[1..quoted.len() - 1];
    if !html {
        return inner.to_owned();
    }
    let mut out = String::with_capacity(inner.len());
    for c in inner.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(vs: &[&str]) -> SecretValues {
        let mut s = SecretValues::default();
        for v in vs {
            s.add(v);
        }
        s
    }

    #[test]
    fn a_value_quoted_by_the_api_server_is_masked_in_every_form() {
        let s = values(&["s3cret value!", "line one\n\"two\"\tthree & <four>"]);
        // As kube-apiserver's field errors print a rejected label value (Go %q).
        let label = r#"Secret "db" is invalid: metadata.labels: Invalid value: "s3cret value!": a valid label must be an empty string or consist of alphanumeric characters"#;
        let out = s.scrub(label);
        assert_eq!(
            out,
            r#"Secret "db" is invalid: metadata.labels: Invalid value: "***": a valid label must be an empty string or consist of alphanumeric characters"#
        );
        for text in [
            r#"Invalid value: "line one\n\"two\"\tthree & <four>""#,
            r#"Invalid value: {"k":"line one\n\"two\"\tthree \u0026 \u003cfour\u003e"}"#,
            "data: bGluZSBvbmUKInR3byIJdGhyZWUgJiA8Zm91cj4=",
            "rejected: line one",
        ] {
            let out = s.scrub(text);
            assert!(!out.contains("line one") && !out.contains("four"), "{out}");
            assert!(out.contains(MASK), "{out}");
        }
        let b64 = STANDARD.encode("s3cret value!");
        assert_eq!(s.scrub(&format!("data.x: {b64}")), "data.x: ***");
    }

    #[test]
    fn short_values_are_masked_only_where_they_stand_alone() {
        let s = values(&["on", "abc"]);
        assert_eq!(
            s.scrub("Invalid value: \"on\": a valid label must be one of ..."),
            "Invalid value: \"***\": a valid label must be one of ..."
        );
        assert_eq!(s.scrub("abcdef: not found, abc"), "abcdef: not found, ***");
        assert_eq!(s.scrub("v1.on-abc_x: on"), "v1.on-abc_x: ***");
    }

    #[test]
    fn overlapping_values_become_one_mask_and_other_text_stays() {
        let s = values(&["hunter2", "hunter2-token"]);
        assert_eq!(
            s.scrub("token hunter2-token and hunter2; done"),
            "token *** and ***; done"
        );
        assert_eq!(s.scrub("nothing secret"), "nothing secret");
        assert_eq!(SecretValues::default().scrub("hunter2"), "hunter2");
        let mut empty = SecretValues::default();
        empty.add("");
        assert!(empty.is_empty());
    }

    #[test]
    fn a_value_a_cel_error_quotes_is_masked() {
        // cel's `ValuesNotComparable` prints both values with `{:?}`; Rust escapes a control
        // character as `\u{1}` where Go writes `\x01`.
        let value = "tok\u{1}en \"q\"";
        let s = values(&[value]);
        let cel = format!("{:?} can not be compared to {:?}", value, 5);
        assert_eq!(s.scrub(&cel), "\"***\" can not be compared to 5");
    }

    #[test]
    fn go_quoting_matches_strconv_quote() {
        assert_eq!(
            go_quoted("a\"b\\c\n\u{1}\u{7f}é"),
            "a\\\"b\\\\c\\n\\x01\\x7fé"
        );
    }
}
