//! plumb-sops against the real `sops` and `age` (built from their Go modules by
//! `e2e/sops/build.sh`): every fixture is encrypted here, at test time, by `sops encrypt`, and
//! plumb's plaintext is compared with `sops decrypt`'s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use plumb_e2e_support::{AgeKey, GnuPg, PgpKey, SopsTools};
use plumb_sops::{Error, Format, Keyring, ValueError, decrypt};

fn tools() -> &'static SopsTools {
    SopsTools::get().expect("building sops and age (e2e/sops/build.sh)")
}

fn keyring(keys: &[&AgeKey]) -> Keyring {
    let mut ring = Keyring::new();
    for k in keys {
        ring.add_age_identities(&k.identity).unwrap();
    }
    ring
}

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: db
  labels:
    tier: backend
    replicas: 3
type: Opaque
stringData:
  password: hunter2
  port: 5432
  ratio: 1.5
  enabled: true
  empty: \"\"
  cert: |
    -----BEGIN CERT-----
    abc
    -----END CERT-----
  list:
    - one
    - 2
    - nested: {deep: value}
";

fn yaml(bytes: &[u8]) -> serde_yaml::Value {
    serde_yaml::from_slice(bytes).unwrap()
}

#[test]
fn every_format_decrypts_as_sops_decrypts_it() {
    let t = tools();
    let key = t.age_keygen().unwrap();
    let ring = keyring(&[&key]);
    let binary: Vec<u8> = (0u8..=255).chain(b"tail\n".iter().copied()).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("secret.yaml", SECRET.as_bytes().to_vec()),
        (
            "two-docs.yaml",
            b"a: 1\nb: [x, y]\n---\nc: {d: e}\nf: null\n".to_vec(),
        ),
        (
            "config.json",
            br#"{"user": "admin", "pass": "<s3cr&t>", "port": 8080, "ratio": 0.25, "big": 1e300, "on": false, "none": null, "tags": ["a", 1, {"k": "v"}], "empty": {}, "nested": {"list": []}}"#.to_vec(),
        ),
        (
            "app.env",
            b"# database\nDB_USER=admin\nDB_PASS=p=ss#word\nMULTI=line1\\nline2\nEMPTY=\n".to_vec(),
        ),
        (
            "settings.ini",
            b"[database]\nuser = admin\n; the password\npassword = hunter2\n\n[cache]\nttl = 60\n".to_vec(),
        ),
        ("blob.bin", binary),
    ];
    for (name, plain) in cases {
        let format = Format::for_path(name);
        let enc = t.encrypt(&plain, name, &[&key.recipient], &[]).unwrap();
        let want = t.decrypt(&enc, name, &key.identity).unwrap();
        let got = decrypt(&enc, format, &ring)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .emit(format)
            .unwrap();
        match format {
            Format::Yaml => {
                let docs = |b: &[u8]| -> Vec<serde_yaml::Value> {
                    use serde::Deserialize;
                    serde_yaml::Deserializer::from_slice(b)
                        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
                        .collect()
                };
                assert_eq!(docs(&got), docs(&want), "{name}");
            }
            _ => assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{name}: byte for byte"
            ),
        }
        if format == Format::Binary {
            assert_eq!(got, want, "{name}: binary bytes");
        }
    }
}

#[test]
fn encrypted_regex_leaves_metadata_readable_and_the_mac_covers_it() {
    let t = tools();
    let key = t.age_keygen().unwrap();
    let ring = keyring(&[&key]);
    let enc = t
        .encrypt(
            SECRET.as_bytes(),
            "secret.yaml",
            &[&key.recipient],
            &["--encrypted-regex", "^(data|stringData)$"],
        )
        .unwrap();
    let text = String::from_utf8(enc.clone()).unwrap();
    assert!(text.contains("name: db"), "metadata stays readable");
    assert!(!text.contains("hunter2"));
    let plain = decrypt(&enc, Format::Yaml, &ring).unwrap();
    assert_eq!(
        yaml(&plain.emit(Format::Yaml).unwrap()),
        yaml(&t.decrypt(&enc, "secret.yaml", &key.identity).unwrap())
    );
    // Every value the MAC vouched for maps from its ciphertext.
    assert!(
        plain
            .values
            .values()
            .any(|v| *v == plumb_sops::Scalar::Str("hunter2".into()))
    );

    let renamed = text.replace("name: db", "name: db2");
    let err = decrypt(renamed.as_bytes(), Format::Yaml, &ring).unwrap_err();
    assert_eq!(err, Error::MacMismatch);
}

