//! Lease leader election against the real test apiserver.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use plumb_e2e_support::TestNamespace;
use plumb_ops::{LeaderElector, LeaderError, LeaseConfig};

fn config(ns: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: ns.to_owned(),
        name: "plumb-test".to_owned(),
        identity: identity.to_owned(),
        lease_duration: Duration::from_secs(3),
        renew_period: Duration::from_millis(500),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_holder_at_a_time_and_release_hands_over() {
    let ns = TestNamespace::new("ops-lease").await.unwrap();
    let a = LeaderElector::new(ns.client().clone(), config(ns.name(), "a"));
    let b = LeaderElector::new(ns.client().clone(), config(ns.name(), "b"));
    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "first candidate creates and holds the Lease"
    );
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "second candidate waits"
    );
    assert!(a.try_acquire_or_renew().await.unwrap(), "holder renews");
    let leases: kube::Api<Lease> = ns.api();
    let lease = leases.get("plumb-test").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("a"));

    a.release().await.unwrap();
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "released Lease is taken at once"
    );
    let lease = leases.get("plumb-test").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("b"));
    assert_eq!(lease.lease_transitions, Some(1));
    ns.delete().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn work_stops_with_lost_when_another_candidate_takes_the_lease() {
    let ns = TestNamespace::new("ops-lease-lost").await.unwrap();
    let a = LeaderElector::new(ns.client().clone(), config(ns.name(), "a"));
    let leases: kube::Api<Lease> = ns.api();
    let runner = {
        let a = a.clone();
        tokio::spawn(async move { a.run(std::future::pending::<()>()).await })
    };
    plumb_e2e_support::wait_for("a holds the lease", Duration::from_secs(30), || {
        let leases = leases.clone();
        async move {
            let held = leases
                .get_opt("plumb-test")
                .await?
                .and_then(|l| l.spec?.holder_identity);
            Ok::<_, kube::Error>((held.as_deref() == Some("a")).then_some(()))
        }
    })
    .await
    .unwrap();
    // Someone else overwrites the holder (as an expired-lease takeover would).
    let patch = serde_json::json!({"spec": {"holderIdentity": "intruder"}});
    leases
        .patch(
            "plumb-test",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), runner)
        .await
        .expect("work stopped")
        .unwrap();
    assert!(matches!(out, Err(LeaderError::Lost(_))), "{out:?}");
    ns.delete().await.unwrap();
}
