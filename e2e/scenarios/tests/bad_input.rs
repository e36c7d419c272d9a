//! The `bad-input` suite: hostile repositories, tarballs, Secrets, GitRepository and Sync specs
//! and HTTP requests against the three real controllers on the test cluster. Each input must
//! cost only its own object a clear condition: the controllers keep running (no exit, no panic
//! in their logs), stay under the memory limits `config/` gives them, and a healthy canary Sync
//! in the same namespace keeps applying new commits throughout.
//!
//! The closing table (`cargo test -p plumb-e2e-scenarios --test bad_input -- --nocapture`)
//! lists each input, what happened, and the peak resident set of the controllers meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, Sync};
use plumb_e2e_scenarios::{Controller, Controllers, GitFixture, SCOPE_LABEL, noise};
use plumb_e2e_support::{FileServer, TestNamespace, wait_for};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(90);

/// The memory limits `config/` sets per controller, in KiB: the suite's ceiling.
const MEMORY_LIMIT_KIB: [(Controller, u64); 3] = [
    (Controller::Source, 512 << 10),
    (Controller::Render, 1 << 20),
    (Controller::Sync, 1 << 20),
];

/// The source limits the suite runs with, low enough to cross with small repositories.
const MAX_FETCH: u64 = 8 << 20;
const MAX_BLOB: u64 = 1 << 20;
const MAX_TREE_ENTRIES: u64 = 2000;
const MAX_ARTIFACT: u64 = 4 << 20;

/// A value planted in Secrets and repositories that must never show up in a condition, an
/// Event or a controller log.
const PLANTED: &str = "pl4nted-s3cret-value";

/// What a case expects of one condition.
struct Expect {
    condition: &'static str,
    status: &'static str,
    /// Accepted reasons (any one; any reason when empty).
    reasons: Vec<&'static str>,
    /// Text the message must contain (each, case-insensitively).
    contains: Vec<String>,
}

