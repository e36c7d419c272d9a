//! Kubernetes Events about the objects a controller reconciles. Events are best effort: a
//! failure to record one is logged and never fails a reconcile.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, Recorder, Reporter};

pub use kube::runtime::events::EventType;

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
    recorder: Recorder,
}

impl EventRecorder {
    /// A recorder for the controller named `controller` (e.g. `plumb-source`); `instance`
    /// distinguishes replicas (usually the pod name).
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: controller.to_owned(),
            instance,
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
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
        if let Err(e) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(error = %e, reason, "recording event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
