//! The real `sops`, `age` and `age-keygen` tools for tests that need SOPS-encrypted fixtures:
//! built from their Go modules by `e2e/sops/build.sh` (cached under `~/.cache/plumb`), so every
//! encrypted file a test uses is made at test time by the tool users run.
//!
//! ```no_run
//! # fn f() -> plumb_e2e_support::Result<()> {
//! let tools = plumb_e2e_support::SopsTools::get()?;
//! let key = tools.age_keygen()?;
//! let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: hunter2}\n";
//! let encrypted = tools.encrypt(secret.as_bytes(), "secret.yaml", &[&key.recipient],
//!     &["--encrypted-regex", "^(data|stringData)$"])?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::{Error, GnuPg, Result, repo_root};

/// The built tools.
#[derive(Debug)]
pub struct SopsTools {
    bin: PathBuf,
}

/// An age key pair made by `age-keygen`.
#[derive(Debug, Clone)]
pub struct AgeKey {
    /// The identity file as `age-keygen` writes it (what a `*.agekey` Secret entry holds).
    pub identity: String,
    /// The `age1...` recipient.
    pub recipient: String,
}

fn io(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Io(format!("{what}: {e}"))
}

pub(crate) fn run(mut cmd: Command, what: &str) -> Result<Vec<u8>> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| io(what, e))?;
    if !out.status.success() {
        return Err(Error::Io(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

impl SopsTools {
    /// Builds the tools once per process (a cache hit is instant) and returns them.
    pub fn get() -> Result<&'static SopsTools> {
        static TOOLS: OnceLock<std::result::Result<SopsTools, String>> = OnceLock::new();
        TOOLS
            .get_or_init(|| {
                let script = repo_root().join("e2e/sops/build.sh");
                let mut cmd = Command::new("bash");
                cmd.arg(&script).stderr(Stdio::inherit());
                let out = run(cmd, "e2e/sops/build.sh").map_err(|e| e.to_string())?;
                let bin = PathBuf::from(String::from_utf8_lossy(&out).trim());
                Ok(SopsTools { bin })
            })
            .as_ref()
            .map_err(|e| Error::Io(e.clone()))
    }

    /// The directory holding `sops`, `age` and `age-keygen`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// A new age key pair.
    pub fn age_keygen(&self) -> Result<AgeKey> {
        let mut cmd = Command::new(self.bin.join("age-keygen"));
        cmd.stderr(Stdio::null());
        let identity =
            String::from_utf8(run(cmd, "age-keygen")?).map_err(|e| io("age-keygen", e))?;
        let recipient = identity
            .lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .ok_or_else(|| Error::Io("age-keygen printed no public key".into()))?
            .to_owned();
        Ok(AgeKey {
            identity,
            recipient,
        })
    }

    /// A `sops` command with a clean environment (no key files or config of the machine's user).
    fn sops(&self, dir: &Path) -> Command {
        let mut cmd = Command::new(self.bin.join("sops"));
        cmd.current_dir(dir)
            .env_clear()
            .env("HOME", dir)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        cmd
    }

    /// Encrypts `plaintext` as the file `name` (its extension picks the SOPS format, as for
    /// users) for the age `recipients`, with extra `sops encrypt` flags such as
    /// `--encrypted-regex`.
    pub fn encrypt(
        &self,
        plaintext: &[u8],
        name: &str,
        recipients: &[&str],
        extra: &[&str],
    ) -> Result<Vec<u8>> {
        self.encrypt_with(plaintext, name, recipients, None, extra)
    }

    /// Like [`SopsTools::encrypt`], for the PGP keys `fingerprints` of `gnupg`'s keyring
    /// (`sops --pgp`, which calls the real `gpg`) and the age `recipients` (may be empty).
    pub fn encrypt_pgp(
        &self,
        plaintext: &[u8],
        name: &str,
        gnupg: &GnuPg,
        fingerprints: &[&str],
        recipients: &[&str],
        extra: &[&str],
    ) -> Result<Vec<u8>> {
        self.encrypt_with(
            plaintext,
            name,
            recipients,
            Some((gnupg, fingerprints)),
            extra,
        )
    }

    fn encrypt_with(
        &self,
        plaintext: &[u8],
        name: &str,
        recipients: &[&str],
        pgp: Option<(&GnuPg, &[&str])>,
        extra: &[&str],
    ) -> Result<Vec<u8>> {
        let dir = tempdir()?;
        let file = dir.path().join(name);
        std::fs::write(&file, plaintext).map_err(|e| io("writing the plaintext", e))?;
        let mut cmd = self.sops(dir.path());
        // The global-flag form accepts every option (`--mac-only-encrypted` is global only).
        cmd.arg("--encrypt");
        if !recipients.is_empty() {
            cmd.arg("--age").arg(recipients.join(","));
        }
        if let Some((gnupg, fingerprints)) = pgp {
            cmd.env("GNUPGHOME", gnupg.home())
                .arg("--pgp")
                .arg(fingerprints.join(","));
        }
        cmd.args(extra).arg(&file);
        run(cmd, &format!("sops encrypt {name}"))
    }

    /// Decrypts `encrypted` (the file `name`) with the age `identity`, as a user would check it.
    pub fn decrypt(&self, encrypted: &[u8], name: &str, identity: &str) -> Result<Vec<u8>> {
        let dir = tempdir()?;
        let file = dir.path().join(name);
        std::fs::write(&file, encrypted).map_err(|e| io("writing the file", e))?;
        let mut cmd = self.sops(dir.path());
        cmd.env("SOPS_AGE_KEY", identity).arg("decrypt").arg(&file);
        run(cmd, &format!("sops decrypt {name}"))
    }

    /// Decrypts `encrypted` (the file `name`) with the PGP keys of `gnupg` (the real `gpg`).
    pub fn decrypt_pgp(&self, encrypted: &[u8], name: &str, gnupg: &GnuPg) -> Result<Vec<u8>> {
        let dir = tempdir()?;
        let file = dir.path().join(name);
        std::fs::write(&file, encrypted).map_err(|e| io("writing the file", e))?;
        let mut cmd = self.sops(dir.path());
        cmd.env("GNUPGHOME", gnupg.home()).arg("decrypt").arg(&file);
        run(cmd, &format!("sops decrypt {name}"))
    }
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn tempdir() -> Result<TempDir> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "plumb-sops-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| io("creating a scratch directory", e))?;
    Ok(TempDir(dir))
}
