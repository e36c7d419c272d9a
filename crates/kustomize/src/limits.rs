//! Limits on what one build may read, expand and spend, so that a hostile or careless tree costs
//! its owner an error naming the limit, never the process its memory, stack or time.
//!
//! The YAML limits (nesting depth, nodes added by alias expansion) hold for every YAML text the
//! engine reads, in a build or not. The others hold per build and are set through
//! [`BuildOptions::limits`](crate::BuildOptions).

use std::time::Duration;

/// Deepest nesting of one YAML document (block and flow collections alike). Kept below the 128
/// at which serde_yaml (which reads rendered artifacts downstream) gives up, and far below what
/// the build thread's stack holds.
pub const YAML_MAX_DEPTH: usize = 100;

/// Most nodes alias expansion may add to one YAML document (`*ref` copies its anchor's nodes).
/// Ordinary manifests use a handful; an alias bomb needs millions.
pub const YAML_MAX_ALIAS_NODES: usize = 100_000;

/// Stack size of the thread a build runs on. Recursion in the engine is bounded by the YAML
/// depth and the kustomization depth limits, which need a small fraction of it.
pub const BUILD_STACK_BYTES: usize = 64 << 20;

/// Hard ceiling of [`Limits::max_kustomization_depth`]: each level of a bases/components chain
/// costs stack on the build thread.
pub const KUSTOMIZATION_DEPTH_CEILING: usize = 200;

/// Per-build limits. The defaults suit any repository we know of; an operator may raise the byte
/// and count limits with flags of the render controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest file a build reads (`--max-file-size`).
    pub max_file_bytes: u64,
    /// Most bytes one build reads, summed over every file read (`--max-render-input-size`).
    pub max_read_bytes: u64,
    /// Most file reads in one build, a file read twice counting twice (`--max-render-files`).
    pub max_files: usize,
    /// Longest chain of kustomizations and components including one another; at most
    /// [`KUSTOMIZATION_DEPTH_CEILING`].
    pub max_kustomization_depth: usize,
    /// Largest data of one generated ConfigMap or Secret: the API server stores no more.
    pub max_generated_bytes: u64,
    /// Most nodes alias expansion and transformer copies (JSON patch `copy`, replacements) may
    /// add over a whole build (each document is also held to [`YAML_MAX_ALIAS_NODES`]).
    pub max_alias_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 16 << 20,
            max_read_bytes: 64 << 20,
            max_files: 10_000,
            max_kustomization_depth: 50,
            max_generated_bytes: 1 << 20,
            max_alias_nodes: 1_000_000,
        }
    }
}

/// Which limit was crossed, with the limit's value (and the amount seen, where known).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Limit {
    /// A YAML document nests deeper than [`YAML_MAX_DEPTH`].
    #[error("YAML nesting deeper than {max} levels (limit yaml-max-depth)")]
    YamlDepth {
        /// The limit.
        max: usize,
    },
    /// A built object nests deeper than [`YAML_MAX_DEPTH`] (transformers made it so).
    #[error("the built object nests deeper than {max} levels (limit yaml-max-depth)")]
    ObjectDepth {
        /// The limit.
        max: usize,
    },
    /// Alias expansion in one document adds more than [`YAML_MAX_ALIAS_NODES`] nodes.
    #[error(
        "YAML alias expansion adds more than {max} nodes to one document (limit yaml-max-alias-nodes)"
    )]
    YamlAliasNodes {
        /// The limit.
        max: usize,
    },
    /// Alias expansion and copies over the whole build add more than
    /// [`Limits::max_alias_nodes`] nodes.
    #[error(
        "YAML alias expansion and copies (JSON patch copy, replacements) add more than {max} nodes to this build (limit max-alias-nodes)"
    )]
    BuildAliasNodes {
        /// The limit.
        max: usize,
    },
    /// A file is larger than [`Limits::max_file_bytes`].
    #[error("file of {size} bytes is larger than {max} bytes (limit max-file-size)")]
    FileBytes {
        /// The file's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The build read more than [`Limits::max_read_bytes`].
    #[error("the build reads more than {max} bytes (limit max-render-input-size)")]
    ReadBytes {
        /// The limit.
        max: u64,
    },
    /// The build read more than [`Limits::max_files`] files.
    #[error("the build reads more than {max} files (limit max-render-files)")]
    Files {
        /// The limit.
        max: usize,
    },
    /// Kustomizations include one another deeper than [`Limits::max_kustomization_depth`].
    #[error("kustomizations nest deeper than {max} levels (limit max-kustomization-depth)")]
    KustomizationDepth {
        /// The limit.
        max: usize,
    },
    /// A generated ConfigMap or Secret would hold more than [`Limits::max_generated_bytes`].
    #[error(
        "generated {kind} {name} holds {size} bytes or more, over {max} bytes (limit max-generated-size)"
    )]
    GeneratedBytes {
        /// `ConfigMap` or `Secret`.
        kind: &'static str,
        /// The generator's name.
        name: String,
        /// The data size reached when the build stopped.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The build ran past its deadline.
    #[error("the build took longer than {}s (limit render-timeout)", .after.as_secs_f64())]
    Deadline {
        /// The time the build was given.
        after: Duration,
    },
}