fn expect(
    condition: &'static str,
    status: &'static str,
    reasons: &[&'static str],
    contains: &[&str],
) -> Expect {
    Expect {
        condition,
        status,
        reasons: reasons.to_vec(),
        contains: contains.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn satisfies(c: &Condition, e: &Expect) -> bool {
    let message = c.message.to_lowercase();
    c.type_ == e.condition
        && c.status == e.status
        && (e.reasons.is_empty() || e.reasons.contains(&c.reason.as_str()))
        && e.contains
            .iter()
            .all(|s| message.contains(&s.to_lowercase()))
}

fn describe(c: &Condition) -> String {
    let mut message: String = c.message.chars().take(140).collect();
    if c.message.chars().count() > 140 {
        message.push('…');
    }
    format!("{}={} {}: {message}", c.type_, c.status, c.reason)
}

/// One row of the closing table.
struct Row {
    input: String,
    outcome: String,
    peak_kib: BTreeMap<Controller, u64>,
    ok: bool,
}

/// The controllers, the namespace, the canary and the table.
struct Suite {
    ns: TestNamespace,
    controllers: Controllers,
    canary: GitFixture,
    canary_value: u32,
    rows: Vec<Row>,
    failures: Vec<String>,
}

impl Suite {
    async fn start() -> Self {
        let ns = TestNamespace::new("bad-input").await.unwrap();
        plumb_e2e_support::install_crds(ns.client()).await.unwrap();
        let flags = BTreeMap::from([(
            Controller::Source,
            vec![
                format!("--max-fetch-size={MAX_FETCH}"),
                format!("--max-blob-size={MAX_BLOB}"),
                format!("--max-tree-entries={MAX_TREE_ENTRIES}"),
                format!("--max-artifact-size={MAX_ARTIFACT}"),
            ],
        )]);
        let controllers = Controllers::start_with_flags(ns.name(), flags).unwrap();
        let canary = GitFixture::new().await.unwrap();
        let mut suite = Self {
            ns,
            controllers,
            canary,
            canary_value: 0,
            rows: Vec::new(),
            failures: Vec::new(),
        };
        suite.create_canary().await;
        suite
    }

    fn repos(&self) -> Api<GitRepository> {
        self.ns.api()
    }

    fn syncs(&self) -> Api<Sync> {
        self.ns.api()
    }

    async fn create_canary(&mut self) {
        self.canary
            .write("canary/cm.yaml", &config_map("canary", "0"))
            .unwrap();
        self.canary.commit("canary 0").unwrap();
        let secrets: Api<Secret> = self.ns.api();
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "canary-hook"},
                    "stringData": {"token": PLANTED}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let url = self.canary.url();
        self.create_repo(
            "canary",
            json!({"url": url, "interval": "1h", "webhook": {"secretRef": {"name": "canary-hook"}}}),
        )
        .await;
        self.create_sync(
            "canary",
            json!({"sourceRef": {"kind": "GitRepository", "name": "canary"}, "path": "./canary"}),
        )
        .await;
        self.wait_canary("0").await;
    }

    async fn create_repo(&self, name: &str, spec: Value) {
        self.try_create_repo(name, spec).await.unwrap();
    }

    /// Creates a GitRepository; Err with the API server's message when admission refused it.
    async fn try_create_repo(&self, name: &str, spec: Value) -> Result<(), String> {
        let mut full = json!({"ref": {"branch": "main"}, "interval": "1h", "timeout": "20s"});
        merge(&mut full, spec);
        let obj: GitRepository = serde_json::from_value(json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
            "metadata": {"name": name}, "spec": full
        }))
        .unwrap();
        match self.repos().create(&PostParams::default(), &obj).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 422 => Err(e.message),
            Err(e) => panic!("creating GitRepository {name}: {e}"),
        }
    }

    async fn create_sync(&self, name: &str, spec: Value) {
        let mut full = json!({"interval": "10m", "prune": true, "targetNamespace": self.ns.name()});
        merge(&mut full, spec);
        let obj: Sync = serde_json::from_value(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": {"name": name, "labels": {SCOPE_LABEL: self.ns.name()}},
            "spec": full
        }))
        .unwrap();
        self.syncs()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }

    /// Commits a new canary value and waits until the canary Sync applied it: proof that the
    /// controllers still serve everyone else.
    async fn check_canary(&mut self) {
        self.canary_value += 1;
        let v = self.canary_value.to_string();
        self.canary
            .write("canary/cm.yaml", &config_map("canary", &v))
            .unwrap();
        self.canary.commit(&format!("canary {v}")).unwrap();
        let patch = json!({"metadata": {"annotations": {plumb_api::REQUESTED_AT_ANNOTATION: v}}});
        self.repos()
            .patch("canary", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        self.wait_canary(&v).await;
    }

    async fn wait_canary(&self, value: &str) {
        let cms: Api<ConfigMap> = self.ns.api();
        let got = wait_for(&format!("canary ConfigMap at {value}"), WAIT, || {
            let cms = cms.clone();
            async move {
                let cm = cms.get_opt("canary").await?;
                let v = cm
                    .and_then(|c| c.data)
                    .and_then(|d| d.get("value").cloned());
                Ok::<_, kube::Error>((v.as_deref() == Some(value)).then_some(()))
            }
        })
        .await;
        if let Err(e) = got {
            panic!(
                "the canary Sync stopped reconciling: {e}\n{}",
                self.controllers.logs_tail(60)
            );
        }
    }

    /// Starts a case: resets the controllers' peak memory.
    fn begin(&self) {
        for c in Controller::ALL {
            self.controllers.reset_peak_rss(c);
        }
    }

    /// Ends a case: records the outcome and the peak memory, and checks that every controller
    /// is still running, logged no panic, and stayed under its memory limit.
    fn end(&mut self, input: &str, outcome: Result<String, String>) {
        let mut peak_kib = BTreeMap::new();
        let mut problems = Vec::new();
        for (c, limit) in MEMORY_LIMIT_KIB {
            if let Some(status) = self.controllers.exited(c) {
                problems.push(format!("{c:?} controller exited: {status}"));
            }
            if self.controllers.log(c).contains("panicked at") {
                problems.push(format!("{c:?} controller panicked"));
            }
            if let Some(kib) = self.controllers.peak_rss_kib(c) {
                if kib > limit {
                    problems.push(format!(
                        "{c:?} controller peaked at {kib} KiB > {limit} KiB"
                    ));
                }
                peak_kib.insert(c, kib);
            }
        }
        let ok = outcome.is_ok() && problems.is_empty();
        let mut text = match outcome {
            Ok(s) => s,
            Err(s) => format!("UNEXPECTED: {s}"),
        };
        for p in &problems {
            text.push_str(&format!("; {p}"));
        }
        if !ok {
            self.failures.push(format!("{input}: {text}"));
        }
        self.rows.push(Row {
            input: input.to_owned(),
            outcome: text,
            peak_kib,
            ok,
        });
    }

    /// Waits for a condition of a GitRepository to satisfy `e`.
    async fn repo_condition(&self, name: &str, e: &Expect) -> Result<String, String> {
        let api = self.repos();
        wait_condition(name, e, move |n| {
            let api = api.clone();
            async move {
                Ok(api
                    .get(&n)
                    .await?
                    .status
                    .map(|s| s.conditions)
                    .unwrap_or_default())
            }
        })
        .await
    }

    /// Waits for a condition of a Sync to satisfy `e`.
    async fn sync_condition(&self, name: &str, e: &Expect) -> Result<String, String> {
        let api = self.syncs();
        wait_condition(name, e, move |n| {
            let api = api.clone();
            async move {
                Ok(api
                    .get(&n)
                    .await?
                    .status
                    .map(|s| s.conditions)
                    .unwrap_or_default())
            }
        })
        .await
    }

    /// A GitRepository case: create it with `spec`, expect `e` on it. A spec the CRD schema
    /// refuses at admission is a clear refusal too, unless the case expects it to work.
    async fn repo_case(&mut self, input: &str, name: &str, spec: Value, e: &Expect) {
        self.begin();
        let outcome = match self.try_create_repo(name, spec).await {
            Ok(()) => self.repo_condition(name, e).await,
            Err(refusal) if e.status == "False" => Ok(format!(
                "refused by the API server: {}",
                refusal.replace(PLANTED, "***")
            )),
            Err(refusal) => Err(format!("refused by the API server: {refusal}")),
        };
        self.end(input, outcome);
    }

    /// A repository case: a GitRepository over `git` and a Sync of `path`; expect `on_repo` on
    /// the GitRepository, then (when given) `on_sync` on the Sync.
    async fn tree_case(
        &mut self,
        input: &str,
        name: &str,
        git: &GitFixture,
        path: &str,
        on_repo: &Expect,
        on_sync: Option<&Expect>,
    ) {
        self.begin();
        self.create_repo(name, json!({"url": git.url()})).await;
        let mut outcome = self.repo_condition(name, on_repo).await;
        if let (Ok(repo_said), Some(e)) = (&outcome, on_sync) {
            self.create_sync(
                name,
                json!({"sourceRef": {"kind": "GitRepository", "name": name}, "path": path}),
            )
            .await;
            outcome = self.sync_condition(name, e).await.map(|s| {
                if on_repo.status == "True" {
                    s
                } else {
                    format!("{repo_said}; {s}")
                }
            });
        }
        self.end(input, outcome);
    }

    /// A Sync case over the canary's repository with `spec` merged in; expect `e` on it.
    async fn sync_case(&mut self, input: &str, name: &str, spec: Value, e: &Expect) {
        self.begin();
        let mut full =
            json!({"sourceRef": {"kind": "GitRepository", "name": "canary"}, "path": "./canary"});
        merge(&mut full, spec);
        self.create_sync(name, full).await;
        let outcome = self.sync_condition(name, e).await;
        self.end(input, outcome);
    }

    /// Checks that `PLANTED` appears in no condition, Event or controller log.
    async fn planted_value_stays_secret(&mut self) {
        self.begin();
        let mut leaks = Vec::new();
        for repo in self.repos().list(&ListParams::default()).await.unwrap() {
            for c in repo.status.map(|s| s.conditions).unwrap_or_default() {
                if c.message.contains(PLANTED) {
                    leaks.push(format!("GitRepository {:?}", repo.metadata.name));
                }
            }
        }
        for sync in self.syncs().list(&ListParams::default()).await.unwrap() {
            for c in sync.status.map(|s| s.conditions).unwrap_or_default() {
                if c.message.contains(PLANTED) {
                    leaks.push(format!("Sync {:?}", sync.metadata.name));
                }
            }
        }
        let events: Api<Event> = self.ns.api();
        for ev in events.list(&ListParams::default()).await.unwrap() {
            if ev.message.unwrap_or_default().contains(PLANTED) {
                leaks.push(format!("Event {:?}", ev.metadata.name));
            }
        }
        for c in Controller::ALL {
            if self.controllers.log(c).contains(PLANTED) {
                leaks.push(format!("{c:?} controller log"));
            }
        }
        let outcome = if leaks.is_empty() {
            Ok("no condition, Event or log holds a planted secret value".to_owned())
        } else {
            Err(format!("leaked into {}", leaks.join(", ")))
        };
        self.end("Secret values across all cases above", outcome);
    }

    /// Prints the closing table, deletes the namespace, and fails the test when a case failed.
    async fn finish(mut self) {
        println!("{}", self.table());
        println!(
            "{} inputs; canary applied {} new commits meanwhile",
            self.rows.len(),
            self.canary_value
        );
        let failures = std::mem::take(&mut self.failures);
        let logs = self.controllers.logs_tail(30);
        let Suite { ns, .. } = self;
        ns.delete().await.unwrap();
        assert!(failures.is_empty(), "{}\n{logs}", failures.join("\n"));
    }

    fn table(&self) -> String {
        let mut out = String::from(
            "\n| # | input | what happened | peak RSS source / render / sync |\n| --- | --- | --- | --- |\n",
        );
        for (i, r) in self.rows.iter().enumerate() {
            let mib = |c| {
                r.peak_kib
                    .get(&c)
                    .map_or("?".to_owned(), |k| format!("{:.0} MiB", *k as f64 / 1024.0))
            };
            let _ = writeln!(
                out,
                "| {} | {} | {}{} | {} / {} / {} |",
                i + 1,
                r.input,
                if r.ok { "" } else { "FAILED: " },
                r.outcome.replace('|', "\\|").replace('\n', " "),
                mib(Controller::Source),
                mib(Controller::Render),
                mib(Controller::Sync),
            );
        }
        out
    }
}

