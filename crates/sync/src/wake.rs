//! What woke a pass of a Sync, and whether the pass has anything to look at.
//!
//! kube-runtime merges the requests for one Sync into one pass and keeps their reasons from the
//! reconciler, so each source of requests marks the Sync here as it sends one ([`Wakes::mark`])
//! and the pass takes the marks ([`Wakes::take`]). A pass without a mark was woken by a timer:
//! the look again a pass asked for, or the error policy's retry. `plumb_sync_passes_total`
//! counts the passes by what woke them (`woken_by`) and what they did (`did`).
//!
//! A pass is [redundant] — it returns before it reads or writes anything — when nothing it
//! reads can have changed since the last pass judged the Sync, and no look that pass asked for
//! is due. Two such passes came with every new Sync:
//! - the event of the Sync's own finalizer patch: the pass that sent it went on with the Sync
//!   the API server answered, so it judged that very version;
//! - a timer that a later pass replaced: kube-runtime keeps an object's earliest request, so the
//!   look a held report asked for (`--progress-report-delay`, two seconds) still came after the
//!   pass that wrote Ready, which asked for none before `interval`.
//!
//! Every other source of requests (a Sync's inputs changed, an applied object's watch saw a change
//! a pass reads, a dependency, a Policy, a decryption key) always gets its pass. A failed pass
//! leaves no record, so its retry is never skipped; nor is a pass of a Sync being deleted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;

use crate::sync_view::SyncView;

use crate::deps::Key;

/// The sources of requests that woke a pass, as a set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Woken(u8);

impl Woken {
    /// An input of the Sync changed (spec, labels, annotations, finalizers, deletion, render).
    pub const SYNC: Woken = Woken(1);
    /// An applied object (or one `spec.healthChecks` names) changed in a way a pass reads.
    pub const OBJECT: Woken = Woken(2);
    /// A Sync it depends on changed.
    pub const DEPENDENCY: Woken = Woken(4);
    /// A Policy changed or went.
    pub const POLICY: Woken = Woken(8);
    /// A Secret that may hold its decryption keys changed.
    pub const SECRET: Woken = Woken(16);

    const NAMES: [(Woken, &'static str); 5] = [
        (Self::SYNC, "sync"),
        (Self::OBJECT, "object"),
        (Self::DEPENDENCY, "dependency"),
        (Self::POLICY, "policy"),
        (Self::SECRET, "secret"),
    ];

    /// Whether every source of `other` is in this set.
    pub fn contains(self, other: Woken) -> bool {
        self.0 & other.0 == other.0
    }

    /// The sources, for the metric label: `timer` when there is none, else their names joined
    /// by `+` (`object+sync`).
    pub fn label(self) -> String {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(w, _)| self.contains(*w))
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            "timer".to_owned()
        } else {
            names.join("+")
        }
    }
}

impl std::ops::BitOr for Woken {
    type Output = Woken;

    fn bitor(self, rhs: Woken) -> Woken {
        Woken(self.0 | rhs.0)
    }
}

/// The marks of the requests sent for each Sync since its last pass began.
#[derive(Default)]
pub struct Wakes {
    marks: Mutex<HashMap<Key, Woken>>,
}

impl Wakes {
    /// Marks a request for `sync` from `why`.
    pub fn mark(&self, sync: &ObjectRef<SyncView>, why: Woken) {
        let key = (
            sync.namespace.clone().unwrap_or_default(),
            sync.name.clone(),
        );
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let mark = marks.entry(key).or_default();
        *mark = *mark | why;
    }

    /// The marks of Sync `key`, taken: what woke the pass now beginning.
    pub fn take(&self, key: &Key) -> Woken {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        marks.remove(key).unwrap_or_default()
    }

    /// Forgets the marks of Syncs `keep` rejects (gone: no pass will take them).
    pub fn retain(&self, keep: impl Fn(&Key) -> bool) {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        marks.retain(|k, _| keep(k));
    }
}

/// What the last pass of a Sync judged, kept until the next pass begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    /// The version of the Sync it judged ([`version_of`](crate::signal::version_of)).
    pub version: u64,
    /// When it asked to look again; `None` for not before a change.
    pub due: Option<Instant>,
}

/// How early a timer may come round and still count as the one asked for.
const EARLY: Duration = Duration::from_millis(50);

/// Whether a pass woken by `woken`, reading the Sync at `version`, is redundant after `last`
/// (the last pass, when it succeeded): `Some` with when to look again (as `last` asked), or
/// `None` when the pass must run.
pub fn redundant(
    woken: Woken,
    last: Option<&Judged>,
    version: u64,
    now: Instant,
) -> Option<Option<Duration>> {
    let last = last?;
    if !Woken::SYNC.contains(woken) {
        return None;
    }
    if woken.contains(Woken::SYNC) && version != last.version {
        return None;
    }
    match last.due {
        None => Some(None),
        Some(due) if now + EARLY < due => Some(Some(due - now)),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_every_source_or_a_timer() {
        assert_eq!(Woken::default().label(), "timer");
        assert_eq!((Woken::OBJECT | Woken::SYNC).label(), "sync+object");
        assert_eq!(Woken::SECRET.label(), "secret");
    }

    #[test]
    fn marks_gather_until_a_pass_takes_them() {
        let wakes = Wakes::default();
        let sync = ObjectRef::<SyncView>::new("app").within("team");
        let key = ("team".to_owned(), "app".to_owned());
        wakes.mark(&sync, Woken::OBJECT);
        wakes.mark(&sync, Woken::SYNC);
        assert_eq!(wakes.take(&key), Woken::OBJECT | Woken::SYNC);
        assert_eq!(wakes.take(&key), Woken::default(), "a timer's pass");
        wakes.mark(&sync, Woken::POLICY);
        wakes.retain(|_| false);
        assert_eq!(wakes.take(&key), Woken::default());
    }

    #[test]
    fn only_an_event_of_the_version_judged_or_a_replaced_timer_is_redundant() {
        let now = Instant::now();
        let later = Some(now + Duration::from_secs(600));
        let judged = |due| Judged { version: 7, due };
        type Case = (
            &'static str,
            Woken,
            Option<Judged>,
            u64,
            Option<Option<Duration>>,
        );
        let cases: Vec<Case> = vec![
            ("the first pass", Woken::default(), None, 7, None),
            (
                "its own finalizer patch",
                Woken::SYNC,
                Some(judged(later)),
                7,
                Some(Some(Duration::from_secs(600))),
            ),
            ("a new version", Woken::SYNC, Some(judged(later)), 8, None),
            (
                "a replaced timer",
                Woken::default(),
                Some(judged(later)),
                8,
                Some(Some(Duration::from_secs(600))),
            ),
            (
                "a timer after a pass that awaits a change",
                Woken::default(),
                Some(judged(None)),
                7,
                Some(None),
            ),
            (
                "the timer asked for",
                Woken::default(),
                Some(judged(Some(now))),
                7,
                None,
            ),
            (
                "an object",
                Woken::OBJECT | Woken::SYNC,
                Some(judged(later)),
                7,
                None,
            ),
            (
                "a dependency",
                Woken::DEPENDENCY,
                Some(judged(None)),
                7,
                None,
            ),
            ("a Policy", Woken::POLICY, Some(judged(None)), 7, None),
            ("a key", Woken::SECRET, Some(judged(None)), 7, None),
        ];
        for (what, woken, last, version, want) in cases {
            assert_eq!(
                redundant(woken, last.as_ref(), version, now),
                want,
                "{what}"
            );
        }
    }
}
