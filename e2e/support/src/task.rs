//! A controller running as a task of the test's own runtime, whose failure is reported at once
//! instead of being lost with the task (and showing up as a time-out a minute later).

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::{oneshot, watch};
use tokio::task::{AbortHandle, JoinError};

use crate::{Error, Result};

/// The future a stoppable controller is given: it completes when the test asks it to stop.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>>;

/// How the task ended.
#[derive(Clone, Debug)]
enum Ended {
    /// It returned `Ok`.
    Returned,
    /// It returned an error, panicked or was cancelled; the text says which.
    Failed(String),
}

/// A spawned controller (or any long-running task a test depends on); aborted when dropped.
///
/// [`ControllerTask::check`] fails as soon as the task has ended — with the error it returned, the
/// message of its panic, or that it returned without being asked to — so a wait can stop at once
/// instead of running into its time limit ([`crate::wait_for_while`]).
pub struct ControllerTask {
    name: String,
    abort: AbortHandle,
    ended: watch::Receiver<Option<Ended>>,
    stop: Option<oneshot::Sender<()>>,
}

impl ControllerTask {
    /// Spawns `run` on the current runtime under `name` (e.g. `sync controller`); it runs until
    /// it fails or the task is dropped.
    pub fn spawn<E, F>(name: &str, run: F) -> Self
    where
        F: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        Self::spawn_stoppable(name, |_shutdown| run)
    }

    /// Spawns the controller `start` makes from a [`Shutdown`] future, which completes when
    /// [`ControllerTask::stop`] is called.
    pub fn spawn_stoppable<E, F, Fut>(name: &str, start: F) -> Self
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        let inner = tokio::spawn(start(shutdown));
        let abort = inner.abort_handle();
        let (tell, ended) = watch::channel(None);
        let task_name = name.to_owned();
        tokio::spawn(async move {
            let outcome = match inner.await {
                Ok(Ok(())) => Ended::Returned,
                Ok(Err(e)) => Ended::Failed(e.to_string()),
                Err(join) => Ended::Failed(join_failure(join)),
            };
            if let Ended::Failed(reason) = &outcome {
                tracing::error!(task = %task_name, %reason, "test controller failed");
            }
            let _ = tell.send(Some(outcome));
        });
        Self {
            name: name.to_owned(),
            abort,
            ended,
            stop: Some(stop),
        }
    }

    /// The name the task was spawned under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Ok` while the task runs; once it has ended, [`Error::ControllerStopped`] saying why.
    pub fn check(&self) -> Result<()> {
        match self.ended.borrow().as_ref() {
            None => Ok(()),
            Some(Ended::Returned) => Err(self.stopped("it returned without being asked to stop")),
            Some(Ended::Failed(reason)) => Err(self.stopped(reason)),
        }
    }

    /// Asks the controller to stop (completes its [`Shutdown`] future) and waits until it has;
    /// fails if it had failed before, or fails while stopping. A controller stopped by other
    /// means (its runtime's shutdown) that returned `Ok` stopped cleanly.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let mut ended = self.ended.clone();
        let outcome = ended
            .wait_for(Option::is_some)
            .await
            .map(|o| o.clone())
            .map_err(|_| self.stopped("its watcher went away"))?;
        match outcome {
            Some(Ended::Failed(reason)) => Err(self.stopped(&reason)),
            _ => Ok(()),
        }
    }

    fn stopped(&self, reason: &str) -> Error {
        Error::ControllerStopped {
            name: self.name.clone(),
            reason: reason.to_owned(),
        }
    }
}

impl Drop for ControllerTask {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

/// Why a task ended without returning: its panic message, or that it was cancelled.
fn join_failure(join: JoinError) -> String {
    if !join.is_panic() {
        return "it was cancelled".to_owned();
    }
    let payload = join.into_panic();
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned());
    format!("it panicked: {message}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn ended(task: &ControllerTask) -> String {
        crate::wait_for("the task to end", Duration::from_secs(5), || {
            let ended = task.check().err().map(|e| e.to_string());
            async move { Ok::<_, String>(ended) }
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_task_that_fails_is_reported_with_its_error() {
        let task = ControllerTask::spawn("failing", async { Err::<(), _>("no watch permission") });
        let message = ended(&task).await;
        assert!(
            message.contains("failing") && message.contains("no watch permission"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_task_that_panics_is_reported_with_the_panic_message() {
        let task = ControllerTask::spawn("panicking", async {
            if true {
                panic!("reflector exploded");
            }
            Ok::<(), String>(())
        });
        let message = ended(&task).await;
        assert!(message.contains("reflector exploded"), "{message}");
    }

    #[tokio::test]
    async fn a_running_task_checks_ok_and_stops_when_asked() {
        let task = ControllerTask::spawn_stoppable("idle", |shutdown| async move {
            shutdown.await;
            Ok::<(), String>(())
        });
        assert!(task.check().is_ok());
        task.stop().await.unwrap();
    }

    #[tokio::test]
    async fn a_task_that_returns_unasked_is_reported() {
        let task = ControllerTask::spawn("quitter", async { Ok::<(), String>(()) });
        let message = ended(&task).await;
        assert!(message.contains("without being asked"), "{message}");
    }
}
