//! `config/` as `kubectl apply -k config/` renders it, checked without a cluster: every image is
//! tagged with the release (the workspace version, never `latest`), and the render and sync
//! controllers run locked down. `config_install.rs` runs what it installs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use plumb_e2e_scenarios::{Controller, Install};

/// Whether `args` turn the boolean flag `name` on (`--name` or `--name=true`).
fn flag_on(args: &[String], name: &str) -> bool {
    args.iter()
        .any(|a| a == name || a.strip_prefix(name) == Some("=true"))
}

#[test]
fn every_image_is_tagged_with_the_release_version() {
    let install = Install::render().unwrap();
    let images = install.images();
    assert_eq!(images.len(), 3, "one image per controller: {images:?}");
    let release = env!("CARGO_PKG_VERSION");
    for (deployment, image) in images {
        let tag = image.rsplit_once(':').map(|(_, tag)| tag);
        assert_eq!(
            tag,
            Some(release),
            "Deployment {deployment}: image {image} is not tagged with the release {release}"
        );
    }
}

#[test]
fn render_and_sync_controllers_refuse_cross_namespace_refs_and_sync_applies_as_default() {
    let install = Install::render().unwrap();
    let render = install.args(Controller::Render).unwrap();
    assert!(
        flag_on(&render, "--no-cross-namespace-refs"),
        "render-controller args: {render:?}"
    );
    let sync = install.args(Controller::Sync).unwrap();
    assert!(
        flag_on(&sync, "--no-cross-namespace-refs"),
        "sync-controller args: {sync:?}"
    );
    assert!(
        sync.iter()
            .any(|a| a == "--default-service-account=default"),
        "sync-controller args: {sync:?}"
    );
}

/// Whether `arg` is one of the lockdown flags.
fn lockdown(arg: &str) -> bool {
    arg.starts_with("--no-cross-namespace-refs") || arg.starts_with("--default-service-account")
}

#[test]
fn the_readme_opens_up_the_lockdown_keeping_every_other_argument_of_config() {
    let readme = std::fs::read_to_string(plumb_e2e_support::repo_root().join("README.md")).unwrap();
    let install = Install::render().unwrap();
    for c in [Controller::Sync, Controller::Render] {
        let name = c.deployment();
        let expected: Vec<String> = install
            .args(c)
            .unwrap()
            .into_iter()
            .filter(|a| !lockdown(a))
            .collect();
        let patch = readme
            .split(&format!(
                "metadata: {{ name: {name}, namespace: plumb-system }}"
            ))
            .nth(1)
            .unwrap_or_else(|| panic!("the README has no patch of Deployment {name}"));
        let line = patch
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("args: ["))
            .unwrap_or_else(|| panic!("the README's patch of {name} sets no args"));
        let listed: Vec<String> = line
            .trim_start_matches("args: [")
            .trim_end_matches(']')
            .split(", ")
            .map(str::to_owned)
            .collect();
        assert_eq!(
            listed, expected,
            "the README's patch of {name} must list config/'s arguments without the lockdown flags"
        );
    }
}
