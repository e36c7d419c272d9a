//! Retrying after failures: exponential backoff per object, as Flux's `--min-retry-delay` /
//! `--max-retry-delay` do it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

/// The delay after `failures` consecutive failures: `base` doubled per failure after the
/// first, at most `max`.
pub fn backoff(base: Duration, failures: u32, max: Duration) -> Duration {
    base.saturating_mul(1u32 << failures.clamp(1, 21).saturating_sub(1))
        .min(max)
}

/// Consecutive failures per object, for [`backoff`].
#[derive(Debug)]
pub struct Failures<K>(Mutex<HashMap<K, u32>>);

impl<K> Default for Failures<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + Hash> Failures<K> {
    /// Counts one more failure of `key`; returns how many in a row.
    pub fn record(&self, key: K) -> u32 {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Forgets the failures of `key` (it succeeded).
    pub fn clear(&self, key: &K) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Keeps only the keys `keep` accepts (e.g. objects that still exist).
    pub fn retain(&self, mut keep: impl FnMut(&K) -> bool) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let base = Duration::from_millis(750);
        let cap = Duration::from_secs(900);
        assert_eq!(backoff(base, 0, cap), base);
        assert_eq!(backoff(base, 1, cap), base);
        assert_eq!(backoff(base, 2, cap), Duration::from_millis(1500));
        assert_eq!(backoff(base, 5, cap), Duration::from_secs(12));
        assert_eq!(backoff(base, 30, cap), cap);
        assert_eq!(backoff(base, u32::MAX, cap), cap);
        let two = Duration::from_secs(2);
        assert_eq!(
            backoff(two, 3, Duration::from_secs(60)),
            Duration::from_secs(8)
        );
    }

    #[test]
    fn failures_count_in_a_row_until_cleared() {
        let f = Failures::default();
        assert_eq!(f.record("a"), 1);
        assert_eq!(f.record("a"), 2);
        assert_eq!(f.record("b"), 1);
        f.clear(&"a");
        assert_eq!(f.record("a"), 1);
        f.retain(|k| *k == "a");
        assert_eq!(f.record("b"), 1);
    }
}
