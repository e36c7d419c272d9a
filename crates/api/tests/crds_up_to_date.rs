//! `crds/` must hold exactly what `crdgen` prints, so what users install matches the Rust types.

use std::path::Path;

#[test]
fn crds_directory_matches_the_generated_crds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    let generated = plumb_api::crd::all_yaml().expect("CRDs serialize");
    let mut stale = vec![];
    for (file, yaml) in &generated {
        let on_disk = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if on_disk != *yaml {
            stale.push(file.clone());
        }
    }
    let mut expected: Vec<_> = generated.iter().map(|(f, _)| f.clone()).collect();
    expected.sort();
    let mut present: Vec<_> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    present.sort();
    assert_eq!(
        present, expected,
        "crds/ holds files crdgen does not write; run `make crds`"
    );
    assert!(
        stale.is_empty(),
        "crds/ is stale for {stale:?}; run `make crds`"
    );
}
