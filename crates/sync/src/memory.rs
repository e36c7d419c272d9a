//! What the sync controller remembers about each Sync between reconciles, and its one owner.
//!
//! # Restart story
//!
//! Everything here is a cache of what the cluster already says; the Sync's status (inventory,
//! last applied revision and digest) is the record that counts. On a restart or a leader change
//! all of it is lost, and that is safe:
//!
//! - **The fetched artifact** is downloaded again by digest on the next pass. While a window or a
//!   dependency holds a new revision back, the revision applied before can be healed only if the
//!   render still points at it; otherwise healing waits until the hold ends (nothing wrong is
//!   applied, drift is only healed later).
//! - **Intents** (what was applied, normalized by the server): the first look at an object after a
//!   restart reads it and, if it differs, asks the server for its normal form with a dry run before
//!   calling it drift. That costs requests, never a wrong apply.
//! - **When the last full pass ran**: the first pass after a start is a full one, which is what
//!   the safety net is for.
//! - **Since when health has been awaited**: the health timeout counts again from the restart, so
//!   a Sync may wait up to one more `timeout` before reporting `HealthCheckFailed` (it errs on the
//!   side of waiting).
//! - **Since when a new Sync has waited for its first render**, and a state held back from the
//!   status by `--progress-report-delay`: the delay counts again from the restart, and an apply
//!   whose status was held is recorded by the first pass after it (the objects, already applied,
//!   are found in sync and not applied again). Until then a deletion of the Sync deletes that
//!   apply's objects too, from this memory; a restart inside the delay forgets them, so a Sync
//!   deleted before the next controller's first pass leaves them in the cluster with their owner
//!   labels (as a restart between any apply and its status write always could).
//! - **The kinds whose watches the Sync holds**: watches start again as objects are looked at.
//! - **What the last pass judged** (the Sync's version, when it asked to look again): the first
//!   pass after a start is never skipped as redundant.
//! - **A deletion under way**: the Sync's finalizer and its status inventory say what is left, so
//!   the next controller carries on; only the warning for a finalizer removed by hand in the
//!   middle of a deletion needs the memory (see `finalize`).
//! - **Post-sync hooks still due**: `status.pendingPostHooks` names the render whose
//!   post-install/post-upgrade hooks wait for it to be healthy, written with the apply that
//!   follows its pre-sync hooks, so the next controller runs them. A controller stopped between
//!   the pre-sync hooks and that status write runs the render's hooks again (its status still
//!   names the render before), as a sync operation started again would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use plumb_api::inventory::InventoryEntry;
use plumb_api::sync::SyncStatus;
use plumb_api::{Digest, ObjectId};

use crate::deps::Key;
use crate::manifest::Manifest;
use crate::packed::Packer;
use crate::signal::version_of;
use crate::wake::Judged;
use plumb_substitute::SecretValues;

/// What plumb applied for one object, normalized by the server's answer, kept small: the body
/// itself is in the rendered artifact, so only its fingerprint is kept, and the normalized form
/// only where it differs from the body (the server changed a value plumb sent, `1000m` → `1`),
/// boxed, as it seldom does.
#[derive(Debug, Clone)]
pub struct Intent {
    /// SHA-256 of the applied body's JSON.
    body: [u8; 32],
    /// The fields of the body with the values the server stored for them; `None` when those are
    /// the body's own.
    normalized: Option<Box<Value>>,
    /// `metadata.generation` the server gave the object for it; a cached copy of an older
    /// generation has not caught up with the apply yet.
    pub generation: Option<i64>,
}

impl Intent {
    /// The intent of applying `body`, which the server stored as `normalized`.
    pub fn new(body: &Value, normalized: Value, generation: Option<i64>) -> Self {
        Self {
            body: fingerprint(body),
            normalized: (normalized != *body).then(|| Box::new(normalized)),
            generation,
        }
    }

    /// Whether this is the intent of applying `body`.
    pub fn is_for(&self, body: &Value) -> bool {
        self.body == fingerprint(body)
    }

