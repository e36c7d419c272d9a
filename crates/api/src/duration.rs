//! [`Duration`]: a Go-style duration string such as `30s`, `1m30s` or `1.5h`, as Flux users write it.
//!
//! Every duration a user sets is clamped to [`MAX_DURATION`] when it is parsed, so no value a
//! tenant writes can overflow deadline arithmetic (`Instant + timeout`) in a controller: the
//! schema pattern admits `3000000000000000h`, and before the clamp that panicked a reconcile.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The schema pattern every duration field is validated against by the API server.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// The longest duration plumb honours: 30 days. Longer values (up to any number of digits the
/// schema admits) are read as this, so `Instant::now() + d` and timers never overflow.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "duration {0:?}: expected a sequence of <number><unit> with unit ms, s, m or h, e.g. 1m30s"
)]
pub struct ParseDurationError(String);

/// A length of time written the way Kubernetes and Flux users write it (`10m`, `1h30m`, `500ms`).
///
/// The text is kept as written so that it round-trips unchanged; comparisons use the value, which
/// is clamped to [`MAX_DURATION`].
#[derive(Debug, Clone)]
pub struct Duration {
    text: String,
    value: std::time::Duration,
}

impl Duration {
    /// The length of time this duration stands for.
    pub fn get(&self) -> std::time::Duration {
        self.value
    }

    /// A duration of `secs` seconds, written as `<secs>s` (clamped to [`MAX_DURATION`]).
    pub fn from_secs(secs: u64) -> Self {
        Self {
            text: format!("{secs}s"),
            value: std::time::Duration::from_secs(secs).min(MAX_DURATION),
        }
    }

    /// Whether the written value was longer than [`MAX_DURATION`] and is read as it.
    pub fn is_clamped(&self) -> bool {
        self.value == MAX_DURATION
            && self
                .text
                .parse::<Unclamped>()
                .is_ok_and(|u| u.0 > MAX_DURATION.as_secs_f64())
    }
}

impl PartialEq for Duration {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for Duration {}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.value
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The written value in seconds before clamping (possibly infinite for absurd digit runs).
struct Unclamped(f64);

impl FromStr for Unclamped {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseDurationError(s.to_owned());
        if s.is_empty() {
            return Err(err());
        }
        let mut total = 0f64;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(err)?;
            let (num, after) = rest.split_at(num_len);
            if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
                return Err(err());
            }
            let n: f64 = num.parse().map_err(|_| err())?;
            let (unit_secs, unit_len) = if after.starts_with("ms") {
                (0.001, 2)
            } else if after.starts_with('s') {
                (1.0, 1)
            } else if after.starts_with('m') {
                (60.0, 1)
            } else if after.starts_with('h') {
                (3600.0, 1)
            } else {
                return Err(err());
            };
            total += n * unit_secs;
            rest = &after[unit_len..];
        }
        Ok(Unclamped(total))
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Unclamped(secs) = s.parse()?;
        // NaN cannot occur (no negative or NaN literals pass the grammar); +inf and anything
        // past the cap become the cap.
        let value = if secs >= MAX_DURATION.as_secs_f64() {
            MAX_DURATION
        } else {
            std::time::Duration::try_from_secs_f64(secs).unwrap_or(MAX_DURATION)
        };
        Ok(Self {
            text: s.to_owned(),
            value,
        })
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    #[test]
    fn parses_units_and_sums_compound_durations() {
        let cases = [
            ("500ms", Std::from_millis(500)),
            ("30s", Std::from_secs(30)),
            ("10m", Std::from_secs(600)),
            ("1h30m", Std::from_secs(5400)),
            ("1.5h", Std::from_secs(5400)),
            ("1m0s", Std::from_secs(60)),
        ];
        for (text, want) in cases {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.get(), want, "{text}");
            assert_eq!(d.to_string(), text);
        }
    }

    #[test]
    fn rejects_what_the_schema_pattern_rejects() {
        for bad in ["", "10", "m", "10d", "1.m", ".5s", "-1s", "1 m", "10mss"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn huge_values_are_clamped_so_deadline_arithmetic_cannot_overflow() {
        let digits = format!("{}h", "9".repeat(400));
        for text in [
            "3000000000000000h",
            "720h1ms",
            digits.as_str(),
            "99999999999999999999ms",
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.get(), MAX_DURATION, "{text}");
            assert!(d.is_clamped(), "{text}");
            assert_eq!(d.to_string(), text, "the text is kept as written");
            assert!(std::time::Instant::now().checked_add(d.get()).is_some());
        }
        let month: Duration = "720h".parse().unwrap();
        assert_eq!(month.get(), MAX_DURATION);
        assert!(!month.is_clamped());
        assert!(!"10m".parse::<Duration>().unwrap().is_clamped());
        assert_eq!(Duration::from_secs(u64::MAX).get(), MAX_DURATION);
    }

    #[test]
    fn deserializing_a_huge_value_succeeds_clamped() {
        let d: Duration = serde_json::from_str("\"3000000000000000h\"").unwrap();
        assert_eq!(d.get(), MAX_DURATION);
    }

    #[test]
    fn equality_compares_values_not_text() {
        assert_eq!(
            "60s".parse::<Duration>().unwrap(),
            "1m".parse::<Duration>().unwrap()
        );
    }
}