#[test]
fn mac_only_encrypted_ignores_changes_to_plaintext_values() {
    let t = tools();
    let key = t.age_keygen().unwrap();
    let ring = keyring(&[&key]);
    let enc = t
        .encrypt(
            SECRET.as_bytes(),
            "secret.yaml",
            &[&key.recipient],
            &["--encrypted-regex", "^stringData$", "--mac-only-encrypted"],
        )
        .unwrap();
    let renamed = String::from_utf8(enc)
        .unwrap()
        .replace("name: db", "name: db2");
    let plain = decrypt(renamed.as_bytes(), Format::Yaml, &ring).unwrap();
    let doc = yaml(&plain.emit(Format::Yaml).unwrap());
    assert_eq!(doc["metadata"]["name"], "db2");
    assert_eq!(doc["stringData"]["password"], "hunter2");
}

#[test]
fn unencrypted_suffix_keeps_those_values_plain_and_in_the_mac() {
    let t = tools();
    let key = t.age_keygen().unwrap();
    let ring = keyring(&[&key]);
    let plain = "user_plain: admin\npassword: hunter2\ncount_plain: 3\n";
    let enc = t
        .encrypt(
            plain.as_bytes(),
            "creds.yaml",
            &[&key.recipient],
            &["--unencrypted-suffix", "_plain"],
        )
        .unwrap();
    let text = String::from_utf8(enc).unwrap();
    assert!(text.contains("user_plain: admin"));
    let doc = yaml(
        &decrypt(text.as_bytes(), Format::Yaml, &ring)
            .unwrap()
            .emit(Format::Yaml)
            .unwrap(),
    );
    assert_eq!(doc["password"], "hunter2");
    assert_eq!(doc["count_plain"], 3);
    let tampered = text.replace("user_plain: admin", "user_plain: root");
    assert_eq!(
        decrypt(tampered.as_bytes(), Format::Yaml, &ring).unwrap_err(),
        Error::MacMismatch
    );
}

#[test]
fn tampering_is_refused() {
    let t = tools();
    let key = t.age_keygen().unwrap();
    let ring = keyring(&[&key]);
    let enc = t
        .encrypt(
            b"{\"a\": \"one\", \"b\": \"two\"}",
            "x.json",
            &[&key.recipient],
            &[],
        )
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&enc).unwrap();
    let (a, b) = (doc["a"].as_str().unwrap(), doc["b"].as_str().unwrap());

    // Values swapped between keys: GCM's additional data (the key path) refuses them.
    let swapped = String::from_utf8(enc.clone())
        .unwrap()
        .replace(a, "A")
        .replace(b, a)
        .replace("\"A\"", &format!("\"{b}\""));
    let mut messages = Vec::new();
    let err = decrypt(swapped.as_bytes(), Format::Json, &ring).unwrap_err();
    messages.push(err.to_string());
    assert!(
        matches!(&err, Error::Value { path, source: ValueError::Auth } if path == "a"),
        "{err}"
    );

    // A value removed: every remaining value opens, the MAC does not match.
    let mut removed = doc.clone();
    removed.as_object_mut().unwrap().remove("b");
    let err = decrypt(&serde_json::to_vec(&removed).unwrap(), Format::Json, &ring).unwrap_err();
    messages.push(err.to_string());
    assert_eq!(err, Error::MacMismatch);

    // lastmodified edited: the MAC no longer opens.
    let mut touched = doc.clone();
    touched["sops"]["lastmodified"] = "2001-01-01T00:00:00Z".into();
    let err = decrypt(&serde_json::to_vec(&touched).unwrap(), Format::Json, &ring).unwrap_err();
    assert!(matches!(err, Error::MacUnreadable(_)), "{err}");
    messages.push(err.to_string());

    // No message carries a value.
    for e in messages {
        assert!(!e.contains("one") && !e.contains("two"), "{e}");
    }
}