    /// What a live object holding this intent shows in the fields of `body` (the body this
    /// intent [is for](Intent::is_for)).
    pub fn normalized<'a>(&'a self, body: &'a Value) -> &'a Value {
        self.normalized.as_deref().unwrap_or(body)
    }
}

/// The first 16 bytes of the SHA-256 of `parts`, each after its length: a name of several
/// strings kept in 16 bytes, where the strings took some hundred with their allocations. Two
/// names share one only if SHA-256 collides in 128 bits.
pub(crate) fn short_digest(parts: &[&str]) -> u128 {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let full = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    u128::from_le_bytes(out)
}

/// An object id as the intents are keyed: the [short digest](short_digest) of its namespace,
/// name, group and kind. Should two ids ever share one, the intent found is not
/// [for](Intent::is_for) the other's body and is not used. Bytes rather than a `u128`, whose
/// 16-byte alignment padded each intent of the record by 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct IdKey([u8; 16]);

impl IdKey {
    fn of(id: &ObjectId) -> Self {
        Self(short_digest(&[&id.namespace, &id.name, &id.group, &id.kind]).to_le_bytes())
    }
}

/// SHA-256 of `value`'s JSON.
fn fingerprint(value: &Value) -> [u8; 32] {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    // Writing JSON into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut hasher, value);
    hasher.finalize().into()
}

/// The objects of the artifact being applied, kept between reconciles in the smallest form that
/// serves them.
#[derive(Debug)]
pub enum Kept {
    /// The artifact as downloaded (gzip of YAML: some hundred bytes per object, where the parsed
    /// objects take ten times that), parsed again when read.
    Artifact(Arc<[u8]>),
    /// Objects decrypted after the download: kept as they are, so keys are not read and secrets
    /// not decrypted again on every pass; with their secret values, masked in every message.
    Objects(Arc<Vec<Manifest>>, Arc<SecretValues>),
}

/// The status a pass wrote: the resourceVersion of the Sync it read, the one its write gave the
/// Sync, and the [packed](Packer::pack) JSON of the status.
#[derive(Debug)]
struct Pending {
    read: Box<str>,
    wrote: Option<Box<str>>,
    packed: Box<[u8]>,
}

/// What is kept of the last status write, until a pass reads a version other than the one the
/// writing pass read.
#[derive(Debug)]
enum Written {
    /// The watch cache has not shown the write's version yet.
    Pending(Box<Pending>),
    /// The cache has it: only the [hash](version_of) of the version the writing pass read is
    /// kept, so that a pass the cache gave its Sync before that event knows its copy is older
    /// than the cache's.
    Overtaken(u64),
}

/// What the controller remembers about one Sync between reconciles (see the module docs for
/// what a restart loses).
#[derive(Debug, Default)]
pub struct SyncMemory {
    artifact: Option<(Digest, Kept)>,
    /// What was applied, by object, sorted by key (a binary search finds one): 72 bytes an
    /// object, where a hash table of a Sync's few objects took twice as many slots as entries.
    intents: Vec<(IdKey, Intent)>,
    last_full: Option<Instant>,
    /// The [short digest](short_digest) of the render whose health is awaited, and since when:
    /// 16 bytes where the digest's text took some hundred.
    health_since: Option<([u8; 16], Instant)>,
    render_since: Option<Instant>,
    /// The resourceVersion a writing pass read, and the status it wrote as
    /// [packed](crate::packed) JSON: a few hundred bytes where the parsed status took some 1.8 KB,
    /// kept for every Sync whose last pass wrote (all of them, once a fleet is Ready).
    written: Option<Written>,
    judged: Option<Judged>,
    /// What only some Syncs ever need (a deletion, a held report, hooks), boxed: the memory of
    /// every other Sync keeps one pointer where these took 130 bytes.
    rare: Option<Box<Rare>>,
}

