//! SOPS decryption against a real API server: a source tree with SOPS-encrypted files (made here
//! by the real `sops` and `age`), rendered as the render controller renders it (kustomize, then
//! the SOPS source files attached), applied by the sync controller.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::PostParams;
use plumb_e2e_support::{AgeKey, GnuPg, PgpKey, SopsTools};
use serde_json::{Value, json};

use common::{Harness, TestNamespace, cm_data, cm_exists};

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
stringData:
  password: hunter2
  port: \"5432\"
data:
  api-key: c2VjcmV0LWFwaS1rZXk=
";

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// A source tree in a new temporary directory: an encrypted Secret manifest, a secretGenerator
/// over an encrypted dotenv file (`envs`) and encrypted JSON, INI, YAML and binary files
/// (`files`), and a ConfigMap holding `marker`.
fn tree(tools: &SopsTools, key: &AgeKey, password: &str, marker: &str) -> tempfile::TempDir {
    tree_for(tools, &For::Age(key), password, marker)
}

/// Who a tree's files are encrypted for.
enum For<'a> {
    Age(&'a AgeKey),
    Pgp(&'a GnuPg, &'a PgpKey),
}

impl For<'_> {
    fn encrypt(&self, tools: &SopsTools, plain: &[u8], name: &str, extra: &[&str]) -> Vec<u8> {
        match self {
            For::Age(key) => tools.encrypt(plain, name, &[&key.recipient], extra),
            For::Pgp(gnupg, key) => {
                tools.encrypt_pgp(plain, name, gnupg, &[&key.fingerprint], &[], extra)
            }
        }
        .unwrap()
    }
}

/// [`tree`], its files encrypted for `keys`.
fn tree_for(tools: &SopsTools, keys: &For<'_>, password: &str, marker: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let regex = ["--encrypted-regex", "^(data|stringData)$"];
    let secret = SECRET.replace("hunter2", password);
    write(
        root,
        "app/secret.yaml",
        &keys.encrypt(tools, secret.as_bytes(), "secret.yaml", &regex),
    );
    write(
        root,
        "app/db.env",
        &keys.encrypt(
            tools,
            format!("DB_USER=admin\nDB_PASS={password}\n").as_bytes(),
            "db.env",
            &[],
        ),
    );
    write(
        root,
        "app/config.json",
        &keys.encrypt(
            tools,
            format!("{{\"token\": \"{password}-token\"}}").as_bytes(),
            "config.json",
            &[],
        ),
    );
    // The other formats sops writes, each a whole file in the `files` generator.
    let binary: Vec<u8> = [0u8, 0xff, 0x80]
        .iter()
        .copied()
        .chain(format!("{password}-binary\n").bytes())
        .collect();
    for (name, plain) in [
        (
            "settings.ini",
            format!("[db]\npassword = {password}\nport = 5432\n").into_bytes(),
        ),
        (
            "extra.yaml",
            format!("token: {password}-yaml\nlist: [1, 2]\n").into_bytes(),
        ),
        ("blob.bin", binary),
    ] {
        write(
            root,
            &format!("app/{name}"),
            &keys.encrypt(tools, &plain, name, &[]),
        );
    }
    write(
        root,
        "app/cm.yaml",
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: marker\ndata:\n  key: \"{marker}\"\n").as_bytes(),
    );
    write(
        root,
        "app/kustomization.yaml",
        b"resources: [secret.yaml, cm.yaml]\nsecretGenerator:\n  - name: generated\n    envs: [db.env]\n  - name: files\n    files: [config.json, settings.ini, extra.yaml, blob.bin]\n",
    );
    dir
}

/// Renders `root` for a Sync placing objects in `ns`, as the render controller does.
fn render(root: &Path, ns: &str) -> String {
    let spec: plumb_api::SyncSpec = serde_json::from_value(json!({
        "sourceRef": {"kind": "GitRepository", "name": "repo"},
        "path": "./app",
        "targetNamespace": ns,
    }))
    .unwrap();
    let mut objects = plumb_render::render(root, &spec, &[]).unwrap();
    plumb_render::attach_sops_sources(root, &mut objects);
    let mut out = String::new();
    for o in &objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(o).unwrap());
    }
    assert!(
        !out.contains("hunter2"),
        "the rendered artifact stays encrypted"
    );
    out
}