async fn wait_condition<F, Fut>(name: &str, e: &Expect, get: F) -> Result<String, String>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<Vec<Condition>, kube::Error>>,
{
    let last = std::sync::Mutex::new(String::from("no conditions yet"));
    let found = wait_for(
        &format!("{name}: {} {}", e.condition, e.status),
        WAIT,
        || {
            let fut = get(name.to_owned());
            let last = &last;
            async move {
                let conds = fut.await?;
                if let Some(c) = conds.iter().find(|c| c.type_ == e.condition) {
                    *last.lock().unwrap() = describe(c);
                }
                Ok::<_, kube::Error>(conds.iter().find(|c| satisfies(c, e)).map(describe))
            }
        },
    )
    .await;
    found.map_err(|_| {
        format!(
            "expected {}={} {:?} containing {:?}; last seen {}",
            e.condition,
            e.status,
            e.reasons,
            e.contains,
            last.lock().unwrap()
        )
    })
}

fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

fn config_map(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

/// A repository with the given files (relative path → bytes), committed on `main`.
async fn repo_with<P: AsRef<std::path::Path>>(files: &[(P, Vec<u8>)]) -> GitFixture {
    let git = GitFixture::new().await.unwrap();
    for (path, bytes) in files {
        let file = git.work().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
    git.commit("hostile").unwrap();
    git
}

fn text(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

// Reasons, as the controllers write them.
const READY: &str = "Ready";
const RENDERED: &str = "Rendered";
const LIMIT: &[&str] = &["LimitExceeded"];
const BUILD: &[&str] = &["BuildFailed"];
const ARTIFACT: &[&str] = &["ArtifactFailed", "LimitExceeded"];
/// A file outside the source: refused as a build error or as access denied.
const ESCAPE: &[&str] = &["BuildFailed", "AccessDenied"];
/// What plumb refuses on purpose (remote bases, exec functions).
const REFUSED: &[&str] = &["BuildFailed", "Unsupported"];

#[tokio::test(flavor = "multi_thread")]
async fn hostile_inputs_cost_only_their_own_object_a_condition() {
    let mut s = Suite::start().await;

    durations(&mut s).await;
    s.check_canary().await;
    source_specs(&mut s).await;
    s.check_canary().await;
    trees(&mut s).await;
    s.check_canary().await;
    tarballs(&mut s).await;
    s.check_canary().await;
    sync_specs(&mut s).await;
    s.check_canary().await;
    http_requests(&mut s).await;
    s.check_canary().await;
    s.planted_value_stays_secret().await;
    s.finish().await;
}

/// Hostile post-build substitution, end to end: each Sync over a repository whose references
/// explode (a long value referenced many times, a replacement that multiplies a value,
/// references nested a hundred thousand deep, a pattern matched against every prefix of a
/// long value) must fail alone with a condition naming its object and the limit, while a
/// Sync of the same repository with the same variables, and the canary, keep reconciling.
/// The values come from a `substituteFrom` ConfigMap, as a tenant would write them.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_substitution_fails_only_its_own_sync() {
    let mut s = Suite::start().await;
    substitutions(&mut s).await;
    s.planted_value_stays_secret().await;
    s.finish().await;
}

/// References a hundred thousand deep: followed recursively, they would overflow a stack.
const NESTED: usize = 100_000;

async fn substitutions(s: &mut Suite) {
    // 900 KiB: about the most a ConfigMap holds.
    let big = "x".repeat(900 << 10);
    let (a, b) = ("a".repeat(64 << 10), "b".repeat(64 << 10));
    let cms: Api<ConfigMap> = s.ns.api();
    for (name, data) in [
        ("subst-big", json!({"BIG": big})),
        ("subst-vars", json!({"A": a, "B": b, "GREETING": "hello"})),
    ] {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap(),
        )
        .await
        .unwrap();
    }
    let cm = |name: &str, value: &str| {
        text(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: \"{value}\"\n"
        ))
    };
    let nested = format!("{}x{}", "${A:=".repeat(NESTED), "}".repeat(NESTED));
    let git = repo_with(&[
        ("huge/cm.yaml", cm("subst-huge", &"${BIG}".repeat(100))),
        ("multiply/cm.yaml", cm("subst-multiply", "${A//a/${B}}")),
        ("nested/cm.yaml", cm("subst-nested", &nested)),
        (
            "pattern/cm.yaml",
            cm("subst-pattern", "${BIG##*b*}${BIG%%*b*}"),
        ),
        ("good/cm.yaml", cm("subst-good", "${GREETING}-${A:0:3}")),
    ])
    .await;
    s.create_repo("subst", json!({"url": git.url()})).await;
    let stored = expect(READY, "True", &[], &["stored artifact"]);
    let said = s.repo_condition("subst", &stored).await;
    assert!(said.is_ok(), "the substitution repository: {said:?}");
    let spec = |path: &str, retry: &str| {
        json!({"sourceRef": {"kind": "GitRepository", "name": "subst"}, "path": path,
            "substituteFrom": [{"kind": "ConfigMap", "name": "subst-big"}, {"kind": "ConfigMap", "name": "subst-vars"}],
            "retryInterval": retry})
    };
    for (input, name, path, e) in [
        (
            "substitution: a 900 KiB value referenced 100 times (90 MiB; limit max-rendered-size 64 MiB)",
            "subst-huge",
            "./huge",
            expect(
                RENDERED,
                "False",
                LIMIT,
                &["subst-huge", "max-rendered-size"],
            ),
        ),
        (
            "substitution: ${A//a/${B}}, every byte of 64 KiB replaced by 64 KiB (4 GiB)",
            "subst-multiply",
            "./multiply",
            expect(
                RENDERED,
                "False",
                LIMIT,
                &["subst-multiply", "max-rendered-size"],
            ),
        ),
        (
            "substitution: defaults nested 100 000 deep (limit 64)",
            "subst-nested",
            "./nested",
            expect(
                RENDERED,
                "False",
                BUILD,
                &["subst-nested", "nested more than 64"],
            ),
        ),
        (
            "substitution: ${BIG##*b*} over 900 KiB (every prefix matched; limit render-timeout), retried every 5s",
            "subst-pattern",
            "./pattern",
            expect(
                RENDERED,
                "False",
                LIMIT,
                &["subst-pattern", "render-timeout"],
            ),
        ),
    ] {
        s.begin();
        s.create_sync(name, spec(path, "5s")).await;
        let outcome = s.sync_condition(name, &e).await;
        s.end(input, outcome);
        s.check_canary().await;
    }
    // The same repository and variables without hostile references render and apply, while
    // the pattern Sync above is still retried.
    s.begin();
    s.create_sync("subst-good", spec("./good", "5s")).await;
    let mut outcome = s
        .sync_condition("subst-good", &expect(READY, "True", &[], &[]))
        .await;
    if outcome.is_ok() {
        let applied = cms
            .get("subst-good")
            .await
            .ok()
            .and_then(|c| c.data)
            .and_then(|d| d.get("k").cloned());
        outcome = match applied.as_deref() {
            Some("hello-aaa") => Ok("applied hello-aaa beside the hostile Syncs".to_owned()),
            other => Err(format!("subst-good applied {other:?}, want hello-aaa")),
        };
    }
    s.end(
        "substitution: a Sync of the same repository and variables, no hostile reference",
        outcome,
    );
    s.check_canary().await;
}

