//! Installing plumb's CRDs into the test cluster, as every test that uses the kinds must.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::{Error, Result, wait_for};

/// Field manager under which tests install the CRDs.
const FIELD_MANAGER: &str = "plumb-test";

/// Applies the CRDs of GitRepository, Sync and Policy (server-side, idempotent, safe to run from
/// parallel tests) and waits until each is Established, so their kinds can be used at once.
pub async fn install_crds(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for crd in plumb_api::crd::all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &pp, &Patch::Apply(&crd))
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
        .await?;
    }
    Ok(())
}