async fn key_secret(api: &Api<Secret>, key: &AgeKey) {
    put_secret(api, "sops-keys", &[("identity.agekey", &key.identity)]).await;
}

/// Creates or replaces the Secret `name` with `entries`.
async fn put_secret(api: &Api<Secret>, name: &str, entries: &[(&str, &str)]) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    match api.get_opt(name).await.unwrap() {
        None => {
            api.create(&PostParams::default(), &secret).await.unwrap();
        }
        Some(_) => {
            api.replace(name, &PostParams::default(), &secret)
                .await
                .unwrap();
        }
    }
}

fn data(s: &Secret, key: &str) -> String {
    String::from_utf8(s.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

/// Name of the generated Secret with `prefix` (kustomize appends a hash of its content).
async fn generated(api: &Api<Secret>, prefix: &str) -> Secret {
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|s| {
            s.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&format!("{prefix}-")))
        })
        .unwrap_or_else(|| panic!("no Secret {prefix}-*"))
}

/// Creates Sync `app` in `n` decrypting with the key Secret `keys` (retried every second),
/// renders `src` for it and waits until that render is applied.
async fn apply_decrypting(h: &Harness, n: &str, keys: &str, src: &Path) -> plumb_api::Sync {
    h.create_sync(
        n,
        "app",
        json!({
            "decryption": {"provider": "sops", "secretRef": {"name": keys}},
            "retryInterval": "1s",
        }),
    )
    .await;
    let first = h.render(n, "app", &render(src, n)).await;
    h.wait_applied(n, "app", &first).await
}

/// Checks the Secrets of a [`tree`] applied with `password` decrypted: the manifest's values,
/// the `envs` generator's and the JSON file of the `files` one. Returns the `files` Secret.
async fn assert_decrypted(secrets: &Api<Secret>, password: &str) -> Secret {
    let db = secrets.get("db").await.unwrap();
    assert_eq!(data(&db, "password"), password);
    assert_eq!(data(&db, "port"), "5432");
    assert_eq!(
        data(&db, "api-key"),
        "secret-api-key",
        "an encrypted manifest's data: its base64 text, decrypted"
    );
    let raw = serde_json::to_value(&db).unwrap();
    assert!(raw.get("sops").is_none());
    let env = generated(secrets, "generated").await;
    assert_eq!(data(&env, "DB_PASS"), password);
    assert_eq!(data(&env, "DB_USER"), "admin");
    let files = generated(secrets, "files").await;
    let json: Value = serde_json::from_str(&data(&files, "config.json")).unwrap();
    assert_eq!(json["token"], format!("{password}-token"));
    files
}

/// Renders `next` (a [`tree`] with marker `two`, encrypted for a key Sync `app` lacks, holding
/// `new_password`) and checks that nothing of it is applied: the condition names the object, the
/// file and `recipient`, the last revision (marker `one`, `password`) stays, and no value shows
/// in the condition. Returns the render's artifact.
async fn assert_refused(
    h: &Harness,
    ns: &TestNamespace,
    next: &Path,
    recipient: &str,
    (password, new_password): (&str, &str),
) -> Value {
    let n = ns.name();
    let artifact = h.render(n, "app", &render(next, n)).await;
    let msg = h
        .wait_ready_reason(n, "app", "DecryptionFailed")
        .await
        .message;
    assert!(msg.contains(&format!("Secret/{n}/db")), "{msg}");
    assert!(msg.contains("app/secret.yaml"), "{msg}");
    assert!(msg.contains(recipient), "{msg}");
    assert!(
        !msg.contains(new_password) && !msg.contains(password),
        "{msg}"
    );
    h.settle(n, "app").await;
    let cms = ns.api::<ConfigMap>();
    assert_eq!(cm_data(&cms, "marker").await.as_deref(), Some("one"));
    assert_eq!(
        data(&ns.api::<Secret>().get("db").await.unwrap(), "password"),
        password
    );
    artifact
}

/// Checks that no Event of `ns` holds any of `values`.
async fn assert_no_event_holds(ns: &TestNamespace, values: &[&str]) {
    let events = ns
        .api::<k8s_openapi::api::core::v1::Event>()
        .list(&Default::default())
        .await
        .unwrap();
    let text = serde_json::to_string(&events.items).unwrap();
    for value in values {
        assert!(!text.contains(value), "an Event holds {value}");
    }
}