/// Durations a tenant may write: absurdly long ones are clamped, zero does not spin.
async fn durations(s: &mut Suite) {
    let url = s.canary.url();
    let ready = expect(READY, "True", &[], &["stored artifact"]);
    s.repo_case(
        "GitRepository timeout: 3000000000000000h (once panicked the reconcile)",
        "dur-timeout",
        json!({"url": url, "timeout": "3000000000000000h"}),
        &ready,
    )
    .await;
    s.repo_case(
        "GitRepository interval: 3000000000000000h",
        "dur-interval",
        json!({"url": url, "interval": "3000000000000000h"}),
        &ready,
    )
    .await;
    let digits = format!("{}h", "9".repeat(300));
    s.repo_case(
        "GitRepository timeout: a 300-digit number of hours",
        "dur-digits",
        json!({"url": url, "timeout": digits}),
        &ready,
    )
    .await;
    s.repo_case(
        "GitRepository interval: 0s (polled at most once a second)",
        "dur-zero",
        json!({"url": url, "interval": "0s"}),
        &ready,
    )
    .await;
    let applied = expect(READY, "True", &[], &[]);
    for (input, name, spec) in [
        (
            "Sync timeout: 3000000000000000h with wait",
            "dur-sync-timeout",
            json!({"timeout": "3000000000000000h", "wait": true, "path": "./dur"}),
        ),
        (
            "Sync interval and retryInterval: 3000000000000000h",
            "dur-sync-interval",
            json!({"interval": "3000000000000000h", "retryInterval": "3000000000000000h", "path": "./dur2"}),
        ),
    ] {
        s.canary
            .write(
                &format!("{}/cm.yaml", spec["path"].as_str().unwrap()),
                &config_map(name, "x"),
            )
            .unwrap();
        s.check_canary().await;
        s.sync_case(input, name, spec, &applied).await;
    }
}

