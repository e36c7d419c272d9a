//! The sync controller's part of a Sync's status, and the Events of a reconcile, as pure
//! functions of what the reconcile found ([`Outcome`]): [`status_for`] and [`events_for`].

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use plumb_ops::EventType;

use plumb_api::condition::{new_condition, status};
use plumb_api::inventory::InventoryEntry;
use plumb_api::policy::DriftMode;
use plumb_api::reference::Artifact;
use plumb_api::sync::{DriftStatus, ReconcileRecord};
use plumb_api::{ConditionExt, Conditions, Digest, ObjectId, SyncStatus, condition_type, reason};

use crate::error::Error;
use plumb_substitute::SecretValues;

/// How many reconciliations `status.history` keeps.
pub const HISTORY_LENGTH: usize = 5;

/// How a reconcile ended.
#[derive(Debug)]
pub enum Verdict {
    /// `spec.suspend`: nothing was looked at.
    Suspended,
    /// Nothing new could be applied yet (no render, a closed window); `Ready=Unknown`.
    Waiting {
        /// The condition reason.
        reason: &'static str,
        /// What is awaited.
        message: String,
    },
    /// Applied; waiting for the objects to become healthy (`spec.wait`).
    Progressing(String),
    /// Applied (and healthy, when awaited).
    Ready(String),
    /// Failed: retried, or stalled until a person changes something.
    Failed(Error),
}

/// What apply did to drift, for `status.drift` and Events.
#[derive(Debug, Clone, Default)]
pub struct DriftSeen {
    /// Drifted objects re-applied.
    pub corrected: Vec<ObjectId>,
    /// Drifted objects left as they are.
    pub reported: Vec<ObjectId>,
    /// The drift mode in force.
    pub mode: Option<DriftMode>,
}

/// The `Healthy` condition to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// Whether every object is healthy.
    pub healthy: bool,
    /// The condition reason.
    pub reason: &'static str,
    /// Which objects, and why.
    pub message: String,
}

/// What one reconcile found and did.
#[derive(Debug)]
pub struct Outcome {
    /// The Sync's generation.
    pub generation: Option<i64>,
    /// The `plumb.dev/requested-at` value handled.
    pub requested_at: Option<String>,
    /// The rendered artifact tried, if any.
    pub attempted: Option<Artifact>,
    /// Drift seen by apply, when apply ran.
    pub drift: Option<DriftSeen>,
    /// Objects created or changed for the revision.
    pub applied: Vec<ObjectId>,
    /// Objects pruned.
    pub pruned: Vec<ObjectId>,
    /// The new inventory, when it changed.
    pub inventory: Option<Vec<InventoryEntry>>,
    /// Whether the attempted artifact is now applied in full.
    pub landed: bool,
    /// The `Healthy` condition, when health was assessed.
    pub health: Option<HealthReport>,
    /// How it ended.
    pub verdict: Verdict,
    /// When to look again, when sooner than the verdict implies.
    pub requeue: Option<Duration>,
    /// How long the reconcile took.
    pub took: Duration,
    /// A change of `status.pendingPostHooks`: `Some(Some(digest))` when the pre-sync hooks of
    /// that render ran, `Some(None)` once its post-sync hooks ran; `None` leaves it as it is.
    pub post_hooks: Option<Option<Digest>>,
    /// The secret values of the objects applied, masked in every message recorded.
    pub secrets: Arc<SecretValues>,
    /// How long the state the verdict reports has lasted, when it is one on the way to Ready
    /// (waiting for the first render, waiting for health after an apply): see [`report_hold`].
    pub pending_for: Option<Duration>,
}

impl Outcome {
    /// An outcome with nothing done yet and `verdict`.
    pub fn new(generation: Option<i64>, verdict: Verdict) -> Self {
        Self {
            generation,
            requested_at: None,
            attempted: None,
            drift: None,
            applied: Vec::new(),
            pruned: Vec::new(),
            inventory: None,
            landed: false,
            health: None,
            verdict,
            requeue: None,
            took: Duration::ZERO,
            post_hooks: None,
            secrets: Arc::default(),
            pending_for: None,
        }
    }

    /// The message of a failure, as conditions, Events and logs record it: without any secret
    /// value, even one the API server quoted in its error.
    pub fn message_of(&self, e: &Error) -> String {
        self.secrets.scrub(&e.to_string())
    }
}

