//! Serves the bare repositories under a directory over Git smart HTTP on loopback.

use clap::Parser;
use plumb_git_server::{Auth, GitServer};

/// Serve `<root>/<name>.git` at `http://<addr>/<name>.git` with `git http-backend`.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Directory holding the bare repositories.
    #[arg(long)]
    root: std::path::PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8088")]
    addr: String,
    /// Require HTTP basic authentication with this user name (with --password).
    #[arg(long, requires = "password")]
    username: Option<String>,
    /// The password for --username.
    #[arg(long, env = "PLUMB_GIT_PASSWORD", requires = "username")]
    password: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let auth = match (args.username, args.password) {
        (Some(username), Some(password)) => Auth::Basic { username, password },
        _ => Auth::None,
    };
    let server = GitServer::start_on(&args.addr, &args.root, auth).await?;
    println!(
        "serving {} at http://{}/",
        args.root.display(),
        server.addr()
    );
    server.wait().await;
    Ok(())
}
