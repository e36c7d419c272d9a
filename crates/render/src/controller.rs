//! The shell around the pure core: watches, caches and servers, started by [`run`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use plumb_api::{GitRepository, Policy, Sync};
use plumb_artifact::Storage;

use crate::context::{CONTROLLER_NAME, Context, RenderMetrics};
use crate::{Config, Error, policy_controller, sync_controller};

/// Runs the render controller until the process is asked to stop: the Sync and Policy
/// controllers, the artifact file server, and the health endpoints.
pub async fn run(config: Config) -> Result<(), Error> {
    // Both TLS users (kube, reqwest) need a process-wide crypto provider; another may be set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await.map_err(Error::Kube)?;
    run_with_client(client, config).await
}

/// [`run`] with a given client (tests and the all-in-one `plumb` binary use this).
pub async fn run_with_client(client: Client, mut config: Config) -> Result<(), Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Bind first, so port 0 works and an empty base URL can name the port actually bound.
    let artifact_listener = tokio::net::TcpListener::bind(config.artifact_addr)
        .await
        .map_err(Error::Serve)?;
    let bound = artifact_listener.local_addr().map_err(Error::Serve)?;
    if config.artifact_base_url.is_empty() {
        config.artifact_base_url = format!("http://{bound}");
    }
    tracing::info!(addr = %bound, base = %config.artifact_base_url, "serving rendered artifacts");
    let storage = Storage::new(&config.storage_dir).map_err(Error::Storage)?;
    let token = plumb_artifact::auth::load(&client, config.artifact_token_secret.as_ref()).await?;
    let http = plumb_artifact::auth::client_builder(token.as_ref())
        .timeout(config.fetch_timeout)
        .build()
        .map_err(Error::Http)?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: CONTROLLER_NAME.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );

    let mut sync_watch = watcher::Config::default();
    if !config.watch_label_selector.is_empty() {
        sync_watch = sync_watch.labels(&config.watch_label_selector);
    }
    let policies_api: Api<Policy> = Api::all(client.clone());
    let sync_ctl = Controller::new(Api::<Sync>::all(client.clone()), sync_watch)
        .with_config(controller::Config::default().concurrency(config.concurrent.max(1)));
    let policy_ctl = Controller::new(policies_api.clone(), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(2));

    let metrics = RenderMetrics::new();
    let readiness = plumb_ops::Readiness::default();
    let ops = config.metrics_addr.map(|addr| {
        let (metrics, readiness) = (metrics.ops.clone(), readiness.clone());
        tokio::spawn(plumb_ops::serve_ops(addr, metrics, readiness, async {
            let _ = tokio::signal::ctrl_c().await;
        }))
    });

    // The caches every reconcile reads are filled by their own reflectors, and the controllers
    // start only once all are complete: a Sync is never judged against a partial Policy list.
    let (policies, policy_writer) = reflector::store();
    let (ns_store, ns_writer) = reflector::store();
    let (all_syncs_store, all_syncs_writer) = reflector::store();
    let reflectors = Reflectors(vec![
        spawn_reflector(policy_writer, policies_api.clone()),
        spawn_reflector(
            ns_writer,
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        ),
        spawn_reflector(
            all_syncs_writer,
            Api::<PartialObjectMeta<Sync>>::all(client.clone()),
        ),
    ]);
    policies
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreNotReady)?;
    ns_store
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreNotReady)?;
    all_syncs_store
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreNotReady)?;
    readiness.set(true);

    let ctx = Arc::new(Context {
        client: client.clone(),
        storage: storage.clone(),
        http,
        recorder,
        policies,
        syncs: sync_ctl.store(),
        all_syncs: all_syncs_store,
        namespaces: ns_store,
        compiled: Mutex::default(),
        rendered: Mutex::default(),
        failures: Mutex::default(),
        metrics,
        config: config.clone(),
    });

    let syncs_for_source = ctx.syncs.clone();
    let syncs_for_policy = ctx.syncs.clone();
    let sync_loop = sync_ctl
        .watches(
            Api::<GitRepository>::all(client.clone()),
            watcher::Config::default(),
            move |repo| {
                let ns = repo.namespace().unwrap_or_default();
                let name = repo.name_any();
                syncs_for_source
                    .state()
                    .into_iter()
                    .filter(|s| {
                        s.spec.source_ref.name == name
                            && s.spec
                                .source_ref
                                .namespace
                                .as_deref()
                                .unwrap_or(s.metadata.namespace.as_deref().unwrap_or_default())
                                == ns
                    })
                    .map(|s| ObjectRef::from_obj(s.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        // A Policy's spec change (or deletion) may change which Syncs it governs, before and
        // after, so every Sync is looked at; the cache key makes that cheap for the unaffected
        // ones. Status-only updates (the governed count moving as Syncs come and go) are not
        // passed on: with many Syncs they would otherwise wake every Sync for each new one.
        .watches(policies_api, watcher::Config::default(), {
            let changes = Mutex::new(PolicyChanges::default());
            move |policy: Policy| {
                if !changes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .affects_syncs(&policy)
                {
                    return Vec::new();
                }
                syncs_for_policy
                    .state()
                    .into_iter()
                    .map(|s| ObjectRef::from_obj(s.as_ref()))
                    .collect::<Vec<_>>()
            }
        })
        // A namespace relabelled may come under (or leave) a Policy's namespace selector.
        .watches(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
            {
                let seen = Mutex::new(HashMap::<String, BTreeMap<String, String>>::new());
                let syncs = ctx.syncs.clone();
                move |ns: PartialObjectMeta<Namespace>| {
                    let name = ns.name_any();
                    let labels = ns.labels().clone();
                    let previous = seen
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name.clone(), labels.clone());
                    if previous.is_none() || previous.as_ref() == Some(&labels) {
                        return Vec::new();
                    }
                    syncs
                        .state()
                        .into_iter()
                        .filter(|s| s.namespace().as_deref() == Some(name.as_str()))
                        .map(|s| ObjectRef::from_obj(s.as_ref()))
                        .collect::<Vec<_>>()
                }
            },
        )
        .shutdown_on_signal()
        .run(
            sync_controller::reconcile,
            sync_controller::error_policy,
            ctx.clone(),
        )
        .for_each(|res| {
            if let Err(e) = res {
                tracing::debug!(error = %e, "sync reconcile");
            }
            future::ready(())
        });

    // A new, relabelled or deleted Sync may change a Policy's governed count: recount them all.
    // A Sync's status churn cannot, so it is not passed on (deletions without a deletion
    // timestamp are caught by the periodic recount).
    let policies_for_sync = ctx.policies.clone();
    let policy_loop = policy_ctl
        .watches(
            Api::<PartialObjectMeta<Sync>>::all(client.clone()),
            watcher::Config::default(),
            {
                let seen = Mutex::new(HashMap::<(String, String), BTreeMap<String, String>>::new());
                move |sync: PartialObjectMeta<Sync>| {
                    let key = (sync.namespace().unwrap_or_default(), sync.name_any());
                    let labels = sync.labels().clone();
                    let previous = seen
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key, labels.clone());
                    if previous.as_ref() == Some(&labels)
                        && sync.metadata.deletion_timestamp.is_none()
                    {
                        return Vec::new();
                    }
                    policies_for_sync
                        .state()
                        .into_iter()
                        .map(|p| ObjectRef::from_obj(p.as_ref()))
                        .collect::<Vec<_>>()
                }
            },
        )
        .shutdown_on_signal()
        .run(
            policy_controller::reconcile,
            policy_controller::error_policy,
            ctx.clone(),
        )
        .for_each(|res| {
            if let Err(e) = res {
                tracing::debug!(error = %e, "policy reconcile");
            }
            future::ready(())
        });

    let sweeper = tokio::spawn(crate::sweep::sweep_deleted(ctx.clone()));
    let server = tokio::spawn(async move {
        plumb_artifact::serve::serve_on(artifact_listener, storage, token, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    });

    let controllers = async {
        tokio::join!(sync_loop, policy_loop);
    };
    let work = async {
        match leader_elector(&client, &config) {
            Some(elector) => elector.run(controllers).await.map_err(Error::Leader),
            None => {
                controllers.await;
                Ok(())
            }
        }
    };
    // Artifacts are served by every replica, leader or not, so consumers never see a gap.
    let result = tokio::select! {
        r = work => r,
        res = server => match res {
            Ok(Err(e)) => Err(Error::Serve(e)),
            _ => Ok(()),
        },
    };
    if let Some(h) = ops {
        h.abort();
    }
    sweeper.abort();
    drop(reflectors);
    result
}

/// The Lease elector, when leader election is on.
fn leader_elector(client: &Client, config: &Config) -> Option<plumb_ops::LeaderElector> {
    config.leader_election.then(|| {
        let identity = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| format!("plumb-render-{}", std::process::id()));
        plumb_ops::LeaderElector::new(
            client.clone(),
            plumb_ops::LeaseConfig {
                namespace: config.leader_election_namespace.clone(),
                name: "plumb-render-controller".into(),
                identity,
                lease_duration: Duration::from_secs(15),
                renew_period: Duration::from_secs(5),
            },
        )
    })
}

/// What the Sync controller last saw of each Policy, to tell spec changes and deletions (which
/// may change any Sync's verdict) from status-only updates (which cannot).
#[derive(Default)]
pub struct PolicyChanges {
    seen: HashMap<String, (Option<i64>, Option<serde_json::Value>)>,
}

impl PolicyChanges {
    /// Whether this watch event of `policy` may change a Sync's verdict: a new Policy, a new
    /// generation, or an event that changes neither generation nor status (a deletion, or a
    /// label or annotation edit). A status-only update does not.
    pub fn affects_syncs(&mut self, policy: &Policy) -> bool {
        let status = policy
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok());
        let now = (policy.metadata.generation, status);
        match self.seen.insert(policy.name_any(), now.clone()) {
            None => true,
            Some((generation, _)) if generation != now.0 => true,
            Some((_, status)) => status == now.1,
        }
    }
}

