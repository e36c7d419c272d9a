//! SOPS decryption against a real API server: a source tree with SOPS-encrypted files (made here
//! by the real `sops` and `age`), rendered as the render controller renders it (kustomize, then
//! the SOPS source files attached), applied by the sync controller.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::PostParams;
use plumb_e2e_support::{AgeKey, SopsTools};
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
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let regex = ["--encrypted-regex", "^(data|stringData)$"];
    let secret = SECRET.replace("hunter2", password);
    write(
        root,
        "app/secret.yaml",
        &tools
            .encrypt(secret.as_bytes(), "secret.yaml", &[&key.recipient], &regex)
            .unwrap(),
    );
    write(
        root,
        "app/db.env",
        &tools
            .encrypt(
                format!("DB_USER=admin\nDB_PASS={password}\n").as_bytes(),
                "db.env",
                &[&key.recipient],
                &[],
            )
            .unwrap(),
    );
    write(
        root,
        "app/config.json",
        &tools
            .encrypt(
                format!("{{\"token\": \"{password}-token\"}}").as_bytes(),
                "config.json",
                &[&key.recipient],
                &[],
            )
            .unwrap(),
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
            &tools.encrypt(&plain, name, &[&key.recipient], &[]).unwrap(),
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
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("sops-keys".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "identity.agekey".to_owned(),
            ByteString(key.identity.clone().into_bytes()),
        )])),
        ..Default::default()
    };
    match api.get_opt("sops-keys").await.unwrap() {
        None => {
            api.create(&PostParams::default(), &secret).await.unwrap();
        }
        Some(_) => {
            api.replace("sops-keys", &PostParams::default(), &secret)
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
    h.create_sync(
        n,
        "app",
        json!({
            "decryption": {"provider": "sops", "secretRef": {"name": "sops-keys"}},
            "retryInterval": "1s",
        }),
    )
    .await;
    let first = h.render(n, "app", &render(src.path(), n)).await;
    let s = h.wait_applied(n, "app", &first).await;

    let db = secrets.get("db").await.unwrap();
    assert_eq!(data(&db, "password"), "hunter2");
    assert_eq!(data(&db, "port"), "5432");
    assert_eq!(
        data(&db, "api-key"),
        "secret-api-key",
        "an encrypted manifest's data: its base64 text, decrypted"
    );
    let raw = serde_json::to_value(&db).unwrap();
    assert!(raw.get("sops").is_none());
    let env = generated(&secrets, "generated").await;
    assert_eq!(data(&env, "DB_PASS"), "hunter2");
    assert_eq!(data(&env, "DB_USER"), "admin");
    assert!(
        env.data
            .as_ref()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("sops_")),
        "the dotenv file's metadata is not applied"
    );
    let files = generated(&secrets, "files").await;
    let json: Value = serde_json::from_str(&data(&files, "config.json")).unwrap();
    assert_eq!(json["token"], "hunter2-token");
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
    let second = h.render(n, "app", &render(next.path(), n)).await;
    let msg = h
        .wait_ready_reason(n, "app", "DecryptionFailed")
        .await
        .message;
    assert!(msg.contains(&format!("Secret/{n}/db")), "{msg}");
    assert!(msg.contains("app/secret.yaml"), "{msg}");
    assert!(msg.contains(&next_key.recipient), "{msg}");
    assert!(
        !msg.contains("swordfish") && !msg.contains("hunter2"),
        "{msg}"
    );
    h.settle(n, "app").await;
    assert_eq!(cm_data(&cms, "marker").await.as_deref(), Some("one"));
    assert_eq!(
        data(&secrets.get("db").await.unwrap(), "password"),
        "hunter2"
    );

    // The key Secret rotated to the new key: the retry decrypts and applies the revision.
    key_secret(&secrets, &next_key).await;
    h.wait_applied(n, "app", &second).await;
    assert_eq!(cm_data(&cms, "marker").await.as_deref(), Some("two"));
    assert_eq!(
        data(&secrets.get("db").await.unwrap(), "password"),
        "swordfish"
    );
    let events = ns
        .api::<k8s_openapi::api::core::v1::Event>()
        .list(&Default::default())
        .await
        .unwrap();
    let text = serde_json::to_string(&events.items).unwrap();
    assert!(!text.contains("swordfish") && !text.contains("hunter2"));
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
