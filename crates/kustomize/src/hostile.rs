//! Hostile kustomize trees, for tests: each crosses one of the engine's [`limits`](crate::limits)
//! (or a refusal) and must fail with an error naming it, quickly and in bounded memory — through
//! `plumb build`, the render controller, or this library. Built only with the `hostile-trees`
//! feature.
//!
//! Trees are written at test time (the 300 MiB file is sparse: it costs no disk and no time to
//! make), never committed.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One hostile tree.
pub struct HostileTree {
    /// A short name for tables and test output.
    pub name: &'static str,
    /// Writes the tree under an empty directory and returns the kustomization directory to build.
    /// Build with the directory given as the build root (`plumb build --root`), as the render
    /// controller does with a source.
    pub write: fn(&Path) -> io::Result<PathBuf>,
    /// A substring of the error every consumer must report.
    pub expect: &'static str,
}

/// Every hostile tree, in a stable order.
pub fn trees() -> Vec<HostileTree> {
    vec![
        HostileTree {
            name: "alias bomb in a resource",
            write: alias_bomb_resource,
            expect: "yaml-max-alias-nodes",
        },
        HostileTree {
            name: "alias bomb in a patch file",
            write: alias_bomb_patch_file,
            expect: "yaml-max-alias-nodes",
        },
        HostileTree {
            name: "alias bomb in an inline patch",
            write: alias_bomb_inline_patch,
            expect: "yaml-max-alias-nodes",
        },
        HostileTree {
            name: "alias bomb in a JSON 6902 patch",
            write: alias_bomb_json_patch,
            expect: "yaml-max-alias-nodes",
        },
        HostileTree {
            name: "alias bomb in the kustomization file",
            write: alias_bomb_kustomization,
            expect: "yaml-max-alias-nodes",
        },
        HostileTree {
            name: "alias expansion spread over many files",
            write: alias_spread,
            expect: "max-alias-nodes",
        },
        HostileTree {
            name: "deeply nested block YAML",
            write: deep_block,
            expect: "yaml-max-depth",
        },
        HostileTree {
            name: "deeply nested flow YAML",
            write: deep_flow,
            expect: "yaml-max-depth",
        },
        HostileTree {
            name: "deeply nested kustomization file",
            write: deep_kustomization_file,
            expect: "yaml-max-depth",
        },
        HostileTree {
            name: "replacement creating a deeply nested field",
            write: deep_replacement,
            expect: "yaml-max-depth",
        },
        HostileTree {
            name: "JSON patch copying a field into itself, doubling",
            write: doubling_json_patch,
            expect: "max-alias-nodes",
        },
        HostileTree {
            name: "replacements copying a field into itself, doubling",
            write: doubling_replacements,
            expect: "max-alias-nodes",
        },
        HostileTree {
            name: "long chain of bases",
            write: long_bases_chain,
            expect: "max-kustomization-depth",
        },
        HostileTree {
            name: "long chain of components",
            write: long_components_chain,
            expect: "max-kustomization-depth",
        },
        HostileTree {
            name: "exponential diamond of bases",
            write: exponential_diamond,
            expect: "max-render-files",
        },
        HostileTree {
            name: "300 MiB file behind a configMapGenerator",
            write: huge_generator_file,
            expect: "max-generated-size",
        },
        HostileTree {
            name: "300 MiB env file behind a secretGenerator",
            write: huge_generator_env,
            expect: "max-generated-size",
        },
        HostileTree {
            name: "2 MiB of literals in a configMapGenerator",
            write: big_generator_literals,
            expect: "max-generated-size",
        },
        HostileTree {
            name: "300 MiB resource file",
            write: huge_resource,
            expect: "max-file-size",
        },
        HostileTree {
            name: "300 MiB kustomization file",
            write: huge_kustomization,
            expect: "max-file-size",
        },
        HostileTree {
            name: "many files",
            write: many_files,
            expect: "max-render-files",
        },
        HostileTree {
            name: "more bytes than a render may read",
            write: many_bytes,
            expect: "max-render-input-size",
        },
        HostileTree {
            name: "cycle of bases",
            write: cycle,
            expect: "cycle detected",
        },
        HostileTree {
            name: "resource outside the root through a symlink",
            write: symlink_escape,
            expect: "outside the build root",
        },
    ]
}

