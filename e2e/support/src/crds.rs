//! Installing CRDs into the test cluster, as every test that uses the kinds must: plumb's own,
//! and Flux's for tests that read or write Flux objects (`plumb import --from-cluster`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::{Error, Result, repo_root, wait_for};

/// Field manager under which tests install the CRDs.
const FIELD_MANAGER: &str = "plumb-test";

/// Label on the Flux CRDs a test installed, naming the Flux release they come from. They are
/// shared by every test process (see [`install_flux_crds`]), so they carry no test-namespace
/// labels and no sweep deletes them.
pub const FLUX_CRD_LABEL: &str = "plumb.dev/test-flux-crds";

/// The Flux kinds [`install_flux_crds`] installs: the files of `e2e/flux/crds.sh`'s directory.
const FLUX_CRD_FILES: [&str; 2] = [
    "source.toolkit.fluxcd.io_gitrepositories.yaml",
    "kustomize.toolkit.fluxcd.io_kustomizations.yaml",
];

/// Applies the CRDs of GitRepository, Sync and Policy (server-side, idempotent, safe to run from
/// parallel tests) and waits until each is Established, so their kinds can be used at once.
pub async fn install_crds(client: &Client) -> Result<()> {
    for crd in plumb_api::crd::all() {
        apply_established(client, &crd).await?;
    }
    Ok(())
}

/// Applies Flux's own GitRepository (`source.toolkit.fluxcd.io`) and Kustomization
/// (`kustomize.toolkit.fluxcd.io`) CRDs, as released in the source-controller and
/// kustomize-controller modules that `e2e/flux/` pins (fetched by `e2e/flux/crds.sh` on first
/// use and cached under `~/.cache/plumb`), and waits until both are Established.
///
/// CRDs are cluster-scoped and shared: tests running at once in other processes may have Flux
/// objects of these kinds, and deleting a CRD deletes every object of its kind. So, like
/// plumb's own CRDs, they are applied server-side (idempotent, the same content from every
/// caller) and never deleted; they are labelled [`FLUX_CRD_LABEL`] with the Flux versions.
pub async fn install_flux_crds(client: &Client) -> Result<()> {
    let dir = flux_crd_dir()?;
    let release = dir
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // `flux-crds-sc-v1.9.1-kc-v1.9.4-<hash>`: the versions, a valid label value.
    let versions: String = release
        .trim_start_matches("flux-crds-")
        .rsplit_once('-')
        .map_or(release.as_str(), |(v, _)| v)
        .to_owned();
    for file in FLUX_CRD_FILES {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Io(format!("reading {}: {e}", path.display())))?;
        let mut crd: CustomResourceDefinition =
            serde_yaml::from_str(&text).map_err(|e| Error::Yaml {
                index: 0,
                message: format!("{}: {e}", path.display()),
            })?;
        crd.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(FLUX_CRD_LABEL.to_owned(), versions.clone());
        apply_established(client, &crd).await?;
    }
    Ok(())
}

/// The directory `e2e/flux/crds.sh` prints (running it once per process; a cache hit is
/// instant).
fn flux_crd_dir() -> Result<PathBuf> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = repo_root().join("e2e/flux/crds.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}; its output is above)",
                script.display(),
                out.status
            ));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
    .clone()
    .map_err(Error::Io)
}

/// Server-side applies `crd` and waits until it is Established.
async fn apply_established(client: &Client, crd: &CustomResourceDefinition) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let name = crd.metadata.name.clone().unwrap_or_default();
    crds.patch(&name, &pp, &Patch::Apply(crd))
        .await
        .map_err(|e| Error::kube(format!("applying CRD {name}"), e))?;
    wait_for(
        &format!("CRD {name} to be Established"),
        Duration::from_secs(60),
        || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                let conditions = crds
                    .get(&name)
                    .await?
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default();
                let established = conditions
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                Ok::<_, kube::Error>(established.then_some(()))
            }
        },
    )
    .await
}
