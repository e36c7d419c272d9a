//! Passes that come back after a long while — an object's `interval`, minutes to hours — kept
//! in one compact table instead of kube-runtime's scheduler.
//!
//! kube-runtime keeps every requeue in its scheduler: the object's reference twice (in a delay
//! queue and in a map, each with the name, namespace, uid and resourceVersion as strings) and
//! the queue's and map's slots, about 0.47 KiB per object, held for every object of a fleet
//! that is Ready and waits for its next periodic pass. [`Periodic`] keeps one `namespace/name`
//! string and one instant per object, and a single task wakes the controller's reconciles when
//! they are due (through `Controller::reconcile_on`), within a [`GRAIN`] of the time asked.
//!
//! Requeues shorter than the table's threshold ([`LONG`] in the controllers) stay with
//! kube-runtime, to the millisecond: retries after failures, health checks due soon, a pass
//! waiting for caches. Each object has at most one entry: a pass that ends replaces what the
//! pass before it asked (so the periodic pass comes an `interval` after the last pass, as
//! Flux's do), and a pass that asks for a short requeue or none removes it. The entry of an
//! object deleted stays until it comes due (one interval at most): its trigger then finds no
//! object in the controller's cache and starts nothing.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{Lookup, ObjectRef};
use tokio::time::Instant;

/// Requeues at least this long go to the table; shorter ones to kube-runtime's scheduler.
pub const LONG: Duration = Duration::from_secs(30);

/// Due passes are woken together within this much of each other.
pub const GRAIN: Duration = Duration::from_secs(1);

/// When each object's next periodic pass is due (see the module docs).
pub struct Periodic<K> {
    /// Requeues at least this long are kept here.
    long: Duration,
    /// `namespace/name` (or `name` of a cluster-scoped object) → when its pass is due.
    due: Mutex<HashMap<Box<str>, Instant>>,
    kind: PhantomData<fn() -> K>,
}

impl<K> std::fmt::Debug for Periodic<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Periodic")
            .field("long", &self.long)
            .field("kept", &self.table().len())
            .finish()
    }
}