fn write(path: &Path, text: &str) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, text)
}

/// A "billion laughs" document: ten aliases per level, nine levels (10^9 nodes if expanded).
fn bomb_lines(indent: &str) -> String {
    let mut out = format!("{indent}l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        let _ = writeln!(out, "{indent}l{i}: &l{i} [{refs}]");
    }
    out
}

fn config_map(name: &str, data: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{data}")
}

fn alias_bomb_resource(root: &Path) -> io::Result<PathBuf> {
    write(&root.join("kustomization.yaml"), "resources: [bomb.yaml]\n")?;
    write(
        &root.join("bomb.yaml"),
        &config_map("bomb", &bomb_lines("  ")),
    )?;
    Ok(root.to_path_buf())
}

fn alias_bomb_patch_file(root: &Path) -> io::Result<PathBuf> {
    write(
        &root.join("kustomization.yaml"),
        "resources: [cm.yaml]\npatches:\n- path: patch.yaml\n",
    )?;
    write(&root.join("cm.yaml"), &config_map("cm", "  k: v\n"))?;
    write(
        &root.join("patch.yaml"),
        &config_map("cm", &bomb_lines("  ")),
    )?;
    Ok(root.to_path_buf())
}

fn alias_bomb_inline_patch(root: &Path) -> io::Result<PathBuf> {
    let patch: String = config_map("cm", &bomb_lines("  "))
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    write(
        &root.join("kustomization.yaml"),
        &format!("resources: [cm.yaml]\npatches:\n- patch: |\n{patch}"),
    )?;
    write(&root.join("cm.yaml"), &config_map("cm", "  k: v\n"))?;
    Ok(root.to_path_buf())
}

fn alias_bomb_json_patch(root: &Path) -> io::Result<PathBuf> {
    write(
        &root.join("kustomization.yaml"),
        "resources: [cm.yaml]\npatches:\n- path: ops.yaml\n  target: {kind: ConfigMap}\n",
    )?;
    write(&root.join("cm.yaml"), &config_map("cm", "  k: v\n"))?;
    let mut ops = String::from("- op: add\n  path: /data/bomb\n  value:\n");
    ops.push_str(&bomb_lines("    "));
    write(&root.join("ops.yaml"), &ops)?;
    Ok(root.to_path_buf())
}

fn alias_bomb_kustomization(root: &Path) -> io::Result<PathBuf> {
    write(
        &root.join("kustomization.yaml"),
        &format!("resources: [cm.yaml]\nmetadata:\n{}", bomb_lines("  ")),
    )?;
    write(&root.join("cm.yaml"), &config_map("cm", "  k: v\n"))?;
    Ok(root.to_path_buf())
}

/// A kustomization listing `count` ConfigMap files `cm<i>.yaml` with the data `data(i)`.
fn config_map_files(
    root: &Path,
    count: usize,
    data: impl Fn(usize) -> String,
) -> io::Result<PathBuf> {
    let mut names = Vec::new();
    for i in 0..count {
        let name = format!("cm{i}.yaml");
        write(&root.join(&name), &config_map(&format!("cm{i}"), &data(i)))?;
        names.push(name);
    }
    write(
        &root.join("kustomization.yaml"),
        &format!("resources: [{}]\n", names.join(", ")),
    )?;
    Ok(root.to_path_buf())
}

/// Each file expands aliases to some 92 000 nodes, under the per-document limit; together they
/// exceed what one build may expand.
fn alias_spread(root: &Path) -> io::Result<PathBuf> {
    config_map_files(root, 40, |_| {
        let mut data = String::from("  l0: &l0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..4 {
            let refs = vec![format!("*l{}", i - 1); 10].join(", ");
            let _ = writeln!(data, "  l{i}: &l{i} [{refs}]");
        }
        let refs = ["*l3"; 8].join(", ");
        let _ = writeln!(data, "  l4: [{refs}]");
        data
    })
}