/// An Event to publish after the status is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub type_: EventType,
    /// The reason, as in conditions.
    pub reason: String,
    /// The message.
    pub message: String,
}

/// The sync controller's status after `outcome`, from `current` (its part of the status).
pub fn status_for(current: &SyncStatus, outcome: &Outcome, now: Timestamp) -> SyncStatus {
    let mut next = current.clone();
    let generation = outcome.generation;
    next.observed_generation = generation;
    if let Some(at) = &outcome.requested_at {
        next.last_handled_reconcile_at = Some(at.clone());
    }
    if let Some(a) = &outcome.attempted {
        next.last_attempted_revision = Some(a.revision.clone());
    }
    if let Some(drift) = &outcome.drift {
        next.drift = drift_status(current.drift.as_ref(), drift, now);
    }
    if let Some(inventory) = &outcome.inventory {
        next.inventory = Some(inventory.clone());
    }
    if outcome.landed
        && let Some(a) = &outcome.attempted
    {
        next.last_applied_revision = Some(a.revision.clone());
        next.last_applied_digest = Some(a.digest.clone());
    }
    if let Some(pending) = &outcome.post_hooks {
        next.pending_post_hooks = pending.clone();
    }
    if let Some(h) = &outcome.health {
        let s = if h.healthy {
            status::TRUE
        } else {
            status::FALSE
        };
        next.conditions.set_condition(new_condition(
            condition_type::HEALTHY,
            s,
            h.reason,
            outcome.secrets.scrub(&h.message),
            generation,
        ));
    }
    let c = &mut next.conditions;
    let result = match &outcome.verdict {
        Verdict::Suspended => None,
        Verdict::Waiting { reason, message } => {
            c.mark_reconciling(reason, message, generation);
            None
        }
        Verdict::Progressing(message) => {
            c.mark_reconciling(reason::PROGRESSING, message, generation);
            None
        }
        Verdict::Ready(message) => {
            c.mark_ready(reason::SUCCEEDED, message, generation);
            Some(reason::SUCCEEDED)
        }
        Verdict::Failed(e) if e.stalls() => {
            c.mark_stalled(e.reason(), &outcome.message_of(e), generation);
            Some(e.reason())
        }
        Verdict::Failed(e) => {
            c.mark_failed(e.reason(), &outcome.message_of(e), generation);
            Some(e.reason())
        }
    };
    if let Some(result) = result {
        record_history(&mut next.history, outcome, result, now);
    }
    next
}

/// How much longer the status report of `outcome` is held back, when it reports a state on the
/// way to Ready that has lasted less than `delay`: a new Sync waiting for its first render
/// (`RenderNotReady`), or objects just applied waiting to become healthy (`Progressing`). Such a
/// state usually ends within a second or two (the render controller publishes; the Deployment's
/// controller reports it available), and a report of it would be a status write that the next
/// one replaces a moment later. Held, the pass writes nothing and looks again when the delay is
/// over; the outcome, whenever it comes, is written at once. A pass that ran pre-sync hooks is
/// never held: their record (`pendingPostHooks`) must reach the status with the apply.
pub fn report_hold(outcome: &Outcome, delay: Duration) -> Option<Duration> {
    let pending = outcome.pending_for?;
    let on_the_way = match &outcome.verdict {
        Verdict::Progressing(_) => true,
        Verdict::Waiting { reason, .. } => *reason == reason::RENDER_NOT_READY,
        _ => false,
    };
    if !on_the_way || outcome.post_hooks.is_some() {
        return None;
    }
    delay.checked_sub(pending).filter(|left| !left.is_zero())
}

/// Adds a record to `history` (newest first) when the result or the artifact changed; a
/// reconcile that ends as the one before writes nothing.
fn record_history(
    history: &mut Vec<ReconcileRecord>,
    outcome: &Outcome,
    result: &str,
    now: Timestamp,
) {
    let digest = outcome.attempted.as_ref().map(|a| a.digest.clone());
    if history
        .first()
        .is_some_and(|r| r.digest == digest && r.result == result)
    {
        return;
    }
    let Ok(duration) = format!("{}ms", outcome.took.as_millis()).parse() else {
        return;
    };
    history.insert(
        0,
        ReconcileRecord {
            revision: outcome.attempted.as_ref().map(|a| a.revision.clone()),
            digest,
            result: result.to_owned(),
            duration,
            time: now,
        },
    );
    history.truncate(HISTORY_LENGTH);
}

