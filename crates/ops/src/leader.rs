//! Leader election by a `coordination.k8s.io/v1` Lease, so only one replica of a controller
//! reconciles at a time.
//!
//! The rules, as client-go has them:
//! - A candidate judges a Lease expired by its **own monotonic clock**: it remembers when it
//!   first saw the Lease's current record (its resourceVersion) and takes the Lease over only
//!   once that record has stayed unchanged for the holder's `leaseDurationSeconds`. Wall clocks
//!   of different machines are never compared.
//! - The holder renews every `retry_period`, and gives up as soon as it has not renewed for
//!   `renew_deadline` (shorter than the lease duration), counting from the *start* of its last
//!   successful renewal. A candidate waits the whole lease duration from *after* that renewal
//!   reached the API server, so the old holder has stopped before a new one starts.
//! - Updates carry the Lease's resourceVersion, so two candidates racing for one Lease cannot
//!   both win; each API call is bounded by the renew deadline, so a hung request cannot keep
//!   a holder acting past it.
//! - Identities are unique per process ([`process_identity`]), so a restarted container never
//!   mistakes its predecessor's Lease for its own.
//!
//! When leadership ends, [`LeaderElector::run`] drops the work and returns
//! [`LeaderError::Lost`]: the process should exit and be restarted rather than act without the
//! Lease. On a clean finish the Lease is released so a successor starts at once.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::time::Instant;

/// The leader election flags every controller takes (Flux's spelling).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LeaderElectionFlags {
    /// Reconcile only while holding the leader Lease (`config/` turns it on; one replica needs
    /// none).
    #[arg(
        id = "enable_leader_election",
        long = "enable-leader-election",
        alias = "leader-election",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub enabled: bool,
    /// Namespace of the leader Lease.
    #[arg(
        id = "leader_election_namespace",
        long = "leader-election-namespace",
        env = "POD_NAMESPACE",
        default_value = "plumb-system"
    )]
    pub namespace: String,
    /// How long a Lease stays valid without renewal: how long a candidate waits before taking
    /// over from a holder that stopped renewing (e.g. `15s`).
    #[arg(long = "leader-election-lease-duration", value_parser = parse_duration, default_value = "15s")]
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives up leadership; below the
    /// lease duration.
    #[arg(long = "leader-election-renew-deadline", value_parser = parse_duration, default_value = "10s")]
    pub renew_deadline: Duration,
    /// How often the holder renews and a candidate retries.
    #[arg(long = "leader-election-retry-period", value_parser = parse_duration, default_value = "2s")]
    pub retry_period: Duration,
}

impl Default for LeaderElectionFlags {
    fn default() -> Self {
        Self {
            enabled: false,
            namespace: "plumb-system".to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaderElectionFlags {
    /// Checks that the timings can keep two leaders apart: retry period < renew deadline <
    /// lease duration.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "--leader-election-renew-deadline ({:?}) must be shorter than --leader-election-lease-duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(format!(
                "--leader-election-retry-period ({:?}) must be above zero and shorter than --leader-election-renew-deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }

    /// The Lease `name` in this namespace, held as `identity`, with these timings.
    pub fn lease(&self, name: String, identity: String) -> LeaseConfig {
        LeaseConfig {
            namespace: self.namespace.clone(),
            name,
            identity,
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
        }
    }
}

/// Parses a duration as Go and Flux write them: `15s`, `1m30s`, `500ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 15s or 1m30s: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("{s:?}: a duration cannot be negative"))
}

/// A leader election identity unique to this process: the pod (or host) name, then a random
/// suffix, as client-go does. Two processes never share one, not even a restarted container
/// in the same pod.
pub fn process_identity() -> String {
    use std::hash::{BuildHasher, Hasher};
    let base = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "plumb".to_owned());
    // RandomState is seeded from the OS per process; time and pid make it unique even if not.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{base}_{:016x}", h.finish())
}

/// Which Lease to hold and for how long.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease, e.g. `plumb-source-controller`.
    pub name: String,
    /// This candidate's identity, unique per process.
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How long the holder tries to renew before giving up; below `lease_duration`.
    pub renew_deadline: Duration,
    /// How often the holder renews and a candidate retries.
    pub retry_period: Duration,
}

/// Why leadership ended.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be renewed within the renew deadline or was taken by another
    /// candidate.
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
    /// A Lease operation did not finish within the renew deadline.
    #[error("leader election lease {0}: the API server did not answer within the renew deadline")]
    Timeout(String),
}

/// The Lease record last seen, and when (by this process's monotonic clock).
struct Observed {
    resource_version: Option<String>,
    at: Instant,
}