fn deep_block(root: &Path) -> io::Result<PathBuf> {
    write(&root.join("kustomization.yaml"), "resources: [deep.yaml]\n")?;
    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\nitems:\n{}x\n",
        "- ".repeat(1_000_000)
    );
    write(&root.join("deep.yaml"), &deep)?;
    Ok(root.to_path_buf())
}

fn deep_flow(root: &Path) -> io::Result<PathBuf> {
    write(&root.join("kustomization.yaml"), "resources: [deep.yaml]\n")?;
    let n = 1_000_000;
    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\nitems: {}{}\n",
        "[".repeat(n),
        "]".repeat(n)
    );
    write(&root.join("deep.yaml"), &deep)?;
    Ok(root.to_path_buf())
}

fn deep_kustomization_file(root: &Path) -> io::Result<PathBuf> {
    let n = 1_000_000;
    write(
        &root.join("kustomization.yaml"),
        &format!("metadata: {}{}\n", "{a: ".repeat(n), "}".repeat(n)),
    )?;
    Ok(root.to_path_buf())
}

/// A replacement with `create: true` and a 10 000-segment field path: no input nests deeply,
/// the built object would.
fn deep_replacement(root: &Path) -> io::Result<PathBuf> {
    let path = vec!["a"; 10_000].join(".");
    write(
        &root.join("kustomization.yaml"),
        &format!(
            "resources: [cm.yaml]\nreplacements:\n- source: {{kind: ConfigMap, name: cm, fieldPath: data.k}}\n  targets:\n  - select: {{kind: ConfigMap}}\n    fieldPaths: [data.{path}]\n    options: {{create: true}}\n"
        ),
    )?;
    write(&root.join("cm.yaml"), &config_map("cm", "  k: v\n"))?;
    Ok(root.to_path_buf())
}

/// 60 `copy` operations, each copying the data into itself: 2^60 nodes if carried out.
fn doubling_json_patch(root: &Path) -> io::Result<PathBuf> {
    write(
        &root.join("kustomization.yaml"),
        "resources: [cm.yaml]\npatches:\n- path: ops.yaml\n  target: {kind: ConfigMap}\n",
    )?;
    write(&root.join("cm.yaml"), &config_map("cm", "  k: v\n"))?;
    let ops: String = (0..60)
        .map(|i| format!("- op: copy\n  from: /data\n  path: /data/c{i}\n"))
        .collect();
    write(&root.join("ops.yaml"), &ops)?;
    Ok(root.to_path_buf())
}

/// 60 replacements, each copying the data into a new field of itself.
fn doubling_replacements(root: &Path) -> io::Result<PathBuf> {
    let mut k = String::from("resources: [cm.yaml]\nreplacements:\n");
    for i in 0..60 {
        let _ = write!(
            k,
            "- source: {{kind: ConfigMap, name: cm, fieldPath: data}}\n  targets:\n  - select: {{kind: ConfigMap}}\n    fieldPaths: [data.c{i}]\n    options: {{create: true}}\n"
        );
    }
    write(&root.join("kustomization.yaml"), &k)?;
    write(&root.join("cm.yaml"), &config_map("cm", "  k: v\n"))?;
    Ok(root.to_path_buf())
}

fn long_bases_chain(root: &Path) -> io::Result<PathBuf> {
    let n = 5_000;
    for i in 0..n {
        let dir = root.join(format!("b{i}"));
        let text = if i + 1 < n {
            format!("resources: [../b{}]\n", i + 1)
        } else {
            "resources: [cm.yaml]\n".to_string()
        };
        write(&dir.join("kustomization.yaml"), &text)?;
    }
    write(
        &root.join(format!("b{}/cm.yaml", n - 1)),
        &config_map("cm", "  k: v\n"),
    )?;
    Ok(root.join("b0"))
}

fn long_components_chain(root: &Path) -> io::Result<PathBuf> {
    let n = 5_000;
    write(
        &root.join("top/kustomization.yaml"),
        "resources: [cm.yaml]\ncomponents: [../c0]\n",
    )?;
    write(&root.join("top/cm.yaml"), &config_map("cm", "  k: v\n"))?;
    for i in 0..n {
        let mut text =
            String::from("apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n");
        if i + 1 < n {
            let _ = writeln!(text, "components: [../c{}]", i + 1);
        }
        write(&root.join(format!("c{i}/kustomization.yaml")), &text)?;
    }
    Ok(root.join("top"))
}

