//! Leader election by a `coordination.k8s.io/v1` Lease, so only one replica of a controller
//! reconciles at a time.
//!
//! The holder renews the Lease every `renew_period`; another candidate takes it over only after
//! `lease_duration` has passed without a renewal. Updates use the Lease's resourceVersion, so two
//! candidates racing for an expired Lease cannot both win. When the holder cannot renew for a
//! whole `lease_duration` (or finds another holder), [`LeaderElector::run`] stops the work and
//! returns [`LeaderError::Lost`]: the process should exit and be restarted, as client-go does,
//! rather than keep acting without the Lease. On a clean finish the Lease is released.

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

/// Which Lease to hold and for how long.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease, e.g. `plumb-source-controller`.
    pub name: String,
    /// This candidate's identity, unique per replica (usually the pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews (and a candidate retries).
    pub renew_period: Duration,
}

/// Why leadership ended.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be renewed in time or was taken by another candidate.
    #[error("leader election lease {0} lost")]
    Lost(String),
    /// The API server refused a Lease operation.
    #[error("leader election lease {name}: {source}")]
    Api {
        /// The Lease name.
        name: String,
        /// The underlying error.
        source: kube::Error,
    },
}

/// Acquires, renews and releases one Lease.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl LeaderElector {
    /// An elector for `config`'s Lease.
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    fn api_err(&self) -> impl FnOnce(kube::Error) -> LeaderError + '_ {
        |source| LeaderError::Api {
            name: self.config.name.clone(),
            source,
        }
    }

    fn expired(&self, spec: &LeaseSpec) -> bool {
        let Some(MicroTime(renewed)) = spec.renew_time else {
            return true;
        };
        let secs = spec
            .lease_duration_seconds
            .map(i64::from)
            .unwrap_or(self.config.lease_duration.as_secs() as i64);
        renewed.as_second() + secs < Timestamp::now().as_second()
    }

    /// One attempt: creates the Lease, renews it when held, or takes it over when expired or
    /// released. Returns whether this candidate holds it now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaderError> {
        let duration = self.config.lease_duration.as_secs().max(1) as i32;
        let me = &self.config.identity;
        let existing = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(self.api_err())?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.api_err()(e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if holder.as_ref() == Some(me) {
            spec.renew_time = Some(now());
            spec.lease_duration_seconds = Some(duration);
        } else if holder.is_none() || self.expired(spec) {
            spec.holder_identity = Some(me.clone());
            spec.acquire_time = Some(now());
            spec.renew_time = Some(now());
            spec.lease_duration_seconds = Some(duration);
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        } else {
            return Ok(false);
        }
        // The resourceVersion in `lease` makes this a compare-and-swap.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.api_err()(e)),
        }
    }

    /// Waits until this candidate holds the Lease, retrying every `renew_period`.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    return;
                }
                Ok(false) => {
                    tracing::debug!(lease = %self.config.name, "lease held by another candidate")
                }
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.config.renew_period).await;
        }
    }

    /// Renews the held Lease until renewal fails for longer than `lease_duration` or another
    /// candidate holds it; then returns the reason.
    pub async fn hold(&self) -> LeaderError {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.renew_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => return LeaderError::Lost(self.config.name.clone()),
                Err(e) => tracing::warn!(error = %e, "renewing leader lease failed"),
            }
            // Stop a little before the Lease expires so two leaders never overlap.
            if last_renewed.elapsed() + self.config.renew_period >= self.config.lease_duration {
                return LeaderError::Lost(self.config.name.clone());
            }
        }
    }

    /// Gives the Lease up (clears the holder) so another candidate can take over at once.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(self.api_err())?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
            .map_err(self.api_err())
    }

    /// Runs `work` while holding the Lease: waits to acquire it, then runs `work` and renews
    /// concurrently. Returns `work`'s output (after releasing the Lease), or
    /// [`LeaderError::Lost`] as soon as the Lease is lost, dropping `work`.
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, LeaderError> {
        self.acquire().await;
        tokio::select! {
            out = work => {
                if let Err(e) = self.release().await {
                    tracing::warn!(error = %e, "releasing leader lease failed");
                }
                Ok(out)
            }
            lost = self.hold() => {
                tracing::error!(error = %lost, "leadership lost, stopping");
                Err(lost)
            }
        }
    }
}