/// GitRepository specs and Secrets that cannot work.
async fn source_specs(s: &mut Suite) {
    s.repo_case(
        "GitRepository url: ftp:// with credentials in it",
        "spec-ftp",
        json!({"url": format!("ftp://bot:{PLANTED}@127.0.0.1/r.git")}),
        &expect(
            READY,
            "False",
            &["InvalidSpec"],
            &["unsupported URL scheme"],
        ),
    )
    .await;
    s.repo_case(
        "GitRepository url: file:///etc (not allowed)",
        "spec-file",
        json!({"url": "file:///etc"}),
        &expect(READY, "False", &["InvalidSpec"], &["file://"]),
    )
    .await;
    s.repo_case(
        "GitRepository url: a closed port",
        "spec-closed",
        json!({"url": "http://127.0.0.1:1/r.git"}),
        &expect(READY, "False", &["GitOperationFailed"], &[]),
    )
    .await;
    // A server that accepts connections and never answers: the fetch must end at `timeout`.
    let tarpit = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tarpit_addr = tarpit.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = tarpit.accept().await {
            conns.push(c);
        }
    });
    s.repo_case(
        "GitRepository url: a server that accepts and never answers, timeout: 3s",
        "spec-tarpit",
        json!({"url": format!("http://{tarpit_addr}/r.git"), "timeout": "3s"}),
        &expect(READY, "False", &["GitOperationFailed"], &["timed out"]),
    )
    .await;
    held.abort();
    let url = s.canary.url();
    s.repo_case(
        "GitRepository ref: a branch that does not exist",
        "spec-branch",
        json!({"url": url, "ref": {"branch": "no-such-branch"}}),
        &expect(READY, "False", &["RefNotFound"], &["no-such-branch"]),
    )
    .await;
    s.repo_case(
        "GitRepository ref: semver range that does not parse",
        "spec-semver",
        json!({"url": url, "ref": {"semver": ">>=1.x.y.z"}}),
        &expect(READY, "False", &["InvalidSpec"], &[]),
    )
    .await;
    s.repo_case(
        "GitRepository secretRef: a Secret that does not exist",
        "spec-nosecret",
        json!({"url": url, "secretRef": {"name": "nope"}}),
        &expect(READY, "False", &["AuthenticationFailed"], &["nope"]),
    )
    .await;
    let secrets: Api<Secret> = s.ns.api();
    // 256 KiB of `*a` wildcards in known_hosts and a garbage key, for an ssh remote.
    let known_hosts = format!("{}b ssh-ed25519 AAAA\n", "*a".repeat(128 << 10));
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "hostile-ssh"},
                "stringData": {"known_hosts": known_hosts, "identity": format!("-----BEGIN {PLANTED}-----"), "password": PLANTED}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    s.repo_case(
        "Secret: 256 KiB of known_hosts wildcards and a garbage ssh key, ssh remote on a closed port",
        "spec-ssh",
        json!({"url": "ssh://git@127.0.0.1:1/r.git", "secretRef": {"name": "hostile-ssh"}}),
        &expect(READY, "False", &["GitOperationFailed", "AuthenticationFailed"], &[]),
    )
    .await;
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "hook-without-token"},
                "stringData": {"tokn": PLANTED}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    s.repo_case(
        "Secret: webhook Secret without a token key",
        "spec-hook",
        json!({"url": url, "webhook": {"secretRef": {"name": "hook-without-token"}}}),
        &expect(READY, "False", &["AuthenticationFailed"], &["token"]),
    )
    .await;
}

