//! Lease leader election against the real test apiserver.

// Test helpers panic on setup failures by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use plumb_e2e_support::TestNamespace;
use plumb_ops::{LeaderElector, LeaderError, LeaseConfig};

/// The production defaults' lease and renew deadline: with a few seconds, a renew delayed by a
/// loaded machine lost the Lease on its own, and a second candidate could take a Lease the first
/// still meant to hold.
fn config(ns: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: ns.to_owned(),
        name: "plumb-test".to_owned(),
        identity: identity.to_owned(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(1),
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
    let a = Arc::new(LeaderElector::new(
        ns.client().clone(),
        config(ns.name(), "a"),
    ));
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

/// Who held leadership when, as the work itself saw it (by this process's monotonic clock).
#[derive(Default)]
struct Terms {
    active: std::sync::Mutex<(usize, usize)>,
    log: std::sync::Mutex<Vec<(String, &'static str, tokio::time::Instant)>>,
}

impl Terms {
    fn enter(&self, who: &str) {
        let mut a = self.active.lock().unwrap();
        a.0 += 1;
        a.1 = a.1.max(a.0);
        self.log
            .lock()
            .unwrap()
            .push((who.to_owned(), "start", tokio::time::Instant::now()));
    }

    fn leave(&self, who: &str) {
        self.active.lock().unwrap().0 -= 1;
        self.log
            .lock()
            .unwrap()
            .push((who.to_owned(), "end", tokio::time::Instant::now()));
    }

    /// The most leaders that ever worked at once.
    fn most_at_once(&self) -> usize {
        self.active.lock().unwrap().1
    }

    fn started(&self, who: &str) -> Option<tokio::time::Instant> {
        let log = self.log.lock().unwrap();
        log.iter()
            .find(|(w, what, _)| w == who && *what == "start")
            .map(|e| e.2)
    }

    fn ended(&self, who: &str) -> Option<tokio::time::Instant> {
        let log = self.log.lock().unwrap();
        log.iter()
            .find(|(w, what, _)| w == who && *what == "end")
            .map(|e| e.2)
    }

    fn leaders(&self) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|(_, what, _)| *what == "start")
            .map(|e| e.0.clone())
            .collect()
    }
}

/// Work that records its term in `terms` until it is dropped (leadership lost, or the process
/// killed).
async fn lead(terms: Arc<Terms>, who: String) {
    struct Term(Arc<Terms>, String);
    impl Drop for Term {
        fn drop(&mut self) {
            self.0.leave(&self.1);
        }
    }
    terms.enter(&who);
    let _term = Term(terms, who);
    std::future::pending::<()>().await;
}

fn replica(
    client: kube::Client,
    ns: &str,
    who: &str,
    terms: &Arc<Terms>,
) -> tokio::task::JoinHandle<Result<(), LeaderError>> {
    let elector = LeaderElector::new(client, config(ns, who));
    let work = lead(terms.clone(), who.to_owned());
    tokio::spawn(async move { elector.run(work).await })
}

async fn wait_for_leaders(terms: &Terms, n: usize) -> Vec<String> {
    plumb_e2e_support::wait_for(
        &format!("{n} leadership terms"),
        Duration::from_secs(60),
        || async {
            let leaders = terms.leaders();
            Ok::<_, kube::Error>((leaders.len() >= n).then_some(leaders))
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_replica_takes_over_after_the_leader_is_killed_and_never_two_lead_at_once() {
    let ns = TestNamespace::new("ops-lease-kill").await.unwrap();
    let terms = Arc::new(Terms::default());
    let mut replicas: std::collections::BTreeMap<String, _> = ["a", "b", "c"]
        .into_iter()
        .map(|who| {
            (
                who.to_owned(),
                replica(ns.client().clone(), ns.name(), who, &terms),
            )
        })
        .collect();
    let first = wait_for_leaders(&terms, 1).await.remove(0);
    let leases: kube::Api<Lease> = ns.api();
    let before = leases.get("plumb-test").await.unwrap().spec.unwrap();
    assert_eq!(before.holder_identity.as_deref(), Some(first.as_str()));

    // Kill the leader: no release, its Lease stays as it was last renewed.
    let killed_at = tokio::time::Instant::now();
    replicas.remove(&first).unwrap().abort();
    let leaders = wait_for_leaders(&terms, 2).await;
    let second = leaders[1].clone();
    assert_ne!(second, first, "another replica took over");
    let after = leases.get("plumb-test").await.unwrap().spec.unwrap();
    assert_eq!(after.holder_identity.as_deref(), Some(second.as_str()));
    assert_eq!(
        after.lease_transitions,
        before.lease_transitions.map(|t| t + 1)
    );
    assert_eq!(terms.most_at_once(), 1, "never two leaders at once");
    let took = terms.started(&second).unwrap() - killed_at;
    println!(
        "replica {second} took over {took:?} after leader {first} was killed (lease duration {:?}, retry period {:?})",
        config(ns.name(), "").lease_duration,
        config(ns.name(), "").retry_period
    );
    for (_, task) in replicas {
        task.abort();
    }
    ns.delete().await.unwrap();
}

/// A TCP proxy to the API server that can be cut: afterwards it holds every connection open
/// without forwarding a byte, as a network partition does.
struct Partition {
    addr: std::net::SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    links: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Partition {
    async fn to(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let links: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (c, l) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let cut = c.clone();
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if cut.load(std::sync::atomic::Ordering::SeqCst) {
                        // Partitioned: keep the socket, answer nothing.
                        std::future::pending::<()>().await;
                    }
                    if let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                l.lock().unwrap().push(link);
            }
        });
        Self { addr, cut, links }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Ends the partition: the connections held meanwhile are closed (their clients open new
    /// ones), and new connections are forwarded again.
    fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// A kube client whose connections go through the partition.
    fn client(&self, config: &kube::Config) -> (kube::Client, kube::Config) {
        let mut via_proxy = config.clone();
        let mut parts = config.cluster_url.clone().into_parts();
        parts.authority = Some(self.addr.to_string().parse().unwrap());
        via_proxy.cluster_url = http::Uri::from_parts(parts).unwrap();
        if via_proxy.tls_server_name.is_none() {
            via_proxy.tls_server_name = config.cluster_url.host().map(str::to_owned);
        }
        (
            kube::Client::try_from(via_proxy.clone()).unwrap(),
            via_proxy,
        )
    }
}

fn upstream_of(config: &kube::Config) -> String {
    format!(
        "{}:{}",
        config.cluster_url.host().unwrap(),
        config.cluster_url.port_u16().unwrap_or(443)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_cut_off_from_the_api_server_stops_before_another_takes_over() {
    let ns = TestNamespace::new("ops-lease-cut").await.unwrap();
    let terms = Arc::new(Terms::default());
    let config = plumb_e2e_support::kube_config().await.unwrap();
    let partition = Partition::to(upstream_of(&config)).await;
    let (cut_off, _) = partition.client(&config);

    let a = replica(cut_off, ns.name(), "a", &terms);
    assert_eq!(wait_for_leaders(&terms, 1).await, ["a"]);
    let b = replica(ns.client().clone(), ns.name(), "b", &terms);
    // b sees the Lease held and renewed; then a loses the API server.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cut_at = tokio::time::Instant::now();
    partition.cut();
    let out = tokio::time::timeout(Duration::from_secs(60), a)
        .await
        .expect("the cut-off leader stops")
        .unwrap();
    assert!(matches!(out, Err(LeaderError::Lost(_))), "{out:?}");
    assert_eq!(wait_for_leaders(&terms, 2).await, ["a", "b"]);
    let (a_end, b_start) = (terms.ended("a").unwrap(), terms.started("b").unwrap());
    assert!(a_end < b_start, "a stopped before b started");
    assert_eq!(terms.most_at_once(), 1, "never two leaders at once");
    println!(
        "cut-off leader stopped {:?} after the cut; the other took over {:?} after that ({:?} after the cut)",
        a_end - cut_at,
        b_start - a_end,
        b_start - cut_at
    );
    b.abort();
    ns.delete().await.unwrap();
}

/// A controller runtime with leader election on, for the Lease `plumb-test-controller` in `ns`,
/// with the production timings.
fn runtime(client: kube::Client, config: kube::Config, ns: &str) -> plumb_ops::Runtime {
    let flags = plumb_ops::LeaderElectionFlags {
        enabled: true,
        namespace: ns.to_owned(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(1),
    };
    plumb_ops::Runtime::with_client(client, config, flags).unwrap()
}

/// Runs a controller in `runtime` whose every term records itself in `terms` as `who`.
fn controller(
    runtime: &plumb_ops::Runtime,
    who: &str,
    terms: &Arc<Terms>,
) -> tokio::task::JoinHandle<Result<(), plumb_ops::RuntimeError>> {
    let (runtime, who, terms) = (runtime.clone(), who.to_owned(), terms.clone());
    tokio::spawn(async move {
        runtime
            .lead(
                "plumb-test-controller",
                &plumb_ops::WatchScope::default(),
                |_ready| {
                    let (work, stopped) = (lead(terms.clone(), who.clone()), runtime.stopped());
                    async move {
                        tokio::select! {
                            () = work => {}
                            () = stopped => {}
                        }
                        Ok(())
                    }
                },
            )
            .await
    })
}

/// An API-server outage longer than the renew deadline, as the controllers live through it:
/// the cut-off leader stops its work (its term ends) but the process goes on, standing by; a
/// reachable replica takes over once the Lease has expired; when the partition heals, the old
/// leader stands by while the other holds the Lease, and leads again (a new term, in the same
/// process) as soon as that one steps down. Never two terms at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_cut_off_stops_its_work_stands_by_and_leads_again() {
    let ns = TestNamespace::new("ops-lease-again").await.unwrap();
    let terms = Arc::new(Terms::default());
    let config = plumb_e2e_support::kube_config().await.unwrap();
    let partition = Partition::to(upstream_of(&config)).await;
    let (cut_off, via_proxy) = partition.client(&config);
    let a_runtime = runtime(cut_off, via_proxy, ns.name());
    let b_runtime = runtime(ns.client().clone(), config.clone(), ns.name());

    let a = controller(&a_runtime, "a", &terms);
    assert_eq!(wait_for_leaders(&terms, 1).await, ["a"]);
    let b = controller(&b_runtime, "b", &terms);
    partition.cut();
    // a's term ends at its renew deadline; b's begins once the Lease expired by its clock.
    assert_eq!(wait_for_leaders(&terms, 2).await, ["a", "b"]);
    assert!(terms.ended("a").unwrap() < terms.started("b").unwrap());
    assert!(
        !a.is_finished(),
        "the cut-off runtime stands by instead of returning"
    );
    let metrics = a_runtime.metrics().encode();
    assert!(
        metrics.contains("plumb_leader_terms_lost_total{controller=\"plumb-test-controller\"} 1"),
        "{metrics}"
    );

    // Reachable again: a finds the Lease held by b and only stands by. Its client reads the
    // Lease again; while b renews it twice more (a retries every second), a starts no term.
    partition.heal();
    let through_a: kube::Api<Lease> = kube::Api::namespaced(a_runtime.client().clone(), ns.name());
    let renewals = std::sync::Mutex::new(Vec::new());
    plumb_e2e_support::wait_for(
        "b renews its Lease twice while a reaches the API server again",
        Duration::from_secs(60),
        || async {
            let spec = through_a.get("plumb-test-controller").await?.spec.unwrap();
            assert_eq!(spec.holder_identity.as_deref(), Some(b_runtime.identity()));
            let mut seen = renewals.lock().unwrap();
            if seen.last() != Some(&spec.renew_time) {
                seen.push(spec.renew_time);
            }
            Ok::<_, kube::Error>((seen.len() >= 3).then_some(()))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        terms.leaders(),
        ["a", "b"],
        "a stood by while b held the Lease"
    );

    // b steps down (shutdown releases the Lease): a leads again, in the same process.
    b_runtime.shutdown();
    b.await.unwrap().unwrap();
    assert_eq!(wait_for_leaders(&terms, 3).await, ["a", "b", "a"]);
    assert_eq!(terms.most_at_once(), 1, "never two terms at once");
    let metrics = a_runtime.metrics().encode();
    assert!(
        metrics.contains("plumb_leader{controller=\"plumb-test-controller\"} 1"),
        "{metrics}"
    );
    a_runtime.shutdown();
    a.await.unwrap().unwrap();
    ns.delete().await.unwrap();
}
