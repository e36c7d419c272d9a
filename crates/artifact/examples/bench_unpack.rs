//! What a source tree costs the source and render controllers per commit: a repository of N
//! apps (`BENCH_APPS`, default 5000; `apps/<i>/app.yaml`, about 600 bytes each) is archived
//! anew and after one-app commits (reusing the runs of the archive before), listed (read and
//! hashed, nothing written), unpacked into an empty directory, unpacked again over the tree of
//! the commit before it (one app changed), read back (as the index did before it came from the
//! listing), and removed. `BENCH_APPS=49999` makes a tree of 99 999 entries, about the most an
//! artifact may unpack to by default.
//!
//! Run: `cargo run --release -p plumb-artifact --example bench_unpack`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

use std::time::Instant;

use plumb_artifact::{
    FileEntry, Listing, Runs, UnpackLimits, Written, list_tar_gz, unpack_listed,
    write_tar_gz_reusing,
};

/// One app's file: four small objects, as the bench-loop fleet's.
fn app(i: usize, commit: usize) -> Vec<u8> {
    format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app-{i}\n---\napiVersion: v1\n\
         kind: ConfigMap\nmetadata:\n  name: app-{i}\ndata:\n  id: app-{i}\n  commit: \"{commit}\"\n\
         ---\napiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i}\nspec:\n  selector:\n    \
         app: app-{i}\n  ports:\n    - port: 80\n---\napiVersion: apps/v1\nkind: Deployment\n\
         metadata:\n  name: app-{i}\nspec:\n  replicas: 0\n  selector:\n    matchLabels:\n      \
         app: app-{i}\n  template:\n    metadata:\n      labels:\n        app: app-{i}\n    spec:\n\
         \x20     containers:\n        - name: app\n          image: registry.local/app:1\n"
    )
    .into_bytes()
}

/// The files of the repository after `commits` one-app commits (app `commits` changed last),
/// each handle the app and its version.
fn files(apps: usize, commits: usize) -> Vec<FileEntry<(usize, usize)>> {
    (0..apps)
        .map(|i| FileEntry {
            path: format!("apps/{i}/app.yaml"),
            executable: false,
            handle: (i, usize::from(i < commits) + usize::from(i == commits)),
        })
        .collect()
}

/// The artifact of the repository after `commits` one-app commits.
fn repository(apps: usize, commits: usize) -> Vec<u8> {
    plumb_artifact::write_tar_gz(Vec::new(), files(apps, commits), |(i, v)| Ok(app(*i, *v)))
        .unwrap()
}

/// Archives the repository after `commits` one-app commits reusing `runs` (the source
/// controller's way, with blob ids as content ids); what it cost.
fn archive_reusing(apps: usize, commits: usize, runs: &mut Runs) -> (Vec<u8>, Written) {
    let id = |(i, v): &(usize, usize)| Some([i.to_le_bytes(), v.to_le_bytes()].concat());
    write_tar_gz_reusing(
        Vec::new(),
        files(apps, commits),
        id,
        |(i, v)| Ok(app(*i, *v)),
        runs,
    )
    .unwrap()
}

/// Reads and hashes every file under `dir`, as the render controller's index did after each
/// unpack; how many.
fn read_back(dir: &std::path::Path) -> usize {
    use sha2::{Digest as _, Sha256};
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            files += read_back(&entry.path());
        } else {
            let mut h = Sha256::new();
            std::io::copy(&mut std::fs::File::open(entry.path()).unwrap(), &mut h).unwrap();
            std::hint::black_box(h.finalize());
            files += 1;
        }
    }
    files
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn ms(start: Instant) -> String {
    format!("{:.0} ms", start.elapsed().as_secs_f64() * 1e3)
}

fn main() {
    let apps: usize = std::env::var("BENCH_APPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let rounds = 3;
    let limits = UnpackLimits::default();
    let start = Instant::now();
    let mut runs = Runs::default();
    let (first, _) = archive_reusing(apps, 0, &mut runs);
    println!(
        "  archive anew (read and deflate every file): {} (load {})",
        ms(start),
        load()
    );
    let mut commits = vec![first];
    for c in 1..=rounds {
        let start = Instant::now();
        let (bytes, cost) = archive_reusing(apps, c, &mut runs);
        println!(
            "  archive a one-app commit reusing the runs of the one before: {} ({} of {} runs deflated, {} files read, {} KiB deflated; load {})",
            ms(start),
            cost.runs_deflated,
            cost.runs_deflated + cost.runs_reused,
            cost.files_read,
            cost.bytes_deflated / 1024,
            load()
        );
        assert_eq!(bytes, repository(apps, c), "the same bytes as written anew");
        commits.push(bytes);
    }
    let dir = tempfile::tempdir().unwrap();
    println!(
        "a repository of {apps} apps: {} KiB compressed (load {})",
        commits[0].len() / 1024,
        load()
    );
    let start = Instant::now();
    let mut listing = list_tar_gz(&commits[0], limits).unwrap();
    println!(
        "  list (read and hash every file, write nothing): {} ({} entries)",
        ms(start),
        listing.len()
    );
    let tree = dir.path().join("tree");
    let start = Instant::now();
    unpack_listed(&commits[0], &listing, &tree, &Listing::default()).unwrap();
    println!(
        "  unpack into an empty directory: {} (load {})",
        ms(start),
        load()
    );
    for commit in &commits[1..] {
        let start = Instant::now();
        let next = list_tar_gz(commit, limits).unwrap();
        let changes = listing.changes_to(&next);
        unpack_listed(commit, &next, &tree, &listing).unwrap();
        println!(
            "  one-app commit, listed and unpacked over the tree before it ({changes} changes): {} (load {})",
            ms(start),
            load()
        );
        listing = next;
    }
    let fresh = dir.path().join("fresh");
    let start = Instant::now();
    let again = list_tar_gz(&commits[rounds], limits).unwrap();
    unpack_listed(&commits[rounds], &again, &fresh, &Listing::default()).unwrap();
    println!(
        "  the same commit listed and unpacked anew (what each commit cost before): {} (load {})",
        ms(start),
        load()
    );
    let start = Instant::now();
    let files = read_back(&fresh);
    println!(
        "  reading every file of it back and hashing it (what indexing a tree cost before): {} ({files} files, load {})",
        ms(start),
        load()
    );
    let start = Instant::now();
    std::fs::remove_dir_all(&fresh).unwrap();
    println!(
        "  removing a tree (what each commit also cost once the cache let the oldest go): {} (load {})",
        ms(start),
        load()
    );
}