/// Repository trees that cross the source limits or cannot render.
async fn trees(s: &mut Suite) {
    let limit = |flag: &[&str]| expect(READY, "False", LIMIT, flag);
    let stored = expect(READY, "True", &[], &["stored artifact"]);

    let git = repo_with(&[("big.bin", noise(MAX_BLOB as usize + (512 << 10), 1))]).await;
    s.tree_case(
        "repository: one 1.5 MiB file (limit 1 MiB)",
        "tree-blob",
        &git,
        ".",
        &limit(&["--max-blob-size", "big.bin"]),
        None,
    )
    .await;

    let many: Vec<(String, Vec<u8>)> = (0..MAX_TREE_ENTRIES + 500)
        .map(|i| (format!("d{}/f{i}.txt", i % 10), text("x")))
        .collect();
    let git = repo_with(&many).await;
    s.tree_case(
        "repository: 2500 files (limit 2000 tree entries)",
        "tree-entries",
        &git,
        ".",
        &limit(&["--max-tree-entries"]),
        None,
    )
    .await;

    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| (format!("n{i}.bin"), noise(900 << 10, 10 + i)))
        .collect();
    let git = repo_with(&files).await;
    s.tree_case(
        "repository: 10.5 MiB pack (fetch limit 8 MiB; stops mid-transfer)",
        "tree-pack",
        &git,
        ".",
        &limit(&["--max-fetch-size"]),
        None,
    )
    .await;

    let files: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("n{i}.bin"), noise(800 << 10, 40 + i)))
        .collect();
    let git = repo_with(&files).await;
    s.tree_case(
        "repository: 4.7 MiB artifact (limit 4 MiB)",
        "tree-artifact",
        &git,
        ".",
        &limit(&["--max-artifact-size"]),
        None,
    )
    .await;

    // A file name that is not UTF-8.
    let git = GitFixture::new().await.unwrap();
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"bad-\xff-name.yaml");
        std::fs::write(git.work().join(name), "a: 1\n").unwrap();
    }
    git.commit("non-utf8").unwrap();
    s.tree_case(
        "repository: a file name that is not UTF-8",
        "tree-utf8",
        &git,
        ".",
        &expect(READY, "False", &["GitOperationFailed"], &["UTF-8"]),
        None,
    )
    .await;

    // A symlink out of the repository, used as a resource.
    let git = GitFixture::new().await.unwrap();
    git.write("app/kustomization.yaml", "resources:\n  - passwd.yaml\n")
        .unwrap();
    std::os::unix::fs::symlink("/etc/passwd", git.work().join("app/passwd.yaml")).unwrap();
    git.commit("symlink").unwrap();
    s.tree_case(
        "repository: a symlink to /etc/passwd used as a resource",
        "tree-symlink",
        &git,
        "./app",
        &stored,
        Some(&expect(RENDERED, "False", ESCAPE, &["passwd.yaml"])),
    )
    .await;

    for (input, name, kustomization, reasons, contains) in [
        (
            "kustomization: a resource ../../../../etc/passwd",
            "tree-dotdot",
            "resources:\n  - ../../../../etc/passwd\n",
            ESCAPE,
            "passwd",
        ),
        (
            "kustomization: a remote base (https://github.com/...)",
            "tree-remote",
            "resources:\n  - https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v1.0.6\n",
            REFUSED,
            "",
        ),
        (
            "kustomization: not YAML",
            "tree-notyaml",
            "resources: [unclosed\n  - : :\n",
            BUILD,
            "kustomization",
        ),
        (
            "kustomization: an exec generator plugin",
            "tree-exec",
            "generators:\n  - gen.yaml\n",
            REFUSED,
            "",
        ),
    ] {
        let git = repo_with(&[
            ("app/kustomization.yaml", text(kustomization)),
            (
                "app/gen.yaml",
                text("apiVersion: builtin\nkind: Exec\nmetadata:\n  name: x\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: /bin/sh\n"),
            ),
        ])
        .await;
        let contains: Vec<&str> = [contains].into_iter().filter(|c| !c.is_empty()).collect();
        s.tree_case(
            input,
            name,
            &git,
            "./app",
            &stored,
            Some(&expect(RENDERED, "False", reasons, &contains)),
        )
        .await;
    }

    let git = repo_with(&[(
        "app/thing.yaml",
        text("apiVersion: v1\nmetadata:\n  name: kindless\n"),
    )])
    .await;
    s.tree_case(
        "manifest: an object without kind",
        "tree-kindless",
        &git,
        "./app",
        &stored,
        Some(&expect(RENDERED, "False", BUILD, &[])),
    )
    .await;

    // A Secret whose value holds a malformed reference, with substitution on: the error
    // must name the object and line, never the value.
    let git = repo_with(&[(
        "app/secret.yaml",
        text(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: \"{PLANTED} ${{unclosed {PLANTED}\"\n"
        )),
    )])
    .await;
    s.begin();
    s.create_repo("tree-secret", json!({"url": git.url()}))
        .await;
    let mut outcome = s.repo_condition("tree-secret", &stored).await;
    if outcome.is_ok() {
        s.create_sync(
            "tree-secret",
            json!({"sourceRef": {"kind": "GitRepository", "name": "tree-secret"}, "path": "./app", "substitute": {"X": "1"}}),
        )
        .await;
        outcome = s
            .sync_condition(
                "tree-secret",
                &expect(RENDERED, "False", BUILD, &["db", "line"]),
            )
            .await;
    }
    s.end(
        "Secret in the repository with a malformed ${ in its value, substitution on",
        outcome,
    );

    // An empty repository: no branch to fetch.
    let git = GitFixture::new().await.unwrap();
    s.tree_case(
        "repository: empty (no commit, no branch)",
        "tree-empty",
        &git,
        ".",
        &expect(READY, "False", &["RefNotFound"], &[]),
        None,
    )
    .await;
}

/// A GitRepository this suite's source controller does not reconcile (another shard), whose
/// status the test writes to point at `url` with `digest`: a stand-in for a compromised
/// artifact server.
async fn fake_source(s: &Suite, name: &str, url: &str, digest: &str) {
    let obj: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
        "metadata": {"name": name, "labels": {"plumb.dev/shard": "nobody"}},
        "spec": {"url": "http://127.0.0.1:1/none.git", "interval": "1h"}
    }))
    .unwrap();
    s.repos()
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
    let status = json!({
        "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
        "status": {
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                "message": "stored", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}],
            "artifact": {"revision": format!("main@sha1:{}", "1".repeat(40)), "digest": digest,
                "url": url, "size": 1, "lastUpdateTime": "2026-01-01T00:00:00Z"}
        }
    });
    s.repos()
        .patch_status(
            name,
            &PatchParams::apply("bad-input-test").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
}