/// The part of a [`SyncMemory`] that most Syncs never fill.
#[derive(Debug, Default)]
struct Rare {
    deleting: Option<Vec<InventoryEntry>>,
    unreported: Option<Vec<InventoryEntry>>,
    post_hooks: Option<(Digest, bool)>,
    pre_hooks_ran: Option<(Digest, Option<String>)>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.deleting.is_none()
            && self.unreported.is_none()
            && self.post_hooks.is_none()
            && self.pre_hooks_ran.is_none()
    }
}

impl SyncMemory {
    fn rare(&self) -> Option<&Rare> {
        self.rare.as_deref()
    }

    /// Changes the rare part with `f`, boxed only while it holds something.
    fn rare_mut(&mut self, f: impl FnOnce(&mut Rare)) {
        let rare = self.rare.get_or_insert_with(Box::default);
        f(rare);
        if rare.is_empty() {
            self.rare = None;
        }
    }

    /// What the last pass judged, taken: a pass that runs replaces it when it succeeds, so a
    /// failed pass leaves none (see [`wake`](crate::wake)).
    pub fn take_judged(&mut self) -> Option<Judged> {
        self.judged.take()
    }

    /// Records what a pass judged (or puts back what a redundant pass took).
    pub fn set_judged(&mut self, judged: Option<Judged>) {
        self.judged = judged;
    }

    /// Whether the post-sync hooks of the render with `digest` still wait for it to be healthy:
    /// what this controller last decided for that render, else what `status.pendingPostHooks`
    /// says (a restart, or a render applied by the controller before it). The decision
    /// remembered wins over the status because the status a pass reads may lag the last write.
    pub fn post_hooks_pending(&self, digest: &Digest, status: Option<&Digest>) -> bool {
        match self.rare().and_then(|r| r.post_hooks.as_ref()) {
            Some((d, pending)) if d == digest => *pending,
            _ => status == Some(digest),
        }
    }

    /// Records whether the post-sync hooks of the render with `digest` are due.
    pub fn set_post_hooks(&mut self, digest: Digest, pending: bool) {
        self.rare_mut(|r| r.post_hooks = Some((digest, pending)));
    }

    /// Whether the pre-sync hooks already ran for the render with `digest` and the reconcile
    /// request `requested_at`. The Sync a pass reads may predate the status the last pass wrote
    /// (the watch cache lags a write), and hooks must not run twice for one sync. (Lost on a
    /// restart: the status the cache then holds has caught up.)
    pub fn pre_hooks_ran(&self, digest: &Digest, requested_at: Option<&str>) -> bool {
        self.rare()
            .and_then(|r| r.pre_hooks_ran.as_ref())
            .is_some_and(|(d, at)| d == digest && at.as_deref() == requested_at)
    }

    /// Records that the pre-sync hooks ran for the render with `digest` and `requested_at`.
    pub fn set_pre_hooks_ran(&mut self, digest: Digest, requested_at: Option<String>) {
        self.rare_mut(|r| r.pre_hooks_ran = Some((digest, requested_at)));
    }

    /// The objects of the artifact with `digest`, if it is the one remembered.
    pub fn manifests(&self, digest: &Digest) -> Option<Arc<Vec<Manifest>>> {
        let (kept_digest, kept) = self.artifact.as_ref()?;
        if kept_digest != digest {
            return None;
        }
        match kept {
            // It parsed when it was downloaded; should it not now, it is downloaded again.
            Kept::Artifact(gzip) => crate::manifest::parse_gzip(gzip).ok().map(Arc::new),
            Kept::Objects(objects, _) => Some(objects.clone()),
        }
    }

    /// The secret values of the objects of the artifact with `digest` (none when it is not the
    /// one remembered, or was kept as downloaded: nothing of it was decrypted or substituted).
    pub fn secret_values(&self, digest: &Digest) -> Arc<SecretValues> {
        match &self.artifact {
            Some((d, Kept::Objects(_, secrets))) if d == digest => secrets.clone(),
            _ => Arc::default(),
        }
    }

    /// Remembers the objects of the artifact with `digest` (the one being applied).
    pub fn keep_artifact(&mut self, digest: Digest, kept: Kept) {
        self.artifact = Some((digest, kept));
    }