/// Acquires, renews and releases one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Mutex<Option<Observed>>,
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
            observed: Mutex::new(None),
        }
    }

    /// The Lease this elector competes for.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    fn api_err(&self) -> impl FnOnce(kube::Error) -> LeaderError + '_ {
        |source| LeaderError::Api {
            name: self.config.name.clone(),
            source,
        }
    }

    /// Records `lease`'s record as seen now unless it is the one already seen; returns how long
    /// it has stayed unchanged.
    fn unchanged_for(&self, lease: &Lease) -> Duration {
        let rv = lease.metadata.resource_version.clone();
        let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        match observed.as_ref() {
            Some(o) if o.resource_version == rv => o.at.elapsed(),
            _ => {
                *observed = Some(Observed {
                    resource_version: rv,
                    at: Instant::now(),
                });
                Duration::ZERO
            }
        }
    }

    /// One attempt, bounded by the renew deadline: creates the Lease, renews it when held, or
    /// takes it over when released or expired by this process's clock. Returns whether this
    /// candidate holds it now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaderError> {
        tokio::time::timeout(self.config.renew_deadline, self.attempt())
            .await
            .map_err(|_| LeaderError::Timeout(self.config.name.clone()))?
    }

    async fn attempt(&self) -> Result<bool, LeaderError> {
        let duration = i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(15);
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
        let unchanged = self.unchanged_for(&lease);
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let held_for = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        if holder.as_ref() == Some(me) {
            spec.renew_time = Some(now());
            spec.lease_duration_seconds = Some(duration);
        } else if holder.is_none() || unchanged >= held_for {
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

    /// Waits until this candidate holds the Lease, retrying every `retry_period`. Returns when
    /// the successful attempt started: the holder's renew deadline counts from there.
    pub async fn acquire(&self) -> Instant {
        loop {
            let started = Instant::now();
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    return started;
                }
                Ok(false) => {
                    tracing::debug!(lease = %self.config.name, "lease held by another candidate")
                }
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the held Lease every `retry_period` until another candidate holds it or no
    /// renewal has succeeded for `renew_deadline` since the start of the last successful one
    /// (`renewed`); then returns the reason.
    pub async fn hold(&self, mut renewed: Instant) -> LeaderError {
        let lost = || LeaderError::Lost(self.config.name.clone());
        loop {
            let deadline = renewed + self.config.renew_deadline;
            let next = (Instant::now() + self.config.retry_period).min(deadline);
            tokio::time::sleep_until(next).await;
            let started = Instant::now();
            if started >= deadline {
                return lost();
            }
            match tokio::time::timeout_at(deadline, self.attempt()).await {
                Err(_) => return lost(),
                Ok(Ok(true)) => renewed = started,
                Ok(Ok(false)) => return lost(),
                Ok(Err(e)) => tracing::warn!(error = %e, "renewing leader lease failed"),
            }
        }
    }

    /// Gives the Lease up (clears the holder) so another candidate can take over at once.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let release = async {
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
        };
        tokio::time::timeout(self.config.renew_deadline, release)
            .await
            .map_err(|_| LeaderError::Timeout(self.config.name.clone()))?
    }

    /// Runs `work` while holding the Lease: waits to acquire it, then runs `work` and renews
    /// concurrently. Returns `work`'s output (after releasing the Lease), or
    /// [`LeaderError::Lost`] as soon as the Lease is lost, dropping `work`.
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, LeaderError> {
        let renewed = self.acquire().await;
        tokio::select! {
            out = work => {
                if let Err(e) = self.release().await {
                    tracing::warn!(error = %e, "releasing leader lease failed");
                }
                Ok(out)
            }
            lost = self.hold(renewed) => {
                tracing::error!(error = %lost, "leadership lost, stopping");
                Err(lost)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_flux_writes_them() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn timings_must_keep_the_renew_deadline_below_the_lease_duration() {
        let ok = LeaderElectionFlags::default();
        assert_eq!(ok.validate(), Ok(()));
        let late = LeaderElectionFlags {
            renew_deadline: ok.lease_duration,
            ..ok.clone()
        };
        assert!(late.validate().is_err());
        let busy = LeaderElectionFlags {
            retry_period: ok.renew_deadline,
            ..ok.clone()
        };
        assert!(busy.validate().is_err());
    }

    #[test]
    fn identities_differ_per_call_and_name_the_pod() {
        let a = process_identity();
        let b = process_identity();
        assert_ne!(a, b);
        let base = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "plumb".to_owned());
        assert!(a.starts_with(&format!("{base}_")), "{a}");
    }
}
