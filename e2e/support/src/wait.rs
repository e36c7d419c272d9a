//! Polling until a condition holds, with a time limit and a clear error.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::{ControllerTask, Error, Result};

/// First pause between polls; it doubles up to [`MAX_INTERVAL`].
const FIRST_INTERVAL: Duration = Duration::from_millis(50);
const MAX_INTERVAL: Duration = Duration::from_millis(500);

/// Polls `condition` until it returns `Ok(Some(value))` and returns that value,
/// or fails with [`Error::Timeout`] naming `what` once `timeout` has passed.
///
/// `Ok(None)` means "not yet"; an `Err` is treated as "not yet" too (the
/// object may not exist yet) and the last one is quoted in the timeout error.
///
/// ```no_run
/// # async fn example(client: kube::Client) -> plumb_e2e_support::Result<()> {
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use std::time::Duration;
/// let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "default");
/// let cm = plumb_e2e_support::wait_for("configmap app to exist", Duration::from_secs(10), || {
///     let api = api.clone();
///     async move { api.get_opt("app").await }
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn wait_for<T, E, F, Fut>(what: &str, timeout: Duration, condition: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<Option<T>, E>>,
    E: Display,
{
    wait_for_while(what, timeout, &[], condition).await
}

/// Like [`wait_for`], and fails at once with [`Error::ControllerStopped`] when one of `running`
/// has ended: a controller that died cannot make the condition true, and its error says why.
pub async fn wait_for_while<T, E, F, Fut>(
    what: &str,
    timeout: Duration,
    running: &[&ControllerTask],
    mut condition: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<Option<T>, E>>,
    E: Display,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut interval = FIRST_INTERVAL;
    loop {
        for task in running {
            task.check()?;
        }
        // A hung request must not outlive the deadline.
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let last = match tokio::time::timeout(remaining, condition()).await {
            Ok(Ok(Some(value))) => return Ok(value),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("the check itself did not finish".to_owned()),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                waited: now - start,
                last,
            });
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

/// Whether a Sync's status says it is Ready with `commit` applied (`lastAppliedRevision` at that
/// commit and the `Ready` condition `True`): what a test waits for after pushing a commit.
pub fn ready_at(status: &plumb_api::SyncStatus, commit: &str) -> bool {
    use plumb_api::Conditions as _;
    status
        .last_applied_revision
        .as_ref()
        .is_some_and(|r| r.commit() == commit)
        && status.conditions.is_true(plumb_api::condition_type::READY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_for_returns_the_value_once_the_condition_holds() {
        let mut calls = 0;
        let value = wait_for("third call", Duration::from_secs(5), || {
            calls += 1;
            let n = calls;
            async move { Ok::<_, String>((n == 3).then_some(n)) }
        })
        .await
        .unwrap();
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn wait_for_times_out_quoting_the_last_error() {
        let err = wait_for("the impossible", Duration::from_millis(200), || async {
            Err::<Option<()>, _>("still broken")
        })
        .await
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("the impossible") && message.contains("still broken"),
            "{message}"
        );
    }
}
