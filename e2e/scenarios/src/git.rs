//! A Git repository for a scenario: a work tree to edit and commit in, and the bare repository
//! it pushes to, served over smart HTTP on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;

use plumb_git_server::{Auth, GitServer};

use crate::{Error, Result, io};

/// How long a restarted git server may wait for its port.
const RESTART_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// A served repository with a work tree; the server stops and the files go when dropped.
pub struct GitFixture {
    dir: tempfile::TempDir,
    server: Option<GitServer>,
    addr: String,
}

impl GitFixture {
    /// An empty repository (branch `main`) served at [`GitFixture::url`].
    pub async fn new() -> Result<Self> {
        let dir = tempfile::tempdir().map_err(io("creating a temp dir"))?;
        let fixture = Self {
            server: None,
            addr: String::new(),
            dir,
        };
        std::fs::create_dir_all(fixture.served()).map_err(io("creating the served dir"))?;
        std::fs::create_dir_all(fixture.work()).map_err(io("creating the work tree"))?;
        fixture.git_in(
            &fixture.served(),
            &["init", "-q", "--bare", "-b", "main", "repo.git"],
        )?;
        fixture.git(&["init", "-q", "-b", "main"])?;
        let bare = fixture.served().join("repo.git");
        fixture.git(&["remote", "add", "origin", &bare.to_string_lossy()])?;
        let mut fixture = fixture;
        fixture.start_server().await?;
        Ok(fixture)
    }

    fn served(&self) -> PathBuf {
        self.dir.path().join("served")
    }

    /// The work tree commits are made in.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// The clone URL of the repository.
    pub fn url(&self) -> String {
        format!("http://{}/repo.git", self.addr)
    }

    /// Creates the GitRepository `name` in namespace `ns` for this repository's branch `main`,
    /// polled hourly (a scenario that waits for a commit asks for it rather than the poll).
    pub async fn create_source(&self, client: &kube::Client, ns: &str, name: &str) -> Result<()> {
        let repo: plumb_api::GitRepository = serde_json::from_value(serde_json::json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
            "metadata": {"name": name},
            "spec": {"url": self.url(), "ref": {"branch": "main"}, "interval": "1h"}
        }))
        .map_err(|e| Error::Config(format!("GitRepository {name}: {e}")))?;
        kube::Api::<plumb_api::GitRepository>::namespaced(client.clone(), ns)
            .create(&kube::api::PostParams::default(), &repo)
            .await
            .map_err(|source| Error::Kube {
                what: format!("creating GitRepository {ns}/{name}"),
                source,
            })?;
        Ok(())
    }

    /// Starts (or restarts, on the same port) the HTTP server.
    ///
    /// The first start takes a port from below the ephemeral range
    /// ([`plumb_e2e_support::free_addr`]): while the server is stopped, no outbound connection
    /// can take its port, so a restart finds it free. A restart waits for the stopped server to
    /// let go of the port (its task ends on the runtime, a moment after the stop).
    pub async fn start_server(&mut self) -> Result<()> {
        let server = if self.addr.is_empty() {
            self.first_start().await?
        } else {
            let addr = self.addr.clone();
            let root = self.served();
            plumb_e2e_support::wait_for(
                &format!("the git server's port {addr} to be free again"),
                RESTART_WITHIN,
                || {
                    let (addr, root) = (addr.clone(), root.clone());
                    async move {
                        match GitServer::start_on(&addr, root, Auth::None).await {
                            Ok(server) => Ok(Some(server)),
                            Err(e) => Err(e),
                        }
                    }
                },
            )
            .await?
        };
        self.addr = server.addr().to_string();
        self.server = Some(server);
        Ok(())
    }

    /// Binds a free port; should another process take it first, another (three tries).
    async fn first_start(&self) -> Result<GitServer> {
        let mut attempt = 1;
        loop {
            let addr = plumb_e2e_support::free_addr()?.to_string();
            match GitServer::start_on(&addr, self.served(), Auth::None).await {
                Ok(server) => return Ok(server),
                Err(e) if attempt == 3 => return Err(e.into()),
                Err(_) => attempt += 1,
            }
        }
    }

    /// Stops the HTTP server, as when a git host goes down.
    pub fn stop_server(&mut self) {
        self.server = None;
    }

    /// Copies the directory `from` into the work tree at `to` (relative).
    pub fn copy_dir(&self, from: &Path, to: &str) -> Result<()> {
        let dest = self.work().join(to);
        copy_tree(from, &dest)
    }

    /// Writes `content` to `path` (relative to the work tree), creating directories.
    pub fn write(&self, path: &str, content: &str) -> Result<()> {
        let file = self.work().join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&file, content).map_err(io(format!("writing {}", file.display())))
    }

    /// Reads `path` (relative to the work tree).
    pub fn read(&self, path: &str) -> Result<String> {
        let file = self.work().join(path);
        std::fs::read_to_string(&file).map_err(io(format!("reading {}", file.display())))
    }

    /// Removes `path` (relative to the work tree).
    pub fn remove(&self, path: &str) -> Result<()> {
        let file = self.work().join(path);
        std::fs::remove_file(&file).map_err(io(format!("removing {}", file.display())))
    }

    /// Commits everything in the work tree and pushes it; returns the commit id.
    pub fn commit(&self, message: &str) -> Result<String> {
        self.git(&["add", "-A"])?;
        self.git(&["commit", "-q", "--allow-empty", "-m", message])?;
        self.push()
    }

    /// Reverts the last commit (`git revert HEAD`) and pushes; returns the new commit id.
    pub fn revert_head(&self) -> Result<String> {
        self.git(&["revert", "--no-edit", "HEAD"])?;
        self.push()
    }

    fn push(&self) -> Result<String> {
        self.git(&["push", "-q", "origin", "main"])?;
        Ok(self.git(&["rev-parse", "HEAD"])?.trim().to_owned())
    }

    fn git(&self, args: &[&str]) -> Result<String> {
        self.git_in(&self.work(), args)
    }

    fn git_in(&self, dir: &Path, args: &[&str]) -> Result<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", self.dir.path())
            .env("GIT_AUTHOR_NAME", "plumb e2e")
            .env("GIT_AUTHOR_EMAIL", "e2e@plumb.dev")
            .env("GIT_COMMITTER_NAME", "plumb e2e")
            .env("GIT_COMMITTER_EMAIL", "e2e@plumb.dev")
            .output()
            .map_err(io("running git"))?;
        if !out.status.success() {
            return Err(Error::Git {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Every file under `root`, sorted, leaving out `.git`.
pub fn files_under(root: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(io(format!("reading {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io(format!("reading {}", dir.display())))?;
            if entry.file_name() == ".git" {
                continue;
            }
            if entry.path().is_dir() {
                dirs.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Copies the directory `from` to `to` (created), leaving out `.git`.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(io(format!("creating {}", to.display())))?;
    let entries = std::fs::read_dir(from).map_err(io(format!("reading {}", from.display())))?;
    for entry in entries {
        let entry = entry.map_err(io(format!("reading {}", from.display())))?;
        if entry.file_name() == ".git" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .map_err(io(format!("copying to {}", target.display())))?;
        }
    }
    Ok(())
}