#[tokio::test]
async fn encrypted_secrets_apply_decrypted_a_wrong_key_applies_nothing_and_a_new_key_recovers() {
    let tools = SopsTools::get().unwrap();
    let (key, next_key) = (tools.age_keygen().unwrap(), tools.age_keygen().unwrap());
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-sops").await.unwrap();
    let n = ns.name();
    let secrets = ns.api::<Secret>();
    let cms = ns.api::<ConfigMap>();
    key_secret(&secrets, &key).await;

    let src = tree(tools, &key, "hunter2", "one");
    let s = apply_decrypting(&h, n, "sops-keys", src.path()).await;
    let files = assert_decrypted(&secrets, "hunter2").await;
    let env = generated(&secrets, "generated").await;
    assert!(
        env.data
            .as_ref()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("sops_")),
        "the dotenv file's metadata is not applied"
    );
    for name in ["settings.ini", "extra.yaml", "blob.bin"] {
        let encrypted = std::fs::read(src.path().join("app").join(name)).unwrap();
        let want = tools.decrypt(&encrypted, name, &key.identity).unwrap();
        let got = &files.data.as_ref().unwrap()[name].0;
        if name == "extra.yaml" {
            // The same data; serde_yaml lays it out (docs/sops.md).
            let read = |b: &[u8]| serde_yaml::from_slice::<serde_yaml::Value>(b).unwrap();
            assert_eq!(read(got), read(&want), "{name}: as sops --decrypt gives it");
        } else {
            assert_eq!(
                got, &want,
                "{name}: byte for byte as sops --decrypt prints it"
            );
        }
        assert!(got.windows(7).any(|w| w == b"hunter2"), "{name}: decrypted");
    }
    let status = serde_json::to_string(&s.status).unwrap();
    assert!(!status.contains("hunter2"));

    // The files re-encrypted for a key the Sync does not have, with a ConfigMap change: nothing
    // of the revision is applied, and the condition names the object and the file.
    let next = tree(tools, &next_key, "swordfish", "two");
    let second = assert_refused(
        &h,
        &ns,
        next.path(),
        &next_key.recipient,
        ("hunter2", "swordfish"),
    )
    .await;

    // The key Secret rotated to the new key: the retry decrypts and applies the revision.
    key_secret(&secrets, &next_key).await;
    h.wait_applied(n, "app", &second).await;
    assert_eq!(cm_data(&cms, "marker").await.as_deref(), Some("two"));
    assert_eq!(
        data(&secrets.get("db").await.unwrap(), "password"),
        "swordfish"
    );
    assert_no_event_holds(&ns, &["swordfish", "hunter2"]).await;
}

