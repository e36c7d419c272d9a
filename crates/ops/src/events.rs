//! Kubernetes Events about the objects a controller reconciles. Events are best effort: a
//! failure to record one is logged and never fails a reconcile.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

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

    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.chars().take(1024).collect()),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "recording event failed");
        }
    }
}
