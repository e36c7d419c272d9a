//! Kubernetes Events about the objects a controller reconciles. Events are best effort: a
//! failure to record one is logged and never fails a reconcile.
//!
//! kube's [`Recorder`] keeps every Event it published for six minutes, to count a repeat into
//! the first one's series instead of creating another Event: a Sync reconciled once leaves about
//! 2.7 KB behind (measured with heaptrack at 300 Syncs), so thousands of Syncs made ready at once
//! cost megabytes. [`EventRecorder`] bounds that record to [`RECORD_LIMIT`] Events by starting a
//! fresh recorder once that many were published; a repeat after a fresh start becomes an Event
//! of its own, as it would after six minutes.
//!
//! The record is a hash table holding each Event whole (over a kilobyte apiece): at 256 Events
//! it had grown to 512 slots, 721 KiB of the sync controller's heap at 1000 Syncs (heaptrack);
//! [`RECORD_LIMIT`] is the most a table of 128 slots holds.

use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, Recorder, Reporter};

pub use kube::runtime::events::EventType;

/// Events published into one recorder's record before a fresh recorder takes over: 112, the
/// most a hash table of 128 slots holds (seven in eight full) before it doubles.
pub const RECORD_LIMIT: usize = 112;

/// The longest note the API server accepts, in bytes.
const NOTE_LIMIT: usize = 1024;

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// Records Events as one controller (`reportingController` = its name).
#[derive(Clone)]
pub struct EventRecorder {
    client: kube::Client,
    reporter: Reporter,
    current: Arc<Mutex<Current>>,
}

/// The recorder in use and how many Events it published.
struct Current {
    recorder: Recorder,
    published: usize,
    /// Fresh recorders started so far.
    generation: u64,
}

impl EventRecorder {
    /// A recorder for the controller named `controller` (e.g. `plumb-source`); `instance`
    /// distinguishes replicas (usually the pod name).
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: controller.to_owned(),
            instance,
        };
        let current = Current {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            published: 0,
            generation: 0,
        };
        Self {
            client,
            reporter,
            current: Arc::new(Mutex::new(current)),
        }
    }

    /// The recorder for the next Event: the current one, or a fresh one (with an empty record)
    /// once the current one published [`RECORD_LIMIT`] Events.
    fn recorder(&self) -> Recorder {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.published >= RECORD_LIMIT {
            current.recorder = Recorder::new(self.client.clone(), self.reporter.clone());
            current.published = 0;
            current.generation += 1;
        }
        current.published += 1;
        current.recorder.clone()
    }

    /// Records a Normal event (`reason` in PascalCase, `note` for people).
    pub async fn normal<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        self.publish(obj, EventType::Normal, reason, action, note)
            .await;
    }

    /// Records a Warning event.
    pub async fn warning<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        self.publish(obj, EventType::Warning, reason, action, note)
            .await;
    }

    /// Records an event of `type_`; `note` is cut to the API's 1 kB limit.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        self.publish_ref(&obj.object_ref(&()), type_, reason, action, note)
            .await;
    }

    /// Records an event about the object `regarding` refers to, for an object no longer at
    /// hand (e.g. one already gone from the cache).
    pub async fn publish_ref(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(note, NOTE_LIMIT).to_owned()),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder().publish(&event, regarding).await {
            tracing::warn!(error = %e, reason, "recording event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fresh_recorder_takes_over_after_the_record_limit() {
        // A client that is never used to connect: only the recorder's bookkeeping is tested.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let events = EventRecorder::new(client, "plumb-test", None);
        let generation = || events.current.lock().unwrap().generation;
        for _ in 0..RECORD_LIMIT {
            let _ = events.recorder();
        }
        assert_eq!(
            generation(),
            0,
            "the first {RECORD_LIMIT} Events share one record"
        );
        let _ = events.recorder();
        assert_eq!(generation(), 1);
        assert_eq!(events.current.lock().unwrap().published, 1);
        let copy = events.clone();
        for _ in 0..RECORD_LIMIT {
            let _ = copy.recorder();
        }
        assert_eq!(generation(), 2, "clones share the count");
    }

    #[test]
    fn notes_are_cut_to_the_byte_limit_on_a_character_boundary() {
        assert_eq!(truncate("short", 1024), "short");
        let long = "é".repeat(600);
        let cut = truncate(&long, NOTE_LIMIT);
        assert_eq!(cut.len(), 1024);
        let odd = format!("a{long}");
        assert_eq!(truncate(&odd, NOTE_LIMIT).len(), 1023);
    }
}