impl<K> Periodic<K> {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Instant>> {
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A compact key for the object `r` refers to: `<namespace>/<name>` (or the name of a
/// cluster-scoped object) in one allocation of its own length, where an `ObjectRef` takes 96
/// bytes inline plus a string each for name, namespace, uid and resourceVersion. For per-object
/// tables that outlive a reconcile (the periodic table, the render controller's records).
pub fn key_of<K: Lookup>(r: &ObjectRef<K>) -> Box<str> {
    match &r.namespace {
        Some(ns) => format!("{ns}/{}", r.name).into_boxed_str(),
        None => r.name.clone().into_boxed_str(),
    }
}

/// The reference a [key](key_of) names (without uid or resourceVersion, which the scheduler
/// ignores).
pub fn ref_of<K>(key: &str) -> ObjectRef<K>
where
    K: Lookup,
    K::DynamicType: Default,
{
    // Neither a namespace nor these objects' names hold a `/`.
    match key.split_once('/') {
        Some((ns, name)) => ObjectRef::new(name).within(ns),
        None => ObjectRef::new(key),
    }
}

impl<K> Periodic<K>
where
    K: Lookup,
    K::DynamicType: Default,
{
    /// A table for requeues of at least `long`.
    pub fn new(long: Duration) -> Arc<Self> {
        Arc::new(Self {
            long,
            due: Mutex::new(HashMap::new()),
            kind: PhantomData,
        })
    }

    /// What the controller does after a pass over `obj` that asks to look again `after` (none:
    /// only on a change): a long requeue is kept here and the controller awaits a change; a
    /// short one goes to kube-runtime. Either way it replaces what was kept for `obj`.
    pub fn action(&self, obj: &ObjectRef<K>, after: Option<Duration>) -> Action {
        let key = key_of(obj);
        match after {
            Some(d) if d >= self.long => {
                self.table().insert(key, Instant::now() + d);
                Action::await_change()
            }
            other => {
                self.forget_key(&key);
                other.map_or_else(Action::await_change, Action::requeue)
            }
        }
    }

    /// Forgets `obj`'s next pass (it is gone).
    pub fn forget(&self, obj: &ObjectRef<K>) {
        self.forget_key(&key_of(obj));
    }

    fn forget_key(&self, key: &str) {
        let mut table = self.table();
        if table.remove(key).is_some() && table.len() * 4 < table.capacity() {
            // A fleet that shrank gives its slots back.
            table.shrink_to_fit();
        }
    }

    /// How many objects have a pass kept here.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether none has.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When `obj`'s next pass is due, if one is kept here.
    pub fn due(&self, obj: &ObjectRef<K>) -> Option<Instant> {
        self.table().get(&*key_of(obj)).copied()
    }

    /// Takes the passes due by `now`; returns them and when to look again: at the earliest
    /// pass still kept, but no later than `long` from now (a pass kept after this call is due
    /// no sooner than that) and no sooner than [`GRAIN`].
    fn take_due(&self, now: Instant) -> (Vec<ObjectRef<K>>, Instant) {
        let mut table = self.table();
        let mut next = now + self.long;
        let mut due = Vec::new();
        table.retain(|key, at| {
            if *at <= now {
                due.push(ref_of(key));
                false
            } else {
                next = next.min(*at);
                true
            }
        });
        (due, next.max(now + GRAIN))
    }

    /// The objects whose passes come due, as they do: give it to `Controller::reconcile_on`.
    pub fn triggers(self: Arc<Self>) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
    where
        K: 'static,
        K::DynamicType: Send,
    {
        let state = (self, Vec::new());
        futures::stream::unfold(state, |(table, mut ready)| async move {
            loop {
                if let Some(r) = ready.pop() {
                    return Some((r, (table, ready)));
                }
                let (due, next) = table.take_due(Instant::now());
                if due.is_empty() {
                    tokio::time::sleep_until(next).await;
                } else {
                    ready = due;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(ns: &str, name: &str) -> ObjectRef<ConfigMap> {
        ObjectRef::new(name).within(ns)
    }

    #[tokio::test(start_paused = true)]
    async fn long_requeues_are_kept_and_short_ones_left_to_kube_runtime() {
        let p = Periodic::<ConfigMap>::new(LONG);
        let a = cm("team", "a");
        assert_eq!(
            p.action(&a, Some(Duration::from_secs(600))),
            Action::await_change()
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p.due(&a), Some(Instant::now() + Duration::from_secs(600)));
        // A later pass replaces the kept one.
        tokio::time::advance(Duration::from_secs(10)).await;
        p.action(&a, Some(Duration::from_secs(600)));
        assert_eq!(p.due(&a), Some(Instant::now() + Duration::from_secs(600)));
        assert_eq!(p.len(), 1);
        // A short requeue goes to kube-runtime and removes the kept pass; so does none.
        assert_eq!(
            p.action(&a, Some(Duration::from_secs(5))),
            Action::requeue(Duration::from_secs(5))
        );
        assert!(p.is_empty());
        p.action(&a, Some(LONG));
        assert_eq!(p.action(&a, None), Action::await_change());
        assert!(p.is_empty());
        p.action(&a, Some(LONG));
        p.forget(&a);
        assert!(p.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn due_passes_are_triggered_in_time_and_once() {
        let p = Periodic::<ConfigMap>::new(LONG);
        let start = Instant::now();
        p.action(&cm("team", "late"), Some(Duration::from_secs(120)));
        p.action(&cm("team", "soon"), Some(Duration::from_secs(40)));
        p.action(&cm("other", "soon"), Some(Duration::from_secs(40)));
        let mut triggers = Box::pin(p.clone().triggers());
        let mut first = vec![
            triggers.next().await.unwrap(),
            triggers.next().await.unwrap(),
        ];
        let woke = Instant::now() - start;
        assert!(
            woke >= Duration::from_secs(40) && woke < Duration::from_secs(40) + GRAIN,
            "woke after {woke:?}"
        );
        first.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        assert_eq!(first, vec![cm("other", "soon"), cm("team", "soon")]);
        assert_eq!(p.len(), 1);
        // A pass kept while the task sleeps is not missed.
        p.action(&cm("team", "new"), Some(Duration::from_secs(30)));
        assert_eq!(triggers.next().await.unwrap(), cm("team", "new"));
        let woke = Instant::now() - start;
        assert!(woke >= Duration::from_secs(70) && woke < Duration::from_secs(70) + GRAIN);
        assert_eq!(triggers.next().await.unwrap(), cm("team", "late"));
        let woke = Instant::now() - start;
        assert!(woke >= Duration::from_secs(120) && woke < Duration::from_secs(120) + GRAIN);
        assert!(p.is_empty());
        // Nothing kept: the stream waits.
        let quiet = tokio::time::timeout(Duration::from_secs(3600), triggers.next()).await;
        assert!(quiet.is_err());
    }

    #[test]
    fn keys_round_trip_for_namespaced_and_cluster_objects() {
        let r = cm("team-a", "web");
        assert_eq!(ref_of::<ConfigMap>(&key_of(&r)), r);
        let c: ObjectRef<ConfigMap> = ObjectRef::new("cluster-wide");
        assert_eq!(ref_of::<ConfigMap>(&key_of(&c)), c);
    }
}
