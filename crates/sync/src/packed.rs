//! The form the drift watches keep live objects in: their compact JSON, deflated against a preset
//! dictionary of the field names and default values Kubernetes gives common kinds.
//!
//! A live object is mostly field names and server defaults (`"terminationMessagePath":
//! "/dev/termination-log"`, `"imagePullPolicy"`, the metadata keys, the condition fields), the
//! same in every object of a kind: deflate alone halves a small object's JSON, but it has no
//! earlier text to refer to, so it cannot do better; with those strings given to it as a
//! dictionary a Deployment of 1.5 KB keeps in some 300 bytes. Packing and unpacking are exact:
//! what a decision reads is the JSON the watch received, byte for byte.
//!
//! Syncs (the watch cache's [views](crate::sync_view) and the status a pass wrote) pack the same
//! way against a dictionary of their own: a Sync's field names, condition words and the prefixes
//! of its revisions, digests and URLs.

use std::sync::Mutex;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Strings the objects plumb applies usually hold, most common last (deflate reaches the end of
/// its window most cheaply). Only ever a hint: any text packs and unpacks, with or without them.
const DICTIONARY: &[u8] = br#"{"apiVersion":"batch/v1","kind":"Job","spec":{"backoffLimit":6,"completionMode":"NonIndexed","completions":1,"manualSelector":false,"parallelism":1,"podReplacementPolicy":"TerminatingOrFailed","suspend":false},"status":{"active":1,"ready":0,"startTime":"","succeeded":1,"completionTime":""}}{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","spec":{"ingressClassName":"","rules":[{"host":"","http":{"paths":[{"backend":{"service":{"name":"","port":{"number":80}}},"path":"/","pathType":"Prefix"}]}}]},"status":{"loadBalancer":{}}}{"apiVersion":"apps/v1","kind":"StatefulSet","spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain","whenScaled":"Retain"},"podManagementPolicy":"OrderedReady","serviceName":"","updateStrategy":{"rollingUpdate":{"partition":0},"type":"RollingUpdate"}},"status":{"availableReplicas":1,"collisionCount":0,"currentReplicas":1,"currentRevision":"","updateRevision":"","updatedReplicas":1}}{"apiVersion":"apps/v1","kind":"DaemonSet","spec":{"updateStrategy":{"rollingUpdate":{"maxSurge":0,"maxUnavailable":1},"type":"RollingUpdate"}},"status":{"currentNumberScheduled":1,"desiredNumberScheduled":1,"numberAvailable":1,"numberMisscheduled":0,"numberReady":1,"updatedNumberScheduled":1}}{"apiVersion":"v1","kind":"Secret","type":"Opaque","data":{},"stringData":{},"immutable":false}{"apiVersion":"v1","kind":"Service","spec":{"clusterIP":"10.0.0.1","clusterIPs":["10.0.0.1"],"internalTrafficPolicy":"Cluster","ipFamilies":["IPv4"],"ipFamilyPolicy":"SingleStack","ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080}],"selector":{"app":""},"sessionAffinity":"None","type":"ClusterIP"},"status":{"loadBalancer":{}}}{"apiVersion":"v1","kind":"ConfigMap","data":{}}{"apiVersion":"v1","kind":"ServiceAccount"}{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{"deployment.kubernetes.io/revision":"1"}},"spec":{"progressDeadlineSeconds":600,"replicas":1,"revisionHistoryLimit":10,"selector":{"matchLabels":{"app":""}},"strategy":{"rollingUpdate":{"maxSurge":"25%","maxUnavailable":"25%"},"type":"RollingUpdate"},"template":{"metadata":{"creationTimestamp":null,"labels":{"app":""}},"spec":{"containers":[{"args":[],"command":[],"env":[{"name":"","value":""}],"image":"","imagePullPolicy":"IfNotPresent","name":"","ports":[{"containerPort":8080,"name":"http","protocol":"TCP"}],"resources":{"limits":{"cpu":"","memory":""},"requests":{"cpu":"","memory":""}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","volumeMounts":[{"mountPath":"","name":""}]}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","schedulerName":"default-scheduler","securityContext":{},"serviceAccount":"","serviceAccountName":"","terminationGracePeriodSeconds":30,"volumes":[{"configMap":{"defaultMode":420,"name":""},"name":""}]}}},"status":{"availableReplicas":1,"conditions":[{"lastTransitionTime":"","lastUpdateTime":"","message":"Deployment has minimum availability.","reason":"MinimumReplicasAvailable","status":"True","type":"Available"},{"lastTransitionTime":"","lastUpdateTime":"","message":"ReplicaSet \"\" has successfully progressed.","reason":"NewReplicaSetAvailable","status":"True","type":"Progressing"}],"observedGeneration":1,"readyReplicas":1,"replicas":1,"terminatingReplicas":0,"updatedReplicas":1}}{"apiVersion":"v1","kind":"","metadata":{"annotations":{},"creationTimestamp":"2026-01-01T00:00:00Z","generation":1,"labels":{"app.kubernetes.io/name":"","sync.plumb.dev/name":"","sync.plumb.dev/namespace":""},"name":"","namespace":"","ownerReferences":[],"resourceVersion":"","uid":""},"spec":{"#;

/// What the JSON of a Sync (and of its status alone) usually holds, in the order serde writes it,
/// most common last. Only a hint, as [`DICTIONARY`] is.
const SYNC_DICTIONARY: &[u8] = br#"{"apiVersion":"sync.plumb.dev/v1","kind":"Sync","metadata":{"annotations":{"plumb.dev/requested-at":""},"creationTimestamp":"2026-01-01T00:00:00Z","finalizers":["sync.plumb.dev/finalizer"],"generation":1,"labels":{"app.kubernetes.io/name":"","plumb.dev/shard":"","e2e.plumb.dev/scope":""}},"spec":{"sourceRef":{"kind":"GitRepository","name":"","namespace":""},"path":"./","interval":"10m","retryInterval":"1m","timeout":"5m","prune":true,"wait":true,"targetNamespace":"","dependsOn":[{"name":"","namespace":"","readyExpr":""}],"serviceAccountName":"","images":[{"name":"","newName":"","newTag":""}],"patches":[{"patch":"","target":{"kind":""}}],"substitute":{"":""},"selfHeal":true,"deletionPolicy":"MirrorPrune","substituteFrom":[{"kind":"ConfigMap","name":""}],"substituteStrategy":"","components":[]}}{"observedGeneration":1,"conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"rendered 4 objects from main@sha1:","observedGeneration":1,"reason":"ReconciliationSucceeded","status":"True","type":"Rendered"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"4 objects healthy","observedGeneration":1,"reason":"ReconciliationSucceeded","status":"True","type":"Healthy"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"Applied revision: main@sha1:","observedGeneration":1,"reason":"ReconciliationSucceeded","status":"True","type":"Ready"}],"render":{"observedGeneration":1,"sourceRevision":"main@sha1:","sourceDigest":"sha256:","artifact":{"revision":"main@sha1:","digest":"sha256:","url":"http://127.0.0.1:9091/sync/","size":1,"lastUpdateTime":"2026-01-01T00:00:00Z"},"objects":4},"inventory":[{"id":"__ServiceAccount","v":"v1"},{"id":"__ConfigMap","v":"v1"},{"id":"__Service","v":"v1"},{"id":"_apps_Deployment","v":"v1"}],"lastAppliedRevision":"main@sha1:","lastAttemptedRevision":"main@sha1:","lastAppliedDigest":"sha256:","history":[{"revision":"main@sha1:","digest":"sha256:","result":"ReconciliationSucceeded","duration":"1ms","time":"2026-01-01T00:00:00Z"}]}"#;

/// Window of the deflate stream: 8 KiB (a bigger one only helps objects bigger than that) keeps
/// the one compressor's state at some 160 KiB.
const WINDOW_BITS: u8 = 13;

/// The first byte of a packed text: how the rest holds the JSON (deflated against
/// [`DICTIONARY`]).
const DEFLATED: u8 = 1;
/// The first byte of a packed text: the rest is the JSON deflated against [`SYNC_DICTIONARY`].
const DEFLATED_SYNC: u8 = 2;
/// The rest is the JSON itself (kept so when the compressor fails, which it does not on memory
/// it was given: a cache never loses an object).
const STORED: u8 = 0;

/// Packs and unpacks objects; one per controller, [`Packer::shared`] (the compressor's state is
/// reused, not allocated per object).
pub struct Packer {
    compress: Mutex<Compress>,
}

impl Default for Packer {
    fn default() -> Self {
        Self::new()
    }
}

impl Packer {
    /// The process's packer (the drift watches' caches and the Syncs' memories share it: its
    /// compressor state is some 160 KiB).
    pub fn shared() -> &'static Packer {
        static SHARED: std::sync::LazyLock<Packer> = std::sync::LazyLock::new(Packer::new);
        &SHARED
    }

    /// A packer with its compressor ready.
    pub fn new() -> Self {
        Self {
            compress: Mutex::new(Compress::new_with_window_bits(
                Compression::default(),
                false,
                WINDOW_BITS,
            )),
        }
    }

    /// `json` (an applied object's) packed: [`DEFLATED`], its length (4 bytes, little-endian),
    /// then its deflated text.
    pub fn pack(&self, json: &[u8]) -> Box<[u8]> {
        self.pack_with(json, DEFLATED, DICTIONARY)
    }

    /// `json` (a Sync's, or its status's) packed: as [`Packer::pack`] does, against the
    /// dictionary of Syncs.
    pub fn pack_sync(&self, json: &[u8]) -> Box<[u8]> {
        self.pack_with(json, DEFLATED_SYNC, SYNC_DICTIONARY)
    }

    fn pack_with(&self, json: &[u8], marker: u8, dictionary: &[u8]) -> Box<[u8]> {
        self.deflate(json, marker, dictionary).unwrap_or_else(|| {
            let mut out = Vec::with_capacity(1 + json.len());
            out.push(STORED);
            out.extend_from_slice(json);
            out.into_boxed_slice()
        })
    }

    fn deflate(&self, json: &[u8], marker: u8, dictionary: &[u8]) -> Option<Box<[u8]>> {
        let len = u32::try_from(json.len()).ok()?;
        let mut compress = self.compress.lock().unwrap_or_else(|p| p.into_inner());
        compress.reset();
        compress.set_dictionary(dictionary).ok()?;
        let mut out = Vec::with_capacity(5 + json.len() / 2 + 64);
        out.push(marker);
        out.extend_from_slice(&len.to_le_bytes());
        let mut read = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(json.len() / 4 + 64);
            }
            let before = compress.total_in();
            let status = compress.compress_vec(&json[read..], &mut out, FlushCompress::Finish);
            read += usize::try_from(compress.total_in() - before).ok()?;
            match status {
                Ok(Status::StreamEnd) => return Some(out.into_boxed_slice()),
                Ok(Status::Ok | Status::BufError) => {}
                Err(_) => return None,
            }
        }
    }

    /// The JSON `packed` was made from; `None` if it is not a packed text.
    pub fn unpack(packed: &[u8]) -> Option<Vec<u8>> {
        match packed.split_first()? {
            (&STORED, json) => Some(json.to_vec()),
            (&marker @ (DEFLATED | DEFLATED_SYNC), rest) => {
                let (len, deflated) = rest.split_first_chunk::<4>()?;
                let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
                let mut decompress = Decompress::new_with_window_bits(false, WINDOW_BITS);
                let dictionary = if marker == DEFLATED {
                    DICTIONARY
                } else {
                    SYNC_DICTIONARY
                };
                decompress.set_dictionary(dictionary).ok()?;
                let mut out = Vec::with_capacity(len);
                match decompress.decompress_vec(deflated, &mut out, FlushDecompress::Finish) {
                    Ok(Status::StreamEnd) if out.len() == len => Some(out),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(name: &str) -> serde_json::Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "annotations": {"deployment.kubernetes.io/revision": "1"},
                "creationTimestamp": "2026-11-30T03:55:53Z", "generation": 1,
                "labels": {"sync.plumb.dev/name": "apps", "sync.plumb.dev/namespace": "team"},
                "name": name, "namespace": "team-a", "resourceVersion": "34691",
                "uid": "b31d84b9-8b53-42a3-a403-d211a26a0dbd"
            },
            "spec": {
                "progressDeadlineSeconds": 600, "replicas": 0, "revisionHistoryLimit": 10,
                "selector": {"matchLabels": {"app": name}},
                "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                             "type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [{
                            "image": "registry.example.com/app:1.0.0",
                            "imagePullPolicy": "IfNotPresent", "name": "app", "resources": {},
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File"
                        }],
                        "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                        "schedulerName": "default-scheduler", "securityContext": {},
                        "serviceAccount": name, "serviceAccountName": name,
                        "terminationGracePeriodSeconds": 30
                    }
                }
            },
            "status": {
                "conditions": [{
                    "lastTransitionTime": "2026-11-30T03:55:54Z",
                    "lastUpdateTime": "2026-11-30T03:55:54Z",
                    "message": "Deployment has minimum availability.",
                    "reason": "MinimumReplicasAvailable", "status": "True", "type": "Available"
                }],
                "observedGeneration": 1
            }
        })
    }

    #[test]
    fn an_object_unpacks_to_the_same_bytes() {
        let packer = Packer::new();
        let big: String = (0..20_000)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        let texts = [
            serde_json::to_vec(&deployment("web")).unwrap(),
            serde_json::to_vec(&json!({"data": {"k": "värde ✓", "big": big}})).unwrap(),
            b"{}".to_vec(),
            Vec::new(),
        ];
        for text in &texts {
            let packed = packer.pack(text);
            assert_eq!(packed[0], DEFLATED);
            assert_eq!(Packer::unpack(&packed).as_deref(), Some(text.as_slice()));
            // Against the dictionary of Syncs, told apart by its first byte.
            let packed = packer.pack_sync(text);
            assert_eq!(packed[0], DEFLATED_SYNC);
            assert_eq!(Packer::unpack(&packed).as_deref(), Some(text.as_slice()));
        }
        // The compressor is reused: the same text packs the same way again.
        assert_eq!(packer.pack(&texts[0]), packer.pack(&texts[0]));
    }

    #[test]
    fn a_typical_deployment_keeps_in_a_fraction_of_its_json() {
        let text = serde_json::to_vec(&deployment("web")).unwrap();
        let packed = Packer::new().pack(&text);
        assert!(
            packed.len() * 3 < text.len(),
            "{} bytes packed from {}",
            packed.len(),
            text.len()
        );
    }

    #[test]
    fn damaged_or_foreign_text_does_not_unpack() {
        let packed = Packer::new().pack(&serde_json::to_vec(&deployment("web")).unwrap());
        assert!(Packer::unpack(&packed[..packed.len() / 2]).is_none());
        let mut longer = packed.to_vec();
        longer[1] = longer[1].wrapping_add(1);
        assert!(Packer::unpack(&longer).is_none());
        assert!(Packer::unpack(b"ab").is_none());
        assert!(Packer::unpack(b"").is_none());
        assert_eq!(Packer::unpack(b"\0{}").as_deref(), Some(b"{}".as_slice()));
    }
}