    /// Where the intent of `key` is in the record (`Err`: where it would go).
    fn intent_at(&self, key: IdKey) -> Result<usize, usize> {
        self.intents.binary_search_by_key(&key, |(k, _)| *k)
    }

    /// What was applied for `id`.
    pub fn intent(&self, id: &ObjectId) -> Option<&Intent> {
        let at = self.intent_at(IdKey::of(id)).ok()?;
        Some(&self.intents[at].1)
    }

    /// Records what was applied for `id`.
    pub fn record_intent(&mut self, id: &ObjectId, intent: Intent) {
        let key = IdKey::of(id);
        match self.intent_at(key) {
            Ok(at) => self.intents[at].1 = intent,
            Err(at) => self.intents.insert(at, (key, intent)),
        }
    }

    /// Forgets `id` (pruned or deleted).
    pub fn forget_intent(&mut self, id: &ObjectId) {
        if let Ok(at) = self.intent_at(IdKey::of(id)) {
            self.intents.remove(at);
        }
    }

    /// Forgets the intents of every object but those of `keep` (the objects of the render now
    /// applied), so the record never outgrows what the Sync applies now, nor its room what it
    /// holds.
    pub fn retain_intents<'a>(&mut self, keep: impl IntoIterator<Item = &'a ObjectId>) {
        let mut keep: Vec<IdKey> = keep.into_iter().map(IdKey::of).collect();
        keep.sort_unstable();
        self.intents
            .retain(|(key, _)| keep.binary_search(key).is_ok());
        self.intents.shrink_to_fit();
    }

    /// Whether the safety-net full pass is due (never ran, or `interval` ago).
    pub fn full_pass_due(&self, interval: Duration) -> bool {
        self.last_full.is_none_or(|t| t.elapsed() >= interval)
    }

    /// Records that a full pass ran now.
    pub fn full_pass_done(&mut self) {
        self.last_full = Some(Instant::now());
    }

    /// How long the health of `digest` has been awaited; the clock starts on a new digest.
    pub fn health_waited(&mut self, digest: &Digest) -> Duration {
        let id = short_digest(&[digest.as_str()]).to_le_bytes();
        match &self.health_since {
            Some((d, since)) if *d == id => since.elapsed(),
            _ => {
                self.health_since = Some((id, Instant::now()));
                Duration::ZERO
            }
        }
    }

    /// How long the Sync has been waiting for its first render; the clock starts at the first
    /// call and stops at [`SyncMemory::render_arrived`].
    pub fn render_waited(&mut self) -> Duration {
        self.render_since.get_or_insert_with(Instant::now).elapsed()
    }

    /// Records that the Sync has a render, so a later wait for one counts from its own start.
    pub fn render_arrived(&mut self) {
        self.render_since = None;
    }

    /// Whether a deletion of the Sync's objects is under way.
    pub fn deleting(&self) -> bool {
        self.rare().is_some_and(|r| r.deleting.is_some())
    }

    /// Records the objects a deletion still has to delete (`None` once done).
    pub fn set_deleting(&mut self, left: Option<Vec<InventoryEntry>>) {
        self.rare_mut(|r| r.deleting = left);
    }

    /// The objects a deletion had left, if it was under way.
    pub fn left_by_deletion(&self) -> Option<&[InventoryEntry]> {
        self.rare().and_then(|r| r.deleting.as_deref())
    }

    /// Records the inventory of an apply whose status report `--progress-report-delay` holds
    /// back (its objects are in the cluster, `status.inventory` does not name them yet), or
    /// `None` once a status written names what was applied.
    pub fn set_unreported(&mut self, inventory: Option<Vec<InventoryEntry>>) {
        self.rare_mut(|r| r.unreported = inventory);
    }

    /// Records that a pass which read the Sync at `read` wrote `status` (this controller's part
    /// of it), which gave the Sync the version `wrote`.
    pub fn set_written(&mut self, read: Option<&str>, wrote: Option<&str>, status: SyncStatus) {
        self.written = read.and_then(|read| {
            let json = serde_json::to_vec(&status).ok()?;
            Some(Written::Pending(Box::new(Pending {
                read: read.into(),
                // A write that changed nothing leaves the version read: no event tells of it.
                wrote: wrote.filter(|w| *w != read).map(Box::from),
                packed: Packer::shared().pack_sync(&json),
            })))
        });
    }

    /// The status the last pass wrote, when the Sync read now is still the version that pass
    /// read: the watch cache has not seen the write yet, and its copy of the status is older
    /// than what the API server holds. Forgotten once a pass reads another version.
    pub fn written_since(&mut self, resource_version: Option<&str>) -> Option<SyncStatus> {
        if let Some(Written::Pending(written)) = &self.written
            && resource_version == Some(&*written.read)
            && let Some(status) =
                Packer::unpack(&written.packed).and_then(|json| serde_json::from_slice(&json).ok())
        {
            return Some(status);
        }
        if !self.overtaken(resource_version) {
            self.written = None;
        }
        None
    }

    /// Whether the Sync read at `resource_version` is older than the watch cache's copy: the
    /// version the last writing pass read, after the cache [caught
    /// up](SyncMemory::cache_caught_up) with the write.
    pub fn overtaken(&self, resource_version: Option<&str>) -> bool {
        matches!(self.written, Some(Written::Overtaken(read)) if read == version_of(resource_version))
    }

    /// Forgets the status the last pass wrote once the watch cache holds the Sync at the version
    /// that write gave it (`resource_version`, from a watch event): the record would otherwise
    /// stay until the Sync's next pass, minutes later. A pass given the Sync as the writing pass
    /// read it, before the event, is told so by [`SyncMemory::overtaken`] and takes the cache's
    /// copy instead.
    pub fn cache_caught_up(&mut self, resource_version: Option<&str>) {
        if let Some(Written::Pending(w)) = &self.written
            && w.wrote.is_some()
            && w.wrote.as_deref() == resource_version
        {
            self.written = Some(Written::Overtaken(version_of(Some(&w.read))));
        }
    }

    /// What a deletion of the Sync must delete: `recorded` (its `status.inventory`) and the
    /// objects of an apply not reported yet, so a Sync deleted while its report is held back
    /// leaves nothing behind.
    pub fn to_delete(&self, recorded: Vec<InventoryEntry>) -> Vec<InventoryEntry> {
        match self.rare().and_then(|r| r.unreported.as_ref()) {
            Some(unreported) => with_unreported(recorded, unreported),
            None => recorded,
        }
    }
}