/// Each level includes the next twice under different prefixes: 2^20 builds of the bottom.
fn exponential_diamond(root: &Path) -> io::Result<PathBuf> {
    let n = 20;
    for i in 0..n {
        let dir = root.join(format!("l{i}"));
        let next = if i + 1 < n {
            format!("../../l{}", i + 1)
        } else {
            "../../bottom".to_string()
        };
        write(&dir.join("kustomization.yaml"), "resources: [a, b]\n")?;
        for side in ["a", "b"] {
            write(
                &dir.join(side).join("kustomization.yaml"),
                &format!("namePrefix: {side}-\nresources: [{next}]\n"),
            )?;
        }
    }
    write(
        &root.join("bottom/kustomization.yaml"),
        "resources: [cm.yaml]\n",
    )?;
    write(&root.join("bottom/cm.yaml"), &config_map("cm", "  k: v\n"))?;
    Ok(root.join("l0"))
}

/// A sparse file: its size without its bytes on disk.
fn sparse(path: &Path, size: u64) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::File::create(path)?.set_len(size)
}

fn huge_generator_file(root: &Path) -> io::Result<PathBuf> {
    write(
        &root.join("kustomization.yaml"),
        "configMapGenerator:\n- name: big\n  files: [big.bin]\n",
    )?;
    sparse(&root.join("big.bin"), 300 << 20)?;
    Ok(root.to_path_buf())
}

fn huge_generator_env(root: &Path) -> io::Result<PathBuf> {
    write(
        &root.join("kustomization.yaml"),
        "secretGenerator:\n- name: big\n  envs: [big.env]\n",
    )?;
    sparse(&root.join("big.env"), 300 << 20)?;
    Ok(root.to_path_buf())
}

fn big_generator_literals(root: &Path) -> io::Result<PathBuf> {
    let value = "x".repeat(64 << 10);
    let literals: String = (0..32).map(|i| format!("  - k{i}={value}\n")).collect();
    write(
        &root.join("kustomization.yaml"),
        &format!("configMapGenerator:\n- name: big\n  literals:\n{literals}"),
    )?;
    Ok(root.to_path_buf())
}

fn huge_resource(root: &Path) -> io::Result<PathBuf> {
    write(&root.join("kustomization.yaml"), "resources: [big.yaml]\n")?;
    sparse(&root.join("big.yaml"), 300 << 20)?;
    Ok(root.to_path_buf())
}

fn huge_kustomization(root: &Path) -> io::Result<PathBuf> {
    sparse(&root.join("kustomization.yaml"), 300 << 20)?;
    Ok(root.to_path_buf())
}

fn many_files(root: &Path) -> io::Result<PathBuf> {
    let n = 12_000;
    let mut list = String::from("resources:\n");
    for i in 0..n {
        let name = format!("f{i}.yaml");
        write(
            &root.join("r").join(&name),
            &config_map(&format!("c{i}"), "  k: v\n"),
        )?;
        let _ = writeln!(list, "- r/{name}");
    }
    write(&root.join("kustomization.yaml"), &list)?;
    Ok(root.to_path_buf())
}

/// Seven files of 10 MiB: each under the per-file limit, together over the per-render one.
fn many_bytes(root: &Path) -> io::Result<PathBuf> {
    let value = "x".repeat(10 << 20);
    config_map_files(root, 7, |_| format!("  k: {value}\n"))
}

fn cycle(root: &Path) -> io::Result<PathBuf> {
    write(&root.join("a/kustomization.yaml"), "resources: [../b]\n")?;
    write(&root.join("b/kustomization.yaml"), "resources: [../a]\n")?;
    Ok(root.join("a"))
}

fn symlink_escape(root: &Path) -> io::Result<PathBuf> {
    let app = root.join("app");
    write(
        &app.join("kustomization.yaml"),
        "resources: [passwd.yaml]\n",
    )?;
    #[cfg(unix)]
    std::os::unix::fs::symlink("/etc/passwd", app.join("passwd.yaml"))?;
    Ok(app)
}