#[test]
fn a_wrong_or_missing_key_is_named() {
    let t = tools();
    let owner = t.age_keygen().unwrap();
    let stranger = t.age_keygen().unwrap();
    let enc = t
        .encrypt(b"password=hunter2\n", "db.env", &[&owner.recipient], &[])
        .unwrap();
    let err = decrypt(&enc, Format::Dotenv, &keyring(&[&stranger])).unwrap_err();
    assert!(
        matches!(&err, Error::WrongKey { identities: 1, pgp_keys: 0, recipients } if recipients == &owner.recipient),
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"));
    let err = decrypt(&enc, Format::Dotenv, &Keyring::new()).unwrap_err();
    assert_eq!(err, Error::NoIdentities);
}

#[test]
fn any_one_of_several_recipients_decrypts() {
    let t = tools();
    let (a, b) = (t.age_keygen().unwrap(), t.age_keygen().unwrap());
    let enc = t
        .encrypt(b"k: v\n", "x.yaml", &[&a.recipient, &b.recipient], &[])
        .unwrap();
    for k in [&a, &b] {
        let plain = decrypt(&enc, Format::Yaml, &keyring(&[k])).unwrap();
        assert_eq!(yaml(&plain.emit(Format::Yaml).unwrap())["k"], "v");
    }
}

// PGP: keys made by the real `gpg` in a GnuPG home of the test's own, files encrypted by
// `sops --pgp` (which calls that gpg), plumb's plaintext compared with `sops decrypt`'s.

fn gnupg() -> GnuPg {
    GnuPg::new().expect("gpg (the Debian package gnupg, installed by e2e/deps.sh)")
}

fn pgp_keyring(keys: &[&PgpKey]) -> Keyring {
    let mut ring = Keyring::new();
    for k in keys {
        assert_eq!(ring.add_pgp_keys(&k.secret_key).unwrap(), 1);
    }
    ring
}

#[test]
fn pgp_keys_decrypt_every_format_as_sops_decrypts_it() {
    let t = tools();
    let gpg = gnupg();
    // RSA (GnuPG's default) and Ed25519/Curve25519: the two kinds of key users have.
    let keys = [
        gpg.generate("default", "").unwrap(),
        gpg.generate("future-default", "").unwrap(),
    ];
    let binary: Vec<u8> = (0u8..=255).collect();
    let cases: [(&str, &[u8]); 5] = [
        ("secret.yaml", SECRET.as_bytes()),
        (
            "config.json",
            br#"{"user": "admin", "pass": "<s3cr&t>", "port": 8080}"#,
        ),
        ("app.env", b"DB_USER=admin\nDB_PASS=p=ss#word\n"),
        ("settings.ini", b"[database]\npassword = hunter2\n"),
        ("blob.bin", &binary),
    ];
    for key in &keys {
        let ring = pgp_keyring(&[key]);
        for (name, plain) in cases {
            let format = Format::for_path(name);
            let enc = t
                .encrypt_pgp(plain, name, &gpg, &[&key.fingerprint], &[], &[])
                .unwrap();
            assert!(
                String::from_utf8_lossy(&enc).contains(&key.fingerprint),
                "{name}: encrypted for the PGP key"
            );
            let want = t.decrypt_pgp(&enc, name, &gpg).unwrap();
            let got = decrypt(&enc, format, &ring)
                .unwrap_or_else(|e| panic!("{name} with {}: {e}", key.fingerprint))
                .emit(format)
                .unwrap();
            if format == Format::Yaml {
                assert_eq!(yaml(&got), yaml(&want), "{name}");
            } else {
                assert_eq!(got, want, "{name}: byte for byte");
            }
        }
    }
}

#[test]
fn a_file_for_age_and_pgp_recipients_decrypts_with_either_key() {
    let t = tools();
    let gpg = gnupg();
    let pgp = gpg.generate("future-default", "").unwrap();
    let age = t.age_keygen().unwrap();
    let cases: [(&str, &[u8]); 2] = [
        ("x.yaml", b"password: hunter2\n"),
        ("x.env", b"password=hunter2\n"),
    ];
    for (name, plain) in cases {
        let format = Format::for_path(name);
        let enc = t
            .encrypt_pgp(
                plain,
                name,
                &gpg,
                &[&pgp.fingerprint],
                &[&age.recipient],
                &[],
            )
            .unwrap();
        let want = t.decrypt(&enc, name, &age.identity).unwrap();
        for (what, ring) in [("age", keyring(&[&age])), ("PGP", pgp_keyring(&[&pgp]))] {
            let got = decrypt(&enc, format, &ring)
                .unwrap_or_else(|e| panic!("{name} with the {what} key: {e}"))
                .emit(format)
                .unwrap();
            if format == Format::Yaml {
                assert_eq!(yaml(&got), yaml(&want), "{name} with the {what} key");
            } else {
                assert_eq!(got, want, "{name} with the {what} key");
            }
        }
    }
}

#[test]
fn a_wrong_missing_or_locked_pgp_key_is_named_and_the_mac_is_verified() {
    let t = tools();
    let gpg = gnupg();
    let owner = gpg.generate("future-default", "").unwrap();
    let stranger = gpg.generate("future-default", "").unwrap();
    let locked = gpg.generate("future-default", "open sesame").unwrap();
    let plain = b"{\"password\": \"hunter2\", \"user\": \"admin\"}";
    let enc = t
        .encrypt_pgp(plain, "db.json", &gpg, &[&owner.fingerprint], &[], &[])
        .unwrap();
    let mut messages = Vec::new();

    let err = decrypt(&enc, Format::Json, &pgp_keyring(&[&stranger])).unwrap_err();
    assert!(
        matches!(&err, Error::WrongKey { identities: 0, pgp_keys: 1, recipients }
            if recipients == &format!("PGP key {}", owner.fingerprint)),
        "{err}"
    );
    messages.push(err.to_string());

    let err = decrypt(&enc, Format::Json, &Keyring::new()).unwrap_err();
    assert_eq!(err, Error::NoIdentities);

    // A key locked by a passphrase loads, and a file for it says why it cannot be used.
    let for_locked = t
        .encrypt_pgp(plain, "db.json", &gpg, &[&locked.fingerprint], &[], &[])
        .unwrap();
    let err = decrypt(&for_locked, Format::Json, &pgp_keyring(&[&locked])).unwrap_err();
    assert_eq!(
        err,
        Error::PassphraseProtected {
            fingerprint: locked.fingerprint.clone()
        }
    );
    assert!(err.to_string().contains("passphrase"), "{err}");
    messages.push(err.to_string());
    // ... while a file for an unlocked key of the same keyring still decrypts.
    let both = pgp_keyring(&[&locked, &owner]);
    assert!(decrypt(&enc, Format::Json, &both).is_ok());

    // The MAC is verified whichever key unwrapped the data key.
    let mut doc: serde_json::Value = serde_json::from_slice(&enc).unwrap();
    doc.as_object_mut().unwrap().remove("user");
    let err = decrypt(
        &serde_json::to_vec(&doc).unwrap(),
        Format::Json,
        &pgp_keyring(&[&owner]),
    )
    .unwrap_err();
    assert_eq!(err, Error::MacMismatch);
    messages.push(err.to_string());

    for m in messages {
        assert!(!m.contains("hunter2"), "{m}");
    }
}

#[test]
fn pgp_key_entries_that_hold_no_private_key_are_refused_without_quoting_them() {
    let gpg = gnupg();
    let key = gpg.generate("future-default", "").unwrap();
    let public = key
        .secret_key
        .replace("PRIVATE KEY BLOCK", "PUBLIC KEY BLOCK");
    let mut ring = Keyring::new();
    let err = ring.add_pgp_keys(&public).unwrap_err();
    assert!(err.contains("public PGP key"), "{err}");
    let body: String = key.secret_key.lines().nth(3).unwrap().to_owned();
    for text in ["not a key", &key.secret_key[..key.secret_key.len() / 2]] {
        let err = ring.add_pgp_keys(text).unwrap_err();
        assert!(err.contains("not an armored PGP private key"), "{err}");
        assert!(!err.contains(&body), "{err}");
    }
    assert!(ring.is_empty());
}