/// `recorded` (an inventory in apply order) with the entries of `unreported` (the inventory of a
/// later apply) it lacks, in `unreported`'s order after the recorded ones: a deletion, which goes
/// in reverse apply order, deletes the later apply's objects first, as it would once the status
/// named them.
fn with_unreported(
    recorded: Vec<InventoryEntry>,
    unreported: &[InventoryEntry],
) -> Vec<InventoryEntry> {
    let known: std::collections::HashSet<&str> = recorded.iter().map(|e| e.id.as_str()).collect();
    let later: Vec<InventoryEntry> = unreported
        .iter()
        .filter(|e| !known.contains(e.id.as_str()))
        .cloned()
        .collect();
    let mut all = recorded;
    all.extend(later);
    all
}

/// Every Sync's memory, each behind its own lock so one Sync's reconcile never waits on another's.
#[derive(Default)]
pub struct Memories {
    by_sync: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<SyncMemory>>>>,
}

impl Memories {
    /// The memory of Sync `key`, empty the first time.
    pub fn of(&self, key: &Key) -> Arc<tokio::sync::Mutex<SyncMemory>> {
        let mut map = self.by_sync.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.clone()).or_default().clone()
    }

    /// Tells the memory of Sync `key`, if any, that the watch cache now holds its version
    /// `resource_version` ([`SyncMemory::cache_caught_up`]). A memory a pass holds is told once
    /// that pass is over: it may be about to record the write this version comes from.
    pub fn cache_caught_up(&self, key: &Key, resource_version: Option<String>) {
        let memory = self
            .by_sync
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned();
        let Some(memory) = memory else {
            return;
        };
        if let Ok(mut m) = memory.try_lock() {
            m.cache_caught_up(resource_version.as_deref());
            return;
        }
        tokio::spawn(async move {
            memory
                .lock()
                .await
                .cache_caught_up(resource_version.as_deref());
        });
    }

    /// Forgets Sync `key`.
    pub fn forget(&self, key: &Key) {
        self.by_sync
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// The Syncs remembered.
    pub fn keys(&self) -> Vec<Key> {
        self.by_sync
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    #[test]
    fn the_status_written_stands_in_for_a_cached_copy_that_has_not_seen_the_write() {
        let mut m = SyncMemory::default();
        // A status as a pass writes it, every part filled: the record gives back exactly this.
        let rev = format!("main@sha1:{}", "7".repeat(40));
        let written: SyncStatus = serde_json::from_value(serde_json::json!({
            "observedGeneration": 7,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                 "message": "Applied revision: main", "observedGeneration": 7,
                 "lastTransitionTime": "2026-11-30T06:00:00Z"},
                {"type": "Healthy", "status": "True", "reason": "Succeeded",
                 "message": "4 objects healthy", "observedGeneration": 7,
                 "lastTransitionTime": "2026-11-30T06:00:01Z"}],
            "inventory": [{"id": "team_app_apps_Deployment", "v": "v1"},
                          {"id": "team_app__ConfigMap", "v": "v1"}],
            "lastAppliedRevision": rev, "lastAttemptedRevision": rev,
            "lastAppliedDigest": digest('a').to_string(),
            "history": [{"revision": rev, "digest": digest('a').to_string(),
                         "result": "ReconciliationSucceeded", "duration": "1.5s",
                         "time": "2026-11-30T06:00:01Z"}],
        }))
        .unwrap();
        assert_eq!(m.written_since(Some("10")), None);
        m.set_written(Some("10"), Some("12"), written.clone());
        // The cache still holds the version the writing pass read, for as many passes as it does.
        assert_eq!(m.written_since(Some("10")), Some(written.clone()));
        assert_eq!(m.written_since(Some("10")), Some(written.clone()));
        // Once a newer version is read, the record is gone for good.
        assert_eq!(m.written_since(Some("11")), None);
        assert_eq!(m.written_since(Some("10")), None);
        // A Sync read without a version (never from the API server) has nothing to stand for.
        m.set_written(None, Some("12"), written.clone());
        assert_eq!(m.written_since(None), None);

        // The cache catching up with the write ends the record without a pass.
        m.set_written(Some("10"), Some("12"), written.clone());
        m.cache_caught_up(Some("10"));
        m.cache_caught_up(Some("11"));
        assert_eq!(
            m.written_since(Some("10")),
            Some(written.clone()),
            "versions other than the write's own may be older than it"
        );
        assert!(!m.overtaken(Some("10")));
        m.cache_caught_up(Some("12"));
        // What is left tells a pass given the version read before the write that it is older.
        assert!(m.overtaken(Some("10")));
        assert!(!m.overtaken(Some("12")));
        assert_eq!(m.written_since(Some("10")), None);
        assert!(
            m.overtaken(Some("10")),
            "kept for every pass given that copy"
        );
        assert_eq!(m.written_since(Some("12")), None);
        assert!(
            !m.overtaken(Some("10")),
            "gone once a pass reads a newer version"
        );
        // A write that changed nothing has no version of its own to wait for.
        m.set_written(Some("10"), Some("10"), written.clone());
        m.cache_caught_up(Some("10"));
        assert_eq!(m.written_since(Some("10")), Some(written));
    }

    #[test]
    fn a_deletion_includes_the_objects_of_an_apply_not_reported_yet() {
        let entry = |id: &str| InventoryEntry {
            id: id.to_owned(),
            v: "v1".to_owned(),
        };
        let ids = |v: Vec<InventoryEntry>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
        let mut m = SyncMemory::default();
        // Nothing held back: the status's inventory is the whole story.
        assert_eq!(
            ids(m.to_delete(vec![entry("ns_a__ConfigMap")])),
            ["ns_a__ConfigMap"]
        );
        // A new Sync's first apply, its report held back: the status names nothing yet.
        m.set_unreported(Some(vec![
            entry("ns_a__ConfigMap"),
            entry("ns_web_apps_Deployment"),
        ]));
        assert_eq!(
            ids(m.to_delete(Vec::new())),
            ["ns_a__ConfigMap", "ns_web_apps_Deployment"]
        );
        // A later revision's apply: what the status names, then what it does not yet, each once.
        assert_eq!(
            ids(m.to_delete(vec![entry("ns_old__ConfigMap"), entry("ns_a__ConfigMap")])),
            [
                "ns_old__ConfigMap",
                "ns_a__ConfigMap",
                "ns_web_apps_Deployment"
            ]
        );
        // Reported: the status names it all again.
        m.set_unreported(None);
        assert_eq!(
            ids(m.to_delete(vec![entry("ns_a__ConfigMap")])),
            ["ns_a__ConfigMap"]
        );
    }

    #[test]
    fn the_rare_part_is_kept_only_while_it_holds_something() {
        let entry = InventoryEntry {
            id: "ns_a__ConfigMap".to_owned(),
            v: "v1".to_owned(),
        };
        let mut m = SyncMemory::default();
        assert!(m.rare.is_none(), "a new memory boxes nothing");
        m.set_deleting(Some(vec![entry.clone()]));
        m.set_unreported(Some(vec![entry.clone()]));
        assert!(m.deleting());
        assert_eq!(m.left_by_deletion().map(<[_]>::len), Some(1));
        // Clearing one leaves the other as it was.
        m.set_deleting(None);
        assert!(!m.deleting());
        assert_eq!(m.left_by_deletion(), None);
        assert_eq!(m.to_delete(Vec::new()).len(), 1);
        m.set_unreported(None);
        assert!(m.rare.is_none(), "emptied, the box is freed");
        // Hooks stay remembered once recorded (as before the part was boxed).
        m.set_pre_hooks_ran(digest('a'), None);
        m.set_post_hooks(digest('a'), false);
        assert!(m.pre_hooks_ran(&digest('a'), None));
        assert!(!m.post_hooks_pending(&digest('a'), Some(&digest('a'))));
        assert!(m.rare.is_some());
    }

    #[test]
    fn post_hooks_pending_comes_from_the_status_until_this_controller_decided() {
        let mut m = SyncMemory::default();
        // After a restart: the status says which render's post hooks are due.
        assert!(m.post_hooks_pending(&digest('a'), Some(&digest('a'))));
        assert!(!m.post_hooks_pending(&digest('b'), Some(&digest('a'))));
        assert!(!m.post_hooks_pending(&digest('a'), None));
        // Once they ran, a status that has not caught up yet does not run them again.
        m.set_post_hooks(digest('a'), false);
        assert!(!m.post_hooks_pending(&digest('a'), Some(&digest('a'))));
        m.set_post_hooks(digest('b'), true);
        assert!(m.post_hooks_pending(&digest('b'), None));
        assert!(m.post_hooks_pending(&digest('a'), Some(&digest('a'))));
    }

    #[test]
    fn an_intent_is_for_the_body_applied_and_keeps_only_a_different_normal_form() {
        use serde_json::json;
        let body = json!({"spec": {"cpu": "1000m"}});
        let same = Intent::new(&body, body.clone(), Some(1));
        assert!(same.is_for(&body));
        assert!(!same.is_for(&json!({"spec": {"cpu": "2"}})));
        assert!(same.normalized.is_none());
        assert_eq!(same.normalized(&body), &body);
        let normal = json!({"spec": {"cpu": "1"}});
        let changed = Intent::new(&body, normal.clone(), Some(1));
        assert!(changed.is_for(&body));
        assert_eq!(changed.normalized(&body), &normal);
    }

    #[test]
    fn intents_of_objects_left_out_are_forgotten() {
        let mut m = SyncMemory::default();
        let id = |n: &str| ObjectId::new("ns", n, "", "ConfigMap");
        let body = serde_json::json!({});
        m.record_intent(&id("a"), Intent::new(&body, body.clone(), None));
        m.record_intent(&id("b"), Intent::new(&body, body.clone(), None));
        m.retain_intents([&id("a")]);
        assert!(m.intent(&id("a")).is_some());
        assert!(m.intent(&id("b")).is_none());
        m.forget_intent(&id("a"));
        assert!(m.intent(&id("a")).is_none());
    }

    #[test]
    fn every_intent_recorded_is_found_and_a_new_apply_replaces_it() {
        let mut m = SyncMemory::default();
        let id = |n: usize| ObjectId::new("ns", &format!("o{n}"), "", "ConfigMap");
        let body = |n: usize| serde_json::json!({"data": {"n": n}});
        for n in (0..50).rev() {
            m.record_intent(&id(n), Intent::new(&body(n), body(n), Some(1)));
        }
        m.record_intent(&id(7), Intent::new(&body(70), body(70), Some(2)));
        for n in 0..50 {
            let want = if n == 7 { body(70) } else { body(n) };
            assert!(m.intent(&id(n)).unwrap().is_for(&want), "object {n}");
        }
        assert_eq!(m.intent(&id(7)).unwrap().generation, Some(2));
        assert_eq!(m.intents.len(), 50);
        m.retain_intents((0..50).step_by(2).map(id).collect::<Vec<_>>().iter());
        assert_eq!(m.intents.len(), 25);
        assert!(m.intent(&id(4)).is_some());
        assert!(m.intent(&id(7)).is_none());
    }

    #[test]
    fn manifests_are_served_only_for_their_digest() {
        let mut m = SyncMemory::default();
        m.keep_artifact(digest('a'), Kept::Objects(Arc::new(vec![]), Arc::default()));
        assert!(m.manifests(&digest('a')).is_some());
        assert!(m.manifests(&digest('b')).is_none());
    }

    #[test]
    fn a_kept_artifact_is_parsed_when_read() {
        use std::io::Write as _;
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(yaml.as_bytes()).unwrap();
        let gzip: Arc<[u8]> = gz.finish().unwrap().into();
        let mut m = SyncMemory::default();
        m.keep_artifact(digest('a'), Kept::Artifact(gzip));
        let objects = m.manifests(&digest('a')).unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].name, "a");
        assert_eq!(objects[0].kind, "ConfigMap");
    }

    #[test]
    fn pre_hooks_ran_once_per_render_and_reconcile_request() {
        let mut m = SyncMemory::default();
        assert!(!m.pre_hooks_ran(&digest('a'), None));
        m.set_pre_hooks_ran(digest('a'), None);
        assert!(m.pre_hooks_ran(&digest('a'), None));
        assert!(!m.pre_hooks_ran(&digest('b'), None), "a new render");
        assert!(!m.pre_hooks_ran(&digest('a'), Some("now")), "a request");
        m.set_pre_hooks_ran(digest('a'), Some("now".into()));
        assert!(m.pre_hooks_ran(&digest('a'), Some("now")));
    }

    #[test]
    fn the_health_clock_restarts_on_a_new_digest() {
        let mut m = SyncMemory::default();
        assert_eq!(m.health_waited(&digest('a')), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(m.health_waited(&digest('a')) > Duration::ZERO);
        assert_eq!(m.health_waited(&digest('b')), Duration::ZERO);
    }

    #[test]
    fn a_full_pass_is_due_first_and_after_the_interval() {
        let mut m = SyncMemory::default();
        assert!(m.full_pass_due(Duration::from_secs(60)));
        m.full_pass_done();
        assert!(!m.full_pass_due(Duration::from_secs(60)));
        assert!(m.full_pass_due(Duration::ZERO));
    }
}
