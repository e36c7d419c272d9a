//! The real `gpg` (GnuPG, the Debian package `gnupg` that `e2e/deps.sh` installs) for tests that
//! need PGP keys: each [`GnuPg`] is a GnuPG home of its own in a temporary directory, so keys made
//! here never touch the machine user's keyring, and `sops --pgp` run with it (see
//! [`crate::SopsTools::encrypt_pgp`]) encrypts for them exactly as users' `sops` does.
//!
//! ```no_run
//! # fn f() -> plumb_e2e_support::Result<()> {
//! let gnupg = plumb_e2e_support::GnuPg::new()?;
//! let key = gnupg.generate("default", "")?; // RSA, no passphrase
//! // key.secret_key is what a Flux `*.asc` Secret entry holds.
//! # Ok(()) }
//! ```

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sops::{TempDir, run, tempdir};
use crate::{Error, Result};

/// A GnuPG home in a temporary directory; its agent is stopped and the directory removed on drop.
#[derive(Debug)]
pub struct GnuPg {
    home: TempDir,
}

/// A PGP key pair made by `gpg --quick-gen-key`.
#[derive(Debug, Clone)]
pub struct PgpKey {
    /// The primary key's fingerprint (what `sops --pgp` takes and writes as `fp`).
    pub fingerprint: String,
    /// The armored private key, as `gpg --export-secret-keys --armor` writes it.
    pub secret_key: String,
}

impl GnuPg {
    /// A new, empty GnuPG home. Fails naming the package when `gpg` is not installed.
    pub fn new() -> Result<GnuPg> {
        let home = tempdir()?;
        // GnuPG refuses a home others can read.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::Io(format!("GnuPG home: {e}")))?;
        }
        let gnupg = GnuPg { home };
        gnupg.gpg(&["--version"]).map_err(|e| {
            Error::Io(format!(
                "{e} (gpg is the Debian package gnupg: run e2e/deps.sh)"
            ))
        })?;
        Ok(gnupg)
    }

    /// The home directory (`GNUPGHOME` for `sops`).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("GNUPGHOME", self.home());
        cmd
    }

    fn gpg(&self, args: &[&str]) -> Result<Vec<u8>> {
        let mut cmd = self.command("gpg");
        cmd.args(["--batch", "--no-tty"]).args(args);
        run(
            cmd,
            &format!("gpg {}", args.first().copied().unwrap_or_default()),
        )
    }

    /// A new key pair of GnuPG's algorithm `algo` (`default`: RSA with an RSA encryption subkey,
    /// `future-default`: Ed25519 with a Curve25519 one), locked by `passphrase` unless it is
    /// empty.
    pub fn generate(&self, algo: &str, passphrase: &str) -> Result<PgpKey> {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let email = format!("plumb-test-{}-{n}@plumb.invalid", std::process::id());
        let uid = format!("plumb test <{email}>");
        let pass = ["--pinentry-mode", "loopback", "--passphrase", passphrase];
        let mut args = pass.to_vec();
        args.extend(["--quick-gen-key", &uid, algo, "default", "never"]);
        self.gpg(&args)?;
        let listing =
            String::from_utf8_lossy(&self.gpg(&["--with-colons", "--list-secret-keys", &email])?)
                .into_owned();
        // `sec` then its `fpr` record: the primary key's fingerprint is the first `fpr`.
        let fingerprint = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|rest| rest.split(':').nth(8))
            .filter(|f| !f.is_empty())
            .ok_or_else(|| Error::Io(format!("gpg listed no fingerprint for {email}")))?
            .to_owned();
        let mut args = pass.to_vec();
        args.extend(["--armor", "--export-secret-keys", &fingerprint]);
        let secret_key = String::from_utf8(self.gpg(&args)?)
            .map_err(|e| Error::Io(format!("gpg --export-secret-keys: {e}")))?;
        Ok(PgpKey {
            fingerprint,
            secret_key,
        })
    }
}

impl Drop for GnuPg {
    fn drop(&mut self) {
        // The agent gpg started for this home; the directory goes with the TempDir.
        let mut cmd = self.command("gpgconf");
        cmd.args(["--kill", "all"]);
        let _ = run(cmd, "gpgconf --kill all");
    }
}
