//! Tearing down a test's plumb objects the way a user would: delete them while the controllers
//! still run, so their finalizers are honoured, and only then stop the controllers.

use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use plumb_api::{GitRepository, Sync};

use crate::cluster::connect;
use crate::{Error, Result};

/// How often the objects left are listed.
const POLL: Duration = Duration::from_millis(500);

/// Deletes every Sync, then every GitRepository, in `namespace` and waits until they are gone —
/// their controllers must still be running to release their finalizers. It fails once `timeout`
/// passes without one of them going (so a thousand Syncs may take longer, as long as they go).
/// Call it before stopping the controllers: a namespace whose GitRepository keeps
/// `source.plumb.dev/finalizer` with no controller left stays `Terminating` for good.
pub async fn delete_plumb_objects(
    client: &Client,
    namespace: &str,
    timeout: Duration,
) -> Result<()> {
    let syncs: Api<Sync> = Api::namespaced(client.clone(), namespace);
    let repos: Api<GitRepository> = Api::namespaced(client.clone(), namespace);
    // Syncs first: they may still need their source while they finalize.
    delete_all(&syncs, namespace, timeout).await?;
    delete_all(&repos, namespace, timeout).await
}

/// [`delete_plumb_objects`] for a `Drop`: runs on a thread with its own runtime and a client from
/// `kubeconfig`, and blocks until it is done.
pub fn delete_plumb_objects_blocking(
    kubeconfig: &Path,
    namespace: &str,
    timeout: Duration,
) -> Result<()> {
    let (kubeconfig, namespace) = (kubeconfig.to_path_buf(), namespace.to_owned());
    let worker = std::thread::Builder::new()
        .name(format!("teardown-{namespace}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| {
                    Error::Io(format!("tokio runtime for tearing down {namespace}: {e}"))
                })?;
            runtime.block_on(async {
                let client = connect(&kubeconfig).await?;
                delete_plumb_objects(&client, &namespace, timeout).await
            })
        })
        .map_err(|e| Error::Io(format!("starting the teardown thread: {e}")))?;
    worker
        .join()
        .unwrap_or_else(|_| Err(Error::Io("the teardown thread panicked".into())))
}

async fn delete_all<K>(api: &Api<K>, namespace: &str, stall: Duration) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&());
    match api
        .delete_collection(&DeleteParams::background(), &ListParams::default())
        .await
    {
        Ok(_) => {}
        // The kind is not installed: nothing of it to delete.
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
        Err(e) => return Err(Error::kube(format!("delete {kind}s in {namespace}"), e)),
    }
    // A controller releases finalizers one object after another (a thousand Syncs, each pruning
    // its objects, take minutes on a busy machine), so what is bounded is the time without
    // progress: the wait fails once `stall` passes with no object gone.
    let start = Instant::now();
    let mut last_progress = start;
    let mut fewest = usize::MAX;
    loop {
        let names: std::result::Result<Vec<String>, String> = api
            .list_metadata(&ListParams::default())
            .await
            .map(|left| left.iter().map(ResourceExt::name_any).collect())
            .map_err(|e| e.to_string());
        match &names {
            Ok(names) if names.is_empty() => return Ok(()),
            Ok(names) if names.len() < fewest => {
                fewest = names.len();
                last_progress = Instant::now();
            }
            _ => {}
        }
        if last_progress.elapsed() >= stall {
            let last = Some(match names {
                Ok(names) => {
                    let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
                    format!("{} still there: {}", names.len(), shown.join(", "))
                }
                Err(e) => e,
            });
            return Err(Error::Timeout {
                what: format!(
                    "every {kind} in {namespace} to be gone (finalizers released; none went for {} s)",
                    stall.as_secs()
                ),
                waited: start.elapsed(),
                last,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