#[tokio::test]
async fn a_tampered_file_or_a_sync_without_decryption_is_refused_by_name() {
    let tools = SopsTools::get().unwrap();
    let key = tools.age_keygen().unwrap();
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-sops-tamper").await.unwrap();
    let n = ns.name();
    let secrets = ns.api::<Secret>();
    key_secret(&secrets, &key).await;

    let src = tree(tools, &key, "hunter2", "one");
    // Someone renames the Secret in Git without the key: the MAC no longer matches.
    let path = src.path().join("app/secret.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("name: db", "name: db-admin")).unwrap();
    h.create_sync(
        n,
        "app",
        json!({"decryption": {"provider": "sops", "secretRef": {"name": "sops-keys"}}}),
    )
    .await;
    h.render(n, "app", &render(src.path(), n)).await;
    let msg = h
        .wait_ready_reason(n, "app", "DecryptionFailed")
        .await
        .message;
    assert!(
        msg.contains("MAC mismatch") && msg.contains("app/secret.yaml"),
        "{msg}"
    );
    assert!(
        !cm_exists(&ns, "marker").await,
        "nothing of the render was applied"
    );

    h.create_sync(n, "plain", json!({})).await;
    let fine = tree(tools, &key, "hunter2", "one");
    h.render(n, "plain", &render(fine.path(), n)).await;
    let msg = h
        .wait_ready_reason(n, "plain", "DecryptionFailed")
        .await
        .message;
    assert!(msg.contains("spec.decryption"), "{msg}");
}

#[tokio::test]
async fn a_sync_waiting_for_its_key_secret_recovers_as_soon_as_it_is_created() {
    let tools = SopsTools::get().unwrap();
    let key = tools.age_keygen().unwrap();
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-sops-keywatch").await.unwrap();
    let n = ns.name();
    let src = tree(tools, &key, "hunter2", "one");
    // Retries an hour apart: only the watch of the key Secret can bring it back in time.
    h.create_sync(
        n,
        "app",
        json!({
            "decryption": {"provider": "sops", "secretRef": {"name": "sops-keys"}},
            "retryInterval": "1h",
        }),
    )
    .await;
    let art = h.render(n, "app", &render(src.path(), n)).await;
    let msg = h
        .wait_ready_reason(n, "app", "DecryptionFailed")
        .await
        .message;
    assert!(
        msg.contains(&format!("{n}/sops-keys")) && msg.contains("not found"),
        "{msg}"
    );
    assert!(
        !cm_exists(&ns, "marker").await,
        "nothing of the render was applied"
    );

    let secrets = ns.api::<Secret>();
    key_secret(&secrets, &key).await;
    h.wait_applied(n, "app", &art).await;
    assert_eq!(
        data(&secrets.get("db").await.unwrap(), "password"),
        "hunter2"
    );
}

#[tokio::test]
async fn pgp_encrypted_secrets_apply_decrypted_with_the_syncs_or_the_default_key_and_a_wrong_key_applies_nothing()
 {
    let tools = SopsTools::get().unwrap();
    let gnupg = GnuPg::new().unwrap();
    let key = gnupg.generate("future-default", "").unwrap();
    let stranger = gnupg.generate("future-default", "").unwrap();
    let ns = TestNamespace::new("sync-sops-pgp").await.unwrap();
    let elsewhere = TestNamespace::new("sync-sops-pgp-default").await.unwrap();
    let n = ns.name();
    let secrets = ns.api::<Secret>();
    // The controller's default key Secret (as Flux's --sops-age-secret) may hold PGP keys too.
    let default = format!("{n}/default-keys");
    let h = Harness::start_with(|c| c.sops_age_secret = Some(default.parse().unwrap())).await;
    put_secret(&secrets, "pgp-keys", &[("sops.asc", &key.secret_key)]).await;
    put_secret(&secrets, "default-keys", &[("sops.asc", &key.secret_key)]).await;

    let src = tree_for(tools, &For::Pgp(&gnupg, &key), "hunter2", "one");
    let committed = std::fs::read_to_string(src.path().join("app/secret.yaml")).unwrap();
    assert!(
        committed.contains("pgp:") && committed.contains(&key.fingerprint),
        "encrypted for the PGP key:\n{committed}"
    );
    assert!(!committed.contains("age1"), "and for no age key");
    let s = apply_decrypting(&h, n, "pgp-keys", src.path()).await;
    let files = assert_decrypted(&secrets, "hunter2").await;
    let blob = &files.data.as_ref().unwrap()["blob.bin"].0;
    let encrypted = std::fs::read(src.path().join("app/blob.bin")).unwrap();
    assert_eq!(
        blob,
        &tools.decrypt_pgp(&encrypted, "blob.bin", &gnupg).unwrap(),
        "byte for byte as sops --decrypt (with gpg) prints it"
    );
    assert!(
        !serde_json::to_string(&s.status)
            .unwrap()
            .contains("hunter2")
    );

    // A Sync naming no key Secret decrypts with the controller's default one.
    let e = elsewhere.name();
    h.create_sync(e, "app", json!({"decryption": {"provider": "sops"}}))
        .await;
    let art = h.render(e, "app", &render(src.path(), e)).await;
    h.wait_applied(e, "app", &art).await;
    assert_decrypted(&elsewhere.api::<Secret>(), "hunter2").await;

    // Files re-encrypted for a PGP key the Sync does not have, with a ConfigMap change: nothing
    // of the revision is applied, and the condition names the object, the file and the key.
    let next = tree_for(tools, &For::Pgp(&gnupg, &stranger), "swordfish", "two");
    let recipient = format!("PGP key {}", stranger.fingerprint);
    assert_refused(&h, &ns, next.path(), &recipient, ("hunter2", "swordfish")).await;
    let msg = h
        .wait_ready_reason(n, "app", "DecryptionFailed")
        .await
        .message;
    assert!(msg.contains("0 age identities, 1 PGP key"), "{msg}");
    assert_no_event_holds(&ns, &["swordfish", "hunter2"]).await;
}