/// Reflector tasks, stopped when dropped.
struct Reflectors(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Reflectors {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Keeps `writer`'s store in step with every object of `api`, in a task of its own.
fn spawn_reflector<K>(
    writer: reflector::store::Writer<K>,
    api: Api<K>,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + std::marker::Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + std::marker::Sync,
{
    tokio::spawn(
        reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects()
            .for_each(|res| {
                if let Err(e) = res {
                    tracing::warn!(error = %e, "watch failed, retrying");
                }
                future::ready(())
            }),
    )
}

/// Exponential backoff for the `n`th consecutive failure: 2s, 4s, ... capped at `max`.
pub fn backoff(n: u32, max: Duration) -> Duration {
    let secs = 2u64.saturating_pow(n.clamp(1, 16));
    Duration::from_secs(secs).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_only_policy_updates_do_not_wake_syncs() {
        let mut p: Policy = serde_json::from_value(serde_json::json!({
            "apiVersion": "policy.plumb.dev/v1", "kind": "Policy",
            "metadata": {"name": "p", "generation": 1}, "spec": {}
        }))
        .unwrap();
        let mut changes = PolicyChanges::default();
        assert!(changes.affects_syncs(&p), "new");
        p.status = Some(plumb_api::PolicyStatus {
            governed_syncs: Some(3),
            ..Default::default()
        });
        assert!(!changes.affects_syncs(&p), "status only");
        p.metadata.generation = Some(2);
        assert!(changes.affects_syncs(&p), "spec change");
        assert!(
            changes.affects_syncs(&p),
            "unchanged event: a deletion or metadata edit"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(1, cap), Duration::from_secs(2));
        assert_eq!(backoff(3, cap), Duration::from_secs(8));
        assert_eq!(backoff(40, cap), cap);
    }
}