/// A tar stream of raw entries: (name, type, link target, data).
fn raw_tar(entries: &[(&str, tar::EntryType, &str, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if !link.is_empty() {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        tar.append(&h, data.as_slice()).unwrap();
    }
    tar.into_inner().unwrap()
}

/// A tar.gz of regular files at `paths` (of any length: GNU long names), each holding `data`.
fn files_tar_gz(paths: &[String], data: &[u8]) -> Vec<u8> {
    let entries = paths
        .iter()
        .map(|path| plumb_artifact::FileEntry {
            path: path.clone(),
            executable: false,
            handle: (),
        })
        .collect();
    plumb_artifact::write_tar_gz(Vec::new(), entries, |()| Ok(data.to_vec())).unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A gzip of one entry of `kind` holding `size` zero bytes: small compressed, huge unpacked.
fn bomb(kind: tar::EntryType, size: u64) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.as_old_mut().name[..9].copy_from_slice(b"bomb.yaml");
    h.set_cksum();
    tar.append(&h, std::io::Read::take(std::io::repeat(b' '), size))
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

/// Hostile artifacts handed to the render controller by a (faked) source.
async fn tarballs(s: &mut Suite) {
    let files = FileServer::start().await.unwrap();
    let cm = text(&config_map("from-tar", "x"));
    use tar::EntryType::{Block, Char, Fifo, GNULongName, Link, Regular, Symlink};
    let cases: Vec<(&str, &str, Vec<u8>, &[&str])> = vec![
        (
            "tarball: an entry ../../evil.yaml",
            "tar-dotdot",
            gzip(&raw_tar(&[("../../evil.yaml", Regular, "", cm.clone())])),
            &["escapes the root"],
        ),
        (
            "tarball: an absolute path /tmp/evil.yaml",
            "tar-abs",
            gzip(&raw_tar(&[("/tmp/evil.yaml", Regular, "", cm.clone())])),
            &["escapes the root"],
        ),
        (
            "tarball: a symlink to /etc/passwd",
            "tar-symlink",
            gzip(&raw_tar(&[("passwd.yaml", Symlink, "/etc/passwd", vec![])])),
            &["leaves the root"],
        ),
        (
            "tarball: a symlinked directory, then a file written through it",
            "tar-through",
            gzip(&raw_tar(&[
                ("d", Symlink, ".", vec![]),
                ("d/x.yaml", Regular, "", cm.clone()),
            ])),
            &["leaves the root"],
        ),
        (
            "tarball: a hard link to /etc/passwd",
            "tar-hardlink",
            gzip(&raw_tar(&[("h.yaml", Link, "/etc/passwd", vec![])])),
            &["unsupported type"],
        ),
        (
            "tarball: a character device",
            "tar-chardev",
            gzip(&raw_tar(&[("null.yaml", Char, "", vec![])])),
            &["unsupported type"],
        ),
        (
            "tarball: a block device",
            "tar-blockdev",
            gzip(&raw_tar(&[("sda.yaml", Block, "", vec![])])),
            &["unsupported type"],
        ),
        (
            "tarball: a fifo",
            "tar-fifo",
            gzip(&raw_tar(&[("fifo.yaml", Fifo, "", vec![])])),
            &["unsupported type"],
        ),
        (
            "tarball: 600 MiB file in 600 KiB of gzip (unpack limit 512 MiB)",
            "tar-bomb",
            bomb(Regular, 600 << 20),
            &["limit"],
        ),
        (
            "tarball: 256 MiB GNU long name in 256 KiB of gzip",
            "tar-longname",
            bomb(GNULongName, 256 << 20),
            &["between two entries"],
        ),
        (
            "tarball: a path 200 directories deep (limit 128 levels)",
            "tar-deep",
            files_tar_gz(&[format!("{}/deep.yaml", ["d"; 200].join("/"))], &cm),
            &["128 directory levels"],
        ),
        (
            "tarball: truncated gzip",
            "tar-truncated",
            {
                let g = gzip(&raw_tar(&[("a.yaml", Regular, "", cm.clone())]));
                g[..g.len() / 2].to_vec()
            },
            &[],
        ),
        (
            "tarball: not gzip at all",
            "tar-garbage",
            noise(4096, 99),
            &[],
        ),
    ];
    for (input, name, bytes, contains) in cases {
        let path = format!("/{name}.tar.gz");
        let digest = plumb_artifact::fetch::digest_of(&bytes).to_string();
        files.put(&path, bytes);
        s.begin();
        fake_source(s, name, &files.url(&path), &digest).await;
        s.create_sync(
            name,
            json!({"sourceRef": {"kind": "GitRepository", "name": name}, "path": "."}),
        )
        .await;
        let outcome = s
            .sync_condition(name, &expect(RENDERED, "False", ARTIFACT, contains))
            .await;
        s.end(input, outcome);
    }
    // The right bytes under a digest that does not match them.
    let good = gzip(&raw_tar(&[("a.yaml", Regular, "", cm)]));
    files.put("/tar-digest.tar.gz", good);
    let wrong = format!("sha256:{}", "0".repeat(64));
    s.begin();
    fake_source(s, "tar-digest", &files.url("/tar-digest.tar.gz"), &wrong).await;
    s.create_sync(
        "tar-digest",
        json!({"sourceRef": {"kind": "GitRepository", "name": "tar-digest"}, "path": "."}),
    )
    .await;
    let outcome = s
        .sync_condition(
            "tar-digest",
            &expect(RENDERED, "False", &["ArtifactFailed"], &["digest mismatch"]),
        )
        .await;
    s.end(
        "tarball: content that does not match the published digest",
        outcome,
    );
}

/// Sync specs that cannot work.
async fn sync_specs(s: &mut Suite) {
    s.canary
        .write("subst/cm.yaml", &config_map("subst", "${MISSING_VAR}"))
        .unwrap();
    s.canary
        .write("nons/cm.yaml", &config_map("nons", "x"))
        .unwrap();
    s.canary
        .write("nosa/cm.yaml", &config_map("nosa", "x"))
        .unwrap();
    s.check_canary().await;
    s.sync_case(
        "Sync path: ../../../../etc",
        "sync-dotdot",
        json!({"path": "../../../../etc"}),
        &expect(RENDERED, "False", ESCAPE, &[]),
    )
    .await;
    s.sync_case(
        "Sync path: a directory that does not exist",
        "sync-nopath",
        json!({"path": "./no/such/dir"}),
        &expect(RENDERED, "False", BUILD, &[]),
    )
    .await;
    s.sync_case(
        "Sync sourceRef: a GitRepository that does not exist",
        "sync-nosource",
        json!({"sourceRef": {"kind": "GitRepository", "name": "no-such-repo"}}),
        &expect(RENDERED, "False", &["SourceNotReady"], &["no-such-repo"]),
    )
    .await;
    s.sync_case(
        "Sync substitute: a variable with no value",
        "sync-novar",
        json!({"path": "./subst", "substitute": {"OTHER": "1"}}),
        &expect(RENDERED, "False", BUILD, &["MISSING_VAR"]),
    )
    .await;
    s.sync_case(
        "Sync patches: a patch that does not parse",
        "sync-badpatch",
        json!({"patches": [{"patch": "{{{{ not: [yaml", "target": {"kind": "ConfigMap"}}]}),
        &expect(RENDERED, "False", BUILD, &[]),
    )
    .await;
    s.sync_case(
        "Sync patches: a JSON6902 patch removing a path that is not there",
        "sync-jsonpatch",
        json!({"patches": [{"patch": "- op: remove\n  path: /spec/nothing/here", "target": {"kind": "ConfigMap"}}]}),
        &expect(RENDERED, "False", BUILD, &[]),
    )
    .await;
    s.sync_case(
        "Sync dependsOn: itself",
        "sync-selfdep",
        json!({"dependsOn": [{"name": "sync-selfdep"}]}),
        &expect(READY, "False", &["DependencyNotReady"], &[]),
    )
    .await;
    s.sync_case(
        "Sync targetNamespace: a namespace that does not exist",
        "sync-nons",
        json!({"targetNamespace": "plumb-bad-input-no-such-namespace", "path": "./nons"}),
        &expect(READY, "False", &["ApplyFailed"], &[]),
    )
    .await;
    s.sync_case(
        "Sync serviceAccountName: an account that does not exist",
        "sync-nosa",
        json!({"serviceAccountName": "nobody-here", "path": "./nosa"}),
        &expect(READY, "False", &["ApplyFailed", "AccessDenied"], &[]),
    )
    .await;
}

/// Sends raw bytes to `addr` and returns what came back, and whether the server closed the
/// connection within `wait`.
async fn raw_http_closed(addr: &str, request: &[u8], wait: Duration) -> (String, bool) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let _ = conn.write_all(request).await;
    let mut out = Vec::new();
    let closed = tokio::time::timeout(wait, conn.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// What the server answered to `request` (read until it closed, at most `wait`).
async fn raw_http(addr: &str, request: &[u8], wait: Duration) -> String {
    raw_http_closed(addr, request, wait).await.0
}

fn status_line(answer: &str) -> String {
    answer
        .lines()
        .next()
        .unwrap_or("(connection closed, no answer)")
        .to_owned()
}

/// Webhook and artifact requests a stranger may send.
async fn http_requests(s: &mut Suite) {
    let hooks = s.controllers.webhook_base_url();
    let hooks = hooks.trim_start_matches("http://").to_owned();
    let artifacts = s.controllers.source_artifact_base_url();
    let artifacts = artifacts.trim_start_matches("http://").to_owned();
    let long = Duration::from_secs(30);
    let path = s
        .repos()
        .get("canary")
        .await
        .unwrap()
        .status
        .and_then(|st| st.webhook_path)
        .unwrap();

    // Each case names the status lines that count as the right answer.
    let cases: Vec<(&str, String, Vec<u8>, &[&str])> = vec![
        (
            "webhook: POST to an unknown hook id (answered from memory, no list)",
            hooks.clone(),
            format!("POST /hook/{} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", "0".repeat(64)).into_bytes(),
            &["404"],
        ),
        (
            "webhook: POST /hook/../../etc/passwd",
            hooks.clone(),
            b"POST /hook/../../etc/passwd HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
            &["404"],
        ),
        (
            "webhook: the canary's hook with a wrong GitHub signature",
            hooks.clone(),
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256={}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}", "0".repeat(64)).into_bytes(),
            &["401"],
        ),
        (
            "webhook: a 3 MiB body (limit 2 MiB)",
            hooks.clone(),
            {
                let mut r = format!("POST {path} HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", 3 << 20).into_bytes();
                r.extend(std::iter::repeat_n(b'a', 3 << 20));
                r
            },
            &["413"],
        ),
        (
            "webhook: 200 header fields (limit 64)",
            hooks.clone(),
            {
                let mut r = format!("POST {path} HTTP/1.1\r\nHost: x\r\n");
                for i in 0..200 {
                    r.push_str(&format!("X-Filler-{i}: y\r\n"));
                }
                r.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
                r.into_bytes()
            },
            &["431"],
        ),
        (
            "artifacts: GET /gitrepository/../../../etc/passwd (no token: 401; with one: 404)",
            artifacts.clone(),
            b"GET /gitrepository/../../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            &["401", "404"],
        ),
        (
            "artifacts: GET the git cache (/.cache/...)",
            artifacts.clone(),
            format!("GET /.cache/gitrepository/{}/canary/HEAD HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", s.ns.name()).into_bytes(),
            &["401", "404"],
        ),
    ];
    for (input, addr, request, want) in cases {
        s.begin();
        let answer = raw_http(&addr, &request, long).await;
        let line = status_line(&answer);
        let outcome = if want.iter().any(|w| line.contains(w)) {
            Ok(format!("answered {line}"))
        } else {
            Err(format!("expected {want:?}, got {line}"))
        };
        s.end(input, outcome);
    }

    // Slowloris: headers that never finish. The server must hang up (header timeout).
    s.begin();
    let (answer, closed) = raw_http_closed(
        &hooks,
        b"POST /hook/x HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        Duration::from_secs(60),
    )
    .await;
    let outcome = if closed {
        Ok(format!(
            "connection closed by the server ({})",
            status_line(&answer)
        ))
    } else {
        Err("the server kept a connection with unfinished headers for 60s".to_owned())
    };
    s.end("webhook: headers that never finish (slowloris)", outcome);

    // More connections than the cap, all idle: the server sheds them and serves again.
    s.begin();
    let mut idle = Vec::new();
    for _ in 0..400 {
        if let Ok(c) = TcpStream::connect(&hooks).await {
            idle.push(c);
        }
    }
    let answer = raw_http(
        &hooks,
        format!(
            "POST /hook/{} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "0".repeat(64)
        )
        .as_bytes(),
        Duration::from_secs(60),
    )
    .await;
    drop(idle);
    let outcome = if status_line(&answer).contains("404") {
        Ok(format!(
            "400 idle connections shed; then answered {}",
            status_line(&answer)
        ))
    } else {
        Err(format!(
            "after 400 idle connections: {}",
            status_line(&answer)
        ))
    };
    s.end("webhook: 400 idle connections held open (cap 256)", outcome);

    // The canary's own webhook still works after all that.
    s.begin();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: {PLANTED}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let answer = raw_http(&hooks, request.as_bytes(), long).await;
    let outcome = if status_line(&answer).contains("202") {
        Ok(format!("answered {}", status_line(&answer)))
    } else {
        Err(format!("expected 202, got {}", status_line(&answer)))
    };
    s.end(
        "webhook: a valid GitLab delivery after the hostile ones",
        outcome,
    );
}
