//! Removing what deleted Syncs leave behind: rendered artifacts and cache entries.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use plumb_artifact::Storage;

use crate::context::Context;
use crate::sync_view::SyncView;

/// How often artifacts and cache entries of deleted Syncs are removed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// Removes, every [`SWEEP_INTERVAL`], the rendered artifacts and cache entries of Syncs that no
/// longer exist, so storage does not grow with churn.
pub async fn sweep_deleted(ctx: Arc<Context>) {
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        let live: std::collections::HashSet<(String, String)> = ctx.all_syncs.read(|syncs| {
            syncs
                .iter()
                .map(|(ns, name, _)| (ns.unwrap_or_default().to_owned(), name.to_owned()))
                .collect()
        });
        for (namespace, name) in stored_syncs(&ctx.storage) {
            if live.contains(&(namespace.clone(), name.clone())) {
                continue;
            }
            if let Ok(key) = plumb_artifact::ArtifactKey::new(
                crate::reconcile_sync::ARTIFACT_KIND,
                &namespace,
                &name,
            ) && let Err(e) = ctx.storage.remove_all(&key)
            {
                tracing::warn!(error = %e, %namespace, %name, "removing artifacts of a deleted Sync");
            }
        }
        let gone = |r: &ObjectRef<SyncView>| {
            !live.contains(&(r.namespace.clone().unwrap_or_default(), r.name.clone()))
        };
        ctx.rendered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| !gone(&plumb_ops::ref_of(key)));
        ctx.failures.retain(|r| !gone(r));
    }
}

/// `(namespace, name)` of every Sync with artifacts in `storage`.
pub fn stored_syncs(storage: &Storage) -> Vec<(String, String)> {
    let dir = storage.root().join(crate::reconcile_sync::ARTIFACT_KIND);
    let names = |d: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    };
    names(&dir)
        .into_iter()
        .flat_map(|ns| {
            names(&dir.join(&ns))
                .into_iter()
                .map(move |n| (ns.clone(), n))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_syncs_lists_namespace_and_name_of_each_artifact_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = Storage::new(tmp.path()).unwrap();
        for (ns, name) in [("a", "web"), ("b", "api")] {
            let key = plumb_artifact::ArtifactKey::new("sync", ns, name).unwrap();
            storage
                .write_atomic::<std::io::Error>(&key, "x.yaml.gz", |w| w.write_all(b"x"))
                .unwrap()
                .unwrap();
        }
        let mut found = stored_syncs(&storage);
        found.sort();
        assert_eq!(
            found,
            [
                ("a".to_owned(), "web".to_owned()),
                ("b".to_owned(), "api".to_owned())
            ]
        );
    }
}