fn sorted_ids(ids: &[ObjectId]) -> Vec<String> {
    let mut out: Vec<String> = ids.iter().map(ToString::to_string).collect();
    out.sort();
    out
}

/// `status.drift` after `seen`.
fn drift_status(
    old: Option<&DriftStatus>,
    seen: &DriftSeen,
    now: Timestamp,
) -> Option<DriftStatus> {
    let mut d = old.cloned().unwrap_or_default();
    if !seen.corrected.is_empty() {
        d.corrections += seen.corrected.len() as i64;
        d.last_corrected_at = Some(now);
        d.last_detected_at = Some(now);
    }
    let reported = sorted_ids(&seen.reported);
    if reported != d.objects {
        if !reported.is_empty() {
            d.last_detected_at = Some(now);
        }
        d.objects = reported;
    }
    (old.is_some() || d != DriftStatus::default()).then_some(d)
}

/// The Events of a reconcile that took `current` to `next` with `outcome`: drift corrected or
/// newly seen, a revision applied or objects pruned, and a failure whose message is new.
pub fn events_for(current: &SyncStatus, next: &SyncStatus, outcome: &Outcome) -> Vec<Note> {
    let mut notes = Vec::new();
    let note = |type_, reason: &str, message: String| Note {
        type_,
        reason: reason.to_owned(),
        message,
    };
    if let Some(drift) = &outcome.drift {
        if !drift.corrected.is_empty() {
            let names: Vec<_> = drift.corrected.iter().map(ToString::to_string).collect();
            notes.push(note(
                EventType::Normal,
                "DriftCorrected",
                format!("drift corrected: {}", names.join(", ")),
            ));
        }
        let reported = sorted_ids(&drift.reported);
        let before = current.drift.as_ref().map(|d| d.objects.clone());
        if !reported.is_empty() && before.as_ref() != Some(&reported) {
            notes.push(note(
                EventType::Warning,
                "DriftDetected",
                format!(
                    "drift detected (mode {:?}, not corrected): {}",
                    drift.mode.unwrap_or(DriftMode::Report),
                    reported.join(", ")
                ),
            ));
        }
    }
    if outcome.landed
        && (!outcome.applied.is_empty() || !outcome.pruned.is_empty())
        && let Some(a) = &outcome.attempted
    {
        let mut message = format!("revision {}: {} applied", a.revision, outcome.applied.len());
        if !outcome.pruned.is_empty() {
            let names: Vec<_> = outcome.pruned.iter().map(ToString::to_string).collect();
            message.push_str(&format!(", pruned {}", names.join(", ")));
        }
        notes.push(note(EventType::Normal, reason::SUCCEEDED, message));
    }
    if let Verdict::Failed(e) = &outcome.verdict {
        let before = current.conditions.get_condition(condition_type::READY);
        let after = next.conditions.get_condition(condition_type::READY);
        if before.map(|c| &c.message) != after.map(|c| &c.message) {
            notes.push(note(EventType::Warning, e.reason(), outcome.message_of(e)));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn id(n: &str) -> ObjectId {
        ObjectId::new("ns", n, "", "ConfigMap")
    }

    fn artifact(c: char) -> Artifact {
        serde_json::from_value(json!({
            "revision": format!("main@sha1:{}", c.to_string().repeat(40)),
            "digest": format!("sha256:{}", c.to_string().repeat(64)),
            "url": "http://x/a.tar.gz", "size": 1, "lastUpdateTime": "2026-01-01T00:00:00Z",
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn ready_of(s: &SyncStatus) -> (String, String, String) {
        let c = s.conditions.get_condition(condition_type::READY).unwrap();
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    #[test]
    fn only_a_short_state_on_the_way_to_ready_is_held_back() {
        let delay = Duration::from_secs(2);
        let with = |verdict, pending: Option<u64>| {
            let mut o = Outcome::new(Some(1), verdict);
            o.pending_for = pending.map(Duration::from_millis);
            o
        };
        let progressing = || Verdict::Progressing("waiting for: web".into());
        let waiting = |reason| Verdict::Waiting {
            reason,
            message: "waiting".into(),
        };
        let cases: Vec<(&str, Outcome, Option<u64>)> = vec![
            ("just applied", with(progressing(), Some(0)), Some(2000)),
            (
                "applied a while ago",
                with(progressing(), Some(500)),
                Some(1500),
            ),
            (
                "waited the whole delay",
                with(progressing(), Some(2000)),
                None,
            ),
            ("waited longer", with(progressing(), Some(60_000)), None),
            (
                "a new Sync's first render",
                with(waiting(reason::RENDER_NOT_READY), Some(300)),
                Some(1700),
            ),
            (
                "a closed window is news at once",
                with(waiting(reason::WINDOW_CLOSED), Some(0)),
                None,
            ),
            (
                "the outcome",
                with(Verdict::Ready("ok".into()), Some(0)),
                None,
            ),
            (
                "a failure",
                with(Verdict::Failed(Error::PruneBlocked("empty")), Some(0)),
                None,
            ),
            ("nothing pending", with(progressing(), None), None),
        ];
        for (what, outcome, want) in cases {
            assert_eq!(
                report_hold(&outcome, delay),
                want.map(Duration::from_millis),
                "{what}"
            );
            assert_eq!(
                report_hold(&outcome, Duration::ZERO),
                None,
                "{what}, no delay"
            );
        }
        let mut hooks = with(progressing(), Some(0));
        hooks.post_hooks = Some(Some(artifact('a').digest));
        assert_eq!(report_hold(&hooks, delay), None, "pre-sync hooks ran");
    }

    #[test]
    fn pending_post_hooks_are_recorded_until_they_ran() {
        let mut outcome = Outcome::new(Some(1), Verdict::Progressing("waiting".into()));
        outcome.post_hooks = Some(Some(artifact('a').digest));
        let next = status_for(&SyncStatus::default(), &outcome, now());
        assert_eq!(next.pending_post_hooks, Some(artifact('a').digest));
        // A pass that decides nothing about hooks keeps it.
        let quiet = Outcome::new(Some(1), Verdict::Progressing("waiting".into()));
        let kept = status_for(&next, &quiet, now());
        assert_eq!(kept.pending_post_hooks, Some(artifact('a').digest));
        let mut ran = Outcome::new(Some(1), Verdict::Ready("done".into()));
        ran.post_hooks = Some(None);
        assert_eq!(status_for(&kept, &ran, now()).pending_post_hooks, None);
    }

    #[test]
    fn ready_reflects_each_verdict() {
        type Case<'a> = (&'a str, Verdict, (&'a str, &'a str), Option<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "waiting for the render",
                Verdict::Waiting {
                    reason: reason::RENDER_NOT_READY,
                    message: "waiting".into(),
                },
                ("Unknown", "RenderNotReady"),
                Some("Reconciling"),
            ),
            (
                "applied",
                Verdict::Ready("Applied revision: x".into()),
                ("True", "ReconciliationSucceeded"),
                None,
            ),
            (
                "progressing",
                Verdict::Progressing("waiting for: a".into()),
                ("Unknown", "Progressing"),
                Some("Reconciling"),
            ),
            (
                "first render denied",
                Verdict::Failed(Error::RenderFailed {
                    reason: "PolicyViolation".into(),
                    message: "rule no-latest: team_web_apps_Deployment".into(),
                }),
                ("False", "PolicyViolation"),
                Some("Reconciling"),
            ),
            (
                "cycle",
                Verdict::Failed(Error::DependencyCycle {
                    cycle: "a -> a".into(),
                }),
                ("False", "DependencyNotReady"),
                Some("Stalled"),
            ),
        ];
        for (what, verdict, (st, why), other) in cases {
            let outcome = Outcome::new(Some(3), verdict);
            let next = status_for(&SyncStatus::default(), &outcome, now());
            let (s, r, _) = ready_of(&next);
            assert_eq!((s.as_str(), r.as_str()), (st, why), "{what}");
            for t in ["Reconciling", "Stalled"] {
                assert_eq!(
                    next.conditions.get_condition(t).is_some(),
                    other == Some(t),
                    "{what}: {t}"
                );
            }
            assert_eq!(next.observed_generation, Some(3), "{what}");
        }
    }

    #[test]
    fn a_denied_render_names_the_rule_in_ready() {
        let outcome = Outcome::new(
            Some(1),
            Verdict::Failed(Error::RenderFailed {
                reason: "PolicyViolation".into(),
                message: "policy p: rule no-latest denies team_web_apps_Deployment".into(),
            }),
        );
        let next = status_for(&SyncStatus::default(), &outcome, now());
        let (_, _, message) = ready_of(&next);
        assert!(message.contains("no-latest") && message.contains("team_web_apps_Deployment"));
        let notes = events_for(&SyncStatus::default(), &next, &outcome);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].reason, "PolicyViolation");
        // The same failure again is not announced again.
        assert!(events_for(&next, &status_for(&next, &outcome, now()), &outcome).is_empty());
    }

    #[test]
    fn a_landed_revision_moves_applied_revision_inventory_and_history() {
        let mut outcome = Outcome::new(Some(1), Verdict::Ready("Applied revision: a".into()));
        outcome.attempted = Some(artifact('a'));
        outcome.landed = true;
        outcome.applied = vec![id("a")];
        outcome.pruned = vec![id("old")];
        outcome.inventory = Some(vec![InventoryEntry::new(&id("a"), "v1")]);
        outcome.took = Duration::from_millis(1500);
        let next = status_for(&SyncStatus::default(), &outcome, now());
        assert_eq!(next.last_applied_digest, Some(artifact('a').digest));
        assert_eq!(next.last_attempted_revision, Some(artifact('a').revision));
        assert_eq!(next.inventory.as_ref().unwrap().len(), 1);
        assert_eq!(next.history.len(), 1);
        assert_eq!(next.history[0].result, "ReconciliationSucceeded");
        assert_eq!(next.history[0].duration.get(), Duration::from_millis(1500));
        let notes = events_for(&SyncStatus::default(), &next, &outcome);
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0]
                .message
                .contains("1 applied, pruned ns_old__ConfigMap")
        );

        // A failed attempt of another artifact leaves what was applied as it was.
        let mut failed = Outcome::new(Some(1), Verdict::Failed(Error::PruneBlocked("empty")));
        failed.attempted = Some(artifact('b'));
        let after = status_for(&next, &failed, now());
        assert_eq!(after.last_applied_digest, Some(artifact('a').digest));
        assert_eq!(after.last_attempted_revision, Some(artifact('b').revision));
        assert_eq!(after.history.len(), 2);
        assert_eq!(after.history[0].result, "PruneFailed");
    }

    #[test]
    fn history_records_changes_only_and_keeps_the_last_few() {
        let mut status = SyncStatus::default();
        for (i, c) in "abcdef0".chars().enumerate() {
            let mut o = Outcome::new(Some(1), Verdict::Ready("ok".into()));
            o.attempted = Some(artifact(c));
            status = status_for(&status, &o, now());
            assert_eq!(status.history.len(), (i + 1).min(HISTORY_LENGTH));
            // The same result for the same artifact writes nothing new.
            let again = status_for(&status, &o, now());
            assert_eq!(again, status);
        }
        assert_eq!(status.history[0].digest, Some(artifact('0').digest));
    }

    #[test]
    fn drift_is_counted_announced_once_and_cleared_when_gone() {
        let seen = |corrected: Vec<ObjectId>, reported: Vec<ObjectId>| {
            let mut o = Outcome::new(Some(1), Verdict::Ready("ok".into()));
            o.drift = Some(DriftSeen {
                corrected,
                reported,
                mode: Some(DriftMode::Report),
            });
            o
        };
        let quiet = seen(vec![], vec![]);
        let none = status_for(&SyncStatus::default(), &quiet, now());
        assert!(none.drift.is_none(), "no drift writes no drift status");
        assert!(events_for(&SyncStatus::default(), &none, &quiet).is_empty());

        let corrected = seen(vec![id("a"), id("b")], vec![]);
        let s = status_for(&SyncStatus::default(), &corrected, now());
        assert_eq!(s.drift.as_ref().unwrap().corrections, 2);
        assert!(s.drift.as_ref().unwrap().last_corrected_at.is_some());
        let notes = events_for(&SyncStatus::default(), &s, &corrected);
        assert_eq!(notes[0].reason, "DriftCorrected");

        let reported = seen(vec![], vec![id("a")]);
        let s1 = status_for(&SyncStatus::default(), &reported, now());
        assert_eq!(s1.drift.as_ref().unwrap().objects, ["ns_a__ConfigMap"]);
        assert_eq!(events_for(&SyncStatus::default(), &s1, &reported).len(), 1);
        let s2 = status_for(&s1, &reported, now());
        assert!(
            events_for(&s1, &s2, &reported).is_empty(),
            "announced twice"
        );
        let s3 = status_for(&s2, &quiet, now());
        assert!(s3.drift.unwrap().objects.is_empty());
    }
}
